//! The data plane outlives control: it keeps serving when control is killed, a data plane
//! started while control is down serves the last good snapshot from disk, and a corrupt
//! snapshot on disk is refused rather than served.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portcullis_tests::gateway::{alive, kill};
use portcullis_tests::http;
use portcullis_tests::wait::eventually_within;
use portcullis_tests::{Gateway, GatewayOptions, bins};

/// A data plane started by the test itself, killed on drop.
struct DataPlane(Child);

impl DataPlane {
    fn start(data_dir: &Path, addr: SocketAddr, io: &str) -> Self {
        let log = std::fs::File::create(data_dir.join("standalone-dataplane.log")).unwrap();
        let child = Command::new(bins::dataplane())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &addr.to_string(), "--io", io, "--workers", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Restarts and cold starts take longer than [`portcullis_tests::wait::eventually`]'s bound.
const RESTART_TIMEOUT: Duration = Duration::from_secs(20);

fn wait_for(what: &str, probe: impl FnMut() -> bool) {
    eventually_within(RESTART_TIMEOUT, what, probe);
}

portcullis_tests::on_both_io_backends!(data_plane_outlives_control_and_cold_starts_from_disk);

fn data_plane_outlives_control_and_cold_starts_from_disk(io: &str) {
    let mut gateway = Gateway::start(GatewayOptions::new(io));
    let key = gateway.demo_key.clone().expect("demo key");
    let auth = [("Ocp-Apim-Subscription-Key", key.as_str())];
    assert_eq!(http::get(gateway.addr, "/echo/before", &auth).unwrap().status, 200);

    // Control dies without cleaning up: the data plane keeps serving.
    let dataplane = gateway.dataplane_pid();
    gateway.signal_control(libc::SIGKILL);
    gateway.wait_exit(Duration::from_secs(10)).expect("control died");
    for i in 0..20 {
        let response = http::get(gateway.addr, &format!("/echo/orphan/{i}"), &auth).unwrap();
        assert_eq!(response.status, 200, "request {i} after control died: {}", response.text());
    }
    assert!(alive(dataplane));
    let ctl = gateway.ctl(&["status"]);
    assert!(!ctl.status.success(), "ctl fails clearly while control is down");

    // Stop that data plane; start a new one while control is still down: it serves the last
    // good snapshot from disk.
    kill(dataplane, libc::SIGTERM);
    wait_for("the orphaned data plane to exit", || !alive(dataplane));
    let data = gateway.data();
    let snapshot = data.join("snapshots/last-good.snap");
    assert!(snapshot.exists(), "the data plane kept a last-good snapshot");
    {
        let _cold = DataPlane::start(&data, gateway.addr, io);
        wait_for("the cold-started data plane to serve", || {
            http::get(gateway.addr, "/echo/cold", &auth).is_ok_and(|r| r.status == 200)
        });
        let response = http::get(gateway.addr, "/echo/cold", &auth).unwrap();
        assert_eq!(response.json()["path"], "/api/cold");
    }

    // A corrupt last-good snapshot is refused: the data plane serves no config rather than a bad one.
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&snapshot, &bytes).unwrap();
    let _corrupt = DataPlane::start(&data, gateway.addr, io);
    wait_for("the data plane with a corrupt snapshot to answer", || http::get(gateway.addr, "/echo/x", &auth).is_ok());
    let refused = http::get(gateway.addr, "/echo/x", &auth).unwrap();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["statusCode"], 503);
}
