//! Errors of the request path, each knowing its source, whether a retry is allowed, and the
//! client response it becomes (decided in one place: [`ProxyError::response`]).

use portcullis_contract::program::Section;

use crate::http::chunked::ChunkedError;
use crate::http::error_response::{self, ErrorResponse};
use crate::http::request::RequestError;
use crate::http::response::ResponseError;
use crate::io::ReadError;
use crate::io::tls::HandshakeError;
use crate::upstream::ConnectError;
use crate::upstream::dns::ResolveError;

/// Which side an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorSource {
    /// The client (downstream).
    Client,
    /// The backend (upstream).
    Backend,
    /// The gateway's own decision or configuration.
    Gateway,
}

/// Everything that can end a request early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("answered by the gateway with {}", .0.status)]
    Rejected(ErrorResponse),
    #[error("policy failed: {0}")]
    Policy(Box<crate::policy::PolicyError>),
    #[error("answered by a policy")]
    PolicyResponse,
    #[error("retry would send the request again, but its body was larger than the buffering limit and streamed")]
    RetryNotReplayable,
    #[error("bad request head: {0}")]
    Request(#[from] RequestError),
    #[error("request head not received in time")]
    HeaderTimeout,
    #[error("reading the request body: {0}")]
    ClientBody(ReadError),
    #[error("the client closed before sending the whole body")]
    ClientBodyTruncated,
    #[error("invalid chunked request body: {0}")]
    ClientChunked(ChunkedError),
    #[error("the request body is larger than request-body-bytes-max")]
    ClientBodyTooLarge,
    #[error("writing to the client: {0}")]
    ClientWrite(std::io::Error),
    #[error("the API's backend has no usable address")]
    BackendUnavailable,
    #[error("set-backend-service names backend {0:?}, which the configuration does not define")]
    UnknownBackend(String),
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("writing to the backend: {0}")]
    BackendWrite(std::io::Error),
    #[error("the backend closed the connection before responding")]
    BackendClosedEarly,
    #[error("reading the backend response head: {0}")]
    BackendHeadRead(std::io::Error),
    #[error("the backend closed or failed in the middle of its response head")]
    BackendHeadTruncated,
    #[error("the backend did not send a response head in time")]
    BackendHeadTimeout,
    #[error("invalid backend response head: {0}")]
    BackendResponse(#[from] ResponseError),
    #[error("the backend switched protocols (101) though the client did not ask to")]
    UnrequestedUpgrade,
    #[error("reading the backend response body: {0}")]
    BackendBody(ReadError),
    #[error("the backend closed before sending the whole body")]
    BackendBodyTruncated,
    #[error("invalid chunked response body: {0}")]
    BackendChunked(ChunkedError),
}

impl ProxyError {
    /// Which side caused it.
    pub(crate) fn source(&self) -> ErrorSource {
        match self {
            ProxyError::Rejected(_)
            | ProxyError::BackendUnavailable
            | ProxyError::UnknownBackend(_)
            | ProxyError::Policy(_)
            | ProxyError::PolicyResponse
            | ProxyError::RetryNotReplayable => ErrorSource::Gateway,
            ProxyError::Request(_)
            | ProxyError::HeaderTimeout
            | ProxyError::ClientBody(_)
            | ProxyError::ClientBodyTruncated
            | ProxyError::ClientChunked(_)
            | ProxyError::ClientBodyTooLarge
            | ProxyError::ClientWrite(_) => ErrorSource::Client,
            ProxyError::Connect(_)
            | ProxyError::BackendWrite(_)
            | ProxyError::BackendClosedEarly
            | ProxyError::BackendHeadRead(_)
            | ProxyError::BackendHeadTruncated
            | ProxyError::BackendHeadTimeout
            | ProxyError::BackendResponse(_)
            | ProxyError::UnrequestedUpgrade
            | ProxyError::BackendBody(_)
            | ProxyError::BackendBodyTruncated
            | ProxyError::BackendChunked(_) => ErrorSource::Backend,
        }
    }

    /// The policy section an error belongs to, as `context.LastError.Section`: calling the backend
    /// (`forward-request` and the backend it picks) is the backend section's; everything before it
    /// (routing, keys, the request itself) is the inbound section's.
    pub(crate) fn section(&self) -> Section {
        match self {
            // The gateway's own refusals of the backend phase.
            ProxyError::RetryNotReplayable | ProxyError::BackendUnavailable | ProxyError::UnknownBackend(_) => {
                Section::Backend
            }
            _ if self.source() == ErrorSource::Backend => Section::Backend,
            _ => Section::Inbound,
        }
    }

    /// The backend failed before any response byte, so the request may be sent again on a fresh
    /// connection (if the connection was a reused one and the whole body is still buffered).
    pub(crate) fn retryable(&self) -> bool {
        matches!(self, ProxyError::BackendWrite(_) | ProxyError::BackendClosedEarly | ProxyError::BackendHeadRead(_))
    }

