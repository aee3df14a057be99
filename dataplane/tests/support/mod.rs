//! Test fixtures: a temp data directory, a tiny HTTP backend, the data plane process, a raw client.
#![allow(dead_code, unreachable_pub)] // reason: each test binary uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: fixtures fail the test by panicking

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use portcullis_contract::key_index::{KeyEntry, KeyIndex, KeySlot};
use portcullis_contract::model::{
    Api, BackendUrl, Config, DEFAULT_SUBSCRIPTION_KEY_HEADER, DEFAULT_SUBSCRIPTION_KEY_QUERY, Scheme, Subscription,
    SubscriptionScope, SubscriptionState,
};

/// A test module per scenario with an `uring` and an `epoll` test, each running
/// `scenario(io)` (the files that use it declare `#[macro_use] mod support;`).
#[allow(unused_macros)] // reason: each test binary uses a different subset
macro_rules! on_both_io_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[test]
                fn uring() {
                    super::$scenario("uring");
                }

                #[test]
                fn epoll() {
                    super::$scenario("epoll");
                }
            }
        )*
    };
}

pub const KEY: &str = "0123456789abcdef0123456789abcdef";
pub const SUSPENDED_KEY: &str = "suspended-suspended-suspended-00";

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "portcullis-dp-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config with API `echo` (key required, backend base path `/api`) and API `open` (no key).
pub fn config(backend: SocketAddr, echo_path: &str) -> Config {
    let api = |id: &str, path: &str, base_path: &str, required: bool| Api {
        id: id.into(),
        name: id.into(),
        path: path.into(),
        backend_id: None,
        backend: BackendUrl {
            scheme: Scheme::Http,
            host: backend.ip().to_string(),
            port: backend.port(),
            base_path: base_path.into(),
            authority: backend.to_string(),
        },
        subscription_required: required,
        subscription_key_header: DEFAULT_SUBSCRIPTION_KEY_HEADER.into(),
        subscription_key_query: DEFAULT_SUBSCRIPTION_KEY_QUERY.into(),
        preserve_host: false,
        version: String::new(),
        revision: "1".into(),
        // Program 0 (nothing) for every section but the backend's, program 1 (forward-request).
        operations: vec![portcullis_contract::model::Operation::catch_all(portcullis_contract::model::Policies {
            backend: 1,
            ..portcullis_contract::model::Policies::all(0)
        })],
    };
    let subscription =
        |id: &str, state| Subscription { id: id.into(), name: id.into(), scope: SubscriptionScope::AllApis, state };
    let entries = vec![
        KeyEntry { key: KEY.into(), subscription: 0, slot: KeySlot::Primary },
        KeyEntry { key: SUSPENDED_KEY.into(), subscription: 1, slot: KeySlot::Primary },
    ];
    Config {
        apis: vec![api("echo", echo_path, "/api", true), api("open", "open", "", false)],
        subscriptions: vec![
            subscription("active", SubscriptionState::Active),
            subscription("suspended", SubscriptionState::Suspended),
        ],
        key_index: KeyIndex::build([3, 4], entries).unwrap(),
        programs: vec![
            portcullis_contract::program::Program::empty(),
            portcullis_contract::program::Program::forward_only(),
        ],
        ..Config::empty("test")
    }
}

/// A backend on a std listener: answers every request with its target, X-Forwarded-For,
/// Host, body and a per-connection id, so tests can see rewrites and connection reuse.
pub struct Backend {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicU64>,
}

/// How the test backend misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Close the connection after each response, without saying so (a stale keep-alive).
    pub close_after_response: bool,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Backend {
    pub fn start() -> Self {
        Self::start_with(Behaviour::default())
    }

    pub fn start_with(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&connections);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let id = counter.fetch_add(1, Ordering::Relaxed) + 1;
                std::thread::spawn(move || serve_backend(stream, id, behaviour));
            }
        });
        Self { addr, connections }
    }
}

fn serve_backend(stream: TcpStream, id: u64, behaviour: Behaviour) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(request) = read_message(&mut reader, true) {
        let header = |name: &str| request.header(name).unwrap_or_default();
        let body = format!(
            "target={}\nhost={}\nxff={}\nxfh={}\nkey={}\nte={}\nbody={}\n",
            request.start_line.split(' ').nth(1).unwrap_or(""),
            header("host"),
            header("x-forwarded-for"),
            header("x-forwarded-host"),
            header("ocp-apim-subscription-key"),
            header("transfer-encoding"),
            String::from_utf8_lossy(&request.body),
        );
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend-Conn: {id}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        std::thread::sleep(behaviour.delay);
        if writer.write_all(response.as_bytes()).is_err() || behaviour.close_after_response {
            return;
        }
    }
}

