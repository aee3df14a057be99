//! Distributed tracing: the W3C trace context a request carries ([`context`]), the span a sampled
//! request leaves ([`SpanRecord`]), the bounded queue from the workers to the exporter thread, and
//! that thread ([`export`]: OTLP/HTTP protobuf, docs/observability.md "Traces").
//!
//! A worker's cost per request: one header lookup, three ids from its own generator, and for a
//! sampled request two `Instant`s, one wall-clock read and a push onto the queue (full: dropped
//! and counted, never waited on).

pub mod context;
pub mod export;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use portcullis_contract::telemetry::TracingSettings;

use crate::http::Span;
use crate::http::request::RequestHead;

/// Spans the queue to the exporter holds; past it spans are dropped and counted.
pub const SPAN_QUEUE_SPANS: usize = 8 * 1024;

/// The workers' end of the queue, set once when the exporter thread starts.
static QUEUE: OnceLock<SyncSender<SpanRecord>> = OnceLock::new();
/// Spans dropped because the queue was full (or no exporter runs).
pub static SPANS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// One request's trace: the ids it goes by and, when sampled and exported, its timings.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    pub trace_id: [u8; 16],
    /// The client's span (`traceparent`'s parent id), if it sent a valid one.
    pub parent_span_id: Option<[u8; 8]>,
    /// The gateway's SERVER span.
    pub span_id: [u8; 8],
    /// The CLIENT span of the backend exchange: the parent id the backend gets.
    pub exchange_span_id: [u8; 8],
    /// The sampled flag propagated (the client's, else this gateway's decision).
    pub sampled: bool,
    /// The `traceparent` the backend gets (this trace, the CLIENT span as parent), formatted once:
    /// what the forwarded head carries and policies read.
    pub traceparent: [u8; context::TRACEPARENT_BYTES],
    /// The client's `tracestate` (forwarded unchanged with the other headers).
    pub tracestate: Option<Span>,
    /// Timings, when the request is sampled and an exporter is configured.
    pub timing: Option<Timing>,
}

/// When a recorded request ran.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub started: Instant,
    /// Wall clock at `started`, in nanoseconds since the Unix epoch (the one wall-clock read).
    pub started_unix_nanos: u64,
    /// The backend exchange: first send, then its final response head (or its failure).
    pub exchange: Option<(Instant, Option<Instant>)>,
}

impl RequestTrace {
    /// The trace of a request whose head is `head` in `buf`: continues a valid client
    /// `traceparent` (its sampled flag obeyed), else starts a trace sampled by ratio. With no
    /// `[tracing]`, the context is propagated only.
    pub fn begin(head: &RequestHead, buf: &[u8], settings: Option<&TracingSettings>) -> Self {
        let parent = head.header(buf, b"traceparent").and_then(context::parse);
        let sampled = match (parent, settings) {
            (Some(parent), _) => parent.sampled(),
            (None, Some(settings)) => context::random_unit() < settings.sampling_ratio,
            (None, None) => false,
        };
        let timing = (sampled && settings.is_some()).then(|| Timing {
            started: Instant::now(),
            started_unix_nanos: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
            exchange: None,
        });
        let tracestate = head
            .headers()
            .iter()
            .find(|header| header.name.of(buf).eq_ignore_ascii_case(b"tracestate"))
            .map(|header| header.value);
        let trace_id = parent.map_or_else(context::new_trace_id, |parent| parent.trace_id);
        let exchange_span_id = context::new_span_id();
        let flags = if sampled { context::FLAG_SAMPLED } else { 0 };
        RequestTrace {
            trace_id,
            parent_span_id: parent.map(|parent| parent.span_id),
            span_id: context::new_span_id(),
            exchange_span_id,
            sampled,
            traceparent: context::format(&trace_id, &exchange_span_id, flags),
            tracestate,
            timing,
        }
    }

    /// The trace id as 32 lowercase hex characters (the access log's `TraceId`).
    pub fn trace_id_hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        context::encode_hex(&self.trace_id, &mut out);
        out
    }

    /// The backend exchange began (the first send; a retry keeps the first start).
    pub fn exchange_started(&mut self) {
        if let Some(timing) = &mut self.timing {
            timing.exchange.get_or_insert((Instant::now(), None));
        }
    }

    /// The backend exchange ended (its final response head arrived, or it failed; after a
    /// retry, the last one's end counts).
    pub fn exchange_ended(&mut self) {
        if let Some((_, end)) = self.timing.as_mut().and_then(|timing| timing.exchange.as_mut()) {
            *end = Some(Instant::now());
        }
    }
}

/// A finished, sampled request: what the exporter turns into a SERVER span and, when the backend
/// was called, a CLIENT child.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub parent_span_id: Option<[u8; 8]>,
    pub span_id: [u8; 8],
    pub exchange_span_id: [u8; 8],
    pub tracestate: Option<String>,
    pub started_unix_nanos: u64,
    pub duration_nanos: u64,
    /// The exchange's start after the request's, and its duration, in nanoseconds.
    pub exchange: Option<(u64, u64)>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub api_id: Option<String>,
    pub operation_id: Option<String>,
    pub product_id: Option<String>,
}

