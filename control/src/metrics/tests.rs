//! Batches folded in, the registry encoded, and the text read back by a Prometheus parser.

use std::collections::BTreeMap;

use portcullis_contract::telemetry::{
    Batch, CacheResult, CustomMetric, Latencies, MetricsSettings, Series, SeriesKey, SeriesValues, encode_histogram,
    latency_histogram,
};
use prometheus_parse::{Scrape, Value};

use super::*;

fn key(api: &str, status: u16) -> SeriesKey {
    SeriesKey {
        api_id: api.into(),
        api_revision: 1,
        operation_id: "get".into(),
        product_id: "starter".into(),
        subscription_id: "sub-1".into(),
        user_id: "alice".into(),
        status,
        ..SeriesKey::default()
    }
}

fn series(key: SeriesKey, count: u64, request_bytes: u64, response_bytes: u64) -> Series {
    let mut values = SeriesValues::default();
    for _ in 0..count {
        values.merge(&SeriesValues::one(request_bytes, response_bytes, 1_000, Some(500)));
    }
    Series { key, values }
}

fn batch(sequence: u64, series: Vec<Series>) -> Batch {
    Batch { sequence, data_plane_pid: 100, series, ..Batch::default() }
}

fn scrape(metrics: &Arc<Metrics>) -> Scrape {
    let text = encode(&registry(Arc::clone(metrics), None)).unwrap();
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .find(|sample| labels.iter().all(|(label, value)| sample.labels.get(label) == Some(*value)))
        .map(|sample| match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a scalar: {other:?}"),
        })
}

fn label_names(scrape: &Scrape, name: &str) -> Vec<Vec<String>> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .map(|sample| sample.labels.keys().cloned().collect::<std::collections::BTreeSet<_>>())
        .map(|names| names.into_iter().collect())
        .collect()
}

#[test]
fn requests_and_bandwidth_add_up_over_batches_and_repeats_are_skipped() {
    let metrics = Arc::new(Metrics::new(&MetricsSettings::default()));
    let hit = SeriesKey { cache: CacheResult::Hit, ..key("echo", 200) };
    metrics.record_batch(&batch(1, vec![series(key("echo", 200), 3, 10, 100), series(key("echo", 404), 1, 10, 50)]));
    metrics.record_batch(&batch(2, vec![series(key("echo", 201), 2, 10, 100), series(hit, 1, 5, 5)]));
    metrics.record_batch(&batch(2, vec![series(key("echo", 200), 50, 10, 100)]));
    let scrape = scrape(&metrics);
    let requests = |class: &str, cache: &str| {
        value(&scrape, "portcullis_requests_total", &[("api", "echo"), ("status_class", class), ("cache", cache)])
    };
    assert_eq!(requests("2xx", "none"), Some(5.0));
    assert_eq!(requests("4xx", "none"), Some(1.0));
    assert_eq!(requests("2xx", "hit"), Some(1.0));
    assert_eq!(
        value(&scrape, "portcullis_requests_total", &[("operation", "get"), ("product", "starter"), ("cache", "none")]),
        Some(5.0)
    );
    let bytes =
        |direction| value(&scrape, "portcullis_bandwidth_bytes_total", &[("api", "echo"), ("direction", direction)]);
    assert_eq!(bytes("ingress"), Some(65.0));
    assert_eq!(bytes("egress"), Some(555.0));
    assert_eq!(value(&scrape, "portcullis_telemetry_batches_total", &[("result", "recorded")]), Some(2.0));
    assert_eq!(value(&scrape, "portcullis_telemetry_batches_total", &[("result", "repeated")]), Some(1.0));
    // A new data plane numbers its batches from 1 again.
    metrics.record_batch(&Batch { data_plane_pid: 101, ..batch(1, vec![series(key("echo", 200), 1, 0, 0)]) });
    let scrape = self::scrape(&metrics);
    assert_eq!(value(&scrape, "portcullis_requests_total", &[("status_class", "2xx"), ("cache", "none")]), Some(6.0));
}

#[test]
fn subscription_and_user_labels_only_when_switched_on() {
    let metrics = Arc::new(Metrics::new(&MetricsSettings::default()));
    metrics.record_batch(&batch(1, vec![series(key("echo", 200), 1, 1, 1)]));
    let names = label_names(&scrape(&metrics), "portcullis_requests_total");
    assert_eq!(names, [["api", "cache", "operation", "product", "status_class"]]);

    let metrics = Arc::new(Metrics::new(&MetricsSettings { per_subscription: true, ..MetricsSettings::default() }));
    metrics.record_batch(&batch(1, vec![series(key("echo", 200), 1, 1, 1)]));
    let scrape = scrape(&metrics);
    assert_eq!(value(&scrape, "portcullis_requests_total", &[("subscription", "sub-1"), ("user", "alice")]), Some(1.0));
    assert_eq!(
        value(&scrape, "portcullis_bandwidth_bytes_total", &[("subscription", "sub-1"), ("direction", "egress")]),
        Some(1.0)
    );
}

