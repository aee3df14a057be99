//! Worker threads: one per core, each with its own runtime, listener, upstream pool and buffers,
//! and the tasks each runs: the accept loop, the connections' tasks, the parked connections'
//! watcher and the memory release.

pub(crate) mod ctx;
pub(crate) mod parked;
pub mod spares;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_contract::stats::{IoBackend, StatsRegion, WorkerSlot};

use crate::drain::{self, Drain};
use crate::io::epoll::Epoll;
use crate::io::maybe_tls::MaybeTls;
use crate::io::tls::TlsStream;
use crate::io::uring::Uring;
use crate::io::{Listener, Park, Runtime, Stream};
use crate::proxy::{self, Verdict};
use crate::snapshot::SnapshotCell;
use ctx::WorkerCtx;

/// Pause after an accept error other than draining (EMFILE, ENOBUFS): lets resources free up
/// instead of spinning.
pub const ACCEPT_ERROR_PAUSE_MS: u64 = 10;

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
    /// The queues to the telemetry thread.
    pub queues: Arc<crate::telemetry::Queues>,
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
        let worker: Rc<WorkerCtx<StreamOf<R>>> =
            Rc::new(WorkerCtx::new(setup.index, setup.stats, setup.cell, setup.drain, setup.xdp, setup.queues));
        tokio::task::spawn_local(release_freed_memory_periodically());
        tokio::task::spawn_local(hand_over_telemetry_periodically(Rc::clone(&worker)));
        tokio::task::spawn_local(watch_parked(Rc::clone(&worker)));
        tokio::task::spawn_local(proxy::outbound::send_one_way_calls(Rc::clone(&worker)));
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
        worker.all_closed().await;
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
                tracing::warn!(worker = worker.index(), %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                continue;
            }
        };
        match proxy::admit(worker, peer) {
            Verdict::Continue(()) => worker.connection_opened(),
            // Refused ([xdp] rules in user space, connections-per-worker-max): closed at once.
            Verdict::Respond(_) | Verdict::Fail(_) | Verdict::Done | Verdict::Close => {
                stream.shutdown();
                continue;
            }
        }
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

/// Closes a parked connection as an idle one is closed, and counts it out: a plain one at once, a
/// TLS one after sending close_notify (bounded by [`CLOSE_NOTIFY_TIMEOUT_MS`]) in a task of its own.
///
/// [`CLOSE_NOTIFY_TIMEOUT_MS`]: crate::io::tls::CLOSE_NOTIFY_TIMEOUT_MS
fn close_parked<S: Park>(worker: &Rc<WorkerCtx<S>>, mut stream: MaybeTls<S>) {
    if stream.is_tls() {
        let worker = Rc::clone(worker);
        tokio::task::spawn_local(async move {
            stream.close().await;
            drop(stream);
            worker.connection_closed();
        });
        return;
    }
    stream.shutdown();
    drop(stream);
    worker.connection_closed();
}

/// The watching task wakes at least this often, even with nothing due. tokio's timer driver wakes
/// itself (an eventfd write) whenever a timer is registered that is due before every timer it had
/// when it last went to sleep; on a busy worker the idle reads' [`IDLE_PARK_AFTER_MS`] timers would
/// be that once per event-loop turn (measured: 0.15 `write` calls per proxied request, none before
/// parking, when the 1 s memory-release interval was the nearest timer). A timer always due within
/// this tick keeps every idle read's timer behind it; ten wakes a second per worker cost nothing
/// measurable.
///
/// [`IDLE_PARK_AFTER_MS`]: crate::proxy::IDLE_PARK_AFTER_MS
pub(crate) const WATCH_TICK_MS: u64 = 100;

// The tick is due before any idle read's timer registered after it.
const _: () = assert!(WATCH_TICK_MS < crate::proxy::IDLE_PARK_AFTER_MS);

/// The worker's one task that watches its parked connections ([`parked`]): wakes readable ones
/// into fresh connection tasks, closes those idle past the keep-alive timeout, and all of them on
/// drain.
async fn watch_parked<S: Park>(worker: Rc<WorkerCtx<S>>) {
    let parked = &worker.parked;
    let mut drain_signal = worker.drain.subscribe();
    loop {
        // Read per turn: a reload that changes the timeout applies from the next wake.
        let limits = worker.snapshot().map(|snapshot| snapshot.config.limits).unwrap_or_default();
        let timeout = Duration::from_millis(u64::from(limits.keepalive_idle_timeout_ms));
        let tick = Instant::now() + Duration::from_millis(WATCH_TICK_MS);
        let deadline = parked.oldest_idle_since().map_or(tick, |since| tick.min(since + timeout));
        tokio::select! {
            () = parked.woken() => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
            () = drain::signalled(&mut drain_signal) => {
                parked.close_all(|stream| close_parked(&worker, stream));
                WorkerSlot::set(&worker.slot().connections_parked, 0);
                return;
            }
        }
        parked.wake_ready(
            |stream, peer, idle_since| spawn_connection(&worker, stream, peer, Some(idle_since)),
            |stream| close_parked(&worker, stream),
        );
        parked.close_expired(Instant::now(), timeout, |stream| close_parked(&worker, stream));
        // Every park queues its entry for this task, so each change is published on its turn.
        WorkerSlot::set(&worker.slot().connections_parked, parked.len() as u64);
    }
}

/// How often a worker hands memory it freed back to the operating system.
pub const FREED_MEMORY_RELEASE_INTERVAL_MS: u64 = 1_000;

/// mimalloc purges pages a thread freed only when that thread allocates again, so a worker that
/// served a burst (thousands of requests in flight) and then goes quiet would keep the burst's
/// memory resident. Once a second each worker collects its own heap: the resident size follows
/// what is live, not the highest it has been.
/// Hands the worker's counts to the telemetry thread once a batch interval.
async fn hand_over_telemetry_periodically<S>(worker: Rc<WorkerCtx<S>>) {
    let period = Duration::from_millis(portcullis_contract::telemetry::BATCH_INTERVAL_MS);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        worker.telemetry.borrow_mut().hand_over(&worker.queues);
    }
}

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
