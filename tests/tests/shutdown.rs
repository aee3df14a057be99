//! SIGTERM to `up`: stop accepting, let in-flight requests finish, stop the children, exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::net::TcpStream;
use std::time::{Duration, Instant};

use portcullis_tests::gateway::alive;
use portcullis_tests::http::Connection;
use portcullis_tests::{Gateway, GatewayOptions};

portcullis_tests::on_both_io_backends!(sigterm_drains_in_flight_requests_and_exits_zero);

fn sigterm_drains_in_flight_requests_and_exits_zero(io: &str) {
    let mut gateway = Gateway::start(GatewayOptions::new(io));
    let key = gateway.demo_key.clone().expect("demo key");
    let dataplane = gateway.dataplane_pid();

    // A slow request is in flight when the signal arrives.
    let addr = gateway.addr;
    let slow = std::thread::spawn(move || {
        let mut connection = Connection::open(addr).unwrap();
        let started = Instant::now();
        let response = connection.get("/echo/slow?echo-delay-ms=1500", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
        (response, started.elapsed(), connection.is_closed_by_peer(Duration::from_secs(5)))
    });
    std::thread::sleep(Duration::from_millis(400));
    let exit = gateway.terminate();
    assert!(exit.success(), "{io}: up exits 0, got {exit:?}");

    let (response, elapsed, closed) = slow.join().unwrap();
    assert_eq!(response.status, 200, "{io}: the in-flight request finished: {}", response.text());
    assert!(elapsed >= Duration::from_millis(1400));
    assert!(closed, "{io}: the connection is closed after the drained request");
    assert!(!alive(dataplane), "{io}: the data plane stopped with control");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "{io}: nothing accepts any more");
}
