//! Quota counters across restarts: a thread of its own writes the quota table (and its key
//! seeds) to the data directory about once a second, write + fsync + rename, and the data plane
//! reads it back at start before any worker runs. A worker never waits for it: the thread reads
//! the table's slots atomically, as any worker does.
//!
//! Loss: a `kill -9` (or a power cut) loses the counts of the last interval at most
//! ([`QUOTA_SAVE_INTERVAL_MS`] plus one write); a SIGTERM loses none (the drain writes last).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::policy::RateLimits;
use crate::policy::limits::QuotaState;

/// How often the thread writes the counters: the most counts a `kill -9` loses.
pub const QUOTA_SAVE_INTERVAL_MS: u64 = 1_000;

const MAGIC: &[u8; 8] = b"PCQUOTA1";
/// Magic, seeds, entry count.
const HEADER_BYTES: usize = 8 + 4 * 8 + 8;
const ENTRY_BYTES: usize = 16;

/// Why a counters file was not read.
#[derive(Debug, thiserror::Error)]
pub enum QuotaStateError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is not a quota counters file (or is truncated)")]
    Format(PathBuf),
}

/// The file's bytes: magic, four seeds, the entry count, then (key, value) pairs, little-endian.
pub fn encode(state: &QuotaState) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + state.entries.len() * ENTRY_BYTES);
    out.extend_from_slice(MAGIC);
    for seed in state.seeds {
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.extend_from_slice(&(state.entries.len() as u64).to_le_bytes());
    for (key, value) in &state.entries {
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// [`encode`]'s bytes back; `None` when they are not exactly such a file.
pub fn decode(bytes: &[u8]) -> Option<QuotaState> {
    let word = |at: usize| bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if bytes.get(..8)? != MAGIC {
        return None;
    }
    let seeds = [word(8)?, word(16)?, word(24)?, word(32)?];
    let count = usize::try_from(word(40)?).ok()?;
    if bytes.len() != HEADER_BYTES.checked_add(count.checked_mul(ENTRY_BYTES)?)? {
        return None;
    }
    let entries = (0..count)
        .map(|index| {
            let at = HEADER_BYTES + index * ENTRY_BYTES;
            Some((word(at)?, word(at + 8)?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(QuotaState { seeds, entries })
}

/// Reads the counters a previous data plane kept into `limits` (nothing when there is no file).
/// Returns how many counters came back.
pub fn load(path: &Path, limits: &RateLimits) -> Result<usize, QuotaStateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(QuotaStateError::Read(path.to_owned(), error)),
    };
    let state = decode(&bytes).ok_or_else(|| QuotaStateError::Format(path.to_owned()))?;
    let restored = if limits.restore_quotas(&state, now_ns()) { state.entries.len() } else { 0 };
    Ok(restored)
}

/// Writes the counters to `path` (a temporary file beside it, fsync, rename), if there are any
/// and they changed since `last`; returns what was written.
pub fn save(path: &Path, limits: &RateLimits, last: Option<Vec<u8>>) -> std::io::Result<Option<Vec<u8>>> {
    let Some(state) = limits.quota_state(now_ns()) else { return Ok(last) };
    let bytes = encode(&state);
    if last.as_deref() == Some(bytes.as_slice()) {
        return Ok(last);
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    Ok(Some(bytes))
}

/// Starts the thread that writes the counters every [`QUOTA_SAVE_INTERVAL_MS`].
pub fn spawn(limits: Arc<RateLimits>, path: PathBuf) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("quota-state".into()).spawn(move || {
        let mut last = None;
        loop {
            std::thread::sleep(Duration::from_millis(QUOTA_SAVE_INTERVAL_MS));
            match save(&path, &limits, last.take()) {
                Ok(written) => last = written,
                Err(error) => tracing::warn!(%error, path = %path.display(), "could not save the quota counters"),
            }
        }
    })
}

/// The quota windows' clock: wall-clock ns since the Unix epoch.
fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_refuses_anything_else() {
        let state = QuotaState { seeds: [1, 2, 3, 4], entries: vec![(5, 6), (u64::MAX, 7)] };
        let bytes = encode(&state);
        assert_eq!(decode(&bytes), Some(state));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(b"PCQUOTA2"), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
    }
}
