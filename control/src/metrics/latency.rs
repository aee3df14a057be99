//! Latency histograms in Prometheus' shape: cumulative bucket counts at APIM's OpenTelemetry
//! default bounds, folded from the HdrHistograms each telemetry batch carries.

use hdrhistogram::Histogram;

/// Bucket upper bounds in milliseconds: APIM's OpenTelemetry defaults (management-reference §4.3).
pub const BUCKET_BOUNDS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];
/// The histograms are recorded in microseconds.
const US_PER_MS: u64 = 1_000;
const US_PER_S: f64 = 1_000_000.0;

/// One series of a latency histogram since control started.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Buckets {
    /// Values per bucket (not cumulative); the last one counts those above every bound.
    counts: [u64; BUCKET_BOUNDS_MS.len() + 1],
    count: u64,
    sum_seconds: f64,
}

impl Buckets {
    /// Adds every value of `histogram`. A value is placed by the lowest value HdrHistogram
    /// records as equivalent to it, so placement is exact to its 3 significant figures; the sum
    /// adds each value's median equivalent.
    pub(crate) fn add(&mut self, histogram: &Histogram<u64>) {
        for value in histogram.iter_recorded() {
            let (us, n) = (value.value_iterated_to(), value.count_at_value());
            let lowest = histogram.lowest_equivalent(us);
            let bucket =
                BUCKET_BOUNDS_MS.iter().position(|&ms| lowest <= ms * US_PER_MS).unwrap_or(BUCKET_BOUNDS_MS.len());
            self.counts[bucket] += n;
            self.count += n;
            self.sum_seconds += histogram.median_equivalent(us) as f64 * n as f64 / US_PER_S;
        }
    }

    /// `(upper bound in seconds, values in that bucket)` for each bound, then `+Inf`: the shape
    /// `encode_histogram` takes (it accumulates them).
    pub(crate) fn buckets(&self) -> Vec<(f64, u64)> {
        let bounds = BUCKET_BOUNDS_MS.iter().map(|&ms| ms as f64 / 1_000.0).chain([f64::INFINITY]);
        bounds.zip(self.counts).collect()
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn sum_seconds(&self) -> f64 {
        self.sum_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_their_bucket_and_on_the_bounds() {
        let mut histogram = portcullis_contract::telemetry::latency_histogram();
        for us in [1_000, 5_000, 5_500, 99_000, 20_000_000] {
            histogram.record(us).unwrap();
        }
        let mut buckets = Buckets::default();
        buckets.add(&histogram);
        buckets.add(&histogram);
        let counts: Vec<u64> = buckets.buckets().iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [4, 2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(buckets.count(), 10);
        let exact = 2.0 * (1_000 + 5_000 + 5_500 + 99_000 + 20_000_000) as f64 / US_PER_S;
        assert!((buckets.sum_seconds() - exact).abs() / exact < 0.001, "{}", buckets.sum_seconds());
    }
}
