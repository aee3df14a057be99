//! The snapshot-channel thread: connects to control, says hello, applies the snapshots it sends.
//!
//! Blocking and on its own thread, never on a worker. Control is the authority: any valid
//! generation it sends is applied. If control goes away, the data plane keeps serving and
//! reconnects with backoff.

use std::os::fd::{AsFd as _, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_contract::channel::{self, ChannelError, ToControl, ToDataPlane};
use portcullis_contract::snapshot;
use portcullis_contract::stats::StatsRegion;

use crate::last_good;
use crate::snapshot::{self as snapshot_cell, SnapshotCell};

/// First reconnect delay after control is unreachable.
pub const RECONNECT_DELAY_INITIAL_MS: u64 = 100;
/// Reconnect delay ceiling: control restarts are noticed within 2 s.
pub const RECONNECT_DELAY_MAX_MS: u64 = 2_000;
/// How often the workers' reports of unknown `kid`s go to control (at most one message each).
pub const KEY_MISS_REPORT_INTERVAL_MS: u64 = 1_000;

/// What the channel thread needs.
#[derive(Debug)]
pub struct ChannelTask {
    /// The telemetry thread's outbox (batches for control) and access-log reopen flag.
    pub telemetry: Arc<crate::telemetry::thread::Shared>,
    /// `snapshot.sock` in the data directory.
    pub socket: PathBuf,
    /// `snapshots/last-good.snap` in the data directory.
    pub last_good: PathBuf,
    /// Where snapshots are published to workers.
    pub cell: Arc<SnapshotCell>,
    /// The stats region (its header carries the published generation).
    pub stats: Arc<StatsRegion>,
    /// Worker count, for the hello.
    pub workers: u32,
    /// `uring` or `epoll`, for the hello.
    pub io_backend: &'static str,
    /// Listening addresses, for the hello.
    pub listen: Vec<String>,
    /// The TLS listening address, for the hello.
    pub listen_tls: Option<String>,
}

/// Starts the channel thread. It never returns: the data plane outlives control.
pub fn spawn(task: ChannelTask) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("snapshot-channel".into()).spawn(move || task.run())
}

impl ChannelTask {
    fn run(self) {
        let mut delay_ms = RECONNECT_DELAY_INITIAL_MS;
        let mut outage_logged = false;
        loop {
            match channel::connect(&self.socket) {
                Ok(socket) => {
                    delay_ms = RECONNECT_DELAY_INITIAL_MS;
                    tracing::info!(socket = %self.socket.display(), "connected to control");
                    if let Err(error) = self.session(&socket) {
                        tracing::warn!(%error, "snapshot channel error");
                    }
                    tracing::info!("control disconnected; still serving generation {}", self.cell.generation());
                    // The disconnect line above opens this outage.
                    outage_logged = true;
                }
                Err(error) => {
                    if !outage_logged {
                        tracing::info!(
                            socket = %self.socket.display(),
                            %error,
                            "control is not reachable; serving generation {} and retrying",
                            self.cell.generation()
                        );
                        outage_logged = true;
                    }
                    std::thread::sleep(Duration::from_millis(delay_ms));
                    delay_ms = (delay_ms * 2).min(RECONNECT_DELAY_MAX_MS);
                }
            }
        }
    }

