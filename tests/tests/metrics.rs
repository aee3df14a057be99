//! The ops listener of a real `portcullis up`: `/healthz`, `/readyz` (503 while no data plane
//! serves, 200 once one has applied the snapshot), and `/metrics` read with a Prometheus text
//! parser; the Grafana dashboard's queries checked against a real page.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use portcullis_tests::gateway::kill;
use portcullis_tests::http::{self, Connection};
use portcullis_tests::wait::eventually_within;
use portcullis_tests::{Gateway, GatewayOptions, eventually};
use prometheus_parse::{Sample, Scrape, Value};

/// The dashboard shipped in `deploy/grafana/`.
const DASHBOARD: &str = include_str!("../../deploy/grafana/portcullis.json");
/// A restarted data plane applies the snapshot well within this.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

portcullis_tests::on_both_io_backends!(ops_listener_serves_health_readiness_and_metrics);

fn ops_listener_serves_health_readiness_and_metrics(io: &str) {
    let gateway = Gateway::start(GatewayOptions::new(io));
    let ops = gateway.ops_addr();
    assert!(gateway.stdout_lines.iter().any(|line| line.starts_with("portcullis: ops (metrics, health) on http://")));
    let health = http::get(ops, "/healthz", &[]).unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"), "{io}");
    let ready = http::get(ops, "/readyz", &[]).unwrap();
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"), "{io}");
    assert_eq!(http::get(ops, "/nothing-here", &[]).unwrap().status, 404);

    // One connection stays open while the page is scraped.
    let key = gateway.demo_key.clone().expect("demo key");
    let mut client = Connection::open(gateway.addr).unwrap();
    assert_eq!(client.get("/echo/hello", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap().status, 200);
    let response = http::get(ops, "/metrics", &[]).unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"),
        "{:?}",
        response.headers
    );
    let page = parse(&response.text());
    let dataplane = gateway.dataplane_pid().to_string();

    for process in ["control", "dataplane"] {
        let labels = [("process", process)];
        assert!(value(&page, "portcullis_process_resident_memory_bytes", &labels) > 1_000_000.0, "{process}");
        assert!(value(&page, "portcullis_process_open_fds", &labels) >= 3.0, "{process}");
        assert!(value(&page, "portcullis_process_threads", &labels) >= 1.0, "{process}");
        assert!(value(&page, "portcullis_process_cpu_seconds_total", &labels) >= 0.0, "{process}");
        let started = value(&page, "portcullis_process_start_time_seconds", &labels);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(started <= now + 1.0 && started > now - 600.0, "{process} started at {started}, now {now}");
    }
    assert!(!dataplane.is_empty());
    assert_eq!(value(&page, "portcullis_dataplane_connected", &[]), 1.0);
    let published = value(&page, "portcullis_snapshot_generation", &[("plane", "control")]);
    assert!(published >= 1.0);
    assert_eq!(value(&page, "portcullis_snapshot_generation", &[("plane", "dataplane")]), published);
    assert!(value(&page, "portcullis_snapshot_last_applied_timestamp_seconds", &[]) > 1.0e9);
    assert!(value(&page, "portcullis_connections_active", &[]) >= 1.0, "{io}: the client's connection is open");
    assert!(value(&page, "portcullis_connections_accepted_total", &[]) >= 1.0);
    // The worker leaves the gauge once it has written the answer, which the client may read first.
    let mut in_flight = value(&page, "portcullis_requests_in_flight", &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while in_flight != 0.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        in_flight = value(&scrape(ops), "portcullis_requests_in_flight", &[]);
    }
    assert_eq!(in_flight, 0.0, "{io}: the answered request is still in flight");
    assert_eq!(value(&page, "portcullis_config_reloads_total", &[("result", "applied")]), 0.0);
    assert_eq!(value(&page, "portcullis_build_info", &[]), 1.0);

    // A reload is counted, and the new generation shows on both sides.
    let reload = gateway.ctl(&["reload"]);
    assert!(reload.status.success(), "{}", String::from_utf8_lossy(&reload.stderr));
    let page = scrape(ops);
    assert_eq!(value(&page, "portcullis_config_reloads_total", &[("result", "applied")]), 1.0);
    let applied = value(&page, "portcullis_snapshot_generation", &[("plane", "dataplane")]);
    assert!(applied >= published, "{applied} after {published}");
    // A reload of a config that does not compile is counted as refused.
    let policy = gateway.data().join("quickstart/apis/echo/policy.xml");
    let good = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, "<policies><inbound><no-such-policy /></inbound></policies>").unwrap();
    assert!(!gateway.ctl(&["reload"]).status.success(), "{io}: the broken config is refused");
    std::fs::write(&policy, good).unwrap();
    let page = scrape(ops);
    assert_eq!(value(&page, "portcullis_config_reloads_total", &[("result", "refused")]), 1.0);
    assert_eq!(value(&page, "portcullis_config_reloads_total", &[("result", "applied")]), 1.0);
    drop(client);

    // With the data plane gone the gateway is not ready; it is again once the restarted one applies.
    kill(gateway.dataplane_pid(), libc::SIGKILL);
    let mut reason = String::new();
    eventually("/readyz answers 503 while the data plane is down", || {
        let response = http::get(ops, "/readyz", &[]).unwrap();
        reason = response.text();
        response.status == 503
    });
    assert!(reason.starts_with("not ready: "), "{reason}");
    assert_eq!(http::get(ops, "/healthz", &[]).unwrap().status, 200, "control itself is alive");
    eventually_within(RESTART_TIMEOUT, "/readyz answers 200 after the restart", || {
        http::get(ops, "/readyz", &[]).unwrap().status == 200
    });
    let page = scrape(ops);
    assert_eq!(value(&page, "portcullis_dataplane_connected", &[]), 1.0);
    assert!(find(&page, "portcullis_process_resident_memory_bytes", &[("process", "dataplane")]).is_some());
}

