//! Reloads counted by how they ended, for `portcullis_config_reloads_total`: the admin socket's
//! `reload` and `apply`, and the management store's publishes.

use std::sync::atomic::{AtomicU64, Ordering};

/// How one reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The data plane applied the new generation.
    Applied,
    /// The config did not compile or could not be published; nothing changed.
    Refused,
    /// The data plane refused the snapshot and kept serving the previous one.
    Rejected,
    /// Published, but the data plane did not answer in time.
    TimedOut,
}

impl ReloadResult {
    /// Every result, in the order [`Reloads::counts`] lists them.
    pub const ALL: [ReloadResult; 4] =
        [ReloadResult::Applied, ReloadResult::Refused, ReloadResult::Rejected, ReloadResult::TimedOut];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Refused => "refused",
            ReloadResult::Rejected => "rejected",
            ReloadResult::TimedOut => "timed-out",
        }
    }
}

/// One counter per [`ReloadResult`].
#[derive(Debug, Default)]
pub struct Reloads {
    counts: [AtomicU64; 4],
}

impl Reloads {
    pub fn count(&self, result: ReloadResult) {
        self.counts[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every result with its count so far.
    pub fn counts(&self) -> [(ReloadResult, u64); 4] {
        ReloadResult::ALL.map(|result| (result, self.counts[result as usize].load(Ordering::Relaxed)))
    }
}
