//! Worker threads: one per core, each with its own runtime, listener, upstream pool and buffers.

pub(crate) mod parked;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use portcullis_contract::stats::{IoBackend, StatsRegion, WorkerSlot};

use crate::drain::{self, Drain};
use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;
use crate::io::epoll::Epoll;
use crate::io::maybe_tls::MaybeTls;
use crate::io::tls::TlsStream;
use crate::io::uring::Uring;
use crate::io::{Listener, Park, Runtime, Stream};
use crate::policy::RequestState;
use crate::proxy;
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::upstream::UpstreamPool;

/// Pause after an accept error other than draining (EMFILE, ENOBUFS): lets resources free up
/// instead of spinning.
pub const ACCEPT_ERROR_PAUSE_MS: u64 = 10;

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
};

/// Everything one worker thread starts with.
#[derive(Debug)]
pub struct WorkerSetup {
    /// Worker index (its stats slot).
    pub index: usize,
    /// Its own SO_REUSEPORT listener.
    pub listener: std::net::TcpListener,
    /// Its own SO_REUSEPORT listener for TLS (`--listen-tls`), if any.
    pub tls_listener: Option<std::net::TcpListener>,
    /// Published snapshots.
    pub cell: Arc<SnapshotCell>,
    /// The stats region.
    pub stats: Arc<StatsRegion>,
    /// The draining signal.
    pub drain: Arc<Drain>,
    /// The XDP pre-filter's user-space side (admission, per-IP limit).
    pub xdp: Arc<crate::xdp::XdpPlane>,
    /// Core to pin the thread to.
    pub core: Option<core_affinity::CoreId>,
}

/// Starts a worker thread on `backend`.
pub fn spawn(backend: IoBackend, setup: WorkerSetup) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(format!("worker-{}", setup.index)).spawn(move || {
        if let Some(core) = setup.core {
            core_affinity::set_for_current(core);
        }
        let index = setup.index;
        let result = match backend {
            IoBackend::Uring => run::<Uring>(setup),
            IoBackend::Epoll => run::<Epoll>(setup),
        };
        if let Err(error) = result {
            tracing::error!(worker = index, %error, "worker stopped");
        }
    })
}

type StreamOf<R> = <<R as Runtime>::Listener as Listener>::Stream;

fn run<R: Runtime>(setup: WorkerSetup) -> std::io::Result<()> {
    R::block_on(async move {
        let listener = R::Listener::adopt(setup.listener)?;
        let tls_listener = setup.tls_listener.map(R::Listener::adopt).transpose()?;
        let worker: Rc<WorkerCtx<StreamOf<R>>> = Rc::new(WorkerCtx {
            index: setup.index,
            stats: setup.stats,
            cell: setup.cell,
            cached: RefCell::new(None),
            cached_generation: Cell::new(0),
            pool: UpstreamPool::new(),
            dns: crate::upstream::dns::Resolver::system(),
            spares: Spares::default(),
            parked: parked::Parked::default(),
            drain: setup.drain,
            xdp: setup.xdp,
            connections: Cell::new(0),
            idle: tokio::sync::Notify::new(),
        });
        tokio::task::spawn_local(release_freed_memory_periodically());
        tokio::task::spawn_local(parked::watch(Rc::clone(&worker)));
        match &tls_listener {
            Some(tls_listener) => {
                tokio::join!(
                    accept_loop(&worker, &listener, Transport::Plain),
                    accept_loop(&worker, tls_listener, Transport::Tls)
                );
            }
            None => accept_loop(&worker, &listener, Transport::Plain).await,
        }
        drop((listener, tls_listener));
        while worker.connections.get() > 0 {
            worker.idle.notified().await;
        }
        Ok(())
    })?
}

/// What a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

async fn accept_loop<L: Listener>(worker: &Rc<WorkerCtx<L::Stream>>, listener: &L, transport: Transport) {
    let mut drain_signal = worker.drain.subscribe();
    while !worker.drain.is_draining() {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain::signalled(&mut drain_signal) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(_) if worker.drain.is_draining() => break,
            Err(error) => {
                tracing::warn!(worker = worker.index, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                continue;
            }
        };
        if !worker.xdp.admit(peer.ip()) {
            // Refused by the [xdp] rules in user space (counted there): the kernel plane is off,
            // or this traffic came on an interface without it.
            stream.shutdown();
            continue;
        }
        let slot = worker.slot();
        WorkerSlot::add(&slot.connections_accepted, 1);
        let connections_max =
            worker.snapshot().map_or(portcullis_contract::model::CONNECTIONS_PER_WORKER_MAX_DEFAULT, |snapshot| {
                snapshot.config.limits.connections_per_worker_max
            });
        if worker.connections.get() >= connections_max as usize {
            stream.shutdown();
            continue;
        }
        worker.connections.set(worker.connections.get() + 1);
        WorkerSlot::add(&slot.connections_active, 1);
        match transport {
            Transport::Plain => spawn_connection(worker, MaybeTls::Plain(stream), peer, None),
            Transport::Tls => {
                let worker = Rc::clone(worker);
                tokio::task::spawn_local(async move {
                    // Boxed: a TLS handshake's state is kilobytes, and every plain connection's
                    // task would otherwise be sized for it.
                    if Box::pin(serve_tls(Rc::clone(&worker), stream, peer)).await == proxy::Ended::Closed {
                        worker.connection_closed();
                    }
                });
            }
        }
    }
}

