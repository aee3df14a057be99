//! The CLI's client of the running management API (`portcullis api ...`, `portcullis
//! subscription ...`): the URL and token `up` left in the data directory, JSON over HTTP/1.1
//! (hyper's client on a one-off runtime: a CLI call is one exchange).

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use portcullis_contract::layout::DataDir;
use serde_json::Value;

use super::listener::CliAccess;

/// An answer larger than this is refused (the largest is an exported definition).
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The management API of the gateway running with a data directory.
#[derive(Debug)]
pub struct Client {
    access: CliAccess,
}

impl Client {
    pub fn new(data_dir: &DataDir) -> anyhow::Result<Self> {
        Ok(Self { access: CliAccess::read(data_dir)? })
    }

    /// Sends `method path` with an optional JSON body; an ARM error becomes the error's message.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (status, bytes) = runtime.block_on(self.exchange(method, path, body))?;
        let value: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes)? };
        if !(200..300).contains(&status) {
            let message = value["error"]["message"].as_str().unwrap_or("no message").to_owned();
            let details: Vec<String> = value["error"]["details"]
                .as_array()
                .map(|details| {
                    details
                        .iter()
                        .map(|d| {
                            format!("  {}: {}", d["target"].as_str().unwrap_or(""), d["message"].as_str().unwrap_or(""))
                        })
                        .collect()
                })
                .unwrap_or_default();
            anyhow::bail!(
                "{method} {path}: {status} {message}{}{}",
                if details.is_empty() { "" } else { "\n" },
                details.join("\n")
            );
        }
        Ok(value)
    }

    async fn exchange(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Bytes)> {
        let authority = self.access.url.trim_start_matches("http://").to_owned();
        let tcp = tokio::net::TcpStream::connect(authority.as_str()).await.map_err(|error| {
            anyhow::anyhow!(
                "cannot reach the management API at {}: {error} (is `portcullis up` running?)",
                self.access.url
            )
        })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            // The connection ends with the exchange; its error, if any, is the exchange's.
            let _ = connection.await;
        });
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.access.token))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("If-Match", "*")
            .body(Full::new(Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let bytes = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|error| anyhow::anyhow!("the management API's answer: {error}"))?
            .to_bytes();
        Ok((status, bytes))
    }
}
