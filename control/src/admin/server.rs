//! The admin socket server run by `portcullis up`: accepts connections, answers requests,
//! and runs reloads one at a time.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_contract::layout::DataDir;
use portcullis_management::analytics::SharedAnalytics;
use portcullis_management::service::Service;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};

use super::protocol::{self, REQUEST_LINE_BYTES_MAX, Request, Response};
use super::status;
use crate::config::NamedValues;
use crate::management::{self, Forward};
use crate::publisher::{Outcome, Publisher, ReloadResult};

/// Owner-only: whoever can talk to the admin socket can reload the gateway.
pub const ADMIN_SOCKET_MODE: u32 = 0o600;
/// Admin clients are people and scripts on this host; more at once than this wait for a slot.
pub const CONNECTIONS_MAX: usize = 16;
/// A reload waits this long for the data plane's Applied/Rejected before answering "timed out".
pub const APPLY_TIMEOUT_MS: u64 = 10_000;

/// Why the admin socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("a gateway is already running with data dir {data_dir} (stop it first, or pass another --data-dir)")]
    AlreadyRunning { data_dir: PathBuf },
    #[error("cannot bind the admin socket {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
}

/// What the admin socket needs to answer requests.
#[derive(Debug)]
pub struct AdminContext {
    pub publisher: Arc<Publisher>,
    pub data_dir: DataDir,
    pub config_dir: PathBuf,
    /// Values the running gateway provides to the config (such as `echo-backend-url`).
    pub provided: NamedValues,
    pub management: Management,
    /// Reloads run one at a time.
    reload_lock: Mutex<()>,
}

/// The management store as the admin socket uses it (reloads and applies write through it).
#[derive(Debug, Clone)]
pub struct Management {
    pub service: Arc<Mutex<Service>>,
    /// The compiler's queue to the publisher, for barriers.
    pub forward: mpsc::UnboundedSender<Forward>,
    /// The rollups and the live window (`top`); `None`: `top` answers that analytics is off.
    pub analytics: Option<SharedAnalytics>,
}

impl AdminContext {
    /// The context of one running gateway.
    pub fn new(
        publisher: Arc<Publisher>,
        data_dir: DataDir,
        config_dir: PathBuf,
        provided: NamedValues,
        management: Management,
    ) -> Self {
        Self { publisher, data_dir, config_dir, provided, management, reload_lock: Mutex::new(()) }
    }
}

/// Fails when a gateway already answers on the admin socket at `path`; removes a stale socket file.
pub fn claim(path: &Path, data_dir: &Path) -> Result<(), AdminError> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(AdminError::AlreadyRunning { data_dir: data_dir.to_path_buf() });
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// Binds the admin socket at `path` with mode 0600. Call inside a tokio runtime.
pub fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    let error = |source| AdminError::Bind { path: path.to_path_buf(), source };
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(ADMIN_SOCKET_MODE)).map_err(error)?;
    listener.set_nonblocking(true).map_err(error)?;
    UnixListener::from_std(listener).map_err(error)
}

/// Serves the admin socket until the task is dropped.
pub async fn serve(listener: UnixListener, context: Arc<AdminContext>) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!("admin socket: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let context = Arc::clone(&context);
        tokio::spawn(async move {
            if let Err(error) = serve_connection(stream, &context).await {
                tracing::debug!("admin socket: connection ended: {error}");
            }
            drop(permit);
        });
    }
}

async fn serve_connection(stream: UnixStream, context: &AdminContext) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let limit = REQUEST_LINE_BYTES_MAX as u64 + 1;
        if (&mut reader).take(limit).read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && line.len() > REQUEST_LINE_BYTES_MAX {
            write.write_all(&Response::failure(protocol::ProtocolError::TooLong.to_string()).to_line()).await?;
            return Ok(());
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let response = respond(&line, context).await;
        write.write_all(&response.to_line()).await?;
    }
}

/// Answers one request line.
pub async fn respond(line: &[u8], context: &AdminContext) -> Response {
    match protocol::parse_request(line) {
        Ok(Request::Status) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let view = context.publisher.view();
            let mut status = status::collect(&view, &context.data_dir.stats_region(), &context.config_dir, now);
            status.backends = status::backends(&context.data_dir.upstreams_report());
            Response::status(status)
        }
        Ok(Request::Reload) => {
            let config_dir = context.config_dir.clone();
            apply(context, config_dir, false).await
        }
        Ok(Request::Apply { dir, dry_run }) => apply(context, PathBuf::from(dir), dry_run).await,
        Ok(Request::ImportApiops { dir }) => import_apiops(context, PathBuf::from(dir)).await,
        Ok(Request::ReopenLogs) => {
            if context.publisher.reopen_logs() {
                Response { ok: true, ..Response::default() }
            } else {
                Response::failure("no data plane is connected; its access log reopens on SIGUSR1 too".to_owned())
            }
        }
        Ok(request @ (Request::XdpStatus | Request::Block { .. } | Request::Unblock { .. })) => {
            super::xdp::forward(&context.data_dir, request).await
        }
        Ok(Request::Top { window_ms }) => top(context, window_ms),
        Err(error) => Response::failure(error.to_string()),
    }
}

