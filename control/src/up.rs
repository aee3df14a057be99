//! `portcullis up`: loads the config, starts the echo backend and the data plane, publishes the
//! snapshot, serves the admin socket, restarts children that die, and stops everything in order.

pub mod children;
mod startup;

use std::ffi::OsString;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use portcullis_contract::layout::DataDir;
use portcullis_management::analytics::{Analytics, COMPACTION_INTERVAL_MS, SharedAnalytics};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::admin::server::{self as admin_server, AdminContext};
use crate::config::{ECHO_BACKEND_URL, NamedValue, NamedValues};
use crate::management;
use crate::metrics::Metrics;
use crate::publisher::{Outcome, Publisher, ReloadResult};
use children::{Backoff, Supervised};

pub use startup::{demo_lines, next_generation};

/// The data plane must apply the first snapshot within 30 s, or start-up fails.
pub const FIRST_APPLY_TIMEOUT_MS: u64 = 30_000;
/// After the drain timeout, the data plane gets 5 s more to exit before SIGKILL.
pub const KILL_GRACE_MS: u64 = 5_000;
/// The echo backend has nothing to drain; 2 s to exit after SIGTERM.
pub const ECHO_STOP_GRACE_MS: u64 = 2_000;
/// Environment variable naming the data plane binary (when --dataplane-bin is not given).
pub const DATAPLANE_ENV: &str = "PORTCULLIS_DATAPLANE";
/// The data plane binary's name, looked up next to `portcullis` by default.
pub const DATAPLANE_BIN: &str = "portcullis-dataplane";

/// How the data plane does I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoMode {
    /// io_uring where the kernel allows it, else epoll.
    Auto,
    Uring,
    Epoll,
}

/// `portcullis up` options.
#[derive(Debug, Clone, clap::Args)]
pub struct UpOptions {
    /// Config directory (default: the demo config in <data-dir>/quickstart, created on first use).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (default: $PORTCULLIS_DATA_DIR, $XDG_STATE_HOME/portcullis or ~/.local/state/portcullis).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address the gateway listens on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Also listen for TLS (HTTPS) here, with the certificates of `[tls]` (port 0: any free port).
    #[arg(long)]
    pub listen_tls: Option<String>,
    /// Address of the management REST API (port 0: any free port; keep it on loopback or a
    /// management network).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen_management: String,
    /// Address of the ops listener: Prometheus `/metrics`, `/healthz`, `/readyz` (port 0: any
    /// free port; keep it on loopback or a monitoring network).
    #[arg(long, default_value = crate::ops::LISTEN_OPS_DEFAULT)]
    pub listen_ops: String,
    /// Address of the developer portal (port 0: any free port; `[portal] public-url` in
    /// gateway.toml names the URL developers see, when a proxy stands in front).
    #[arg(long, default_value = portcullis_management::portal::LISTEN_PORTAL_DEFAULT)]
    pub listen_portal: String,
    /// Data plane worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<u32>,
    /// Data plane I/O backend.
    #[arg(long, value_enum, default_value_t = IoMode::Auto)]
    pub io: IoMode,
    /// Address of the built-in echo backend.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub echo_listen: SocketAddr,
    /// Do not run the echo backend (then nothing provides {{echo-backend-url}}).
    #[arg(long)]
    pub no_echo_backend: bool,
    /// The data plane binary (default: $PORTCULLIS_DATAPLANE, else portcullis-dataplane next to this binary).
    #[arg(long)]
    pub dataplane_bin: Option<PathBuf>,
    /// How long the data plane may drain in-flight requests on shutdown.
    #[arg(long, default_value_t = portcullis_contract::shutdown::DRAIN_TIMEOUT_MS_DEFAULT)]
    pub drain_timeout_ms: u64,
}

/// Everything resolved before any process starts.
#[derive(Debug)]
struct Plan {
    options: UpOptions,
    data_dir: DataDir,
    config_dir: PathBuf,
    dataplane_bin: PathBuf,
    exe: PathBuf,
}

/// Runs the gateway until SIGTERM/SIGINT. Config errors come back as [`config::Diagnostics`].
pub fn run(options: UpOptions) -> anyhow::Result<()> {
    let plan = startup::plan(options)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(gateway(plan))
}