#[test]
fn families_past_series_max_count_under_other() {
    let metrics = Arc::new(Metrics::new(&MetricsSettings { series_max: 2, ..MetricsSettings::default() }));
    let apis = ["a", "b", "c", "d"];
    metrics.record_batch(&batch(1, apis.iter().map(|api| series(key(api, 200), 1, 1, 1)).collect()));
    let scrape = scrape(&metrics);
    let requests: BTreeMap<String, f64> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == "portcullis_requests_total")
        .map(|sample| (sample.labels.get("api").unwrap_or_default().to_owned(), value_of(&sample.value)))
        .collect();
    assert_eq!(requests, BTreeMap::from([("a".into(), 1.0), ("b".into(), 1.0), ("other".into(), 2.0)]));
    let other = &[("api", "other"), ("operation", "other"), ("status_class", "other"), ("cache", "other")];
    assert_eq!(value(&scrape, "portcullis_requests_total", other), Some(2.0));
    let overflowed = [("family", "portcullis_requests_total")];
    assert_eq!(value(&scrape, "portcullis_metrics_series_overflowed_total", &overflowed), Some(2.0));
}

fn value_of(value: &Value) -> f64 {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("not a scalar: {other:?}"),
    }
}

#[test]
fn rejections_and_policy_errors_by_source_and_reason() {
    let metrics = Arc::new(Metrics::new(&MetricsSettings::default()));
    let error = |status, source: &str, reason: &str| SeriesKey {
        error_source: source.into(),
        error_reason: reason.into(),
        ..key("echo", status)
    };
    metrics.record_batch(&batch(
        1,
        vec![
            series(error(429, "rate-limit", "RateLimitExceeded"), 4, 1, 1),
            series(error(429, "rate-limit-by-key", "RateLimitExceeded"), 1, 1, 1),
            series(error(403, "quota", "QuotaExceeded"), 2, 1, 1),
            series(error(401, "validate-jwt", "TokenExpired"), 3, 1, 1),
            series(key("echo", 200), 9, 1, 1),
        ],
    ));
    let scrape = scrape(&metrics);
    let rejections =
        |policy| value(&scrape, "portcullis_limit_rejections_total", &[("api", "echo"), ("policy", policy)]);
    assert_eq!(rejections("rate-limit"), Some(4.0));
    assert_eq!(rejections("rate-limit-by-key"), Some(1.0));
    assert_eq!(rejections("quota"), Some(2.0));
    assert_eq!(rejections("validate-jwt"), None);
    let errors =
        |source, reason| value(&scrape, "portcullis_policy_errors_total", &[("source", source), ("reason", reason)]);
    assert_eq!(errors("validate-jwt", "TokenExpired"), Some(3.0));
    assert_eq!(errors("quota", "QuotaExceeded"), Some(2.0));
    let total: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "portcullis_policy_errors_total")
        .map(|s| value_of(&s.value))
        .sum();
    assert_eq!(total, 10.0);
}

#[test]
fn latency_histograms_have_apim_buckets_and_accumulate() {
    let metrics = Arc::new(Metrics::new(&MetricsSettings::default()));
    let (mut total, mut backend) = (latency_histogram(), latency_histogram());
    for us in [2_000, 7_000, 7_000, 300_000, 15_000_000] {
        total.record(us).unwrap();
    }
    backend.record(6_000).unwrap();
    let latencies = Latencies {
        api_id: "echo".into(),
        operation_id: "get".into(),
        total: encode_histogram(&total),
        backend: encode_histogram(&backend),
    };
    for sequence in [1, 2] {
        metrics.record_batch(&Batch { latencies: vec![latencies.clone()], ..batch(sequence, Vec::new()) });
    }
    let text = encode(&registry(Arc::clone(&metrics), None)).unwrap();
    let line = |sample: &str| {
        text.lines().find(|line| line.starts_with(sample)).map(|line| line.rsplit(' ').next().unwrap().to_owned())
    };
    let bucket = |le: &str| {
        line(&format!("portcullis_request_duration_seconds_bucket{{api=\"echo\",operation=\"get\",le=\"{le}\"}}"))
    };
    assert_eq!(bucket("0.005").as_deref(), Some("2"));
    assert_eq!(bucket("0.01").as_deref(), Some("6"));
    assert_eq!(bucket("0.25").as_deref(), Some("6"));
    assert_eq!(bucket("0.5").as_deref(), Some("8"));
    assert_eq!(bucket("10").as_deref(), Some("8"));
    assert_eq!(bucket("+Inf").as_deref(), Some("10"));
    assert_eq!(
        line("portcullis_request_duration_seconds_count{api=\"echo\",operation=\"get\"}").as_deref(),
        Some("10")
    );
    let sum: f64 = line("portcullis_request_duration_seconds_sum{").unwrap().parse().unwrap();
    assert!((sum - 2.0 * 15.316).abs() < 0.05, "{sum}");
    let backend_bucket = line("portcullis_backend_duration_seconds_bucket{api=\"echo\",operation=\"get\",le=\"0.01\"}");
    assert_eq!(backend_bucket.as_deref(), Some("2"));
    // The parser reads them as histograms too.
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap();
    let histogram = scrape.samples.iter().find(|s| s.metric == "portcullis_request_duration_seconds").unwrap();
    let Value::Histogram(buckets) = &histogram.value else { panic!("{histogram:?}") };
    assert_eq!(buckets.len(), BUCKET_BOUNDS_MS.len() + 1);
}

