//! Start-up, serving and draining of the whole data plane process, in the order the brief sets.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use portcullis_contract::layout::DataDir;
use portcullis_contract::stats::{IoBackend, StatsRegion};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::channel::{self, ChannelTask};
use crate::drain::Drain;
use crate::snapshot::{self, SnapshotCell};
use crate::worker::{self, WorkerSetup};
use crate::xdp::{XdpOptions, XdpPlane};
use crate::{io, last_good, listener};

/// How often the main thread checks whether draining workers have finished.
pub const DRAIN_POLL_MS: u64 = 10;

/// Which I/O backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoChoice {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    /// io_uring or fail.
    Uring,
    /// epoll.
    Epoll,
}

/// `--xdp on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpSwitch {
    /// Load the XDP pre-filter when the process may (CAP_BPF, CAP_NET_ADMIN).
    On,
    /// Enforce the `[xdp]` rules in user space only.
    Off,
}

/// Everything the command line sets.
#[derive(Debug, Clone)]
pub struct Options {
    /// The data directory shared with control.
    pub data_dir: PathBuf,
    /// Address every worker listens on.
    pub listen: SocketAddr,
    /// Address every worker also listens on for TLS (`--listen-tls`), if any.
    pub listen_tls: Option<SocketAddr>,
    /// Worker threads.
    pub workers: usize,
    /// I/O backend choice.
    pub io: IoChoice,
    /// Longest wait for in-flight requests after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
    /// The XDP pre-filter: interfaces, or off.
    pub xdp: XdpOptions,
}

/// Runs the data plane until SIGTERM/SIGINT, then drains. Returns once drained (or timed out).
pub fn run(options: &Options) -> anyhow::Result<()> {
    // Registered first, so a signal during start-up drains instead of killing us mid-way.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).context("installing signal handlers")?;
    let data_dir = DataDir::new(&options.data_dir);
    for directory in data_dir.directories() {
        create_private_dir(&directory)?;
    }
    let backend = choose_backend(options.io)?;
    let started_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let stats = Arc::new(
        StatsRegion::create(&data_dir.stats_region(), options.workers, backend, started_unix_ms)
            .context("creating the stats region")?,
    );
    let pid_path = data_dir.dataplane_pid();
    std::fs::write(&pid_path, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pid_path.display()))?;
    let limits = Arc::clone(&crate::proxy::policies::LIMITS);
    match crate::quota_state::load(&data_dir.quota_counters(), &limits) {
        Ok(0) => {}
        Ok(restored) => tracing::info!(restored, "quota counters restored"),
        Err(error) => tracing::warn!(%error, "quota counters not restored; quotas start from zero"),
    }
    crate::quota_state::spawn(Arc::clone(&limits), data_dir.quota_counters())
        .context("starting the quota-state thread")?;
    let cell = Arc::new(SnapshotCell::new());
    load_last_good(&data_dir.last_good_snapshot(), &cell, &stats);

    let listeners = listener::bind_all(options.listen, options.workers)
        .with_context(|| format!("binding {} ({} sockets)", options.listen, options.workers))?;
    let local = listeners.first().map(|l| l.local_addr()).transpose()?.context("no worker to listen")?;
    tracing::info!("listening on {local} ({} workers, io={})", options.workers, backend.as_str());
    let tls_listeners = match options.listen_tls {
        // SO_REUSEPORT would let both bind and the kernel would mix plain and TLS connections.
        Some(addr) if addr.port() != 0 && addr == local => bail!("--listen-tls {addr} is the --listen address"),
        Some(addr) => listener::bind_all(addr, options.workers)
            .with_context(|| format!("binding --listen-tls {addr} ({} sockets)", options.workers))?,
        None => Vec::new(),
    };
    let local_tls = tls_listeners.first().map(|l| l.local_addr()).transpose()?;
    if let Some(local_tls) = local_tls {
        tracing::info!("listening for TLS on {local_tls}");
    }
    let listening: Vec<SocketAddr> = std::iter::once(local).chain(local_tls).collect();
    let xdp = Arc::new(XdpPlane::start(&options.xdp, data_dir.xdp_blocks(), &listening).context("starting XDP")?);
    crate::xdp::service::spawn(Arc::clone(&xdp), Arc::clone(&cell), data_dir.xdp_socket())
        .context("starting the XDP threads")?;

    let telemetry = start_telemetry(&cell, &stats, options.workers, data_dir.root())?;
    channel::spawn(ChannelTask {
        telemetry: Arc::clone(&telemetry),
        socket: data_dir.snapshot_socket(),
        last_good: data_dir.last_good_snapshot(),
        cell: Arc::clone(&cell),
        stats: Arc::clone(&stats),
        workers: options.workers as u32,
        io_backend: backend.as_str(),
        listen: vec![local.to_string()],
        listen_tls: local_tls.map(|addr| addr.to_string()),
    })
    .context("starting the snapshot channel thread")?;
    crate::upstream::health::spawn(Arc::clone(&cell), data_dir.upstreams_report())
        .context("starting the health-check thread")?;
    crate::trace::export::spawn(Arc::clone(&cell)).context("starting the span exporter thread")?;
    crate::identity::refresh::spawn(Arc::clone(&cell)).context("starting the identity thread")?;

    let drain = Arc::new(Drain::new());
    let shared = Shared {
        cell,
        stats: Arc::clone(&stats),
        drain: Arc::clone(&drain),
        xdp: Arc::clone(&xdp),
        queues: Arc::clone(&telemetry.queues),
    };
    let (workers, listener_handles) = spawn_workers(backend, listeners, tls_listeners, &shared)?;
    let _ = signals.forever().next();
    drain_and_wait(&stats, &drain, listener_handles, workers, options.drain_timeout);
    // The last counts of a clean stop are kept too.
    if let Err(error) = crate::quota_state::save(&data_dir.quota_counters(), &limits, None) {
        tracing::warn!(%error, "could not save the quota counters");
    }
    xdp.shutdown();
    Ok(())
}

fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Probes io_uring when asked for it (tokio-uring panics where the kernel refuses a ring).
fn choose_backend(choice: IoChoice) -> anyhow::Result<IoBackend> {
    match choice {
        IoChoice::Epoll => Ok(IoBackend::Epoll),
        IoChoice::Uring => match io::probe_uring() {
            Ok(()) => Ok(IoBackend::Uring),
            Err(error) => bail!(
                "--io uring: io_uring is unavailable on this host ({error}); use --io auto (falls back to epoll) or --io epoll"
            ),
        },
        IoChoice::Auto => match io::probe_uring() {
            Ok(()) => Ok(IoBackend::Uring),
            Err(error) => {
                tracing::warn!("io_uring unavailable ({error}); falling back to epoll");
                Ok(IoBackend::Epoll)
            }
        },
    }
}

/// Serves the on-disk last-good snapshot, if there is a valid one.
fn load_last_good(path: &Path, cell: &SnapshotCell, stats: &StatsRegion) {
    match last_good::load(path) {
        Ok(Some((header, config))) => match snapshot::install(cell, stats, header.generation, config) {
            Ok(()) => tracing::info!(generation = header.generation, "serving the last-good snapshot from disk"),
            Err(error) => {
                tracing::warn!(%error, "ignoring the last-good snapshot; answering 503 until control sends one")
            }
        },
        Ok(None) => tracing::info!("no snapshot yet: answering 503 until control sends one"),
        Err(error) => tracing::warn!(%error, "ignoring the last-good snapshot; answering 503 until control sends one"),
    }
}

type Workers = (Vec<JoinHandle<()>>, Vec<OwnedFd>);

