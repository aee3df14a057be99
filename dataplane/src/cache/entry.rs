//! A cached response, as the client got it, and the bounded tee that collects one while the
//! relay streams it.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::forward::{ClientConnection, write_connection};
use crate::policy::DownstreamCaching;

/// A response `cache-store` kept: the head the client got (status line and header lines, each
/// ending in CRLF; without `Connection`, which is per client, and without the blank line) and
/// the body as it went on the wire (its framing matches the head's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    pub head: Box<[u8]>,
    pub body: Box<[u8]>,
    /// When it expires, in whole seconds since the Unix epoch (it travels to Redis with it).
    pub expires_at_s: u64,
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

impl CachedResponse {
    /// The response relayed as `head` (a whole head, through its blank line) and `body`.
    /// `None` when `head` is not a head.
    pub fn of_relayed(head: &[u8], body: Vec<u8>, ttl: Duration) -> Option<Self> {
        let end = head.windows(4).position(|window| window == b"\r\n\r\n")?;
        let mut kept = Vec::with_capacity(end + 2);
        for line in head.get(..end + 2)?.split_inclusive(|&b| b == b'\n') {
            if !starts_with_name(line, b"connection:") {
                kept.extend_from_slice(line);
            }
        }
        let expires_at_s = now_s().saturating_add(ttl.as_secs());
        Some(Self { head: kept.into_boxed_slice(), body: body.into_boxed_slice(), expires_at_s })
    }

    /// Seconds until it expires (for `max-age` downstream).
    pub fn ttl_left_s(&self) -> u64 {
        self.expires_at_s.saturating_sub(now_s())
    }

    /// Bytes it takes in the cache.
    pub fn weight(&self) -> usize {
        self.head.len() + self.body.len() + 32
    }

    /// The status code, from the status line.
    pub fn status(&self) -> u16 {
        self.head
            .get(9..12)
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    /// Writes (replacing `out`'s contents) this response for one client: the head with the
    /// client's `Connection` and, when downstream caching is allowed, `Cache-Control` for
    /// `max_age_s` more seconds (replacing the backend's); then the body unless `head_only`.
    pub fn write_to(&self, out: &mut Vec<u8>, connection: ClientConnection, downstream: &Downstream, head_only: bool) {
        out.clear();
        let directive = downstream.cache_control();
        for line in self.head.split_inclusive(|&b| b == b'\n') {
            if directive.is_some() && starts_with_name(line, b"cache-control:") {
                continue;
            }
            out.extend_from_slice(line);
        }
        if let Some(directive) = directive {
            out.extend_from_slice(b"Cache-Control: ");
            out.extend_from_slice(directive.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        write_connection(out, connection);
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }

    /// The wire form for the external cache: `R`, expiry (8 bytes), head length (4 bytes), head,
    /// body (numbers big-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + self.head.len() + self.body.len());
        out.push(b'R');
        out.extend_from_slice(&self.expires_at_s.to_be_bytes());
        out.extend_from_slice(&(self.head.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.body);
        out
    }

    /// Reads [`Self::encode`]'s form; anything else is `None` (a miss).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(b"R")?;
        let expires_at_s = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let rest = rest.get(8..)?;
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let head = rest.get(4..4 + len)?;
        let body = rest.get(4 + len..)?;
        if !head.starts_with(b"HTTP/1.1 ") || !head.ends_with(b"\r\n") {
            return None;
        }
        Some(Self { head: head.into(), body: body.into(), expires_at_s })
    }
}

/// The `Cache-Control` a response served from the cache carries downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downstream {
    pub caching: DownstreamCaching,
    pub must_revalidate: bool,
    /// Seconds the entry has left.
    pub max_age_s: u64,
}

impl Downstream {
    /// `private, max-age=N[, must-revalidate]` or `public, ...`; `None` for `none`, which passes
    /// on what the backend said (docs/cache.md).
    pub fn cache_control(&self) -> Option<String> {
        let scope = match self.caching {
            DownstreamCaching::None => return None,
            DownstreamCaching::Private => "private",
            DownstreamCaching::Public => "public",
        };
        let mut value = format!("{scope}, max-age={}", self.max_age_s);
        if self.must_revalidate {
            let _ = write!(value, ", must-revalidate");
        }
        Some(value)
    }
}

/// Whether a header line starts with `name` (lower case, with its colon), in any case.
fn starts_with_name(line: &[u8], name: &[u8]) -> bool {
    line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name)
}

/// Collects a response body while the relay streams it, up to a bound: past it the copy is
/// dropped (its memory freed at once) and the response is not stored. The client's stream never
/// waits for it.
#[derive(Debug)]
pub struct Tee {
    bytes: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Tee {
    pub fn new(limit: usize) -> Self {
        Self { bytes: Vec::new(), limit, over: false }
    }

    /// Appends bytes that went to the client.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.over {
            return;
        }
        if self.bytes.len() + bytes.len() > self.limit {
            self.over = true;
            self.bytes = Vec::new();
            return;
        }
        self.bytes.extend_from_slice(bytes);
    }

    /// The whole body, unless it passed the bound.
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.over).then_some(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAYED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-cache\r\nContent-Length: 5\r\nConnection: close\r\n\r\n";

    #[test]
    fn the_stored_head_leaves_out_connection_and_is_written_per_client() {
        let cached = CachedResponse::of_relayed(RELAYED, b"hello".to_vec(), Duration::from_secs(60)).expect("a head");
        assert_eq!(
            &*cached.head,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-cache\r\nContent-Length: 5\r\n"
        );
        assert_eq!(cached.status(), 200);
        let mut out = Vec::new();
        let none = Downstream { caching: DownstreamCaching::None, must_revalidate: true, max_age_s: 9 };
        cached.write_to(&mut out, ClientConnection::KeepAlive, &none, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-cache\r\nContent-Length: 5\r\n\r\nhello"
        );
        let public = Downstream { caching: DownstreamCaching::Public, must_revalidate: true, max_age_s: 9 };
        cached.write_to(&mut out, ClientConnection::Close, &public, false);
        assert_eq!(
            out,
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nCache-Control: public, max-age=9, must-revalidate\r\nConnection: close\r\n\r\nhello"[..]
        );
        let private = Downstream { caching: DownstreamCaching::Private, must_revalidate: false, max_age_s: 3 };
        assert_eq!(private.cache_control().as_deref(), Some("private, max-age=3"));
    }

    #[test]
    fn the_wire_form_round_trips_and_refuses_junk() {
        let cached = CachedResponse::of_relayed(RELAYED, b"hello".to_vec(), Duration::from_secs(60)).expect("a head");
        assert_eq!(CachedResponse::decode(&cached.encode()), Some(cached.clone()));
        assert_eq!(CachedResponse::decode(b"R\0\0\0\0\0\0\0\0\x00\x00\x00\x09HTTP/1.1 "), None);
        assert_eq!(CachedResponse::decode(b"sjunk"), None);
        assert!(CachedResponse::of_relayed(b"HTTP/1.1 200 OK\r\n", Vec::new(), Duration::ZERO).is_none());
        assert!((59..=60).contains(&cached.ttl_left_s()));
    }

    #[test]
    fn the_tee_drops_a_body_past_its_bound() {
        let mut tee = Tee::new(8);
        tee.push(b"1234");
        tee.push(b"5678");
        assert_eq!(tee.finish().as_deref(), Some(&b"12345678"[..]));
        let mut tee = Tee::new(8);
        tee.push(b"12345");
        tee.push(b"6789");
        tee.push(b"0");
        assert_eq!(tee.finish(), None);
    }
}
