//! One fetch of an OpenID provider's keys: the discovery document, then its `jwks_uri`, over
//! HTTP/1.1 (hyper's client; rustls with aws-lc-rs and the system's roots for `https://`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use portcullis_contract::jwt::{EcCurve, JwtKey, KeyMaterial, OPENID_KEYS_MAX, OpenIdKeySet};

/// One HTTP exchange (connect, request, whole body): a provider slower than this is down.
pub const FETCH_TIMEOUT_MS: u64 = 5_000;
/// A discovery document or key set larger than this is refused (real ones are a few KiB).
pub const DOCUMENT_BYTES_MAX: usize = 1024 * 1024;

/// Why a fetch failed (shown in `ctl status`; never holds a key).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: not a usable {what}: {reason}")]
    Document { url: String, what: &'static str, reason: String },
}

/// Fetches the discovery document at `url` and the key set it names.
pub async fn keys(url: &str) -> Result<OpenIdKeySet, FetchError> {
    let discovery = json(url, "OpenID configuration").await?;
    let document = |reason: &str| FetchError::Document {
        url: url.to_owned(),
        what: "OpenID configuration",
        reason: reason.to_owned(),
    };
    let jwks_uri =
        discovery.get("jwks_uri").and_then(serde_json::Value::as_str).ok_or_else(|| document("no jwks_uri"))?;
    let issuer = discovery.get("issuer").and_then(serde_json::Value::as_str).map(str::to_owned);
    let jwks = json(jwks_uri, "key set (JWKS)").await?;
    let keys = parse_jwks(&jwks).map_err(|reason| FetchError::Document {
        url: jwks_uri.to_owned(),
        what: "key set (JWKS)",
        reason,
    })?;
    Ok(OpenIdKeySet { url: url.to_owned(), issuer, keys })
}

/// GETs `url` and parses its body as JSON, within [`FETCH_TIMEOUT_MS`].
async fn json(url: &str, what: &'static str) -> Result<serde_json::Value, FetchError> {
    let http = |reason: String| FetchError::Http { url: url.to_owned(), reason };
    let body = tokio::time::timeout(Duration::from_millis(FETCH_TIMEOUT_MS), get(url))
        .await
        .map_err(|_| http(format!("no answer within {FETCH_TIMEOUT_MS} ms")))?
        .map_err(http)?;
    serde_json::from_slice(&body).map_err(|error| FetchError::Document {
        url: url.to_owned(),
        what,
        reason: error.to_string(),
    })
}

async fn get(url: &str) -> Result<Bytes, String> {
    let uri: Uri = url.parse().map_err(|error| format!("not a URL: {error}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("only http:// and https:// URLs can be fetched".to_owned()),
    };
    let host = uri.host().ok_or("the URL has no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp =
        tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|error| format!("connect: {error}"))?;
    let request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|error| error.to_string())?;
    if https {
        let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|error| error.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(client_config()?)
            .connect(name, tcp)
            .await
            .map_err(|error| format!("TLS: {error}"))?;
        exchange(TokioIo::new(tls), request).await
    } else {
        exchange(TokioIo::new(tcp), request).await
    }
}

async fn exchange<T>(io: TokioIo<T>, request: hyper::Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|error| format!("HTTP: {error}"))?;
    tokio::spawn(async move {
        // The connection ends with the exchange; its error, if any, is the exchange's.
        let _ = connection.await;
    });
    let response = sender.send_request(request).await.map_err(|error| format!("HTTP: {error}"))?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body = Limited::new(response.into_body(), DOCUMENT_BYTES_MAX)
        .collect()
        .await
        .map_err(|error| format!("body: {error}"))?;
    Ok(body.to_bytes())
}

/// The TLS client configuration: aws-lc-rs and the system's root certificates, built once.
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot parse is skipped, as browsers do.
                let _ = roots.add(certificate);
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|error| error.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// The signing keys of a JWKS (`{"keys": [...]}`): RSA, EC P-256/P-384 and Ed25519 keys not
/// marked for encryption; other keys are skipped. No usable key at all is an error.
pub fn parse_jwks(jwks: &serde_json::Value) -> Result<Vec<JwtKey>, String> {
    let entries = jwks.get("keys").and_then(serde_json::Value::as_array).ok_or("no \"keys\" array")?;
    let keys: Vec<JwtKey> = entries.iter().filter_map(jwk).take(OPENID_KEYS_MAX).collect();
    if keys.is_empty() && !entries.is_empty() {
        return Err("none of its keys is an RSA, EC (P-256, P-384) or Ed25519 signing key".to_owned());
    }
    Ok(keys)
}

fn jwk(entry: &serde_json::Value) -> Option<JwtKey> {
    let member = |name: &str| entry.get(name).and_then(serde_json::Value::as_str);
    let bytes = |name: &str| {
        let text = member(name)?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
    };
    if member("use").is_some_and(|usage| usage != "sig") {
        return None;
    }
    let material = match (member("kty")?, member("crv")) {
        ("RSA", _) => KeyMaterial::Rsa { n: bytes("n")?, e: bytes("e")? },
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let curve = if crv == "P-256" { EcCurve::P256 } else { EcCurve::P384 };
            KeyMaterial::Ec { curve, point: [vec![4], bytes("x")?, bytes("y")?].concat() }
        }
        ("OKP", Some("Ed25519")) => KeyMaterial::Ed25519(bytes("x")?),
        _ => return None,
    };
    Some(JwtKey { id: member("kid").map(str::to_owned), material })
}
