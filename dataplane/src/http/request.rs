//! Request heads: parsed from the connection's buffer, kept as offsets into it.

use crate::http::url::Target;
use crate::http::{
    BodyFraming, FramingError, HEAD_BYTES_CEILING, HEADERS_MAX, HeaderSpan, Span, Version, collect_headers,
    find_header, header_facts,
};

/// How the request target was written (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`: what clients send to an origin.
    Origin,
    /// `http://authority/path?query`: what clients send to a proxy; servers must accept it, and
    /// its authority replaces the `Host` header.
    Absolute,
    /// `*`, only with `OPTIONS`: the server as a whole.
    Asterisk,
}

/// The limits a request head is parsed under (`[limits]` in the config; defaults in
/// `contract::model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head, request line and headers (431, or 414 when the request line alone is larger).
    pub head_bytes_max: usize,
    /// Longest request target (414).
    pub uri_bytes_max: usize,
    /// Most headers (431); at most [`HEADERS_MAX`], the parser's array.
    pub headers_max: usize,
}

impl HeadLimits {
    /// The limits of `[limits]`, clamped to what the parser can hold.
    pub fn of(limits: &portcullis_contract::model::Limits) -> Self {
        Self {
            head_bytes_max: (limits.request_head_bytes_max as usize).min(HEAD_BYTES_CEILING),
            uri_bytes_max: limits.request_uri_bytes_max as usize,
            headers_max: (limits.request_headers_max as usize).min(HEADERS_MAX),
        }
    }
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self::of(&portcullis_contract::model::Limits::default())
    }
}

/// A parsed request head. Every accessor that returns bytes takes the buffer it was parsed from.
#[derive(Debug, Clone)]
pub struct RequestHead {
    method: Span,
    /// The origin-form part of the target (`/path?query`), also for absolute-form requests.
    target: Span,
    form: TargetForm,
    /// The effective host: the absolute-form target's authority, else the `Host` header.
    host: Option<Span>,
    version: Version,
    head_len: usize,
    headers: [HeaderSpan; HEADERS_MAX],
    header_count: usize,
    framing: BodyFraming,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
}

/// Why a request head is refused (each maps to one client response in the proxy's on-error
/// phase; the connection is closed after it, since what follows cannot be trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
    #[error("request head is larger than the limit")]
    TooLarge,
    #[error("request line or target is longer than the limit")]
    UriTooLong,
    #[error("request has more headers than the limit")]
    TooManyHeaders,
    #[error("request framing: {0}")]
    Framing(#[from] FramingError),
    #[error("HTTP/1.1 request without a Host header")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("Host header or target authority is not a valid host[:port]")]
    InvalidHost,
    #[error("request target is neither origin-form, absolute-form (http/https) nor * with OPTIONS")]
    InvalidTarget,
    #[error("method {0} is not supported by the gateway")]
    MethodNotSupported(&'static str),
}

/// Parses the request head at the start of `buf` under the default limits.
pub fn parse(buf: &[u8]) -> Result<Option<RequestHead>, RequestError> {
    parse_within(buf, &HeadLimits::default())
}

/// Parses the request head at the start of `buf`. `Ok(None)`: incomplete, read more.
///
/// Beyond httparse's syntax checks (token methods and header names, no whitespace before the
/// colon, no obs-fold, no bare CR or control bytes in values), this refuses every request a
/// proxy could disagree about with its backend (RFC 9112 §6.3, §11.2): Content-Length with
/// Transfer-Encoding, disagreeing Content-Lengths, codings other than a single `chunked`,
/// Transfer-Encoding in HTTP/1.0, missing or repeated `Host`, malformed authorities.
pub fn parse_within(buf: &[u8], limits: &HeadLimits) -> Result<Option<RequestHead>, RequestError> {
    let window = buf.get(..limits.head_bytes_max).unwrap_or(buf);
    let mut parsed_headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let parsed_headers = parsed_headers.get_mut(..limits.headers_max.max(1)).unwrap_or_default();
    let mut request = httparse::Request::new(parsed_headers);
    let head_len = match request.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if window.len() >= limits.head_bytes_max => {
            return Err(match window.contains(&b'\n') {
                true => RequestError::TooLarge,
                false => RequestError::UriTooLong,
            });
        }
        Ok(httparse::Status::Partial) => {
            // A request line longer than the target limit is refused before it is complete.
            return match window.contains(&b'\n') || window.len() <= limits.uri_bytes_max + REQUEST_LINE_EXTRA_BYTES {
                true => Ok(None),
                false => Err(RequestError::UriTooLong),
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(error) => return Err(RequestError::Malformed(error)),
    };
    // A complete parse fills method and path; httparse guarantees it, but untrusted input never panics here.
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(RequestError::Malformed(httparse::Error::Token));
    };
    if target.len() > limits.uri_bytes_max {
        return Err(RequestError::UriTooLong);
    }
    if method == "CONNECT" {
        return Err(RequestError::MethodNotSupported("CONNECT"));
    }
    let version = Version::from_minor(request.version);
    let (form, path, authority) = classify_target(method.as_bytes(), target.as_bytes())?;
    let mut head = RequestHead {
        method: Span::within(buf, method.as_bytes()),
        target: Span::within(buf, path),
        form,
        host: authority.map(|authority| Span::within(buf, authority)),
        version,
        head_len,
        headers: [HeaderSpan::default(); HEADERS_MAX],
        header_count: 0,
        framing: BodyFraming::None,
        connection_close: false,
        connection_keep_alive: false,
        expect_continue: false,
        upgrade: false,
    };
    head.header_count = collect_headers(buf, request.headers, &mut head.headers);
    head.check_host(buf)?;
    let facts = header_facts(buf, head.headers())?;
    head.framing = match (facts.content_length, facts.transfer_encoding) {
        (_, true) if version == Version::Http10 => return Err(FramingError::TransferEncodingHttp10.into()),
        (Some(_), true) => return Err(FramingError::Conflicting.into()),
        (None, true) if facts.transfer_codings == 1 && facts.chunked => BodyFraming::Chunked,
        // Any other coding has no knowable end for us (RFC 9112 §6.3 item 4): 501 per §6.1.
        (None, true) if facts.chunked_codings == 0 && facts.transfer_codings > 0 => {
            return Err(FramingError::UnsupportedTransferEncoding.into());
        }
        (None, true) => return Err(FramingError::InvalidTransferEncoding.into()),
        (Some(0), false) | (None, false) => BodyFraming::None,
        (Some(length), false) => BodyFraming::Length(length),
    };
    head.connection_close = facts.connection_close;
    head.connection_keep_alive = facts.connection_keep_alive;
    head.expect_continue = facts.expect_continue;
    head.upgrade = facts.connection_upgrade && head.header(buf, b"upgrade").is_some();
    Ok(Some(head))
}

/// Request-line bytes besides the target: the longest method we expect, two spaces,
/// `HTTP/1.1` and CRLF. A partial line longer than the target limit plus this cannot end well.
const REQUEST_LINE_EXTRA_BYTES: usize = 32;

/// A target's form, its origin-form part and (absolute-form) its authority.
type ClassifiedTarget<'b> = (TargetForm, &'b [u8], Option<&'b [u8]>);

/// Splits the target into its form, its origin-form part and (absolute-form) its authority.
fn classify_target<'b>(method: &[u8], target: &'b [u8]) -> Result<ClassifiedTarget<'b>, RequestError> {
    if target.first() == Some(&b'/') {
        return Ok((TargetForm::Origin, target, None));
    }
    if target == b"*" {
        return match method {
            b"OPTIONS" => Ok((TargetForm::Asterisk, target, None)),
            _ => Err(RequestError::InvalidTarget),
        };
    }
    let parsed = Target::parse(target);
    let (Some(scheme), Some(authority)) = (parsed.scheme(), parsed.authority()) else {
        return Err(RequestError::InvalidTarget);
    };
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(RequestError::InvalidTarget);
    }
    if !is_authority(authority) {
        return Err(RequestError::InvalidHost);
    }
    // `http://host` and `http://host?q` mean path `/`; the origin-form part must start with one.
    let path = parsed.origin_form();
    if path.first() != Some(&b'/') {
        return Err(RequestError::InvalidTarget);
    }
    Ok((TargetForm::Absolute, path, Some(authority)))
}