    /// The response the client gets, if it can still get one (`None`: just close).
    /// This is the on-error phase's mapping: the one place errors become APIM-shaped responses.
    pub(crate) fn response(&self) -> Option<ErrorResponse> {
        match self {
            ProxyError::Rejected(response) => Some(*response),
            // Written from the policy state, not from a fixed response.
            ProxyError::Policy(_) | ProxyError::PolicyResponse => None,
            ProxyError::RetryNotReplayable | ProxyError::UnknownBackend(_) => Some(error_response::INTERNAL_ERROR),
            ProxyError::Request(RequestError::TooLarge | RequestError::TooManyHeaders) => {
                Some(error_response::HEADERS_TOO_LARGE)
            }
            ProxyError::Request(RequestError::UriTooLong) => Some(error_response::URI_TOO_LONG),
            ProxyError::Request(
                RequestError::MethodNotSupported(_)
                | RequestError::Framing(crate::http::FramingError::UnsupportedTransferEncoding),
            ) => Some(error_response::NOT_IMPLEMENTED),
            ProxyError::ClientBodyTooLarge => Some(error_response::PAYLOAD_TOO_LARGE),
            ProxyError::Request(_) | ProxyError::ClientChunked(_) => Some(error_response::BAD_REQUEST),
            ProxyError::HeaderTimeout => Some(error_response::REQUEST_TIMEOUT),
            ProxyError::ClientBody(_) | ProxyError::ClientBodyTruncated | ProxyError::ClientWrite(_) => None,
            ProxyError::Connect(
                ConnectError::TimedOut
                | ConnectError::Tls(HandshakeError::TimedOut)
                | ConnectError::Resolve(ResolveError::TimedOut { .. }),
            )
            | ProxyError::BackendHeadTimeout => Some(error_response::GATEWAY_TIMEOUT),
            ProxyError::BackendBody(ReadError::TimedOut) => Some(error_response::GATEWAY_TIMEOUT),
            ProxyError::BackendUnavailable
            | ProxyError::Connect(ConnectError::Refused(_) | ConnectError::Tls(_) | ConnectError::Resolve(_))
            | ProxyError::BackendWrite(_)
            | ProxyError::BackendClosedEarly
            | ProxyError::BackendHeadRead(_)
            | ProxyError::BackendHeadTruncated
            | ProxyError::BackendResponse(_)
            | ProxyError::UnrequestedUpgrade
            | ProxyError::BackendBody(ReadError::Io(_))
            | ProxyError::BackendBodyTruncated
            | ProxyError::BackendChunked(_) => Some(error_response::BAD_GATEWAY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        let refused = ProxyError::Connect(ConnectError::Refused(std::io::ErrorKind::ConnectionRefused.into()));
        assert_eq!(refused.response(), Some(error_response::BAD_GATEWAY));
        assert_eq!(refused.source(), ErrorSource::Backend);
        assert!(!refused.retryable());
        assert_eq!(ProxyError::Connect(ConnectError::TimedOut).response(), Some(error_response::GATEWAY_TIMEOUT));
        assert_eq!(ProxyError::BackendHeadTimeout.response(), Some(error_response::GATEWAY_TIMEOUT));
        assert!(ProxyError::BackendClosedEarly.retryable());
        assert_eq!(ProxyError::Request(RequestError::TooLarge).response(), Some(error_response::HEADERS_TOO_LARGE));
        assert_eq!(ProxyError::HeaderTimeout.response(), Some(error_response::REQUEST_TIMEOUT));
        assert_eq!(ProxyError::Request(RequestError::UriTooLong).response(), Some(error_response::URI_TOO_LONG));
        assert_eq!(ProxyError::Request(RequestError::MissingHost).response(), Some(error_response::BAD_REQUEST));
        let gzip = RequestError::Framing(crate::http::FramingError::UnsupportedTransferEncoding);
        assert_eq!(ProxyError::Request(gzip).response(), Some(error_response::NOT_IMPLEMENTED));
        assert_eq!(ProxyError::ClientBodyTooLarge.response(), Some(error_response::PAYLOAD_TOO_LARGE));
        assert_eq!(ProxyError::ClientBodyTruncated.response(), None);
        assert_eq!(ProxyError::ClientBodyTruncated.source(), ErrorSource::Client);
        assert_eq!(ProxyError::Rejected(error_response::NOT_FOUND).source(), ErrorSource::Gateway);
        assert_eq!(ProxyError::RetryNotReplayable.section(), Section::Backend);
        assert_eq!(refused.section(), Section::Backend);
        assert_eq!(ProxyError::Rejected(error_response::NOT_FOUND).section(), Section::Inbound);
    }

    #[test]
    fn a_rate_limit_is_a_gateway_answer_with_its_wait() {
        // The per-IP limit's 429 goes where every gateway answer goes: on-error runs for it
        // (a gateway error, not the client's), then this response.
        let limited = ProxyError::Rejected(error_response::too_many_requests(3));
        assert_eq!(limited.response(), Some(error_response::too_many_requests(3)));
        assert_eq!(limited.response().and_then(|response| response.retry_after_seconds), Some(3));
        assert_eq!(limited.source(), ErrorSource::Gateway);
        assert_eq!(limited.section(), Section::Inbound);
        assert!(!limited.retryable());
    }
}
