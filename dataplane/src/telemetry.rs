//! What the data plane tells about the requests it served: per-interval aggregates for control
//! (the Prometheus metrics and APIM's analytics are made from them) and the access log.
//!
//! ```text
//!  worker (done phase) ── counts into its own maps (no lock, no shared write)
//!        │  once a second: the maps, by index, try-pushed into the hand-over queue
//!        │  per request: a RawRecord try-pushed into its own bounded record queue
//!        ▼                       (full: dropped, counted in the worker's stats slot)
//!  telemetry thread ── names entities from the snapshot of each generation, writes the access
//!        │              log (JSON lines), builds one Batch a second
//!        ▼
//!  outbox ── the channel thread sends each batch to control (sealed memfd) and keeps it until
//!            control acknowledges it; unacknowledged ones go again after a reconnect
//! ```
//!
//! Workers only ever touch their own maps and `try_push` into bounded lock-free queues
//! (crossbeam's `ArrayQueue`): a telemetry thread that cannot keep up costs dropped log records,
//! never a delayed request, and never a count (a hand-over that finds the queue full keeps the
//! counts and hands them over merged a second later).

pub mod access_log;
pub(crate) mod names;
pub mod outbox;
pub mod thread;
pub(crate) mod worker;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_queue::ArrayQueue;
use portcullis_contract::telemetry::{CacheResult, SeriesValues};

/// Worker hand-overs the queue holds: a few seconds of every worker's, so a busy telemetry thread
/// makes workers keep (and merge) their counts rather than lose them.
pub const HANDOVERS_QUEUED_MAX: usize = 64;

/// "No such entity" in an index field.
pub const NONE: u32 = u32::MAX;

/// The queues between the workers and the telemetry thread.
#[derive(Debug)]
pub struct Queues {
    /// One record queue per worker (single producer: its worker).
    pub records: Vec<ArrayQueue<RawRecord>>,
    /// Every worker's once-a-second counts.
    pub handovers: ArrayQueue<Handover>,
}

impl Queues {
    /// Queues for `workers` workers, each holding `records_per_worker` records.
    pub fn new(workers: usize, records_per_worker: usize) -> Arc<Self> {
        Arc::new(Queues {
            records: (0..workers).map(|_| ArrayQueue::new(records_per_worker.max(1))).collect(),
            handovers: ArrayQueue::new(HANDOVERS_QUEUED_MAX),
        })
    }
}

/// What one series counts requests by, as indexes into the snapshot of `generation`
/// ([`NONE`]: no such entity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesIx {
    pub generation: u64,
    /// Index into `Config::apis` (the revision that served).
    pub api: u32,
    /// Index into that API's operations.
    pub operation: u32,
    pub product: u32,
    pub subscription: u32,
    pub status: u16,
    pub backend_status: u16,
    pub cache: CacheResult,
}

/// A series as a worker hands it over: its indexes and `LastError`'s source and reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandedSeries {
    pub ix: SeriesIx,
    pub error: Option<(String, String)>,
}

/// One `emit-metric` series of a hand-over, named (the worker resolved the program's constants).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandedCustom {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

/// One worker's counts since its previous hand-over.
#[derive(Debug, Default)]
pub struct Handover {
    pub series: Vec<(HandedSeries, SeriesValues)>,
    /// Total and backend time histograms (µs) per (generation, API, operation).
    pub latencies: Vec<((u64, u32, u32), Latency)>,
    pub custom: Vec<(HandedCustom, (u64, f64))>,
}

/// The two latency histograms of one operation.
#[derive(Debug, Clone)]
pub struct Latency {
    pub total: hdrhistogram::Histogram<u64>,
    pub backend: hdrhistogram::Histogram<u64>,
}

impl Latency {
    pub fn new() -> Self {
        let histogram = portcullis_contract::telemetry::latency_histogram();
        Latency { total: histogram.clone(), backend: histogram }
    }

    /// Adds `other`'s counts (same bounds: nothing can fail).
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.total.add(&other.total);
        let _ = self.backend.add(&other.backend);
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

/// One request as the worker saw it: indexes, numbers and the few strings only the worker has
/// (its URL, already redacted). The telemetry thread names the rest into a `RequestRecord`.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub started: SystemTime,
    pub request_id: u128,
    pub ix: SeriesIx,
    pub method: String,
    /// Path and query, the subscription-key query parameter's value replaced by `***`.
    pub url: String,
    pub client_ip: IpAddr,
    pub tls: bool,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub total_us: u64,
    pub backend_us: Option<u64>,
    pub last_error: Option<Box<portcullis_contract::telemetry::LastErrorRecord>>,
    pub traces: Vec<portcullis_contract::telemetry::TraceEntry>,
    /// W3C trace id, or zero when the request has none.
    pub trace_id: u128,
}