#[test]
fn emit_metric_values_become_families_of_their_own() {
    let metrics = Arc::new(Metrics::new(&MetricsSettings::default()));
    let custom = |value: f64, client: &str| CustomMetric {
        namespace: "API Management".into(),
        name: "Orders".into(),
        dimensions: vec![("Client Id".into(), client.into()), ("API ID".into(), "shop".into())],
        count: 2,
        sum: value,
    };
    metrics.record_batch(&Batch { custom: vec![custom(3.5, "c1"), custom(1.0, "c2")], ..batch(1, Vec::new()) });
    metrics.record_batch(&Batch { custom: vec![custom(0.5, "c1")], ..batch(2, Vec::new()) });
    let scrape = scrape(&metrics);
    let labels = [("client_id", "c1"), ("api_id", "shop")];
    assert_eq!(value(&scrape, "api_management_orders_total", &labels), Some(4.0));
    assert_eq!(value(&scrape, "api_management_orders_events_total", &labels), Some(4.0));
    assert_eq!(value(&scrape, "api_management_orders_total", &[("client_id", "c2")]), Some(1.0));

    // Dimension values come from policy expressions: quotes and newlines are escaped, not injected.
    metrics.record_batch(&Batch { custom: vec![custom(1.0, "a\"b\nc")], ..batch(3, Vec::new()) });
    let text = encode(&registry(Arc::clone(&metrics), None)).unwrap();
    assert!(text.contains(r#"api_management_orders_total{api_id="shop",client_id="a\"b\nc"} 1.0"#), "{text}");
}

#[test]
fn dropped_log_records_add_up_and_empty_families_are_described() {
    let metrics = Arc::new(Metrics::new(&MetricsSettings::default()));
    let scrape_before = scrape(&metrics);
    for family in
        ["portcullis_requests_total", "portcullis_request_duration_seconds", "portcullis_limit_rejections_total"]
    {
        assert!(scrape_before.docs.contains_key(family), "{family} has no HELP line");
    }
    metrics.record_batch(&Batch { log_records_dropped: 7, ..batch(1, Vec::new()) });
    metrics.record_batch(&Batch { log_records_dropped: 5, ..batch(2, Vec::new()) });
    assert_eq!(value(&scrape(&metrics), "portcullis_access_log_records_dropped_total", &[]), Some(12.0));
}

#[test]
fn span_drops_and_failed_exports_add_up() {
    let metrics = Arc::new(Metrics::new(&MetricsSettings::default()));
    assert_eq!(value(&scrape(&metrics), "portcullis_spans_dropped_total", &[]), Some(0.0));
    metrics.record_batch(&Batch { spans_dropped: 4, span_exports_failed: 1, ..batch(1, Vec::new()) });
    metrics.record_batch(&Batch { spans_dropped: 6, span_exports_failed: 2, ..batch(2, Vec::new()) });
    // A batch sent again is not counted twice.
    metrics.record_batch(&Batch { spans_dropped: 6, span_exports_failed: 2, ..batch(2, Vec::new()) });
    let page = scrape(&metrics);
    assert_eq!(value(&page, "portcullis_spans_dropped_total", &[]), Some(10.0));
    assert_eq!(value(&page, "portcullis_span_exports_failed_total", &[]), Some(3.0));
}

#[test]
fn a_bad_histogram_is_counted_not_fatal() {
    let metrics = Arc::new(Metrics::new(&MetricsSettings::default()));
    let latencies =
        Latencies { api_id: "a".into(), operation_id: "o".into(), total: b"junk".to_vec(), backend: Vec::new() };
    metrics.record_batch(&Batch { latencies: vec![latencies], ..batch(1, Vec::new()) });
    let scrape = scrape(&metrics);
    assert_eq!(value(&scrape, "portcullis_telemetry_batches_total", &[("result", "bad-histogram")]), Some(1.0));
}
