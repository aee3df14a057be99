//! `[tls]` and `[[tls.certificate]]` of `gateway.toml`: reads the PEM files they name, checks
//! them (chain and key parse, key matches certificate, validity dates) and compiles them into
//! `contract::tls::TlsSettings` (DER bytes and the DNS names each certificate serves), with the
//! CAs that client certificates (`client-ca-file`) and `https://` backends (`backend-ca-file`)
//! are verified against.
//!
//! Every problem points at the `cert-file`/`key-file`/`client-ca-file`/`backend-ca-file` value in `gateway.toml`
//! and names the file it read, what is wrong and what to do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_contract::tls::{ClientAuth, KeyFormat, NamedCertificate, PrivateKey, TlsCertificate, TlsSettings};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostics, SourceFile};

/// A PEM file of certificates or a key is a few kilobytes; a CA bundle maybe a few hundred.
pub const PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Certificates that expire within this many days are reported at load (a warning, not an
/// error: the gateway still serves them, but someone must renew soon).
pub const EXPIRY_WARNING_DAYS: i64 = 14;
/// The directory in a config directory that holds certificates and keys (not walked as config).
pub const CERTS_DIR: &str = "certs";

/// `[tls]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct TlsTable {
    #[serde(default)]
    certificate: Vec<CertificateEntry>,
    client_auth: Option<Spanned<ClientAuthName>>,
    client_ca_file: Option<Spanned<String>>,
    backend_ca_file: Option<Spanned<String>>,
    /// The certificate presented to `https://` backends that ask for one (mTLS), and its key.
    backend_client_cert_file: Option<Spanned<String>>,
    backend_client_key_file: Option<Spanned<String>>,
    /// Certificate revocation lists (PEM or DER) of the client CAs.
    #[serde(default)]
    client_crl_files: Vec<Spanned<String>>,
    /// APIM's certificate entities, named by policies.
    #[serde(default)]
    named_certificate: Vec<NamedEntry>,
}

/// One `[[tls.named-certificate]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct NamedEntry {
    id: Spanned<String>,
    cert_file: Spanned<String>,
    /// Needed only to present the certificate to backends (`authentication-certificate`).
    key_file: Option<Spanned<String>>,
}

/// One `[[tls.certificate]]` (and the backend client identity, which has the same two files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CertificateEntry {
    cert_file: Spanned<String>,
    key_file: Spanned<String>,
    /// Client authentication for handshakes that get this certificate (by SNI), instead of
    /// `[tls] client-auth`.
    #[serde(default)]
    client_auth: Option<Spanned<ClientAuthName>>,
}

/// `client-auth` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ClientAuthName {
    None,
    Optional,
    Required,
    Negotiate,
}

/// Compiles the table; `dir` is the config directory the file paths are relative to.
pub(crate) fn compile(table: &TlsTable, source: &SourceFile, dir: &Path, diagnostics: &mut Diagnostics) -> TlsSettings {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let mut settings = TlsSettings::default();
    for entry in &table.certificate {
        if let Some(mut certificate) = certificate(entry, false, source, dir, &provider, diagnostics) {
            certificate.client_auth = entry.client_auth.as_ref().map(|auth| client_auth(*auth.get_ref()));
            settings.certificates.push(certificate);
        }
    }
    let default_auth = table.client_auth.as_ref().map_or(ClientAuthName::None, |auth| *auth.get_ref());
    settings.client_auth = client_auth(default_auth);
    // Where client authentication is asked for: `[tls]` itself, or certificates of their own.
    let asked: Vec<&Spanned<ClientAuthName>> = table
        .client_auth
        .iter()
        .chain(table.certificate.iter().filter_map(|entry| entry.client_auth.as_ref()))
        .filter(|auth| *auth.get_ref() != ClientAuthName::None)
        .collect();
    match (&table.client_ca_file, asked.first()) {
        (Some(file), Some(_)) => settings.client_cas = ca_file(file, source, dir, diagnostics),
        (Some(file), None) => diagnostics.push(source.error(
            file.span(),
            "client-ca-file is set but client-auth is \"none\": set client-auth = \"optional\", \"required\" or \"negotiate\", or remove client-ca-file",
        )),
        (None, Some(auth)) if *auth.get_ref() == ClientAuthName::Negotiate => {}
        (None, Some(auth)) => diagnostics.push(source.error(
            auth.span(),
            "client authentication needs the CA that signs client certificates: add client-ca-file = \"certs/ca.pem\" to [tls]",
        )),
        (None, None) => {}
    }
    if let Some(file) = &table.backend_ca_file {
        settings.backend_cas = ca_file(file, source, dir, diagnostics);
    }
    settings.client_crls =
        table.client_crl_files.iter().filter_map(|file| crl_file(file, source, dir, diagnostics)).collect();
    settings.named = named_certificates(&table.named_certificate, source, dir, diagnostics);
    settings.backend_client = client_identity(
        ClientIdentityKeys {
            cert_file: table.backend_client_cert_file.as_ref(),
            key_file: table.backend_client_key_file.as_ref(),
            names: ("backend-client-cert-file", "backend-client-key-file"),
        },
        source,
        dir,
        diagnostics,
    );
    if default_auth != ClientAuthName::None && table.certificate.is_empty() {
        if let Some(auth) = &table.client_auth {
            diagnostics.push(
                source
                    .error(auth.span(), "client authentication needs a server certificate: add a [[tls.certificate]]"),
            );
        }
    }
    settings
}

