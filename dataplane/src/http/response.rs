//! Backend response heads: parsed from the upstream buffer, kept as offsets into it.

use crate::http::{
    BodyFraming, FramingError, HEAD_BYTES_MAX, HEADERS_MAX, HeaderSpan, Span, Version, collect_headers, header_facts,
};

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    status: u16,
    reason: Span,
    version: Version,
    head_len: usize,
    headers: [HeaderSpan; HEADERS_MAX],
    header_count: usize,
    content_length: Option<u64>,
    chunked: bool,
    transfer_encoding: bool,
    connection_close: bool,
    connection_keep_alive: bool,
}

/// Why a backend's response head is refused (the client gets a 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    #[error("response head is larger than {HEAD_BYTES_MAX} bytes or has more than {HEADERS_MAX} headers")]
    TooLarge,
    #[error("response framing: {0}")]
    Framing(#[from] FramingError),
}

/// Parses the response head at the start of `buf`. `Ok(None)`: incomplete, read more.
pub fn parse(buf: &[u8]) -> Result<Option<ResponseHead>, ResponseError> {
    let window = buf.get(..HEAD_BYTES_MAX).unwrap_or(buf);
    let mut parsed_headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut parsed_headers);
    let head_len = match response.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if window.len() >= HEAD_BYTES_MAX => return Err(ResponseError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(error) => return Err(ResponseError::Malformed(error)),
    };
    let Some(status) = response.code else {
        return Err(ResponseError::Malformed(httparse::Error::Status));
    };
    let mut head = ResponseHead {
        status,
        reason: Span::within(buf, response.reason.unwrap_or("").as_bytes()),
        version: Version::from_minor(response.version),
        head_len,
        headers: [HeaderSpan::default(); HEADERS_MAX],
        header_count: 0,
        content_length: None,
        chunked: false,
        transfer_encoding: false,
        connection_close: false,
        connection_keep_alive: false,
    };
    head.header_count = collect_headers(buf, response.headers, &mut head.headers);
    let facts = header_facts(buf, head.headers())?;
    if facts.content_length.is_some() && facts.transfer_encoding {
        // RFC 9112 lets Transfer-Encoding win, but a proxy that forwards both invites smuggling.
        return Err(FramingError::Conflicting.into());
    }
    head.content_length = facts.content_length;
    head.chunked = facts.chunked;
    head.transfer_encoding = facts.transfer_encoding;
    head.connection_close = facts.connection_close;
    head.connection_keep_alive = facts.connection_keep_alive;
    Ok(Some(head))
}

impl ResponseHead {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase.
    pub fn reason<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.reason.of(buf)
    }

    /// Bytes of the head; the body (if any) starts here.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// Every header, in order.
    pub fn headers(&self) -> &[HeaderSpan] {
        self.headers.get(..self.header_count).unwrap_or(&[])
    }

    /// An interim (1xx) response: forwarded, and the final one follows. 101 is not interim for us:
    /// we never forward `Upgrade`, so a 101 is a backend error.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// How the body is delimited, given whether the request was `HEAD` (RFC 9112 §6.3).
    pub fn framing(&self, request_was_head: bool) -> BodyFraming {
        if request_was_head || (100..200).contains(&self.status) || self.status == 204 || self.status == 304 {
            return BodyFraming::None;
        }
        match (self.transfer_encoding, self.chunked, self.content_length) {
            (true, true, _) => BodyFraming::Chunked,
            (true, false, _) => BodyFraming::UntilClose,
            (false, _, Some(0)) => BodyFraming::None,
            (false, _, Some(length)) => BodyFraming::Length(length),
            (false, _, None) => BodyFraming::UntilClose,
        }
    }

    /// Whether the backend lets us reuse the connection after this response.
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection_close,
            Version::Http10 => self.connection_keep_alive && !self.connection_close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_frames() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        let head = parse(buf).unwrap().unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.reason(buf), b"OK");
        assert_eq!(head.framing(false), BodyFraming::Length(3));
        assert_eq!(head.framing(true), BodyFraming::None);
        assert!(head.keep_alive());
        let chunked = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(chunked.framing(false), BodyFraming::Chunked);
        let close = parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(close.framing(false), BodyFraming::UntilClose);
        assert!(!close.keep_alive());
        let no_content = parse(b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n").unwrap().unwrap();
        assert_eq!(no_content.framing(false), BodyFraming::None);
        let interim = parse(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap().unwrap();
        assert!(interim.is_interim());
    }

    #[test]
    fn refuses_bad_heads() {
        assert!(parse(b"HTTP/1.1 200 OK\r\n").unwrap().is_none());
        assert!(matches!(parse(b"HTTX/1.1 200 OK\r\n\r\n"), Err(ResponseError::Malformed(_))));
        let both = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(both.unwrap_err(), ResponseError::Framing(FramingError::Conflicting));
        let mut big = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        big.resize(HEAD_BYTES_MAX + 1, b'a');
        assert_eq!(parse(&big).unwrap_err(), ResponseError::TooLarge);
    }
}
