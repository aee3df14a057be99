//! One token request to the configured source (the instance metadata service, Entra's token
//! endpoint for workload identity, or an OAuth 2.0 issuer) over HTTP/1.1: hyper's client, rustls
//! with aws-lc-rs and the system's roots for `https://`. Runs on the identity thread only.
//! Errors name the URL, the status and the OAuth `error` code, never a token or a secret.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use portcullis_contract::identity::{AUTHORITY_DEFAULT, TokenSource};

use crate::http::url::{Coding, percent_encode};

/// One exchange (connect, request, whole answer): a token source slower than this is down.
pub const FETCH_TIMEOUT_MS: u64 = 5_000;
/// A token response larger than this is refused (real ones are 1 to 4 KiB).
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// The lifetime assumed when a response names none (Entra's default is one hour).
const LIFETIME_S_DEFAULT: i64 = 3600;
/// The instance metadata service's API version (the one every Azure SDK sends).
const IMDS_API_VERSION: &str = "2018-02-01";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A token and how long it lives.
pub struct Fetched {
    pub value: String,
    pub lifetime_s: i64,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fetched({} bytes redacted, {} s)", self.value.len(), self.lifetime_s)
    }
}

/// Why a token could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: status {status}{detail}")]
    Status { url: String, status: u16, detail: String },
    #[error("{url}: not a token response: {reason}")]
    Document { url: String, reason: String },
    #[error("{0}")]
    Setup(String),
}

/// Fetches a token for `resource` (and the user-assigned identity `client_id`, when given).
pub async fn token(source: &TokenSource, resource: &str, client_id: Option<&str>) -> Result<Fetched, FetchError> {
    match source {
        TokenSource::Imds { endpoint } => {
            let separator = if endpoint.contains('?') { '&' } else { '?' };
            let mut url = format!(
                "{endpoint}{separator}api-version={IMDS_API_VERSION}&resource={}",
                percent_encode(resource.as_bytes(), Coding::Rfc3986)
            );
            if let Some(client_id) = client_id {
                url.push_str(&format!("&client_id={}", percent_encode(client_id.as_bytes(), Coding::Rfc3986)));
            }
            exchange(&url, None, &[("Metadata", "true")]).await
        }
        TokenSource::WorkloadIdentity { authority, tenant_id, client_id: configured, token_file } => {
            let setting = |value: &Option<String>, variable: &str| {
                value.clone().or_else(|| std::env::var(variable).ok()).filter(|value| !value.trim().is_empty())
            };
            let missing = |what: &str, variable: &str| {
                FetchError::Setup(format!("workload identity: no {what} ([managed-identity] or {variable})"))
            };
            let authority = setting(authority, "AZURE_AUTHORITY_HOST").unwrap_or_else(|| AUTHORITY_DEFAULT.to_owned());
            let tenant =
                setting(tenant_id, "AZURE_TENANT_ID").ok_or_else(|| missing("tenant-id", "AZURE_TENANT_ID"))?;
            let client = client_id
                .map(str::to_owned)
                .or_else(|| setting(configured, "AZURE_CLIENT_ID"))
                .ok_or_else(|| missing("client-id", "AZURE_CLIENT_ID"))?;
            let file = setting(token_file, "AZURE_FEDERATED_TOKEN_FILE")
                .ok_or_else(|| missing("token-file", "AZURE_FEDERATED_TOKEN_FILE"))?;
            // Read at every exchange: the kubelet rotates the file.
            let assertion = std::fs::read_to_string(&file)
                .map_err(|error| FetchError::Setup(format!("workload identity: cannot read {file}: {error}")))?;
            let url = format!("{}/{tenant}/oauth2/v2.0/token", authority.trim_end_matches('/'));
            let body = form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.trim()),
                ("scope", &scope("{resource}/.default", resource)),
            ]);
            exchange(&url, Some(body), &[]).await
        }
        TokenSource::ClientCredentials { token_url, client_id, client_secret, scope: template } => {
            let body = form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("scope", &scope(template, resource)),
            ]);
            exchange(token_url, Some(body), &[]).await
        }
    }
}

/// The scope template with `{resource}` replaced (without its trailing `/`).
pub fn scope(template: &str, resource: &str) -> String {
    template.replace("{resource}", resource.trim_end_matches('/'))
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", percent_encode(value.as_bytes(), Coding::Form)))
        .collect::<Vec<_>>()
        .join("&")
}

