use super::*;
use crate::http::HEAD_BYTES_MAX;

/// Parses `head` (with `Host: a` added after the request line) under the default limits.
fn with_host(request_line_and_headers: &str) -> Result<Option<RequestHead>, RequestError> {
    let (line, rest) = request_line_and_headers.split_once("\r\n").unwrap();
    let raw = format!("{line}\r\nHost: a\r\n{rest}");
    parse(raw.as_bytes())
}

#[test]
fn complete_request() {
    let buf = b"GET /echo/x?q=1 HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\nleftover";
    let head = parse(buf).unwrap().unwrap();
    assert_eq!(head.method(buf), b"GET");
    assert_eq!(head.target(buf), b"/echo/x?q=1");
    assert_eq!(head.target_form(), TargetForm::Origin);
    assert_eq!(head.host(buf), Some(&b"a"[..]));
    assert_eq!(head.version(), Version::Http11);
    assert_eq!(&buf[head.head_len()..], b"leftover");
    assert_eq!(head.headers().len(), 2);
    assert_eq!(head.header(buf, b"host"), Some(&b"a"[..]));
    assert_eq!(head.header(buf, b"x-y"), Some(&b"z"[..]));
    assert_eq!(head.header(buf, b"missing"), None);
    assert_eq!(head.framing(), BodyFraming::None);
    assert!(head.keep_alive());
    assert!(!head.wants_upgrade());
}

#[test]
fn incomplete_request() {
    assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    assert!(parse(b"").unwrap().is_none());
    assert!(parse(b"GE").unwrap().is_none());
}

#[test]
fn malformed_request() {
    for bad in [
        &b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"[..],
        b"\x01GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        // obs-fold (RFC 9112 §5.2: a server must reject it or replace it; we reject).
        b"GET / HTTP/1.1\r\nHost: a\r\nX: one\r\n two\r\n\r\n",
        // Whitespace between name and colon (§5.1: must be rejected).
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        // Bare CR, NUL and DEL in a value.
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
        // Invalid name characters, two spaces in the request line.
        b"GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert!(
            matches!(parse(bad), Err(RequestError::Malformed(_))),
            "{:?} gave {:?}",
            String::from_utf8_lossy(bad),
            parse(bad)
        );
    }
}

