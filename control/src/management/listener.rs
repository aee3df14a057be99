//! The management API's listener (`up --listen-management`): axum on a thread and tokio
//! runtime of its own, so a long compile never stalls `up`'s supervision or the admin socket.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use portcullis_contract::layout::DataDir;
use portcullis_management::analytics::SharedAnalytics;
use portcullis_management::api::{ApiSettings, router};
use portcullis_management::service::Service;
use portcullis_management::tokens;
use tokio::sync::Mutex;

/// The token `up` makes at every start for the `portcullis` CLI on this host.
pub const CLI_TOKEN_NAME: &str = "portcullis-cli";
/// Where the CLI finds the management URL and its token (mode 0600, in the 0700 run directory).
pub const CLI_ACCESS_FILE: &str = "run/management.json";

/// What the CLI reads to call the running management API.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CliAccess {
    pub url: String,
    pub token: String,
}

impl CliAccess {
    /// The file of the gateway running with `data_dir`.
    pub fn path(data_dir: &DataDir) -> PathBuf {
        data_dir.root().join(CLI_ACCESS_FILE)
    }

    /// Reads it; says what to do when no gateway runs.
    pub fn read(data_dir: &DataDir) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no management API is running with data dir {} (start one with `portcullis up`, or pass --data-dir)",
                data_dir.root().display()
            )
        })?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// Binds `addr`, serves the management API there from its own thread (its reports read
/// `analytics`), and writes the CLI's access file with a fresh token. Returns the API's URL.
pub fn start(
    service: Arc<Mutex<Service>>,
    addr: &str,
    gateway_url: String,
    data_dir: &DataDir,
    analytics: SharedAnalytics,
) -> anyhow::Result<String> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot bind the management API on {addr}"))?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}", listener.local_addr()?);
    write_cli_access(&service, &url, data_dir)?;
    let app = router(service, ApiSettings { gateway_url, analytics: Some(analytics) });
    std::thread::Builder::new().name("management-api".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => return tracing::error!("the management API cannot start its runtime: {error}"),
        };
        runtime.block_on(async move {
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => axum::serve(listener, app).await,
                Err(error) => Err(error),
            };
            if let Err(error) = served {
                tracing::error!("the management API stopped: {error}");
            }
        });
    })?;
    Ok(url)
}

fn write_cli_access(service: &Arc<Mutex<Service>>, url: &str, data_dir: &DataDir) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut service = service.blocking_lock();
    service.store_mut().delete_token(CLI_TOKEN_NAME)?;
    let token = tokens::create(service.store_mut(), CLI_TOKEN_NAME, None, false)?;
    let access = CliAccess { url: url.to_owned(), token };
    let path = CliAccess::path(data_dir);
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    file.write_all(serde_json::to_string(&access)?.as_bytes())?;
    Ok(())
}
