//! A worker's own telemetry: what it counted since its last hand-over. Touched only by its
//! worker's thread; handed to the telemetry thread once a second.

use std::rc::Rc;

use ahash::AHashMap;
use portcullis_contract::telemetry::{BATCH_REQUESTS_MAX, LATENCY_US_MAX, SeriesValues};

use super::{HandedCustom, HandedSeries, Handover, Latency, NONE, Queues, RawRecord, SeriesIx};

/// A series key as the worker counts it: `LastError`'s strings by reference (no allocation per
/// request); they become owned strings once a second, at hand-over.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    ix: SeriesIx,
    error: Option<(Rc<str>, Rc<str>)>,
}

/// One finished request, as the done phase describes it.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) ix: SeriesIx,
    pub(crate) error: Option<(Rc<str>, Rc<str>)>,
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
    pub(crate) total_us: u64,
    pub(crate) backend_us: Option<u64>,
}

/// A worker's counts since its last hand-over.
#[derive(Debug, Default)]
pub(crate) struct WorkerTelemetry {
    series: AHashMap<Key, SeriesValues>,
    latencies: AHashMap<(u64, u32, u32), Latency>,
    custom: AHashMap<HandedCustom, (u64, f64)>,
    /// Records this worker may still send this interval when the access log is off (they feed
    /// `/reports/byRequest`); reset at each hand-over.
    samples_left: usize,
}

impl WorkerTelemetry {
    /// A worker's telemetry, one of `workers`.
    pub(crate) fn new(workers: usize) -> Self {
        WorkerTelemetry { samples_left: samples_per_interval(workers), ..Self::default() }
    }

    /// Counts one request.
    pub(crate) fn count(&mut self, sample: Sample) {
        let key = Key { ix: sample.ix, error: sample.error };
        let one = SeriesValues::one(sample.request_bytes, sample.response_bytes, sample.total_us, sample.backend_us);
        self.series.entry(key).or_default().merge(&one);
        if sample.ix.api == NONE {
            return;
        }
        let latency = self.latencies.entry((sample.ix.generation, sample.ix.api, sample.ix.operation)).or_default();
        let _ = latency.total.record(sample.total_us.clamp(1, LATENCY_US_MAX));
        if let Some(backend) = sample.backend_us {
            let _ = latency.backend.record(backend.clamp(1, LATENCY_US_MAX));
        }
    }

    /// Adds one `emit-metric` value.
    pub(crate) fn emit(&mut self, metric: HandedCustom, value: f64) {
        let (count, sum) = self.custom.entry(metric).or_default();
        *count += 1;
        *sum += value;
    }

    /// Whether a record of this request goes to the telemetry thread: always with the access log
    /// on; otherwise a share of [`BATCH_REQUESTS_MAX`] per interval, for the recent requests.
    pub(crate) fn wants_record(&mut self, access_log: bool) -> bool {
        if access_log {
            return true;
        }
        if self.samples_left == 0 {
            return false;
        }
        self.samples_left -= 1;
        true
    }

    /// Gives the telemetry thread what was counted. When its queue is full the counts stay here
    /// and go with the next hand-over: nothing counted is lost.
    pub(crate) fn hand_over(&mut self, queues: &Queues) {
        self.samples_left = samples_per_interval(queues.records.len());
        if self.series.is_empty() && self.custom.is_empty() {
            return;
        }
        let handover = self.take();
        if let Err(handover) = queues.handovers.push(handover) {
            self.put_back(handover);
        }
    }

    fn take(&mut self) -> Handover {
        let series = self
            .series
            .drain()
            .map(|(key, values)| {
                let error = key.error.map(|(source, reason)| (source.to_string(), reason.to_string()));
                (HandedSeries { ix: key.ix, error }, values)
            })
            .collect();
        Handover { series, latencies: self.latencies.drain().collect(), custom: self.custom.drain().collect() }
    }

