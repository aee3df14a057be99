use portcullis_contract::telemetry::{
    Batch, CacheResult, Latencies, RequestRecord, Series, SeriesKey, SeriesValues, encode_histogram, latency_histogram,
};

use super::*;

/// 2026-12-07T10:00:00Z.
pub(crate) const T0: i64 = 1_796_637_600_000;

pub(crate) fn key(api: &str, operation: &str, status: u16, cache: CacheResult) -> SeriesKey {
    SeriesKey {
        api_id: api.into(),
        api_revision: 1,
        operation_id: operation.into(),
        product_id: "starter".into(),
        subscription_id: "sub1".into(),
        user_id: "1".into(),
        status,
        cache,
        ..SeriesKey::default()
    }
}

pub(crate) fn histogram(values_us: &[u64]) -> Vec<u8> {
    let mut histogram = latency_histogram();
    for value in values_us {
        histogram.record(*value).unwrap();
    }
    encode_histogram(&histogram)
}

/// A batch of pid 7 at `start_ms`: echo/get 200s (one a cache hit), a 429, a 500, a 404 without API.
pub(crate) fn batch(sequence: u64, start_ms: i64) -> Batch {
    let start = start_ms as u64;
    Batch {
        sequence,
        data_plane_pid: 7,
        start_unix_ms: start,
        end_unix_ms: start + 1_000,
        series: vec![
            Series {
                key: key("echo", "get", 200, CacheResult::Miss),
                values: {
                    let mut values = SeriesValues::one(100, 1_000, 2_000, Some(1_500));
                    values.merge(&SeriesValues::one(100, 1_000, 4_000, Some(3_000)));
                    values
                },
            },
            Series { key: key("echo", "get", 200, CacheResult::Hit), values: SeriesValues::one(100, 1_000, 500, None) },
            Series { key: key("echo", "get", 429, CacheResult::None), values: SeriesValues::one(50, 200, 300, None) },
            Series {
                key: key("echo", "post", 500, CacheResult::None),
                values: SeriesValues::one(10, 20, 9_000, Some(8_000)),
            },
            Series {
                key: SeriesKey { status: 404, ..SeriesKey::default() },
                values: SeriesValues::one(10, 20, 100, None),
            },
        ],
        latencies: vec![Latencies {
            api_id: "echo".into(),
            operation_id: "get".into(),
            total: histogram(&[2_000, 4_000, 500, 300]),
            backend: histogram(&[1_500, 3_000]),
        }],
        requests: vec![RequestRecord {
            time_generated: chrono::DateTime::from_timestamp_millis(start_ms + 250)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            correlation_id: format!("req-{sequence}"),
            method: "GET".into(),
            url: "/echo?subscription-key=***".into(),
            api_id: "echo".into(),
            operation_id: "get".into(),
            product_id: "starter".into(),
            user_id: "1".into(),
            apim_subscription_id: "sub1".into(),
            response_code: 200,
            backend_response_code: 200,
            total_time: 2.0,
            backend_time: 1.5,
            ..RequestRecord::default()
        }],
        ..Batch::default()
    }
}

fn all_time() -> ReportQuery {
    ReportQuery { from_ms: 0, to_ms: i64::MAX, ..ReportQuery::default() }
}

fn by(analytics: &Analytics, dimension: Dimension) -> Vec<ReportRow> {
    let mut rows = analytics.report(dimension, &all_time()).unwrap();
    rows.sort_by(|a, b| (&a.api_id, &a.operation_id).cmp(&(&b.api_id, &b.operation_id)));
    rows
}

#[test]
fn a_batch_rolls_up_by_api_with_apims_buckets() {
    let mut analytics = Analytics::in_memory().unwrap();
    assert_eq!(analytics.record(&batch(1, T0)).unwrap(), Recorded::Committed);
    let rows = by(&analytics, Dimension::Api);
    assert_eq!(rows.len(), 1, "the 404 without an API is in no API's row: {rows:?}");
    let echo = rows[0].metrics;
    assert_eq!(rows[0].api_id, "echo");
    assert_eq!(
        (echo.call_count_success, echo.call_count_blocked, echo.call_count_failed, echo.call_count_other),
        (3, 1, 1, 0)
    );
    assert_eq!(echo.call_count_total, 5);
    assert_eq!(echo.bandwidth, 2 * 1_100 + 1_100 + 250 + 30);
    assert_eq!((echo.cache_hit_count, echo.cache_miss_count), (1, 2));
    assert_eq!((echo.api_time_count, echo.api_time_sum_us), (5, 2_000 + 4_000 + 500 + 300 + 9_000));
    assert_eq!((echo.api_time_min_us, echo.api_time_max_us), (Some(300), Some(9_000)));
    assert_eq!((echo.service_time_count, echo.service_time_sum_us), (3, 1_500 + 3_000 + 8_000));
    assert_eq!((echo.service_time_min_us, echo.service_time_max_us), (Some(1_500), Some(8_000)));
    let operations = by(&analytics, Dimension::Operation);
    assert_eq!(
        operations.iter().map(|r| (r.operation_id.as_str(), r.metrics.call_count_total)).collect::<Vec<_>>(),
        [("get", 4), ("post", 1)]
    );
    let time = analytics.report(Dimension::Time { interval_ms: 15 * MINUTE_MS }, &all_time()).unwrap();
    assert_eq!(time.len(), 1);
    assert_eq!((time[0].interval_start_ms, time[0].metrics.call_count_total), (Some(T0), 6), "byTime counts the 404");
}