/// Starts the task of a connection the worker counts as open already: just accepted (`resumed`
/// `None`), or woken from the parked registry (`resumed`: when it went idle). The connection is
/// counted out when its task closes it, not when it parks.
fn spawn_connection<S: Park>(
    worker: &Rc<WorkerCtx<S>>,
    client: MaybeTls<S>,
    peer: std::net::SocketAddr,
    resumed: Option<Instant>,
) {
    let worker = Rc::clone(worker);
    tokio::task::spawn_local(async move {
        if proxy::serve_connection(Rc::clone(&worker), client, peer, resumed).await == proxy::Ended::Closed {
            worker.connection_closed();
        }
    });
}

/// Spare buffers kept per worker: a connection borrows them while it serves a request and hands
/// them back when it goes idle, so an idle keep-alive connection pins none of them.
pub const SPARE_BUFFERS_MAX: usize = 256;
/// A buffer that grew past this (a large head, a buffered body) is freed, not kept as a spare.
pub const SPARE_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// What a connection borrows from its worker while it serves a request (style item 3: per-core
/// state, never shared across cores).
#[derive(Debug, Default)]
#[allow(clippy::vec_box)] // reason: the boxes are what connections hold; pooling them moves pointers, not kilobytes
pub(crate) struct Spares {
    request_heads: RefCell<Vec<Box<RequestHead>>>,
    response_heads: RefCell<Vec<Box<ResponseHead>>>,
    buffers: RefCell<Vec<Vec<u8>>>,
    policy_states: RefCell<Vec<Box<RequestState>>>,
}

impl Spares {
    /// A spare request-head box, if there is one.
    pub(crate) fn request_head(&self) -> Option<Box<RequestHead>> {
        self.request_heads.borrow_mut().pop()
    }

    /// A spare response-head box, if there is one.
    pub(crate) fn response_head(&self) -> Option<Box<ResponseHead>> {
        self.response_heads.borrow_mut().pop()
    }

    /// A policy state (reset by the request that takes it).
    pub(crate) fn policy_state(&self) -> Box<RequestState> {
        self.policy_states.borrow_mut().pop().unwrap_or_else(|| Box::new(RequestState::new()))
    }

    /// An empty buffer (with capacity, when a spare one is there).
    pub(crate) fn buffer(&self) -> Vec<u8> {
        self.buffers.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps what a connection no longer needs, within [`SPARE_BUFFERS_MAX`] of each kind.
    pub(crate) fn put_back(
        &self,
        request_head: Option<Box<RequestHead>>,
        response_head: Option<Box<ResponseHead>>,
        policy_state: Box<RequestState>,
        buffers: [Vec<u8>; 2],
    ) {
        keep(&self.policy_states, Some(policy_state));
        keep(&self.request_heads, request_head);
        keep(&self.response_heads, response_head);
        for mut buffer in buffers {
            if buffer.capacity() > 0 && buffer.capacity() <= SPARE_BUFFER_BYTES_MAX {
                buffer.clear();
                keep(&self.buffers, Some(buffer));
            }
        }
    }
}

/// Keeps `spare` in `spares` unless [`SPARE_BUFFERS_MAX`] are kept already.
fn keep<T>(spares: &RefCell<Vec<T>>, spare: Option<T>) {
    let mut spares = spares.borrow_mut();
    if spares.len() < SPARE_BUFFERS_MAX {
        spares.extend(spare);
    }
}

/// How often a worker hands memory it freed back to the operating system.
pub const FREED_MEMORY_RELEASE_INTERVAL_MS: u64 = 1_000;

/// mimalloc purges pages a thread freed only when that thread allocates again, so a worker that
/// served a burst (thousands of requests in flight) and then goes quiet would keep the burst's
/// memory resident. Once a second each worker collects its own heap: the resident size follows
/// what is live, not the highest it has been.
async fn release_freed_memory_periodically() {
    let mut interval = tokio::time::interval(Duration::from_millis(FREED_MEMORY_RELEASE_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        // SAFETY: mi_collect takes no pointers; it frees and purges pages of the calling
        // thread's own heap, which only this thread uses.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

/// Completes the TLS handshake with the current snapshot's certificates, then serves the
/// connection like a plain one.
async fn serve_tls<S: Park>(worker: Rc<WorkerCtx<S>>, stream: S, peer: std::net::SocketAddr) -> proxy::Ended {
    static NO_SNAPSHOT_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Some(tls) = worker.snapshot().map(|snapshot| Arc::clone(&snapshot.tls)) else {
        if !NO_SNAPSHOT_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!("TLS connection closed: no configuration yet (logged once)");
        }
        stream.shutdown();
        return proxy::Ended::Closed;
    };
    // Boxed: the handshake's state is freed once it is done, not kept for the connection's life.
    match Box::pin(TlsStream::accept_with(stream, tls)).await {
        Ok(tls) => {
            tracing::debug!(%peer, version = ?tls.protocol_version(), "TLS handshake complete");
            proxy::serve_connection(worker, MaybeTls::Tls(Box::new(tls)), peer, None).await
        }
        Err(error) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            proxy::Ended::Closed
        }
    }
}

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
    /// Buffers, head boxes and policy states lent to connections while they serve a request.
    pub(crate) spares: Spares,
    /// Idle client connections that left their task (counted in `connections`).
    pub(crate) parked: parked::Parked<S>,
    /// The draining signal.
    pub(crate) drain: Arc<Drain>,
    /// The XDP pre-filter's user-space side.
    pub(crate) xdp: Arc<crate::xdp::XdpPlane>,
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

impl<S> WorkerCtx<S> {
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

    fn connection_closed(&self) {
        let open = self.connections.get().saturating_sub(1);
        self.connections.set(open);
        WorkerSlot::sub(&self.slot().connections_active, 1);
        if open == 0 {
            self.idle.notify_one();
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
