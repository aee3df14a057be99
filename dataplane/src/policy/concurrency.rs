//! `limit-concurrency`: in-flight counts per key, shared by every worker, as gauges of the
//! counter store ([`crate::counters`]): entering and leaving are one compare-and-swap each, and
//! no worker waits for another.

use std::sync::Arc;

use crate::counters::{CounterStore, KeyHasher, Lease, LocalCounters, Namespace};

/// Slots of the process's gauge table (16 bytes each: 4 MiB): distinct keys in flight at once,
/// bounding memory when keys come from requests. A key whose bucket of slots is full (the table
/// mostly full) is refused, as a limit that cannot be counted cannot be granted.
pub const CONCURRENCY_SLOTS: usize = 1 << 18;

/// The counters.
#[derive(Debug)]
pub struct ConcurrencyLimits {
    store: Box<dyn CounterStore>,
    keys: KeyHasher,
}

impl Default for ConcurrencyLimits {
    fn default() -> Self {
        Self::with_store(Box::new(LocalCounters::new(CONCURRENCY_SLOTS)))
    }
}

impl ConcurrencyLimits {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The limits on another store (a cluster backend, a smaller table in tests).
    pub fn with_store(store: Box<dyn CounterStore>) -> Self {
        Self { store, keys: KeyHasher::default() }
    }

    /// Enters the limit for `key` if fewer than `max` requests are inside it.
    pub fn try_enter(self: &Arc<Self>, key: &str, max: u32) -> Option<ConcurrencyGuard> {
        let lease = self.store.acquire(self.keys.key(Namespace::Concurrency, key.as_bytes()), max)?;
        Some(ConcurrencyGuard { limits: Arc::clone(self), lease: Some(lease) })
    }

    /// Requests inside the limit for `key` now.
    pub fn count(&self, key: &str) -> u32 {
        let count = self.store.gauge(self.keys.key(Namespace::Concurrency, key.as_bytes()));
        u32::try_from(count).unwrap_or(u32::MAX)
    }
}

/// One request inside one limit. Dropping it leaves the limit, on every path: normal exit,
/// error, dropped connection (the request state is dropped with the request).
#[derive(Debug)]
pub struct ConcurrencyGuard {
    limits: Arc<ConcurrencyLimits>,
    /// Taken by `drop`.
    lease: Option<Lease>,
}

impl Drop for ConcurrencyGuard {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.limits.store.release(lease);
        }
    }
}
