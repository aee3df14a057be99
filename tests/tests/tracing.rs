//! Traces end to end: a real `portcullis up` exports spans over OTLP/HTTP (protobuf) to a receiver
//! on loopback that decodes them with prost, and the echo backend shows the `traceparent` the
//! gateway propagated (docs/observability.md "Traces").
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use portcullis_tests::http;
use portcullis_tests::otlp::{Export, receiver};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

/// Longer than the exporter's batch interval (1 s) with room for a slow machine.
const SPAN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a test waits to be sure nothing is exported.
const QUIET: Duration = Duration::from_millis(2500);
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

portcullis_tests::on_both_io_backends!(
    sampled_requests_export_server_and_client_spans,
    unsampled_traces_propagate_only,
    a_collector_that_is_down_costs_spans_not_requests
);

/// The quickstart configuration exporting to `endpoint` at `ratio`.
fn config(receiver: SocketAddr, ratio: &str) -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    let gateway_toml = dir.path().join("gateway.toml");
    let mut text = std::fs::read_to_string(&gateway_toml).unwrap();
    text.push_str(&format!(
        "\n[tracing]\nendpoint = \"http://{receiver}/v1/traces\"\nsampling-ratio = {ratio}\nservice-name = \"gw-under-test\"\n"
    ));
    std::fs::write(&gateway_toml, text).unwrap();
    // A policy reads the traceparent: it sees the value the backend gets.
    let policy_path = dir.path().join("apis/echo/policy.xml");
    let policy = std::fs::read_to_string(&policy_path).unwrap().replacen(
        "  </inbound>",
        "    <set-header name=\"X-Seen-Traceparent\" exists-action=\"override\">\n\
         <value>@(context.Request.Headers.GetValueOrDefault(\"traceparent\", \"none\"))</value>\n\
         </set-header>\n  </inbound>",
        1,
    );
    std::fs::write(&policy_path, policy).unwrap();
    dir
}

/// Spans of `trace_id` (hex) that arrive within [`SPAN_TIMEOUT`], until `count` of them came.
fn spans_of(exports: &mpsc::Receiver<Export>, trace_id: &str, count: usize) -> Vec<Span> {
    let deadline = Instant::now() + SPAN_TIMEOUT;
    let mut found = Vec::new();
    while found.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let export = exports.recv_timeout(left).unwrap_or_else(|_| panic!("spans of {trace_id}: got {found:?}"));
        assert_eq!(export.content_type, "application/x-protobuf");
        assert_eq!(export.service_name, "gw-under-test");
        found.extend(export.spans.into_iter().filter(|span| hex(&span.trace_id) == trace_id));
    }
    found
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.clone()
}

fn string(value: &str) -> Option<Value> {
    Some(Value::StringValue(value.to_owned()))
}

/// The `traceparent` the echo backend received, split into its four fields.
fn backend_traceparent(response: &http::Response) -> Vec<String> {
    let echoed = response.json();
    let values = echoed["headers"]["traceparent"].as_array().expect("the backend got a traceparent").clone();
    assert_eq!(values.len(), 1, "exactly one traceparent: {values:?}");
    assert_eq!(echoed["headers"]["x-seen-traceparent"][0], values[0], "policies read what the backend gets");
    values[0].as_str().unwrap().split('-').map(str::to_owned).collect()
}

