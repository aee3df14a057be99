//! Telemetry: what the data plane tells control about the requests it served, and the settings
//! of the access log, the metrics, the traces and the analytics (`gateway.toml`).
//!
//! Workers count each request into worker-local aggregates (no lock, no shared write); once a
//! second the data plane's telemetry thread merges them into one [`Batch`] with the entities
//! named, and sends it to control on the snapshot channel as a sealed memfd
//! ([`crate::channel::ToControl::Telemetry`]). Control folds it into the Prometheus metrics and
//! the analytics rollups, commits, and acknowledges it
//! ([`crate::channel::ToDataPlane::TelemetryAck`]); the data plane keeps a batch until then (a
//! bounded number of them) and sends the unacknowledged ones again after a reconnect, so a
//! restart of control loses nothing already aggregated.

use serde::{Deserialize, Serialize};

/// How often workers hand their aggregates over and the telemetry thread sends a batch.
pub const BATCH_INTERVAL_MS: u64 = 1000;
/// Unacknowledged batches the data plane keeps for control (10 minutes of them); older ones are
/// dropped and counted when control stays away longer.
pub const UNACKED_BATCHES_MAX: usize = 600;
/// Recent request records a batch carries at most (for `/reports/byRequest` and `ctl top`).
pub const BATCH_REQUESTS_MAX: usize = 1000;

/// One interval of the data plane's telemetry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Numbered from 1 by each data-plane process; with `data_plane_pid` it identifies the batch,
    /// so control can tell a batch sent again from a new one.
    pub sequence: u64,
    pub data_plane_pid: u32,
    /// The interval the aggregates cover, `[start, end)`, in Unix milliseconds.
    pub start_unix_ms: u64,
    pub end_unix_ms: u64,
    /// Requests by entity, status and outcome.
    pub series: Vec<Series>,
    /// Latency distributions per API and operation.
    pub latencies: Vec<Latencies>,
    /// `emit-metric` values.
    pub custom: Vec<CustomMetric>,
    /// The most recent requests of the interval, at most [`BATCH_REQUESTS_MAX`].
    pub requests: Vec<RequestRecord>,
    /// Access-log records dropped in this interval because the writer could not keep up.
    pub log_records_dropped: u64,
    /// Spans dropped in this interval: the span queue was full, tracing was off when the batch
    /// left, or their export failed.
    pub spans_dropped: u64,
    /// OTLP span exports that failed in this interval (collector unreachable or answering an error).
    pub span_exports_failed: u64,
}

/// What a series counts requests by. Empty strings: the request got no such entity (a 404 has no
/// API, an API without subscription required has no subscription).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    pub api_id: String,
    /// The revision that served (1 for an API without revisions); 0 with no API.
    pub api_revision: u32,
    pub operation_id: String,
    pub product_id: String,
    /// The subscription's id (its name in the store), never its key.
    pub subscription_id: String,
    pub user_id: String,
    /// The status the client got.
    pub status: u16,
    /// The backend's status (0: the backend was not called or did not answer).
    pub backend_status: u16,
    pub cache: CacheResult,
    /// `context.LastError.Source` and `.Reason` when the request went through on-error (empty
    /// otherwise): `rate-limit` / `RateLimitExceeded`, `validate-jwt` / `TokenExpired` ...
    pub error_source: String,
    pub error_reason: String,
}

/// The sums of one series over one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesValues {
    pub count: u64,
    /// Bytes received from the client and sent to it (heads and bodies).
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Time from the request's head read to its last response byte, in microseconds.
    pub total_us_sum: u64,
    pub total_us_min: u64,
    pub total_us_max: u64,
    /// Of `count`, the requests that reached the backend, and their time in it
    /// (`backend_us_min` is `u64::MAX` while `backend_count` is 0).
    pub backend_count: u64,
    pub backend_us_sum: u64,
    pub backend_us_min: u64,
    pub backend_us_max: u64,
}

impl SeriesValues {
    /// The values of one request.
    pub fn one(request_bytes: u64, response_bytes: u64, total_us: u64, backend_us: Option<u64>) -> Self {
        let backend = backend_us.unwrap_or(0);
        SeriesValues {
            count: 1,
            request_bytes,
            response_bytes,
            total_us_sum: total_us,
            total_us_min: total_us,
            total_us_max: total_us,
            backend_count: u64::from(backend_us.is_some()),
            backend_us_sum: backend,
            backend_us_min: backend_us.unwrap_or(u64::MAX),
            backend_us_max: backend,
        }
    }

