//! The access log, written by the real gateway: one JSON record per request with APIM's field
//! names, keys redacted, `trace` entries in their request's record; reopened after logrotate moved
//! the file (`ctl logs reopen`, SIGUSR1); and a writer that cannot keep up costs dropped records,
//! counted, never a slower request.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_tests::http::{self, Connection};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::wait::eventually_within;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};
use serde_json::Value;

/// The subscription key of the quickstart's `demo` subscription (kept: the test passes `--config`).
const KEY: &str = "0123456789abcdef0123456789abcdef";
/// Records reach the file within the telemetry thread's tick (100 ms); allow for a busy machine.
const WRITTEN_WITHIN: Duration = Duration::from_secs(10);

const POLICY: &str = r#"<policies>
  <inbound>
    <base />
    <trace source="access-log-test" severity="information"><message>@("hello " + context.Request.Method)</message></trace>
  </inbound>
  <backend><base /></backend>
  <outbound><base /></outbound>
  <on-error><base /></on-error>
</policies>"#;

/// The quickstart with the echo API's policy above and `[access-log]` as given.
fn config(access_log: &str) -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    std::fs::write(dir.path().join("apis/echo/policy.xml"), POLICY).unwrap();
    let gateway_toml = dir.path().join("gateway.toml");
    let mut text = std::fs::read_to_string(&gateway_toml).unwrap();
    text.push_str(access_log);
    std::fs::write(gateway_toml, text).unwrap();
    dir
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect()
}

fn wait_for_records(path: &Path, count: usize) -> Vec<Value> {
    eventually_within(WRITTEN_WITHIN, &format!("{count} records in {}", path.display()), || {
        records(path).len() >= count
    });
    records(path)
}

portcullis_tests::on_both_io_backends!(every_request_gets_one_record_with_apim_fields);

fn every_request_gets_one_record_with_apim_fields(io: &str) {
    let config = config("\n[access-log]\ndestination = \"file\"\npath = \"logs/access.log\"\n");
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let path = gateway.data().join("logs/access.log");
    let mut client = Connection::open(gateway.addr).unwrap();
    let header = [("Ocp-Apim-Subscription-Key", KEY)];
    assert_eq!(client.get("/echo/one", &header).unwrap().status, 200);
    assert_eq!(client.get(&format!("/echo/two?subscription-key={KEY}&x=1"), &[]).unwrap().status, 200);
    assert_eq!(client.get("/echo/fail?echo-status=500", &header).unwrap().status, 500);
    assert_eq!(client.get("/echo/three", &[("Ocp-Apim-Subscription-Key", "not-a-key")]).unwrap().status, 401);
    assert_eq!(client.get("/nowhere", &[]).unwrap().status, 404);

    let records = wait_for_records(&path, 5);
    assert_eq!(records.len(), 5, "one record per request: {records:#?}");
    let [one, two, fail, refused, missing] = records.as_slice() else { unreachable!() };
    for record in &records {
        let time = record["timeGenerated"].as_str().unwrap();
        let shape = time.len() == 24 && &time[10..11] == "T" && &time[19..20] == "." && time.ends_with('Z');
        assert!(shape, "RFC 3339 UTC with milliseconds: {time}");
        assert_eq!(record["method"], "GET");
        assert_eq!(record["callerIpAddress"], "127.0.0.1");
        assert!(record["totalTime"].as_f64().unwrap() >= 0.0);
        assert!(record["requestSize"].as_u64().unwrap() > 0, "{record}");
        assert!(record["responseSize"].as_u64().unwrap() > 0, "{record}");
    }
    assert_eq!((one["apiId"].as_str(), one["apimSubscriptionId"].as_str()), (Some("echo"), Some("demo")));
    assert_eq!((one["responseCode"].as_u64(), one["backendResponseCode"].as_u64()), (Some(200), Some(200)));
    assert_eq!(one["isRequestSuccess"], true);
    assert_eq!(one["cache"], "none");
    assert_eq!(one["apiRevision"], 1);
    let id = one["correlationId"].as_str().unwrap();
    assert_eq!((id.len(), id.matches('-').count()), (36, 4), "a GUID: {id}");
    assert!(one["backendTime"].as_f64().unwrap() > 0.0);
    let trace_id = one["traceId"].as_str().unwrap();
    assert!(trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()), "{trace_id}");
    assert_ne!(one["traceId"], two["traceId"], "every request starts its own trace");
    assert_eq!(one["traces"][0]["source"], "access-log-test");
    assert_eq!(one["traces"][0]["message"], "hello GET");
    assert_eq!(two["url"], "/echo/two?subscription-key=***&x=1", "the key in the query is redacted");
    assert_eq!((fail["responseCode"].as_u64(), fail["backendResponseCode"].as_u64()), (Some(500), Some(500)));
    assert_eq!(fail["isRequestSuccess"], false);
    assert_eq!((refused["responseCode"].as_u64(), refused["backendResponseCode"].as_u64()), (Some(401), Some(0)));
    assert_eq!(refused["apimSubscriptionId"], "");
    assert_eq!(refused["lastError"]["section"], "inbound", "{refused}");
    assert_eq!((missing["responseCode"].as_u64(), missing["apiId"].as_str()), (Some(404), Some("")));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(KEY), "a subscription key reached the access log");
}

