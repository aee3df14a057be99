//! `validate-jwt` and `validate-azure-ad-token` as compiled: where the token comes from, what it
//! must say, and the keys that may have signed it.
//!
//! Keys come from two places. Keys written in the policy (`<issuer-signing-keys>`, and
//! `certificate-id`, which control resolves from the config directory) travel inside the rule.
//! Keys behind `<openid-config url>` are fetched by control (never by a worker) and travel in
//! [`crate::model::Config::openid`]; a rule names the URLs it trusts and the data plane joins them
//! when it loads the snapshot.

use serde::{Deserialize, Serialize};

/// Signing keys one OpenID provider publishes, one URL per provider.
pub const OPENID_KEYS_MAX: usize = 64;
/// `<issuer-signing-keys>`, `<audiences>`, `<issuers>` and `<required-claims>` entries per policy.
pub const JWT_LIST_MAX: usize = 64;

/// One compiled `validate-jwt` (or `validate-azure-ad-token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtRule {
    /// `validate-jwt` or `validate-azure-ad-token`: `LastError.Source` and the key-miss report.
    pub policy: String,
    pub source: TokenSource,
    /// `failed-validation-httpcode` (default 401).
    pub status: u16,
    /// `failed-validation-error-message`; none: the message of the failure.
    pub message: Option<String>,
    pub require_expiration_time: bool,
    pub require_signed_tokens: bool,
    pub clock_skew_s: u32,
    /// `output-token-variable-name`: the `Jwt` is stored in this variable on success.
    pub output_variable: Option<String>,
    /// Keys written in the policy, tried in turn.
    pub keys: Vec<JwtKey>,
    /// `<openid-config url>`s whose keys (and issuer) are trusted as well.
    pub openid_urls: Vec<String>,
    /// `<audiences>`: any one must appear in `aud` (empty: not checked).
    pub audiences: Vec<String>,
    /// `<issuers>`: `iss` must be one of these (empty: not checked unless OpenID issuers apply).
    pub issuers: Vec<String>,
    pub required_claims: Vec<RequiredClaim>,
    /// `validate-azure-ad-token`'s extra rules.
    pub azure: Option<AzureRules>,
}

/// APIM's `failed-validation-httpcode` default.
pub const FAILED_VALIDATION_STATUS_DEFAULT: u16 = 401;

impl JwtRule {
    /// A rule of `policy` reading the token from `source`, with APIM's defaults: status 401, the
    /// failure's own message, `exp` and a signature required, no clock skew, and nothing else
    /// checked until keys, audiences, issuers or claims are added.
    pub fn new(policy: impl Into<String>, source: TokenSource) -> Self {
        Self {
            policy: policy.into(),
            source,
            status: FAILED_VALIDATION_STATUS_DEFAULT,
            message: None,
            require_expiration_time: true,
            require_signed_tokens: true,
            clock_skew_s: 0,
            output_variable: None,
            keys: Vec::new(),
            openid_urls: Vec::new(),
            audiences: Vec::new(),
            issuers: Vec::new(),
            required_claims: Vec::new(),
            azure: None,
        }
    }
}

/// Where the token is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenSource {
    /// `header-name`, with `require-scheme` (`Bearer`) when given.
    Header { name: String, scheme: Option<String> },
    /// `query-parameter-name`.
    Query(String),
    /// `token-value`: an expression whose value the op pops.
    Value,
}

/// One `<key>`: its optional `id` (matched against the token's `kid`) and its material.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JwtKey {
    pub id: Option<String>,
    pub material: KeyMaterial,
}

/// A verification key in the forms `jsonwebtoken` takes.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyMaterial {
    /// An HMAC secret (HS256/384/512). A secret: `Debug` redacts it.
    Symmetric(Vec<u8>),
    /// An RSA public key by modulus and exponent (big-endian bytes).
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An RSA public key as PKCS#1 `RSAPublicKey` DER (from a certificate).
    RsaDer(Vec<u8>),
    /// An EC public key: the uncompressed point `04 || x || y`, and its curve.
    Ec { curve: EcCurve, point: Vec<u8> },
    /// An Ed25519 public key (32 bytes).
    Ed25519(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EcCurve {
    P256,
    P384,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey").field("id", &self.id).field("material", &self.material).finish()
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Symmetric(secret) => write!(f, "Symmetric({} bytes redacted)", secret.len()),
            Self::Rsa { n, .. } => write!(f, "Rsa({} bits)", n.len() * 8),
            Self::RsaDer(der) => write!(f, "RsaDer({} bytes)", der.len()),
            Self::Ec { curve, .. } => write!(f, "Ec({curve:?})"),
            Self::Ed25519(_) => f.write_str("Ed25519"),
        }
    }
}

/// One `<claim>` of `<required-claims>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredClaim {
    pub name: String,
    /// `match="all"` (the default): every value must be present; `any`: one is enough.
    pub match_all: bool,
    /// `separator`: a claim value that is one string is split on it first.
    pub separator: Option<String>,
    /// Empty: the claim only has to be present.
    pub values: Vec<String>,
}

/// `validate-azure-ad-token`'s rules besides the shared ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureRules {
    /// `tenant-id`: the token's `tid`, and the issuers `{authority}/{tenant}/v2.0` and
    /// `https://sts.windows.net/{tenant}/`.
    pub tenant_id: String,
    /// `<backend-application-ids>`: each is also an allowed audience (as is `api://{id}`).
    pub backend_application_ids: Vec<String>,
    /// `<client-application-ids>`: `azp` (v2) or `appid` (v1) must be one of these (empty: any).
    pub client_application_ids: Vec<String>,
}

/// `[jwt]` of `gateway.toml` as the data plane needs it, and the fetched OpenID keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSettings {
    /// Whether workers remember tokens whose signature they verified (`[jwt] token-cache`,
    /// default true; off only to measure what it saves).
    pub token_cache: bool,
    /// The keys of each `<openid-config url>` control fetched at least once; a URL whose fetch
    /// never succeeded is absent.
    pub openid: Vec<OpenIdKeySet>,
    /// Control re-fetches every OpenID configuration this often (`[jwt] openid-refresh-s`).
    pub openid_refresh_s: u32,
    /// ... and after a failure or an unknown `kid`, at most this often (`[jwt] openid-refetch-min-s`).
    pub openid_refetch_min_s: u32,
}

/// APIM's refresh of OpenID configurations: "every 1 hour".
pub const OPENID_REFRESH_S_DEFAULT: u32 = 3600;
/// APIM's limit on re-fetches after a failure or an unknown `kid`: "at most once per 5 min".
pub const OPENID_REFETCH_MIN_S_DEFAULT: u32 = 300;

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            token_cache: true,
            openid: Vec::new(),
            openid_refresh_s: OPENID_REFRESH_S_DEFAULT,
            openid_refetch_min_s: OPENID_REFETCH_MIN_S_DEFAULT,
        }
    }
}

/// The keys control fetched for one `<openid-config url>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenIdKeySet {
    /// The configuration URL as the policy wrote it.
    pub url: String,
    /// The discovery document's `issuer`.
    pub issuer: Option<String>,
    /// The JWKS's keys that `jsonwebtoken` can use (others are skipped when fetched).
    pub keys: Vec<JwtKey>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let key = JwtKey { id: Some("k".into()), material: KeyMaterial::Symmetric(b"super-secret".to_vec()) };
        let shown = format!("{key:?}");
        assert!(!shown.contains("super") && !shown.contains("115, 117"), "{shown}");
        assert!(shown.contains("12 bytes redacted"), "{shown}");
    }
}