/// GETs `url` (or POSTs the form `body`) within [`FETCH_TIMEOUT_MS`] and reads the token.
async fn exchange(url: &str, body: Option<String>, headers: &[(&str, &str)]) -> Result<Fetched, FetchError> {
    let shown = shown_url(url);
    let http = |reason: String| FetchError::Http { url: shown.clone(), reason };
    let (status, answer) = tokio::time::timeout(Duration::from_millis(FETCH_TIMEOUT_MS), request(url, body, headers))
        .await
        .map_err(|_| http(format!("no answer within {FETCH_TIMEOUT_MS} ms")))?
        .map_err(http)?;
    let json: Option<serde_json::Value> = serde_json::from_slice(&answer).ok();
    if !(200..300).contains(&status) {
        let code = json.as_ref().and_then(|json| json.get("error")).and_then(serde_json::Value::as_str);
        let detail = code.map(|code| format!(" ({code})")).unwrap_or_default();
        return Err(FetchError::Status { url: shown, status, detail });
    }
    let document = |reason: &str| FetchError::Document { url: shown.clone(), reason: reason.to_owned() };
    let json = json.ok_or_else(|| document("not JSON"))?;
    parse(&json).ok_or_else(|| document("no access_token"))
}

/// `access_token` and its lifetime: `expires_in` (a number, or IMDS's numeric string), else
/// `expires_on` (Unix seconds) from now, else an hour.
pub fn parse(json: &serde_json::Value) -> Option<Fetched> {
    let value = json.get("access_token")?.as_str().filter(|token| !token.is_empty())?.to_owned();
    let seconds = |name: &str| match json.get(name)? {
        serde_json::Value::Number(number) => number.as_i64(),
        serde_json::Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    };
    let lifetime_s = seconds("expires_in")
        .or_else(|| seconds("expires_on").map(|on| on - chrono::Utc::now().timestamp()))
        .unwrap_or(LIFETIME_S_DEFAULT);
    Some(Fetched { value, lifetime_s })
}

/// The URL without its query (an IMDS URL's query names the resource and client, no secret, but
/// logs need not repeat it).
fn shown_url(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

async fn request(url: &str, body: Option<String>, headers: &[(&str, &str)]) -> Result<(u16, Bytes), String> {
    let uri: Uri = url.parse().map_err(|error| format!("not a URL: {error}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("only http:// and https:// token sources are supported".to_owned()),
    };
    let host = uri.host().ok_or("the URL has no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp =
        tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|error| format!("connect: {error}"))?;
    let method = if body.is_some() { hyper::Method::POST } else { hyper::Method::GET };
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
        .header(hyper::header::ACCEPT, "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|error| error.to_string())?;
    if https {
        let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|error| error.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(client_config()?)
            .connect(name, tcp)
            .await
            .map_err(|error| format!("TLS: {error}"))?;
        send(TokioIo::new(tls), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<T>(io: TokioIo<T>, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), String>
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
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
        .collect()
        .await
        .map_err(|error| format!("body: {error}"))?;
    Ok((status, body.to_bytes()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_from_expires_in_or_expires_on() {
        let imds = serde_json::json!({"access_token": "t", "expires_in": "3599", "token_type": "Bearer"});
        assert_eq!(parse(&imds).map(|f| f.lifetime_s), Some(3599));
        let entra = serde_json::json!({"access_token": "t", "expires_in": 86399});
        assert_eq!(parse(&entra).map(|f| f.lifetime_s), Some(86399));
        let on =
            serde_json::json!({"access_token": "t", "expires_on": (chrono::Utc::now().timestamp() + 600).to_string()});
        let lifetime = parse(&on).map(|f| f.lifetime_s).unwrap_or(0);
        assert!((595..=600).contains(&lifetime), "{lifetime}");
        assert_eq!(parse(&serde_json::json!({"access_token": "t"})).map(|f| f.lifetime_s), Some(LIFETIME_S_DEFAULT));
        assert!(parse(&serde_json::json!({"error": "invalid_client"})).is_none());
        assert!(parse(&serde_json::json!({"access_token": ""})).is_none());
    }

    #[test]
    fn scopes_and_forms() {
        assert_eq!(
            scope("{resource}/.default", "https://cognitiveservices.azure.com/"),
            "https://cognitiveservices.azure.com/.default"
        );
        assert_eq!(scope("api://x/read", "ignored"), "api://x/read");
        assert_eq!(form(&[("a", "b c"), ("scope", "https://x/.default")]), "a=b+c&scope=https%3A%2F%2Fx%2F.default");
    }
}
