//! The heads we write: the request forwarded to a backend and the response relayed to the client.

use std::io::Write as _;
use std::net::IpAddr;

use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;
use crate::http::{HeaderSpan, tokens, url};

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1), besides those a
/// `Connection` header names.
const HOP_BY_HOP: [&[u8]; 5] = [b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade"];
/// Request headers the gateway sets itself (or, for `Expect`, answers itself).
pub(crate) const REPLACED_ON_REQUEST: [&[u8]; 5] =
    [b"host", b"expect", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"];

/// What the gateway answers to `Expect: 100-continue` once the inbound phase has let the request through.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the client connection does after this response, as the `Connection` header says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientConnection {
    /// HTTP/1.1 keep-alive: no header needed.
    KeepAlive,
    /// HTTP/1.0 keep-alive: `Connection: keep-alive`.
    KeepAliveHttp10,
    /// The gateway closes after this response: `Connection: close`.
    Close,
    /// A `101 Switching Protocols`: `Connection: upgrade` and the backend's `Upgrade`.
    Upgrade,
}

/// Where a forwarded request goes and who sent it.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The backend's base path (`""` or `/v1`).
    pub base_path: &'a str,
    /// `Host` header for the backend.
    pub authority: &'a str,
    /// Offset in the request target where the path after the API prefix starts.
    pub remainder_start: usize,
    /// The client's address, appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// The client came over TLS: `X-Forwarded-Proto: https`.
    pub tls: bool,
    /// The gateway's `traceparent` (W3C Trace Context), replacing the client's; `tracestate`
    /// passes unchanged with the other headers.
    pub traceparent: Option<&'a [u8]>,
}

/// Writes (replacing `out`'s contents) the request head sent to the backend.
pub fn write_request_head(out: &mut Vec<u8>, head: &RequestHead, buf: &[u8], forwarding: &Forwarding<'_>) {
    out.clear();
    out.extend_from_slice(head.method(buf));
    out.push(b' ');
    let target = head.target(buf);
    url::write_backend_target(out, forwarding.base_path, target.get(forwarding.remainder_start..).unwrap_or(&[]));
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let headers = head.headers();
    for header in headers {
        let name = header.name.of(buf);
        if is_hop_by_hop(name, buf, headers)
            || REPLACED_ON_REQUEST.iter().any(|r| name.eq_ignore_ascii_case(r))
            || (forwarding.traceparent.is_some() && name.eq_ignore_ascii_case(TRACEPARENT))
        {
            continue;
        }
        write_header(out, name, header.value.of(buf));
    }
    write_proxy_headers(
        out,
        head,
        buf,
        forwarding.authority,
        forwarding.client_ip,
        forwarding.tls,
        forwarding.traceparent,
    );
}

/// The W3C Trace Context header the gateway replaces.
pub(crate) const TRACEPARENT: &[u8] = b"traceparent";