/// Traffic-derived families, from the data plane's telemetry batches folded into the metrics.
#[test]
fn traffic_families_count_what_was_served() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let key = gateway.demo_key.clone().expect("demo key");
    let mut client = Connection::open(gateway.addr).unwrap();
    for _ in 0..5 {
        assert_eq!(client.get("/echo/ok", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap().status, 200);
    }
    for _ in 0..3 {
        assert_eq!(client.get("/echo/no-key", &[]).unwrap().status, 401);
    }
    assert_eq!(client.get("/not-an-api", &[]).unwrap().status, 404);
    let ops = gateway.ops_addr();
    let requests = |page: &Scrape, class: &str| {
        sum(page, "portcullis_requests_total", &[("api", "echo"), ("status_class", class)])
    };
    eventually_within(Duration::from_secs(10), "the batches reach the metrics", || {
        let page = scrape(ops);
        requests(&page, "2xx") == 5.0 && requests(&page, "4xx") == 3.0
    });
    let page = scrape(ops);
    assert_eq!(sum(&page, "portcullis_requests_total", &[("api", ""), ("status_class", "4xx")]), 1.0, "the 404");
    assert_eq!(sum(&page, "portcullis_requests_total", &[("subscription", "demo")]), 0.0, "per-subscription is off");
    assert!(sum(&page, "portcullis_bandwidth_bytes_total", &[("api", "echo"), ("direction", "ingress")]) > 0.0);
    assert!(sum(&page, "portcullis_bandwidth_bytes_total", &[("api", "echo"), ("direction", "egress")]) > 0.0);
    let histogram =
        find(&page, "portcullis_request_duration_seconds", &[("api", "echo")]).expect("a latency histogram");
    let Value::Histogram(buckets) = &histogram.value else { panic!("{histogram:?}") };
    assert_eq!(buckets.last().map(|bucket| bucket.count), Some(8.0), "every echo request, +Inf bucket");
    assert_eq!(value(&page, "portcullis_telemetry_batches_total", &[("result", "bad-histogram")]), 0.0);
    assert!(value(&page, "portcullis_telemetry_batches_total", &[("result", "recorded")]) >= 1.0);
}

#[test]
fn grafana_dashboard_is_valid_and_queries_real_metrics() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    for field in ["title", "uid"] {
        assert!(dashboard[field].as_str().is_some_and(|text| !text.is_empty()), "dashboard {field}");
    }
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|version| version >= 30), "schemaVersion");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "panels");
    let mut ids = BTreeSet::new();
    let mut expressions = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "{title}: ids are unique");
        assert!(panel["type"].as_str().is_some_and(|kind| !kind.is_empty()), "{title}: type");
        let grid = &panel["gridPos"];
        for field in ["x", "y", "w", "h"] {
            assert!(grid[field].as_u64().is_some(), "{title}: gridPos.{field}");
        }
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24, "{title}: fits the 24-column grid");
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: targets");
        for target in targets {
            assert!(target["refId"].as_str().is_some(), "{title}: refId");
            expressions.push(target["expr"].as_str().unwrap_or_else(|| panic!("{title}: expr")).to_owned());
        }
    }
    let referenced: BTreeSet<String> = expressions.iter().flat_map(|expr| metric_names(expr)).collect();
    assert!(referenced.len() >= 10, "{referenced:?}");

    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let page = scrape(gateway.ops_addr());
    let families: BTreeSet<&str> =
        page.docs.keys().map(String::as_str).chain(page.samples.iter().map(|sample| sample.metric.as_str())).collect();
    for name in &referenced {
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix));
        let found = families.contains(name.as_str()) || family.is_some_and(|family| families.contains(family));
        assert!(found, "the dashboard queries {name}, which /metrics does not have; it has {families:?}");
    }
}

/// Every `portcullis_…` name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("portcullis_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn scrape(ops: SocketAddr) -> Scrape {
    let response = http::get(ops, "/metrics", &[]).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    parse(&response.text())
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("a Prometheus text page")
}

fn find<'a>(page: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    page.samples
        .iter()
        .filter(|sample| sample.metric == name)
        .find(|sample| labels.iter().all(|(label, value)| sample.labels.get(label) == Some(*value)))
}

fn scalar(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{} is not a scalar: {other:?}", sample.metric),
    }
}

/// The one sample `name` with `labels` (among its labels); fails the test when there is none.
fn value(page: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let names: BTreeSet<&str> = page.samples.iter().map(|sample| sample.metric.as_str()).collect();
    find(page, name, labels)
        .map(scalar)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}; the page has {names:?}"))
}

/// The sum of every sample `name` with `labels` among its labels (0 when none).
fn sum(page: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| labels.iter().all(|(label, value)| sample.labels.get(label) == Some(*value)))
        .map(scalar)
        .sum()
}
