//! The span exporter thread: batches finished spans (every [`BATCH_INTERVAL_MS`] or
//! [`BATCH_SPANS`]) into an OTLP `ExportTraceServiceRequest` and POSTs it as protobuf to the
//! `[tracing]` endpoint over a small blocking HTTP/1.1 client (`http://` only). A failed export
//! is dropped and counted, never retried: tracing must not hold memory for a collector that is
//! down.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};
use portcullis_contract::telemetry::TracingSettings;
use prost::Message as _;

use super::{SPANS_DROPPED, SpanRecord};
use crate::snapshot::SnapshotCell;

/// A batch is sent at least this often while spans arrive.
pub const BATCH_INTERVAL_MS: u64 = 1000;
/// A batch this large is sent at once.
pub const BATCH_SPANS: usize = 512;
/// Connect, write and read timeout of one export.
pub const EXPORT_TIMEOUT_MS: u64 = 2000;
/// Exports that failed (their spans dropped).
pub static EXPORTS_FAILED: AtomicU64 = AtomicU64::new(0);
/// The instrumentation scope spans are reported under.
const SCOPE_NAME: &str = "portcullis";

/// Errors of one export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("endpoint {0:?} is not an http:// URL")]
    Endpoint(String),
    #[error("collector unreachable: {0}")]
    Io(#[from] std::io::Error),
    #[error("collector answered {0}")]
    Status(String),
}

/// Starts the exporter thread and opens the workers' queue to it (once per process).
pub fn spawn(cell: Arc<SnapshotCell>) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let Some(receiver) = super::open_queue() else {
        return Ok(None);
    };
    std::thread::Builder::new().name("span-export".into()).spawn(move || run(&cell, &receiver)).map(Some)
}