/// What the done phase knows of a request, besides its trace.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub status: u16,
    pub api_id: Option<&'a str>,
    pub operation_id: Option<&'a str>,
    pub product_id: Option<&'a str>,
    pub tracestate: Option<&'a [u8]>,
}

impl SpanRecord {
    /// The record of a recorded request that just finished; `None` when it is not recorded.
    pub fn finish(trace: &RequestTrace, finished: &Finished<'_>) -> Option<Self> {
        let timing = trace.timing?;
        let now = Instant::now();
        let nanos = |from: Instant, to: Instant| to.saturating_duration_since(from).as_nanos() as u64;
        let exchange =
            timing.exchange.map(|(start, end)| (nanos(timing.started, start), nanos(start, end.unwrap_or(now))));
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        Some(SpanRecord {
            trace_id: trace.trace_id,
            parent_span_id: trace.parent_span_id,
            span_id: trace.span_id,
            exchange_span_id: trace.exchange_span_id,
            tracestate: finished.tracestate.map(text),
            started_unix_nanos: timing.started_unix_nanos,
            duration_nanos: nanos(timing.started, now),
            exchange,
            method: text(finished.method),
            path: text(finished.path),
            status: finished.status,
            api_id: finished.api_id.map(str::to_owned),
            operation_id: finished.operation_id.map(str::to_owned),
            product_id: finished.product_id.map(str::to_owned),
        })
    }
}

/// Hands a finished span to the exporter; never waits (a full queue drops it and counts it).
pub fn submit(record: SpanRecord) {
    let sent = match QUEUE.get() {
        Some(queue) => match queue.try_send(record) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        },
        None => false,
    };
    if !sent {
        SPANS_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Creates the queue (once per process): the exporter's end, or `None` if it exists already.
fn open_queue() -> Option<Receiver<SpanRecord>> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(SPAN_QUEUE_SPANS);
    QUEUE.set(sender).ok().map(|()| receiver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request;

    fn settings(ratio: f64) -> TracingSettings {
        TracingSettings {
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            sampling_ratio: ratio,
            service_name: "gw".into(),
        }
    }

    fn begin(buf: &[u8], settings: Option<&TracingSettings>) -> RequestTrace {
        RequestTrace::begin(&request::parse(buf).unwrap().unwrap(), buf, settings)
    }

    const SAMPLED: &[u8] =
        b"GET / HTTP/1.1\r\nHost: gw\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
tracestate: a=1\r\n\r\n";
    const UNSAMPLED: &[u8] =
        b"GET / HTTP/1.1\r\nHost: gw\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\n\r\n";
    const NONE: &[u8] = b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n";

    #[test]
    fn the_clients_flag_is_obeyed_and_new_traces_sampled_by_ratio() {
        let continued = begin(SAMPLED, Some(&settings(0.0)));
        assert!(continued.sampled && continued.timing.is_some());
        assert_eq!(&continued.trace_id_hex(), b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(continued.parent_span_id, Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]));
        assert_eq!(continued.tracestate.map(|span| span.of(SAMPLED)), Some(&b"a=1"[..]));
        let traceparent = continued.traceparent;
        assert!(traceparent.starts_with(b"00-4bf92f3577b34da6a3ce929d0e0e4736-") && traceparent.ends_with(b"-01"));
        assert_ne!(&traceparent[36..52], b"00f067aa0ba902b7", "the backend's parent is the gateway's span");

        let unsampled = begin(UNSAMPLED, Some(&settings(1.0)));
        assert!(!unsampled.sampled && unsampled.timing.is_none());
        assert!(unsampled.traceparent.ends_with(b"-00"));

        assert!(begin(NONE, Some(&settings(1.0))).timing.is_some());
        let fresh = begin(NONE, Some(&settings(0.0)));
        assert!(!fresh.sampled && fresh.parent_span_id.is_none() && fresh.timing.is_none());
        // Propagate only: the client's flag passes on, nothing is recorded.
        let propagated = begin(SAMPLED, None);
        assert!(propagated.sampled && propagated.timing.is_none());
        assert!(!begin(NONE, None).sampled);
    }

    #[test]
    fn only_recorded_requests_leave_a_span() {
        let finished = Finished {
            method: b"GET",
            path: b"/",
            status: 200,
            api_id: None,
            operation_id: None,
            product_id: None,
            tracestate: None,
        };
        assert!(SpanRecord::finish(&begin(UNSAMPLED, Some(&settings(1.0))), &finished).is_none());
        let mut trace = begin(SAMPLED, Some(&settings(1.0)));
        trace.exchange_started();
        trace.exchange_ended();
        let record = SpanRecord::finish(&trace, &finished).unwrap();
        let (offset, duration) = record.exchange.unwrap();
        assert!(offset + duration <= record.duration_nanos);
    }
}
