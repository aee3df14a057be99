//! Idle keep-alive connections of one worker, keyed by endpoint (address, and for TLS the server
//! name and trust anchors), bounded and expiring.
//!
//! Sans-IO apart from holding the streams: the caller passes the time, so expiry is tested
//! without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use portcullis_contract::model::PoolSettings;

use super::BackendKey;

/// Endpoints whose idle queues are kept at most (per worker): beyond it, the emptiest queues are
/// dropped, so `set-backend-service` to ever new addresses cannot grow the map without bound.
pub(crate) const ENDPOINTS_TRACKED_MAX: usize = 4_096;
/// Every endpoint's queue is swept for expired connections at most this often, on the worker's
/// next use of the pool: endpoints no longer picked do not keep their sockets open for long.
pub(crate) const SWEEP_INTERVAL_MS: u64 = 1_000;

struct Idle<S> {
    stream: S,
    since: Instant,
    expires: Instant,
}

/// Idle connections per endpoint; most recently used first out (warm sockets, and the oldest
/// ones age out at the front).
pub(crate) struct IdlePool<S> {
    idle: AHashMap<BackendKey, VecDeque<Idle<S>>>,
    swept: Option<Instant>,
}

impl<S> IdlePool<S> {
    pub(crate) fn new() -> Self {
        Self { idle: AHashMap::new(), swept: None }
    }

    /// Closes (hands back in `expired`) the expired connections of every endpoint, at most once
    /// per [`SWEEP_INTERVAL_MS`].
    pub(crate) fn sweep(&mut self, now: Instant, expired: &mut Vec<S>) {
        if self.swept.is_some_and(|at| now.saturating_duration_since(at) < Duration::from_millis(SWEEP_INTERVAL_MS)) {
            return;
        }
        self.swept = Some(now);
        for queue in self.idle.values_mut() {
            while queue.front().is_some_and(|entry| entry.expires <= now) {
                expired.extend(queue.pop_front().map(|entry| entry.stream));
            }
        }
        self.idle.retain(|_, queue| !queue.is_empty());
    }

    /// Endpoints with a queue (for debugging output).
    pub(crate) fn endpoints(&self) -> usize {
        self.idle.len()
    }

    /// The most recently returned connection to `addr` idle for less than the timeout; expired
    /// ones are handed back in `expired` to be closed (never reused).
    pub(crate) fn take(
        &mut self,
        key: &BackendKey,
        settings: PoolSettings,
        now: Instant,
        expired: &mut Vec<S>,
    ) -> Option<S> {
        let queue = self.idle.get_mut(key)?;
        let timeout = Duration::from_millis(u64::from(settings.idle_timeout_ms));
        while let Some(entry) = queue.pop_back() {
            if now.saturating_duration_since(entry.since) < timeout {
                return Some(entry.stream);
            }
            // Older entries sit in front of this one: all of them have expired too.
            expired.push(entry.stream);
            expired.extend(queue.drain(..).map(|entry| entry.stream));
        }
        None
    }

