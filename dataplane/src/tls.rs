//! The TLS configurations of a snapshot, built from its DER bytes: the server side (certificates
//! chosen by SNI, TLS 1.2 and 1.3, ALPN `http/1.1`, session resumption, client authentication)
//! and the client side for `https://` backends (verified against `backend-ca-file` or the
//! host's system roots).
//!
//! Built once per snapshot on the channel (or start-up) thread, never on a worker; workers
//! share the result read-only and hand it to each new TLS connection.

mod client_certificate;
pub(crate) mod client_trust;
mod names;
mod negotiate;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use portcullis_contract::tls::{ClientAuth, KeyFormat, TlsCertificate, TlsSettings};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, StoresServerSessions, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use client_certificate::ClientCertificate;
pub use client_trust::{ClientTrust, NO_CLIENT_TRUST, Verdict};
pub(crate) use names::NameTable;

/// The one application protocol spoken over TLS.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";
/// TLS 1.2 sessions (by session id) remembered for resumption, per process: about 100 bytes
/// each, so this bounds the cache near 2 MiB. TLS 1.3 and ticket-capable TLS 1.2 clients
/// resume from stateless tickets instead.
pub const SESSION_CACHE_ENTRIES_MAX: usize = 16_384;

/// Why a snapshot's TLS settings cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("certificate {file}: {error}")]
    Certificate { file: String, error: rustls::Error },
    #[error("client CA certificate {index}: {error}")]
    ClientCa { index: usize, error: rustls::Error },
    #[error("backend CA certificate {index}: {error}")]
    BackendCa { index: usize, error: rustls::Error },
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS settings: {0}")]
    Settings(#[from] rustls::Error),
}

/// Resumption state that outlives snapshots, so a reload does not force every client back to a
/// full handshake: the ticket keys (rotated by rustls) and the TLS 1.2 session cache. The cache
/// takes a lock per handshake, never per request.
#[derive(Debug)]
struct Sessions {
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
    cache: Arc<dyn StoresServerSessions>,
}

fn sessions() -> &'static Sessions {
    static SESSIONS: OnceLock<Sessions> = OnceLock::new();
    SESSIONS.get_or_init(|| {
        let ticketer = match rustls::crypto::aws_lc_rs::Ticketer::new() {
            Ok(ticketer) => Some(ticketer),
            Err(error) => {
                tracing::warn!(%error, "no TLS session tickets (resumption by session cache only)");
                None
            }
        };
        Sessions { ticketer, cache: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES_MAX) }
    })
}

/// Backend client configurations kept for reuse by later snapshots (one per distinct
/// `backend-ca-file` content and client identity: `[tls]`'s and each backend's own), so that a
/// reload keeps pooled connections, also after switching back and forth.
pub const BACKEND_CONFIGS_KEPT_MAX: usize = 64;

/// The server side of a snapshot's TLS: the configuration every handshake gets, or, when
/// certificates differ in client authentication (`client-auth` per `[[tls.certificate]]`: mTLS
/// per host), the one for the certificate the ClientHello's SNI name picks.
#[derive(Debug)]
pub struct ServerTls {
    /// Every handshake's configuration when all certificates share one client-auth setting;
    /// else the default certificate's (the first: no SNI, or a name no certificate serves).
    pub default: Arc<ServerConfig>,
    /// When certificates differ: the table of the names they serve and each one's configuration
    /// (in settings order).
    by_name: Option<(NameTable, Vec<Arc<ServerConfig>>)>,
}

impl ServerTls {
    /// Whether a handshake's configuration depends on its SNI name (the ClientHello must be read
    /// before the configuration is chosen).
    pub fn by_name(&self) -> bool {
        self.by_name.is_some()
    }

    /// The configuration for a ClientHello that names `server_name`.
    pub fn for_name(&self, server_name: Option<&str>) -> Arc<ServerConfig> {
        let Some((names, configs)) = &self.by_name else {
            return Arc::clone(&self.default);
        };
        let index = server_name.and_then(|name| names.find(name)).unwrap_or(0);
        Arc::clone(configs.get(index).unwrap_or(&self.default))
    }
}

/// Builds the server side for `settings`: one configuration per client-auth setting in use.
/// Without certificates every handshake fails with an alert (logged once per snapshot) while
/// plain HTTP keeps serving.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerTls>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver: Arc<dyn ResolvesServerCert> = Arc::new(SniResolver::new(&settings.certificates, &provider)?);
    let auth_of = |certificate: &TlsCertificate| certificate.client_auth.unwrap_or(settings.client_auth);
    let mut built: Vec<(ClientAuth, Arc<ServerConfig>)> = Vec::new();
    let mut config_for = |auth: ClientAuth| -> Result<Arc<ServerConfig>, TlsConfigError> {
        if let Some((_, config)) = built.iter().find(|(built_for, _)| *built_for == auth) {
            return Ok(Arc::clone(config));
        }
        let config = server_config_for(settings, auth, &provider, Arc::clone(&resolver))?;
        built.push((auth, Arc::clone(&config)));
        Ok(config)
    };
    let default_auth = settings.certificates.first().map_or(settings.client_auth, auth_of);
    let default = config_for(default_auth)?;
    let by_name = if settings.certificates.iter().all(|certificate| auth_of(certificate) == default_auth) {
        None
    } else {
        let configs = settings
            .certificates
            .iter()
            .map(|certificate| config_for(auth_of(certificate)))
            .collect::<Result<_, _>>()?;
        Some((NameTable::new(settings.certificates.iter().map(|certificate| certificate.names.as_slice())), configs))
    };
    Ok(Arc::new(ServerTls { default, by_name }))
}

