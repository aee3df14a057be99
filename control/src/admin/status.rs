//! The status object: what control knows (generations, the data plane's hello) plus the
//! per-worker counters read straight from the shared stats region, and its table rendering.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;

use portcullis_contract::stats::{StatsRegion, WorkerCounters};
use portcullis_contract::upstreams::{BackendHealth, UpstreamsReport};
use serde::{Deserialize, Serialize};

use crate::publisher::PublisherView;

/// The answer to `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub control_pid: u32,
    pub config_dir: String,
    /// The generation control has published.
    pub generation: u64,
    /// The latest generation the data plane acknowledged.
    pub applied_generation: u64,
    pub dataplane: DataPlaneStatus,
    pub workers: Vec<WorkerStatus>,
    /// Access-log records dropped because the writer could not keep up: the workers' (in their
    /// counters) and the telemetry thread's.
    #[serde(default)]
    pub log_records_dropped: u64,
    /// Why the stats region could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_error: Option<String>,
    /// Named backends and their endpoints' health, from the data plane's report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendHealth>,
    /// `<openid-config>` URLs and their keys (validate-jwt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub openid: Vec<crate::openid::OpenIdStatus>,
}

/// The data plane as seen through the channel (hello) and the stats region header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlaneStatus {
    pub connected: bool,
    pub pid: Option<u32>,
    pub io_backend: Option<String>,
    pub workers: Option<u32>,
    pub listen: Vec<String>,
    /// The TLS listener (`--listen-tls`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_tls: Option<String>,
    pub started_unix_ms: Option<u64>,
    pub uptime_seconds: Option<u64>,
    pub draining: bool,
}

/// One worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub worker: u32,
    #[serde(flatten)]
    pub counters: WorkerCounters,
}

/// Builds the status from the publisher's state and the stats region at `stats_path` (opened
/// afresh each call, so a restarted data plane's new region is picked up).
pub fn collect(view: &PublisherView, stats_path: &Path, config_dir: &Path, now_unix_ms: u64) -> Status {
    let mut status = Status {
        control_pid: std::process::id(),
        config_dir: config_dir.display().to_string(),
        generation: view.generation,
        applied_generation: view.applied_generation,
        openid: view.openid.clone(),
        ..Status::default()
    };
    status.dataplane.connected = view.connected;
    if let Some(hello) = &view.dataplane {
        status.dataplane.pid = Some(hello.pid);
        status.dataplane.io_backend = Some(hello.io_backend.clone());
        status.dataplane.workers = Some(hello.workers);
        status.dataplane.listen = hello.listen.clone();
        status.dataplane.listen_tls = hello.listen_tls.clone();
    }
    match StatsRegion::open(stats_path) {
        Ok(region) => {
            let header = region.header();
            let started = header.started_unix_ms.load(Ordering::Relaxed);
            let dataplane = &mut status.dataplane;
            dataplane.started_unix_ms = Some(started);
            dataplane.uptime_seconds = Some(now_unix_ms.saturating_sub(started) / 1000);
            dataplane.draining = header.draining.load(Ordering::Relaxed) != 0;
            dataplane.pid = dataplane.pid.or(Some(header.pid.load(Ordering::Relaxed)));
            dataplane.workers = dataplane.workers.or(Some(region.worker_count() as u32));
            if dataplane.io_backend.is_none() {
                dataplane.io_backend = region.io_backend().map(|io| io.as_str().to_owned());
            }
            status.workers = (0..region.worker_count())
                .filter_map(|index| region.worker(index).map(|slot| (index, slot.read())))
                .map(|(index, counters)| WorkerStatus { worker: index as u32, counters })
                .collect();
            status.log_records_dropped = header.log_records_dropped.load(Ordering::Relaxed)
                + status.workers.iter().map(|worker| worker.counters.log_records_dropped).sum::<u64>();
        }
        Err(error) => status.stats_error = Some(error.to_string()),
    }
    status
}

/// The named backends in the data plane's health report at `path` (none when it has not written
/// one, or it cannot be read).
pub fn backends(path: &Path) -> Vec<BackendHealth> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<UpstreamsReport>(&bytes).ok())
        .map_or_else(Vec::new, |report| report.backends)
}

