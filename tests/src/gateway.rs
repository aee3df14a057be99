//! A running `portcullis up` (control, data plane and echo backend), started in its own process
//! group on an ephemeral port with its own data directory, and everything killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{TempDir, bins};

/// How long `up` may take to print its ready lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped gateway may take to exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start the gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// `uring` or `epoll`.
    pub io: String,
    /// `None`: the embedded quickstart configuration.
    pub config: Option<PathBuf>,
    pub workers: usize,
    pub extra_args: Vec<String>,
    /// `--listen` (default `127.0.0.1:0`).
    pub listen: String,
    /// Run `up` inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
}

impl GatewayOptions {
    pub fn new(io: &str) -> Self {
        Self {
            io: io.to_owned(),
            config: None,
            workers: 2,
            extra_args: Vec::new(),
            listen: "127.0.0.1:0".to_owned(),
            netns: None,
        }
    }

    pub fn config(mut self, dir: &Path) -> Self {
        self.config = Some(dir.to_owned());
        self
    }
}

/// A gateway under test.
#[derive(Debug)]
pub struct Gateway {
    child: Option<Child>,
    pgid: i32,
    /// `up`'s children when it was ready (data plane, echo backend): they run in process groups
    /// of their own and outlive a killed `up` by design, so the test kills them itself.
    children: Vec<i32>,
    pub data_dir: TempDir,
    pub addr: SocketAddr,
    /// The management API's base URL (`http://127.0.0.1:PORT`).
    pub management_url: String,
    /// The ops listener's base URL (`http://127.0.0.1:PORT`: `/metrics`, `/healthz`, `/readyz`).
    pub ops_url: String,
    /// The developer portal's base URL (`http://127.0.0.1:PORT`).
    pub portal_url: String,
    /// The `https://` address, when started with `--listen-tls`.
    pub tls_addr: Option<SocketAddr>,
    pub admin_socket: PathBuf,
    /// The `demo subscription key:` line, when the config has an active `demo` subscription.
    pub demo_key: Option<String>,
    pub stdout_lines: Vec<String>,
    log_path: PathBuf,
}