/// One server configuration: every certificate (chosen by SNI), client authentication `auth`.
fn server_config_for(
    settings: &TlsSettings,
    auth: ClientAuth,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Negotiate => builder.with_client_cert_verifier(negotiate::AnyCertificate::new(
            &settings.client_cas,
            provider.signature_verification_algorithms,
        )),
        auth @ (ClientAuth::Optional | ClientAuth::Required) => {
            let mut roots = RootCertStore::empty();
            for (index, der) in settings.client_cas.iter().enumerate() {
                roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(|error| TlsConfigError::ClientCa { index, error })?;
            }
            let crls = settings
                .client_crls
                .iter()
                .map(|der| rustls::pki_types::CertificateRevocationListDer::from(der.clone()));
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                .with_crls(crls)
                .allow_unknown_revocation_status();
            if auth == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    let sessions = sessions();
    config.session_storage = Arc::clone(&sessions.cache);
    if let Some(ticketer) = &sessions.ticketer {
        config.ticketer = Arc::clone(ticketer);
    }
    Ok(Arc::new(config))
}

/// The client side towards `https://` backends, with an identity: pooled backend connections
/// are keyed by it, so a connection verified under other trust anchors is never reused.
#[derive(Debug, Clone)]
pub struct BackendTls {
    pub config: Arc<ClientConfig>,
    /// Changes exactly when the trust anchors or the client identity change (process-unique).
    pub id: u64,
}

/// The client configuration for `https://` backends: ALPN `http/1.1`, TLS 1.2 and 1.3, rustls'
/// in-memory session resumption, server certificates verified against the backend CAs `cas`
/// (DER), or the host's system roots when there are none, and `identity`, the client
/// certificate for backends that ask for one (`[tls] backend-client-cert-file`, or a backend's
/// own `tls-client-cert-file`). The same CAs and identity as an earlier snapshot's give the same
/// configuration back (same id, same resumption cache), so a reload does not drop pooled TLS
/// connections; a change gets a new one.
pub fn backend_client_config(cas: &[Vec<u8>], identity: Option<&TlsCertificate>) -> Result<BackendTls, TlsConfigError> {
    type Built = Vec<((Vec<Vec<u8>>, Option<TlsCertificate>), BackendTls)>;
    static BUILT: Mutex<Built> = Mutex::new(Vec::new());
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    // Only snapshot builds (channel or start-up thread) take this lock, never a worker.
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = (cas.to_vec(), identity.cloned());
    if let Some((_, backend)) = built.iter().find(|(built_for, _)| *built_for == key) {
        return Ok(backend.clone());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = if cas.is_empty() {
        Arc::clone(system_roots())
    } else {
        let mut roots = RootCertStore::empty();
        for (index, der) in cas.iter().enumerate() {
            roots.add(CertificateDer::from(der.clone())).map_err(|error| TlsConfigError::BackendCa { index, error })?;
        }
        Arc::new(roots)
    };
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    // The gateway's own certificate, for backends that ask for one (mTLS).
    let mut config = match identity {
        Some(identity) => {
            let (chain, key) = chain_and_key(identity);
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| TlsConfigError::Certificate { file: identity.source.clone(), error })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    let backend = BackendTls { config: Arc::new(config), id: NEXT_ID.fetch_add(1, Ordering::Relaxed) };
    if built.len() >= BACKEND_CONFIGS_KEPT_MAX {
        built.remove(0);
    }
    built.push((key, backend.clone()));
    Ok(backend)
}

/// The host's trusted CAs (`/etc/ssl/certs` and the other places OpenSSL looks), read once per
/// process, on the first snapshot's thread (never a worker).
fn system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if let Some(error) = found.errors.first() {
            tracing::warn!(%error, "some system CA certificates could not be read");
        }
        if added == 0 {
            tracing::warn!(
                "no system CA certificates found: https backends fail verification unless [tls] backend-ca-file is set"
            );
        }
        tracing::debug!(added, ignored, "system CA certificates for https backends");
        Arc::new(roots)
    })
}

fn certified_key(
    certificate: &TlsCertificate,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, TlsConfigError> {
    let (chain, key) = chain_and_key(certificate);
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|error| TlsConfigError::Certificate { file: certificate.source.clone(), error })
}

/// A certificate's chain and private key in rustls' types.
fn chain_and_key(certificate: &TlsCertificate) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = certificate.chain.iter().map(|der| CertificateDer::from(der.clone())).collect();
    let der = certificate.key.der.clone();
    let key = match certificate.key.format {
        KeyFormat::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
        KeyFormat::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
        KeyFormat::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
    };
    (chain, key)
}

/// Picks the certificate for a handshake from its SNI name (see [`NameTable`]).
#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
    names: NameTable,
    /// A handshake found no certificate at all (none configured): logged once per snapshot.
    missing_logged: AtomicBool,
}

impl SniResolver {
    fn new(certificates: &[TlsCertificate], provider: &rustls::crypto::CryptoProvider) -> Result<Self, TlsConfigError> {
        let keys = certificates
            .iter()
            .map(|certificate| certified_key(certificate, provider).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let names = NameTable::new(certificates.iter().map(|certificate| certificate.names.as_slice()));
        Ok(Self { keys, names, missing_logged: AtomicBool::new(false) })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = hello.server_name().and_then(|name| self.names.find(name)).unwrap_or(0);
        let key = self.keys.get(index).cloned();
        if key.is_none() && !self.missing_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "TLS handshake refused: the config has no [[tls.certificate]] (plain HTTP keeps serving; logged once per config generation)"
            );
        }
        key
    }
}

#[cfg(test)]
mod tests;
