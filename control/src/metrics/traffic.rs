//! The traffic families: cumulative since control started, folded from the data plane's
//! telemetry batches (requests, latencies, bandwidth, rejections, policy errors, `emit-metric`,
//! dropped access-log records).

use std::collections::BTreeMap;

use portcullis_contract::telemetry::{Batch, MetricsSettings, SeriesKey};
use prometheus_client::encoding::DescriptorEncoder;

use super::custom::CustomFamilies;
use super::encode::{self, label};
use super::family::{Family, Labels};
use super::latency::Buckets;

/// Data-plane processes whose latest batch sequence is remembered (to skip batches sent again
/// after a reconnect); a restarted data plane has a new pid, and older ones are forgotten.
const DATA_PLANES_REMEMBERED_MAX: usize = 16;
/// `error_source` prefixes of the limit policies (`rate-limit`, `rate-limit-by-key`, `quota`,
/// `quota-by-key`).
const LIMIT_SOURCES: [&str; 2] = ["rate-limit", "quota"];

/// Every traffic family and the settings that shape new series.
#[derive(Debug, Clone, Default)]
pub(crate) struct Traffic {
    pub(crate) settings: MetricsSettings,
    requests: Family<u64>,
    request_duration: Family<Buckets>,
    backend_duration: Family<Buckets>,
    bandwidth: Family<u64>,
    limit_rejections: Family<u64>,
    policy_errors: Family<u64>,
    custom: CustomFamilies,
    log_records_dropped: u64,
    spans_dropped: u64,
    span_exports_failed: u64,
    batches_recorded: u64,
    batches_repeated: u64,
    batches_bad_histograms: u64,
    /// Data-plane pid → the highest batch sequence recorded from it.
    sequences: BTreeMap<u32, u64>,
}

impl Traffic {
    /// Folds one batch in; a batch already recorded (same data plane, sequence not above the
    /// last one) is counted and skipped.
    pub(crate) fn record(&mut self, batch: &Batch) {
        if !self.first_time(batch) {
            self.batches_repeated += 1;
            return;
        }
        self.batches_recorded += 1;
        let series_max = self.settings.series_max as usize;
        for series in &batch.series {
            self.record_series(
                &series.key,
                series.values.count,
                series.values.request_bytes,
                series.values.response_bytes,
            );
        }
        for latencies in &batch.latencies {
            let labels = || vec![label("api", &latencies.api_id), label("operation", &latencies.operation_id)];
            for (bytes, family) in
                [(&latencies.total, &mut self.request_duration), (&latencies.backend, &mut self.backend_duration)]
            {
                if bytes.is_empty() {
                    continue;
                }
                match portcullis_contract::telemetry::decode_histogram(bytes) {
                    Some(histogram) => family.series(labels(), series_max).add(&histogram),
                    None => self.batches_bad_histograms += 1,
                }
            }
        }
        for metric in &batch.custom {
            self.custom.record(metric, series_max);
        }
        self.log_records_dropped += batch.log_records_dropped;
        self.spans_dropped += batch.spans_dropped;
        self.span_exports_failed += batch.span_exports_failed;
    }

    fn first_time(&mut self, batch: &Batch) -> bool {
        if let Some(&last) = self.sequences.get(&batch.data_plane_pid) {
            if batch.sequence <= last {
                return false;
            }
        } else if self.sequences.len() >= DATA_PLANES_REMEMBERED_MAX {
            // Forget the smallest pid: any will do, the data planes that matter are the recent ones.
            self.sequences.pop_first();
        }
        self.sequences.insert(batch.data_plane_pid, batch.sequence);
        true
    }

    fn record_series(&mut self, key: &SeriesKey, count: u64, request_bytes: u64, response_bytes: u64) {
        let series_max = self.settings.series_max as usize;
        let per_subscription = self.settings.per_subscription;
        let consumer = |labels: &mut Labels| {
            if per_subscription {
                labels.push(label("subscription", &key.subscription_id));
                labels.push(label("user", &key.user_id));
            }
        };
        let mut labels = vec![
            label("api", &key.api_id),
            label("operation", &key.operation_id),
            label("product", &key.product_id),
            label("status_class", status_class(key.status)),
            label("cache", key.cache.as_str()),
        ];
        consumer(&mut labels);
        *self.requests.series(labels, series_max) += count;
        for (direction, bytes) in [("ingress", request_bytes), ("egress", response_bytes)] {
            let mut labels = vec![label("api", &key.api_id), label("direction", direction)];
            consumer(&mut labels);
            *self.bandwidth.series(labels, series_max) += bytes;
        }
        if key.error_source.is_empty() {
            return;
        }
        let labels = vec![
            label("api", &key.api_id),
            label("operation", &key.operation_id),
            label("source", &key.error_source),
            label("reason", &key.error_reason),
        ];
        *self.policy_errors.series(labels, series_max) += count;
        if LIMIT_SOURCES.iter().any(|source| key.error_source.starts_with(source)) {
            let mut labels =
                vec![label("api", &key.api_id), label("product", &key.product_id), label("policy", &key.error_source)];
            consumer(&mut labels);
            *self.limit_rejections.series(labels, series_max) += count;
        }
    }

