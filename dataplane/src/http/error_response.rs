//! The gateway's own responses, in API Management's JSON shape: `{ "statusCode": N, "message": "..." }`.

/// One gateway-generated error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorResponse {
    /// HTTP status code.
    pub status: u16,
    /// Reason phrase of the status line.
    pub reason: &'static str,
    /// The `message` field of the body (APIM's wording where APIM defines one).
    pub message: &'static str,
    /// A rate limit's wait: sent as `Retry-After` and told at the end of the message (APIM's
    /// "Try again in N seconds."); `None` for every other response.
    pub retry_after_seconds: Option<u32>,
}

/// The gateway has not received any configuration yet.
pub const NO_CONFIGURATION: ErrorResponse = ErrorResponse {
    status: 503,
    reason: "Service Unavailable",
    message: "Service unavailable: the gateway has no configuration yet.",
    retry_after_seconds: None,
};
/// No API matches the request path (APIM: `OperationNotFound`).
pub const NOT_FOUND: ErrorResponse =
    ErrorResponse { status: 404, reason: "Not Found", message: "Resource not found", retry_after_seconds: None };
/// The API requires a key and none was sent (APIM: `SubscriptionKeyNotFound`).
pub const MISSING_KEY: ErrorResponse = ErrorResponse {
    status: 401,
    reason: "Unauthorized",
    message: "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
    retry_after_seconds: None,
};
/// The key is unknown, inactive or not for this API (APIM: `SubscriptionKeyInvalid`).
pub const INVALID_KEY: ErrorResponse = ErrorResponse {
    status: 401,
    reason: "Unauthorized",
    message: "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.",
    retry_after_seconds: None,
};
/// The backend could not be reached (APIM: `BackendConnectionFailure`).
pub const BAD_GATEWAY: ErrorResponse = ErrorResponse {
    status: 502,
    reason: "Bad Gateway",
    message: "Bad gateway: the backend service could not be reached.",
    retry_after_seconds: None,
};
/// The backend did not connect or answer in time (APIM: `Timeout`).
pub const GATEWAY_TIMEOUT: ErrorResponse = ErrorResponse {
    status: 504,
    reason: "Gateway Timeout",
    message: "Gateway timeout: the backend service did not respond in time.",
    retry_after_seconds: None,
};
/// The gateway could not produce the response a policy asked for.
pub const INTERNAL_ERROR: ErrorResponse = ErrorResponse {
    status: 500,
    reason: "Internal Server Error",
    message: "Internal server error",
    retry_after_seconds: None,
};
/// The request could not be parsed.
pub const BAD_REQUEST: ErrorResponse = ErrorResponse {
    status: 400,
    reason: "Bad Request",
    message: "Bad request: the request is not valid HTTP/1.1.",
    retry_after_seconds: None,
};
/// The request head did not arrive in time.
pub const REQUEST_TIMEOUT: ErrorResponse = ErrorResponse {
    status: 408,
    reason: "Request Timeout",
    message: "Request timeout: the request headers were not received in time.",
    retry_after_seconds: None,
};
/// The request head is too large or has too many headers.
pub const HEADERS_TOO_LARGE: ErrorResponse = ErrorResponse {
    status: 431,
    reason: "Request Header Fields Too Large",
    message: "Request header fields too large.",
    retry_after_seconds: None,
};

/// The request target (or the request line) is longer than the limit.
pub const URI_TOO_LONG: ErrorResponse =
    ErrorResponse { status: 414, reason: "URI Too Long", message: "Request URI too long.", retry_after_seconds: None };
/// The request body is larger than the limit.
pub const PAYLOAD_TOO_LARGE: ErrorResponse = ErrorResponse {
    status: 413,
    reason: "Content Too Large",
    message: "Request entity too large.",
    retry_after_seconds: None,
};
/// The request uses a transfer coding or method the gateway does not implement.
pub const NOT_IMPLEMENTED: ErrorResponse = ErrorResponse {
    status: 501,
    reason: "Not Implemented",
    message: "Not implemented: the request uses a method or transfer coding the gateway does not support.",
    retry_after_seconds: None,
};

