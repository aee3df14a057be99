//! Waiting for what a gateway does in its own time (a connection counted out, a log line).

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How long [`eventually`] waits.
pub const EVENTUALLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often it looks.
pub const EVENTUALLY_POLL: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds; fails the test, naming `what`, after [`EVENTUALLY_TIMEOUT`].
pub fn eventually(what: &str, condition: impl FnMut() -> bool) {
    eventually_within(EVENTUALLY_TIMEOUT, what, condition);
}

/// [`eventually`] with its own bound, for what takes longer (a restart, a cold start).
pub fn eventually_within(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(EVENTUALLY_POLL);
    }
}

/// Waits up to `timeout` for `child` to exit: its status, or `None` if it is still running.
pub fn exit_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(EVENTUALLY_POLL);
    }
}
