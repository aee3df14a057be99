//! HTTP/1.1 conformance through the real binary, on both I/O backends: smuggling-shaped and
//! malformed requests get the right 4xx/5xx in APIM's shape and a closed connection (RFC 9112
//! §11.2); valid edge cases (absolute-form, pipelining, HEAD, 1xx, 204, 304, trailers,
//! HTTP/1.0, 100-continue) are proxied as the RFCs say; a slow client does not make the
//! gateway buffer a large response.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test helpers fail the test by panicking

use std::io::{BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use portcullis_tests::backend::read_request;
use portcullis_tests::http::{Connection, RESPONSE_TIMEOUT};
use portcullis_tests::{DataPlane, TempDir, on_both_io_backends, snapshot};

/// Request bodies above this are refused in these tests (`[limits] request-body-bytes-max`).
const BODY_LIMIT: u64 = 1000;
/// The response a slow client is sent: far more than any buffer the gateway should hold.
const BIG_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A backend whose answer depends on the path, so each RFC case has its own response; it writes
/// bytes of its own (interim responses, a 101 and its tunnel, trailers, a huge body), which a
/// [`portcullis_tests::backend::ScriptedBackend`] reply cannot.
fn scripted_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || serve_scripted(stream));
        }
    });
    addr
}

fn serve_scripted(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader) {
        let target = request.target.clone();
        let is_head = request.method == "HEAD";
        let response: Vec<u8> = match target.as_str() {
            "/s204" => b"HTTP/1.1 204 No Content\r\nX-Case: 204\r\n\r\n".to_vec(),
            // A 304 may carry the representation's Content-Length; it still has no body.
            "/s304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n".to_vec(),
            "/early" => b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
            "/trailers" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
4\r\nbody\r\n0\r\nX-Checksum: abc\r\n\r\n"
                .to_vec(),
            "/ws" | "/ws-unasked" => {
                let upgrade = request.header("upgrade").unwrap_or_default();
                let connection = request.header("connection").unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: {upgrade}\r\nConnection: Upgrade\r\nX-Seen-Connection: {connection}\r\n\r\n"
                );
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
                // The switched protocol: upper-case every byte back until the client half-closes.
                let mut byte = [0u8; 1];
                while let Ok(1) = reader.read(&mut byte) {
                    if writer.write_all(&[byte[0].to_ascii_uppercase()]).is_err() {
                        return;
                    }
                }
                let _ = writer.write_all(b"<bye>");
                return;
            }
            "/big" => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG_RESPONSE_BYTES}\r\n\r\n");
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let block = vec![b'x'; 1024 * 1024];
                for _ in 0..BIG_RESPONSE_BYTES / block.len() {
                    if writer.write_all(&block).is_err() {
                        return;
                    }
                }
                continue;
            }
            _ => {
                let header = |name: &str| request.header(name).unwrap_or_default();
                let body = format!(
                    "target={target}\nhost={}\nxfh={}\nxfp={}\nbody={}\n",
                    header("host"),
                    header("x-forwarded-host"),
                    header("x-forwarded-proto"),
                    String::from_utf8_lossy(&request.body)
                );
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                match is_head {
                    true => head.into_bytes(),
                    false => format!("{head}{body}").into_bytes(),
                }
            }
        };
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}

fn start(io: &str) -> (TempDir, DataPlane) {
    let dir = TempDir::new(&format!("conformance-{io}"));
    let mut config = snapshot::two_apis(scripted_backend(), "echo");
    config.limits.request_body_bytes_max = BODY_LIMIT;
    // API `open` passes the client's Host on (api.toml `preserve-host = true`).
    config.apis[1].preserve_host = true;
    snapshot::write_last_good(dir.path(), 1, &config);
    let dataplane = DataPlane::start(dir.path(), io);
    (dir, dataplane)
}