    /// One connection: hello, then snapshots until control closes.
    fn session(&self, socket: &OwnedFd) -> Result<(), ChannelError> {
        let hello = ToControl::Hello {
            pid: std::process::id(),
            workers: self.workers,
            io_backend: self.io_backend.to_owned(),
            listen: self.listen.clone(),
            listen_tls: self.listen_tls.clone(),
            generation: self.cell.generation(),
        };
        channel::send(socket, &hello, None)?;
        // Batches control has not acknowledged go again on this connection.
        self.telemetry.outbox.reconnected();
        // Wake up every second to pass on the workers' key-miss reports (validate-jwt).
        rustix::net::sockopt::set_socket_timeout(
            socket,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_millis(KEY_MISS_REPORT_INTERVAL_MS)),
        )
        .map_err(std::io::Error::from)?;
        loop {
            let received = match channel::recv::<ToDataPlane>(socket) {
                Ok(Some(received)) => received,
                Ok(None) => return Ok(()),
                Err(ChannelError::Io(error)) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    self.report_key_misses(socket)?;
                    self.send_telemetry(socket)?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let (message, fd) = received;
            let generation = match message {
                ToDataPlane::Snapshot { generation } => generation,
                ToDataPlane::TelemetryAck { sequence } => {
                    self.telemetry.outbox.acknowledged(sequence);
                    self.send_telemetry(socket)?;
                    continue;
                }
                ToDataPlane::ReopenLogs => {
                    self.telemetry.reopen.store(true, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
            };
            let reply = match self.apply(generation, fd) {
                Ok(()) => ToControl::Applied { generation },
                Err(reason) => {
                    tracing::warn!(generation, %reason, "rejected snapshot; still serving generation {}", self.cell.generation());
                    ToControl::Rejected { generation, reason }
                }
            };
            channel::send(socket, &reply, None)?;
            // Snapshots arriving more often than the timeout must not starve the reports.
            self.report_key_misses(socket)?;
            self.send_telemetry(socket)?;
        }
    }

    /// Sends control the telemetry batches not sent on this connection yet, each as a sealed
    /// memfd; they stay in the outbox until control acknowledges them.
    fn send_telemetry(&self, socket: &OwnedFd) -> Result<(), ChannelError> {
        for (sequence, encoded) in self.telemetry.outbox.take_unsent() {
            let fd = match snapshot::sealed_memfd("portcullis-telemetry", &encoded) {
                Ok(fd) => fd,
                Err(error) => {
                    tracing::warn!(%error, sequence, "cannot seal a telemetry batch; it goes after the next reconnect");
                    continue;
                }
            };
            channel::send(socket, &ToControl::Telemetry { sequence }, Some(fd.as_fd()))?;
        }
        Ok(())
    }

    /// Tells control which OpenID URLs saw tokens with a `kid` no key answers to
    /// ([`crate::jwt::KEY_MISSES`]), so it fetches their keys again. The bits index the current
    /// snapshot's URLs; a worker still on the previous one may name a URL by its old place, which
    /// costs at most one needless (and rate-limited) fetch.
    fn report_key_misses(&self, socket: &OwnedFd) -> Result<(), ChannelError> {
        let bits = crate::jwt::KEY_MISSES.swap(0, std::sync::atomic::Ordering::Relaxed);
        if bits == 0 {
            return Ok(());
        }
        let Some(snapshot) = self.cell.load() else { return Ok(()) };
        let urls: Vec<String> = snapshot
            .programs
            .openid_urls()
            .iter()
            .enumerate()
            .filter(|(index, _)| bits & (1u64 << (*index).min(63)) != 0)
            .map(|(_, url)| url.clone())
            .collect();
        if urls.is_empty() {
            return Ok(());
        }
        channel::send(socket, &ToControl::UnknownKid { urls }, None)
    }

    /// Checks, builds and publishes one snapshot; the error is the reason sent back to control.
    fn apply(&self, announced: u64, fd: Option<OwnedFd>) -> Result<(), String> {
        let fd = fd.ok_or_else(|| "no memfd attached to the snapshot message".to_owned())?;
        let (header, config, raw) = snapshot::read_sealed_memfd(fd.as_fd()).map_err(|error| error.to_string())?;
        if header.generation != announced {
            return Err(format!("message announces generation {announced} but the snapshot is {}", header.generation));
        }
        snapshot_cell::install(&self.cell, &self.stats, header.generation, config)
            .map_err(|error| error.to_string())?;
        tracing::info!(generation = header.generation, "applied snapshot");
        if let Err(error) = last_good::store(&self.last_good, &raw) {
            // The snapshot serves; only a cold start without control would miss it.
            tracing::warn!(%error, "could not save the last-good snapshot");
        }
        Ok(())
    }
}
