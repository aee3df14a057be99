//! The developer portal's listener (`up --listen-portal`): axum on a thread and tokio runtime of
//! its own (as the management API), over the same service. `[portal]` in `gateway.toml` names its
//! public URL and mail server; without a mail server, mail goes to `<data-dir>/portal/outbox/`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use portcullis_contract::layout::DataDir;
use portcullis_management::portal::{self, MailSettings, PortalSettings, Sessions};
use portcullis_management::service::Service;
use tokio::sync::Mutex;

/// Where the portal writes its mail when no SMTP server is configured (under the data directory).
pub const OUTBOX_DIR: &str = "portal/outbox";

/// `[portal]` in `gateway.toml`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PortalTable {
    /// The portal's public base URL (links in mail; `https://` makes cookies Secure). Default:
    /// the listener's own `http://` address.
    pub public_url: Option<String>,
    /// The gateway's URL as developers reach it (API pages, the server of downloaded
    /// definitions). Default: the gateway's listener. The try-it console always sends to the
    /// listener itself.
    pub gateway_url: Option<String>,
    /// The SMTP server: `smtp://host:25`, `smtp://host:587?tls=required`, `smtps://user:pass@host`.
    pub smtp_url: Option<String>,
    /// The sender of the portal's mail (`Name <address>`).
    pub mail_from: Option<String>,
    /// The portal's title.
    pub title: Option<String>,
}

/// Just `[portal]` of a `gateway.toml` (the rest is the config loader's).
#[derive(Debug, Default, serde::Deserialize)]
struct PortalOnly {
    #[serde(default)]
    portal: PortalTable,
}

/// Reads `[portal]` of `<config_dir>/gateway.toml` (none: the defaults).
pub fn read_table(config_dir: &Path) -> anyhow::Result<PortalTable> {
    let path = config_dir.join("gateway.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(toml::from_str::<PortalOnly>(&text).with_context(|| format!("{}", path.display()))?.portal),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(PortalTable::default()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Binds `addr` and serves the portal there from its own thread. Returns its URL.
pub fn start(
    service: Arc<Mutex<Service>>,
    addr: &str,
    gateway_url: &str,
    data_dir: &DataDir,
    table: &PortalTable,
) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot bind the portal on {addr}"))?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}", listener.local_addr()?);
    let sessions = Sessions::open(&data_dir.root().join(crate::management::STORE_FILE))?;
    let mut settings =
        PortalSettings::new(table.public_url.as_deref().unwrap_or(&url), gateway_url, data_dir.root().join(OUTBOX_DIR));
    if let Some(gateway) = &table.gateway_url {
        settings.gateway_url = gateway.trim_end_matches('/').to_owned();
    }
    if let Some(smtp) = &table.smtp_url {
        settings.mail = MailSettings::Smtp { url: smtp.clone() };
    }
    if let Some(from) = &table.mail_from {
        settings.mail_from = from.clone();
    }
    if let Some(title) = &table.title {
        settings.title = title.clone();
    }
    let app = portal::router(service, sessions, settings)?;
    std::thread::Builder::new().name("portal".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => return tracing::error!("the portal cannot start its runtime: {error}"),
        };
        runtime.block_on(async move {
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await,
                Err(error) => Err(error),
            };
            if let Err(error) = served {
                tracing::error!("the portal stopped: {error}");
            }
        });
    })?;
    Ok(url)
}
