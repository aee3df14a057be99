//! Request heads: parsed from the connection's buffer, kept as offsets into it.

use crate::http::{
    BodyFraming, FramingError, HEAD_BYTES_MAX, HEADERS_MAX, HeaderSpan, Span, Version, collect_headers, find_header,
    header_facts,
};

/// A parsed request head. Every accessor that returns bytes takes the buffer it was parsed from.
#[derive(Debug, Clone)]
pub struct RequestHead {
    method: Span,
    target: Span,
    version: Version,
    head_len: usize,
    headers: [HeaderSpan; HEADERS_MAX],
    header_count: usize,
    framing: BodyFraming,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
}

/// Why a request head is refused (each maps to one client response in the proxy's on-error phase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
    #[error("request head is larger than {HEAD_BYTES_MAX} bytes")]
    TooLarge,
    #[error("request has more than {HEADERS_MAX} headers")]
    TooManyHeaders,
    #[error("request framing: {0}")]
    Framing(#[from] FramingError),
}

/// Parses the request head at the start of `buf`. `Ok(None)`: incomplete, read more.
pub fn parse(buf: &[u8]) -> Result<Option<RequestHead>, RequestError> {
    let window = buf.get(..HEAD_BYTES_MAX).unwrap_or(buf);
    let mut parsed_headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut parsed_headers);
    let head_len = match request.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if window.len() >= HEAD_BYTES_MAX => return Err(RequestError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(error) => return Err(RequestError::Malformed(error)),
    };
    // A complete parse fills method and path; httparse guarantees it, but untrusted input never panics here.
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(RequestError::Malformed(httparse::Error::Token));
    };
    let mut head = RequestHead {
        method: Span::within(buf, method.as_bytes()),
        target: Span::within(buf, target.as_bytes()),
        version: Version::from_minor(request.version),
        head_len,
        headers: [HeaderSpan::default(); HEADERS_MAX],
        header_count: 0,
        framing: BodyFraming::None,
        connection_close: false,
        connection_keep_alive: false,
        expect_continue: false,
    };
    head.header_count = collect_headers(buf, request.headers, &mut head.headers);
    let facts = header_facts(buf, head.headers())?;
    head.framing = match (facts.content_length, facts.transfer_encoding) {
        (Some(_), true) => return Err(FramingError::Conflicting.into()),
        (None, true) if facts.chunked => BodyFraming::Chunked,
        // A request body that is not chunked-last has no knowable end (RFC 9112 §6.3 item 4).
        (None, true) => return Err(FramingError::UnsupportedTransferEncoding.into()),
        (Some(0), false) | (None, false) => BodyFraming::None,
        (Some(length), false) => BodyFraming::Length(length),
    };
    head.connection_close = facts.connection_close;
    head.connection_keep_alive = facts.connection_keep_alive;
    head.expect_continue = facts.expect_continue;
    Ok(Some(head))
}

impl RequestHead {
    /// The method, e.g. `GET`.
    pub fn method<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.method.of(buf)
    }

    /// The request target as sent: path with query.
    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.target.of(buf)
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Bytes of the head, including the blank line; the body (if any) starts here.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// Every header, in order.
    pub fn headers(&self) -> &[HeaderSpan] {
        self.headers.get(..self.header_count).unwrap_or(&[])
    }

    /// The first header named `name` (case-insensitive).
    pub fn header<'b>(&self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        find_header(buf, self.headers(), name)
    }

    /// How the body is delimited.
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the client wants the connection kept after this request (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection_close,
            Version::Http10 => self.connection_keep_alive && !self.connection_close,
        }
    }

    /// The client sent `Expect: 100-continue` and waits before sending its body.
    pub fn expects_continue(&self) -> bool {
        self.expect_continue
    }

    /// A `HEAD` request: its response never has a body.
    pub fn is_head(&self, buf: &[u8]) -> bool {
        self.method(buf) == b"HEAD"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_request() {
        let buf = b"GET /echo/x?q=1 HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\nleftover";
        let head = parse(buf).unwrap().unwrap();
        assert_eq!(head.method(buf), b"GET");
        assert_eq!(head.target(buf), b"/echo/x?q=1");
        assert_eq!(head.version(), Version::Http11);
        assert_eq!(&buf[head.head_len()..], b"leftover");
        assert_eq!(head.headers().len(), 2);
        assert_eq!(head.header(buf, b"host"), Some(&b"a"[..]));
        assert_eq!(head.header(buf, b"x-y"), Some(&b"z"[..]));
        assert_eq!(head.header(buf, b"missing"), None);
        assert_eq!(head.framing(), BodyFraming::None);
        assert!(head.keep_alive());
    }

    #[test]
    fn incomplete_request() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        assert!(parse(b"").unwrap().is_none());
        assert!(parse(b"GE").unwrap().is_none());
    }

    #[test]
    fn malformed_request() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"), Err(RequestError::Malformed(_))));
        assert!(matches!(parse(b"\x01GET / HTTP/1.1\r\n\r\n"), Err(RequestError::Malformed(_))));
        assert!(matches!(parse(b"GET / HTTP/2.0\r\n\r\n"), Err(RequestError::Malformed(_))));
    }

    #[test]
    fn too_many_headers_and_too_large() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=HEADERS_MAX {
            buf.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse(&buf).unwrap_err(), RequestError::TooManyHeaders);

        let mut big = b"GET / HTTP/1.1\r\nx: ".to_vec();
        big.resize(HEAD_BYTES_MAX + 10, b'a');
        assert_eq!(parse(&big).unwrap_err(), RequestError::TooLarge);
        // Just under the limit and still incomplete: read more.
        big.truncate(HEAD_BYTES_MAX - 1);
        assert!(parse(&big).unwrap().is_none());
    }

    #[test]
    fn framing() {
        let head = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.framing(), BodyFraming::Length(5));
        let head = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.framing(), BodyFraming::Chunked);
        let conflicting = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(conflicting.unwrap_err(), RequestError::Framing(FramingError::Conflicting));
        let gzip = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(gzip.unwrap_err(), RequestError::Framing(FramingError::UnsupportedTransferEncoding));
        let bad = parse(b"POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n");
        assert_eq!(bad.unwrap_err(), RequestError::Framing(FramingError::InvalidContentLength));
        let disagree = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert_eq!(disagree.unwrap_err(), RequestError::Framing(FramingError::InvalidContentLength));
        let same = parse(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(same.framing(), BodyFraming::Length(5));
    }

    #[test]
    fn keep_alive_rules() {
        let close = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().unwrap();
        assert!(!close.keep_alive());
        let old = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!old.keep_alive());
        let old_kept = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(old_kept.keep_alive());
        let expect = parse(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").unwrap().unwrap();
        assert!(expect.expects_continue());
    }
}
