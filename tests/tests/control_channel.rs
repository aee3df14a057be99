//! The test plays control: it serves `snapshot.sock`, sends good and damaged snapshots, and checks
//! that the data plane applies the good ones, rejects the rest and keeps serving throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test helpers fail the test by panicking

use std::io::Write as _;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portcullis_contract::channel::{self, ToControl, ToDataPlane};
use portcullis_contract::layout::DataDir;
use portcullis_contract::snapshot::{self, sealed_memfd};
use portcullis_tests::backend::{self, ScriptedBackend};
use portcullis_tests::http::Connection;
use portcullis_tests::snapshot::{KEY, two_apis};
use portcullis_tests::{DataPlane, TempDir, eventually, on_both_io_backends};

/// Sends a snapshot and returns the data plane's answer to it. Telemetry batches that come in
/// between (once a second under load) are acknowledged, as control does.
fn send_snapshot(socket: &OwnedFd, generation: u64, fd: Option<OwnedFd>) -> ToControl {
    channel::send(socket, &ToDataPlane::Snapshot { generation }, fd.as_ref().map(|fd| fd.as_fd())).unwrap();
    loop {
        match channel::recv::<ToControl>(socket).unwrap().expect("data plane closed the channel").0 {
            ToControl::Telemetry { sequence } => {
                channel::send(socket, &ToDataPlane::TelemetryAck { sequence }, None).unwrap();
            }
            reply => return reply,
        }
    }
}

fn unsealed_memfd(bytes: &[u8]) -> OwnedFd {
    let fd = rustix::fs::memfd_create("unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).unwrap();
    file.into()
}

fn echo_status(dp: &DataPlane, path: &str) -> u16 {
    dp.request(&format!("GET {path} HTTP/1.1\r\nHost: g\r\nOcp-Apim-Subscription-Key: {KEY}\r\n\r\n")).status
}

on_both_io_backends!(applies_good_snapshots_and_rejects_damaged_ones);

fn applies_good_snapshots_and_rejects_damaged_ones(io: &str) {
    let dir = TempDir::new("channel");
    let layout = DataDir::new(dir.path());
    let backend = ScriptedBackend::start(backend::echo);
    let listener = channel::listen(&layout.snapshot_socket()).unwrap();
    let dp = DataPlane::start(dir.path(), io);
    let socket = channel::accept(&listener).unwrap();

    let (hello, fd) = channel::recv::<ToControl>(&socket).unwrap().unwrap();
    assert!(fd.is_none());
    let ToControl::Hello { pid, workers, io_backend, listen, generation, .. } = hello else { panic!("{hello:?}") };
    assert_eq!((pid, workers, io_backend.as_str(), generation), (dp.pid() as u32, 2, io, 0));
    assert_eq!(listen, vec![dp.addr.to_string()]);
    assert_eq!(echo_status(&dp, "/echo"), 503);

    let good = snapshot::encode(1, &two_apis(backend.addr, "echo")).unwrap();
    let reply = send_snapshot(&socket, 1, Some(sealed_memfd("good", &good).unwrap()));
    assert_eq!(reply, ToControl::Applied { generation: 1 });
    assert_eq!(echo_status(&dp, "/echo/x"), 200);
    assert_eq!(std::fs::read(layout.last_good_snapshot()).unwrap(), good);

    let next = snapshot::encode(2, &two_apis(backend.addr, "v2")).unwrap();
    let truncated = &next[..next.len() - 3];
    let mut bad_checksum = next.clone();
    *bad_checksum.last_mut().unwrap() ^= 0xff;
    let damaged: [(&str, Option<OwnedFd>); 4] = [
        ("unsealed", Some(unsealed_memfd(&next))),
        ("truncated", Some(sealed_memfd("t", truncated).unwrap())),
        ("bad checksum", Some(sealed_memfd("c", &bad_checksum).unwrap())),
        ("no fd", None),
    ];
    for (what, fd) in damaged {
        match send_snapshot(&socket, 2, fd) {
            ToControl::Rejected { generation: 2, reason } => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: expected Rejected, got {other:?}"),
        }
        assert_eq!(echo_status(&dp, "/echo/x"), 200, "generation 1 still serves after the {what} snapshot");
        assert_eq!(echo_status(&dp, "/v2/x"), 404);
    }
    assert_eq!(std::fs::read(layout.last_good_snapshot()).unwrap(), good, "a rejected snapshot is never saved");

    let reply = send_snapshot(&socket, 2, Some(sealed_memfd("next", &next).unwrap()));
    assert_eq!(reply, ToControl::Applied { generation: 2 });
    assert_eq!(echo_status(&dp, "/v2/x"), 200);
    assert_eq!(echo_status(&dp, "/echo/x"), 404);

    // Control goes away: the data plane keeps serving, then says hello again to a new control.
    drop(socket);
    drop(listener);
    eventually("disconnect logged", || dp.log_contains("control disconnected; still serving generation 2"));
    assert_eq!(echo_status(&dp, "/v2/x"), 200);
    let listener = channel::listen(&layout.snapshot_socket()).unwrap();
    let socket = channel::accept(&listener).unwrap();
    let (hello, _) = channel::recv::<ToControl>(&socket).unwrap().unwrap();
    assert!(matches!(hello, ToControl::Hello { generation: 2, .. }), "{hello:?}");
    assert_eq!(dp.terminate().code(), Some(0));
}

/// Snapshots sent one after another while clients keep requesting: every request is answered.
#[test]
fn snapshots_applied_under_load_fail_no_request() {
    let dir = TempDir::new("reload");
    let layout = DataDir::new(dir.path());
    let backend = ScriptedBackend::start(backend::echo);
    let listener = channel::listen(&layout.snapshot_socket()).unwrap();
    let dp = DataPlane::start(dir.path(), "auto");
    let socket = channel::accept(&listener).unwrap();
    let _hello = channel::recv::<ToControl>(&socket).unwrap().unwrap();
    let config = two_apis(backend.addr, "echo");
    let first = snapshot::encode(1, &config).unwrap();
    assert_eq!(
        send_snapshot(&socket, 1, Some(sealed_memfd("s", &first).unwrap())),
        ToControl::Applied { generation: 1 }
    );

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let stop = Arc::clone(&stop);
            let addr = dp.addr;
            std::thread::spawn(move || {
                let mut done = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // Half the clients keep one connection, half reconnect every few requests.
                    let mut client = Connection::open(addr).unwrap();
                    for _ in 0..if n % 2 == 0 { 1000 } else { 3 } {
                        let request =
                            format!("GET /echo/{n} HTTP/1.1\r\nHost: g\r\nOcp-Apim-Subscription-Key: {KEY}\r\n\r\n");
                        let response = client.round_trip(request.as_bytes()).unwrap();
                        assert_eq!(response.status, 200, "{response:?}");
                        done += 1;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
                done
            })
        })
        .collect();
    for generation in 2..=20 {
        std::thread::sleep(Duration::from_millis(30));
        let bytes = snapshot::encode(generation, &config).unwrap();
        let reply = send_snapshot(&socket, generation, Some(sealed_memfd("s", &bytes).unwrap()));
        assert_eq!(reply, ToControl::Applied { generation });
    }
    stop.store(true, Ordering::Relaxed);
    let total: u32 = clients.into_iter().map(|client| client.join().unwrap()).sum();
    assert!(total > 100, "only {total} requests");
    assert_eq!(dp.terminate().code(), Some(0));
}
