//! Active health checks: one data-plane thread probes every endpoint of every backend that asks
//! for it, and publishes each verdict in the snapshot's per-endpoint atomic flag.
//!
//! One thread, not one per worker: each endpoint gets one probe per interval however many cores
//! serve traffic, the probes never share a worker's ring or delay its requests, and the verdict
//! every worker reads is the same. Probes are blocking and sequential, each bounded by its
//! `timeout-ms` (at most its interval); a new snapshot restarts the schedule with fresh flags.
//!
//! The same thread writes the health report `ctl status` shows (`run/upstreams.json`, about once
//! a second, write then rename), so no worker ever does file I/O for it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_contract::model::{ActiveHealth, LoadBalancing};
use portcullis_contract::upstreams::{BackendHealth, EndpointHealth, UpstreamsReport};
use rustls::pki_types::ServerName;

use crate::snapshot::{Snapshot, SnapshotCell};

/// The thread looks for a new snapshot at least this often while no probe is due.
pub const SNAPSHOT_POLL_MS: u64 = 200;
/// Bytes of a check's response read at most: the status line is all we need.
pub const RESPONSE_BYTES_MAX: usize = 1024;
/// The status report is rewritten this often: fresh enough for a human, cheap for the disk.
pub const REPORT_INTERVAL_MS: u64 = 1_000;

/// Starts the health-check thread, which also writes the report to `report`; it runs until the
/// process exits.
pub fn spawn(cell: Arc<SnapshotCell>, report: PathBuf) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("health".into()).spawn(move || run(&cell, &report))
}

/// One endpoint's checks: when the next is due, and the verdict's hysteresis.
#[derive(Debug)]
struct Check {
    backend: usize,
    endpoint: usize,
    due: Instant,
    counter: HealthCounter,
}

fn run(cell: &SnapshotCell, report_path: &Path) {
    let mut generation = 0;
    let mut snapshot: Option<Arc<Snapshot>> = None;
    let mut checks: Vec<Check> = Vec::new();
    let mut reported: Option<Instant> = None;
    loop {
        if cell.generation() != generation {
            generation = cell.generation();
            snapshot = cell.load();
            checks = snapshot.as_deref().map_or_else(Vec::new, schedule);
        }
        let Some(current) = snapshot.as_deref() else {
            std::thread::sleep(Duration::from_millis(SNAPSHOT_POLL_MS));
            continue;
        };
        if reported.is_none_or(|at| at.elapsed() >= Duration::from_millis(REPORT_INTERVAL_MS)) {
            reported = Some(Instant::now());
            if let Err(error) = write_report(report_path, &report(current)) {
                tracing::debug!(%error, path = %report_path.display(), "cannot write the upstreams report");
            }
        }
        for check in &mut checks {
            if Instant::now() < check.due {
                continue;
            }
            let Some(backend) = current.upstreams.get(check.backend) else { continue };
            let (Some(active), Some(endpoint)) = (&backend.active, backend.endpoints.get(check.endpoint)) else {
                continue;
            };
            let Some(addr) = endpoint.addr else { continue };
            // An https endpoint is checked over TLS, verified as requests are.
            let config = &backend.tls.as_ref().unwrap_or(&current.backend_tls).config;
            let tls = endpoint.tls_name.clone().map(|name| (name, Arc::clone(config)));
            let passed = probe(addr, tls, &backend.authority, active);
            let healthy = check.counter.record(passed, active);
            if healthy != endpoint.healthy() {
                tracing::info!(backend = %backend.id, endpoint = %endpoint.name, healthy, "active health check verdict changed");
                endpoint.set_healthy(healthy);
            }
            check.due = Instant::now() + Duration::from_millis(u64::from(active.interval_ms));
        }
        let next = checks.iter().map(|check| check.due).min();
        let poll = Instant::now() + Duration::from_millis(SNAPSHOT_POLL_MS);
        let until = next.map_or(poll, |next| next.min(poll));
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }
}

/// A check for every resolved endpoint of every backend with `[health.active]`, all due now.
fn schedule(snapshot: &Snapshot) -> Vec<Check> {
    let now = Instant::now();
    let mut checks = Vec::new();
    for (backend, resolved) in snapshot.upstreams.iter().enumerate() {
        if resolved.active.is_none() {
            continue;
        }
        for (endpoint, flag) in resolved.endpoints.iter().enumerate() {
            // Continues from the verdict a reload carried over (see `Snapshot::keep_active_health`).
            let counter = HealthCounter { healthy: flag.healthy(), streak: 0 };
            checks.push(Check { backend, endpoint, due: now, counter });
        }
    }
    checks
}

/// The named backends of `snapshot` and their endpoints' health.
pub fn report(snapshot: &Snapshot) -> UpstreamsReport {
    let backends = snapshot
        .upstreams
        .iter()
        .filter(|backend| !backend.id.is_empty())
        .map(|backend| BackendHealth {
            id: backend.id.clone(),
            load_balancing: match backend.load_balancing {
                LoadBalancing::RoundRobin => "round-robin",
                LoadBalancing::Weighted => "weighted",
                LoadBalancing::LeastRequests => "least-requests",
            }
            .to_owned(),
            endpoints: backend
                .endpoints
                .iter()
                .map(|endpoint| EndpointHealth {
                    address: endpoint.name.clone(),
                    resolved: endpoint.addr.is_some(),
                    active_healthy: backend.active.as_ref().map(|_| endpoint.healthy()),
                    ejected_on_workers: endpoint.ejected_workers(),
                })
                .collect(),
        })
        .collect();
    UpstreamsReport { generation: snapshot.generation, backends }
}