impl Gateway {
    pub fn start(options: GatewayOptions) -> Self {
        let data_dir = TempDir::new("gw");
        let log_path = data_dir.path().join("up.log");
        let log = std::fs::File::create(&log_path).expect("create log");
        let mut command = match &options.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(bins::portcullis());
                command
            }
            None => Command::new(bins::portcullis()),
        };
        command
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir.path().join("data"))
            .args(["--listen", &options.listen, "--io", &options.io, "--workers", &options.workers.to_string()])
            .args(["--drain-timeout-ms", "5000", "--listen-management", "127.0.0.1:0"])
            .args(["--listen-ops", "127.0.0.1:0", "--listen-portal", "127.0.0.1:0"]);
        if let Some(config) = &options.config {
            command.arg("--config").arg(config);
        }
        command.args(&options.extra_args);
        command.stdout(Stdio::piped()).stderr(Stdio::from(log)).stdin(Stdio::null()).process_group(0);
        command.env("PORTCULLIS_LOG", "info");
        let mut child = command.spawn().expect("spawn portcullis up");
        let pgid = child.id() as i32;
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });

        let mut gateway = Self {
            child: Some(child),
            pgid,
            children: Vec::new(),
            admin_socket: data_dir.path().join("data").join("admin.sock"),
            data_dir,
            addr: "0.0.0.0:0".parse().expect("placeholder addr"),
            management_url: String::new(),
            ops_url: String::new(),
            portal_url: String::new(),
            tls_addr: None,
            demo_key: None,
            stdout_lines: Vec::new(),
            log_path,
        };
        gateway.wait_ready(&lines_rx);
        gateway.children = children_of(pgid);
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || while lines_rx.recv().is_ok() {});
        gateway
    }

    fn wait_ready(&mut self, lines: &mpsc::Receiver<String>) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("portcullis: gateway listening on http://") {
                        self.addr = url.trim().parse().expect("listen address");
                    } else if let Some(url) = line.strip_prefix("portcullis: gateway listening on https://") {
                        self.tls_addr = Some(url.trim().parse().expect("TLS listen address"));
                    } else if let Some(rest) = line.strip_prefix("portcullis: management API on ") {
                        self.management_url = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    } else if let Some(rest) = line.strip_prefix("portcullis: ops (metrics, health) on ") {
                        self.ops_url = rest.trim().to_owned();
                    } else if let Some(rest) = line.strip_prefix("portcullis: developer portal on ") {
                        self.portal_url = rest.trim().to_owned();
                    } else if let Some(path) = line.strip_prefix("portcullis: admin socket ") {
                        self.admin_socket = PathBuf::from(path.trim());
                    } else if let Some(key) = line.strip_prefix("demo subscription key: ") {
                        self.demo_key = Some(key.trim().to_owned());
                    }
                    let done = line.starts_with("portcullis: config ") && self.addr.port() != 0;
                    self.stdout_lines.push(line);
                    if done {
                        // The key and the try line follow immediately when there is a demo key.
                        while let Ok(line) = lines.recv_timeout(Duration::from_millis(300)) {
                            if let Some(key) = line.strip_prefix("demo subscription key: ") {
                                self.demo_key = Some(key.trim().to_owned());
                            }
                            self.stdout_lines.push(line);
                        }
                        return;
                    }
                }
                Err(_) => panic!("gateway did not become ready; stdout: {:?}\nlog:\n{}", self.stdout_lines, self.log()),
            }
        }
    }

    /// The ops listener's address.
    pub fn ops_addr(&self) -> SocketAddr {
        let addr = self.ops_url.strip_prefix("http://").expect("the ops line was printed");
        addr.parse().expect("ops listener address")
    }

    /// The data directory passed to `up`.
    pub fn data(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    /// Everything control, data plane and echo backend logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs `portcullis ctl --data-dir <data> ARGS…`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bins::portcullis())
            .arg("ctl")
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .output()
            .expect("run portcullis ctl")
    }

    /// `ctl status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let output = self.ctl(&["status", "--json"]);
        assert!(output.status.success(), "ctl status failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("ctl status --json prints JSON")
    }

    /// The control process id (`up`).
    pub fn control_pid(&self) -> i32 {
        self.pgid
    }

    /// The data plane's pid, from its pid file.
    pub fn dataplane_pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.data().join("run/dataplane.pid")).expect("dataplane pid file");
        text.trim().parse().expect("pid")
    }

    /// Sends `signal` to the control process only.
    pub fn signal_control(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned; no memory is involved.
        unsafe { libc::kill(self.pgid, signal) };
    }

    /// Waits for the control process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = crate::wait::exit_within(self.child.as_mut()?, timeout)?;
        self.child = None;
        Some(status)
    }

    /// SIGTERM to control and wait for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal_control(libc::SIGTERM);
        self.wait_exit(STOP_TIMEOUT)
            .unwrap_or_else(|| panic!("gateway did not stop after SIGTERM; log:\n{}", self.log()))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- gateway log ({}) ----\n{}", self.log_path.display(), self.log());
        }
        // `up` starts the data plane and the echo backend in process groups of their own (so a
        // Ctrl-C reaches control only): kill those groups too, or they outlive the test.
        let mut children = children_of(self.pgid);
        children.extend(&self.children);
        for child in children {
            // SAFETY: kill(2) on a child's process group; no memory is involved.
            unsafe { libc::kill(-child, libc::SIGKILL) };
        }
        // SAFETY: kill(2) on the process group we created; no memory is involved.
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// The children of process `pid` (from every thread's `/proc/PID/task/TID/children`).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|pid| pid.parse().ok()).collect::<Vec<i32>>())
        .collect()
}

/// Kills a process by pid (for orphans left on purpose, such as a data plane outliving control).
pub fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2); no memory is involved.
    unsafe { libc::kill(pid, signal) };
}

/// True while `pid` runs (a zombie awaiting its reaper counts as gone: orphans are reaped by
/// whatever init the machine has, which may be slow or absent in containers).
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks existence.
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false);
    exists && !zombie
}
