//! A worker's own state, shared by its connections on its thread: its snapshot copy, stats
//! slot, backend pool and resolver, spares, parked connections, drain signal and connection count.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use portcullis_contract::stats::{StatsRegion, WorkerSlot};

use crate::drain::Drain;
use crate::io::Stream;
use crate::io::maybe_tls::MaybeTls;
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::upstream::UpstreamPool;
use crate::worker::parked::Parked;
use crate::worker::spares::Spares;

/// Counters for a worker index past the stats region (cannot happen: the region is created
/// for exactly `--workers` slots); keeps the hot path free of `Option` checks.
static DETACHED_SLOT: WorkerSlot = WorkerSlot {
    requests: AtomicU64::new(0),
    responses_4xx: AtomicU64::new(0),
    responses_5xx: AtomicU64::new(0),
    connections_accepted: AtomicU64::new(0),
    connections_active: AtomicU64::new(0),
    in_flight: AtomicU64::new(0),
    generation: AtomicU64::new(0),
    backend_connects: AtomicU64::new(0),
    connections_parked: AtomicU64::new(0),
    cache_hits: AtomicU64::new(0),
    cache_misses: AtomicU64::new(0),
    cache_stores: AtomicU64::new(0),
    cache_external_errors: AtomicU64::new(0),
    log_records_dropped: AtomicU64::new(0),
};

/// A worker's own state, shared by its connections (on its thread only).
pub(crate) struct WorkerCtx<S> {
    index: usize,
    stats: Arc<StatsRegion>,
    cell: Arc<SnapshotCell>,
    /// This worker's copy of the current snapshot (an `Rc` so requests clone it without touching
    /// a cache line shared with other cores).
    cached: RefCell<Option<Rc<LocalSnapshot>>>,
    cached_generation: Cell<u64>,
    /// Idle backend connections (plain, or TLS to `https://` backends).
    pub(crate) pool: UpstreamPool<MaybeTls<S>>,
    /// Backend host names computed per request, resolved and cached.
    pub(crate) dns: crate::upstream::dns::Resolver,
    /// `send-one-way-request` calls waiting for, or in, the worker's task that sends them.
    pub(crate) one_way: crate::proxy::outbound::OneWayCalls,
    /// Buffers, head boxes and policy states lent to connections while they serve a request.
    pub(crate) spares: Spares,
    /// Idle client connections that left their task (counted in `connections`).
    pub(crate) parked: Parked<S>,
    /// The draining signal.
    pub(crate) drain: Arc<Drain>,
    /// The XDP pre-filter's user-space side.
    pub(crate) xdp: Arc<crate::xdp::XdpPlane>,
    /// What this worker counted for the telemetry thread since its last hand-over.
    pub(crate) telemetry: RefCell<crate::telemetry::worker::WorkerTelemetry>,
    /// Its queues to the telemetry thread (records, hand-overs).
    pub(crate) queues: Arc<crate::telemetry::Queues>,
    connections: Cell<usize>,
    /// Woken when the last connection closes.
    idle: tokio::sync::Notify,
}

impl<S> std::fmt::Debug for WorkerCtx<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerCtx")
            .field("index", &self.index)
            .field("connections", &self.connections)
            .field("parked", &self.parked)
            .finish()
    }
}

impl<S: Stream> WorkerCtx<S> {
    /// A worker's state before its first connection.
    pub(crate) fn new(
        index: usize,
        stats: Arc<StatsRegion>,
        cell: Arc<SnapshotCell>,
        drain: Arc<Drain>,
        xdp: Arc<crate::xdp::XdpPlane>,
        queues: Arc<crate::telemetry::Queues>,
    ) -> Self {
        WorkerCtx {
            index,
            stats,
            cell,
            cached: RefCell::new(None),
            cached_generation: Cell::new(0),
            pool: UpstreamPool::new(),
            dns: crate::upstream::dns::Resolver::system(),
            one_way: crate::proxy::outbound::OneWayCalls::default(),
            spares: Spares::default(),
            parked: Parked::default(),
            drain,
            xdp,
            telemetry: RefCell::new(crate::telemetry::worker::WorkerTelemetry::new(queues.records.len())),
            queues,
            connections: Cell::new(0),
            idle: tokio::sync::Notify::new(),
        }
    }
}

impl<S> WorkerCtx<S> {
    /// This worker's index (its stats slot).
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// This worker's stats slot.
    pub(crate) fn slot(&self) -> &WorkerSlot {
        self.stats.worker(self.index).unwrap_or(&DETACHED_SLOT)
    }

    /// The current snapshot; refreshed from the published cell only when its generation changed.
    /// Called at the start of each request, which then keeps the one it got.
    pub(crate) fn snapshot(&self) -> Option<Rc<LocalSnapshot>> {
        let published = self.cell.generation();
        if published != self.cached_generation.get() {
            *self.cached.borrow_mut() = self.cell.load().map(|snapshot| Rc::new(LocalSnapshot(snapshot)));
            self.cached_generation.set(published);
        }
        self.cached.borrow().clone()
    }

    /// Connections open (parked ones included).
    pub(crate) fn connections(&self) -> usize {
        self.connections.get()
    }

    /// Counts in a connection just admitted.
    pub(crate) fn connection_opened(&self) {
        self.connections.set(self.connections.get() + 1);
        WorkerSlot::add(&self.slot().connections_active, 1);
    }

    /// Counts out a connection that closed.
    pub(crate) fn connection_closed(&self) {
        let open = self.connections.get().saturating_sub(1);
        self.connections.set(open);
        WorkerSlot::sub(&self.slot().connections_active, 1);
        if open == 0 {
            self.idle.notify_one();
        }
    }

    /// Returns once every connection of this worker has closed (after drain).
    pub(crate) async fn all_closed(&self) {
        while self.connections.get() > 0 {
            self.idle.notified().await;
        }
    }
}

/// A worker's handle on a published snapshot. Requests clone the `Rc` around it, which touches
/// only this worker's memory; the shared `Arc` count changes once per worker per generation.
#[derive(Debug)]
pub(crate) struct LocalSnapshot(Arc<Snapshot>);

impl std::ops::Deref for LocalSnapshot {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.0
    }
}