/// One HTTP message read with the simplest possible parser (tests only).
#[derive(Debug)]
pub struct Message {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    /// For chunked bodies: the decoded data.
    pub body: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    pub fn status(&self) -> u16 {
        self.start_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads a message; `is_request` decides whether a missing length means no body or until-close.
pub fn read_message(reader: &mut impl BufRead, is_request: bool) -> Option<Message> {
    let mut start_line = String::new();
    if reader.read_line(&mut start_line).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut message = Message { start_line: start_line.trim_end().to_owned(), headers, body: Vec::new() };
    if message.header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().ends_with("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).ok()?;
            let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
            if size == 0 {
                loop {
                    let mut trailer = String::new();
                    reader.read_line(&mut trailer).ok()?;
                    if trailer.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            message.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = message.header("content-length") {
        let mut body = vec![0; length.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        message.body = body;
    } else if !is_request && message.status() >= 200 && message.status() != 204 && message.status() != 304 {
        reader.read_to_end(&mut message.body).ok()?;
    }
    Some(message)
}

/// The data plane process; killed on drop if still running.
pub struct DataPlane {
    pub child: Child,
    pub addr: SocketAddr,
    /// The `--listen-tls` address, when started with one.
    pub tls_addr: Option<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl DataPlane {
    pub fn start(data_dir: &Path, io: &str) -> Self {
        Self::start_logging(data_dir, io, &std::env::var("PORTCULLIS_LOG").unwrap_or_else(|_| "info".into()))
    }

    /// Like [`DataPlane::start`], with this log filter (`PORTCULLIS_LOG` syntax).
    pub fn start_logging(data_dir: &Path, io: &str, filter: &str) -> Self {
        Self::start_with(data_dir, io, filter, false)
    }

    /// Like [`DataPlane::start_logging`], also listening for TLS (`--listen-tls`) when `tls`.
    pub fn start_with(data_dir: &Path, io: &str, filter: &str, tls: bool) -> Self {
        let tls_args: &[&str] = if tls { &["--listen-tls", "127.0.0.1:0"] } else { &[] };
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis-dataplane"))
            .args(["--data-dir", data_dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--workers", "2", "--io", io])
            .args(["--drain-timeout-ms", "5000"])
            .args(tls_args)
            .env("PORTCULLIS_LOG", filter)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = mpsc::channel();
        let (tls_sender, tls_receiver) = mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            let first_word = |rest: &str| rest.split(' ').next().unwrap_or("").to_owned();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                let addr = line.split("listening on ").nth(1).map(first_word);
                let tls_addr = line.split("listening for TLS on ").nth(1).map(first_word);
                lines.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = sender.send(addr);
                }
                if let Some(tls_addr) = tls_addr {
                    let _ = tls_sender.send(tls_addr);
                }
            }
        });
        let addr = receiver.recv_timeout(Duration::from_secs(10)).expect("data plane did not start listening");
        let tls_addr = tls.then(|| {
            let addr = tls_receiver.recv_timeout(Duration::from_secs(10)).expect("data plane did not listen for TLS");
            addr.parse().unwrap()
        });
        Self { child, addr: addr.parse().unwrap(), tls_addr, log }
    }

    pub fn connect(&self) -> Client {
        Client::connect_to(self.addr)
    }

    /// One request on a fresh connection.
    pub fn request(&self, raw: &str) -> Message {
        self.connect().send(raw.as_bytes())
    }

    /// SIGTERM, then the exit status (within 10 s).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "data plane did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|line| line.contains(needle))
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|line| line.contains(needle)).count()
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw keep-alive client connection.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Client {
    pub fn connect_to(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream }
    }

    pub fn send(&mut self, raw: &[u8]) -> Message {
        self.writer.write_all(raw).unwrap();
        self.receive()
    }

    pub fn receive(&mut self) -> Message {
        read_message(&mut self.reader, false).unwrap_or_else(|| {
            eprintln!("buffered: {:?}", String::from_utf8_lossy(self.reader.buffer()));
            // Let the data plane's last log lines arrive before failing.
            std::thread::sleep(Duration::from_millis(200));
            panic!("no response")
        })
    }

    /// True when the gateway closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }
}

/// Open client connections, as the workers count them (`ctl status` reads the same counters).
pub fn connections_active(data_dir: &Path) -> u64 {
    let stats = portcullis_contract::stats::StatsRegion::open(&data_dir.join("run/stats.shm")).unwrap();
    (0..stats.worker_count()).map(|i| stats.worker(i).unwrap().connections_active.load(Ordering::Relaxed)).sum()
}

/// Of those, the parked ones (idle keep-alive connections in the workers' registries).
pub fn connections_parked(data_dir: &Path) -> u64 {
    let stats = portcullis_contract::stats::StatsRegion::open(&data_dir.join("run/stats.shm")).unwrap();
    (0..stats.worker_count()).map(|i| stats.worker(i).unwrap().connections_parked.load(Ordering::Relaxed)).sum()
}

/// Polls `condition` for up to 10 s.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
