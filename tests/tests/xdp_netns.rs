//! The XDP pre-filter end to end: `portcullis up` in a network namespace of its own, clients in
//! another, joined by a veth pair with the program attached natively to the gateway's end.
//! Ignored, with the reason, where namespaces or BPF are unavailable (see `build.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test: a failed step fails the test")]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_tests::http::{Connection, Response};
use portcullis_tests::netns::{CLIENT_IPS, GATEWAY_IP, NetnsPair, connect_from};
use portcullis_tests::{Gateway, GatewayOptions, TempDir};
use serde_json::Value;

const PORT: u16 = 8080;
/// A SYN dropped at XDP is retried by the client's kernel; this is how long a connect may try.
const DROPPED_CONNECT_TIMEOUT: Duration = Duration::from_millis(400);
/// How long a change (reload, block, expiry) may take to reach the maps.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes a config: one open API on the echo backend, and `xdp` as the `[xdp]` section.
fn write_config(dir: &Path, interface: &str, xdp: &str) {
    std::fs::create_dir_all(dir.join("apis/echo")).unwrap();
    std::fs::write(
        dir.join("apis/echo/api.toml"),
        "name = \"Echo\"\npath = \"echo\"\nbackend-url = \"{{echo-backend-url}}\"\nsubscription-required = false\n",
    )
    .unwrap();
    std::fs::write(dir.join("gateway.toml"), format!("[xdp]\ninterfaces = [\"{interface}\"]\n{xdp}")).unwrap();
}

struct Setup {
    pair: NetnsPair,
    gateway: Gateway,
    config: TempDir,
}

fn start(xdp: &str) -> Setup {
    let pair = NetnsPair::create();
    let config = TempDir::new("xdp-config");
    write_config(config.path(), &pair.gateway_if, xdp);
    let mut options = GatewayOptions::new("epoll").config(config.path());
    options.listen = format!("{GATEWAY_IP}:{PORT}");
    options.netns = Some(pair.gateway_ns.clone());
    options.workers = 1;
    let gateway = Gateway::start(options);
    let setup = Setup { pair, gateway, config };
    // The maps follow the snapshot within one sync interval; wait until XDP is attached.
    setup.wait_for("XDP attached", |status| status["interfaces"].as_array().is_some_and(|list| !list.is_empty()));
    setup
}

impl Setup {
    fn target(&self) -> SocketAddr {
        SocketAddr::from((GATEWAY_IP, PORT))
    }

    fn xdp_status(&self) -> Value {
        self.try_xdp_status().unwrap_or_else(|error| panic!("ctl xdp status: {error}"))
    }

    fn try_xdp_status(&self) -> Result<Value, String> {
        let output = self.gateway.ctl(&["xdp", "status", "--json"]);
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        serde_json::from_slice(&output.stdout).map_err(|error| error.to_string())
    }

    fn counter(&self, reason: &str) -> u64 {
        self.xdp_status()["counters"][reason].as_u64().unwrap_or(0)
    }

    fn accepted(&self) -> u64 {
        let status = self.gateway.status();
        status["workers"].as_array().unwrap().iter().map(|w| w["connections_accepted"].as_u64().unwrap()).sum()
    }

    fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            // A restarting data plane has no XDP socket for a moment: retry until the deadline.
            let status = self.try_xdp_status().unwrap_or_else(Value::String);
            if done(&status) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; xdp status: {status:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One GET /echo/x from `source` on a fresh connection; `None` when the connection attempt
    /// got no answer (dropped at XDP).
    fn get_from(&self, source: Ipv4Addr) -> Option<Response> {
        let target = self.target();
        self.pair.in_client(move || {
            let stream = connect_from(source, target, DROPPED_CONNECT_TIMEOUT).ok()?;
            // A connection can also die mid-request when a reload or block lands meanwhile.
            Connection::from_stream(stream).ok()?.get("/echo/x", &[]).ok()
        })
    }

    fn wait_reachable(&self, source: Ipv4Addr, reachable: bool) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while self.get_from(source).is_some() != reachable {
            assert!(
                Instant::now() < deadline,
                "{source} never became {}",
                if reachable { "reachable" } else { "unreachable" }
            );
        }
    }