    /// Keeps `stream` for reuse; expired and surplus connections come back in `closed`.
    pub(crate) fn put(
        &mut self,
        key: BackendKey,
        stream: S,
        settings: PoolSettings,
        now: Instant,
        closed: &mut Vec<S>,
    ) {
        if settings.max_idle_per_endpoint == 0 {
            closed.push(stream);
            return;
        }
        if self.idle.len() >= ENDPOINTS_TRACKED_MAX && !self.idle.contains_key(&key) {
            self.idle.retain(|_, queue| !queue.is_empty());
            if self.idle.len() >= ENDPOINTS_TRACKED_MAX {
                closed.push(stream);
                return;
            }
        }
        let queue = self.idle.entry(key).or_default();
        let timeout = Duration::from_millis(u64::from(settings.idle_timeout_ms));
        while queue.front().is_some_and(|entry| now.saturating_duration_since(entry.since) >= timeout) {
            closed.extend(queue.pop_front().map(|entry| entry.stream));
        }
        while queue.len() >= settings.max_idle_per_endpoint as usize {
            closed.extend(queue.pop_front().map(|entry| entry.stream));
        }
        queue.push_back(Idle { stream, since: now, expires: now + timeout });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain endpoint's pool key.
    fn key(addr: &str) -> BackendKey {
        BackendKey { addr: addr.parse().unwrap(), tls: None }
    }

    const SETTINGS: PoolSettings = PoolSettings { max_idle_per_endpoint: 2, idle_timeout_ms: 1_000 };

    #[test]
    fn reuses_newest_first_and_bounds_each_endpoint() {
        let mut pool = IdlePool::new();
        let addr = key("127.0.0.1:1");
        let t0 = Instant::now();
        let mut closed = Vec::new();
        for stream in 1..=3 {
            pool.put(addr.clone(), stream, SETTINGS, t0, &mut closed);
        }
        assert_eq!(closed, [1], "the oldest goes when the endpoint is full");
        let mut expired = Vec::new();
        assert_eq!(pool.take(&addr, SETTINGS, t0, &mut expired), Some(3));
        assert_eq!(pool.take(&addr, SETTINGS, t0, &mut expired), Some(2));
        assert_eq!(pool.take(&addr, SETTINGS, t0, &mut expired), None);
        assert!(expired.is_empty());
        let other = key("127.0.0.1:2");
        assert_eq!(pool.take(&other, SETTINGS, t0, &mut expired), None);
    }

    #[test]
    fn expired_connections_are_closed_not_reused() {
        let mut pool = IdlePool::new();
        let addr = key("127.0.0.1:1");
        let t0 = Instant::now();
        let mut closed = Vec::new();
        pool.put(addr.clone(), 1, SETTINGS, t0, &mut closed);
        pool.put(addr.clone(), 2, SETTINGS, t0 + Duration::from_millis(500), &mut closed);
        let mut expired = Vec::new();
        // At 1.2 s the first has been idle 1.2 s (expired), the second 0.7 s (fresh).
        assert_eq!(pool.take(&addr, SETTINGS, t0 + Duration::from_millis(1_200), &mut expired), Some(2));
        assert!(expired.is_empty());
        pool.put(addr.clone(), 3, SETTINGS, t0 + Duration::from_millis(1_200), &mut closed);
        assert_eq!(closed, [1], "put drops the expired one at the front");
        assert_eq!(pool.take(&addr, SETTINGS, t0 + Duration::from_millis(2_500), &mut expired), None);
        assert_eq!(expired, [3]);
    }

    #[test]
    fn sweeps_every_endpoint_at_most_once_a_second() {
        let mut pool = IdlePool::new();
        let t0 = Instant::now();
        let mut closed = Vec::new();
        pool.put(key("127.0.0.1:1"), 1, SETTINGS, t0, &mut closed);
        pool.put(key("127.0.0.1:2"), 2, SETTINGS, t0 + Duration::from_millis(900), &mut closed);
        let mut expired = Vec::new();
        pool.sweep(t0 + Duration::from_millis(100), &mut expired);
        assert!(expired.is_empty());
        pool.sweep(t0 + Duration::from_millis(1_050), &mut expired);
        assert!(expired.is_empty(), "swept 950 ms ago: not yet");
        pool.sweep(t0 + Duration::from_millis(1_100), &mut expired);
        assert_eq!(expired, [1]);
        assert_eq!(pool.endpoints(), 1);
    }

    #[test]
    fn zero_idle_keeps_nothing() {
        let mut pool = IdlePool::new();
        let mut closed = Vec::new();
        let settings = PoolSettings { max_idle_per_endpoint: 0, ..SETTINGS };
        pool.put(key("127.0.0.1:1"), 1, settings, Instant::now(), &mut closed);
        assert_eq!(closed, [1]);
        assert_eq!(pool.endpoints(), 0);
    }
}
