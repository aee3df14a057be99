//! End to end through the real binary, on both I/O backends: routing, keys, bodies, keep-alive, drain.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test helpers fail the test by panicking

mod support;

use std::io::Write as _;
use std::sync::atomic::Ordering;

use portcullis_contract::snapshot;
use support::{Backend, DataPlane, KEY, SUSPENDED_KEY, TempDir};

fn start(io: &str) -> (TempDir, Backend, DataPlane) {
    let dir = TempDir::new(io);
    let backend = Backend::start();
    std::fs::create_dir_all(dir.0.join("snapshots")).unwrap();
    let bytes = snapshot::encode(7, &support::config(backend.addr, "echo")).unwrap();
    std::fs::write(dir.0.join("snapshots/last-good.snap"), bytes).unwrap();
    let dataplane = DataPlane::start(&dir.0, io);
    (dir, backend, dataplane)
}

fn proxies_with_rewrites(io: &str) {
    let (dir, backend, dp) = start(io);
    assert!(dp.log_contains(&format!("io={io}")));

    let response = dp
        .request(&format!("GET /echo/hello?x=1 HTTP/1.1\r\nHost: gw.test\r\nOcp-Apim-Subscription-Key: {KEY}\r\n\r\n"));
    assert_eq!(response.status(), 200, "{response:?}");
    let text = response.text();
    assert!(text.contains("target=/api/hello?x=1\n"), "{text}");
    assert!(text.contains(&format!("host={}\n", backend.addr)), "{text}");
    assert!(text.contains("xff=127.0.0.1\n"), "{text}");
    assert!(text.contains("xfh=gw.test\n"), "{text}");
    assert!(text.contains(&format!("key={KEY}\n")), "the key is forwarded unchanged: {text}");

    // Key from the query string, percent-encoded; the bare API path maps to the base path.
    let response =
        dp.request("GET /echo?subscription-key=0123456789abcdef0123456789abcde%66 HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(response.status(), 200, "{response:?}");
    assert!(response.text().contains("target=/api?subscription-key="), "{}", response.text());

    // No key required.
    let response = dp.request("GET /open/x HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(response.status(), 200);
    assert!(response.text().contains("target=/x\n"));

    let stats = portcullis_contract::stats::StatsRegion::open(&dir.0.join("run/stats.shm")).unwrap();
    assert_eq!(stats.header().generation.load(Ordering::Relaxed), 7);
    drop(backend);
    assert_eq!(dp.terminate().code(), Some(0));
}

fn refuses_bad_requests(io: &str) {
    let (_dir, _backend, dp) = start(io);
    let missing = dp.request("GET /echo/x HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(
        missing.text(),
        "{ \"statusCode\": 401, \"message\": \"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.\" }"
    );
    for key in ["wrong", SUSPENDED_KEY] {
        let invalid =
            dp.request(&format!("GET /echo/x HTTP/1.1\r\nHost: g\r\nOcp-Apim-Subscription-Key: {key}\r\n\r\n"));
        assert_eq!(invalid.status(), 401);
        assert_eq!(
            invalid.text(),
            "{ \"statusCode\": 401, \"message\": \"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.\" }"
        );
    }
    let not_found = dp.request("GET /echoes HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(not_found.status(), 404);
    assert_eq!(not_found.text(), "{ \"statusCode\": 404, \"message\": \"Resource not found\" }");

    let mut client = dp.connect();
    let bad = client.send(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    assert_eq!(bad.status(), 400);
    assert!(client.is_closed());
    let mut client = dp.connect();
    let both =
        client.send(b"POST /open HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(both.status(), 400);
    let mut client = dp.connect();
    let mut huge = b"GET /open HTTP/1.1\r\nHost: g\r\nX-Big: ".to_vec();
    huge.resize(20_000, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    let too_large = client.send(&huge);
    assert_eq!(too_large.status(), 431);
    assert_eq!(dp.terminate().code(), Some(0));
}

fn streams_bodies_and_reuses_connections(io: &str) {
    let (_dir, backend, dp) = start(io);
    let mut client = dp.connect();
    // Chunked request body, sent in pieces, with an extension and a trailer.
    client
        .writer
        .write_all(b"POST /open/up HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhel")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    client.writer.write_all(b"lo\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n").unwrap();
    let response = client.receive();
    assert_eq!(response.status(), 200);
    assert!(response.text().contains("body=hello world\n"), "{}", response.text());
    assert!(response.text().contains("te=chunked\n"), "{}", response.text());

    // Same client connection, Content-Length body, then two pipelined requests.
    let response = client.send(b"PUT /open/cl HTTP/1.1\r\nHost: g\r\nContent-Length: 4\r\n\r\nabcd");
    assert!(response.text().contains("body=abcd\n"));
    client
        .writer
        .write_all(b"GET /open/p1 HTTP/1.1\r\nHost: g\r\n\r\nGET /open/p2 HTTP/1.1\r\nHost: g\r\n\r\n")
        .unwrap();
    assert!(client.receive().text().contains("target=/p1\n"));
    assert!(client.receive().text().contains("target=/p2\n"));

    // Sequential requests reuse one backend connection (per worker).
    let before = backend.connections.load(Ordering::Relaxed);
    let ids: Vec<String> = (0..5)
        .map(|_| client.send(b"GET /open/again HTTP/1.1\r\nHost: g\r\n\r\n").header("x-backend-conn").unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "{ids:?}");
    assert!(backend.connections.load(Ordering::Relaxed) <= before + 1);

    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut old = dp.connect();
    let response = old.send(b"GET /open/old HTTP/1.0\r\n\r\n");
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    assert!(old.is_closed());
    assert_eq!(dp.terminate().code(), Some(0));
}

fn backend_down_is_502(io: &str) {
    let dir = TempDir::new(io);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::fs::create_dir_all(dir.0.join("snapshots")).unwrap();
    let bytes = snapshot::encode(1, &support::config(closed, "echo")).unwrap();
    std::fs::write(dir.0.join("snapshots/last-good.snap"), bytes).unwrap();
    let dp = DataPlane::start(&dir.0, io);
    let response = dp.request("GET /open HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.text(),
        "{ \"statusCode\": 502, \"message\": \"Bad gateway: the backend service could not be reached.\" }"
    );
    assert_eq!(dp.terminate().code(), Some(0));
}

#[test]
fn uring_proxies_with_rewrites() {
    proxies_with_rewrites("uring");
}

#[test]
fn epoll_proxies_with_rewrites() {
    proxies_with_rewrites("epoll");
}

#[test]
fn uring_refuses_bad_requests() {
    refuses_bad_requests("uring");
}

#[test]
fn epoll_refuses_bad_requests() {
    refuses_bad_requests("epoll");
}

#[test]
fn uring_streams_bodies_and_reuses_connections() {
    streams_bodies_and_reuses_connections("uring");
}

#[test]
fn epoll_streams_bodies_and_reuses_connections() {
    streams_bodies_and_reuses_connections("epoll");
}

#[test]
fn uring_backend_down_is_502() {
    backend_down_is_502("uring");
}

#[test]
fn epoll_backend_down_is_502() {
    backend_down_is_502("epoll");
}

#[test]
fn no_snapshot_is_503_and_a_corrupt_one_is_ignored() {
    let dir = TempDir::new("empty");
    let dp = DataPlane::start(&dir.0, "epoll");
    let response = dp.request("GET /anything HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.text(),
        "{ \"statusCode\": 503, \"message\": \"Service unavailable: the gateway has no configuration yet.\" }"
    );
    assert!(dir.0.join("run/dataplane.pid").exists());
    assert_eq!(dp.terminate().code(), Some(0));

    std::fs::write(dir.0.join("snapshots/last-good.snap"), b"garbage").unwrap();
    let dp = DataPlane::start(&dir.0, "auto");
    assert!(dp.log_contains("ignoring the last-good snapshot"));
    assert_eq!(dp.request("GET / HTTP/1.1\r\nHost: g\r\n\r\n").status(), 503);
    assert_eq!(dp.terminate().code(), Some(0));
}

fn start_with(io: &str, behaviour: support::Behaviour) -> (TempDir, Backend, DataPlane) {
    let dir = TempDir::new(io);
    let backend = Backend::start_with(behaviour);
    std::fs::create_dir_all(dir.0.join("snapshots")).unwrap();
    let bytes = snapshot::encode(3, &support::config(backend.addr, "echo")).unwrap();
    std::fs::write(dir.0.join("snapshots/last-good.snap"), bytes).unwrap();
    let dataplane = DataPlane::start(&dir.0, io);
    (dir, backend, dataplane)
}

fn stale_pooled_connections_are_retried(io: &str) {
    let behaviour = support::Behaviour { close_after_response: true, ..Default::default() };
    let (_dir, backend, dp) = start_with(io, behaviour);
    let mut client = dp.connect();
    for i in 0..20 {
        // Give the backend's close time to land, so the pooled connection is really stale.
        std::thread::sleep(std::time::Duration::from_millis(5));
        eprintln!("request {i}");
        let response = client.send(b"POST /open/r HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(response.status(), 200, "request {i}: {response:?}");
        assert!(response.text().contains("body=ok\n"));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(backend.connections.load(Ordering::Relaxed) >= 20);
    assert_eq!(dp.terminate().code(), Some(0));
}

fn drain_finishes_in_flight_requests(io: &str) {
    let behaviour = support::Behaviour { delay: std::time::Duration::from_millis(500), ..Default::default() };
    let (_dir, _backend, dp) = start_with(io, behaviour);
    let mut idle = dp.connect();
    assert_eq!(idle.send(b"GET /open/warm HTTP/1.1\r\nHost: g\r\n\r\n").status(), 200);
    let mut busy = dp.connect();
    busy.writer.write_all(b"GET /open/slow HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let addr = dp.addr;
    let pid = dp.child.id() as i32;
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let response = busy.receive();
    assert_eq!(response.status(), 200, "the in-flight request completes");
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    assert!(busy.is_closed());
    assert!(idle.is_closed(), "idle keep-alive connections are closed");
    assert_eq!(dp.terminate().code(), Some(0));
    assert!(std::net::TcpStream::connect(addr).is_err(), "nothing listens after the drain");
}

#[test]
fn uring_stale_pooled_connections_are_retried() {
    stale_pooled_connections_are_retried("uring");
}

#[test]
fn epoll_stale_pooled_connections_are_retried() {
    stale_pooled_connections_are_retried("epoll");
}

#[test]
fn uring_drain_finishes_in_flight_requests() {
    drain_finishes_in_flight_requests("uring");
}

#[test]
fn epoll_drain_finishes_in_flight_requests() {
    drain_finishes_in_flight_requests("epoll");
}

#[test]
fn slow_request_heads_get_408() {
    let dir = TempDir::new("timeout");
    let backend = Backend::start();
    let mut config = support::config(backend.addr, "echo");
    config.limits.request_header_timeout_ms = 200;
    std::fs::create_dir_all(dir.0.join("snapshots")).unwrap();
    std::fs::write(dir.0.join("snapshots/last-good.snap"), snapshot::encode(1, &config).unwrap()).unwrap();
    for io in ["uring", "epoll"] {
        let dp = DataPlane::start(&dir.0, io);
        let mut client = dp.connect();
        client.writer.write_all(b"GET /open HTTP/1.1\r\nHost:").unwrap();
        let response = client.receive();
        assert_eq!(response.status(), 408, "{io}");
        assert!(client.is_closed());
        assert_eq!(dp.terminate().code(), Some(0));
    }
}
