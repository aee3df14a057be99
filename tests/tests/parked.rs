//! Parked idle connections, through the real binary on both I/O backends: a keep-alive connection
//! quiet for longer than `IDLE_PARK_AFTER_MS` (250 ms) leaves its task and waits in its worker's
//! registry; it is served again when bytes come, closed at the keep-alive timeout and on drain,
//! and counted out when the client closes it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test helpers fail the test by panicking

use std::time::{Duration, Instant};

use portcullis_contract::model::Limits;
use portcullis_tests::backend::{self, ScriptedBackend};
use portcullis_tests::gateway::kill;
use portcullis_tests::http::{Connection, RESPONSE_TIMEOUT};
use portcullis_tests::{DataPlane, TempDir, eventually, on_both_io_backends, snapshot};

/// The data plane's debug lines about parked connections.
const PARKED_LOG: &str = "info,portcullis_dataplane::worker::parked=debug";
const PARKED: &str = "connection parked";
const WOKE: &str = "parked connection woke";
/// Longer than the gateway's IDLE_PARK_AFTER_MS, with room for a loaded machine.
const IDLE_PAST_PARKING: Duration = Duration::from_millis(600);

fn start(io: &str, limits: Limits) -> (TempDir, ScriptedBackend, DataPlane) {
    let dir = TempDir::new(io);
    let backend = ScriptedBackend::start(backend::echo);
    let mut config = snapshot::two_apis(backend.addr, "echo");
    config.limits = limits;
    snapshot::write_last_good(dir.path(), 1, &config);
    let dataplane = DataPlane::start_logging(dir.path(), io, PARKED_LOG);
    (dir, backend, dataplane)
}

fn request(path: &str) -> Vec<u8> {
    format!("GET /open/{path} HTTP/1.1\r\nHost: g\r\n\r\n").into_bytes()
}

fn parked_connections_are_served_again(io: &str) {
    let (_dir, _backend, dp) = start(io, Limits::default());
    let mut client = dp.connect();
    assert_eq!(client.round_trip(&request("first")).unwrap().status, 200);
    for round in 1..=2 {
        eventually("the idle connection parks", || dp.log_count(PARKED) >= round);
        std::thread::sleep(IDLE_PAST_PARKING);
        assert_eq!(dp.connections_active(), 1, "a parked connection is still open");
        eventually("it is counted parked", || dp.connections_parked() == 1);
        let response = client.round_trip(&request("again")).unwrap();
        assert_eq!(response.status, 200, "{response:?}");
        assert!(response.text().contains("target=/again\n"), "{}", response.text());
        assert_eq!(dp.log_count(WOKE), round, "served after waking from the registry");
        eventually("a woken connection is no longer counted parked", || dp.connections_parked() == 0);
    }
    // Pipelined requests on a woken connection are answered in order.
    std::thread::sleep(IDLE_PAST_PARKING);
    client.send_raw(&[request("p1"), request("p2")].concat()).unwrap();
    assert!(client.read_response(false).unwrap().text().contains("target=/p1\n"));
    assert!(client.read_response(false).unwrap().text().contains("target=/p2\n"));
    assert_eq!(dp.terminate().code(), Some(0));
}

/// Half a request head sent around the moment the connection parks (the io_uring read is being
/// cancelled, or the socket is being handed to the reactor) is neither lost nor answered twice.
fn bytes_sent_while_parking_are_not_lost(io: &str) {
    let (_dir, _backend, dp) = start(io, Limits::default());
    let clients: Vec<_> = (0..30u64)
        .map(|i| {
            let addr = dp.addr;
            std::thread::spawn(move || {
                let mut client = Connection::open(addr).unwrap();
                assert_eq!(client.round_trip(&request("warm")).unwrap().status, 200);
                // 220..=278 ms after the response, 2 ms apart: across IDLE_PARK_AFTER_MS.
                std::thread::sleep(Duration::from_millis(220 + 2 * i));
                let head = request(&format!("half{i}"));
                let (first, rest) = head.split_at(head.len() / 2);
                client.send_raw(first).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                client.send_raw(rest).unwrap();
                let response = client.read_response(false).unwrap();
                assert_eq!(response.status, 200, "{response:?}");
                assert!(response.text().contains(&format!("target=/half{i}\n")), "{}", response.text());
                // And once more after a full park.
                std::thread::sleep(IDLE_PAST_PARKING);
                assert!(client.round_trip(&request("after")).unwrap().text().contains("target=/after\n"));
                client
            })
        })
        .collect();
    let _clients: Vec<_> = clients.into_iter().map(|client| client.join().unwrap()).collect();
    assert!(dp.log_count(PARKED) >= 30, "every connection parked at least once");
    assert_eq!(dp.connections_active(), 30);
    assert_eq!(dp.terminate().code(), Some(0));
}

