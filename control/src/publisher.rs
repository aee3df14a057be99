//! The snapshot channel server: holds the current generation, sends it to the data plane as a
//! sealed memfd, and records what the data plane answers (`Applied` / `Rejected`).
//!
//! It runs on its own blocking thread ([`Publisher::serve`]); reloads call [`Publisher::publish`]
//! from the admin socket and wait for the answer with [`Publisher::wait`].

use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use portcullis_contract::channel::{self, ChannelError, ToControl, ToDataPlane};
use portcullis_contract::key_index::KeyIndex;
use portcullis_contract::model::Config;
use portcullis_contract::snapshot::{self, SnapshotError};
use portcullis_contract::telemetry::Batch;
use serde::{Deserialize, Serialize};

mod reloads;

pub use reloads::{ReloadResult, Reloads};

/// Pause after a failed accept, so a persistent failure does not spin the thread.
pub const ACCEPT_RETRY_DELAY_MS: u64 = 100;

/// What the data plane said about itself in its `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlaneInfo {
    pub pid: u32,
    pub workers: u32,
    /// `uring` or `epoll`.
    pub io_backend: String,
    /// Addresses the workers listen on (`ip:port`).
    pub listen: Vec<String>,
    /// Address the workers listen on for TLS (`ip:port`), if any.
    pub listen_tls: Option<String>,
}

/// How a published generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The data plane applied it (or a later generation).
    Applied,
    /// The data plane refused it and keeps serving the previous one.
    Rejected(String),
    /// No answer in time; `connected` says whether a data plane was connected at the end.
    TimedOut { connected: bool },
}

/// A consistent copy of the publisher's state, for status output.
#[derive(Debug, Clone)]
pub struct PublisherView {
    /// The generation control has published (the latest snapshot).
    pub generation: u64,
    /// The latest generation the data plane acknowledged (0: none yet).
    pub applied_generation: u64,
    /// Whether a data plane is connected to the channel now.
    pub connected: bool,
    /// The connected (or last connected) data plane.
    pub dataplane: Option<DataPlaneInfo>,
    /// The latest compiled config (shared, not copied: it may hold many thousands of keys).
    pub config: Arc<Config>,
    /// The `<openid-config>` URLs of the config and how their keys were fetched.
    pub openid: Vec<crate::openid::OpenIdStatus>,
}

/// What the ops listener reads at every probe and scrape: cheap to take (no config, no keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherHealth {
    /// The generation control has published.
    pub generation: u64,
    /// The latest generation a data plane acknowledged (0: none yet).
    pub applied_generation: u64,
    /// When the data plane last acknowledged a generation (Unix ms; 0: never).
    pub applied_unix_ms: u64,
    /// Generations the data plane refused (it kept serving the previous one).
    pub rejections: u64,
    /// Whether a data plane is connected to the channel now.
    pub connected: bool,
    /// The connected (or last connected) data plane.
    pub dataplane: Option<DataPlaneInfo>,
}

/// Why a snapshot could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot build the snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("cannot index the subscription keys: {0}")]
    KeyIndex(#[from] portcullis_contract::key_index::KeyIndexError),
}

/// What control does with each telemetry batch the data plane sends (fold it into the metrics
/// and the analytics); `Err` leaves the batch unacknowledged, so the data plane sends it again.
pub type TelemetryHandler = Box<dyn Fn(&Batch) -> Result<(), String> + Send + Sync>;

/// The current snapshot and the data plane's view of it. Shared by the channel thread and the admin socket.
pub struct Publisher {
    state: Mutex<State>,
    changed: Condvar,
    /// The OpenID keys every published config gets (`validate-jwt`'s `<openid-config>`).
    openid: Arc<crate::openid::Store>,
    /// Set once by `up`; batches that arrive before are acknowledged unhandled.
    telemetry: std::sync::OnceLock<TelemetryHandler>,
    /// The last batch handled: (data-plane pid, sequence), so a batch sent again is not counted twice.
    last_batch: Mutex<(u32, u64)>,
    /// Reloads by result (`portcullis_config_reloads_total`).
    reloads: Reloads,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("state", &self.state).finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    generation: u64,
    config: Arc<Config>,
    /// The encoded snapshot of `generation`: the same bytes are re-sent on reconnect.
    snapshot: Vec<u8>,
    connection: Option<Arc<OwnedFd>>,
    dataplane: Option<DataPlaneInfo>,
    applied_generation: u64,
    applied_unix_ms: u64,
    rejections: u64,
    rejection: Option<(u64, String)>,
}

impl Publisher {
    /// A publisher whose first snapshot is `config` as `generation` (≥ 1).
    pub fn new(config: Config, generation: u64) -> Result<Self, PublishError> {
        Self::with_openid(config, generation, Arc::default())
    }

