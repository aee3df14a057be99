//! The whole observability set against one known mix of requests through the real gateway: 200s,
//! a backend 500, a rate-limit 429, a bad key's 401, a 404, a cache miss and a hit. The access
//! log, the Prometheus metrics (parsed by a real Prometheus text parser), the OTLP spans, the
//! analytics reports and `ctl top` must each say exactly that; and no subscription key, JWT,
//! password or secret named value the mix used may appear in any of them, nor in the gateway's
//! own log or status.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use portcullis_tests::http::Connection;
use portcullis_tests::management::Management;
use portcullis_tests::otlp;
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::wait::eventually_within;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};
use serde_json::Value;

/// The quickstart's demo key (kept as written: the test passes `--config`).
const KEY: &str = "0123456789abcdef0123456789abcdef";
const SECRET_VALUE: &str = "s3cret-named-value-9f1d";
const BASIC_PASSWORD: &str = "basic-password-77ac";
/// A JWT-shaped bearer token the client sends (the gateway forwards it untouched).
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvYnNlcnZhYmlsaXR5In0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg";
const SETTLED_WITHIN: Duration = Duration::from_secs(15);

const ECHO_POLICY: &str = r#"<policies>
  <inbound>
    <base />
    <rate-limit calls="3" renewal-period="60" />
    <set-header name="X-Backend-Secret" exists-action="override"><value>{{backend-secret}}</value></set-header>
    <authentication-basic username="gateway" password="{{basic-password}}" />
    <emit-metric name="Calls" namespace="shop" value="1">
      <dimension name="API ID" />
      <dimension name="Client" value="@(context.Request.Headers.GetValueOrDefault(&quot;X-Client&quot;, &quot;none&quot;))" />
    </emit-metric>
    <trace source="observability-test" severity="information"><message>traced</message></trace>
  </inbound>
  <backend><base /></backend>
  <outbound><base /></outbound>
  <on-error><base /></on-error>
</policies>"#;

const CACHED_POLICY: &str = r#"<policies>
  <inbound><base /><cache-lookup vary-by-developer="false" vary-by-developer-groups="false" /></inbound>
  <backend><base /></backend>
  <outbound><base /><cache-store duration="60" /></outbound>
  <on-error><base /></on-error>
</policies>"#;

