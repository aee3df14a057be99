//! Quota counters outlive the data plane: a `kill -9` loses at most the counts of the last save
//! interval (measured and printed here), a clean stop loses none, a reload that changes the limit
//! keeps the counter of the key it did not change, and the file holds no key.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::time::Duration;

use portcullis_tests::http;
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::wait::eventually_within;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

fn policy(calls: u32) -> String {
    format!(
        r#"<policies>
  <inbound>
    <base />
    <quota-by-key calls="{calls}" renewal-period="0" counter-key="persisted" remaining-calls-header-name="X-Left" />
  </inbound>
  <backend><base /></backend>
  <outbound><base /></outbound>
  <on-error><base /></on-error>
</policies>"#
    )
}

/// A restarted data plane serves within this.
const RESTART_TIMEOUT: Duration = Duration::from_secs(20);
/// Longer than two of the data plane's save intervals (1 s): the counts before it are on disk.
const SAVED_AFTER: Duration = Duration::from_millis(2_500);

fn config(calls: u32) -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    std::fs::write(dir.path().join("apis/echo/policy.xml"), policy(calls)).unwrap();
    dir
}

/// Sends `count` requests; returns the counter after the last (calls minus what is left).
fn send(gateway: &Gateway, key: &str, count: usize, calls: u64) -> u64 {
    let mut used = 0;
    for _ in 0..count {
        let response = http::get(gateway.addr, "/echo/q", &[("Ocp-Apim-Subscription-Key", key)]).unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
        let left: u64 = response.header("X-Left").expect("X-Left").parse().unwrap();
        used = calls - left;
    }
    used
}

/// Stops the data plane with `signal` and waits until its successor (control restarts it) serves.
fn restart_data_plane(gateway: &Gateway, key: &str, signal: i32) {
    let pid = gateway.dataplane_pid();
    portcullis_tests::gateway::kill(pid, signal);
    eventually_within(RESTART_TIMEOUT, "the data plane to be restarted and serve", || {
        let restarted = std::fs::read_to_string(gateway.data().join("run/dataplane.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .is_some_and(|now| now != pid);
        restarted && http::get(gateway.addr, "/status-probe", &[("Ocp-Apim-Subscription-Key", key)]).is_ok()
    });
}

portcullis_tests::on_both_io_backends!(quota_counters_outlive_restarts_and_reloads);

fn quota_counters_outlive_restarts_and_reloads(io: &str) {
    let config = config(1000);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");

    // kill -9: what was counted before the last save is kept; the burst after it may be lost.
    assert_eq!(send(&gateway, &key, 50, 1000), 50);
    std::thread::sleep(SAVED_AFTER);
    assert_eq!(send(&gateway, &key, 30, 1000), 80);
    restart_data_plane(&gateway, &key, libc::SIGKILL);
    let after_kill = send(&gateway, &key, 1, 1000) - 1;
    assert!((50..=80).contains(&after_kill), "kept {after_kill} of 80 counts");
    eprintln!("kill -9 lost {} of the 30 counts of the last second", 80 - after_kill);

    // The file keeps hashes and counts, never a key: not the counter-key, not the subscription key.
    let file = std::fs::read(gateway.data().join("quota-counters.bin")).unwrap();
    for secret in ["persisted", key.as_str()] {
        assert!(!file.windows(secret.len()).any(|window| window == secret.as_bytes()), "{secret} in the file");
    }

    // A clean stop keeps every count.
    let before_stop = send(&gateway, &key, 10, 1000);
    assert_eq!(before_stop, after_kill + 11);
    restart_data_plane(&gateway, &key, libc::SIGTERM);
    assert_eq!(send(&gateway, &key, 1, 1000), before_stop + 1, "a restart keeps the quota counter");

    // A reload that raises the limit keeps the key's counter.
    std::fs::write(config.path().join("apis/echo/policy.xml"), policy(2000)).unwrap();
    let output = gateway.ctl(&["reload"]);
    assert!(output.status.success(), "reload: {}", String::from_utf8_lossy(&output.stderr));
    let mut probes = 0;
    eventually_within(RESTART_TIMEOUT, "the new limit to apply", || {
        probes += 1;
        let response = http::get(gateway.addr, "/echo/q", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
        response.header("X-Left").and_then(|left| left.parse::<u64>().ok()).is_some_and(|left| left > 1000)
    });
    let used = send(&gateway, &key, 1, 2000);
    // The counter went on from where it was (the probes above and this request on top).
    assert_eq!(used, before_stop + 1 + probes + 1);
}
