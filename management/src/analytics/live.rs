//! The live window behind `portcullis ctl top`: the last [`LIVE_BATCHES_MAX`] batches summed per
//! API, in memory (a restart of control starts it empty).

use std::collections::{BTreeMap, VecDeque};

use portcullis_contract::telemetry::{Batch, CacheResult, CallBucket, decode_histogram};
use serde::{Deserialize, Serialize};

/// Batches the window keeps: a minute of them.
pub const LIVE_BATCHES_MAX: usize = 60;
/// APIs one batch keeps apart; the rest of a batch counts under [`OTHER_APIS`].
pub const LIVE_APIS_MAX: usize = 256;
/// The name the APIs past [`LIVE_APIS_MAX`] share.
pub const OTHER_APIS: &str = "(other)";
/// What `ctl top` samples when not told: the last 10 seconds.
pub const TOP_WINDOW_MS_DEFAULT: i64 = 10_000;
/// The longest window a sample covers: the whole live window.
pub const TOP_WINDOW_MS_MAX: i64 = LIVE_BATCHES_MAX as i64 * 1_000;
/// Latency values one API of one batch keeps (HdrHistogram's recorded buckets, at most a few
/// thousand for a busy API).
const LATENCY_VALUES_MAX: usize = 4_096;

/// The window.
#[derive(Debug, Default)]
pub struct Live {
    batches: VecDeque<Slice>,
}

/// One batch, per API.
#[derive(Debug)]
struct Slice {
    start_ms: i64,
    end_ms: i64,
    apis: BTreeMap<String, ApiSlice>,
}

#[derive(Debug, Default)]
struct ApiSlice {
    count: u64,
    failed: u64,
    cache_hit: u64,
    cache_miss: u64,
    /// (value in µs, count) of the batch's total-time histograms, merged over operations.
    latencies: Vec<(u64, u64)>,
}

/// One sample: a line per API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopSample {
    /// When the sample was taken, Unix ms, and the window it covers.
    pub at_ms: i64,
    pub window_ms: i64,
    /// Busiest first.
    pub apis: Vec<ApiSample>,
}

/// One API over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiSample {
    /// The API's id; empty for requests that matched no API.
    pub api_id: String,
    pub requests: u64,
    pub rps: f64,
    /// Share of requests in APIM's failed bucket (400 and 5xx).
    pub error_rate: f64,
    /// Total time percentiles, ms; `None` without latency data.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Hits over cache lookups; `None` when no request looked in the cache.
    pub cache_hit_ratio: Option<f64>,
}

impl Live {
    /// Adds a committed batch, dropping the oldest past [`LIVE_BATCHES_MAX`].
    pub fn push(&mut self, batch: &Batch) {
        let mut apis: BTreeMap<String, ApiSlice> = BTreeMap::new();
        for series in &batch.series {
            let api = slot(&apis, &series.key.api_id);
            let slice = apis.entry(api).or_default();
            let count = series.values.count;
            slice.count += count;
            if CallBucket::of(series.key.status) == CallBucket::Failed {
                slice.failed += count;
            }
            match series.key.cache {
                CacheResult::Hit => slice.cache_hit += count,
                CacheResult::Miss => slice.cache_miss += count,
                CacheResult::None => {}
            }
        }
        for latencies in &batch.latencies {
            let Some(histogram) = decode_histogram(&latencies.total) else { continue };
            let api = slot(&apis, &latencies.api_id);
            let slice = apis.entry(api).or_default();
            for value in histogram.iter_recorded().take(LATENCY_VALUES_MAX.saturating_sub(slice.latencies.len())) {
                slice.latencies.push((value.value_iterated_to(), value.count_at_value()));
            }
        }
        self.batches.push_back(Slice {
            start_ms: super::sql_int(batch.start_unix_ms),
            end_ms: super::sql_int(batch.end_unix_ms),
            apis,
        });
        while self.batches.len() > LIVE_BATCHES_MAX {
            self.batches.pop_front();
        }
    }

    /// The APIs over the batches that ended within `window_ms` before `now_ms`.
    pub fn sample(&self, now_ms: i64, window_ms: i64) -> TopSample {
        let window_ms = window_ms.clamp(1_000, TOP_WINDOW_MS_MAX);
        let recent: Vec<&Slice> = self.batches.iter().filter(|slice| slice.end_ms > now_ms - window_ms).collect();
        // The time the batches cover (at least a second, the batch interval).
        let covered_ms = match (recent.first(), recent.last()) {
            (Some(first), Some(last)) => (last.end_ms - first.start_ms).max(1_000),
            _ => window_ms,
        };
        let mut totals: BTreeMap<&str, (ApiSlice, hdrhistogram::Histogram<u64>)> = BTreeMap::new();
        for slice in &recent {
            for (api, part) in &slice.apis {
                let (sum, histogram) = totals.entry(api).or_insert_with(|| (ApiSlice::default(), sample_histogram()));
                sum.count += part.count;
                sum.failed += part.failed;
                sum.cache_hit += part.cache_hit;
                sum.cache_miss += part.cache_miss;
                for (value, count) in &part.latencies {
                    let _ = histogram.record_n((*value).max(1), *count);
                }
            }
        }
        let mut apis: Vec<ApiSample> =
            totals.into_iter().map(|(api, (sum, histogram))| api_sample(api, &sum, &histogram, covered_ms)).collect();
        apis.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.api_id.cmp(&b.api_id)));
        TopSample { at_ms: now_ms, window_ms, apis }
    }
}

/// The API's own slot, or [`OTHER_APIS`] once a batch has [`LIVE_APIS_MAX`] of them.
fn slot(apis: &BTreeMap<String, ApiSlice>, api: &str) -> String {
    if apis.contains_key(api) || apis.len() < LIVE_APIS_MAX { api.to_owned() } else { OTHER_APIS.to_owned() }
}

/// A histogram for summing samples: 2 significant figures are plenty for a terminal (and ten
/// times smaller than the batches' 3).
#[allow(clippy::expect_used, reason = "constant bounds, made in every sample test")]
fn sample_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, portcullis_contract::telemetry::LATENCY_US_MAX, 2)
        .expect("constant bounds are valid")
}

fn api_sample(api: &str, sum: &ApiSlice, histogram: &hdrhistogram::Histogram<u64>, covered_ms: i64) -> ApiSample {
    let ratio = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
    let quantile = |q: f64| (!histogram.is_empty()).then(|| histogram.value_at_quantile(q) as f64 / 1_000.0);
    ApiSample {
        api_id: api.to_owned(),
        requests: sum.count,
        rps: sum.count as f64 * 1_000.0 / covered_ms as f64,
        error_rate: ratio(sum.failed, sum.count).unwrap_or(0.0),
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        cache_hit_ratio: ratio(sum.cache_hit, sum.cache_hit + sum.cache_miss),
    }
}