async fn gateway(plan: Plan) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let ops_listener = crate::ops::bind(&plan.options.listen_ops)?;
    let mut echo = match plan.options.no_echo_backend {
        true => None,
        false => Some(children::spawn_echo(&plan.exe, plan.options.echo_listen).await?),
    };
    let mut provided = NamedValues::default();
    if let Some((_, addr)) = &echo {
        tracing::info!("echo backend listening on http://{addr}");
        provided.insert(ECHO_BACKEND_URL, NamedValue { value: format!("http://{addr}"), secret: false });
    }
    let (service, config, forward, forwarded) = management_store(&plan, &provided)?;
    // Opened before the snapshot channel serves: every telemetry batch is committed to it before
    // its ack.
    let analytics = open_analytics(&plan)?;
    let generation = next_generation(&plan.data_dir);
    // OpenID keys are fetched before the first snapshot, so it can verify tokens from the start.
    let openid = Arc::new(crate::openid::Store::default());
    openid.refresh(&config).await;
    let metrics = Arc::new(Metrics::new(&config.observability.metrics));
    let publisher = Arc::new(Publisher::with_openid(config, generation, openid)?);
    let (folded, rolled_up) = (Arc::clone(&metrics), Arc::clone(&analytics));
    publisher.set_telemetry_handler(Box::new(move |batch| {
        // The rollups first: if they cannot commit, the batch is not acknowledged and comes again,
        // and the metrics have not counted it yet.
        portcullis_management::analytics::record_batch(&rolled_up, batch).map_err(|error| error.to_string())?;
        folded.record_batch(batch);
        Ok(())
    }));
    tokio::spawn(refresh_openid_keys(Arc::clone(&publisher)));
    tokio::spawn(forward_configs(Arc::clone(&publisher), Arc::clone(&metrics), forwarded));
    let channel_path = plan.data_dir.snapshot_socket();
    let channel = portcullis_contract::channel::listen(&channel_path)
        .with_context(|| format!("cannot bind the snapshot channel {}", channel_path.display()))?;
    let serving = Arc::clone(&publisher);
    std::thread::Builder::new().name("snapshot-channel".into()).spawn(move || serving.serve(channel))?;
    tokio::spawn(compact_analytics(Arc::clone(&analytics), Arc::clone(&publisher)));
    let admin = admin_server::bind(&plan.data_dir.admin_socket())?;
    let management = crate::admin::server::Management {
        service: Arc::clone(&service),
        forward,
        analytics: Some(Arc::clone(&analytics)),
    };
    let context =
        AdminContext::new(Arc::clone(&publisher), plan.data_dir.clone(), plan.config_dir.clone(), provided, management);
    tokio::spawn(admin_server::serve(admin, Arc::new(context)));
    // Up before the data plane, so probes see 503 until it has applied the first snapshot.
    let ops = crate::ops::Ops::new(Arc::clone(&metrics), Arc::clone(&publisher), plan.data_dir.clone());
    let ops_url = crate::ops::start(ops_listener, ops)?;

    let first_listen = Listening { plain: plan.options.listen.clone(), tls: plan.options.listen_tls.clone() };
    let mut dataplane = children::spawn_dataplane(&plan.dataplane_bin, &dataplane_args(&plan, &first_listen))?;
    let started = tokio::select! {
        outcome = wait_first_apply(&publisher) => outcome,
        status = dataplane.child.wait() => Err(anyhow::anyhow!("the data plane exited during start-up ({})", describe(status))),
        name = signals.recv() => Err(anyhow::anyhow!("{name} during start-up")),
    };
    if let Err(error) = started {
        stop(&plan, dataplane, echo.map(|(child, _)| child)).await;
        return Err(error);
    }
    let gateway_url = format!("http://{}", gateway_listen(&plan, &publisher));
    let service_for_api = Arc::clone(&service);
    let (addr, data_dir) = (plan.options.listen_management.clone(), plan.data_dir.clone());
    // The reports read on a connection of their own: a long report never holds up a batch's commit
    // (WAL readers do not block the writer).
    let analytics_for_api = open_analytics(&plan)?;
    let portal_table = crate::portal::read_table(&plan.config_dir)?;
    let (service_for_portal, portal_addr) = (Arc::clone(&service), plan.options.listen_portal.clone());
    let portal_url =
        crate::portal::start(service_for_portal, &portal_addr, &gateway_url, &plan.data_dir, &portal_table)?;
    let management_url = tokio::task::spawn_blocking(move || {
        management::listener::start(service_for_api, &addr, gateway_url, &data_dir, analytics_for_api)
    })
    .await??;
    let listen = announce(&plan, &publisher, &[&management_url, &ops_url, &portal_url])?;
    let reason = supervise(&plan, &listen, &mut signals, &mut dataplane, &mut echo).await;
    tracing::info!("{reason}: shutting down");
    stop(&plan, dataplane, echo.map(|(child, _)| child)).await;
    Ok(())
}

