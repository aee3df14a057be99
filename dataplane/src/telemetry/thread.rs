//! The telemetry thread: takes the workers' records and hand-overs, writes the access log,
//! and puts one batch a second into the outbox for control.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ahash::AHashMap;
use portcullis_contract::stats::StatsRegion;
use portcullis_contract::telemetry::{
    AccessLogDestination, BATCH_INTERVAL_MS, BATCH_REQUESTS_MAX, Batch, CustomMetric, Latencies, RequestRecord, Series,
    SeriesKey, SeriesValues, encode_batch, encode_histogram,
};

use super::access_log::{self, ToWriter};
use super::names::{self, Generations};
use super::outbox::Outbox;
use super::{HandedCustom, Handover, Latency, Queues};
use crate::snapshot::SnapshotCell;

/// How often the thread drains the record queues and flushes the log: records reach the file
/// within this, and a worker's queue needs to hold this long's records.
pub const TICK_MS: u64 = 100;

/// What the telemetry thread shares: with the workers its queues, with the channel thread the
/// outbox and the reopen flag.
#[derive(Debug)]
pub struct Shared {
    pub queues: Arc<Queues>,
    /// Records each queue (the workers', the writer's) holds: fixed at start.
    pub records: usize,
    pub outbox: Outbox,
    /// Set by SIGUSR1 and by control's `ReopenLogs`: reopen the access log.
    pub reopen: Arc<AtomicBool>,
}

impl Shared {
    /// For `workers` workers whose record queues hold `records` each.
    pub fn new(workers: usize, records: usize) -> Self {
        Shared { queues: Queues::new(workers, records), records, outbox: Outbox::default(), reopen: Arc::default() }
    }
}

/// What the telemetry thread needs.
#[derive(Debug)]
pub struct TelemetryTask {
    pub shared: Arc<Shared>,
    pub cell: Arc<SnapshotCell>,
    pub stats: Arc<StatsRegion>,
    /// Relative access-log paths are taken from here.
    pub data_dir: PathBuf,
}

/// Starts the telemetry thread; it runs as long as the process.
pub fn spawn(task: TelemetryTask) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("telemetry".into()).spawn(move || task.run())
}

/// One interval's aggregates, by name.
#[derive(Debug, Default)]
struct Pending {
    series: AHashMap<SeriesKey, SeriesValues>,
    latencies: AHashMap<(String, String), Latency>,
    custom: AHashMap<HandedCustom, (u64, f64)>,
    /// The interval's most recent records (at most [`BATCH_REQUESTS_MAX`]).
    requests: VecDeque<RequestRecord>,
}

impl TelemetryTask {
    fn run(self) {
        let writer = match access_log::spawn_writer(&self.data_dir, self.shared.records) {
            Ok(writer) => Some(writer),
            Err(error) => {
                tracing::error!(%error, "cannot start the access-log thread; no access log");
                None
            }
        };
        let mut state = State {
            generations: Generations::default(),
            writer,
            destination: AccessLogDestination::Off,
            writer_dropped: 0,
            pending: Pending::default(),
            sequence: 0,
            interval_start: SystemTime::now(),
            dropped_seen: 0,
            spans_dropped_seen: 0,
            exports_failed_seen: 0,
        };
        let mut next_batch = Instant::now() + Duration::from_millis(BATCH_INTERVAL_MS);
        loop {
            std::thread::sleep(Duration::from_millis(TICK_MS));
            self.turn(&mut state);
            if Instant::now() >= next_batch {
                next_batch += Duration::from_millis(BATCH_INTERVAL_MS);
                self.send_batch(&mut state);
            }
        }
    }

    /// One turn: new snapshots, a reopen if asked, the hand-overs and records so far.
    fn turn(&self, state: &mut State) {
        for snapshot in self.cell.take_published() {
            state.generations.add(snapshot);
        }
        if let Some(destination) = state.generations.latest().map(|config| &config.observability.access_log.destination)
        {
            if *destination != state.destination {
                state.destination = destination.clone();
                state.tell_writer(ToWriter::Configure(destination.clone()));
            }
        }
        if self.shared.reopen.swap(false, Ordering::Relaxed) && !state.tell_writer(ToWriter::Reopen) {
            // The writer is behind: ask again next turn.
            self.shared.reopen.store(true, Ordering::Relaxed);
        }
        while let Some(handover) = self.shared.queues.handovers.pop() {
            state.merge(handover);
        }
        for queue in &self.shared.queues.records {
            while let Some(raw) = queue.pop() {
                let config = state.generations.config(raw.ix.generation);
                let record = names::request_record(config, raw);
                if state.destination != AccessLogDestination::Off {
                    let limit = config.map_or(0, |config| config.observability.access_log.queue_records as usize);
                    if !state.writer.as_ref().is_some_and(|writer| writer.offer(record.clone(), limit)) {
                        state.writer_dropped += 1;
                        self.stats.header().log_records_dropped.store(state.writer_dropped, Ordering::Relaxed);
                    }
                }
                state.pending.keep_recent(record);
            }
        }
        state.tell_writer(ToWriter::Flush);
    }