/// Appends the headers the gateway sets on every forwarded request (`Host`, `X-Forwarded-For`
/// with the client appended, `X-Forwarded-Proto`, `X-Forwarded-Host`, `traceparent`) and ends the
/// head.
pub(crate) fn write_proxy_headers(
    out: &mut Vec<u8>,
    head: &RequestHead,
    buf: &[u8],
    authority: &str,
    client_ip: IpAddr,
    tls: bool,
    traceparent: Option<&[u8]>,
) {
    write_header(out, b"Host", authority.as_bytes());
    out.extend_from_slice(b"X-Forwarded-For: ");
    for header in head.headers().iter().filter(|h| h.name.of(buf).eq_ignore_ascii_case(b"x-forwarded-for")) {
        out.extend_from_slice(header.value.of(buf));
        out.extend_from_slice(b", ");
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{client_ip}\r\n");
    // A protocol switch is asked of the backend again (Upgrade and Connection are hop-by-hop).
    if let (true, Some(upgrade)) = (head.wants_upgrade(), head.header(buf, b"upgrade")) {
        write_header(out, b"Upgrade", upgrade);
        out.extend_from_slice(b"Connection: upgrade\r\n");
    }
    out.extend_from_slice(if tls { b"X-Forwarded-Proto: https\r\n" } else { b"X-Forwarded-Proto: http\r\n" });
    if let Some(host) = head.host(buf) {
        write_header(out, b"X-Forwarded-Host", host);
    }
    if let Some(traceparent) = traceparent {
        write_header(out, b"traceparent", traceparent);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes (replacing `out`'s contents) the response head relayed to the client.
pub fn write_response_head(out: &mut Vec<u8>, head: &ResponseHead, buf: &[u8], connection: ClientConnection) {
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {} ", head.status());
    out.extend_from_slice(head.reason(buf));
    out.extend_from_slice(b"\r\n");
    let headers = head.headers();
    for header in headers {
        let name = header.name.of(buf);
        if !is_hop_by_hop(name, buf, headers) {
            write_header(out, name, header.value.of(buf));
        }
    }
    if connection == ClientConnection::Upgrade {
        let upgrade = headers.iter().find(|header| header.name.of(buf).eq_ignore_ascii_case(b"upgrade"));
        if let Some(upgrade) = upgrade {
            write_header(out, b"Upgrade", upgrade.value.of(buf));
        }
    }
    write_connection(out, connection);
    out.extend_from_slice(b"\r\n");
}

/// Appends the `Connection` header `connection` needs, if any.
pub(crate) fn write_connection(out: &mut Vec<u8>, connection: ClientConnection) {
    match connection {
        ClientConnection::KeepAlive => {}
        ClientConnection::KeepAliveHttp10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ClientConnection::Close => out.extend_from_slice(b"Connection: close\r\n"),
        ClientConnection::Upgrade => out.extend_from_slice(b"Connection: upgrade\r\n"),
    }
}

/// A hop-by-hop header: one of the fixed list, or named by a `Connection` header.
pub(crate) fn is_hop_by_hop(name: &[u8], buf: &[u8], headers: &[HeaderSpan]) -> bool {
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
        || headers
            .iter()
            .filter(|header| header.name.of(buf).eq_ignore_ascii_case(b"connection"))
            .any(|header| tokens(header.value.of(buf)).any(|token| token.eq_ignore_ascii_case(name)))
}

pub(crate) fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{request, response};

    #[test]
    fn request_head_rewrite() {
        let buf = b"POST /echo/hello?x=1 HTTP/1.1\r\nHost: gw.example\r\nConnection: keep-alive, X-Secret\r\n\
X-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Forwarded-For: 10.0.0.1\r\n\
Transfer-Encoding: chunked\r\nOcp-Apim-Subscription-Key: k\r\nExpect: 100-continue\r\n\r\n";
        let head = request::parse(buf).unwrap().unwrap();
        let mut out = Vec::new();
        let forwarding = Forwarding {
            base_path: "/api",
            authority: "backend:8081",
            remainder_start: 5,
            client_ip: "127.0.0.1".parse().unwrap(),
            tls: false,
            traceparent: None,
        };
        write_request_head(&mut out, &head, buf, &forwarding);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "POST /api/hello?x=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nOcp-Apim-Subscription-Key: k\r\n\
Host: backend:8081\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\
X-Forwarded-Host: gw.example\r\n\r\n"
        );
        // Over TLS, the client-facing scheme is https (whatever the client claimed).
        let buf = b"GET /echo/x HTTP/1.1\r\nHost: gw\r\nX-Forwarded-Proto: http\r\n\r\n";
        let head = request::parse(buf).unwrap().unwrap();
        write_request_head(&mut out, &head, buf, &Forwarding { tls: true, ..forwarding });
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nX-Forwarded-Proto: https\r\n") && !text.contains("Proto: http\r\n"), "{text}");
    }

    #[test]
    fn the_gateways_traceparent_replaces_the_clients() {
        let buf = b"GET /echo/x HTTP/1.1\r\nHost: gw\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
tracestate: vendor=1\r\n\r\n";
        let head = request::parse(buf).unwrap().unwrap();
        let ours = b"00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
        let forwarding = Forwarding {
            base_path: "",
            authority: "backend",
            remainder_start: 5,
            client_ip: "127.0.0.1".parse().unwrap(),
            tls: false,
            traceparent: Some(ours),
        };
        let mut out = Vec::new();
        write_request_head(&mut out, &head, buf, &forwarding);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("traceparent").count(), 1, "{text}");
        assert!(text.contains("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01\r\n"), "{text}");
        assert!(text.contains("tracestate: vendor=1\r\n"), "{text}");
    }

    #[test]
    fn response_head_rewrite() {
        let buf =
            b"HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nok";
        let head = response::parse(buf).unwrap().unwrap();
        let mut out = Vec::new();
        write_response_head(&mut out, &head, buf, ClientConnection::Close);
        assert_eq!(out, b"HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
        write_response_head(&mut out, &head, buf, ClientConnection::KeepAliveHttp10);
        assert_eq!(out, b"HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
        write_response_head(&mut out, &head, buf, ClientConnection::KeepAlive);
        assert_eq!(out, b"HTTP/1.1 200 Fine\r\nContent-Length: 2\r\n\r\n");
    }
}