    /// Writes the `portcullis_`-prefixed families.
    pub(crate) fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        encode::counters(
            encoder,
            "requests",
            "Requests answered, by API, operation, product, status class and cache result.",
            encode::series(&self.requests),
        )?;
        encode::histograms(
            encoder,
            "request_duration_seconds",
            "Time from a request's head read to its last response byte.",
            &self.request_duration,
        )?;
        encode::histograms(
            encoder,
            "backend_duration_seconds",
            "Time waiting for and reading the backend, of the requests that reached it.",
            &self.backend_duration,
        )?;
        encode::counters(
            encoder,
            "bandwidth_bytes",
            "Bytes received from clients (ingress) and sent to them (egress), heads and bodies.",
            encode::series(&self.bandwidth),
        )?;
        encode::counters(
            encoder,
            "limit_rejections",
            "Requests refused by rate-limit, rate-limit-by-key, quota or quota-by-key.",
            encode::series(&self.limit_rejections),
        )?;
        encode::counters(
            encoder,
            "policy_errors",
            "Requests that went through on-error, by context.LastError source and reason.",
            encode::series(&self.policy_errors),
        )?;
        encode::counters(
            encoder,
            "access_log_records_dropped",
            "Access-log records dropped because the writer could not keep up.",
            [(Vec::<(&str, &str)>::new(), self.log_records_dropped)],
        )?;
        encode::counters(
            encoder,
            "spans_dropped",
            "Spans dropped: the exporter's queue was full, tracing was turned off, or their export failed.",
            [(Vec::<(&str, &str)>::new(), self.spans_dropped)],
        )?;
        encode::counters(
            encoder,
            "span_exports_failed",
            "OTLP span exports that failed (collector unreachable or answering an error); their spans are dropped.",
            [(Vec::<(&str, &str)>::new(), self.span_exports_failed)],
        )?;
        self.encode_bookkeeping(encoder)
    }

    /// The families about the metrics themselves: batches, overflowing families, custom drops.
    fn encode_bookkeeping(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        encode::counters(
            encoder,
            "telemetry_batches",
            "Telemetry batches from the data plane: recorded, repeated (sent again, skipped), or with an undecodable histogram.",
            [
                ([("result", "recorded")], self.batches_recorded),
                ([("result", "repeated")], self.batches_repeated),
                ([("result", "bad-histogram")], self.batches_bad_histograms),
            ],
        )?;
        let overflowed = [
            ("portcullis_requests_total", self.requests.overflowed()),
            ("portcullis_request_duration_seconds", self.request_duration.overflowed()),
            ("portcullis_backend_duration_seconds", self.backend_duration.overflowed()),
            ("portcullis_bandwidth_bytes_total", self.bandwidth.overflowed()),
            ("portcullis_limit_rejections_total", self.limit_rejections.overflowed()),
            ("portcullis_policy_errors_total", self.policy_errors.overflowed()),
        ];
        encode::counters(
            encoder,
            "metrics_series_overflowed",
            "Observations counted under the label values \"other\" because their family held series-max label sets.",
            overflowed.map(|(family, n)| ([("family", family)], n)),
        )?;
        encode::counters(
            encoder,
            "custom_metrics_dropped",
            "emit-metric values dropped: no usable name, or more custom families than the gateway keeps.",
            [(Vec::<(&str, &str)>::new(), self.custom.dropped())],
        )
    }

    /// Writes the `emit-metric` families (no `portcullis_` prefix): `<name>_total`, the summed
    /// values, and `<name>_events_total`, how many values were emitted.
    pub(crate) fn encode_custom(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        for (name, family) in self.custom.iter() {
            let sums = family.iter().map(|(labels, value)| (labels.as_slice(), value.sum));
            encode::counters(encoder, name, "emit-metric: the sum of the values emitted.", sums)?;
            let counts = family.iter().map(|(labels, value)| (labels.as_slice(), value.count));
            encode::counters(encoder, &format!("{name}_events"), "emit-metric: how many values were emitted.", counts)?;
        }
        Ok(())
    }
}

/// `2xx` for 200 to 299 and so on; `unknown` outside 100 to 599.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "unknown",
    }
}