fn write(root: &std::path::Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn config(otlp: std::net::SocketAddr) -> TempDir {
    let dir = TempDir::new("config");
    let root = dir.path();
    copy_tree(&bins::repo_root().join("examples/quickstart"), root).unwrap();
    write(root, "apis/echo/policy.xml", ECHO_POLICY);
    write(
        root,
        "apis/cached/api.toml",
        "name = \"Cached\"\npath = \"cached\"\nbackend-url = \"{{echo-backend-url}}/api\"\nsubscription-required = false\n",
    );
    write(root, "apis/cached/policy.xml", CACHED_POLICY);
    write(
        root,
        "named-values.toml",
        &format!(
            "[[named-value]]\nname = \"backend-secret\"\nvalue = \"{SECRET_VALUE}\"\nsecret = true\n\n\
             [[named-value]]\nname = \"basic-password\"\nvalue = \"{BASIC_PASSWORD}\"\nsecret = true\n"
        ),
    );
    let mut gateway_toml = std::fs::read_to_string(root.join("gateway.toml")).unwrap();
    gateway_toml.push_str(&format!(
        "\n[access-log]\ndestination = \"file\"\npath = \"logs/access.log\"\n\
         \n[tracing]\nendpoint = \"http://{otlp}/v1/traces\"\nsampling-ratio = 1.0\n"
    ));
    write(root, "gateway.toml", &gateway_toml);
    dir
}

/// The mix; returns the statuses in order.
fn send_mix(gateway: &Gateway) -> Vec<u16> {
    let mut client = Connection::open(gateway.addr).unwrap();
    let keyed = |extra: (&'static str, &'static str)| [("Ocp-Apim-Subscription-Key", KEY), extra];
    let mut statuses = Vec::new();
    statuses.push(client.get("/echo/one", &keyed(("X-Client", "web"))).unwrap().status);
    statuses.push(
        client
            .get(&format!("/echo/two?subscription-key={KEY}"), &[("Authorization", &format!("Bearer {JWT}"))])
            .unwrap()
            .status,
    );
    statuses.push(client.get("/echo/fail?echo-status=500", &keyed(("X-Client", "web"))).unwrap().status);
    statuses.push(client.get("/echo/limited", &keyed(("X-Client", "web"))).unwrap().status);
    statuses.push(client.get("/echo/bad-key", &[("Ocp-Apim-Subscription-Key", "not-a-valid-key")]).unwrap().status);
    statuses.push(client.get("/nowhere", &[]).unwrap().status);
    statuses.push(client.get("/cached/item", &[]).unwrap().status);
    statuses.push(client.get("/cached/item", &[]).unwrap().status);
    statuses
}

#[test]
fn one_known_mix_is_told_the_same_everywhere_and_leaks_no_secret() {
    let (otlp_addr, exports) = otlp::receiver();
    let config = config(otlp_addr);
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    assert_eq!(send_mix(&gateway), [200, 200, 500, 429, 401, 404, 200, 200]);

    // The access log: one record per request, in order.
    let log_path = gateway.data().join("logs/access.log");
    eventually_within(SETTLED_WITHIN, "eight access-log records", || {
        std::fs::read_to_string(&log_path).unwrap_or_default().lines().count() == 8
    });
    let log = std::fs::read_to_string(&log_path).unwrap();
    let records: Vec<Value> = log.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let codes: Vec<u64> = records.iter().map(|record| record["responseCode"].as_u64().unwrap()).collect();
    assert_eq!(codes, [200, 200, 500, 429, 401, 404, 200, 200]);
    assert_eq!(records[3]["lastError"]["reason"], "RateLimitExceeded", "{}", records[3]);
    assert_eq!((records[6]["cache"].as_str(), records[7]["cache"].as_str()), (Some("miss"), Some("hit")));
    assert_eq!(records[0]["traces"][0]["message"], "traced");

    // The metrics, parsed by a Prometheus text parser.
    let ops = gateway.ops_addr();
    let scrape = || {
        let page = portcullis_tests::http::get(ops, "/metrics", &[]).unwrap().text();
        let lines = page.lines().map(|line| Ok(line.to_owned()));
        (page.clone(), prometheus_parse::Scrape::parse(lines).unwrap())
    };
    let sum = |scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|sample| sample.metric == name)
            .filter(|sample| labels.iter().all(|(key, value)| sample.labels.get(key) == Some(*value)))
            .map(|sample| match sample.value {
                prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Gauge(value) => value,
                prometheus_parse::Value::Untyped(value) => value,
                _ => 0.0,
            })
            .sum()
    };
    eventually_within(SETTLED_WITHIN, "the metrics count the mix", || {
        let (_, page) = scrape();
        sum(&page, "portcullis_requests_total", &[]) == 8.0
    });
    let (metrics_text, page) = scrape();
    let requests = |labels: &[(&str, &str)]| sum(&page, "portcullis_requests_total", labels);
    assert_eq!(requests(&[("api", "echo"), ("status_class", "2xx")]), 2.0);
    assert_eq!(requests(&[("api", "echo"), ("status_class", "5xx")]), 1.0);
    assert_eq!(requests(&[("api", "echo"), ("status_class", "4xx")]), 2.0, "the 429 and the 401");
    assert_eq!(requests(&[("api", ""), ("status_class", "4xx")]), 1.0, "the 404");
    assert_eq!(requests(&[("api", "cached"), ("cache", "hit")]), 1.0);
    assert_eq!(requests(&[("api", "cached"), ("cache", "miss")]), 1.0);
    assert_eq!(sum(&page, "portcullis_limit_rejections_total", &[("api", "echo")]), 1.0, "{metrics_text}");
    let custom: f64 = page
        .samples
        .iter()
        .filter(|sample| sample.metric.starts_with("shop_calls") && !sample.metric.contains("events"))
        .filter(|sample| sample.labels.get("client") == Some("web") && sample.labels.get("api_id") == Some("echo"))
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Untyped(value) => value,
            _ => 0.0,
        })
        .sum();
    assert!(custom >= 2.0, "emit-metric counted the web client's calls: {metrics_text}");

    // The reports.
    let api = Management::of(&gateway);
    let since = time_range();
    let mut by_api = Value::Null;
    eventually_within(SETTLED_WITHIN, "byApi counts the mix", || {
        by_api = api.get(&format!("/reports/byApi?$filter={since}")).json();
        let total: u64 =
            by_api["value"].as_array().unwrap().iter().map(|row| row["callCountTotal"].as_u64().unwrap()).sum();
        total == 7
    });
    let row = |id: &str| by_api["value"].as_array().unwrap().iter().find(|row| row["apiId"] == id).cloned().unwrap();
    let echo = row("/apis/echo");
    assert_eq!(
        (&echo["callCountSuccess"], &echo["callCountFailed"], &echo["callCountBlocked"]),
        (&Value::from(2), &Value::from(1), &Value::from(2)),
        "{echo}"
    );
    let cached = row("/apis/cached");
    assert_eq!((&cached["cacheHitCount"], &cached["cacheMissCount"]), (&Value::from(1), &Value::from(1)), "{cached}");
    let mut by_request = Value::Null;
    eventually_within(SETTLED_WITHIN, "byRequest lists the mix", || {
        by_request = api.get(&format!("/reports/byRequest?$filter={since}")).json();
        by_request["count"] == 8
    });

    // The spans: a SERVER span per request, a CLIENT span per backend call (the two 200s, the
    // 500 and the cache miss).
    let mut spans = Vec::new();
    let mut raw_spans = Vec::new();
    let deadline = std::time::Instant::now() + SETTLED_WITHIN;
    let kind = |spans: &[opentelemetry_proto::tonic::trace::v1::Span], kind: SpanKind| {
        spans.iter().filter(|span| span.kind == kind as i32).count()
    };
    while kind(&spans, SpanKind::Server) < 8 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let export = exports.recv_timeout(left).unwrap_or_else(|_| panic!("8 SERVER spans; got {spans:#?}"));
        raw_spans.extend(export.raw);
        spans.extend(export.spans);
    }
    assert_eq!(kind(&spans, SpanKind::Server), 8, "a SERVER span per request");
    assert_eq!(kind(&spans, SpanKind::Client), 4, "a CLIENT span per backend call");
    let trace_ids: std::collections::BTreeSet<String> =
        records.iter().map(|record| record["traceId"].as_str().unwrap().to_owned()).collect();
    for span in &spans {
        let id: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
        assert!(trace_ids.contains(&id), "span of trace {id} is in the access log");
    }

    // No secret anywhere.
    let status = String::from_utf8(gateway.ctl(&["status", "--json"]).stdout).unwrap();
    let top = String::from_utf8(gateway.ctl(&["top", "--json"]).stdout).unwrap();
    let places = [
        ("access log", log.clone()),
        ("metrics", metrics_text),
        ("byRequest", by_request.to_string()),
        ("spans", String::from_utf8_lossy(&raw_spans).into_owned()),
        ("gateway log", gateway.log()),
        ("ctl status", status),
        ("ctl top", top),
    ];
    for secret in [KEY, JWT, SECRET_VALUE, BASIC_PASSWORD] {
        for (place, text) in &places {
            assert!(!text.contains(secret), "{secret:?} leaked into the {place}");
        }
    }
}

/// `timestamp ge … and timestamp le …` around now, URL-encoded.
fn time_range() -> String {
    let now = chrono::Utc::now();
    let iso = |time: chrono::DateTime<chrono::Utc>| time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (from, to) = (now - chrono::Duration::minutes(10), now + chrono::Duration::minutes(10));
    format!("timestamp%20ge%20'{}'%20and%20timestamp%20le%20'{}'", iso(from), iso(to))
}