    fn put_back(&mut self, handover: Handover) {
        for (series, values) in handover.series {
            let error = series.error.map(|(source, reason)| (Rc::from(source), Rc::from(reason)));
            self.series.entry(Key { ix: series.ix, error }).or_default().merge(&values);
        }
        for (key, latency) in handover.latencies {
            self.latencies.entry(key).or_default().merge(&latency);
        }
        for (key, (count, sum)) in handover.custom {
            let entry = self.custom.entry(key).or_default();
            entry.0 += count;
            entry.1 += sum;
        }
    }
}

/// A worker's share of the records a batch carries when the access log is off.
fn samples_per_interval(workers: usize) -> usize {
    BATCH_REQUESTS_MAX / workers.max(1)
}

/// Offers `record` to this worker's queue; `false` when it holds `limit` records already or is
/// full (the record is dropped). The queue's capacity was fixed at start; `limit` is
/// `[access-log] queue-records` of the current snapshot, which may ask for less.
pub(crate) fn offer(queues: &Queues, worker: usize, record: RawRecord, limit: usize) -> bool {
    queues.records.get(worker).is_some_and(|queue| queue.len() < limit && queue.push(record).is_ok())
}

#[cfg(test)]
mod tests {
    use portcullis_contract::telemetry::CacheResult;

    use super::*;

    fn ix(status: u16) -> SeriesIx {
        SeriesIx {
            generation: 1,
            api: 0,
            operation: 2,
            product: NONE,
            subscription: 3,
            status,
            backend_status: status,
            cache: CacheResult::None,
        }
    }

    fn sample(status: u16, total_us: u64) -> Sample {
        Sample { ix: ix(status), error: None, request_bytes: 100, response_bytes: 50, total_us, backend_us: Some(10) }
    }

    #[test]
    fn requests_of_one_series_add_up_and_hand_over_once() {
        let mut telemetry = WorkerTelemetry::default();
        telemetry.count(sample(200, 300));
        telemetry.count(sample(200, 700));
        telemetry.count(sample(500, 900));
        let queues = Queues::new(1, 4);
        telemetry.hand_over(&queues);
        let handover = queues.handovers.pop().expect("handed over");
        assert_eq!(handover.series.len(), 2);
        let ok = handover.series.iter().find(|(series, _)| series.ix.status == 200).expect("200s");
        assert_eq!((ok.1.count, ok.1.total_us_min, ok.1.total_us_max, ok.1.request_bytes), (2, 300, 700, 200));
        assert_eq!(handover.latencies.len(), 1);
        assert_eq!(handover.latencies[0].1.total.len(), 3);
        // Nothing new: nothing handed over.
        telemetry.hand_over(&queues);
        assert!(queues.handovers.pop().is_none());
    }

    #[test]
    fn a_full_queue_keeps_the_counts_for_the_next_hand_over() {
        let queues = Queues::new(1, 4);
        while queues.handovers.push(Handover::default()).is_ok() {}
        let mut telemetry = WorkerTelemetry::default();
        let error = Some((Rc::from("rate-limit"), Rc::from("RateLimitExceeded")));
        telemetry.count(Sample { error: error.clone(), ..sample(429, 50) });
        telemetry.hand_over(&queues);
        telemetry.count(Sample { error, ..sample(429, 70) });
        while queues.handovers.pop().is_some() {}
        telemetry.hand_over(&queues);
        let handover = queues.handovers.pop().expect("handed over");
        let [(series, values)] = handover.series.as_slice() else { panic!("one series: {:?}", handover.series) };
        assert_eq!(values.count, 2);
        assert_eq!(series.error, Some(("rate-limit".to_owned(), "RateLimitExceeded".to_owned())));
    }

    #[test]
    fn without_the_access_log_only_a_share_of_requests_is_recorded() {
        let queues = Queues::new(4, 4);
        let mut telemetry = WorkerTelemetry::new(4);
        let share = BATCH_REQUESTS_MAX / 4;
        assert_eq!((0..share * 2).filter(|_| telemetry.wants_record(false)).count(), share);
        assert!(telemetry.wants_record(true), "with the access log on, every request");
        telemetry.hand_over(&queues);
        assert_eq!((0..share * 2).filter(|_| telemetry.wants_record(false)).count(), share, "a new interval");
    }
}