/// Starts the telemetry thread (docs/observability.md), with per-worker record queues of the
/// default size or the last-good snapshot's `[access-log] queue-records` if larger (a smaller
/// setting applies at once, a larger one from the next start), and SIGUSR1 reopening the access
/// log.
fn start_telemetry(
    cell: &Arc<SnapshotCell>,
    stats: &Arc<StatsRegion>,
    workers: usize,
    data_dir: &Path,
) -> anyhow::Result<Arc<crate::telemetry::thread::Shared>> {
    let default = portcullis_contract::telemetry::ACCESS_LOG_QUEUE_RECORDS_DEFAULT;
    let records =
        cell.load().map_or(default, |snapshot| snapshot.config.observability.access_log.queue_records.max(default));
    let shared = Arc::new(crate::telemetry::thread::Shared::new(workers, records as usize));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&shared.reopen))
        .context("installing the SIGUSR1 handler (access-log reopen)")?;
    crate::telemetry::thread::spawn(crate::telemetry::thread::TelemetryTask {
        shared: Arc::clone(&shared),
        cell: Arc::clone(cell),
        stats: Arc::clone(stats),
        data_dir: data_dir.to_path_buf(),
    })
    .context("starting the telemetry thread")?;
    Ok(shared)
}

/// What every worker shares with the other threads.
struct Shared {
    cell: Arc<SnapshotCell>,
    stats: Arc<StatsRegion>,
    drain: Arc<Drain>,
    xdp: Arc<XdpPlane>,
    queues: Arc<crate::telemetry::Queues>,
}

fn spawn_workers(
    backend: IoBackend,
    listeners: Vec<std::net::TcpListener>,
    tls_listeners: Vec<std::net::TcpListener>,
    shared: &Shared,
) -> anyhow::Result<Workers> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handles = Vec::with_capacity(listeners.len());
    let mut listener_handles = Vec::with_capacity(listeners.len() + tls_listeners.len());
    let mut tls_listeners = tls_listeners.into_iter();
    for (index, listener) in listeners.into_iter().enumerate() {
        let tls_listener = tls_listeners.next();
        // Kept so draining can shut each socket down whatever its worker is doing.
        listener_handles.push(OwnedFd::from(listener.try_clone()?));
        if let Some(tls_listener) = &tls_listener {
            listener_handles.push(OwnedFd::from(tls_listener.try_clone()?));
        }
        let setup = WorkerSetup {
            index,
            listener,
            tls_listener,
            cell: Arc::clone(&shared.cell),
            stats: Arc::clone(&shared.stats),
            drain: Arc::clone(&shared.drain),
            xdp: Arc::clone(&shared.xdp),
            queues: Arc::clone(&shared.queues),
            core: cores.get(index % cores.len().max(1)).copied(),
        };
        handles.push(worker::spawn(backend, setup).with_context(|| format!("starting worker {index}"))?);
    }
    Ok((handles, listener_handles))
}

/// Stops accepting, lets in-flight requests finish, waits for the workers up to `timeout`.
fn drain_and_wait(
    stats: &StatsRegion,
    drain: &Drain,
    listener_handles: Vec<OwnedFd>,
    workers: Vec<JoinHandle<()>>,
    timeout: Duration,
) {
    drain.start();
    stats.header().draining.store(1, Ordering::Relaxed);
    // Shutting a listening socket down wakes a pending accept (also an io_uring one) and takes
    // the socket out of the SO_REUSEPORT group; closing our copy then frees it.
    for handle in listener_handles {
        let _ = rustix::net::shutdown(&handle, rustix::net::Shutdown::Both);
    }
    tracing::info!("draining: stopped accepting, waiting for {} in-flight requests", in_flight(stats));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && workers.iter().any(|worker| !worker.is_finished()) {
        std::thread::sleep(Duration::from_millis(DRAIN_POLL_MS));
    }
    if workers.iter().all(|worker| worker.is_finished()) {
        for worker in workers {
            let _ = worker.join();
        }
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!("drain timeout: cutting {} in-flight requests; exiting", in_flight(stats));
    }
}

fn in_flight(stats: &StatsRegion) -> u64 {
    (0..stats.worker_count()).filter_map(|i| stats.worker(i)).map(|slot| slot.in_flight.load(Ordering::Relaxed)).sum()
}
