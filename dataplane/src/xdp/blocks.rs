//! Blocked sources: the table user space keeps (the XDP `BLOCKED_V4/V6` tries mirror it),
//! persisted in the data directory so that blocks survive a data-plane restart.
//!
//! Expiries are wall-clock (Unix ms) here and in the file, because monotonic time restarts with
//! the machine; the kernel maps get the monotonic equivalent when a block is written.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use portcullis_contract::xdp::IpPrefix;
use serde_json::{Value, json};

/// Blocks kept at most (the kernel tries hold [`portcullis_ebpf_common::BLOCKED_MAX`] per family).
pub const BLOCKS_MAX: usize = 65_536;

/// Errors of the block table.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{0} blocks already: unblock some first")]
    Full(usize),
    #[error("writing {path}: {source}")]
    Persist { path: PathBuf, source: std::io::Error },
    #[error("reading {path}: {reason}")]
    Restore { path: PathBuf, reason: String },
}

/// Who put a block in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOrigin {
    /// `portcullis ctl block`.
    Operator,
    /// The client exceeded the per-IP request limit.
    RateLimit,
}

impl BlockOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockOrigin::Operator => "operator",
            BlockOrigin::RateLimit => "rate-limit",
        }
    }
}

/// One block: until when (`None`: until unblocked) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub until_unix_ms: Option<u64>,
    pub origin: BlockOrigin,
}

/// The table of blocks.
#[derive(Debug, Default)]
pub struct Blocks {
    entries: BTreeMap<IpPrefix, Block>,
    /// Changed since the last [`Blocks::persist`].
    dirty: bool,
}

impl Blocks {
    /// Adds or replaces a block.
    pub fn insert(&mut self, prefix: IpPrefix, block: Block) -> Result<(), BlockError> {
        if self.entries.len() >= BLOCKS_MAX && !self.entries.contains_key(&prefix) {
            return Err(BlockError::Full(BLOCKS_MAX));
        }
        self.entries.insert(prefix, block);
        self.dirty = true;
        Ok(())
    }

    /// Removes a block; whether there was one.
    pub fn remove(&mut self, prefix: &IpPrefix) -> bool {
        let removed = self.entries.remove(prefix).is_some();
        self.dirty |= removed;
        removed
    }

    /// The block covering `ip` now, if any (any covering prefix that has not expired).
    pub fn covering(&self, ip: IpAddr, now_unix_ms: u64) -> Option<(IpPrefix, Block)> {
        self.entries
            .iter()
            .filter(|(prefix, block)| {
                prefix.contains(ip) && block.until_unix_ms.is_none_or(|until| until > now_unix_ms)
            })
            .map(|(prefix, block)| (*prefix, *block))
            .next()
    }

    /// Whether `ip` is blocked now; cheap when the table is empty (the common case).
    pub fn is_blocked(&self, ip: IpAddr, now_unix_ms: u64) -> bool {
        !self.entries.is_empty() && self.covering(ip, now_unix_ms).is_some()
    }

    /// Removes expired blocks and returns their prefixes (to remove from the kernel too).
    pub fn expire(&mut self, now_unix_ms: u64) -> Vec<IpPrefix> {
        let expired: Vec<IpPrefix> = self
            .entries
            .iter()
            .filter(|(_, block)| block.until_unix_ms.is_some_and(|until| until <= now_unix_ms))
            .map(|(prefix, _)| *prefix)
            .collect();
        for prefix in &expired {
            self.entries.remove(prefix);
        }
        self.dirty |= !expired.is_empty();
        expired
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpPrefix, &Block)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The blocks as JSON (status output and the file).
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.entries
                .iter()
                .map(|(prefix, block)| {
                    json!({"prefix": prefix.to_string(), "until_unix_ms": block.until_unix_ms, "origin": block.origin.as_str()})
                })
                .collect(),
        )
    }

    /// Writes the table to `path` (write, fsync, rename), clearing the dirty mark.
    pub fn persist(&mut self, path: &Path) -> Result<(), BlockError> {
        let error = |source| BlockError::Persist { path: path.to_path_buf(), source };
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&self.to_json()).map_err(|e| error(e.into()))?;
        {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&temporary).map_err(error)?;
            file.write_all(&text).map_err(error)?;
            file.sync_all().map_err(error)?;
        }
        std::fs::rename(&temporary, path).map_err(error)?;
        self.dirty = false;
        Ok(())
    }

    /// Reads the table written by [`Blocks::persist`]; a missing file is an empty table.
    /// Entries that expired while the data plane was down are dropped.
    pub fn restore(path: &Path, now_unix_ms: u64) -> Result<Self, BlockError> {
        let failure = |reason: String| BlockError::Restore { path: path.to_path_buf(), reason };
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(error) => return Err(failure(error.to_string())),
        };
        let value: Value = serde_json::from_slice(&text).map_err(|e| failure(e.to_string()))?;
        let mut blocks = Self::default();
        for entry in value.as_array().ok_or_else(|| failure("not a JSON array".into()))? {
            let prefix = entry
                .get("prefix")
                .and_then(Value::as_str)
                .and_then(|text| IpPrefix::parse(text).ok())
                .ok_or_else(|| failure(format!("bad entry {entry}")))?;
            let until_unix_ms = entry.get("until_unix_ms").and_then(Value::as_u64);
            let origin = match entry.get("origin").and_then(Value::as_str) {
                Some("rate-limit") => BlockOrigin::RateLimit,
                _ => BlockOrigin::Operator,
            };
            if until_unix_ms.is_none_or(|until| until > now_unix_ms) {
                blocks.entries.insert(prefix, Block { until_unix_ms, origin });
            }
        }
        Ok(blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> IpPrefix {
        IpPrefix::parse(text).unwrap()
    }

    #[test]
    fn covers_expires_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("portcullis-blocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("blocks.json");
        let mut blocks = Blocks::default();
        blocks.insert(prefix("10.0.0.0/8"), Block { until_unix_ms: None, origin: BlockOrigin::Operator }).unwrap();
        blocks
            .insert(prefix("192.0.2.7"), Block { until_unix_ms: Some(2_000), origin: BlockOrigin::RateLimit })
            .unwrap();
        blocks.insert(prefix("192.0.2.8"), Block { until_unix_ms: Some(500), origin: BlockOrigin::RateLimit }).unwrap();
        assert!(blocks.is_blocked("10.9.9.9".parse().unwrap(), 1_000));
        assert!(blocks.is_blocked("192.0.2.7".parse().unwrap(), 1_000));
        assert!(!blocks.is_blocked("192.0.2.8".parse().unwrap(), 1_000));
        assert!(blocks.is_dirty());
        blocks.persist(&path).unwrap();
        assert!(!blocks.is_dirty());

        let restored = Blocks::restore(&path, 1_000).unwrap();
        assert_eq!(restored.len(), 2, "the expired block is not restored");
        assert_eq!(restored.covering("192.0.2.7".parse().unwrap(), 1_000).unwrap().1.origin, BlockOrigin::RateLimit);

        let mut restored = restored;
        assert_eq!(restored.expire(3_000), vec![prefix("192.0.2.7")]);
        assert!(restored.remove(&prefix("10.0.0.0/8")));
        assert!(restored.is_empty());
        assert!(Blocks::restore(&dir.join("missing.json"), 0).unwrap().is_empty());
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(Blocks::restore(&path, 0), Err(BlockError::Restore { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
