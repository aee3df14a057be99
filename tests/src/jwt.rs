//! JWTs for the tests and the `jwt` bench scenario: tokens signed with the fixture keys
//! (`tests/fixtures/jwt`), their public keys as JWKs and policy `<key>`s, and a loopback OpenID
//! provider (discovery document and JWKS over real HTTP) whose keys a test can rotate.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

use crate::backend::{Reply, ScriptedBackend};

/// The fixture directory.
pub fn fixtures() -> std::path::PathBuf {
    crate::bins::repo_root().join("tests/fixtures/jwt")
}

/// The private key `name` (`rsa-a`, `rsa-b`, `ec256`, `ec384`, `ed25519`) for signing.
pub fn private_key(name: &str) -> EncodingKey {
    let pem = std::fs::read(fixtures().join(format!("{name}.pem"))).expect("fixture key");
    let der = PrivateKeyDer::from_pem_slice(&pem).expect("PEM key");
    match name {
        "rsa-a" | "rsa-b" => EncodingKey::from_rsa_der(der.secret_der()),
        "ec256" | "ec384" => EncodingKey::from_ec_der(der.secret_der()),
        _ => EncodingKey::from_ed_der(der.secret_der()),
    }
}

/// The public key `name` as a JWK (`kty`, `n`/`e` or `crv`/`x`/`y`) with `kid`.
pub fn jwk(name: &str, kid: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("public.json")).expect("public.json");
    let all: serde_json::Value = serde_json::from_str(&text).expect("public.json is JSON");
    let mut jwk = all[name].clone();
    jwk["kid"] = kid.into();
    jwk["use"] = "sig".into();
    jwk
}

/// A token signed by `key` with `algorithm`, `kid` in its header.
pub fn sign(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign a token")
}

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A loopback OpenID provider: `GET {prefix}/.well-known/openid-configuration` answers the
/// discovery document (issuer `http://{addr}{prefix}`, `jwks_uri` `http://{addr}{prefix}/keys`),
/// `GET {prefix}/keys` the current key set. [`Issuer::rotate`] replaces the keys; [`Issuer::fail`]
/// makes every answer a 503 (control must keep the last good keys).
#[derive(Debug, Clone)]
pub struct Issuer {
    pub backend: ScriptedBackend,
    pub prefix: String,
    keys: Arc<Mutex<Vec<serde_json::Value>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Issuer {
    pub fn start(prefix: &str, keys: Vec<serde_json::Value>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the issuer");
        let addr = listener.local_addr().expect("issuer address");
        let keys = Arc::new(Mutex::new(keys));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (served, down, prefix_owned) = (Arc::clone(&keys), Arc::clone(&failing), prefix.to_owned());
        let backend = ScriptedBackend::on(listener, move |request| {
            if down.load(std::sync::atomic::Ordering::Relaxed) {
                return Reply::new(503).body("down");
            }
            let base = format!("http://{addr}{prefix_owned}");
            let json = |value: serde_json::Value| {
                Reply::new(200).header("Content-Type", "application/json").body(value.to_string())
            };
            if request.target == format!("{prefix_owned}/.well-known/openid-configuration") {
                json(serde_json::json!({ "issuer": base, "jwks_uri": format!("{base}/keys") }))
            } else if request.target == format!("{prefix_owned}/keys") {
                json(serde_json::json!({ "keys": *served.lock().expect("keys") }))
            } else {
                Reply::new(404)
            }
        });
        Self { backend, prefix: prefix.to_owned(), keys, failing }
    }

    /// The discovery document's URL.
    pub fn url(&self) -> String {
        format!("http://{}{}/.well-known/openid-configuration", self.backend.addr, self.prefix)
    }

    /// The `issuer` the discovery document names.
    pub fn issuer(&self) -> String {
        format!("http://{}{}", self.backend.addr, self.prefix)
    }

    /// Replaces the published keys.
    pub fn rotate(&self, keys: Vec<serde_json::Value>) {
        *self.keys.lock().expect("keys") = keys;
    }

    /// Makes every answer a 503 (or normal again).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times the key set was fetched.
    pub fn key_fetches(&self) -> usize {
        self.backend.requests_to(&format!("{}/keys", self.prefix)).len()
    }
}