/// A client identity's two file keys as written (either may be missing) and their names in
/// messages: `[tls]`'s `backend-client-*` or a backend's `tls-client-*`.
pub(crate) struct ClientIdentityKeys<'a> {
    pub(crate) cert_file: Option<&'a Spanned<String>>,
    pub(crate) key_file: Option<&'a Spanned<String>>,
    pub(crate) names: (&'static str, &'static str),
}

/// The certificate the gateway presents to backends that ask for one, from a certificate file
/// and a key file that must come together; `None` when neither is set or either is wrong (with
/// file:line:col in `diagnostics`).
pub(crate) fn client_identity(
    keys: ClientIdentityKeys<'_>,
    source: &SourceFile,
    dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<TlsCertificate> {
    let (cert_name, key_name) = keys.names;
    match (keys.cert_file, keys.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let entry =
                CertificateEntry { cert_file: cert_file.clone(), key_file: key_file.clone(), client_auth: None };
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            certificate(&entry, true, source, dir, &provider, diagnostics)
        }
        (Some(file), None) => {
            let message = format!("{cert_name} needs its key: add {key_name} = \"certs/client.key\"");
            diagnostics.push(source.error(file.span(), message));
            None
        }
        (None, Some(file)) => {
            let message = format!("{key_name} needs its certificate: add {cert_name} = \"certs/client.pem\"");
            diagnostics.push(source.error(file.span(), message));
            None
        }
        (None, None) => None,
    }
}

fn client_auth(name: ClientAuthName) -> ClientAuth {
    match name {
        ClientAuthName::None => ClientAuth::None,
        ClientAuthName::Optional => ClientAuth::Optional,
        ClientAuthName::Required => ClientAuth::Required,
        ClientAuthName::Negotiate => ClientAuth::Negotiate,
    }
}

/// `client`: the gateway's identity towards backends (serves no name, so no SAN warning).
fn certificate(
    entry: &CertificateEntry,
    client: bool,
    source: &SourceFile,
    dir: &Path,
    provider: &rustls::crypto::CryptoProvider,
    diagnostics: &mut Diagnostics,
) -> Option<TlsCertificate> {
    let cert_path = dir.join(entry.cert_file.get_ref());
    let key_path = dir.join(entry.key_file.get_ref());
    let chain = read_pem(&cert_path).and_then(|bytes| parse_chain(&bytes));
    let chain = match chain {
        Ok(chain) => Some(chain),
        Err(problem) => {
            diagnostics.push(source.error(entry.cert_file.span(), format!("{}: {problem}", cert_path.display())));
            None
        }
    };
    let key = match read_pem(&key_path).and_then(|bytes| parse_key(&bytes)) {
        Ok(key) => Some(key),
        Err(problem) => {
            diagnostics.push(source.error(entry.key_file.span(), format!("{}: {problem}", key_path.display())));
            None
        }
    };
    let (chain, key) = (chain?, key?);
    if let Err(problem) = check_pair(&chain, &key, provider) {
        diagnostics.push(source.error(
            entry.key_file.span(),
            format!("{} does not go with {}: {problem}", key_path.display(), cert_path.display()),
        ));
        return None;
    }
    let end_entity = chain.first()?;
    let now_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let names = match inspect(end_entity, now_unix) {
        Ok(inspected) => {
            // The missing-SAN warning is about serving names, which a client identity does not.
            let warnings = inspected.warnings.iter().filter(|warning| !client || !warning.contains("alternative name"));
            for warning in warnings {
                tracing::warn!("{}: {warning}", cert_path.display());
            }
            if client { Vec::new() } else { inspected.names }
        }
        Err(problem) => {
            diagnostics.push(source.error(entry.cert_file.span(), format!("{}: {problem}", cert_path.display())));
            return None;
        }
    };
    Some(TlsCertificate {
        source: cert_path.display().to_string(),
        chain: chain.iter().map(|der| der.as_ref().to_vec()).collect(),
        key: private_key(&key),
        names,
        client_auth: None,
    })
}

