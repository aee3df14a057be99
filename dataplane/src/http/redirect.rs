//! Following a backend's redirect (`forward-request follow-redirects="true"`), sans-IO: which
//! responses are followed, where the next request goes, and the head it is sent with.
//!
//! The rules are those of the .NET `HttpClient` APIM's gateway calls backends with: 300 (with a
//! `Location`), 301, 302, 303, 307 and 308 are followed; 301, 302 and 300 turn a `POST` into a
//! `GET` without body, 303 turns every method but `GET` and `HEAD` into one; 307 and 308 keep
//! method and body; `Authorization` is never sent on to the redirect's target; a redirect from
//! `https` to `http` is not followed.

use std::fmt::Write as _;

/// Redirects followed for one `forward-request` at most: a backend that redirects in a loop
/// costs a client at most this many extra round trips (curl's and browsers' limits are 20-50;
/// ten is plenty for an API). After the last, the redirect at hand is relayed as it is.
pub const REDIRECTS_FOLLOWED_MAX: usize = 10;

/// Longest `Location` followed: longer ones are relayed as they are (the target is bounded by
/// the request line limits of the backend anyway).
pub const LOCATION_BYTES_MAX: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An absolute `http(s)` URL, split the way a request needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Lowercase; an IPv6 address keeps its brackets.
    pub host: String,
    pub port: u16,
    /// The origin-form request target: path (never empty) and query, without the fragment.
    pub target: String,
}

impl Url {
    /// `host[:port]`, the port left out when it is the scheme's default (the `Host` header).
    pub fn authority(&self) -> String {
        let mut authority = self.host.clone();
        if self.port != self.scheme.default_port() {
            let _ = write!(authority, ":{}", self.port);
        }
        authority
    }

    /// Same scheme, host and port (RFC 6454's origin).
    pub fn same_origin(&self, other: &Url) -> bool {
        self.scheme == other.scheme && self.host == other.host && self.port == other.port
    }

    /// The host without IPv6 brackets (for address parsing and TLS server names).
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme.as_str(), self.authority(), self.target)
    }
}

/// The next request a redirect asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub url: Url,
    /// The request becomes a `GET` without a body.
    pub becomes_get: bool,
}

/// Whether `status` is a redirect the gateway follows (when the response has a `Location`).
pub fn is_followed_status(status: u16) -> bool {
    matches!(status, 300 | 301 | 302 | 303 | 307 | 308)
}

/// The request that follows a `status` response with `location` to a request with `method` sent
/// to `current`; `None` when it is not followed (not a redirect status, a `Location` that is not
/// an http(s) URL, or a step down from https to http).
pub fn plan(status: u16, method: &[u8], location: &[u8], current: &Url) -> Option<Redirect> {
    if !is_followed_status(status) {
        return None;
    }
    let url = resolve(location, current)?;
    if current.scheme == Scheme::Https && url.scheme == Scheme::Http {
        return None;
    }
    let becomes_get = match status {
        300..=302 => method == b"POST",
        303 => method != b"GET" && method != b"HEAD",
        _ => false,
    };
    Some(Redirect { url, becomes_get })
}

/// Resolves a `Location` value against the URL of the request it answers (RFC 3986 §5.2):
/// absolute `http(s)` URLs, network-path (`//host/p`), absolute-path (`/p`) and relative (`p`,
/// `../p`, `?q`) references. The fragment is dropped (it never goes on the wire).
pub fn resolve(location: &[u8], base: &Url) -> Option<Url> {
    if location.is_empty() || location.len() > LOCATION_BYTES_MAX {
        return None;
    }
    // Visible ASCII only: a Location with spaces, controls or raw UTF-8 is not a URI.
    if !location.iter().all(|&b| b.is_ascii_graphic()) {
        return None;
    }
    let text = std::str::from_utf8(location).ok()?;
    let text = text.split_once('#').map_or(text, |(before, _)| before);
    if let Some((scheme, rest)) = scheme_of(text) {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        };
        let rest = rest.strip_prefix("//")?;
        return with_authority(scheme, rest);
    }
    if let Some(rest) = text.strip_prefix("//") {
        return with_authority(base.scheme, rest);
    }
    let (base_path, base_query) = split_query(&base.target);
    let (path, query) = split_query(text);
    let (path, query) = if path.is_empty() {
        (base_path.to_owned(), query.or(if text.is_empty() { base_query } else { None }))
    } else if path.starts_with('/') {
        (remove_dot_segments(path), query)
    } else {
        let directory = base_path.rfind('/').map_or("/", |slash| &base_path[..=slash]);
        (remove_dot_segments(&format!("{directory}{path}")), query)
    };
    Some(Url { scheme: base.scheme, host: base.host.clone(), port: base.port, target: target_of(&path, query) })
}

