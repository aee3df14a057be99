//! The gateway's counter store: keyed token buckets, sliding and fixed windows and gauges, shared
//! by every worker of the host and never making one wait for another. Sans-IO: time comes in as
//! an argument. See docs/counters.md.
//!
//! - [`CounterStore`]: the interface the limits use (the per-IP and SYN buckets of `xdp`,
//!   `limit-concurrency` now; `rate-limit`, `rate-limit-by-key`, `quota`, `quota-by-key` next). A
//!   cluster backend (Redis) would implement it too.
//! - [`LocalCounters`] (`local`): the host's implementation, a fixed-size table of 128-bit atomic
//!   slots (`table`) updated by compare-and-swap.
//! - [`KeyHasher`]: turns key bytes into a [`CounterKey`] with a per-process random seed.
//!
//! Every call on one store passes the same clock (`now_ns`, e.g. CLOCK_MONOTONIC): windows are
//! aligned to an origin on that clock, and idle entries are told by it.

// One `unsafe` block, in `table.rs`: the zeroed allocation of the table (see `zeroed_buckets`).
#![deny(unsafe_code)]

mod local;
mod table;
#[cfg(test)]
mod tests;

pub use local::LocalCounters;
pub use table::{BUCKET_SLOTS, CAS_ATTEMPTS_MAX};

/// Nanoseconds in a second, the unit of every duration here.
pub const NS_PER_SECOND: u64 = 1_000_000_000;

/// A counter's identity: a 64-bit keyed hash of its namespace and key bytes. Two different keys
/// share a counter only if their hashes are equal (62 bits are compared): with `n` live keys about
/// `n² / 2⁶³`, and not something a client can aim for, because the seed is random per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterKey(pub u64);

/// Which limit a key belongs to: the same bytes in two namespaces are two counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Namespace {
    /// The per-IP request limit (`[xdp] per-ip-requests-per-second`).
    SourceRequests = 1,
    /// New connections per source when the XDP program is not loaded (`[xdp] syn-rate`).
    SourceConnections = 2,
    /// `limit-concurrency`'s `key`.
    Concurrency = 3,
    /// `rate-limit` / `rate-limit-by-key` counters (next issue).
    RateLimit = 4,
    /// `quota` / `quota-by-key` counters (next issue).
    Quota = 5,
    /// `llm-token-limit` / `azure-openai-token-limit`'s tokens per minute.
    TokenRate = 6,
    /// `llm-token-limit` / `azure-openai-token-limit`'s token quota.
    TokenQuota = 7,
}

/// Hashes key bytes into [`CounterKey`]s with a seed drawn once per hasher from the OS.
#[derive(Debug, Clone)]
pub struct KeyHasher {
    state: ahash::RandomState,
    seeds: [u64; 4],
}

impl Default for KeyHasher {
    fn default() -> Self {
        let seed =
            || getrandom::u64().unwrap_or_else(|_| ahash::RandomState::new().hash_one(std::time::Instant::now()));
        Self::with_seeds([seed(), seed(), seed(), seed()])
    }
}

impl KeyHasher {
    /// A hasher with these seeds: a store whose counters outlive the process (quotas) keeps its
    /// seeds with them, so that a key hashes to the same counter after a restart.
    pub fn with_seeds(seeds: [u64; 4]) -> Self {
        let [a, b, c, d] = seeds;
        Self { state: ahash::RandomState::with_seeds(a, b, c, d), seeds }
    }

    /// The seeds, to be kept as secret as the counters they key (they never leave the host).
    pub fn seeds(&self) -> [u64; 4] {
        self.seeds
    }

    /// The counter of `bytes` in `namespace`.
    pub fn key(&self, namespace: Namespace, bytes: &[u8]) -> CounterKey {
        CounterKey(self.state.hash_one((namespace as u8, bytes)))
    }
}

/// A token bucket: `burst` tokens, refilled at `rate_per_second`; one request takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    pub rate_per_second: u32,
    pub burst: u32,
    /// On a refusal the bucket stays empty this long (the per-IP limit's block); 0: no penalty.
    pub penalty_ns: u64,
}

/// A sliding window: at most `limit` hits in any `period_seconds` (approximated from two fixed
/// windows, see docs/counters.md for the accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    pub limit: u32,
    /// At least 1.
    pub period_seconds: u32,
    /// Where the windows start on the store's clock.
    pub origin_ns: u64,
}

/// A fixed window: at most `limit` hits from each window start to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindow {
    pub limit: u32,
    /// 0: one window for the lifetime of the store (a quota without renewal).
    pub period_seconds: u32,
    /// Where the windows start on the store's clock (quota's `first-period-start`).
    pub origin_ns: u64,
}

/// Whether hits are counted when they do not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Count the hits only if they fit: a request checked and counted at once.
    IfAdmitted,
    /// Count them whatever the limit says: an increment decided after the response
    /// (`increment-condition` reading the response, a quota's bandwidth).
    Always,
    /// Count nothing; only say whether the hits would fit (a limit checked before the response
    /// and counted after it, a quota key that this request counted already).
    Never,
}

/// The answer to a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub admitted: bool,
    /// Hits (or tokens) left after this one.
    pub remaining: u64,
    /// When refused: how long until the same hit would fit, if nothing else came (ns);
    /// `u64::MAX` when it never will (a lifetime quota, a hit larger than the limit).
    pub retry_after_ns: u64,
    /// `false`: the store had no room for the key (or stayed contended) and did not count it.
    pub tracked: bool,
    /// A token bucket's refusal that started its penalty (the first refusal since an admission).
    pub penalty_started: bool,
}

impl Decision {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after_ns.div_ceil(NS_PER_SECOND).max(1)
    }
}

/// A gauge held up by one [`CounterStore::acquire`]; give it back with [`CounterStore::release`].
#[derive(Debug, PartialEq, Eq)]
pub struct Lease {
    pub key: CounterKey,
    /// Where the store keeps the gauge (the local table's slot; a backend's own token).
    pub slot: u64,
}

/// The counter store's interface. Every method is non-blocking for the local store; a cluster
/// backend would answer from a local view and reconcile with the cluster off the request path.
pub trait CounterStore: Send + Sync + std::fmt::Debug {
    /// Takes one token from `key`'s bucket.
    fn take(&self, key: CounterKey, bucket: TokenBucket, now_ns: u64) -> Decision;

    /// Adds `hits` to `key`'s sliding window (0: only look).
    fn hit_sliding(&self, key: CounterKey, window: SlidingWindow, hits: u32, charge: Charge, now_ns: u64) -> Decision;

    /// Adds `hits` to `key`'s fixed window (0: only look).
    fn hit_fixed(&self, key: CounterKey, window: FixedWindow, hits: u32, charge: Charge, now_ns: u64) -> Decision;

    /// Raises `key`'s gauge by one if it is below `max`; `None`: refused (at `max`, or no room to
    /// count it, which a concurrency limit must treat as over).
    fn acquire(&self, key: CounterKey, max: u32) -> Option<Lease>;

    /// Lowers the gauge a [`CounterStore::acquire`] raised.
    fn release(&self, lease: Lease);

    /// `key`'s gauge now.
    fn gauge(&self, key: CounterKey) -> u64;

    /// Forgets idle counters (full buckets, ended windows, gauges at 0); returns the live ones.
    fn sweep(&self, now_ns: u64) -> usize;
}