/// A request over a rate limit (APIM: `RateLimitExceeded`): 429 with `Retry-After`, and APIM's
/// message `Rate limit is exceeded. Try again in N seconds.`
pub const fn too_many_requests(retry_after_seconds: u32) -> ErrorResponse {
    ErrorResponse {
        status: 429,
        reason: "Too Many Requests",
        message: "Rate limit is exceeded.",
        retry_after_seconds: Some(retry_after_seconds),
    }
}

impl ErrorResponse {
    /// Appends the whole response (head and body) to `out`; `close` adds `Connection: close`.
    pub fn write(&self, out: &mut Vec<u8>, close: bool) {
        match self.retry_after_seconds {
            None => write(out, self.status, self.reason, self.message, close),
            Some(seconds) => self.write_with_retry_after(out, seconds, close),
        }
    }

    /// The body's `message` as the client reads it (with a rate limit's wait), for
    /// `context.LastError.Message`.
    pub fn full_message(&self) -> std::borrow::Cow<'static, str> {
        match self.retry_after_seconds {
            None => std::borrow::Cow::Borrowed(self.message),
            Some(seconds) => std::borrow::Cow::Owned(format!("{}{RETRY_PREFIX}{seconds}{RETRY_SUFFIX}", self.message)),
        }
    }

    /// [`Self::write`] for a rate limit's response: `Retry-After` after `Content-Type`, and the
    /// wait at the end of the message (the constant parts need no JSON escaping).
    fn write_with_retry_after(&self, out: &mut Vec<u8>, seconds: u32, close: bool) {
        use std::io::Write as _;
        let Self { status, reason, message, .. } = *self;
        let message_len = message.len() + RETRY_PREFIX.len() + decimal_digits(seconds) + RETRY_SUFFIX.len();
        let body_len =
            BODY_PREFIX.len() + decimal_digits(u32::from(status)) + BODY_MIDDLE.len() + message_len + BODY_SUFFIX.len();
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nRetry-After: {seconds}\r\nContent-Length: {body_len}\r\n{}\r\n{BODY_PREFIX}{status}{BODY_MIDDLE}{message}{RETRY_PREFIX}{seconds}{RETRY_SUFFIX}{BODY_SUFFIX}",
            if close { "Connection: close\r\n" } else { "" },
        );
    }
}

/// Appends an APIM-shaped error response (`{ "statusCode": N, "message": "..." }`) with any
/// status and message; the message is JSON-escaped when it needs it (this file's constants
/// never do, so their responses allocate nothing).
pub fn write(out: &mut Vec<u8>, status: u16, reason: &str, message: &str, close: bool) {
    write_with_headers::<&str, &str>(out, status, reason, message, &[], close);
}

/// [`write`] with `headers` after `Content-Type` (a rate limit's `Retry-After` and remaining
/// calls); their names and values are the caller's to keep valid (header names are checked by
/// the compiler, values are numbers).
pub fn write_with_headers<N: AsRef<str>, V: AsRef<str>>(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    message: &str,
    headers: &[(N, V)],
    close: bool,
) {
    use std::io::Write as _;
    let needs_escape = message.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
    let escaped;
    let message = if needs_escape {
        // serde_json escapes exactly as JSON requires; the quotes it adds are stripped.
        escaped = serde_json::Value::String(message.to_owned()).to_string();
        escaped.get(1..escaped.len().saturating_sub(1)).unwrap_or_default()
    } else {
        message
    };
    let body_len =
        BODY_PREFIX.len() + decimal_digits(u32::from(status)) + BODY_MIDDLE.len() + message.len() + BODY_SUFFIX.len();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        let _ = write!(out, "{}: {}\r\n", name.as_ref(), value.as_ref());
    }
    let _ = write!(
        out,
        "Content-Length: {body_len}\r\n{}\r\n{BODY_PREFIX}{status}{BODY_MIDDLE}{message}{BODY_SUFFIX}",
        if close { "Connection: close\r\n" } else { "" },
    );
}

/// Digits of `n` written in decimal.
fn decimal_digits(n: u32) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