/// The CA certificates of a `client-ca-file` or `backend-ca-file`, checked as trust anchors.
fn ca_file(file: &Spanned<String>, source: &SourceFile, dir: &Path, diagnostics: &mut Diagnostics) -> Vec<Vec<u8>> {
    let path = dir.join(file.get_ref());
    let parsed = read_pem(&path).and_then(|bytes| parse_chain(&bytes)).and_then(|cas| {
        let mut roots = rustls::RootCertStore::empty();
        for ca in &cas {
            roots
                .add(ca.clone())
                .map_err(|error| format!("a CA certificate is not usable as a trust anchor: {error}"))?;
        }
        Ok(cas)
    });
    match parsed {
        Ok(cas) => cas.iter().map(|der| der.as_ref().to_vec()).collect(),
        Err(problem) => {
            diagnostics.push(source.error(file.span(), format!("{}: {problem}", path.display())));
            Vec::new()
        }
    }
}

/// A `client-crl-files` entry: one certificate revocation list, PEM (`X509 CRL`) or DER.
fn crl_file(file: &Spanned<String>, source: &SourceFile, dir: &Path, diagnostics: &mut Diagnostics) -> Option<Vec<u8>> {
    use rustls::pki_types::CertificateRevocationListDer;
    let path = dir.join(file.get_ref());
    let parsed = read_pem(&path).and_then(|bytes| {
        let der = match CertificateRevocationListDer::from_pem_slice(&bytes) {
            Ok(der) => der.as_ref().to_vec(),
            Err(_) => bytes,
        };
        webpki::OwnedCertRevocationList::from_der(&der).map(|_| der).map_err(|error| {
            format!("not a certificate revocation list in PEM (-----BEGIN X509 CRL-----) or DER ({error:?})")
        })
    });
    match parsed {
        Ok(der) => Some(der),
        Err(problem) => {
            diagnostics.push(source.error(file.span(), format!("{}: {problem}", path.display())));
            None
        }
    }
}

/// `[[tls.named-certificate]]`: each id once, each certificate readable, each key its
/// certificate's.
fn named_certificates(
    entries: &[NamedEntry],
    source: &SourceFile,
    dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Vec<NamedCertificate> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let mut named: Vec<NamedCertificate> = Vec::new();
    for entry in entries {
        let id = entry.id.get_ref();
        if id.is_empty() || named.iter().any(|other| other.id == *id) {
            let problem = if id.is_empty() { "a named certificate needs an id" } else { "this id is already used" };
            diagnostics.push(source.error(entry.id.span(), problem));
            continue;
        }
        let identity = entry.key_file.as_ref().map(|key_file| {
            let pair =
                CertificateEntry { cert_file: entry.cert_file.clone(), key_file: key_file.clone(), client_auth: None };
            certificate(&pair, true, source, dir, &provider, diagnostics)
        });
        let (chain, key) = match identity {
            Some(Some(identity)) => (identity.chain, Some(identity.key)),
            Some(None) => continue,
            None => {
                let path = dir.join(entry.cert_file.get_ref());
                match read_pem(&path).and_then(|bytes| parse_chain(&bytes)) {
                    Ok(chain) => (chain.iter().map(|der| der.as_ref().to_vec()).collect(), None),
                    Err(problem) => {
                        diagnostics
                            .push(source.error(entry.cert_file.span(), format!("{}: {problem}", path.display())));
                        continue;
                    }
                }
            }
        };
        let Some(end_entity) = chain.first() else { continue };
        named.push(NamedCertificate {
            id: id.clone(),
            thumbprint: thumbprint(end_entity),
            source: dir.join(entry.cert_file.get_ref()).display().to_string(),
            chain,
            key,
        });
    }
    named
}