#[test]
fn limits_give_414_and_431() {
    let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..=HEADERS_MAX {
        buf.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    assert_eq!(parse(&buf).unwrap_err(), RequestError::TooManyHeaders);
    let few = HeadLimits { headers_max: 3, ..HeadLimits::default() };
    assert!(parse_within(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", &few).unwrap().is_some());
    let four = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(parse_within(four, &few).unwrap_err(), RequestError::TooManyHeaders);

    let mut big = b"GET / HTTP/1.1\r\nx: ".to_vec();
    big.resize(HEAD_BYTES_MAX + 10, b'a');
    assert_eq!(parse(&big).unwrap_err(), RequestError::TooLarge);
    // Just under the limit and still incomplete: read more.
    big.truncate(HEAD_BYTES_MAX - 1);
    assert!(parse(&big).unwrap().is_none());

    // A complete target over the limit, and a request line that never ends.
    let limits = HeadLimits::default();
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(limits.uri_bytes_max));
    assert_eq!(parse(long.as_bytes()).unwrap_err(), RequestError::UriTooLong);
    let endless = format!("GET /{}", "a".repeat(limits.uri_bytes_max + REQUEST_LINE_EXTRA_BYTES));
    assert_eq!(parse(endless.as_bytes()).unwrap_err(), RequestError::UriTooLong);
    let growing = format!("GET /{}", "a".repeat(limits.uri_bytes_max - 10));
    assert!(parse(growing.as_bytes()).unwrap().is_none());
    let small = HeadLimits { head_bytes_max: 64, ..HeadLimits::default() };
    let headers = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "b".repeat(64));
    assert_eq!(parse_within(headers.as_bytes(), &small).unwrap_err(), RequestError::TooLarge);
}

#[test]
fn framing() {
    use FramingError::*;
    let head = with_host("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").unwrap().unwrap();
    assert_eq!(head.framing(), BodyFraming::Length(5));
    let head = with_host("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap().unwrap();
    assert_eq!(head.framing(), BodyFraming::Chunked);
    let framing_error = |raw: &str| match with_host(raw) {
        Err(RequestError::Framing(error)) => error,
        other => panic!("{raw:?} gave {other:?}"),
    };
    assert_eq!(
        framing_error("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Conflicting
    );
    assert_eq!(framing_error("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), UnsupportedTransferEncoding);
    assert_eq!(framing_error("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), InvalidTransferEncoding);
    assert_eq!(framing_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), InvalidTransferEncoding);
    assert_eq!(
        framing_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        InvalidTransferEncoding
    );
    assert_eq!(
        framing_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        InvalidTransferEncoding
    );
    assert_eq!(framing_error("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n"), InvalidTransferEncoding);
    assert_eq!(framing_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), TransferEncodingHttp10);
    assert_eq!(framing_error("POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n"), InvalidContentLength);
    assert_eq!(framing_error("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"), InvalidContentLength);
    assert_eq!(
        framing_error("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
        InvalidContentLength
    );
    assert_eq!(framing_error("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"), InvalidContentLength);
    let same = with_host("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").unwrap().unwrap();
    assert_eq!(same.framing(), BodyFraming::Length(5));
}

#[test]
fn host_rules() {
    let error = |raw: &[u8]| parse(raw).unwrap_err();
    assert_eq!(error(b"GET / HTTP/1.1\r\n\r\n"), RequestError::MissingHost);
    assert_eq!(error(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), RequestError::DuplicateHost);
    for bad in ["", "a b", "a/b", "user@a", "a:http", "a:123456", "[::1", "[zz]:80", "a?b"] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(error(raw.as_bytes()), RequestError::InvalidHost, "{bad:?}");
    }
    for good in ["a", "api.example.com:8443", "127.0.0.1:80", "[::1]:8080", "[2001:db8::1]", "xn--bcher-kva.example"] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
        assert!(parse(raw.as_bytes()).unwrap().is_some(), "{good:?}");
    }
    // HTTP/1.0 may omit it.
    let buf = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(parse(buf).unwrap().unwrap().host(buf), None);
}

#[test]
fn target_forms() {
    let buf = b"GET http://API.example:8080/echo/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    let head = parse(buf).unwrap().unwrap();
    assert_eq!(head.target_form(), TargetForm::Absolute);
    assert_eq!(head.target(buf), b"/echo/x?q=1");
    assert_eq!(head.host(buf), Some(&b"API.example:8080"[..]), "the target's authority wins over Host");
    let buf = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(parse(buf).unwrap().unwrap().target_form(), TargetForm::Asterisk);

    let error = |raw: &str| with_host(raw).unwrap_err();
    assert_eq!(error("GET * HTTP/1.1\r\n\r\n"), RequestError::InvalidTarget);
    assert_eq!(error("GET echo HTTP/1.1\r\n\r\n"), RequestError::InvalidTarget);
    assert_eq!(error("GET ftp://a/x HTTP/1.1\r\n\r\n"), RequestError::InvalidTarget);
    assert_eq!(error("GET http://a HTTP/1.1\r\n\r\n"), RequestError::InvalidTarget);
    assert_eq!(error("GET http://user:pw@a/x HTTP/1.1\r\n\r\n"), RequestError::InvalidHost);
    assert_eq!(error("GET http:///x HTTP/1.1\r\n\r\n"), RequestError::InvalidHost);
    assert_eq!(error("CONNECT a:443 HTTP/1.1\r\n\r\n"), RequestError::MethodNotSupported("CONNECT"));
}

#[test]
fn keep_alive_and_upgrade() {
    let close = with_host("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().unwrap();
    assert!(!close.keep_alive());
    let old = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert!(!old.keep_alive());
    let old_kept = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
    assert!(old_kept.keep_alive());
    let expect = with_host("PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").unwrap().unwrap();
    assert!(expect.expects_continue());
    let upgrade = with_host("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert!(upgrade.unwrap().unwrap().wants_upgrade());
    let no_token = with_host("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").unwrap().unwrap();
    assert!(!no_token.wants_upgrade(), "Upgrade without Connection: upgrade is not a request to switch");
}