    /// As [`Publisher::new`], with the OpenID keys fetched so far (they go into every snapshot).
    pub fn with_openid(
        mut config: Config,
        generation: u64,
        openid: Arc<crate::openid::Store>,
    ) -> Result<Self, PublishError> {
        config.jwt.openid = openid.sets_for(&config);
        let snapshot = snapshot::encode(generation, &config)?;
        let state = State {
            generation,
            config: Arc::new(config),
            snapshot,
            connection: None,
            dataplane: None,
            applied_generation: 0,
            applied_unix_ms: 0,
            rejections: 0,
            rejection: None,
        };
        Ok(Self {
            state: Mutex::new(state),
            changed: Condvar::new(),
            openid,
            telemetry: std::sync::OnceLock::new(),
            last_batch: Mutex::new((0, 0)),
            reloads: Reloads::default(),
        })
    }

    /// Sets what is done with each telemetry batch (once; later calls are ignored).
    pub fn set_telemetry_handler(&self, handler: TelemetryHandler) {
        let _ = self.telemetry.set(handler);
    }

    /// The OpenID key store the snapshots take their keys from.
    pub fn openid(&self) -> &Arc<crate::openid::Store> {
        &self.openid
    }

    /// The reload counters (the admin socket's reloads and applies, the store's publishes).
    pub fn reloads(&self) -> &Reloads {
        &self.reloads
    }

    /// Generations, the data plane's answers and its hello, without the config.
    pub fn health(&self) -> PublisherHealth {
        let state = self.lock();
        PublisherHealth {
            generation: state.generation,
            applied_generation: state.applied_generation,
            applied_unix_ms: state.applied_unix_ms,
            rejections: state.rejections,
            connected: state.connection.is_some(),
            dataplane: state.dataplane.clone(),
        }
    }

    /// Publishes the current config again with the OpenID keys as they are now (after a
    /// refresh changed them). Returns the generation.
    /// Done under the state lock, so a reload published meanwhile is never replaced by the
    /// config it superseded.
    pub fn republish_keys(&self) -> Result<u64, PublishError> {
        let mut state = self.lock();
        let mut config = Config::clone(&state.config);
        config.jwt.openid = self.openid.sets_for(&config);
        config.key_index = KeyIndex::build(crate::config::random_seed(), config.key_index.entries().to_vec())?;
        install(&mut state, config)
    }

    /// Publishes `config` as the next generation and sends it to the connected data plane (if any;
    /// otherwise it gets it when it connects). Returns the generation.
    pub fn publish(&self, mut config: Config) -> Result<u64, PublishError> {
        config.jwt.openid = self.openid.sets_for(&config);
        install(&mut self.lock(), config)
    }

