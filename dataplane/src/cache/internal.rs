//! The built-in cache: one per data plane process, shared by every worker.
//!
//! Why moka: its reads never take a lock (a lock-free hash table; the read is recorded in a
//! bounded lossy buffer with a `try_send`), writes insert with compare-and-swap and queue their
//! bookkeeping in a bounded channel, and the eviction work (TinyLFU admission, the LRU order, the
//! timer wheel of expirations) runs under a `try_lock` that a worker that finds it taken simply
//! skips. The one place a writer can wait is a full write channel (thousands of writes queued
//! faster than any thread drains them): moka then spins and sleeps for a few microseconds. quick_cache
//! (the other well-kept candidate) takes a shard's lock for every read and write, which a worker
//! could wait on behind another core. `benches/benches/cache.rs` measures a hit and a miss.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use crate::cache::CachedResponse;
use crate::policy::CachedValue;

/// One cached thing: a response (`cache-store`) or a value (`cache-store-value`), with its
/// time to live.
#[derive(Debug, Clone)]
pub enum Entry {
    Response(Arc<CachedResponse>),
    Value(CachedValue),
}

/// An entry and when it was stored, for its expiry.
#[derive(Debug, Clone)]
struct Stored {
    entry: Entry,
    ttl: Duration,
}

/// Keys and values are weighed in bytes; moka counts weights in `u32`.
fn weight(key: &Arc<str>, stored: &Stored) -> u32 {
    let bytes = key.len()
        + ENTRY_OVERHEAD_BYTES
        + match &stored.entry {
            Entry::Response(response) => response.weight(),
            Entry::Value(value) => value.weight(),
        };
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// Bytes moka and our own structures spend per entry besides key and value (the hash-table node,
/// the deque nodes, the Arc): charged so that many tiny values cannot pass the bound.
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// Each entry lives for the duration its policy gave.
struct PerEntryTtl;

impl Expiry<Arc<str>, Stored> for PerEntryTtl {
    fn expire_after_create(&self, _key: &Arc<str>, stored: &Stored, _now: Instant) -> Option<Duration> {
        Some(stored.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        stored: &Stored,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(stored.ttl)
    }
}

/// The host's built-in cache.
pub struct InternalCache {
    cache: moka::sync::Cache<Arc<str>, Stored>,
    capacity_bytes: u64,
}

impl std::fmt::Debug for InternalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalCache").field("capacity_bytes", &self.capacity_bytes).finish_non_exhaustive()
    }
}

impl PartialEq for InternalCache {
    /// One cache is only ever equal to itself (there is one per host).
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for InternalCache {}

impl InternalCache {
    /// An empty cache holding at most `capacity_bytes` of keys, entries and overhead.
    pub fn new(capacity_bytes: u64) -> Self {
        let cache =
            moka::sync::Cache::builder().max_capacity(capacity_bytes).weigher(weight).expire_after(PerEntryTtl).build();
        Self { cache, capacity_bytes }
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// The live entry under `key` (an expired one is a miss). Never waits for another thread.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.cache.get(key).map(|stored| stored.entry)
    }

    /// Keeps `entry` under `key` for `ttl` (0: not kept). An entry heavier than the whole cache is
    /// refused by moka's admission; others may evict the least useful ones.
    pub fn insert(&self, key: &str, entry: Entry, ttl: Duration) {
        if ttl.is_zero() {
            self.cache.invalidate(key);
            return;
        }
        self.cache.insert(Arc::from(key), Stored { entry, ttl });
    }

    pub fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Bytes the cache holds now (after moka's pending bookkeeping, which this runs: tests and
    /// benchmarks only).
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Entry {
        Entry::Value(CachedValue::Text(Arc::from(value)))
    }

    #[test]
    fn stores_finds_and_removes() {
        let cache = InternalCache::new(1024 * 1024);
        assert!(cache.get("a").is_none());
        cache.insert("a", text("one"), Duration::from_secs(60));
        assert!(matches!(cache.get("a"), Some(Entry::Value(CachedValue::Text(value))) if &*value == "one"));
        cache.remove("a");
        assert!(cache.get("a").is_none());
        cache.insert("b", text("two"), Duration::ZERO);
        assert!(cache.get("b").is_none(), "a zero duration keeps nothing");
    }

    #[test]
    fn entries_expire_after_their_own_duration() {
        let cache = InternalCache::new(1024 * 1024);
        cache.insert("short", text("x"), Duration::from_millis(50));
        cache.insert("long", text("y"), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get("short").is_none());
        assert!(cache.get("long").is_some());
    }

    #[test]
    fn the_byte_bound_holds() {
        let capacity = 64 * 1024;
        let cache = InternalCache::new(capacity);
        let big = "z".repeat(1000);
        for index in 0..1000 {
            cache.insert(&format!("key-{index}"), text(&big), Duration::from_secs(60));
        }
        assert!(cache.weighted_size() <= capacity, "{} > {capacity}", cache.weighted_size());
    }
}