#[test]
fn batches_of_one_minute_add_and_other_minutes_get_their_own_bucket() {
    let mut analytics = Analytics::in_memory().unwrap();
    analytics.record(&batch(1, T0)).unwrap();
    analytics.record(&batch(2, T0 + 30_000)).unwrap();
    analytics.record(&batch(3, T0 + 61_000)).unwrap();
    let minutes = analytics.report(Dimension::Time { interval_ms: MINUTE_MS }, &all_time()).unwrap();
    let mut counts: Vec<(i64, u64)> =
        minutes.iter().map(|r| (r.interval_start_ms.unwrap() - T0, r.metrics.call_count_total)).collect();
    counts.sort();
    assert_eq!(counts, [(0, 12), (MINUTE_MS, 6)]);
    let narrowed = ReportQuery { from_ms: T0 + MINUTE_MS, to_ms: T0 + 2 * MINUTE_MS, ..all_time() };
    let rows = analytics.report(Dimension::Api, &narrowed).unwrap();
    assert_eq!(rows[0].metrics.call_count_total, 5, "the time range selects buckets");
    let filtered = ReportQuery { operation_id: Some("post".into()), ..all_time() };
    assert_eq!(analytics.report(Dimension::Api, &filtered).unwrap()[0].metrics.call_count_total, 3);
}

#[test]
fn a_batch_sent_again_is_not_counted_twice() {
    let mut analytics = Analytics::in_memory().unwrap();
    analytics.record(&batch(1, T0)).unwrap();
    analytics.record(&batch(2, T0 + 1_000)).unwrap();
    assert_eq!(analytics.record(&batch(2, T0 + 1_000)).unwrap(), Recorded::AlreadyRecorded);
    assert_eq!(analytics.record(&batch(1, T0)).unwrap(), Recorded::AlreadyRecorded);
    assert_eq!(by(&analytics, Dimension::Api)[0].metrics.call_count_total, 10);
    assert_eq!(analytics.requests(&all_time(), 100, 0).unwrap().1, 2);
    // Another process with the same pid starts at 1 again, later: a new batch.
    assert_eq!(analytics.record(&batch(1, T0 + 5_000)).unwrap(), Recorded::Committed);
    assert_eq!(by(&analytics, Dimension::Api)[0].metrics.call_count_total, 15);
}

#[test]
fn percentiles_come_from_the_merged_histograms() {
    let mut analytics = Analytics::in_memory().unwrap();
    analytics.record(&batch(1, T0)).unwrap();
    analytics.record(&batch(2, T0 + 1_000)).unwrap();
    let percentiles = analytics.percentiles(Some("echo"), None, 0, i64::MAX).unwrap().unwrap();
    assert!((495..=505).contains(&percentiles.api_p50_us), "{percentiles:?}");
    assert!((3_990..=4_010).contains(&percentiles.api_p99_us), "{percentiles:?}");
    assert!(percentiles.service.is_some());
    assert_eq!(analytics.percentiles(Some("orders"), None, 0, i64::MAX).unwrap(), None);
}

#[test]
fn compaction_folds_old_minutes_into_hours_and_keeps_the_sums() {
    let mut analytics = Analytics::in_memory().unwrap();
    for (sequence, minute) in [(1, 0), (2, 1), (3, 59), (4, 60)] {
        analytics.record(&batch(sequence, T0 + minute * MINUTE_MS)).unwrap();
    }
    let settings = AnalyticsSettings { retention_days: 90, hourly_after_days: 1 };
    let now = T0 + DAY_MS + 2 * HOUR_MS;
    let before = analytics.report(Dimension::Api, &all_time()).unwrap();
    let done = analytics.compact(now, &settings).unwrap();
    assert_eq!(done.minutes_folded, 4 * 3, "three entity rows per minute");
    let after = analytics.report(Dimension::Api, &all_time()).unwrap();
    assert_eq!(after, before, "folding changes no sum, minimum or maximum");
    let hours = analytics.report(Dimension::Time { interval_ms: HOUR_MS }, &all_time()).unwrap();
    let mut counts: Vec<(i64, u64)> =
        hours.iter().map(|r| (r.interval_start_ms.unwrap() - T0, r.metrics.call_count_total)).collect();
    counts.sort();
    assert_eq!(counts, [(0, 18), (HOUR_MS, 6)]);
    let percentiles = analytics.percentiles(Some("echo"), Some("get"), 0, i64::MAX).unwrap().unwrap();
    assert!((495..=505).contains(&percentiles.api_p50_us), "histograms fold too: {percentiles:?}");
    assert_eq!(analytics.compact(now, &settings).unwrap().minutes_folded, 0, "compaction is idempotent");
    assert_eq!(analytics.report(Dimension::Api, &all_time()).unwrap(), before);
}

