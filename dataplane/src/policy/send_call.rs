//! What `send-request`, `send-one-way-request` and `wait` ask of the proxy. The VM is sans-IO: a
//! call suspends it with an [`Exit::Send`](crate::policy::Exit::Send) carrying a [`SendCall`]; the
//! proxy makes the call (on the worker's own sockets and pools), records the outcome with
//! [`RequestState::finish_call`](crate::policy::RequestState::finish_call) and resumes the section.
//! A call's response is an `IResponse` ([`SentResponse`]) the policies read from a variable.

use std::rc::Rc;

use crate::policy::error::Fault;
use crate::policy::load::LitRef;

/// The request a `send-request` built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRequest {
    pub method: String,
    /// Absolute `http://` or `https://` URL (empty until `set-url` ran, unless copied).
    pub url: String,
    /// In the order they go out; the proxy adds `Host` and the body's framing.
    pub headers: Vec<(String, String)>,
    pub body: Option<Rc<[u8]>>,
    /// `authentication-certificate` inside the call: the named certificate (its index in the
    /// snapshot's named certificates) an `https://` call presents.
    pub certificate: Option<u32>,
    /// A named backend the call goes to (`llm-content-safety`): `url` is then the path and query
    /// after the backend's base path, sent to its first endpoint.
    pub backend: Option<String>,
}

impl OutgoingRequest {
    /// A `mode="new"` request: `GET`, nothing else.
    pub fn new() -> Self {
        Self {
            method: "GET".to_owned(),
            url: String::new(),
            headers: Vec::new(),
            body: None,
            certificate: None,
            backend: None,
        }
    }
}

impl Default for OutgoingRequest {
    fn default() -> Self {
        Self::new()
    }
}

/// When the proxy makes a call, relative to the section that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// `send-request`: the section waits for the response.
    Now,
    /// `send-request` inside `wait`: started now, collected by the `wait`.
    Deferred,
    /// `send-one-way-request`: handed off; nobody waits for it.
    OneWay,
}

/// One call a section asks the proxy to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCall {
    pub request: OutgoingRequest,
    /// The whole call (connect, send, the whole response) must finish within this.
    pub timeout_ms: u64,
    /// `response-variable-name`.
    pub variable: Option<LitRef>,
    /// `ignore-error`: a failed call leaves the variable null and the section goes on.
    pub ignore_error: bool,
    pub mode: CallMode,
    /// The `send-request` statement (for `LastError` when the call fails).
    pub site: Option<u32>,
}

/// The response of a call, as `IResponse` shows it: owned, shared by every value that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Rc<[u8]>,
}

impl SentResponse {
    /// Every value of header `name` (any case), comma-joined; `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self.headers.iter().filter(|(field, _)| field.eq_ignore_ascii_case(name));
        let first = values.next()?.1.clone();
        Some(values.fold(first, |mut joined, (_, value)| {
            joined.push(',');
            joined.push_str(value);
            joined
        }))
    }

    /// Header names, once each, in the order they first came.
    pub fn header_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in &self.headers {
            if !names.iter().any(|seen| seen.eq_ignore_ascii_case(name)) {
                names.push(name);
            }
        }
        names
    }
}

/// Why a call failed, as `LastError` tells it (source `send-request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFailure {
    /// The call did not finish within its timeout.
    Timeout,
    /// The host could not be resolved or connected to, or the connection failed mid-exchange.
    ConnectionFailure,
    /// The URL is not an absolute `http://` or `https://` URL.
    InvalidUrl,
    /// The response was larger than [`SENT_RESPONSE_BYTES_MAX`] or not valid HTTP/1.1.
    InvalidResponse,
}

/// A call's response body is read whole, up to this; a larger one fails the call.
pub const SENT_RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// A computed timeout is clamped into this range (milliseconds).
pub const SEND_TIMEOUT_MS_MIN: u64 = 1;
pub const SEND_TIMEOUT_MS_MAX: u64 = 24 * 3600 * 1000;

impl CallFailure {
    /// The fault the section fails with (status 500, as APIM answers a failed policy).
    pub fn fault(self, timeout_ms: u64) -> Fault {
        match self {
            CallFailure::Timeout => Fault::policy(
                500,
                "Timeout",
                format!("Request to the send-request URL timed out after {} ms.", timeout_ms),
            ),
            CallFailure::ConnectionFailure => {
                Fault::policy(500, "BackendConnectionFailure", "The send-request URL could not be reached.")
            }
            CallFailure::InvalidUrl => {
                Fault::policy(500, "InvalidUrl", "The send-request URL is not an absolute http:// or https:// URL.")
            }
            CallFailure::InvalidResponse => Fault::policy(
                500,
                "InvalidResponse",
                "The send-request URL answered with a response that is not valid HTTP/1.1 or is too large.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_join_their_values_and_names_come_once() {
        let response = SentResponse {
            status: 200,
            reason: "OK".into(),
            headers: vec![("X-A".into(), "1".into()), ("x-a".into(), "2".into()), ("B".into(), "3".into())],
            body: Rc::from(&b""[..]),
        };
        assert_eq!(response.header("x-A").as_deref(), Some("1,2"));
        assert_eq!(response.header("c"), None);
        assert_eq!(response.header_names(), ["X-A", "B"]);
    }
}