fn parked_connections_close_at_the_idle_timeout(io: &str) {
    let limits = Limits { keepalive_idle_timeout_ms: 1_000, ..Limits::default() };
    let (_dir, _backend, dp) = start(io, limits);
    let mut client = dp.connect();
    assert_eq!(client.round_trip(&request("once")).unwrap().status, 200);
    let idle_since = Instant::now();
    assert!(client.is_closed_by_peer(RESPONSE_TIMEOUT), "the gateway closes the parked connection");
    let waited = idle_since.elapsed();
    assert!(waited >= Duration::from_millis(900), "closed after {waited:?}, before the timeout");
    assert!(waited < Duration::from_millis(3_000), "closed after {waited:?}");
    eventually("the registry closed it", || dp.log_contains("parked connection reached the keep-alive idle timeout"));
    eventually("the closed connection is counted out", || dp.connections_active() == 0);
    assert_eq!(dp.terminate().code(), Some(0));
}

fn drain_closes_parked_connections(io: &str) {
    let (_dir, _backend, dp) = start(io, Limits::default());
    let mut clients: Vec<_> = (0..4).map(|_| dp.connect()).collect();
    for client in &mut clients {
        assert_eq!(client.round_trip(&request("warm")).unwrap().status, 200);
    }
    eventually("the idle connections park", || dp.log_count(PARKED) >= 4);
    let started = Instant::now();
    kill(dp.pid(), libc::SIGTERM);
    for client in &mut clients {
        assert!(client.is_closed_by_peer(RESPONSE_TIMEOUT), "drain closes parked connections");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "at once, not at the drain timeout");
    assert_eq!(dp.terminate().code(), Some(0));
}

fn clients_closing_while_parked_are_counted_out(io: &str) {
    let (_dir, _backend, dp) = start(io, Limits::default());
    // Each client sends its first request as soon as it connects: a connection quiet for
    // IDLE_PARK_AFTER_MS parks before its first request too, and would wake for it.
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let mut client = dp.connect();
            assert_eq!(client.round_trip(&request("warm")).unwrap().status, 200);
            client
        })
        .collect();
    eventually("the idle connections park", || dp.log_count(PARKED) >= 20);
    assert_eq!(dp.connections_active(), 20, "parked connections are still open");
    eventually("ctl status counts them parked", || dp.connections_parked() == 20);
    drop(clients);
    eventually("closed parked connections are counted out", || dp.connections_active() == 0);
    eventually("and out of the parked gauge", || dp.connections_parked() == 0);
    assert_eq!(dp.log_count(WOKE), 20, "a peer's close wakes its parked connection, which then closes");
    // And the worker still serves.
    assert_eq!(dp.request(std::str::from_utf8(&request("after")).unwrap()).status, 200);
    assert_eq!(dp.terminate().code(), Some(0));
}

/// `connections-per-worker-max` counts parked connections: two workers with room for one each.
fn parked_connections_count_against_the_worker_limit(io: &str) {
    let limits = Limits { connections_per_worker_max: 1, ..Limits::default() };
    let (_dir, _backend, dp) = start(io, limits);
    let served = |client: &mut Connection| {
        client.send_raw(&request("fill")).unwrap();
        client.read_response(false).is_ok_and(|response| response.status == 200)
    };
    // The kernel spreads connections over the workers' listeners: fill both.
    let mut open = Vec::new();
    for _ in 0..100 {
        let mut client = dp.connect();
        if served(&mut client) {
            open.push(client);
        }
        if open.len() == 2 {
            break;
        }
    }
    assert_eq!(open.len(), 2, "one connection per worker");
    eventually("both park", || dp.log_count(PARKED) >= 2);
    for _ in 0..5 {
        assert!(!served(&mut dp.connect()), "a full worker refuses new connections while its one is parked");
    }
    drop(open.pop());
    eventually("the closed one is counted out", || dp.connections_active() == 1);
    let mut admitted = false;
    for _ in 0..100 {
        if served(&mut dp.connect()) {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "the worker whose connection closed admits a new one");
    assert_eq!(dp.terminate().code(), Some(0));
}

on_both_io_backends!(
    parked_connections_are_served_again,
    bytes_sent_while_parking_are_not_lost,
    parked_connections_close_at_the_idle_timeout,
    drain_closes_parked_connections,
    clients_closing_while_parked_are_counted_out,
    parked_connections_count_against_the_worker_limit,
);