fn run(cell: &SnapshotCell, receiver: &Receiver<SpanRecord>) {
    let mut batch = Vec::with_capacity(BATCH_SPANS);
    loop {
        let deadline = Instant::now() + Duration::from_millis(BATCH_INTERVAL_MS);
        while batch.len() < BATCH_SPANS {
            match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(record) => batch.push(record),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let settings = cell.load().and_then(|snapshot| snapshot.config.observability.tracing.clone());
        let Some(settings) = settings else {
            SPANS_DROPPED.fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.clear();
            continue;
        };
        let body = encode(&settings, &batch).encode_to_vec();
        if let Err(error) = post(&settings.endpoint, &body) {
            EXPORTS_FAILED.fetch_add(1, Ordering::Relaxed);
            SPANS_DROPPED.fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(%error, spans = batch.len(), failed = EXPORTS_FAILED.load(Ordering::Relaxed), "span export dropped");
        }
        batch.clear();
    }
}

/// The OTLP request for `records`: one resource (`service.name`), one scope, a SERVER span per
/// request and a CLIENT child per backend exchange.
pub fn encode(settings: &TracingSettings, records: &[SpanRecord]) -> ExportTraceServiceRequest {
    let spans = records.iter().flat_map(spans_of).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string("service.name", &settings.service_name)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A request's SERVER span and, when the backend was called, its CLIENT child.
fn spans_of(record: &SpanRecord) -> Vec<Span> {
    let api = record.api_id.as_deref().unwrap_or("unmatched");
    let mut attributes = vec![
        string("http.request.method", &record.method),
        string("url.path", &record.path),
        int("http.response.status_code", i64::from(record.status)),
    ];
    for (key, value) in [
        ("apim.api.id", &record.api_id),
        ("apim.operation.id", &record.operation_id),
        ("apim.product.id", &record.product_id),
    ] {
        if let Some(value) = value {
            attributes.push(string(key, value));
        }
    }
    let start = record.started_unix_nanos;
    let server = Span {
        trace_id: record.trace_id.to_vec(),
        span_id: record.span_id.to_vec(),
        trace_state: record.tracestate.clone().unwrap_or_default(),
        parent_span_id: record.parent_span_id.map(|id| id.to_vec()).unwrap_or_default(),
        name: format!("{} {api}", record.method),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + record.duration_nanos,
        attributes,
        status: (record.status >= 500)
            .then(|| Status { code: StatusCode::Error as i32, message: format!("HTTP {}", record.status) }),
        ..Default::default()
    };
    let mut spans = vec![server];
    if let Some((offset, duration)) = record.exchange {
        spans.push(Span {
            trace_id: record.trace_id.to_vec(),
            span_id: record.exchange_span_id.to_vec(),
            trace_state: record.tracestate.clone().unwrap_or_default(),
            parent_span_id: record.span_id.to_vec(),
            name: format!("{} backend", record.method),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: start + offset,
            end_time_unix_nano: start + offset + duration,
            attributes: vec![string("http.request.method", &record.method)],
            ..Default::default()
        });
    }
    spans
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..Default::default()
    }
}

/// POSTs `body` to `endpoint` (`http://host[:port]/path`) and waits for a 2xx status line.
pub fn post(endpoint: &str, body: &[u8]) -> Result<(), ExportError> {
    let rest = endpoint.strip_prefix("http://").ok_or_else(|| ExportError::Endpoint(endpoint.into()))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |slash| (&rest[..slash], &rest[slash..]));
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let timeout = Duration::from_millis(EXPORT_TIMEOUT_MS);
    let address = with_port.to_socket_addrs()?.next().ok_or_else(|| ExportError::Endpoint(endpoint.into()))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-protobuf\r\n\
Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut response[read..])? {
            0 => break,
            n => read += n,
        }
    }
    let status_line = String::from_utf8_lossy(&response[..read]);
    match status_line.get(9..10) {
        Some("2") if status_line.starts_with("HTTP/1.") => Ok(()),
        _ => Err(ExportError::Status(status_line.lines().next().unwrap_or_default().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn record(exchange: Option<(u64, u64)>, status: u16) -> SpanRecord {
        SpanRecord {
            trace_id: [7; 16],
            parent_span_id: Some([1; 8]),
            span_id: [2; 8],
            exchange_span_id: [3; 8],
            tracestate: Some("vendor=1".into()),
            started_unix_nanos: 1_000,
            duration_nanos: 500,
            exchange,
            method: "GET".into(),
            path: "/echo/x".into(),
            status,
            api_id: Some("echo".into()),
            operation_id: Some("all".into()),
            product_id: None,
        }
    }

    fn settings() -> TracingSettings {
        TracingSettings { endpoint: String::new(), sampling_ratio: 1.0, service_name: "gw".into() }
    }

    #[test]
    fn a_request_is_a_server_span_and_its_backend_call_a_client_child() {
        let request = encode(&settings(), &[record(Some((100, 200)), 200), record(None, 503)]);
        let decoded = ExportTraceServiceRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 3, "two SERVER spans, one CLIENT span");
        let (server, client) = (&spans[0], &spans[1]);
        assert_eq!((server.kind, client.kind), (SpanKind::Server as i32, SpanKind::Client as i32));
        assert_eq!(server.name, "GET echo");
        assert_eq!((server.parent_span_id.as_slice(), client.parent_span_id.as_slice()), (&[1; 8][..], &[2; 8][..]));
        assert_eq!(client.span_id, vec![3; 8]);
        assert_eq!((client.start_time_unix_nano, client.end_time_unix_nano), (1_100, 1_300));
        assert_eq!(server.end_time_unix_nano, 1_500);
        assert!(server.status.is_none());
        assert_eq!(spans[2].status.as_ref().map(|status| status.code), Some(StatusCode::Error as i32));
        assert!(server.attributes.iter().all(|kv| kv.key != "apim.product.id"), "unknown: left out");
    }

    #[test]
    fn post_waits_for_a_2xx() {
        for (answer, ok) in [("HTTP/1.1 200 OK\r\n\r\n", true), ("HTTP/1.1 503 Busy\r\n\r\n", false)] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
            let server = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = vec![0u8; 4096];
                let mut read = 0;
                while !request[..read].ends_with(b"body") {
                    read += stream.read(&mut request[read..]).unwrap();
                }
                stream.write_all(answer.as_bytes()).unwrap();
                String::from_utf8_lossy(&request[..read]).into_owned()
            });
            assert_eq!(post(&endpoint, b"body").is_ok(), ok);
            let request = server.join().unwrap();
            assert!(request.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{request}");
            assert!(request.contains("Content-Type: application/x-protobuf\r\nContent-Length: 4\r\n"), "{request}");
        }
        assert!(matches!(post("https://collector/v1/traces", b""), Err(ExportError::Endpoint(_))));
    }
}
