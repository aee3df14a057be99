//! Prometheus metrics, served at `/metrics` on the ops listener ([`crate::ops`]): the traffic
//! families folded from the data plane's telemetry batches ([`Metrics::record_batch`]) and the
//! families read when scraped (connections, upstream health, XDP verdicts, snapshots, processes).
//! docs/observability.md lists every family, its labels and the series cap.

mod custom;
mod encode;
mod family;
mod latency;
pub mod process;
pub mod scrape;
mod traffic;

use std::sync::{Arc, Mutex, MutexGuard};

use portcullis_contract::telemetry::{Batch, MetricsSettings};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

pub use custom::{label_name, metric_name};
pub use family::OVERFLOW_LABEL_VALUE;
pub use latency::BUCKET_BOUNDS_MS;
use traffic::Traffic;

/// The prefix of every family but the `emit-metric` ones.
pub const PREFIX: &str = "portcullis";
/// The `Content-Type` of `/metrics` (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The traffic families, shared by the batch handler (which writes) and the scrapes (which read).
#[derive(Debug, Default)]
pub struct Metrics {
    traffic: Mutex<Traffic>,
}

impl Metrics {
    /// Empty families shaped by `settings` (`Config.observability.metrics`).
    pub fn new(settings: &MetricsSettings) -> Self {
        let metrics = Self::default();
        metrics.configure(settings);
        metrics
    }

    /// Takes the settings of a newly applied config: they shape the series recorded from now on
    /// (series already there stay, with their labels).
    pub fn configure(&self, settings: &MetricsSettings) {
        self.lock().settings = settings.clone();
    }

    /// Folds one telemetry batch into the cumulative families. A batch sent again (the same data
    /// plane pid and a sequence not above the last one recorded) is skipped.
    pub fn record_batch(&self, batch: &Batch) {
        self.lock().record(batch);
    }

    /// A copy of the families, taken under the lock and encoded after it is released, so a
    /// scrape holds up the batch handler only for the copy.
    fn traffic(&self) -> Traffic {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Traffic> {
        // Every update leaves the families consistent before it can panic: a poisoned lock is usable.
        self.traffic.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The registry `/metrics` encodes: the traffic families and `sources` under [`PREFIX`], the
/// `emit-metric` families without it.
pub fn registry(metrics: Arc<Metrics>, sources: Option<scrape::Sources>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(CustomCollector(Arc::clone(&metrics))));
    let prefixed = registry.sub_registry_with_prefix(PREFIX);
    prefixed.register_collector(Box::new(TrafficCollector(metrics)));
    if let Some(sources) = sources {
        prefixed.register_collector(Box::new(sources));
    }
    registry
}

/// Encodes `registry` as Prometheus text.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

#[derive(Debug)]
struct TrafficCollector(Arc<Metrics>);

impl Collector for TrafficCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        self.0.traffic().encode(&mut encoder)
    }
}

#[derive(Debug)]
struct CustomCollector(Arc<Metrics>);

impl Collector for CustomCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        self.0.traffic().encode_custom(&mut encoder)
    }
}

#[cfg(test)]
mod tests;
