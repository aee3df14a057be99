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
}

/// The gateway has not received any configuration yet.
pub const NO_CONFIGURATION: ErrorResponse = ErrorResponse {
    status: 503,
    reason: "Service Unavailable",
    message: "Service unavailable: the gateway has no configuration yet.",
};
/// No API matches the request path (APIM: `OperationNotFound`).
pub const NOT_FOUND: ErrorResponse = ErrorResponse { status: 404, reason: "Not Found", message: "Resource not found" };
/// The API requires a key and none was sent (APIM: `SubscriptionKeyNotFound`).
pub const MISSING_KEY: ErrorResponse = ErrorResponse {
    status: 401,
    reason: "Unauthorized",
    message: "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
};
/// The key is unknown, inactive or not for this API (APIM: `SubscriptionKeyInvalid`).
pub const INVALID_KEY: ErrorResponse = ErrorResponse {
    status: 401,
    reason: "Unauthorized",
    message: "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.",
};
/// The backend could not be reached (APIM: `BackendConnectionFailure`).
pub const BAD_GATEWAY: ErrorResponse = ErrorResponse {
    status: 502,
    reason: "Bad Gateway",
    message: "Bad gateway: the backend service could not be reached.",
};
/// The backend did not connect or answer in time (APIM: `Timeout`).
pub const GATEWAY_TIMEOUT: ErrorResponse = ErrorResponse {
    status: 504,
    reason: "Gateway Timeout",
    message: "Gateway timeout: the backend service did not respond in time.",
};
/// The gateway could not produce the response a policy asked for.
pub const INTERNAL_ERROR: ErrorResponse =
    ErrorResponse { status: 500, reason: "Internal Server Error", message: "Internal server error" };
/// The request could not be parsed.
pub const BAD_REQUEST: ErrorResponse =
    ErrorResponse { status: 400, reason: "Bad Request", message: "Bad request: the request is not valid HTTP/1.1." };
/// The request head did not arrive in time.
pub const REQUEST_TIMEOUT: ErrorResponse = ErrorResponse {
    status: 408,
    reason: "Request Timeout",
    message: "Request timeout: the request headers were not received in time.",
};
/// The request head is too large or has too many headers.
pub const HEADERS_TOO_LARGE: ErrorResponse = ErrorResponse {
    status: 431,
    reason: "Request Header Fields Too Large",
    message: "Request header fields too large.",
};

/// The request target (or the request line) is longer than the limit.
pub const URI_TOO_LONG: ErrorResponse =
    ErrorResponse { status: 414, reason: "URI Too Long", message: "Request URI too long." };
/// The request body is larger than the limit.
pub const PAYLOAD_TOO_LARGE: ErrorResponse =
    ErrorResponse { status: 413, reason: "Content Too Large", message: "Request entity too large." };
/// The request uses a transfer coding or method the gateway does not implement.
pub const NOT_IMPLEMENTED: ErrorResponse = ErrorResponse {
    status: 501,
    reason: "Not Implemented",
    message: "Not implemented: the request uses a method or transfer coding the gateway does not support.",
};

impl ErrorResponse {
    /// Appends the whole response (head and body) to `out`; `close` adds `Connection: close`.
    pub fn write(&self, out: &mut Vec<u8>, close: bool) {
        write(out, self.status, self.reason, self.message, close);
    }
}

/// Appends an APIM-shaped error response (`{ "statusCode": N, "message": "..." }`) with any
/// status and message; the message is JSON-escaped when it needs it (this file's constants
/// never do, so their responses allocate nothing).
pub fn write(out: &mut Vec<u8>, status: u16, reason: &str, message: &str, close: bool) {
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
    let status_digits = if status >= 100 {
        3
    } else if status >= 10 {
        2
    } else {
        1
    };
    let body_len = BODY_PREFIX.len() + status_digits + BODY_MIDDLE.len() + message.len() + BODY_SUFFIX.len();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n{}\r\n{BODY_PREFIX}{status}{BODY_MIDDLE}{message}{BODY_SUFFIX}",
        if close { "Connection: close\r\n" } else { "" },
    );
}

const BODY_PREFIX: &str = "{ \"statusCode\": ";
const BODY_MIDDLE: &str = ", \"message\": \"";
const BODY_SUFFIX: &str = "\" }";

// The body length above counts the status as three digits, and messages are written raw into
// JSON: both are guaranteed by the constants in this file, checked here.
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
}
