//! The data plane's request head parser (httparse plus our framing, host and target checks) on
//! arbitrary bytes: a head, "read more" or an error, never a panic; and what it returns must be
//! true of the bytes.
//!
//! The first byte picks the limits: even, the defaults; odd, small limits made of the next three
//! bytes (so the limit paths are reached with short inputs). The rest is the buffer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_dataplane::http::request::{self, HeadLimits, RequestError, RequestHead, TargetForm};
use portcullis_dataplane::http::{BodyFraming, Version};

/// Request-line bytes besides the target that the parser tolerates before refusing a partial
/// line as too long (`REQUEST_LINE_EXTRA_BYTES` in dataplane/src/http/request.rs).
const REQUEST_LINE_EXTRA_BYTES: usize = 32;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let (limits, buf) = match (selector & 1, rest) {
        (1, [head, uri, headers, buf @ ..]) => (
            HeadLimits {
                head_bytes_max: 16 + usize::from(*head) * 8,
                uri_bytes_max: 1 + usize::from(*uri) * 4,
                headers_max: 1 + usize::from(*headers) % 100,
            },
            buf,
        ),
        _ => (HeadLimits::default(), rest),
    };
    match request::parse_within(buf, &limits) {
        Ok(Some(head)) => check_head(buf, &limits, &head),
        Ok(None) => assert!(buf.len() < limits.head_bytes_max, "a partial head at the size limit must be refused"),
        Err(_) => {}
    }
});

/// What an accepted head promises about `buf`.
fn check_head(buf: &[u8], limits: &HeadLimits, head: &RequestHead) {
    let len = head.head_len();
    assert!(len <= buf.len() && len <= limits.head_bytes_max, "head length {len} outside the buffer or limit");
    assert!(buf[..len].ends_with(b"\n\n") || buf[..len].ends_with(b"\n\r\n"), "a head ends with a blank line");
    assert!(head.headers().len() <= limits.headers_max);
    for header in head.headers() {
        for span in [header.name, header.value] {
            assert!(span.start() <= span.end() && span.end() <= len, "header span {span:?} outside the head ({len})");
        }
        assert!(!header.name.of(buf).is_empty());
    }
    let method = head.method(buf);
    let target = head.target(buf);
    assert!(!method.is_empty() && method != b"CONNECT");
    assert!(!target.is_empty() && target.len() <= limits.uri_bytes_max);
    match head.target_form() {
        TargetForm::Origin | TargetForm::Absolute => assert_eq!(target.first(), Some(&b'/')),
        TargetForm::Asterisk => assert!(target == b"*" && method == b"OPTIONS"),
    }
    if head.version() == Version::Http11 {
        assert!(head.host(buf).is_some_and(|host| !host.is_empty()), "an HTTP/1.1 head has a host");
    }
    match head.framing() {
        BodyFraming::Length(length) => assert!(length > 0 && head.header(buf, b"content-length").is_some()),
        BodyFraming::Chunked => {
            assert!(head.version() == Version::Http11 && head.header(buf, b"content-length").is_none())
        }
        BodyFraming::None => {}
        BodyFraming::UntilClose => panic!("a request is never delimited by the close"),
    }
    check_prefixes(buf, limits, head);
}

/// The head alone parses to the same head, and a head cut short is "read more": what the proxy
/// sees must not depend on how the bytes were split across reads.
fn check_prefixes(buf: &[u8], limits: &HeadLimits, head: &RequestHead) {
    let len = head.head_len();
    let Ok(Some(again)) = request::parse_within(&buf[..len], limits) else {
        panic!("the head alone does not parse to a head");
    };
    assert_eq!(again.head_len(), len);
    assert_eq!(again.headers(), head.headers());
    assert_eq!(again.framing(), head.framing());
    assert_eq!(again.host(buf), head.host(buf));
    let line_len = buf.iter().position(|&b| b == b'\n').unwrap_or(len);
    for cut in [0, 1, len / 2, line_len, line_len + 1, len.saturating_sub(2), len - 1] {
        if cut >= len {
            continue;
        }
        match request::parse_within(&buf[..cut], limits) {
            Ok(None) => {}
            // A request line is refused before it ends once it is longer than any target the
            // limit allows (documented early refusal).
            Err(RequestError::UriTooLong) if cut > limits.uri_bytes_max + REQUEST_LINE_EXTRA_BYTES => {}
            other => panic!("the first {cut} bytes of a {len}-byte head give {other:?}, not \"read more\""),
        }
    }
}
