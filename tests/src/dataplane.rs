//! The data plane alone: `portcullis-dataplane` started on a test's data directory without
//! control, serving the last good snapshot the test wrote there ([`crate::snapshot`]); its log
//! written to a file, its connection counters read from its stats region; killed on drop.
//!
//! For what needs no control (HTTP conformance, parking, the snapshot channel played by the test
//! itself); [`crate::Gateway`] runs the whole gateway.
//!
//! The log goes to a file, not a pipe: a line the data plane wrote is in the file when its
//! `write` returns, so a test that saw what came after it (a response, a counter in the stats
//! region) finds the line. Through a pipe it would be in flight until a reader thread got to it.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use portcullis_contract::layout::DataDir;
use portcullis_contract::stats::{StatsRegion, WorkerSlot};

use crate::bins;
use crate::http::{Connection, Response};

/// Workers the data plane runs with: two, so that connections spread over more than one.
pub const WORKERS: usize = 2;
/// The drain timeout it runs with: longer than any request a test leaves in flight.
pub const DRAIN_TIMEOUT_MS: u64 = 5_000;
/// How long the data plane may take to announce its listeners.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it may take to exit after SIGTERM (a drain ends well within it).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The data plane's log (its stderr), in its data directory; each start begins it anew.
pub const LOG_FILE: &str = "dataplane.log";
/// How often the start-up looks for the listening lines.
const START_POLL: Duration = Duration::from_millis(10);

/// A running data plane.
#[derive(Debug)]
pub struct DataPlane {
    child: Child,
    data_dir: PathBuf,
    /// The plain HTTP listener.
    pub addr: SocketAddr,
    /// The `--listen-tls` address, when started with one.
    pub tls_addr: Option<SocketAddr>,
    log_path: PathBuf,
}

impl DataPlane {
    /// Starts on `data_dir` with `--io io`, logging at `PORTCULLIS_LOG` (default `info`).
    pub fn start(data_dir: &Path, io: &str) -> Self {
        Self::start_logging(data_dir, io, &std::env::var("PORTCULLIS_LOG").unwrap_or_else(|_| "info".into()))
    }

    /// Like [`DataPlane::start`], with this log filter (`PORTCULLIS_LOG` syntax).
    pub fn start_logging(data_dir: &Path, io: &str, filter: &str) -> Self {
        Self::spawn(data_dir, io, filter, false)
    }

    /// Like [`DataPlane::start_logging`], also listening for TLS (`--listen-tls`).
    pub fn start_tls(data_dir: &Path, io: &str, filter: &str) -> Self {
        Self::spawn(data_dir, io, filter, true)
    }

    fn spawn(data_dir: &Path, io: &str, filter: &str, tls: bool) -> Self {
        let log_path = data_dir.join(LOG_FILE);
        // Emptied first (a data directory can serve more than one start), then appended to by
        // the data plane's threads.
        std::fs::write(&log_path, b"").expect("create the data plane's log");
        let log = OpenOptions::new().append(true).open(&log_path).expect("open the data plane's log");
        let child = Command::new(bins::dataplane())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--workers", &WORKERS.to_string(), "--io", io])
            .args(["--drain-timeout-ms", &DRAIN_TIMEOUT_MS.to_string()])
            .args(if tls { &["--listen-tls", "127.0.0.1:0"][..] } else { &[] })
            .env("PORTCULLIS_LOG", filter)
            .stdin(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn portcullis-dataplane");
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut dataplane = Self { child, data_dir: data_dir.to_owned(), addr: unspecified, tls_addr: None, log_path };
        dataplane.wait_listening(tls);
        dataplane
    }

    /// Waits for the `listening on` line (and `listening for TLS on`, with `tls`) and takes the
    /// addresses from them.
    fn wait_listening(&mut self, tls: bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = self.log();
            let mut announced = log.lines().filter_map(listen_address);
            let addr = announced.clone().find_map(|listening| listening.plain());
            let tls_addr = announced.find_map(|listening| listening.tls());
            if let Some(addr) = addr.filter(|_| !tls || tls_addr.is_some()) {
                (self.addr, self.tls_addr) = (addr, tls_addr);
                return;
            }
            if let Some(status) = self.child.try_wait().expect("wait for the data plane") {
                panic!("the data plane exited ({status}) before listening; its log:\n{log}");
            }
            assert!(Instant::now() < deadline, "the data plane did not start listening (tls: {tls}); its log:\n{log}");
            std::thread::sleep(START_POLL);
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A new connection to the plain listener.
    pub fn connect(&self) -> Connection {
        Connection::open(self.addr).expect("connect to the data plane")
    }

    /// One raw request on a fresh connection, and its response.
    pub fn request(&self, raw: &str) -> Response {
        self.connect().round_trip(raw.as_bytes()).unwrap_or_else(|error| panic!("no response to {raw:?}: {error}"))
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        crate::gateway::kill(self.pid(), libc::SIGTERM);
        crate::wait::exit_within(&mut self.child, EXIT_TIMEOUT).expect("the data plane did not exit after SIGTERM")
    }

    /// Everything the data plane has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether a log line so far contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log_count(needle) > 0
    }

    /// How many log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|line| line.contains(needle)).count()
    }

    /// Open client connections, as the workers count them (`ctl status` reads the same counters).
    pub fn connections_active(&self) -> u64 {
        self.sum_over_workers(|slot| &slot.connections_active)
    }

    /// Of those, the parked ones (idle keep-alive connections in the workers' registries).
    pub fn connections_parked(&self) -> u64 {
        self.sum_over_workers(|slot| &slot.connections_parked)
    }

    fn sum_over_workers(&self, counter: impl Fn(&WorkerSlot) -> &std::sync::atomic::AtomicU64) -> u64 {
        let stats = StatsRegion::open(&DataDir::new(&self.data_dir).stats_region()).expect("open the stats region");
        (0..stats.worker_count())
            .map(|i| counter(stats.worker(i).expect("a worker's slot")).load(Ordering::Relaxed))
            .sum()
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- data plane log ({}) ----\n{}", self.log_path.display(), self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A listener the data plane announced.
#[derive(Debug, Clone, Copy)]
enum Listening {
    Plain(SocketAddr),
    Tls(SocketAddr),
}

impl Listening {
    fn plain(self) -> Option<SocketAddr> {
        match self {
            Listening::Plain(addr) => Some(addr),
            Listening::Tls(_) => None,
        }
    }

    fn tls(self) -> Option<SocketAddr> {
        match self {
            Listening::Tls(addr) => Some(addr),
            Listening::Plain(_) => None,
        }
    }
}

/// The address in a `listening on ADDR …` or `listening for TLS on ADDR …` line.
fn listen_address(line: &str) -> Option<Listening> {
    let first_word = |rest: &str| rest.split(' ').next().and_then(|addr| addr.parse().ok());
    if let Some(rest) = line.split("listening for TLS on ").nth(1) {
        return first_word(rest).map(Listening::Tls);
    }
    line.split("listening on ").nth(1).and_then(first_word).map(Listening::Plain)
}
