//! Admin socket messages: `{"command":"status"}` / `{"command":"reload"}` (and the XDP commands
//! `xdp-status`, `block`, `unblock`, forwarded to the data plane; `top`, the live traffic window)
//! in, one JSON object out.

use serde::{Deserialize, Serialize};

use super::status::Status;

/// A request line longer than this is refused (requests are a few dozen bytes).
pub const REQUEST_LINE_BYTES_MAX: usize = 4 * 1024;
/// A response line longer than this is refused by `ctl` (a status of 1024 workers is ~300 KiB).
pub const RESPONSE_LINE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// The gateway's state and per-worker counters.
    Status,
    /// Reload the config directory and publish it.
    Reload,
    /// The XDP pre-filter: interfaces, counters, maps, blocks (answered by the data plane).
    XdpStatus,
    /// Drop traffic from `prefix` (an address or CIDR) for `seconds`, or until unblocked.
    Block {
        prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<u64>,
    },
    /// Lift the block on exactly `prefix`.
    Unblock { prefix: String },
    /// Import an APIOps extract into the management store, as one change (`portcullis import apiops`).
    ImportApiops { dir: String },
    /// Apply a config directory to the management store (`portcullis apply`).
    Apply {
        dir: String,
        #[serde(default)]
        dry_run: bool,
    },
    /// Reopen the access-log file (after logrotate moved it).
    ReopenLogs,
    /// One sample of the live traffic window per API (`portcullis ctl top`), over the last
    /// `window_ms` (default 10 s, at most 60 s).
    Top {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_ms: Option<u64>,
    },
}

/// One response. `ok` says whether the request succeeded; the other fields depend on the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    /// For `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<Status>>,
    /// For `reload`: the generation published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// For `reload`: whether the data plane applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
    /// For the XDP commands: the data plane's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<serde_json::Value>,
    /// When `ok` is false: what went wrong (config diagnostics are rendered in full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What an apply (or reload) changed, resource by resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<serde_json::Value>,
    /// For `top`: `portcullis_management::analytics::TopSample`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<serde_json::Value>,
}

/// Why a request line was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("request line longer than {REQUEST_LINE_BYTES_MAX} bytes")]
    TooLong,
    #[error("bad request (expected {{\"command\":\"status\"}} or {{\"command\":\"reload\"}}): {0}")]
    Json(#[from] serde_json::Error),
}

impl Response {
    /// A failure with its message.
    pub fn failure(error: impl Into<String>) -> Self {
        Self { ok: false, error: Some(error.into()), ..Self::default() }
    }

    /// The answer to `status`.
    pub fn status(status: Status) -> Self {
        Self { ok: true, status: Some(Box::new(status)), ..Self::default() }
    }

    /// The answer to a reload that the data plane applied.
    pub fn reloaded(generation: u64) -> Self {
        Self { ok: true, generation: Some(generation), applied: Some(true), ..Self::default() }
    }

    /// The response as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        // Serializing plain structs of strings and numbers cannot fail; fall back to a fixed error line.
        let mut line = serde_json::to_vec(self)
            .unwrap_or_else(|_| br#"{"ok":false,"error":"cannot encode the response"}"#.to_vec());
        line.push(b'\n');
        line
    }
}

impl Request {
    /// The request as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        // Serializing an enum of strings and numbers cannot fail; fall back to a status request.
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| br#"{"command":"status"}"#.to_vec());
        line.push(b'\n');
        line
    }
}

/// Parses one request line (trailing newline and surrounding whitespace allowed).
pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > REQUEST_LINE_BYTES_MAX {
        return Err(ProtocolError::TooLong);
    }
    Ok(serde_json::from_slice(line.trim_ascii())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_refuses_bad_ones() {
        assert_eq!(parse_request(b"{\"command\":\"status\"}\n").unwrap(), Request::Status);
        assert_eq!(parse_request(b" {\"command\": \"reload\"} ").unwrap(), Request::Reload);
        assert_eq!(parse_request(&Request::Reload.to_line()).unwrap(), Request::Reload);
        assert_eq!(Request::Status.to_line(), b"{\"command\":\"status\"}\n");
        let block = Request::Block { prefix: "192.0.2.0/24".into(), seconds: Some(60) };
        assert_eq!(block.to_line(), b"{\"command\":\"block\",\"prefix\":\"192.0.2.0/24\",\"seconds\":60}\n");
        assert_eq!(parse_request(&block.to_line()).unwrap(), block);
        assert_eq!(
            parse_request(b"{\"command\":\"unblock\",\"prefix\":\"::1\"}").unwrap(),
            Request::Unblock { prefix: "::1".into() }
        );
        assert_eq!(parse_request(b"{\"command\":\"xdp-status\"}").unwrap(), Request::XdpStatus);
        assert_eq!(parse_request(b"{\"command\":\"top\"}").unwrap(), Request::Top { window_ms: None });
        let top = Request::Top { window_ms: Some(5_000) };
        assert_eq!(top.to_line(), b"{\"command\":\"top\",\"window_ms\":5000}\n");
        assert!(parse_request(b"{\"command\":\"restart\"}").unwrap_err().to_string().contains("unknown variant"));
        assert!(matches!(parse_request(b"{\"cmd\":\"status\"}"), Err(ProtocolError::Json(_))));
        assert!(matches!(parse_request(b"status"), Err(ProtocolError::Json(_))));
        assert!(matches!(parse_request(b""), Err(ProtocolError::Json(_))));
        assert!(matches!(parse_request(&[b' '; REQUEST_LINE_BYTES_MAX + 1]), Err(ProtocolError::TooLong)));
    }

    #[test]
    fn responses_round_trip_without_empty_fields() {
        let line = Response::reloaded(4).to_line();
        assert_eq!(line, b"{\"ok\":true,\"generation\":4,\"applied\":true}\n");
        let failure = Response::failure("nope");
        assert_eq!(serde_json::from_slice::<Response>(&failure.to_line()).unwrap(), failure);
    }
}