/// Requests that must be refused with `status` and the connection closed.
fn refused() -> Vec<(&'static str, Vec<u8>, u16)> {
    let long_target = format!("GET /open/{} HTTP/1.1\r\nHost: g\r\n\r\n", "a".repeat(9000));
    let big_header = format!("GET /open HTTP/1.1\r\nHost: g\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let many_headers = format!(
        "GET /open HTTP/1.1\r\nHost: g\r\n{}\r\n",
        (0..101).map(|i| format!("h{i}: v\r\n")).collect::<String>()
    );
    let chunked_over_limit = format!(
        "POST /open HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        BODY_LIMIT + 1,
        "a".repeat(BODY_LIMIT as usize + 1)
    );
    let cases: Vec<(&str, String, u16)> = vec![
        ("no Host in HTTP/1.1", "GET /open HTTP/1.1\r\n\r\n".into(), 400),
        ("two Host headers", "GET /open HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        ("invalid Host", "GET /open HTTP/1.1\r\nHost: a b\r\n\r\n".into(), 400),
        (
            "CL with TE",
            "POST /open HTTP/1.1\r\nHost: g\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            400,
        ),
        (
            "TE with CL",
            "POST /open HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n".into(),
            400,
        ),
        (
            "differing CLs",
            "POST /open HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".into(),
            400,
        ),
        ("unknown coding", "POST /open HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 501),
        ("chunked not final", "POST /open HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".into(), 400),
        (
            "chunked twice",
            "POST /open HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            400,
        ),
        ("TE in HTTP/1.0", "POST /open HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("obs-fold", "GET /open HTTP/1.1\r\nHost: g\r\nX-A: one\r\n two\r\n\r\n".into(), 400),
        ("bare CR in a value", "GET /open HTTP/1.1\r\nHost: g\r\nX-A: a\rb\r\n\r\n".into(), 400),
        ("space before colon", "GET /open HTTP/1.1\r\nHost: g\r\nX-A : a\r\n\r\n".into(), 400),
        ("invalid header name", "GET /open HTTP/1.1\r\nHost: g\r\nX/A: a\r\n\r\n".into(), 400),
        (
            "invalid chunk size",
            "POST /open HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".into(),
            400,
        ),
        (
            "chunk size with a sign",
            "POST /open HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n".into(),
            400,
        ),
        (
            "invalid chunk extension",
            "POST /open HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n3;=x\r\nabc\r\n0\r\n\r\n".into(),
            400,
        ),
        (
            "bare LF after a chunk size",
            "POST /open HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n".into(),
            400,
        ),
        ("absolute-form with userinfo", "GET http://user@gw/open HTTP/1.1\r\nHost: gw\r\n\r\n".into(), 400),
        ("absolute-form, other scheme", "GET ftp://gw/open HTTP/1.1\r\nHost: gw\r\n\r\n".into(), 400),
        ("asterisk-form with GET", "GET * HTTP/1.1\r\nHost: g\r\n\r\n".into(), 400),
        ("CONNECT", "CONNECT gw:443 HTTP/1.1\r\nHost: gw:443\r\n\r\n".into(), 501),
        ("target over the limit", long_target, 414),
        ("head over the limit", big_header, 431),
        ("101 headers", many_headers, 431),
        (
            "Content-Length over the limit",
            format!("POST /open HTTP/1.1\r\nHost: g\r\nContent-Length: {}\r\n\r\n", BODY_LIMIT + 1),
            413,
        ),
        ("chunked body over the limit", chunked_over_limit, 413),
    ];
    cases.into_iter().map(|(name, raw, status)| (name, raw.into_bytes(), status)).collect()
}

fn refuses_malformed_and_ambiguous_requests(io: &str) {
    let (_dir, dp) = start(io);
    for (name, raw, status) in refused() {
        let mut client = dp.connect();
        let response = client.round_trip(&raw).unwrap();
        assert_eq!(response.status, status, "{name}: {response:?}");
        assert_eq!(response.header("content-type"), Some("application/json"), "{name}");
        assert!(response.text().starts_with(&format!("{{ \"statusCode\": {status}, \"message\": ")), "{name}");
        assert_eq!(response.header("connection"), Some("close"), "{name}");
        assert!(client.is_closed_by_peer(RESPONSE_TIMEOUT), "{name}: the connection must be closed after the error");
    }
    assert_eq!(dp.terminate().code(), Some(0));
}

fn proxies_edge_cases(io: &str) {
    let (_dir, dp) = start(io);
    // Absolute-form: routed on its path; its authority is the host the client asked for.
    let response = dp.request("GET http://GW.example:8080/open/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.text().contains("target=/x?q=1\n"), "{}", response.text());
    assert!(response.text().contains("xfh=GW.example:8080\n"), "{}", response.text());
    assert!(response.text().contains("host=GW.example:8080\n"), "preserve-host: {}", response.text());
    let response = dp.request("GET /open/y HTTP/1.1\r\nHost: api.example\r\n\r\n");
    assert!(response.text().contains("host=api.example\n"), "preserve-host: {}", response.text());
    assert!(response.text().contains("xfp=http\n"), "{}", response.text());

    let mut client = dp.connect();
    // Pipelined: three requests in one write, one with a body, answered in order.
    client
        .send_raw(
            b"GET /open/p1 HTTP/1.1\r\nHost: g\r\n\r\nPOST /open/p2 HTTP/1.1\r\nHost: g\r\nContent-Length: 3\r\n\r\nabc\
GET /open/p3 HTTP/1.1\r\nHost: g\r\n\r\n",
        )
        .unwrap();
    assert!(client.read_response(false).unwrap().text().contains("target=/p1\n"));
    let second = client.read_response(false).unwrap().text();
    assert!(second.contains("target=/p2\n") && second.contains("body=abc\n"), "{second}");
    assert!(client.read_response(false).unwrap().text().contains("target=/p3\n"));

    // HEAD, 204 and 304 have no body, and the connection goes on.
    client.send_raw(b"HEAD /open/h HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
    let raw = read_head(&mut client);
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("Content-Length: "), "{text}");
    let no_content = client.round_trip(b"GET /open/s204 HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
    assert_eq!((no_content.status, no_content.body.len()), (204, 0));
    client.send_raw(b"GET /open/s304 HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
    let raw = read_head(&mut client);
    assert!(raw.starts_with(b"HTTP/1.1 304 Not Modified\r\n"), "{}", String::from_utf8_lossy(&raw));
    // 1xx interim responses are forwarded, then the final one.
    client.send_raw(b"GET /open/early HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
    let raw = read_head(&mut client);
    assert!(raw.starts_with(b"HTTP/1.1 103 Early Hints\r\n"), "{}", String::from_utf8_lossy(&raw));
    let early = client.read_response(false).unwrap();
    assert_eq!((early.status, early.text().as_str()), (200, "ok"));
    // Chunked responses keep their trailers.
    client.send_raw(b"GET /open/trailers HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
    read_head(&mut client);
    // The chunks as sent, through the trailers' empty line.
    let body = client.read_through_empty_line().unwrap_or_else(|error| panic!("inside the chunked body: {error}"));
    assert_eq!(body, b"4\r\nbody\r\n0\r\nX-Checksum: abc\r\n\r\n");
    // Still usable after all of that.
    assert!(
        client.round_trip(b"GET /open/last HTTP/1.1\r\nHost: g\r\n\r\n").unwrap().text().contains("target=/last\n")
    );

    // Expect: 100-continue is answered before the client sends its body.
    let mut client = dp.connect();
    client.send_raw(b"PUT /open/up HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").unwrap();
    let interim = read_head(&mut client);
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let put = client.round_trip(b"hello").unwrap();
    assert!(put.text().contains("body=hello\n"), "{}", put.text());

    // HTTP/1.0 with keep-alive: kept, and told so.
    let mut old = dp.connect();
    let response = old.round_trip(b"GET /open/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    assert_eq!(response.header("connection"), Some("keep-alive"));
    assert_eq!(old.round_trip(b"GET /open/old2 HTTP/1.0\r\n\r\n").unwrap().header("connection"), Some("close"));
    assert!(old.is_closed_by_peer(RESPONSE_TIMEOUT));
    assert_eq!(dp.terminate().code(), Some(0));
}

/// `Upgrade: websocket` is asked of the backend; its 101 is relayed and bytes flow both ways,
/// including a half-close; an upgrade the backend declines is an ordinary response on a
/// connection that goes on; a 101 nobody asked for is a 502.
fn tunnels_upgrades(io: &str) {
    let (_dir, dp) = start(io);
    let mut client = dp.connect();
    client
        .send_raw(
            b"GET /open/ws HTTP/1.1\r\nHost: g\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly",
        )
        .unwrap();
    let head = String::from_utf8(read_head(&mut client)).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    assert!(head.contains("\r\nUpgrade: websocket\r\n") && head.contains("\r\nConnection: upgrade\r\n"), "{head}");
    assert!(head.contains("X-Seen-Connection: upgrade\r\n"), "the backend is asked to upgrade: {head}");
    client.send_raw(b" and later").unwrap();
    client.stream().shutdown(std::net::Shutdown::Write).unwrap();
    let rest = client.read_to_close().unwrap();
    assert_eq!(String::from_utf8_lossy(&rest), "EARLY AND LATER<bye>");

    // The backend declines (answers 200): an ordinary response, and the connection goes on.
    let mut client = dp.connect();
    let declined = client
        .round_trip(b"GET /open/plain HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .unwrap();
    assert_eq!(declined.status, 200);
    assert!(
        client.round_trip(b"GET /open/after HTTP/1.1\r\nHost: g\r\n\r\n").unwrap().text().contains("target=/after\n")
    );

    let unasked = dp.request("GET /open/ws-unasked HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(unasked.status, 502, "{unasked:?}");
    assert_eq!(dp.terminate().code(), Some(0));
}

/// A client that does not read a 64 MiB response must not make the gateway hold it: the
/// relay writes each read before the next one, so at most one read buffer plus the socket
/// buffers are in flight.
fn slow_client_backpressure(io: &str) {
    let (_dir, dp) = start(io);
    let pid = dp.pid();
    // The baseline is taken once start-up (rings, XDP maps, allocator arenas) has settled.
    assert_eq!(dp.request("GET /open/warm-up HTTP/1.1\r\nHost: g\r\n\r\n").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_bytes(pid);
    let mut client = dp.connect();
    client.send_raw(b"GET /open/big HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let growth = rss_bytes(pid).saturating_sub(rss_before);
    assert!(growth < 8 * 1024 * 1024, "the gateway grew by {growth} bytes while the client did not read");
    read_head(&mut client);
    let mut received = 0usize;
    let mut block = vec![0; 1024 * 1024];
    while received < BIG_RESPONSE_BYTES {
        let n = client.read_some(&mut block).unwrap();
        assert!(n > 0, "closed after {received} bytes");
        received += n;
    }
    assert_eq!(received, BIG_RESPONSE_BYTES);
    assert_eq!(dp.terminate().code(), Some(0));
}

/// Reads one head (through the blank line), exactly as sent.
fn read_head(client: &mut Connection) -> Vec<u8> {
    client.read_through_empty_line().unwrap_or_else(|error| panic!("no complete head: {error}"))
}

fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

on_both_io_backends!(
    refuses_malformed_and_ambiguous_requests,
    proxies_edge_cases,
    tunnels_upgrades,
    slow_client_backpressure,
);