/// The management store, with the config directory applied to it, and the first config to serve.
#[allow(clippy::type_complexity)] // reason: the four parts `gateway` wires up, returned once
fn management_store(
    plan: &Plan,
    provided: &NamedValues,
) -> anyhow::Result<(
    Arc<tokio::sync::Mutex<portcullis_management::service::Service>>,
    portcullis_contract::model::Config,
    tokio::sync::mpsc::UnboundedSender<management::Forward>,
    tokio::sync::mpsc::UnboundedReceiver<management::Forward>,
)> {
    let (forward, mut forwarded) = tokio::sync::mpsc::unbounded_channel();
    let compiler = management::StoreCompiler::new(plan.config_dir.clone(), provided.clone(), Some(forward.clone()));
    let mut service = management::open(plan.data_dir.root(), compiler)?;
    let applied = management::apply(&mut service, &plan.config_dir, provided, false).map_err(|error| {
        anyhow::anyhow!("cannot apply {} to the management store:\n{error}", plan.config_dir.display())
    })?;
    if !applied.is_empty() {
        tracing::info!("applied {} to the management store: {}", plan.config_dir.display(), applied.lines().join("; "));
    }
    let mut first = None;
    while let Ok(message) = forwarded.try_recv() {
        if let management::Forward::Config(config) = message {
            first = Some(*config);
        }
    }
    let Some(config) = first else {
        anyhow::bail!("the management store does not compile (see the warnings above); fix the resources it names")
    };
    Ok((Arc::new(tokio::sync::Mutex::new(service)), config, forward, forwarded))
}

/// Analytics on the management store's file (its own connection; WAL lets both write).
fn open_analytics(plan: &Plan) -> anyhow::Result<SharedAnalytics> {
    let path = plan.data_dir.root().join(management::STORE_FILE);
    Ok(Analytics::open(&path)?.shared())
}

