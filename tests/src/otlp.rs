//! A real OTLP/HTTP trace receiver on loopback: each POST body decoded with prost (the
//! `opentelemetry-proto` messages) and handed to the test, with its raw bytes (for scans).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

/// One export as the receiver saw it.
#[derive(Debug)]
pub struct Export {
    pub content_type: String,
    pub service_name: String,
    pub spans: Vec<Span>,
    /// The request body as it came.
    pub raw: Vec<u8>,
}

/// An OTLP/HTTP receiver on loopback: each POST body decoded and handed to the test.
pub fn receiver() -> (SocketAddr, mpsc::Receiver<Export>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
    let addr = listener.local_addr().expect("its address");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let Some(export) = read_export(stream) else { continue };
            if tx.send(export).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

fn read_export(mut stream: TcpStream) -> Option<Export> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("post /v1/traces http/1.1\r\n"), "{head}");
    let header = |name: &str| {
        head.lines().find_map(|line| line.strip_prefix(name).map(|value| value.trim().to_owned())).unwrap_or_default()
    };
    let length: usize = header("content-length:").parse().expect("content-length");
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = ExportTraceServiceRequest::decode(&buf[head_end..head_end + length]).expect("an OTLP trace request");
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").ok()?;
    let resource = request.resource_spans.first().expect("one resource");
    let service_name = resource
        .resource
        .as_ref()
        .and_then(|resource| resource.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref()?.value.clone())
        .map(|value| match value {
            Value::StringValue(name) => name,
            other => format!("{other:?}"),
        })
        .unwrap_or_default();
    let spans = request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| s.spans.clone()).collect();
    let raw = buf[head_end..head_end + length].to_vec();
    Some(Export { content_type: header("content-type:"), service_name, spans, raw })
}