    /// Adds `other` into `self` (counts and sums add, minima and maxima combine).
    pub fn merge(&mut self, other: &SeriesValues) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.count += other.count;
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
        self.total_us_sum += other.total_us_sum;
        self.total_us_min = self.total_us_min.min(other.total_us_min);
        self.total_us_max = self.total_us_max.max(other.total_us_max);
        self.backend_count += other.backend_count;
        self.backend_us_sum += other.backend_us_sum;
        self.backend_us_min = self.backend_us_min.min(other.backend_us_min);
        self.backend_us_max = self.backend_us_max.max(other.backend_us_max);
    }
}

/// One series of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub key: SeriesKey,
    pub values: SeriesValues,
}

/// Whether the response came from the response cache. APIM's `cache` field: `none` when no
/// `cache-lookup` ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheResult {
    #[default]
    None,
    Hit,
    Miss,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::None => "none",
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
        }
    }
}

/// The latency distributions of one operation over one interval, as HdrHistogram V2 encodings
/// (microseconds, 3 significant figures): `total` from head read to last response byte, `backend`
/// of the requests that reached the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latencies {
    pub api_id: String,
    pub operation_id: String,
    pub total: Vec<u8>,
    pub backend: Vec<u8>,
}

/// The sum of the values one `emit-metric` emitted with one set of dimension values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomMetric {
    pub namespace: String,
    pub name: String,
    /// Dimension names and values, in the order the policy lists them.
    pub dimensions: Vec<(String, String)>,
    pub count: u64,
    pub sum: f64,
}

/// One request, as the access log writes it (one JSON object per line) and
/// `/reports/byRequest` lists it. Field names follow APIM's gateway log
/// (`ApiManagementGatewayLogs`), camelCase; every field is always present (`lastError` null,
/// `traceId` empty, `traces` empty when there are none), so postcard can carry it too.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// RFC 3339 with milliseconds, UTC: when the head was read.
    pub time_generated: String,
    /// `context.RequestId` (a GUID).
    pub correlation_id: String,
    pub method: String,
    /// Path and query as received, with the subscription-key query parameter's value replaced by
    /// `***`.
    pub url: String,
    pub client_protocol: String,
    /// `TLSv1.3`, `TLSv1.2`, or empty over plain TCP.
    pub client_tls_version: String,
    pub caller_ip_address: String,
    pub api_id: String,
    pub api_revision: u32,
    pub operation_id: String,
    pub product_id: String,
    pub user_id: String,
    /// The subscription's id, never its key.
    pub apim_subscription_id: String,
    pub backend_id: String,
    pub response_code: u16,
    /// 0: the backend was not called or did not answer.
    pub backend_response_code: u16,
    pub backend_method: String,
    /// The backend URL the request went to, without its query.
    pub backend_url: String,
    pub request_size: u64,
    pub response_size: u64,
    pub cache: CacheResult,
    /// Milliseconds from head read to last response byte; `backend_time` the part spent waiting
    /// for and reading the backend.
    pub total_time: f64,
    pub backend_time: f64,
    pub is_request_success: bool,
    pub last_error: Option<LastErrorRecord>,
    /// W3C trace id (32 hex digits) of the request's trace.
    pub trace_id: String,
    /// The `trace` policies' entries of this request.
    pub traces: Vec<TraceEntry>,
}

/// `context.LastError` of a request that went through on-error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastErrorRecord {
    pub source: String,
    pub reason: String,
    pub message: String,
    pub section: String,
    pub scope: String,
    /// Milliseconds from head read to the error.
    pub elapsed: u64,
}

/// One `trace` policy entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceEntry {
    pub source: String,
    pub severity: String,
    pub message: String,
    pub metadata: Vec<(String, String)>,
}

