//! TLS termination settings a snapshot carries: certificates (DER) with the names they serve,
//! and client authentication. Control reads and checks the PEM files; the data plane builds its
//! `rustls::ServerConfig` from these bytes, so it never reads the config directory.

use serde::{Deserialize, Serialize};

/// `[tls]` and `[[tls.certificate]]` of `gateway.toml`, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSettings {
    /// In file order; the first is the default (no SNI, or a name no certificate serves).
    pub certificates: Vec<TlsCertificate>,
    pub client_auth: ClientAuth,
    /// DER certificates of the CAs client certificates must chain to (empty when
    /// `client_auth` is [`ClientAuth::None`]).
    pub client_cas: Vec<Vec<u8>>,
    /// DER certificates of the CAs `https://` backends' certificates must chain to; empty: the
    /// host's system roots.
    pub backend_cas: Vec<Vec<u8>>,
    /// The certificate the gateway presents to `https://` backends that ask for one (mTLS);
    /// `names` is empty (it serves no name).
    pub backend_client: Option<TlsCertificate>,
    /// DER certificate revocation lists of the client CAs (`client-crl-files`): the handshake
    /// refuses revoked certificates when it verifies the chain, and `validate-client-certificate
    /// validate-revocation` reads them.
    pub client_crls: Vec<Vec<u8>>,
    /// `[[tls.named-certificate]]`: APIM's certificate entities, which policies name by
    /// `certificate-id` or thumbprint (`authentication-certificate`, `validate-client-certificate`
    /// `issuer-certificate-id`, `validate-jwt` signing keys).
    pub named: Vec<NamedCertificate>,
}

/// One named certificate: its id, thumbprint and chain, and its key when it has one (a client
/// certificate presented to backends; a CA or a signing certificate has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCertificate {
    pub id: String,
    /// SHA-1 of the end entity's DER, upper-case hex (.NET's `Thumbprint`).
    pub thumbprint: String,
    /// The `cert-file` it came from, for logs.
    pub source: String,
    /// DER certificates, end entity first.
    pub chain: Vec<Vec<u8>>,
    /// Its private key (`key-file`), needed to present it to backends.
    pub key: Option<PrivateKey>,
}

impl NamedCertificate {
    /// The certificate as a client identity towards backends; `None` without a key.
    pub fn identity(&self) -> Option<TlsCertificate> {
        Some(TlsCertificate {
            source: self.source.clone(),
            chain: self.chain.clone(),
            key: self.key.clone()?,
            names: Vec::new(),
            client_auth: None,
        })
    }
}

impl TlsSettings {
    /// The named certificate `id`, or the one whose thumbprint is `thumbprint` (either case).
    pub fn named_certificate(&self, id: Option<&str>, thumbprint: Option<&str>) -> Option<&NamedCertificate> {
        self.named.iter().find(|named| {
            id.is_some_and(|id| named.id == id)
                || thumbprint.is_some_and(|thumbprint| named.thumbprint.eq_ignore_ascii_case(thumbprint))
        })
    }
}

/// One certificate chain, its private key and the DNS names it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsCertificate {
    /// The `cert-file` it came from, for logs.
    pub source: String,
    /// DER certificates, end entity first.
    pub chain: Vec<Vec<u8>>,
    pub key: PrivateKey,
    /// Lower-case DNS names from the end entity's subject alternative names; `*.example.com`
    /// serves exactly one label in place of the `*`.
    pub names: Vec<String>,
    /// Client authentication for handshakes that get this certificate, when it differs from
    /// [`TlsSettings::client_auth`] (mTLS per host); `None` for that default, and for a client
    /// identity.
    pub client_auth: Option<ClientAuth>,
}

/// A private key's DER encoding. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateKey {
    pub format: KeyFormat,
    pub der: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({:?}, {} bytes redacted)", self.format, self.der.len())
    }
}

/// Which structure [`PrivateKey::der`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyFormat {
    /// `BEGIN PRIVATE KEY`.
    Pkcs8,
    /// `BEGIN RSA PRIVATE KEY`.
    Pkcs1,
    /// `BEGIN EC PRIVATE KEY`.
    Sec1,
}

/// Whether clients present certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientAuth {
    /// Not asked for.
    #[default]
    None,
    /// Asked for; a client without one is let in, one with an unverifiable one is refused.
    Optional,
    /// Required: a client without a certificate signed by a configured CA fails the handshake.
    Required,
    /// APIM's "negotiate client certificate": asked for, and any certificate the client proves it
    /// holds the key of is let in, trusted or not; `validate-client-certificate` (or an expression
    /// on `context.Request.Certificate`) decides per API.
    Negotiate,
}

impl TlsSettings {
    /// Whether the cross-field rules hold (control guarantees them; the data plane checks again).
    pub fn check(&self) -> Result<(), TlsSettingsError> {
        if matches!(self.client_auth, ClientAuth::Optional | ClientAuth::Required) && self.client_cas.is_empty() {
            return Err(TlsSettingsError::NoClientCa);
        }
        if let Some(certificate) = self.certificates.iter().find(|c| c.chain.is_empty()) {
            return Err(TlsSettingsError::EmptyChain { file: certificate.source.clone() });
        }
        Ok(())
    }
}

/// A [`TlsSettings`] rule that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSettingsError {
    #[error("client authentication is on but no client CA certificate is configured")]
    NoClientCa,
    #[error("certificate {file} has an empty chain")]
    EmptyChain { file: String },
}
