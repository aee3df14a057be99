//! Blocked sources: the table the xdp threads keep (the XDP `BLOCKED_V4/V6` tries mirror it, and
//! workers read its published [`BlockLookup`]), persisted in the data directory so that blocks
//! survive a data-plane restart.
//!
//! Expiries are wall-clock (Unix ms) here and in the file, because monotonic time restarts with
//! the machine; the kernel maps get the monotonic equivalent when a block is written.

pub mod lookup;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use portcullis_contract::xdp::IpPrefix;
use serde_json::{Value, json};

pub use self::lookup::BlockLookup;

/// Blocks kept at most, both families together: the kernel's trie of each family holds
/// [`portcullis_ebpf_common::BLOCKED_MAX`], so whatever the split, every block fits in the kernel.
pub const BLOCKS_MAX: usize = portcullis_ebpf_common::BLOCKED_MAX as usize;

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

    /// The file's bytes if the table changed since it was last saved, marking it saved: the
    /// caller writes them with [`write_file`] after letting go of the table, and calls
    /// [`Blocks::mark_unsaved`] if that fails.
    pub fn take_unsaved(&mut self) -> Option<Vec<u8>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        // Serializing a `Value` to a Vec cannot fail.
        Some(serde_json::to_vec_pretty(&self.to_json()).unwrap_or_default())
    }

    /// Marks the table changed (a save of it failed).
    pub fn mark_unsaved(&mut self) {
        self.dirty = true;
    }

    /// Writes the table to `path` if it changed ([`Blocks::take_unsaved`], [`write_file`]).
    pub fn persist(&mut self, path: &Path) -> Result<(), BlockError> {
        let Some(bytes) = self.take_unsaved() else { return Ok(()) };
        write_file(path, &bytes).inspect_err(|_| self.mark_unsaved())
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

/// Writes a block table's bytes to `path`: write, fsync, rename.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BlockError> {
    use std::io::Write as _;
    let error = |source| BlockError::Persist { path: path.to_path_buf(), source };
    let temporary = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&temporary).map_err(error)?;
        file.write_all(bytes).map_err(error)?;
        file.sync_all().map_err(error)?;
    }
    std::fs::rename(&temporary, path).map_err(error)
}

#[cfg(test)]
mod tests;
