//! Waiting for what a gateway does in its own time (a connection counted out, a log line).

use std::time::{Duration, Instant};

/// How long [`eventually`] waits.
pub const EVENTUALLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often it looks.
pub const EVENTUALLY_POLL: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds; fails the test, naming `what`, after [`EVENTUALLY_TIMEOUT`].
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(EVENTUALLY_POLL);
    }
}
