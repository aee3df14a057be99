//! The child processes `portcullis up` runs (the data plane and the echo backend): spawning,
//! stopping with SIGTERM then SIGKILL, and the restart backoff.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::echo::LISTENING_PREFIX;

/// The echo backend prints its address right after binding; 10 s means it is not going to.
pub const ECHO_START_TIMEOUT_MS: u64 = 10_000;
/// First restart delay after a child exits unexpectedly.
pub const RESTART_DELAY_MIN_MS: u64 = 100;
/// Restart delays double up to this, so a crash loop costs little CPU and logs slowly.
pub const RESTART_DELAY_MAX_MS: u64 = 5_000;
/// A child that ran this long before exiting is restarted at the minimum delay again.
pub const STABLE_RUN_MS: u64 = 10_000;

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot start {what} ({}): {source}", .program.display())]
    Spawn { what: &'static str, program: PathBuf, source: std::io::Error },
    #[error("the echo backend did not report its address within {ECHO_START_TIMEOUT_MS} ms")]
    EchoSilent,
    #[error("the echo backend exited before listening (see its error above)")]
    EchoExited,
    #[error("the echo backend printed {line:?} instead of its address")]
    EchoGarbled { line: String },
}

/// One running child.
#[derive(Debug)]
pub struct Supervised {
    pub child: Child,
    pub started: Instant,
}

/// Starts the echo backend (`<exe> echo-backend --listen <listen>`) and reads its address.
pub async fn spawn_echo(exe: &Path, listen: SocketAddr) -> Result<(Supervised, SocketAddr), ChildError> {
    let mut command = Command::new(exe);
    command.arg("echo-backend").arg("--listen").arg(listen.to_string()).stdout(Stdio::piped());
    let mut child = spawn(command, "the echo backend", exe)?;
    let Some(stdout) = child.stdout.take() else { return Err(ChildError::EchoExited) };
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_millis(ECHO_START_TIMEOUT_MS), lines.next_line()).await;
    let line = match first {
        Err(_) => return Err(ChildError::EchoSilent),
        Ok(Ok(Some(line))) => line,
        Ok(_) => return Err(ChildError::EchoExited),
    };
    let addr = line.strip_prefix(LISTENING_PREFIX).and_then(|addr| addr.parse().ok());
    let Some(addr) = addr else { return Err(ChildError::EchoGarbled { line }) };
    // Anything it prints later goes to our stderr; stdout is reserved for the lines tests parse.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("echo backend: {line}");
        }
    });
    Ok((Supervised { child, started: Instant::now() }, addr))
}

/// Starts the data plane with `args`; its stdout and stderr are ours.
pub fn spawn_dataplane(program: &Path, args: &[OsString]) -> Result<Supervised, ChildError> {
    let mut command = Command::new(program);
    command.args(args);
    let child = spawn(command, "the data plane", program)?;
    Ok(Supervised { child, started: Instant::now() })
}

fn spawn(mut command: Command, what: &'static str, program: &Path) -> Result<Child, ChildError> {
    // Own process group: a Ctrl-C in the terminal reaches control only, which then stops the
    // children in order (the data plane drains) instead of everything dying at once.
    command.process_group(0).kill_on_drop(true).stdin(Stdio::null());
    command.spawn().map_err(|source| ChildError::Spawn { what, program: program.to_path_buf(), source })
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILLs. Returns the exit status when known.
pub async fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            tracing::warn!(
                "child {} did not stop within {} ms; killing it",
                child.id().unwrap_or(0),
                grace.as_millis()
            );
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    }
}

/// Restart delays: doubling from the minimum, back to the minimum after a stable run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next_ms: RESTART_DELAY_MIN_MS }
    }
}

impl Backoff {
    /// The delay before restarting a child that ran for `ran_for`.
    pub fn after_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= Duration::from_millis(STABLE_RUN_MS) {
            self.next_ms = RESTART_DELAY_MIN_MS;
        }
        let delay = self.next_ms;
        self.next_ms = (self.next_ms * 2).min(RESTART_DELAY_MAX_MS);
        Duration::from_millis(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut backoff = Backoff::default();
        let quick = Duration::from_millis(1);
        let delays: Vec<u64> = (0..8).map(|_| backoff.after_exit(quick).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.after_exit(Duration::from_millis(STABLE_RUN_MS)).as_millis(), 100);
    }

    #[tokio::test]
    async fn spawn_failures_name_the_program_and_echo_must_speak_first() {
        let missing = spawn_dataplane(Path::new("/nonexistent/portcullis-dataplane"), &[]).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/portcullis-dataplane"), "{missing}");
        // `true` exits at once without printing: the echo backend "exited before listening".
        let silent = spawn_echo(Path::new("/bin/true"), "127.0.0.1:0".parse().unwrap()).await.unwrap_err();
        assert!(matches!(silent, ChildError::EchoExited), "{silent}");
        let garbled = spawn_echo(Path::new("/bin/echo"), "127.0.0.1:0".parse().unwrap()).await.unwrap_err();
        assert!(matches!(garbled, ChildError::EchoGarbled { .. }), "{garbled}");
    }

    #[tokio::test]
    async fn terminate_stops_a_child() {
        let mut child = Command::new("/bin/sleep").arg("30").kill_on_drop(true).spawn().unwrap();
        let status = terminate(&mut child, Duration::from_secs(5)).await.unwrap();
        assert!(!status.success());
    }
}
