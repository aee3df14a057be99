//! `limit-concurrency`: in-flight counts per key, shared by every worker.
//!
//! A fixed array of shards, each a small map behind a mutex held only for one increment or
//! decrement (never across I/O). Keys are kept as 64-bit hashes (fixed seeds), so entering does
//! not allocate once a key's slot exists; two keys colliding would share a count, which at 64
//! bits is far rarer than any misconfiguration.

use std::sync::{Arc, Mutex, MutexGuard};

use ahash::AHashMap;

/// Shards of the counter map: a power of two well above the worker count, so two workers
/// rarely wait for the same lock.
pub const CONCURRENCY_SHARDS: usize = 64;
/// Distinct keys held at once across the process: bounds memory when keys come from requests.
pub const CONCURRENCY_KEYS_MAX: usize = 1 << 20;

const _: () = assert!(CONCURRENCY_SHARDS.is_power_of_two());

/// The counters.
#[derive(Debug)]
pub struct ConcurrencyLimits {
    shards: Box<[Mutex<AHashMap<u64, u32>>]>,
    hasher: ahash::RandomState,
}

impl Default for ConcurrencyLimits {
    fn default() -> Self {
        Self {
            shards: (0..CONCURRENCY_SHARDS).map(|_| Mutex::new(AHashMap::new())).collect(),
            hasher: ahash::RandomState::with_seeds(0x5eed_0001, 0x5eed_0002, 0x5eed_0003, 0x5eed_0004),
        }
    }
}

impl ConcurrencyLimits {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Enters the limit for `key` if fewer than `max` requests are inside it.
    pub fn try_enter(self: &Arc<Self>, key: &str, max: u32) -> Option<ConcurrencyGuard> {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        if shard.len() >= CONCURRENCY_KEYS_MAX / CONCURRENCY_SHARDS && !shard.contains_key(&hash) {
            return None;
        }
        let count = shard.entry(hash).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        drop(shard);
        Some(ConcurrencyGuard { limits: Arc::clone(self), hash })
    }

    /// Requests inside the limit for `key` now.
    pub fn count(&self, key: &str) -> u32 {
        let hash = self.hasher.hash_one(key);
        self.shard(hash).get(&hash).copied().unwrap_or(0)
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, AHashMap<u64, u32>> {
        // The low bits pick the shard; `& (len - 1)` is in bounds because len is a power of two.
        let shard = &self.shards[(hash as usize) & (CONCURRENCY_SHARDS - 1)];
        // A poisoned shard still holds consistent counts (no code between lock and unlock panics).
        shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn leave(&self, hash: u64) {
        let mut shard = self.shard(hash);
        if let Some(count) = shard.get_mut(&hash) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                shard.remove(&hash);
            }
        }
    }
}

/// One request inside one limit. Dropping it leaves the limit, on every path: normal exit,
/// error, dropped connection (the request state is dropped with the request).
#[derive(Debug)]
pub struct ConcurrencyGuard {
    limits: Arc<ConcurrencyLimits>,
    hash: u64,
}

impl Drop for ConcurrencyGuard {
    fn drop(&mut self) {
        self.limits.leave(self.hash);
    }
}