    fn reload(&self, xdp: &str) {
        write_config(self.config.path(), &self.pair.gateway_if, xdp);
        let output = self.gateway.ctl(&["reload"]);
        assert!(output.status.success(), "reload: {}", String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
#[cfg_attr(any(no_netns, no_bpf), ignore = "needs root (network namespaces) and CAP_BPF; see build.rs")]
fn denylisted_client_never_reaches_the_gateway_and_reload_swaps_the_lists() {
    let [good, bad, _] = CLIENT_IPS;
    let setup = start(&format!("deny = [\"{bad}\"]\n"));
    setup.wait_reachable(good, true);
    assert_eq!(setup.get_from(good).unwrap().status, 200);

    let accepted = setup.accepted();
    let dropped = setup.counter("denylisted");
    for _ in 0..3 {
        assert!(setup.get_from(bad).is_none(), "a denylisted client must not connect");
    }
    assert!(setup.counter("denylisted") >= dropped + 3, "the SYNs (and their retries) were counted at XDP");
    assert_eq!(setup.accepted(), accepted, "the gateway accepted no connection from the denylisted client");
    assert_eq!(setup.xdp_status()["interfaces"][0]["mode"], "native");

    // A reload that swaps the lists takes effect without a restart.
    let pid = setup.gateway.dataplane_pid();
    setup.reload(&format!("deny = [\"{good}\"]\n"));
    setup.wait_reachable(good, false);
    setup.wait_reachable(bad, true);
    assert_eq!(setup.get_from(bad).unwrap().status, 200);
    assert_eq!(setup.gateway.dataplane_pid(), pid, "no restart");
}

#[test]
#[cfg_attr(any(no_netns, no_bpf), ignore = "needs root (network namespaces) and CAP_BPF; see build.rs")]
fn allowlisted_client_is_served_and_others_are_dropped() {
    let [good, other, _] = CLIENT_IPS;
    let setup = start(&format!("allow = [\"{good}/32\"]\n"));
    setup.wait_reachable(good, true);
    assert_eq!(setup.get_from(good).unwrap().status, 200);
    let before = setup.counter("not-allowlisted");
    assert!(setup.get_from(other).is_none());
    assert!(setup.counter("not-allowlisted") > before);
}

#[test]
#[cfg_attr(any(no_netns, no_bpf), ignore = "needs root (network namespaces) and CAP_BPF; see build.rs")]
fn per_ip_limit_answers_429_then_drops_at_xdp_until_the_block_expires() {
    let [_, _, client] = CLIENT_IPS;
    let setup = start("per-ip-requests-per-second = 1\nper-ip-burst = 2\nblock-seconds = 3\n");
    setup.wait_reachable(client, true); // the first request
    let second = setup.get_from(client).expect("second request connects");
    assert_eq!(second.status, 200);
    let limited = setup.get_from(client).expect("third request connects");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("Retry-After"), Some("3"));
    assert_eq!(limited.json()["message"], "Rate limit is exceeded. Try again in 3 seconds.");
    let blocked_at = Instant::now();

    let before = setup.counter("blocked");
    assert!(setup.get_from(client).is_none(), "blocked at the NIC right after the 429");
    assert!(setup.counter("blocked") > before);
    let status = setup.xdp_status();
    assert_eq!(status["blocks"][0]["origin"], "rate-limit", "{status:#}");

    setup.wait_reachable(client, true);
    assert!(blocked_at.elapsed() >= Duration::from_millis(2_500), "served again only once the block expired");
}

/// `rate-limit-by-key` counted by the client's address: two calls in five seconds.
const RATE_LIMIT_BY_IP: &str = r#"<policies>
  <inbound>
    <rate-limit-by-key calls="2" renewal-period="5" counter-key="@(context.Request.IpAddress)" />
  </inbound>
  <backend><forward-request /></backend>
</policies>"#;

#[test]
#[cfg_attr(any(no_netns, no_bpf), ignore = "needs root (network namespaces) and CAP_BPF; see build.rs")]
fn rate_limit_by_client_address_blocks_the_offender_at_xdp() {
    let [_, client, other] = CLIENT_IPS;
    let setup = start("");
    std::fs::write(setup.config.path().join("apis/echo/policy.xml"), RATE_LIMIT_BY_IP).unwrap();
    setup.reload("");
    setup.wait_reachable(client, true); // the first call (or more, while the reload landed)
    let limited = loop {
        let response = setup.get_from(client).expect("connects before the limit");
        if response.status == 429 {
            break response;
        }
        assert_eq!(response.status, 200);
    };
    let seconds: u64 = limited.header("Retry-After").expect("Retry-After").parse().unwrap();
    assert_eq!(limited.json()["message"], format!("Rate limit is exceeded. Try again in {seconds} seconds."));
    let blocked_at = Instant::now();

    // The policy's 429 put the address in the block table for its retry-after time.
    let before = setup.counter("blocked");
    assert!(setup.get_from(client).is_none(), "blocked at the NIC right after the 429");
    assert!(setup.counter("blocked") > before);
    let status = setup.xdp_status();
    assert_eq!(status["blocks"][0]["origin"], "rate-limit", "{status:#}");
    assert_eq!(setup.get_from(other).map(|response| response.status), Some(200), "another address is served");

    setup.wait_reachable(client, true);
    assert!(blocked_at.elapsed() >= Duration::from_millis(seconds * 1000 - 500), "served again once the block expired");
}

#[test]
#[cfg_attr(any(no_netns, no_bpf), ignore = "needs root (network namespaces) and CAP_BPF; see build.rs")]
fn ctl_block_survives_a_data_plane_restart_and_unblock_lifts_it() {
    let [client, _, _] = CLIENT_IPS;
    let setup = start("");
    setup.wait_reachable(client, true);
    let output = setup.gateway.ctl(&["block", &format!("{client}/32"), "--for", "1h"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("blocked {client}/32 for 3600 s"));
    assert!(setup.get_from(client).is_none());

    // Kill the data plane; control restarts it, and the block comes back from disk.
    let pid = setup.gateway.dataplane_pid();
    portcullis_tests::gateway::kill(pid, libc::SIGKILL);
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while std::fs::read_to_string(setup.gateway.data().join("run/dataplane.pid"))
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        == Some(pid)
    {
        assert!(Instant::now() < deadline, "the data plane was not restarted");
        std::thread::sleep(Duration::from_millis(100));
    }
    setup.wait_for("XDP re-attached", |status| {
        status["interfaces"].as_array().is_some_and(|list| !list.is_empty()) && status["maps"]["blocked"] == 1
    });
    assert!(setup.get_from(client).is_none(), "still blocked after the restart");

    let output = setup.gateway.ctl(&["unblock", &client.to_string()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    setup.wait_reachable(client, true);
}
