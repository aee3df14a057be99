//! HTTP/1.x wire handling, sans-IO: request and response heads, chunked framing, URL targets and
//! percent-coding, and the heads we write.
//!
//! Heads are parsed with httparse straight from the connection's buffer and kept as [`Span`]s
//! (offsets into that buffer), so nothing is copied into owned strings on the hot path.

pub mod chunked;
pub mod error_response;
pub mod forward;
pub mod redirect;
pub mod request;
pub mod response;
pub mod url;

/// Headers per head: httparse needs a fixed array, so `[limits] request-headers-max` can lower
/// this but not raise it.
pub const HEADERS_MAX: usize = portcullis_contract::model::REQUEST_HEADERS_CEILING as usize;
/// Largest response head, and the default for requests: 16 KiB is twice nginx's default
/// `large_client_header_buffers` line.
pub const HEAD_BYTES_MAX: usize = portcullis_contract::model::REQUEST_HEAD_BYTES_MAX_DEFAULT as usize;
/// Largest request head `[limits] request-head-bytes-max` may allow.
pub const HEAD_BYTES_CEILING: usize = portcullis_contract::model::REQUEST_HEAD_BYTES_CEILING as usize;
/// Room a head read makes at a time: a request head that does not fit its connection's buffer
/// (which starts at 512 bytes, the idle read's size) grows it by this much per read, up to the head
/// limit; a backend response head is read into a buffer with this much room.
pub const HEAD_BYTES_INITIAL: usize = 4 * 1024;

const _: () = assert!(HEAD_BYTES_INITIAL <= HEAD_BYTES_MAX);
// Spans are u32: every head fits many times over.
const _: () = assert!(HEAD_BYTES_MAX <= HEAD_BYTES_CEILING && HEAD_BYTES_CEILING < u32::MAX as usize);

/// A byte range of the connection's buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `part`, a sub-slice of `buf` (as httparse hands out).
    fn within(buf: &[u8], part: &[u8]) -> Self {
        let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize).min(buf.len());
        let end = (start + part.len()).min(buf.len());
        Self { start: start as u32, end: end as u32 }
    }

    /// The bytes of this span in `buf` (empty if `buf` is not the buffer it came from).
    pub fn of(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize).unwrap_or(&[])
    }

    /// Offset of the first byte.
    pub fn start(self) -> usize {
        self.start as usize
    }

    /// Offset one past the last byte.
    pub fn end(self) -> usize {
        self.end as usize
    }
}

/// One header: name and value, as spans of the buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
}

/// HTTP version of a head (httparse accepts only these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    fn from_minor(minor: Option<u8>) -> Self {
        if minor == Some(0) { Version::Http10 } else { Version::Http11 }
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, passed through as-is.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// Why a head's framing headers are unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("both Content-Length and Transfer-Encoding are present")]
    Conflicting,
    #[error("Content-Length is not a decimal number, or two of them disagree")]
    InvalidContentLength,
    #[error("Transfer-Encoding names a coding other than chunked")]
    UnsupportedTransferEncoding,
    #[error("Transfer-Encoding is empty, applies chunked twice, or does not end in chunked")]
    InvalidTransferEncoding,
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingHttp10,
}

/// What the framing and connection headers of a head say.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeaderFacts {
    pub(crate) content_length: Option<u64>,
    /// A Transfer-Encoding header is present.
    pub(crate) transfer_encoding: bool,
    /// The last transfer coding is `chunked`.
    pub(crate) chunked: bool,
    /// Transfer codings named, over all Transfer-Encoding headers.
    pub(crate) transfer_codings: u32,
    /// Of those, how many are `chunked`.
    pub(crate) chunked_codings: u32,
    pub(crate) connection_close: bool,
    pub(crate) connection_keep_alive: bool,
    pub(crate) connection_upgrade: bool,
    pub(crate) expect_continue: bool,
}

/// Reads the framing and connection headers.
pub(crate) fn header_facts(buf: &[u8], headers: &[HeaderSpan]) -> Result<HeaderFacts, FramingError> {
    let mut facts = HeaderFacts::default();
    for header in headers {
        let name = header.name.of(buf);
        let value = header.value.of(buf);
        if name.eq_ignore_ascii_case(b"content-length") {
            for item in tokens(value) {
                let length = parse_decimal(item).ok_or(FramingError::InvalidContentLength)?;
                if facts.content_length.is_some_and(|seen| seen != length) {
                    return Err(FramingError::InvalidContentLength);
                }
                facts.content_length = Some(length);
            }
            if facts.content_length.is_none() {
                return Err(FramingError::InvalidContentLength);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            facts.transfer_encoding = true;
            // Only the last coding of the last header decides whether the body is chunked.
            for coding in tokens(value) {
                let chunked = coding.eq_ignore_ascii_case(b"chunked");
                facts.chunked = chunked;
                facts.transfer_codings = facts.transfer_codings.saturating_add(1);
                facts.chunked_codings = facts.chunked_codings.saturating_add(u32::from(chunked));
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(value) {
                facts.connection_close |= token.eq_ignore_ascii_case(b"close");
                facts.connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                facts.connection_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            facts.expect_continue |= trim(value).eq_ignore_ascii_case(b"100-continue");
        }
    }
    Ok(facts)
}

/// RFC 9110 `tchar`: a byte of a token (methods, header names, chunk-extension names).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The comma-separated, trimmed, non-empty items of a header value.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim).filter(|item| !item.is_empty())
}

/// `value` without leading and trailing spaces and tabs.
pub(crate) fn trim(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(value.len());
    let end = value.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |last| last + 1);
    value.get(start..end).unwrap_or(&[])
}

/// A non-empty run of ASCII digits that fits in a u64.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Collects httparse's headers as spans of `buf`; returns how many were written.
fn collect_headers(buf: &[u8], parsed: &[httparse::Header<'_>], out: &mut [HeaderSpan; HEADERS_MAX]) -> usize {
    let mut count = 0;
    for (slot, header) in out.iter_mut().zip(parsed) {
        *slot = HeaderSpan { name: Span::within(buf, header.name.as_bytes()), value: Span::within(buf, header.value) };
        count += 1;
    }
    count
}

/// The first header named `name` (case-insensitive).
pub(crate) fn find_header<'b>(buf: &'b [u8], headers: &[HeaderSpan], name: &[u8]) -> Option<&'b [u8]> {
    headers.iter().find(|header| header.name.of(buf).eq_ignore_ascii_case(name)).map(|header| header.value.of(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_trim() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(trim(b"  a b\t"), b"a b");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(tokens(b" close , ,keep-alive").collect::<Vec<_>>(), vec![&b"close"[..], b"keep-alive"]);
    }
}