/// Writes `report` as JSON next to `path`, then renames it over `path` (readers never see half).
fn write_report(path: &Path, report: &UpstreamsReport) -> std::io::Result<()> {
    let json = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, path)
}

/// `GET path` on a fresh connection (over TLS for an https endpoint: `tls` is its server name
/// and the backend client configuration); passes when the status is in the expected range.
fn probe(
    addr: SocketAddr,
    tls: Option<(ServerName<'static>, Arc<rustls::ClientConfig>)>,
    authority: &str,
    active: &ActiveHealth,
) -> bool {
    let timeout = Duration::from_millis(u64::from(active.timeout_ms));
    let deadline = Instant::now() + timeout;
    let Ok(stream) = TcpStream::connect_timeout(&addr, timeout) else { return false };
    if stream.set_write_timeout(Some(timeout)).is_err() || stream.set_read_timeout(Some(timeout)).is_err() {
        return false;
    }
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: portcullis-health-check\r\nConnection: close\r\n\r\n",
        active.path
    );
    match tls {
        None => exchange(stream, &request, deadline, active),
        Some((name, config)) => {
            let Ok(connection) = rustls::ClientConnection::new(config, name) else { return false };
            // The handshake runs inside the first write and read, within the socket timeouts.
            exchange(rustls::StreamOwned::new(connection, stream), &request, deadline, active)
        }
    }
}

/// Sends `request` on `stream` and reads until the status line, by `deadline`.
fn exchange<S: Read + Write + Timed>(mut stream: S, request: &str, deadline: Instant, active: &ActiveHealth) -> bool {
    if stream.write_all(request.as_bytes()).and_then(|()| stream.flush()).is_err() {
        return false;
    }
    let mut response = Vec::with_capacity(RESPONSE_BYTES_MAX);
    let mut chunk = [0u8; RESPONSE_BYTES_MAX];
    loop {
        if let Some(status) = status_code(&response) {
            return (active.expected_status_min..=active.expected_status_max).contains(&status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || response.len() >= RESPONSE_BYTES_MAX || stream.read_timeout(left).is_err() {
            return false;
        }
        match stream.read(&mut chunk[..RESPONSE_BYTES_MAX - response.len()]) {
            Ok(0) | Err(_) => return false,
            Ok(read) => response.extend_from_slice(&chunk[..read]),
        }
    }
}

/// A probe's stream whose reads can be bounded by what is left of the check's time.
trait Timed {
    fn read_timeout(&self, left: Duration) -> std::io::Result<()>;
}

impl Timed for TcpStream {
    fn read_timeout(&self, left: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(left))
    }
}

impl Timed for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn read_timeout(&self, left: Duration) -> std::io::Result<()> {
        self.sock.set_read_timeout(Some(left))
    }
}

/// The status code of a complete `HTTP/1.x NNN ...` status line.
fn status_code(response: &[u8]) -> Option<u16> {
    let line_end = response.windows(2).position(|pair| pair == b"\r\n")?;
    let line = &response[..line_end];
    let rest = line.strip_prefix(b"HTTP/1.1 ").or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Consecutive results with hysteresis: `unhealthy-threshold` failures in a row take a healthy
/// endpoint out, `healthy-threshold` passes in a row bring it back. Endpoints start healthy, so
/// a new config never begins by refusing traffic.
#[derive(Debug, Clone, Copy)]
struct HealthCounter {
    healthy: bool,
    streak: u32,
}

impl Default for HealthCounter {
    fn default() -> Self {
        Self { healthy: true, streak: 0 }
    }
}

impl HealthCounter {
    /// Adds one result; returns the verdict.
    fn record(&mut self, passed: bool, active: &ActiveHealth) -> bool {
        if passed == self.healthy {
            self.streak = 0;
            return self.healthy;
        }
        self.streak += 1;
        let threshold = if self.healthy { active.unhealthy_threshold } else { active.healthy_threshold };
        if self.streak >= threshold {
            self.healthy = passed;
            self.streak = 0;
        }
        self.healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active() -> ActiveHealth {
        ActiveHealth {
            path: "/health".into(),
            interval_ms: 100,
            timeout_ms: 100,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_status_min: 200,
            expected_status_max: 399,
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 503\r\n"), Some(503));
        assert_eq!(status_code(b"HTTP/1.1 200 OK"), None, "incomplete line");
        assert_eq!(status_code(b"HTTP/2 200\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 2000\r\n"), None);
        assert_eq!(status_code(b"garbage\r\n"), None);
    }

    #[test]
    fn thresholds_need_results_in_a_row() {
        let active = active();
        let mut counter = HealthCounter::default();
        assert!(counter.record(false, &active));
        assert!(counter.record(false, &active));
        assert!(counter.record(true, &active), "a pass resets the failure streak");
        assert!(counter.record(false, &active));
        assert!(counter.record(false, &active));
        assert!(!counter.record(false, &active), "three failures in a row");
        assert!(!counter.record(true, &active));
        assert!(!counter.record(false, &active));
        assert!(!counter.record(true, &active));
        assert!(counter.record(true, &active), "two passes in a row");
    }

    #[test]
    fn probes_a_real_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut buf = [0u8; 512];
                let read = stream.read(&mut buf).unwrap();
                assert!(buf[..read].starts_with(b"GET /health HTTP/1.1\r\nHost: h\r\n"));
                stream.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes()).unwrap();
            }
        });
        assert!(probe(addr, None, "h", &active()));
        assert!(!probe(addr, None, "h", &active()));
        server.join().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(!probe(closed, None, "h", &active()), "nothing listens");
    }
}