    /// Turns the interval's aggregates into a batch for control.
    fn send_batch(&self, state: &mut State) {
        let dropped_total: u64 = (0..self.stats.worker_count())
            .filter_map(|index| self.stats.worker(index))
            .map(|slot| slot.log_records_dropped.load(Ordering::Relaxed))
            .sum::<u64>()
            + state.writer_dropped;
        let spans_dropped = crate::trace::SPANS_DROPPED.load(Ordering::Relaxed);
        let exports_failed = crate::trace::export::EXPORTS_FAILED.load(Ordering::Relaxed);
        let pending = std::mem::take(&mut state.pending);
        let now = SystemTime::now();
        let batch = Batch {
            sequence: state.sequence + 1,
            data_plane_pid: std::process::id(),
            start_unix_ms: unix_ms(state.interval_start),
            end_unix_ms: unix_ms(now),
            series: pending.series.into_iter().map(|(key, values)| Series { key, values }).collect(),
            latencies: pending
                .latencies
                .into_iter()
                .map(|((api_id, operation_id), latency)| Latencies {
                    api_id,
                    operation_id,
                    total: encode_histogram(&latency.total),
                    backend: encode_histogram(&latency.backend),
                })
                .collect(),
            custom: pending
                .custom
                .into_iter()
                .map(|(metric, (count, sum))| CustomMetric {
                    namespace: metric.namespace,
                    name: metric.name,
                    dimensions: metric.dimensions,
                    count,
                    sum,
                })
                .collect(),
            requests: pending.requests.into(),
            log_records_dropped: dropped_total.saturating_sub(state.dropped_seen),
            spans_dropped: spans_dropped.saturating_sub(state.spans_dropped_seen),
            span_exports_failed: exports_failed.saturating_sub(state.exports_failed_seen),
        };
        state.interval_start = now;
        state.dropped_seen = dropped_total;
        state.spans_dropped_seen = spans_dropped;
        state.exports_failed_seen = exports_failed;
        let empty = batch.series.is_empty() && batch.custom.is_empty() && batch.requests.is_empty();
        if empty && batch.log_records_dropped == 0 && batch.spans_dropped == 0 && batch.span_exports_failed == 0 {
            // Nothing happened: no batch (control needs none to know that).
            return;
        }
        match encode_batch(&batch) {
            Ok(encoded) => {
                state.sequence = batch.sequence;
                self.shared.outbox.push(batch.sequence, encoded);
            }
            Err(error) => tracing::error!(%error, "cannot encode a telemetry batch; its interval is lost"),
        }
    }
}

/// The thread's own state.
struct State {
    generations: Generations,
    /// The access-log thread's queue (`None`: it could not start).
    writer: Option<access_log::Writer>,
    /// The destination the writer was last told.
    destination: AccessLogDestination,
    /// Records dropped because the writer's queue was full.
    writer_dropped: u64,
    pending: Pending,
    sequence: u64,
    interval_start: SystemTime,
    /// The workers' dropped-record counts at the last batch.
    dropped_seen: u64,
    /// The span exporter's counts (process totals) at the last batch.
    spans_dropped_seen: u64,
    exports_failed_seen: u64,
}

impl State {
    /// Passes `message` to the writer thread without waiting; `false` when its queue is full.
    fn tell_writer(&self, message: ToWriter) -> bool {
        self.writer.as_ref().is_some_and(|writer| writer.tell(message))
    }

    /// Names one worker's hand-over and adds it to the interval.
    fn merge(&mut self, handover: Handover) {
        for (series, values) in handover.series {
            let key = names::series_key(self.generations.config(series.ix.generation), &series);
            self.pending.series.entry(key).or_default().merge(&values);
        }
        for ((generation, api, operation), latency) in handover.latencies {
            let config = self.generations.config(generation);
            let Some(api) = config.and_then(|config| config.apis.get(api as usize)) else { continue };
            let operation = api.operations.get(operation as usize).map_or(String::new(), |op| op.id.clone());
            self.pending.latencies.entry((api.id.clone(), operation)).or_default().merge(&latency);
        }
        for (metric, (count, sum)) in handover.custom {
            let entry = self.pending.custom.entry(metric).or_default();
            entry.0 += count;
            entry.1 += sum;
        }
    }
}

impl Pending {
    fn keep_recent(&mut self, record: RequestRecord) {
        if self.requests.len() == BATCH_REQUESTS_MAX {
            self.requests.pop_front();
        }
        self.requests.push_back(record);
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}