/// APIM's status buckets (reports' `callCount*`, the log's `httpStatusCodeCategory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallBucket {
    /// 1xx, 2xx, 301, 304, 307 (APIM: "status ≤ 301, 304, 307").
    Success,
    /// 401, 403, 429.
    Blocked,
    /// 400 and 5xx.
    Failed,
    /// The rest (other 3xx, other 4xx).
    Other,
}

impl CallBucket {
    pub fn of(status: u16) -> CallBucket {
        match status {
            0..=301 | 304 | 307 => CallBucket::Success,
            401 | 403 | 429 => CallBucket::Blocked,
            400 | 500..=599 => CallBucket::Failed,
            _ => CallBucket::Other,
        }
    }
}

/// `gateway.toml`'s observability tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservabilitySettings {
    /// `[access-log]`.
    pub access_log: AccessLogSettings,
    /// `[metrics]`.
    pub metrics: MetricsSettings,
    /// `[tracing]`; `None`: no spans are exported (trace context is still propagated).
    pub tracing: Option<TracingSettings>,
    /// `[analytics]`.
    pub analytics: AnalyticsSettings,
}

/// Where access-log records go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessLogDestination {
    #[default]
    Off,
    Stdout,
    /// A file (a relative path is taken from the data directory), opened for appending and
    /// reopened on `ctl logs reopen` or SIGUSR1.
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLogSettings {
    pub destination: AccessLogDestination,
    /// Records each worker's queue to the writer holds; past it records are dropped and counted.
    pub queue_records: u32,
}

/// Records per worker queue: the telemetry thread empties the queues every 100 ms, so this holds
/// a busy worker's (40,000 requests a second) with room to spare.
pub const ACCESS_LOG_QUEUE_RECORDS_DEFAULT: u32 = 4 * 1024;

impl Default for AccessLogSettings {
    fn default() -> Self {
        AccessLogSettings { destination: AccessLogDestination::Off, queue_records: ACCESS_LOG_QUEUE_RECORDS_DEFAULT }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSettings {
    /// Label requests by subscription and user as well (off by default, as Kong's
    /// `per_consumer`): their number grows with the customers.
    pub per_subscription: bool,
    /// Series per metric family past which new label sets are counted under `other`.
    pub series_max: u32,
}

/// Series per family: enough for 1,000 operations × a few statuses, small enough for any scraper.
pub const METRICS_SERIES_MAX_DEFAULT: u32 = 10_000;

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings { per_subscription: false, series_max: METRICS_SERIES_MAX_DEFAULT }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TracingSettings {
    /// OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// Share of new traces sampled, 0.0 to 1.0; a client's `traceparent` sampled flag is obeyed.
    pub sampling_ratio: f64,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsSettings {
    /// Days the rollups are kept (APIM's portal reports cover 90).
    pub retention_days: u32,
    /// Age in days past which per-minute rollups are folded into hourly ones.
    pub hourly_after_days: u32,
}

pub const ANALYTICS_RETENTION_DAYS_DEFAULT: u32 = 90;
pub const ANALYTICS_HOURLY_AFTER_DAYS_DEFAULT: u32 = 7;

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            retention_days: ANALYTICS_RETENTION_DAYS_DEFAULT,
            hourly_after_days: ANALYTICS_HOURLY_AFTER_DAYS_DEFAULT,
        }
    }
}

/// Latencies are recorded in microseconds from 1 µs to 10 minutes, to 3 significant figures.
pub const LATENCY_US_MAX: u64 = 600_000_000;
pub const LATENCY_SIGNIFICANT_FIGURES: u8 = 3;

/// An empty latency histogram with the bounds every side uses.
#[allow(clippy::expect_used, reason = "constant bounds; a_histogram_round_trips makes one")]
pub fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_FIGURES)
        .expect("constant bounds are valid")
}

/// A histogram as [`Latencies`] carries it (HdrHistogram's V2 encoding, uncompressed); empty
/// (which decodes to `None`) if the histogram cannot be encoded.
pub fn encode_histogram(histogram: &hdrhistogram::Histogram<u64>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut serializer = hdrhistogram::serialization::V2Serializer::new();
    if hdrhistogram::serialization::Serializer::serialize(&mut serializer, histogram, &mut bytes).is_err() {
        bytes.clear();
    }
    bytes
}