/// One sample of the live window (a lock held for microseconds: the window is in memory).
fn top(context: &AdminContext, window_ms: Option<u64>) -> Response {
    use portcullis_management::analytics::{live::TOP_WINDOW_MS_DEFAULT, now_ms};
    let Some(analytics) = &context.management.analytics else {
        return Response::failure("this gateway runs without analytics");
    };
    let window_ms = window_ms.map_or(TOP_WINDOW_MS_DEFAULT, |ms| i64::try_from(ms).unwrap_or(i64::MAX));
    let sample = analytics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).top(now_ms(), window_ms);
    Response { ok: true, top: serde_json::to_value(sample).ok(), ..Response::default() }
}

/// Imports the APIOps extract `dir` as one change of the store; answers with its report.
async fn import_apiops(context: &AdminContext, dir: PathBuf) -> Response {
    let service = Arc::clone(&context.management.service);
    let imported = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
        let import = portcullis_management::apiops::import(&dir).map_err(|error| error.to_string())?;
        let mut report: Vec<String> = import.report.iter().map(ToString::to_string).collect();
        let actor = portcullis_management::store::Actor {
            name: "import".to_owned(),
            action: format!("import apiops {}", dir.display()),
        };
        let mut service = service.blocking_lock();
        let authority = portcullis_management::service::Authority::Store;
        let change = service.write(import.writes, &[], authority, &actor).map_err(|error| write_error(&error))?;
        report.push(format!("{} resources written in change {}", change.writes.len(), change.id));
        Ok(report)
    })
    .await;
    match imported {
        Ok(Ok(report)) => Response { ok: true, plan: Some(serde_json::json!(report)), ..Response::default() },
        Ok(Err(error)) => Response::failure(error),
        Err(error) => Response::failure(format!("the import task failed: {error}")),
    }
}

/// A refused write with every problem on its own line.
fn write_error(error: &portcullis_management::service::WriteError) -> String {
    match error {
        portcullis_management::service::WriteError::Invalid(problems) => {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| match (p.line, p.column) {
                    (Some(line), Some(column)) => format!("error: {} ({}:{line}:{column})", p.message, p.target),
                    _ => format!("error: {} ({})", p.message, p.target),
                })
                .collect();
            format!("the import would not compile; nothing was changed:\n{}", lines.join("\n"))
        }
        other => other.to_string(),
    }
}

/// Applies the config directory `dir` to the management store (a reload applies the one `up`
/// was started with); once published, waits for the data plane's answer.
async fn apply(context: &AdminContext, dir: PathBuf, dry_run: bool) -> Response {
    let _one_at_a_time = context.reload_lock.lock().await;
    let service = Arc::clone(&context.management.service);
    let provided = context.provided.clone();
    let applied = tokio::task::spawn_blocking(move || {
        let mut service = service.blocking_lock();
        management::apply(&mut service, &dir, &provided, dry_run)
    })
    .await;
    let plan = match applied {
        Ok(Ok(plan)) => plan,
        Ok(Err(error)) => {
            tracing::warn!("apply refused; the current config keeps serving:\n{error}");
            if !dry_run {
                context.publisher.reloads().count(ReloadResult::Refused);
            }
            return Response::failure(error.to_string());
        }
        Err(error) => return Response::failure(format!("the apply task failed: {error}")),
    };
    let plan_json = serde_json::to_value(&plan).ok();
    if dry_run {
        let generation = context.publisher.view().generation;
        return Response { plan: plan_json, ..Response::reloaded(generation) };
    }
    if !plan.is_empty() {
        tracing::info!("applied: {}", plan.lines().join("; "));
    }
    // Everything the compiler handed on before this point is published once the barrier answers.
    let (done, published) = oneshot::channel();
    if context.management.forward.send(Forward::Barrier(done)).is_err() || published.await.is_err() {
        return Response::failure("the publisher has stopped");
    }
    let generation = context.publisher.view().generation;
    let publisher = Arc::clone(&context.publisher);
    let timeout = Duration::from_millis(APPLY_TIMEOUT_MS);
    let outcome = tokio::task::spawn_blocking(move || publisher.wait(generation, timeout)).await;
    let result = match &outcome {
        Ok(Outcome::Applied) => ReloadResult::Applied,
        Ok(Outcome::Rejected(_)) => ReloadResult::Rejected,
        Ok(Outcome::TimedOut { .. }) | Err(_) => ReloadResult::TimedOut,
    };
    context.publisher.reloads().count(result);
    match outcome {
        Ok(Outcome::Applied) => Response { plan: plan_json, ..Response::reloaded(generation) },
        Ok(Outcome::Rejected(reason)) => Response {
            generation: Some(generation),
            applied: Some(false),
            ..Response::failure(format!(
                "the data plane rejected generation {generation}: {reason} (it keeps serving the previous one)"
            ))
        },
        Ok(Outcome::TimedOut { connected }) => Response {
            generation: Some(generation),
            applied: Some(false),
            ..Response::failure(format!(
                "generation {generation} was published but the data plane did not apply it within {APPLY_TIMEOUT_MS} ms{}",
                if connected { "" } else { " (no data plane is connected; it gets it when it reconnects)" }
            ))
        },
        Err(error) => Response::failure(format!("the reload task failed: {error}")),
    }
}