/// `host[:port]` as RFC 3986 allows it, without userinfo: a reg-name or IPv4 address (letters,
/// digits, `-._~`, percent-encoding and sub-delims) or a bracketed IPv6 literal, then an
/// optional port of at most 5 digits.
pub(crate) fn is_authority(authority: &[u8]) -> bool {
    let (host, port) = match authority.first() {
        Some(b'[') => match authority.iter().position(|&b| b == b']') {
            Some(close) => {
                let literal = &authority[1..close];
                if literal.is_empty() || !literal.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
                    return false;
                }
                (&authority[..=close], &authority[close + 1..])
            }
            None => return false,
        },
        _ => match authority.iter().position(|&b| b == b':') {
            Some(colon) => authority.split_at(colon),
            None => (authority, &authority[authority.len()..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    let host_ok = host.first() == Some(&b'[')
        || (!host.is_empty() && host.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)));
    port_ok && host_ok
}

impl RequestHead {
    /// Checks `Host` (RFC 9112 §3.2): exactly one in HTTP/1.1, at most one in HTTP/1.0, a valid
    /// authority; an absolute-form target's authority wins over it.
    fn check_host(&mut self, buf: &[u8]) -> Result<(), RequestError> {
        let mut hosts = self.headers().iter().filter(|header| header.name.of(buf).eq_ignore_ascii_case(b"host"));
        let first = hosts.next();
        if hosts.next().is_some() {
            return Err(RequestError::DuplicateHost);
        }
        match first {
            None if self.version == Version::Http11 => Err(RequestError::MissingHost),
            None => Ok(()),
            Some(host) if !is_authority(host.value.of(buf)) => Err(RequestError::InvalidHost),
            Some(host) => {
                self.host.get_or_insert(host.value);
                Ok(())
            }
        }
    }

    /// The method, e.g. `GET`.
    pub fn method<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.method.of(buf)
    }

    /// The request target's path with query (for an absolute-form target, the part after its
    /// authority; for `OPTIONS *`, `*`).
    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.target.of(buf)
    }

    /// How the target was written.
    pub fn target_form(&self) -> TargetForm {
        self.form
    }

    /// The host the client asked for: the absolute-form target's authority, else `Host`.
    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.host.map(|span| span.of(buf))
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

    /// The client asks to switch protocols (`Connection: upgrade` with an `Upgrade` header).
    pub fn wants_upgrade(&self) -> bool {
        self.upgrade
    }

    /// A `HEAD` request: its response never has a body.
    pub fn is_head(&self, buf: &[u8]) -> bool {
        self.method(buf) == b"HEAD"
    }
}

#[cfg(test)]
mod tests;