#[test]
fn retention_deletes_rows_and_requests_older_than_it() {
    let mut analytics = Analytics::in_memory().unwrap();
    analytics.record(&batch(1, T0)).unwrap();
    analytics.record(&batch(2, T0 + 10 * DAY_MS)).unwrap();
    let settings = AnalyticsSettings { retention_days: 5, hourly_after_days: 2 };
    let done = analytics.compact(T0 + 12 * DAY_MS, &settings).unwrap();
    assert!(done.rows_expired > 0);
    assert_eq!(done.requests_deleted, 1);
    let time = analytics.report(Dimension::Time { interval_ms: DAY_MS }, &all_time()).unwrap();
    assert_eq!(time.len(), 1);
    assert_eq!(time[0].metrics.call_count_total, 6);
    assert_eq!(analytics.percentiles(None, None, 0, T0 + DAY_MS).unwrap(), None);
}

#[test]
fn request_records_are_filtered_and_paged() {
    let mut analytics = Analytics::in_memory().unwrap();
    for sequence in 1..=5 {
        analytics.record(&batch(sequence, T0 + sequence as i64 * 1_000)).unwrap();
    }
    let (page, count) = analytics.requests(&all_time(), 2, 1).unwrap();
    assert_eq!(count, 5);
    assert_eq!(page.iter().map(|r| r.correlation_id.as_str()).collect::<Vec<_>>(), ["req-2", "req-3"]);
    let other_user = ReportQuery { user_id: Some("2".into()), ..all_time() };
    assert_eq!(analytics.requests(&other_user, 10, 0).unwrap().1, 0);
}

#[test]
fn the_store_file_keeps_analytics_across_reopening() {
    let dir = std::env::temp_dir().join(format!("portcullis-analytics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("management.db");
    let _ = std::fs::remove_file(&file);
    let _store = crate::store::open(&file).unwrap();
    Analytics::open(&file).unwrap().record(&batch(1, T0)).unwrap();
    let mut reopened = Analytics::open(&file).unwrap();
    assert_eq!(by(&reopened, Dimension::Api)[0].metrics.call_count_total, 5);
    assert_eq!(reopened.record(&batch(1, T0)).unwrap(), Recorded::AlreadyRecorded, "the sequence is stored too");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_live_window_samples_per_api() {
    let mut analytics = Analytics::in_memory().unwrap();
    for sequence in 1..=5 {
        analytics.record(&batch(sequence, T0 + sequence as i64 * 1_000)).unwrap();
    }
    let sample = analytics.top(T0 + 6_000, 10_000);
    let echo = sample.apis.iter().find(|api| api.api_id == "echo").unwrap();
    assert_eq!(echo.requests, 25);
    assert!((echo.rps - 5.0).abs() < 0.01, "{echo:?}");
    assert!((echo.error_rate - 0.2).abs() < 1e-9);
    assert_eq!(echo.cache_hit_ratio, Some(1.0 / 3.0));
    assert!(echo.p50_ms.unwrap() > 0.4 && echo.p99_ms.unwrap() < 4.1, "{echo:?}");
    assert_eq!(sample.apis[0].api_id, "echo", "busiest first");
    assert!(analytics.top(T0 + 120_000, 10_000).apis.is_empty(), "old batches fall out of the window");
}

#[test]
fn a_busy_batch_recorded_into_the_store_file_rolls_up_every_operation() {
    // Its cost is measured by `cargo bench -p portcullis-benches --bench analytics`.
    let dir = std::env::temp_dir().join(format!("portcullis-analytics-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("management.db");
    let _ = std::fs::remove_file(&file);
    let shared = Analytics::open(&file).unwrap().shared();
    // 200 operations x 5 statuses, a histogram per operation, 1,000 request records.
    let mut busy = batch(1, T0);
    busy.series = (0..1_000)
        .map(|i| Series {
            key: key("api", &format!("op{}", i / 5), [200, 201, 404, 429, 500][i % 5], CacheResult::None),
            values: SeriesValues::one(100, 1_000, 2_000, Some(1_500)),
        })
        .collect();
    busy.latencies = (0..200)
        .map(|i| Latencies {
            api_id: "api".into(),
            operation_id: format!("op{i}"),
            total: histogram(&[2_000, 3_000]),
            backend: histogram(&[1_500]),
        })
        .collect();
    let one = busy.requests[0].clone();
    busy.requests = (0..1_000).map(|i| RequestRecord { correlation_id: format!("r{i}"), ..one.clone() }).collect();
    for sequence in 1..=5 {
        let next = Batch { sequence, start_unix_ms: (T0 + sequence as i64 * 1_000) as u64, ..busy.clone() };
        assert_eq!(record_batch(&shared, &next).unwrap(), Recorded::Committed);
    }
    let rows = shared.lock().unwrap().report(Dimension::Operation, &all_time()).unwrap();
    assert_eq!(rows.len(), 200);
    assert!(rows.iter().all(|row| row.metrics.call_count_total == 25));
    std::fs::remove_dir_all(&dir).unwrap();
}