portcullis_tests::on_both_io_backends!(logrotate_moves_the_file_and_a_reopen_follows);

fn logrotate_moves_the_file_and_a_reopen_follows(io: &str) {
    let config = config("\n[access-log]\ndestination = \"file\"\npath = \"access.log\"\n");
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let path = gateway.data().join("access.log");
    let get = |path: &str| http::get(gateway.addr, path, &[("Ocp-Apim-Subscription-Key", KEY)]).unwrap().status;
    assert_eq!(get("/echo/before"), 200);
    wait_for_records(&path, 1);

    let rotated: PathBuf = gateway.data().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let reopened = gateway.ctl(&["logs", "reopen", "--json"]);
    assert!(reopened.status.success(), "{}", String::from_utf8_lossy(&reopened.stderr));
    let answer: Value = serde_json::from_slice(&reopened.stdout).unwrap();
    assert_eq!(answer["reopened"], true);
    // The reopen happens on the telemetry thread's next turn; requests sent before it land in the
    // old file, so wait for the new one to exist.
    eventually_within(WRITTEN_WITHIN, "the access log is created again", || path.exists());
    assert_eq!(get("/echo/after-ctl"), 200);
    let fresh = wait_for_records(&path, 1);
    assert_eq!(fresh[0]["url"], "/echo/after-ctl");
    assert_eq!(records(&rotated).len(), 1);

    std::fs::rename(&path, gateway.data().join("access.log.2")).unwrap();
    portcullis_tests::gateway::kill(gateway.dataplane_pid(), libc::SIGUSR1);
    eventually_within(WRITTEN_WITHIN, "SIGUSR1 creates the access log again", || path.exists());
    assert_eq!(get("/echo/after-signal"), 200);
    assert_eq!(wait_for_records(&path, 1)[0]["url"], "/echo/after-signal");
}

/// The log is a FIFO nobody reads: the writer blocks (on its own thread), its queue fills
/// (`queue-records`), records are dropped and counted, requests go on being answered at once, and
/// the metrics go on counting.
#[test]
fn a_writer_that_cannot_keep_up_drops_records_not_requests() {
    let fifos = TempDir::new("fifo");
    let fifo = fifos.path().join("stuck.log");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let config =
        config(&format!("\n[access-log]\ndestination = \"file\"\npath = \"{}\"\nqueue-records = 8\n", fifo.display()));
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    let mut client = Connection::open(gateway.addr).unwrap();
    let started = Instant::now();
    for n in 0..200 {
        let response = client.get(&format!("/echo/{n}"), &[("Ocp-Apim-Subscription-Key", KEY)]).unwrap();
        assert_eq!(response.status, 200);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "200 requests took {took:?} with the log writer stuck");
    eventually_within(WRITTEN_WITHIN, "dropped records are counted", || {
        gateway.status()["log_records_dropped"].as_u64().unwrap_or(0) >= 200 - 8
    });
    // The counts go on: the stuck writer stops only the log.
    let ops = gateway.ops_addr();
    eventually_within(WRITTEN_WITHIN, "the metrics count every request", || {
        let page = http::get(ops, "/metrics", &[]).unwrap().text();
        page.lines().any(|line| {
            line.starts_with("portcullis_requests_total{") && line.contains("api=\"echo\"") && line.ends_with(" 200")
        })
    });
    let text = String::from_utf8(gateway.ctl(&["status"]).stdout).unwrap();
    assert!(text.contains("records dropped"), "{text}");
}