    /// Waits until the data plane applies `generation` (or a later one), rejects it, or `timeout` passes.
    pub fn wait(&self, generation: u64, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.applied_generation >= generation {
                return Outcome::Applied;
            }
            if let Some((rejected, reason)) = &state.rejection {
                if *rejected == generation {
                    return Outcome::Rejected(reason.clone());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Outcome::TimedOut { connected: state.connection.is_some() };
            }
            state = match self.changed.wait_timeout(state, deadline - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// A copy of the current state.
    pub fn view(&self) -> PublisherView {
        let state = self.lock();
        PublisherView {
            generation: state.generation,
            applied_generation: state.applied_generation,
            connected: state.connection.is_some(),
            dataplane: state.dataplane.clone(),
            openid: self.openid.status(&state.config),
            config: Arc::clone(&state.config),
        }
    }

    /// Serves the channel's listening socket forever: one data plane at a time, again after each disconnect.
    pub fn serve(&self, listener: OwnedFd) {
        loop {
            match channel::accept(&listener) {
                Ok(connection) => self.serve_connection(Arc::new(connection)),
                Err(error) => {
                    tracing::warn!("snapshot channel: accept failed: {error}");
                    std::thread::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS));
                }
            }
        }
    }

    fn serve_connection(&self, connection: Arc<OwnedFd>) {
        loop {
            match channel::recv::<ToControl>(connection.as_fd()) {
                Ok(Some((ToControl::Telemetry { sequence }, fd))) => self.receive_telemetry(sequence, fd, &connection),
                Ok(Some((message, _))) => self.handle(message, &connection),
                Ok(None) => break,
                Err(error @ (ChannelError::Decode(_) | ChannelError::Truncated)) => {
                    tracing::warn!("snapshot channel: ignoring a bad message from the data plane: {error}");
                }
                Err(error) => {
                    tracing::warn!("snapshot channel: {error}");
                    break;
                }
            }
        }
        let mut state = self.lock();
        if state.connection.as_ref().is_some_and(|current| Arc::ptr_eq(current, &connection)) {
            state.connection = None;
        }
        drop(state);
        tracing::warn!("the data plane disconnected from the snapshot channel");
        self.changed.notify_all();
    }

    fn handle(&self, message: ToControl, connection: &Arc<OwnedFd>) {
        let mut state = self.lock();
        match message {
            ToControl::Hello { pid, workers, io_backend, listen, listen_tls, generation } => {
                tracing::info!(
                    "data plane connected: pid {pid}, {workers} workers, io={io_backend}, listening on {}{}, serving generation {generation}",
                    listen.join(", "),
                    listen_tls.as_deref().map(|addr| format!(" and {addr} (TLS)")).unwrap_or_default()
                );
                state.dataplane = Some(DataPlaneInfo { pid, workers, io_backend, listen, listen_tls });
                state.connection = Some(Arc::clone(connection));
                if generation >= state.generation {
                    // Generations only rise: a data plane that served a newer one (from disk or an
                    // earlier control) gets the current config under a higher number.
                    if let Err(error) = renumber(&mut state, generation + 1) {
                        tracing::error!("cannot renumber the snapshot above generation {generation}: {error}");
                    }
                }
                send_current(&mut state);
            }
            ToControl::Applied { generation } => {
                tracing::info!("data plane applied generation {generation}");
                state.applied_generation = state.applied_generation.max(generation);
                state.applied_unix_ms = unix_ms();
            }
            ToControl::Telemetry { .. } => {} // handled by `receive_telemetry`, outside the state lock
            ToControl::UnknownKid { urls } => {
                tracing::info!("the data plane saw tokens with an unknown kid for {}", urls.join(", "));
                self.openid.report_misses(&urls);
            }
            ToControl::Rejected { generation, reason } => {
                tracing::error!(
                    "DATA PLANE REJECTED generation {generation}: {reason}; it keeps serving the previous one"
                );
                state.rejection = Some((generation, reason));
                state.rejections += 1;
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    /// One telemetry batch: decoded, handed to the handler unless it was handled before (sent
    /// again after a lost acknowledgement), and acknowledged once handled. A batch that cannot be
    /// read is acknowledged too (sending it again would fail again), and said so.
    fn receive_telemetry(&self, sequence: u64, fd: Option<OwnedFd>, connection: &Arc<OwnedFd>) {
        let batch = match fd.map(portcullis_contract::telemetry::read_batch_memfd) {
            Some(Ok(batch)) => batch,
            Some(Err(error)) => {
                tracing::warn!("telemetry batch {sequence} cannot be read ({error}); its interval is lost");
                return self.acknowledge(sequence, connection);
            }
            None => {
                tracing::warn!("telemetry batch {sequence} came without its memfd; its interval is lost");
                return self.acknowledge(sequence, connection);
            }
        };
        let mut last = self.last_batch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let seen = last.0 == batch.data_plane_pid && batch.sequence <= last.1;
        if !seen {
            if let Some(handler) = self.telemetry.get() {
                if let Err(error) = handler(&batch) {
                    tracing::warn!(
                        "telemetry batch {sequence} not recorded ({error}); the data plane will send it again"
                    );
                    return;
                }
            }
            *last = (batch.data_plane_pid, batch.sequence);
        }
        drop(last);
        self.acknowledge(sequence, connection);
    }

    fn acknowledge(&self, sequence: u64, connection: &Arc<OwnedFd>) {
        if let Err(error) = channel::send(connection.as_fd(), &ToDataPlane::TelemetryAck { sequence }, None) {
            tracing::warn!("cannot acknowledge telemetry batch {sequence}: {error}");
        }
    }

    /// Asks the data plane to reopen its access log (`ctl logs reopen`). `false`: no data plane
    /// is connected.
    pub fn reopen_logs(&self) -> bool {
        let state = self.lock();
        let Some(connection) = state.connection.clone() else { return false };
        drop(state);
        channel::send(connection.as_fd(), &ToDataPlane::ReopenLogs, None).is_ok()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent before it can panic, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Re-encodes the current config as `generation`, with a fresh key-index seed (one seed per snapshot).
fn renumber(state: &mut State, generation: u64) -> Result<(), PublishError> {
    let mut config = Config::clone(&state.config);
    config.key_index = KeyIndex::build(crate::config::random_seed(), config.key_index.entries().to_vec())?;
    state.snapshot = snapshot::encode(generation, &config)?;
    state.generation = generation;
    state.config = Arc::new(config);
    Ok(())
}

/// Encodes `config` as the next generation, makes it the current snapshot and sends it to the
/// connected data plane (if any); returns the generation. Nothing changes when it does not encode.
fn install(state: &mut State, config: Config) -> Result<u64, PublishError> {
    let generation = state.generation + 1;
    state.snapshot = snapshot::encode(generation, &config)?;
    state.generation = generation;
    state.config = Arc::new(config);
    send_current(state);
    Ok(generation)
}

/// Sends the current snapshot to the connected data plane, if any. A failed send drops the
/// connection: the channel thread sees the close, and the data plane gets it again when it reconnects.
fn send_current(state: &mut State) {
    let Some(connection) = state.connection.clone() else { return };
    let generation = state.generation;
    let sent = snapshot::sealed_memfd(&format!("portcullis-snapshot-{generation}"), &state.snapshot)
        .map_err(|error| error.to_string())
        .and_then(|memfd| {
            channel::send(connection.as_fd(), &ToDataPlane::Snapshot { generation }, Some(memfd.as_fd()))
                .map_err(|error| error.to_string())
        });
    match sent {
        Ok(()) => tracing::info!("published generation {generation} to the data plane"),
        Err(error) => {
            tracing::error!("cannot send generation {generation} to the data plane: {error}");
            let _ = rustix::net::shutdown(connection.as_fd(), rustix::net::Shutdown::Both);
            state.connection = None;
        }
    }
}

#[cfg(test)]
mod tests;
