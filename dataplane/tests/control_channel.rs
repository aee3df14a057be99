//! The test plays control: it serves `snapshot.sock`, sends good and damaged snapshots, and checks
//! that the data plane applies the good ones, rejects the rest and keeps serving throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test helpers fail the test by panicking

mod support;

use std::io::Write as _;
use std::os::fd::{AsFd as _, OwnedFd};

use portcullis_contract::channel::{self, ToControl, ToDataPlane};
use portcullis_contract::layout::DataDir;
use portcullis_contract::snapshot;
use support::{Backend, DataPlane, KEY, TempDir};

fn send_snapshot(socket: &OwnedFd, generation: u64, fd: Option<OwnedFd>) -> ToControl {
    channel::send(socket, &ToDataPlane::Snapshot { generation }, fd.as_ref().map(|fd| fd.as_fd())).unwrap();
    channel::recv::<ToControl>(socket).unwrap().expect("data plane closed the channel").0
}

fn unsealed_memfd(bytes: &[u8]) -> OwnedFd {
    let fd = rustix::fs::memfd_create("unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).unwrap();
    file.into()
}

fn echo_status(dp: &DataPlane, path: &str) -> u16 {
    dp.request(&format!("GET {path} HTTP/1.1\r\nHost: g\r\nOcp-Apim-Subscription-Key: {KEY}\r\n\r\n")).status()
}

#[test]
fn applies_good_snapshots_and_rejects_damaged_ones() {
    let dir = TempDir::new("channel");
    let layout = DataDir::new(&dir.0);
    let backend = Backend::start();
    let listener = channel::listen(&layout.snapshot_socket()).unwrap();
    let dp = DataPlane::start(&dir.0, "uring");
    let socket = channel::accept(&listener).unwrap();

    let (hello, fd) = channel::recv::<ToControl>(&socket).unwrap().unwrap();
    assert!(fd.is_none());
    let ToControl::Hello { pid, workers, io_backend, listen, generation } = hello else { panic!("{hello:?}") };
    assert_eq!((pid, workers, io_backend.as_str(), generation), (dp.child.id(), 2, "uring", 0));
    assert_eq!(listen, vec![dp.addr.to_string()]);
    assert_eq!(echo_status(&dp, "/echo"), 503);

    let good = snapshot::encode(1, &support::config(backend.addr, "echo")).unwrap();
    let reply = send_snapshot(&socket, 1, Some(snapshot::sealed_memfd("good", &good).unwrap()));
    assert_eq!(reply, ToControl::Applied { generation: 1 });
    assert_eq!(echo_status(&dp, "/echo/x"), 200);
    assert_eq!(std::fs::read(layout.last_good_snapshot()).unwrap(), good);

    let next = snapshot::encode(2, &support::config(backend.addr, "v2")).unwrap();
    let truncated = &next[..next.len() - 3];
    let mut bad_checksum = next.clone();
    *bad_checksum.last_mut().unwrap() ^= 0xff;
    let damaged: [(&str, Option<OwnedFd>); 4] = [
        ("unsealed", Some(unsealed_memfd(&next))),
        ("truncated", Some(snapshot::sealed_memfd("t", truncated).unwrap())),
        ("bad checksum", Some(snapshot::sealed_memfd("c", &bad_checksum).unwrap())),
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

    let reply = send_snapshot(&socket, 2, Some(snapshot::sealed_memfd("next", &next).unwrap()));
    assert_eq!(reply, ToControl::Applied { generation: 2 });
    assert_eq!(echo_status(&dp, "/v2/x"), 200);
    assert_eq!(echo_status(&dp, "/echo/x"), 404);

    // Control goes away: the data plane keeps serving, then says hello again to a new control.
    drop(socket);
    drop(listener);
    support::eventually("disconnect logged", || dp.log_contains("control disconnected; still serving generation 2"));
    assert_eq!(echo_status(&dp, "/v2/x"), 200);
    let listener = channel::listen(&layout.snapshot_socket()).unwrap();
    let socket = channel::accept(&listener).unwrap();
    let (hello, _) = channel::recv::<ToControl>(&socket).unwrap().unwrap();
    assert!(matches!(hello, ToControl::Hello { generation: 2, .. }), "{hello:?}");
    assert_eq!(dp.terminate().code(), Some(0));
}