/// .NET's `Thumbprint`: SHA-1 of the DER, upper-case hex.
pub(crate) fn thumbprint(der: &[u8]) -> String {
    use sha1::Digest as _;
    sha1::Sha1::digest(der).iter().map(|byte| format!("{byte:02X}")).collect()
}

/// Reads a PEM file of at most [`PEM_FILE_BYTES_MAX`].
fn read_pem(path: &PathBuf) -> Result<Vec<u8>, String> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.len() > PEM_FILE_BYTES_MAX => {
            Err(format!("the file is larger than {PEM_FILE_BYTES_MAX} bytes; is it really a PEM file?"))
        }
        Ok(_) => std::fs::read(path).map_err(|error| format!("cannot read the file: {error}")),
        Err(error) => Err(format!("cannot read the file: {error} (paths are relative to the config directory)")),
    }
}

/// Every `CERTIFICATE` block of a PEM file, in order (end entity first for a chain).
pub(crate) fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("not a valid PEM certificate file ({error})"))?;
    if chain.is_empty() {
        return Err("no -----BEGIN CERTIFICATE----- block found: expected PEM certificates (for a server \
             certificate, its chain with the end entity first)"
            .to_owned());
    }
    Ok(chain)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => "no private key found: expected a PEM block -----BEGIN \
             PRIVATE KEY----- (PKCS#8), -----BEGIN RSA PRIVATE KEY----- (PKCS#1) or -----BEGIN EC PRIVATE KEY----- (SEC1)"
            .to_owned(),
        error => format!("not a valid PEM private key ({error})"),
    })
}

/// Checks that rustls can sign with `key` and that it is the key of the end-entity certificate.
pub(crate) fn check_pair(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(), String> {
    let signing_key = provider.key_provider.load_private_key(key.clone_key()).map_err(|error| {
        format!("the private key is not usable ({error}); supported: RSA, ECDSA P-256/P-384, Ed25519")
    })?;
    let certified = rustls::sign::CertifiedKey::new(chain.to_vec(), Arc::clone(&signing_key));
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err("the private key is not the certificate's key: use the key file generated with this certificate"
                .to_owned())
        }
        Err(error) => Err(format!("the certificate cannot be used ({error})")),
    }
}

/// The contract's form of a parsed key.
fn private_key(key: &PrivateKeyDer<'static>) -> PrivateKey {
    let (format, der) = match key {
        PrivateKeyDer::Pkcs1(der) => (KeyFormat::Pkcs1, der.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(der) => (KeyFormat::Sec1, der.secret_sec1_der()),
        PrivateKeyDer::Pkcs8(der) => (KeyFormat::Pkcs8, der.secret_pkcs8_der()),
        // The enum is non-exhaustive; from_pem_slice yields only the three above.
        _ => (KeyFormat::Pkcs8, &[][..]),
    };
    PrivateKey { format, der: der.to_vec() }
}

/// What a certificate says about itself that the gateway uses.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Inspected {
    /// Lower-case DNS subject alternative names.
    pub(crate) names: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

/// Reads an end-entity certificate's DNS names and validity at `now_unix` (seconds). Expired is
/// an error (every client would refuse it); not yet valid, expiring soon or without DNS names
/// are warnings.
pub(crate) fn inspect(der: &CertificateDer<'_>, now_unix: i64) -> Result<Inspected, String> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let (_, certificate) = X509Certificate::from_der(der.as_ref())
        .map_err(|error| format!("the certificate is not valid X.509 ({error})"))?;
    let validity = certificate.validity();
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    if now_unix > not_after {
        return Err(format!(
            "the certificate expired on {}: renew it (clients refuse expired certificates)",
            validity.not_after
        ));
    }
    let mut warnings = Vec::new();
    if now_unix < not_before {
        warnings
            .push(format!("the certificate is not valid before {}: clients refuse it until then", validity.not_before));
    }
    let days_left = (not_after - now_unix) / 86_400;
    if days_left < EXPIRY_WARNING_DAYS {
        warnings.push(format!("the certificate expires in {days_left} days ({}): renew it", validity.not_after));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(name) = name {
                names.push(name.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        warnings.push(
            "the certificate has no DNS subject alternative name: it serves only as the default certificate \
             (clients check the name against the SANs)"
                .to_owned(),
        );
    }
    Ok(Inspected { names, warnings })
}

#[cfg(test)]
mod tests;