fn sampled_requests_export_server_and_client_spans(io: &str) {
    let (receiver_addr, exports) = receiver();
    let config = config(receiver_addr, "1.0");
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");

    // A new trace: the backend's parent is the gateway's CLIENT span, child of its SERVER span.
    let ok = http::get(gateway.addr, "/echo/hello?x=1", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let sent = backend_traceparent(&ok);
    assert_eq!((sent[0].as_str(), sent[3].as_str()), ("00", "01"), "{sent:?}");
    assert_eq!((sent[1].len(), sent[2].len()), (32, 16));
    let spans = spans_of(&exports, &sent[1], 2);
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).expect("a SERVER span");
    let client = spans.iter().find(|s| s.kind == SpanKind::Client as i32).expect("a CLIENT span");
    assert!(server.parent_span_id.is_empty(), "a new trace's root");
    assert_eq!(hex(&client.span_id), sent[2], "the backend's parent is the CLIENT span");
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(server.name, "GET echo");
    assert_eq!(attribute(server, "http.request.method"), string("GET"));
    assert_eq!(attribute(server, "url.path"), string("/echo/hello"));
    assert_eq!(attribute(server, "apim.api.id"), string("echo"));
    assert!(attribute(server, "apim.operation.id").is_some());
    assert_eq!(attribute(server, "http.response.status_code"), Some(Value::IntValue(200)));
    assert!(server.start_time_unix_nano <= client.start_time_unix_nano);
    assert!(client.end_time_unix_nano <= server.end_time_unix_nano);
    assert!(server.end_time_unix_nano > server.start_time_unix_nano);
    assert!(server.status.as_ref().is_none_or(|status| status.code != 2), "a 200 is no error");

    // A client's trace continues: same trace id, its span the SERVER span's parent, tracestate kept.
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let continued = http::get(
        gateway.addr,
        "/echo/continued",
        &[("Ocp-Apim-Subscription-Key", &key), ("traceparent", &parent), ("tracestate", "vendor=opaque")],
    )
    .unwrap();
    assert_eq!(continued.status, 200);
    let sent = backend_traceparent(&continued);
    assert_eq!(sent[1], CLIENT_TRACE);
    assert_ne!(sent[2], CLIENT_SPAN, "the backend's parent is the gateway's span");
    assert_eq!(continued.json()["headers"]["tracestate"][0], "vendor=opaque");
    let spans = spans_of(&exports, CLIENT_TRACE, 2);
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).unwrap();
    let client = spans.iter().find(|s| s.kind == SpanKind::Client as i32).unwrap();
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(hex(&client.span_id), sent[2]);
    assert_eq!(server.trace_state, "vendor=opaque");

    // No backend call (a 401): a SERVER span alone. An invalid traceparent is a new trace.
    let invalid = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let missing = http::get(gateway.addr, "/echo/hello", &[("traceparent", invalid)]).unwrap();
    assert_eq!(missing.status, 401);
    let deadline = Instant::now() + SPAN_TIMEOUT;
    let rejected = loop {
        let export = exports.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the 401's span");
        if let Some(span) =
            export.spans.into_iter().find(|s| attribute(s, "http.response.status_code") == Some(Value::IntValue(401)))
        {
            break span;
        }
    };
    assert_ne!(hex(&rejected.trace_id), CLIENT_TRACE.to_owned(), "an invalid traceparent is ignored");
    assert!(rejected.parent_span_id.is_empty());
    std::thread::sleep(QUIET);
    while let Ok(export) = exports.try_recv() {
        assert!(
            export.spans.iter().all(|s| s.trace_id != rejected.trace_id),
            "no CLIENT span without a backend call: {:?}",
            export.spans
        );
    }
}

fn unsampled_traces_propagate_only(io: &str) {
    let (receiver_addr, exports) = receiver();
    let config = config(receiver_addr, "0.0");
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");

    // The client's flags 00 are obeyed; ratio 0.0 samples no new trace: nothing is exported, but
    // the trace id reaches the backend.
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let response =
        http::get(gateway.addr, "/echo/quiet", &[("Ocp-Apim-Subscription-Key", &key), ("traceparent", &parent)])
            .unwrap();
    assert_eq!(response.status, 200);
    let sent = backend_traceparent(&response);
    assert_eq!((sent[1].as_str(), sent[3].as_str()), (CLIENT_TRACE, "00"));
    assert_ne!(sent[2], CLIENT_SPAN);
    let fresh = http::get(gateway.addr, "/echo/fresh", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
    assert_eq!(backend_traceparent(&fresh)[3], "00", "ratio 0.0 samples no new trace");
    std::thread::sleep(QUIET);
    assert!(exports.try_recv().is_err(), "nothing is exported");

    // A client that sampled its trace is obeyed even at ratio 0.0 (and proves the exporter runs).
    let sampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let response =
        http::get(gateway.addr, "/echo/sampled", &[("Ocp-Apim-Subscription-Key", &key), ("traceparent", &sampled)])
            .unwrap();
    assert_eq!(backend_traceparent(&response)[3], "01");
    let spans = spans_of(&exports, CLIENT_TRACE, 2);
    assert!(spans.iter().any(|s| s.kind == SpanKind::Server as i32 && hex(&s.parent_span_id) == CLIENT_SPAN));
}

/// A counter's value on the ops listener's `/metrics` page (0 when absent).
fn counter(gateway: &Gateway, name: &str) -> f64 {
    let ops: SocketAddr = gateway.ops_url.trim_start_matches("http://").parse().unwrap();
    let page = http::get(ops, "/metrics", &[]).unwrap().text();
    page.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

fn a_collector_that_is_down_costs_spans_not_requests(io: &str) {
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = config(closed, "1.0");
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    for n in 0..5 {
        let response = http::get(gateway.addr, &format!("/echo/{n}"), &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
        assert_eq!(response.status, 200, "requests go on while the collector is down");
    }
    // The exporter's batch (1 s) fails, then the telemetry batch (1 s) carries the counts.
    let deadline = Instant::now() + SPAN_TIMEOUT;
    loop {
        let (failed, dropped) = (
            counter(&gateway, "portcullis_span_exports_failed_total"),
            counter(&gateway, "portcullis_spans_dropped_total"),
        );
        if failed >= 1.0 && dropped >= 5.0 {
            break;
        }
        assert!(Instant::now() < deadline, "failed exports {failed}, dropped spans {dropped}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
