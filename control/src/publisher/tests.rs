//! Tests of the publisher against a fake data plane on a real SOCK_SEQPACKET socket.

use std::path::PathBuf;

use super::*;

fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-publisher-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("snapshot.sock")
}

fn hello(generation: u64) -> ToControl {
    ToControl::Hello {
        pid: 7,
        workers: 2,
        io_backend: "epoll".into(),
        listen: vec!["127.0.0.1:1".into()],
        listen_tls: None,
        generation,
    }
}

/// Receives one snapshot and returns its generation and decoded config.
fn receive(connection: &OwnedFd) -> (u64, Config) {
    let (message, fd) = channel::recv::<ToDataPlane>(connection).unwrap().unwrap();
    let ToDataPlane::Snapshot { generation } = message else { panic!("expected a snapshot, got {message:?}") };
    let (header, config, _) = snapshot::read_sealed_memfd(fd.unwrap()).unwrap();
    assert_eq!(header.generation, generation);
    (generation, config)
}

#[test]
fn publishes_tracks_answers_and_renumbers_on_reconnect() {
    let path = socket_path("flow");
    let publisher = Arc::new(Publisher::new(Config::empty("one"), 5).unwrap());
    let listener = channel::listen(&path).unwrap();
    let serving = Arc::clone(&publisher);
    std::thread::spawn(move || serving.serve(listener));

    // Not connected: a published generation times out.
    assert_eq!(publisher.wait(5, Duration::from_millis(20)), Outcome::TimedOut { connected: false });

    let dataplane = channel::connect(&path).unwrap();
    channel::send(&dataplane, &hello(0), None).unwrap();
    assert_eq!(receive(&dataplane), (5, Config::empty("one")));
    channel::send(&dataplane, &ToControl::Applied { generation: 5 }, None).unwrap();
    assert_eq!(publisher.wait(5, Duration::from_secs(5)), Outcome::Applied);
    let view = publisher.view();
    assert_eq!((view.generation, view.applied_generation, view.connected), (5, 5, true));
    assert_eq!(view.dataplane.unwrap().workers, 2);

    let generation = publisher.publish(Config::empty("two")).unwrap();
    assert_eq!(generation, 6);
    assert_eq!(receive(&dataplane), (6, Config::empty("two")));
    channel::send(&dataplane, &ToControl::Rejected { generation: 6, reason: "bad".into() }, None).unwrap();
    assert_eq!(publisher.wait(6, Duration::from_secs(5)), Outcome::Rejected("bad".into()));

    // A bad message is ignored, the connection stays: the answer sent after it on the same
    // connection is still read (were the connection dropped, the wait would time out).
    assert_eq!(publisher.publish(Config::empty("three")).unwrap(), 7);
    assert_eq!(receive(&dataplane), (7, Config::empty("three")));
    rustix::net::send(&dataplane, b"not json", rustix::net::SendFlags::empty()).unwrap();
    channel::send(&dataplane, &ToControl::Applied { generation: 7 }, None).unwrap();
    assert_eq!(publisher.wait(7, Duration::from_secs(5)), Outcome::Applied);
    let view = publisher.view();
    assert!(view.connected, "the bad message did not cost the connection");
    assert_eq!((view.generation, view.applied_generation), (7, 7));

    drop(dataplane);
    let restarted = channel::connect(&path).unwrap();
    channel::send(&restarted, &hello(9), None).unwrap();
    let (generation, received) = receive(&restarted);
    assert_eq!((generation, received.source.as_str()), (10, "three"));
    assert_eq!(publisher.view().generation, 10);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