/// The human-readable table `portcullis ctl status` prints.
pub fn render(status: &Status) -> String {
    let dataplane = &status.dataplane;
    let or_unknown = |value: Option<String>| value.unwrap_or_else(|| "unknown".to_owned());
    let mut out = String::new();
    let connection = if dataplane.connected { "connected" } else { "NOT connected" };
    let pid = or_unknown(dataplane.pid.map(|pid| pid.to_string()));
    let _ = writeln!(out, "control pid   {}", status.control_pid);
    let _ = writeln!(out, "data plane    pid {pid}, {connection}");
    let _ = writeln!(out, "config        {}", status.config_dir);
    let _ = writeln!(
        out,
        "generation    {} published, {} applied by the data plane",
        status.generation, status.applied_generation
    );
    let listen = if dataplane.listen.is_empty() { "unknown".to_owned() } else { dataplane.listen.join(", ") };
    let _ = writeln!(out, "listen        {listen}");
    if let Some(listen_tls) = &dataplane.listen_tls {
        let _ = writeln!(out, "listen tls    {listen_tls}");
    }
    let workers = or_unknown(dataplane.workers.map(|n| n.to_string()));
    let _ = writeln!(out, "io backend    {}, {workers} workers", or_unknown(dataplane.io_backend.clone()));
    let _ = writeln!(out, "uptime        {}", or_unknown(dataplane.uptime_seconds.map(duration)));
    let _ = writeln!(out, "draining      {}", if dataplane.draining { "yes" } else { "no" });
    if let Some(error) = &status.stats_error {
        let _ = writeln!(out, "stats         unavailable: {error}");
        return out;
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "worker  requests       4xx       5xx  active conns  (parked)  in flight  generation");
    for worker in &status.workers {
        let c = &worker.counters;
        let _ = writeln!(
            out,
            "{:>6}  {:>8}  {:>8}  {:>8}  {:>12}  {:>8}  {:>9}  {:>10}",
            worker.worker,
            c.requests,
            c.responses_4xx,
            c.responses_5xx,
            c.connections_active,
            c.connections_parked,
            c.in_flight,
            c.generation
        );
    }
    render_cache(&mut out, &status.workers);
    let dropped = status.log_records_dropped;
    if dropped > 0 {
        let _ = writeln!(out, "access log    {dropped} records dropped (the writer could not keep up)");
    }
    render_backends(&mut out, &status.backends);
    render_openid(&mut out, &status.openid, now_unix_s());
    out
}

/// The response cache's counters, summed over the workers, when anything used the cache.
fn render_cache(out: &mut String, workers: &[WorkerStatus]) {
    let sum = |field: fn(&portcullis_contract::stats::WorkerCounters) -> u64| {
        workers.iter().map(|worker| field(&worker.counters)).sum::<u64>()
    };
    let (hits, misses) = (sum(|c| c.cache_hits), sum(|c| c.cache_misses));
    let (stores, errors) = (sum(|c| c.cache_stores), sum(|c| c.cache_external_errors));
    if hits + misses + stores + errors == 0 {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "cache         {hits} hits, {misses} misses, {stores} stores, {errors} external errors");
}

/// One line per `<openid-config>` URL: its keys and their age, and a failed refresh (the last
/// good keys keep serving: fail static).
fn render_openid(out: &mut String, entries: &[crate::openid::OpenIdStatus], now_s: u64) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "openid keys");
    for entry in entries {
        let age = entry.fetched_unix_s.map(|at| format!(", fetched {} ago", duration(now_s.saturating_sub(at))));
        let _ = writeln!(out, "  {}  {} keys{}", entry.url, entry.keys, age.unwrap_or_default());
        if let Some(error) = &entry.last_error {
            let kept = if entry.keys > 0 { "serving the last good keys" } else { "no keys yet" };
            let _ = writeln!(out, "    LAST FETCH FAILED ({kept}): {error}");
        }
    }
}

fn now_unix_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One line per endpoint of each named backend.
fn render_backends(out: &mut String, backends: &[BackendHealth]) {
    if backends.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<20}  {:<15}  {:<28}  {:<9}  {:<10}  ejected on",
        "backend", "balancing", "endpoint", "resolved", "checks"
    );
    for backend in backends {
        for endpoint in &backend.endpoints {
            let checks = match endpoint.active_healthy {
                None => "-",
                Some(true) => "passing",
                Some(false) => "FAILING",
            };
            let _ = writeln!(
                out,
                "{:<20}  {:<15}  {:<28}  {:<9}  {:<10}  {} workers",
                backend.id,
                backend.load_balancing,
                endpoint.address,
                if endpoint.resolved { "yes" } else { "NO" },
                checks,
                endpoint.ejected_on_workers
            );
        }
    }
}

/// `1d 02h 03m 04s`, leaving out leading zero units.
fn duration(seconds: u64) -> String {
    let (days, hours, minutes, seconds) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds:02}s"),
        (0, _, _) => format!("{hours}h {minutes:02}m {seconds:02}s"),
        _ => format!("{days}d {hours:02}h {minutes:02}m {seconds:02}s"),
    }
}

#[cfg(test)]
mod tests;
