//! The data plane alone, end to end through the real binary on both I/O backends: routing,
//! keys, bodies, keep-alive, drain.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test helpers fail the test by panicking

use std::sync::atomic::Ordering;
use std::time::Duration;

use portcullis_contract::layout::DataDir;
use portcullis_contract::stats::StatsRegion;

use portcullis_tests::backend::{self, Reply, Request, ScriptedBackend};
use portcullis_tests::gateway::kill;
use portcullis_tests::http::RESPONSE_TIMEOUT;
use portcullis_tests::snapshot::{self, KEY, SUSPENDED_KEY};
use portcullis_tests::{DataPlane, TempDir, on_both_io_backends};

fn start(io: &str) -> (TempDir, ScriptedBackend, DataPlane) {
    start_with(io, 7, backend::echo)
}

/// A data plane serving generation `generation` of the two-API config, in front of a backend
/// answering with `handler`.
fn start_with(
    io: &str,
    generation: u64,
    handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> (TempDir, ScriptedBackend, DataPlane) {
    let dir = TempDir::new(io);
    let backend = ScriptedBackend::start(handler);
    snapshot::write_last_good(dir.path(), generation, &snapshot::two_apis(backend.addr, "echo"));
    let dataplane = DataPlane::start(dir.path(), io);
    (dir, backend, dataplane)
}

fn proxies_with_rewrites(io: &str) {
    let (dir, backend, dp) = start(io);
    assert!(dp.log_contains(&format!("io={io}")));

    let response = dp
        .request(&format!("GET /echo/hello?x=1 HTTP/1.1\r\nHost: gw.test\r\nOcp-Apim-Subscription-Key: {KEY}\r\n\r\n"));
    assert_eq!(response.status, 200, "{response:?}");
    let text = response.text();
    assert!(text.contains("target=/api/hello?x=1\n"), "{text}");
    assert!(text.contains(&format!("host={}\n", backend.addr)), "{text}");
    assert!(text.contains("xff=127.0.0.1\n"), "{text}");
    assert!(text.contains("xfh=gw.test\n"), "{text}");
    assert!(text.contains(&format!("key={KEY}\n")), "the key is forwarded unchanged: {text}");

    // Key from the query string, percent-encoded; the bare API path maps to the base path.
    let response =
        dp.request("GET /echo?subscription-key=0123456789abcdef0123456789abcde%66 HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.text().contains("target=/api?subscription-key="), "{}", response.text());

    // No key required.
    let response = dp.request("GET /open/x HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(response.status, 200);
    assert!(response.text().contains("target=/x\n"));

    let stats = StatsRegion::open(&DataDir::new(dir.path()).stats_region()).unwrap();
    assert_eq!(stats.header().generation.load(Ordering::Relaxed), 7);
    drop(backend);
    assert_eq!(dp.terminate().code(), Some(0));
}

fn refuses_bad_requests(io: &str) {
    let (_dir, _backend, dp) = start(io);
    let missing = dp.request("GET /echo/x HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    assert_eq!(
        missing.text(),
        "{ \"statusCode\": 401, \"message\": \"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.\" }"
    );
    for key in ["wrong", SUSPENDED_KEY] {
        let invalid =
            dp.request(&format!("GET /echo/x HTTP/1.1\r\nHost: g\r\nOcp-Apim-Subscription-Key: {key}\r\n\r\n"));
        assert_eq!(invalid.status, 401);
        assert_eq!(
            invalid.text(),
            "{ \"statusCode\": 401, \"message\": \"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.\" }"
        );
    }
    let not_found = dp.request("GET /echoes HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(not_found.status, 404);
    assert_eq!(not_found.text(), "{ \"statusCode\": 404, \"message\": \"Resource not found\" }");

    let mut client = dp.connect();
    let bad = client.round_trip(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").unwrap();
    assert_eq!(bad.status, 400);
    assert!(client.is_closed_by_peer(RESPONSE_TIMEOUT));
    let mut client = dp.connect();
    let both = client
        .round_trip(b"POST /open HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    assert_eq!(both.status, 400);
    let mut client = dp.connect();
    let mut huge = b"GET /open HTTP/1.1\r\nHost: g\r\nX-Big: ".to_vec();
    huge.resize(20_000, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    let too_large = client.round_trip(&huge).unwrap();
    assert_eq!(too_large.status, 431);
    assert_eq!(dp.terminate().code(), Some(0));
}

fn streams_bodies_and_reuses_connections(io: &str) {
    let (_dir, backend, dp) = start(io);
    let mut client = dp.connect();
    // Chunked request body, sent in pieces, with an extension and a trailer.
    client.send_raw(b"POST /open/up HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhel").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    client.send_raw(b"lo\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n").unwrap();
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 200);
    assert!(response.text().contains("body=hello world\n"), "{}", response.text());
    assert!(response.text().contains("te=chunked\n"), "{}", response.text());

    // Same client connection, Content-Length body, then two pipelined requests.
    let response = client.round_trip(b"PUT /open/cl HTTP/1.1\r\nHost: g\r\nContent-Length: 4\r\n\r\nabcd").unwrap();
    assert!(response.text().contains("body=abcd\n"));
    client.send_raw(b"GET /open/p1 HTTP/1.1\r\nHost: g\r\n\r\nGET /open/p2 HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
    assert!(client.read_response(false).unwrap().text().contains("target=/p1\n"));
    assert!(client.read_response(false).unwrap().text().contains("target=/p2\n"));

    // Sequential requests reuse one backend connection (per worker).
    let before = backend.connections();
    let ids: Vec<String> = (0..5)
        .map(|_| {
            let response = client.round_trip(b"GET /open/again HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
            response.header("x-backend-conn").unwrap().to_owned()
        })
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "{ids:?}");
    assert!(backend.connections() <= before + 1);

    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut old = dp.connect();
    let response = old.round_trip(b"GET /open/old HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(old.is_closed_by_peer(RESPONSE_TIMEOUT));
    assert_eq!(dp.terminate().code(), Some(0));
}

fn backend_down_is_502(io: &str) {
    let dir = TempDir::new(io);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    snapshot::write_last_good(dir.path(), 1, &snapshot::two_apis(closed, "echo"));
    let dp = DataPlane::start(dir.path(), io);
    let response = dp.request("GET /open HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(response.status, 502);
    assert_eq!(
        response.text(),
        "{ \"statusCode\": 502, \"message\": \"Bad gateway: the backend service could not be reached.\" }"
    );
    assert_eq!(dp.terminate().code(), Some(0));
}

#[test]
fn no_snapshot_is_503_and_a_corrupt_one_is_ignored() {
    let dir = TempDir::new("empty");
    let dp = DataPlane::start(dir.path(), "epoll");
    let response = dp.request("GET /anything HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(response.status, 503);
    assert_eq!(
        response.text(),
        "{ \"statusCode\": 503, \"message\": \"Service unavailable: the gateway has no configuration yet.\" }"
    );
    assert!(dir.path().join("run/dataplane.pid").exists());
    assert_eq!(dp.terminate().code(), Some(0));

    std::fs::write(dir.path().join("snapshots/last-good.snap"), b"garbage").unwrap();
    let dp = DataPlane::start(dir.path(), "auto");
    assert!(dp.log_contains("ignoring the last-good snapshot"));
    assert_eq!(dp.request("GET / HTTP/1.1\r\nHost: g\r\n\r\n").status, 503);
    assert_eq!(dp.terminate().code(), Some(0));
}

fn stale_pooled_connections_are_retried(io: &str) {
    // The backend closes each connection after its response, without saying so.
    let (_dir, backend, dp) = start_with(io, 3, |request| backend::echo(request).then_close());
    let mut client = dp.connect();
    for i in 0..20 {
        // Give the backend's close time to land, so the pooled connection is really stale.
        std::thread::sleep(Duration::from_millis(5));
        eprintln!("request {i}");
        let response = client.round_trip(b"POST /open/r HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!(response.status, 200, "request {i}: {response:?}");
        assert!(response.text().contains("body=ok\n"));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(backend.connections() >= 20);
    assert_eq!(dp.terminate().code(), Some(0));
}

fn drain_finishes_in_flight_requests(io: &str) {
    let (_dir, _backend, dp) = start_with(io, 3, |request| {
        std::thread::sleep(Duration::from_millis(500));
        backend::echo(request)
    });
    let mut idle = dp.connect();
    assert_eq!(idle.round_trip(b"GET /open/warm HTTP/1.1\r\nHost: g\r\n\r\n").unwrap().status, 200);
    let mut busy = dp.connect();
    busy.send_raw(b"GET /open/slow HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let addr = dp.addr;
    kill(dp.pid(), libc::SIGTERM);
    let response = busy.read_response(false).unwrap();
    assert_eq!(response.status, 200, "the in-flight request completes");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(busy.is_closed_by_peer(RESPONSE_TIMEOUT));
    assert!(idle.is_closed_by_peer(RESPONSE_TIMEOUT), "idle keep-alive connections are closed");
    assert_eq!(dp.terminate().code(), Some(0));
    assert!(std::net::TcpStream::connect(addr).is_err(), "nothing listens after the drain");
}

fn slow_request_heads_get_408(io: &str) {
    let dir = TempDir::new("timeout");
    let backend = ScriptedBackend::start(backend::echo);
    let mut config = snapshot::two_apis(backend.addr, "echo");
    config.limits.request_header_timeout_ms = 200;
    snapshot::write_last_good(dir.path(), 1, &config);
    let dp = DataPlane::start(dir.path(), io);
    let mut client = dp.connect();
    client.send_raw(b"GET /open HTTP/1.1\r\nHost:").unwrap();
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 408, "{io}");
    assert!(client.is_closed_by_peer(RESPONSE_TIMEOUT));
    assert_eq!(dp.terminate().code(), Some(0));
}

on_both_io_backends!(
    proxies_with_rewrites,
    refuses_bad_requests,
    streams_bodies_and_reuses_connections,
    backend_down_is_502,
    stale_pooled_connections_are_retried,
    drain_finishes_in_flight_requests,
    slow_request_heads_get_408,
);