/// The histogram [`encode_histogram`] wrote; `None` when the bytes are not one.
pub fn decode_histogram(bytes: &[u8]) -> Option<hdrhistogram::Histogram<u64>> {
    hdrhistogram::serialization::Deserializer::new().deserialize(&mut std::io::Cursor::new(bytes)).ok()
}

/// A batch memfd larger than this is refused (a batch is kilobytes to a few megabytes).
pub const BATCH_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Why a received batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("telemetry batch memfd: {0}")]
    Io(#[from] std::io::Error),
    #[error("telemetry batch memfd is not sealed")]
    Unsealed,
    #[error("telemetry batch of {0} bytes is over {BATCH_BYTES_MAX}")]
    TooLarge(u64),
    #[error("telemetry batch does not decode: {0}")]
    Decode(#[from] postcard::Error),
}

/// Reads and decodes a batch from its sealed memfd.
pub fn read_batch_memfd(fd: impl std::os::fd::AsFd) -> Result<Batch, BatchError> {
    use std::os::unix::fs::FileExt as _;
    let seals = rustix::fs::fcntl_get_seals(&fd).map_err(std::io::Error::from)?;
    if !seals.contains(crate::snapshot::REQUIRED_SEALS) {
        return Err(BatchError::Unsealed);
    }
    let len = rustix::fs::fstat(&fd).map_err(std::io::Error::from)?.st_size as u64;
    if len > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge(len));
    }
    let file = std::fs::File::from(fd.as_fd().try_clone_to_owned()?);
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(decode_batch(&bytes)?)
}

/// Encodes a batch for its memfd.
pub fn encode_batch(batch: &Batch) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(batch)
}

/// Decodes a batch read from its memfd.
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apim_status_buckets() {
        for (status, bucket) in [
            (200, CallBucket::Success),
            (301, CallBucket::Success),
            (302, CallBucket::Other),
            (304, CallBucket::Success),
            (307, CallBucket::Success),
            (400, CallBucket::Failed),
            (401, CallBucket::Blocked),
            (403, CallBucket::Blocked),
            (404, CallBucket::Other),
            (429, CallBucket::Blocked),
            (500, CallBucket::Failed),
            (503, CallBucket::Failed),
        ] {
            assert_eq!(CallBucket::of(status), bucket, "{status}");
        }
    }

    #[test]
    fn merged_values_keep_sums_minima_and_maxima() {
        let mut values = SeriesValues::one(10, 100, 500, None);
        values.merge(&SeriesValues::one(20, 200, 300, Some(250)));
        values.merge(&SeriesValues::one(30, 300, 900, Some(800)));
        assert_eq!(values.count, 3);
        assert_eq!((values.request_bytes, values.response_bytes), (60, 600));
        assert_eq!((values.total_us_sum, values.total_us_min, values.total_us_max), (1700, 300, 900));
        assert_eq!(values.backend_count, 2);
        assert_eq!((values.backend_us_sum, values.backend_us_min, values.backend_us_max), (1050, 250, 800));
    }

    #[test]
    fn a_batch_round_trips() {
        let batch = Batch {
            sequence: 7,
            data_plane_pid: 42,
            series: vec![Series {
                key: SeriesKey { api_id: "echo".into(), status: 200, ..SeriesKey::default() },
                values: SeriesValues::one(1, 2, 3, Some(1)),
            }],
            requests: vec![RequestRecord { correlation_id: "x".into(), ..RequestRecord::default() }],
            ..Batch::default()
        };
        assert_eq!(decode_batch(&encode_batch(&batch).unwrap()).unwrap(), batch);
    }

    #[test]
    fn a_batch_travels_in_a_sealed_memfd() {
        let batch = Batch { sequence: 3, log_records_dropped: 2, ..Batch::default() };
        let fd = crate::snapshot::sealed_memfd("test", &encode_batch(&batch).unwrap()).unwrap();
        assert_eq!(read_batch_memfd(&fd).unwrap(), batch);
    }

    #[test]
    fn a_histogram_round_trips() {
        let mut histogram = latency_histogram();
        for us in [120, 450, 450, 9_000, 1_200_000] {
            histogram.record(us).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&histogram)).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.value_at_quantile(0.5), histogram.value_at_quantile(0.5));
        assert!(decode_histogram(b"not a histogram").is_none());
    }
}
