//! Writing families through prometheus-client's collector interface: one descriptor (`# HELP`,
//! `# TYPE`), then its series. Counters get `_total` from the encoder.

use std::borrow::Cow;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use super::family::Family;
use super::latency::Buckets;

/// A counter family (`name` without `_total`).
pub(crate) fn counters<S: EncodeLabelSet, V: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (S, V)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        metric.encode_family(&labels)?.encode_counter::<NoLabelSet, V, f64>(&value, None)?;
    }
    Ok(())
}

/// A gauge family.
pub(crate) fn gauges<S: EncodeLabelSet, V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (S, V)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        metric.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// A histogram family from cumulative [`Buckets`].
pub(crate) fn histograms(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    family: &Family<Buckets>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, buckets) in family.iter() {
        metric.encode_family(labels)?.encode_histogram::<NoLabelSet>(
            buckets.sum_seconds(),
            buckets.count(),
            &buckets.buckets(),
            None,
        )?;
    }
    Ok(())
}

/// A family's series as `(labels, value)` pairs to encode.
pub(crate) fn series<V: Copy>(family: &Family<V>) -> impl Iterator<Item = (&[(Cow<'static, str>, String)], V)> + '_ {
    family.iter().map(|(labels, value)| (labels.as_slice(), *value))
}

/// One label.
pub(crate) fn label(name: &'static str, value: impl Into<String>) -> (Cow<'static, str>, String) {
    (Cow::Borrowed(name), value.into())
}