const BODY_PREFIX: &str = "{ \"statusCode\": ";
const BODY_MIDDLE: &str = ", \"message\": \"";
const BODY_SUFFIX: &str = "\" }";
/// Around a rate limit's wait, after its message.
const RETRY_PREFIX: &str = " Try again in ";
const RETRY_SUFFIX: &str = " seconds.";

// Statuses are three digits, and messages are written raw into JSON (no escaping): both are
// guaranteed by the constants in this file, checked here.
const _: () = {
    let all = [
        NO_CONFIGURATION,
        NOT_FOUND,
        MISSING_KEY,
        INVALID_KEY,
        BAD_GATEWAY,
        GATEWAY_TIMEOUT,
        BAD_REQUEST,
        REQUEST_TIMEOUT,
        HEADERS_TOO_LARGE,
        INTERNAL_ERROR,
        URI_TOO_LONG,
        PAYLOAD_TOO_LARGE,
        NOT_IMPLEMENTED,
        too_many_requests(1),
    ];
    let mut i = 0;
    while i < all.len() {
        assert!(all[i].status >= 100 && all[i].status <= 999);
        let bytes = all[i].message.as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            assert!(bytes[j] != b'"' && bytes[j] != b'\\' && bytes[j] >= 0x20);
            j += 1;
        }
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes() {
        let mut out = Vec::new();
        NOT_FOUND.write(&mut out, false);
        let body = "{ \"statusCode\": 404, \"message\": \"Resource not found\" }";
        let expected = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);

        let mut out = Vec::new();
        MISSING_KEY.write(&mut out, true);
        let text = String::from_utf8(out).unwrap();
        let body = "{ \"statusCode\": 401, \"message\": \"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.\" }";
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"));
        assert!(text.contains(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len())));
        assert!(text.ends_with(body));
    }

    #[test]
    fn every_body_is_json_with_its_declared_length() {
        for response in [NO_CONFIGURATION, INVALID_KEY, BAD_GATEWAY, GATEWAY_TIMEOUT, BAD_REQUEST, REQUEST_TIMEOUT] {
            let mut out = Vec::new();
            response.write(&mut out, false);
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["statusCode"], response.status);
            assert_eq!(json["message"], response.message);
        }
    }

    #[test]
    fn any_message_is_escaped_into_valid_json() {
        for (status, message) in [(403, "plain"), (429, "quote \" and \\ and\ttab"), (500, "")] {
            let mut out = Vec::new();
            write(&mut out, status, "Reason", message, true);
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("Content-Length: {}", body.len())), "{text}");
            assert!(head.ends_with("Connection: close"), "{text}");
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["statusCode"], status);
            assert_eq!(json["message"], message);
        }
    }

    #[test]
    fn too_many_requests_is_apim_shaped() {
        let mut out = Vec::new();
        too_many_requests(7).write(&mut out, true);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(head.contains("\r\nRetry-After: 7\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["statusCode"], 429);
        assert_eq!(json["message"], "Rate limit is exceeded. Try again in 7 seconds.");
        assert_eq!(too_many_requests(7).full_message(), "Rate limit is exceeded. Try again in 7 seconds.");
        assert_eq!(NOT_FOUND.full_message(), NOT_FOUND.message);
    }

    #[test]
    fn too_many_requests_exact_bytes() {
        // The bytes the per-IP limit wrote before it became a phase answered through on-error.
        for (seconds, close) in [(3, false), (1, true), (86_400, false), (u32::MAX, true)] {
            let mut out = Vec::new();
            too_many_requests(seconds).write(&mut out, close);
            let body = format!(
                "{{ \"statusCode\": 429, \"message\": \"Rate limit is exceeded. Try again in {seconds} seconds.\" }}"
            );
            let expected = format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: {seconds}\r\n\
                 Content-Length: {}\r\n{}\r\n{body}",
                body.len(),
                if close { "Connection: close\r\n" } else { "" },
            );
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn decimal_digits_of_every_width() {
        for (n, digits) in [(0, 1), (9, 1), (10, 2), (99, 2), (100, 3), (429, 3), (999_999, 6), (u32::MAX, 10)] {
            assert_eq!(decimal_digits(n), digits, "{n}");
        }
    }
}