/// Folds old minute rollups into hours and applies the retention of the current config's
/// `[analytics]`, every `COMPACTION_INTERVAL_MS` (the first time right after start).
async fn compact_analytics(analytics: SharedAnalytics, publisher: Arc<Publisher>) {
    let mut interval = tokio::time::interval(Duration::from_millis(COMPACTION_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let settings = publisher.view().config.observability.analytics.clone();
        let analytics = Arc::clone(&analytics);
        let compacted = tokio::task::spawn_blocking(move || {
            let mut analytics = analytics.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            analytics.compact(portcullis_management::analytics::now_ms(), &settings)
        })
        .await;
        match compacted {
            Ok(Ok(done)) => tracing::debug!("analytics compacted: {done:?}"),
            Ok(Err(error)) => tracing::error!("cannot compact the analytics rollups: {error}"),
            Err(error) => tracing::error!("the analytics compaction task failed: {error}"),
        }
    }
}

/// Publishes what the store's compiler hands on, in order (and gives the metrics the settings of
/// each config published); answers barriers once what came before them is published.
async fn forward_configs(
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
    mut forwarded: tokio::sync::mpsc::UnboundedReceiver<management::Forward>,
) {
    while let Some(message) = forwarded.recv().await {
        match message {
            management::Forward::Config(config) => {
                // New `<openid-config>` URLs are fetched before the config that needs them is published.
                publisher.openid().refresh(&config).await;
                let settings = config.observability.metrics.clone();
                match publisher.publish(*config) {
                    Ok(generation) => {
                        metrics.configure(&settings);
                        tracing::info!("published generation {generation} from the management store");
                    }
                    Err(error) => {
                        publisher.reloads().count(ReloadResult::Refused);
                        tracing::error!("cannot publish the management store's config: {error}");
                    }
                }
            }
            management::Forward::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// How often the refresher looks for OpenID keys that are due (the intervals themselves are
/// `[jwt] openid-refresh-s` and `openid-refetch-min-s`).
const OPENID_CHECK_INTERVAL_MS: u64 = 1_000;

/// Keeps the OpenID keys of the current config fresh; publishes a new generation when they change.
async fn refresh_openid_keys(publisher: Arc<Publisher>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(OPENID_CHECK_INTERVAL_MS)).await;
        let config = publisher.view().config;
        if publisher.openid().refresh(&config).await {
            match publisher.republish_keys() {
                Ok(generation) => tracing::info!("published generation {generation} with new OpenID keys"),
                Err(error) => tracing::error!("cannot publish the new OpenID keys: {error}"),
            }
        }
    }
}

/// Where the data plane listens: plain HTTP and, with --listen-tls, HTTPS.
#[derive(Debug, Clone)]
struct Listening {
    plain: String,
    tls: Option<String>,
}

/// The data plane's arguments; `listen` holds the addresses it bound the first time, so a
/// restarted data plane listens where the first one did even when --listen asked for port 0.
fn dataplane_args(plan: &Plan, listen: &Listening) -> Vec<OsString> {
    let options = &plan.options;
    let mut args: Vec<OsString> = vec!["--data-dir".into(), plan.data_dir.root().into()];
    args.extend(["--listen".into(), listen.plain.as_str().into()]);
    if let Some(tls) = &listen.tls {
        args.extend(["--listen-tls".into(), tls.into()]);
    }
    if let Some(workers) = options.workers {
        args.extend(["--workers".into(), workers.to_string().into()]);
    }
    let io = match options.io {
        IoMode::Auto => "auto",
        IoMode::Uring => "uring",
        IoMode::Epoll => "epoll",
    };
    args.extend(["--io".into(), io.into(), "--drain-timeout-ms".into(), options.drain_timeout_ms.to_string().into()]);
    args
}

async fn wait_first_apply(publisher: &Arc<Publisher>) -> anyhow::Result<()> {
    let publisher = Arc::clone(publisher);
    let timeout = Duration::from_millis(FIRST_APPLY_TIMEOUT_MS);
    // Any applied generation counts: the first one may be renumbered when the data plane says hello.
    match tokio::task::spawn_blocking(move || publisher.wait(1, timeout)).await? {
        Outcome::Applied => Ok(()),
        Outcome::Rejected(reason) => Err(anyhow::anyhow!("the data plane rejected the config: {reason}")),
        Outcome::TimedOut { connected } => Err(anyhow::anyhow!(
            "the data plane did not apply the config within {FIRST_APPLY_TIMEOUT_MS} ms ({})",
            if connected { "it connected but never answered" } else { "it never connected to the snapshot channel" }
        )),
    }
}

/// Prints the lines tests and users read (stdout, flushed); returns the addresses the gateway listens on.
/// Where the data plane listens for plain HTTP (what it bound, port 0 resolved).
fn gateway_listen(plan: &Plan, publisher: &Publisher) -> String {
    let view = publisher.view();
    let listen = view.dataplane.as_ref().and_then(|hello| hello.listen.first().cloned());
    listen.unwrap_or_else(|| plan.options.listen.clone())
}

/// `urls`: the management API's, the ops listener's and the portal's.
fn announce(plan: &Plan, publisher: &Publisher, urls: &[&str; 3]) -> std::io::Result<Listening> {
    let [management_url, ops_url, portal_url] = *urls;
    let view = publisher.view();
    let listen = gateway_listen(plan, publisher);
    let listen_tls = view.dataplane.as_ref().and_then(|hello| hello.listen_tls.clone());
    let listen_tls = listen_tls.or_else(|| plan.options.listen_tls.clone());
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "portcullis: gateway listening on http://{listen}")?;
    if let Some(listen_tls) = &listen_tls {
        writeln!(stdout, "portcullis: gateway listening on https://{listen_tls}")?;
    }
    writeln!(
        stdout,
        "portcullis: management API on {management_url} (tokens: portcullis ctl token create --name NAME)"
    )?;
    writeln!(stdout, "portcullis: ops (metrics, health) on {ops_url}")?;
    writeln!(stdout, "portcullis: developer portal on {portal_url}")?;
    writeln!(stdout, "portcullis: admin socket {}", plan.data_dir.admin_socket().display())?;
    writeln!(stdout, "portcullis: config {} (generation {})", plan.config_dir.display(), view.applied_generation)?;
    for line in demo_lines(&view.config, &listen) {
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()?;
    Ok(Listening { plain: listen, tls: listen_tls })
}

/// Restarts children that exit until a signal arrives; returns the signal's name.
async fn supervise(
    plan: &Plan,
    listen: &Listening,
    signals: &mut Signals,
    dataplane: &mut Supervised,
    echo: &mut Option<(Supervised, SocketAddr)>,
) -> &'static str {
    let (mut dataplane_backoff, mut echo_backoff) = (Backoff::default(), Backoff::default());
    loop {
        let echo_exit = async {
            match echo.as_mut() {
                Some((child, _)) => child.child.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            name = signals.recv() => return name,
            status = dataplane.child.wait() => {
                let delay = dataplane_backoff.after_exit(dataplane.started.elapsed());
                tracing::error!("the data plane exited unexpectedly ({}); restarting it in {delay:?}", describe(status));
                loop {
                    if let Some(name) = signals.sleep(delay).await { return name; }
                    match children::spawn_dataplane(&plan.dataplane_bin, &dataplane_args(plan, listen)) {
                        Ok(child) => {
                            tracing::info!("restarted the data plane (pid {})", child.child.id().unwrap_or(0));
                            break *dataplane = child;
                        }
                        Err(error) => tracing::error!("{error}; retrying"),
                    }
                }
            }
            status = echo_exit => {
                let Some((child, addr)) = echo.as_mut() else { continue };
                let delay = echo_backoff.after_exit(child.started.elapsed());
                tracing::error!("the echo backend exited unexpectedly ({}); restarting it in {delay:?}", describe(status));
                loop {
                    if let Some(name) = signals.sleep(delay).await { return name; }
                    match children::spawn_echo(&plan.exe, *addr).await {
                        Ok((restarted, _)) => {
                            tracing::info!("restarted the echo backend on http://{addr}");
                            break *child = restarted;
                        }
                        Err(error) => tracing::error!("cannot restart the echo backend: {error}; retrying"),
                    }
                }
            }
        }
    }
}

/// Drains and stops the data plane, stops the echo backend, removes the sockets.
async fn stop(plan: &Plan, mut dataplane: Supervised, echo: Option<Supervised>) {
    let drain_ms = plan.options.drain_timeout_ms;
    tracing::info!("stopping the data plane (it drains in-flight requests for up to {drain_ms} ms)");
    let status = children::terminate(&mut dataplane.child, Duration::from_millis(drain_ms + KILL_GRACE_MS)).await;
    tracing::info!("the data plane stopped ({})", describe(status.ok_or(std::io::ErrorKind::Other.into())));
    if let Some(mut echo) = echo {
        children::terminate(&mut echo.child, Duration::from_millis(ECHO_STOP_GRACE_MS)).await;
    }
    let _ = std::fs::remove_file(plan.data_dir.admin_socket());
    let _ = std::fs::remove_file(plan.data_dir.snapshot_socket());
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("status unknown: {error}"),
    }
}

/// SIGTERM and SIGINT, the two ways to stop the gateway.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    /// Sleeps for `delay` unless a signal comes first (then returns its name).
    async fn sleep(&mut self, delay: Duration) -> Option<&'static str> {
        tokio::select! {
            _ = tokio::time::sleep(delay) => None,
            name = self.recv() => Some(name),
        }
    }
}