/// The URL a forwarded head was sent to: its request-line target and `Host`, over `scheme`.
pub fn sent_url(head: &[u8], scheme: Scheme) -> Option<Url> {
    let (request_line, headers) = split_line(head)?;
    let target = std::str::from_utf8(request_line.split(|&b| b == b' ').nth(1)?).ok()?;
    if !target.starts_with('/') {
        return None;
    }
    let mut rest = headers;
    while let Some((line, next)) = split_line(rest) {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once_at(b':') {
            if name.eq_ignore_ascii_case(b"host") {
                let host = std::str::from_utf8(value).ok()?.trim();
                let mut url = with_authority(scheme, host)?;
                url.target = target.to_owned();
                return Some(url);
            }
        }
        rest = next;
    }
    None
}

/// Writes into `out` (replacing it) the head of the request that follows `redirect`, from the
/// head `sent` before it: the new method and target, `Host` set to the new authority,
/// `Authorization` left out, and, when the request becomes a `GET`, its framing and content
/// headers left out. Every other header (the policies' edits, `X-Forwarded-*`) stays. `false`
/// (and `out` unspecified) if `sent` is not a head this gateway wrote.
pub fn write_head(sent: &[u8], redirect: &Redirect, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Some((request_line, mut rest)) = split_line(sent) else { return false };
    let Some(method) = request_line.split(|&b| b == b' ').next() else { return false };
    out.extend_from_slice(if redirect.becomes_get { b"GET" } else { method });
    out.push(b' ');
    out.extend_from_slice(redirect.url.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    loop {
        let Some((line, next)) = split_line(rest) else { return false };
        if line.is_empty() {
            out.extend_from_slice(b"\r\n");
            return true;
        }
        let Some((name, _)) = line.split_once_at(b':') else { return false };
        let dropped = name.eq_ignore_ascii_case(b"authorization")
            || (redirect.becomes_get && (name.eq_ignore_ascii_case(b"transfer-encoding") || is_content_header(name)));
        if name.eq_ignore_ascii_case(b"host") {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(redirect.url.authority().as_bytes());
            out.extend_from_slice(b"\r\n");
        } else if !dropped {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        rest = next;
    }
}

/// Headers that describe the body (.NET keeps them on the content, which a redirect to `GET` drops).
fn is_content_header(name: &[u8]) -> bool {
    name.len() >= 8 && name[..8].eq_ignore_ascii_case(b"content-")
}

trait SplitOnce {
    fn split_once_at(&self, byte: u8) -> Option<(&[u8], &[u8])>;
}

impl SplitOnce for [u8] {
    fn split_once_at(&self, byte: u8) -> Option<(&[u8], &[u8])> {
        let at = self.iter().position(|&b| b == byte)?;
        Some((&self[..at], &self[at + 1..]))
    }
}

/// The first CRLF-terminated line and what follows it.
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    Some((&bytes[..at], &bytes[at + 2..]))
}

/// `scheme:rest` when `text` starts with an RFC 3986 scheme.
fn scheme_of(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    // `a/b:c` is a relative path: its "scheme" has a slash, so it is not one.
    valid.then_some((scheme, rest))
}

/// `authority[/path][?query]` after `scheme://`.
fn with_authority(scheme: Scheme, rest: &str) -> Option<Url> {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    if authority.contains('@') {
        // userinfo: credentials in a redirect are never followed.
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (address, after) = v6.split_once(']')?;
            address.parse::<std::net::Ipv6Addr>().ok()?;
            (format!("[{}]", address.to_ascii_lowercase()), after)
        }
        None => {
            let colon = authority.find(':').unwrap_or(authority.len());
            let (host, after) = authority.split_at(colon);
            let valid =
                !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !valid {
                return None;
            }
            (host.to_ascii_lowercase(), after)
        }
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => scheme.default_port(),
        None => return None,
        Some("") => scheme.default_port(),
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 5 => {
            digits.parse::<u16>().ok().filter(|&port| port != 0)?
        }
        Some(_) => return None,
    };
    let (path, query) = split_query(path_and_query);
    let path = if path.is_empty() { "/".to_owned() } else { remove_dot_segments(path) };
    Some(Url { scheme, host, port, target: target_of(&path, query) })
}

fn split_query(text: &str) -> (&str, Option<&str>) {
    match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    }
}

fn target_of(path: &str, query: Option<&str>) -> String {
    let mut target = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    target
}

/// RFC 3986 §5.2.4 on an absolute path: `.` and `..` segments resolved, never above the root.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (index, segment) in parts.iter().enumerate() {
        match *segment {
            "." => trailing_slash = index == last,
            ".." => {
                segments.pop();
                trailing_slash = index == last;
            }
            other => {
                segments.push(other);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests;
