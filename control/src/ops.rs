//! The ops listener (`up --listen-ops`): Prometheus `/metrics`, `/healthz` and `/readyz` for
//! scrapers, load balancers and Kubernetes probes. axum on a thread and tokio runtime of its
//! own, like the management API, so a slow scrape never stalls `up`'s supervision.

pub mod readiness;

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_contract::layout::DataDir;
use prometheus_client::registry::Registry;

use crate::metrics::{self, Metrics};
use crate::publisher::Publisher;

/// `--listen-ops` when not given: loopback, next to the management API's 8081.
pub const LISTEN_OPS_DEFAULT: &str = "127.0.0.1:8082";
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// What the ops listener answers from.
#[derive(Debug)]
pub struct Ops {
    registry: Registry,
    publisher: Arc<Publisher>,
    data_dir: DataDir,
}

impl Ops {
    /// The endpoints of the gateway `publisher` publishes to, with its data directory.
    pub fn new(metrics: Arc<Metrics>, publisher: Arc<Publisher>, data_dir: DataDir) -> Self {
        let sources = metrics::scrape::Sources { publisher: Arc::clone(&publisher), data_dir: data_dir.clone() };
        Self { registry: metrics::registry(metrics, Some(sources)), publisher, data_dir }
    }
}

/// Binds `addr` (port 0: any free port); `up` binds before it starts anything, so a taken port
/// fails the start-up at once.
pub fn bind(addr: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot bind the ops listener on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `ops` on `listener` from a thread of its own. Returns the listener's URL.
pub fn start(listener: std::net::TcpListener, ops: Ops) -> anyhow::Result<String> {
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(ops));
    std::thread::Builder::new().name("ops".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => return tracing::error!("the ops listener cannot start its runtime: {error}"),
        };
        runtime.block_on(async move {
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => axum::serve(listener, app).await,
                Err(error) => Err(error),
            };
            if let Err(error) = served {
                tracing::error!("the ops listener stopped: {error}");
            }
        });
    })?;
    Ok(url)
}

/// `/metrics`: encoded on the blocking pool (it reads files and asks the data plane).
async fn scrape(State(ops): State<Arc<Ops>>) -> Response {
    match tokio::task::spawn_blocking(move || metrics::encode(&ops.registry)).await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Ok(Err(_)) | Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n").into_response(),
    }
}

/// `/healthz`: the process answers, so it is alive.
async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, TEXT_PLAIN)], "ok\n").into_response()
}

/// `/readyz`: 200 once the data plane serves an applied snapshot on its listeners; 503 with the
/// reason otherwise.
async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    let stats = readiness::StatsFacts::read(&ops.data_dir.stats_region());
    match readiness::check(&ops.publisher.health(), stats) {
        Ok(()) => ([(header::CONTENT_TYPE, TEXT_PLAIN)], "ready\n").into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, TEXT_PLAIN)], format!("not ready: {reason}\n"))
                .into_response()
        }
    }
}
