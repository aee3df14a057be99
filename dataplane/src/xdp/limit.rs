//! Per-source token buckets in user space: the per-IP request limit (whose offenders get a 429
//! and are then blocked at the NIC) and, when the kernel plane is off, the new-connection rate.
//! The 429 itself is the request lifecycle's ([`crate::http::error_response::too_many_requests`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use portcullis_contract::xdp::canonical;

/// Sources tracked per limiter; past it, idle sources are swept first and then new sources are
/// let through untracked (a flood of addresses cannot grow the table without bound).
pub const SOURCES_MAX: usize = 65_536;
/// Shards of a limiter's table: workers rarely contend on one lock.
pub const SHARDS: usize = 16;

/// A token bucket per source IP.
#[derive(Debug)]
pub struct SourceLimiter {
    shards: [Mutex<HashMap<IpAddr, Bucket>>; SHARDS],
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Default for SourceLimiter {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| Mutex::new(HashMap::new())) }
    }
}

impl SourceLimiter {
    /// Takes one token from `ip`'s bucket (`rate` per second, `burst` deep). `false`: over the limit.
    pub fn take(&self, ip: IpAddr, rate: u32, burst: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let ip = canonical(ip);
        let burst = f64::from(burst.max(1));
        let Ok(mut shard) = self.shard(ip).lock() else {
            return true;
        };
        if shard.len() >= SOURCES_MAX / SHARDS && !shard.contains_key(&ip) {
            return true;
        }
        let bucket = shard.entry(ip).or_insert(Bucket { tokens: burst, refilled: now });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(rate)).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets sources idle long enough for their bucket to be full again.
    pub fn sweep(&self, rate: u32, burst: u32, now: Instant) {
        let refill_seconds = if rate == 0 { 0.0 } else { f64::from(burst.max(1)) / f64::from(rate) };
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                shard.retain(|_, bucket| now.saturating_duration_since(bucket.refilled).as_secs_f64() < refill_seconds);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().map_or(0, |s| s.len())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, Bucket>> {
        let index = match ip {
            IpAddr::V4(v4) => u32::from(v4) as usize,
            IpAddr::V6(v6) => (u128::from(v6) ^ (u128::from(v6) >> 64)) as usize,
        };
        &self.shards[index % SHARDS]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn buckets_refill_at_their_rate() {
        let limiter = SourceLimiter::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        assert!((0..3).all(|_| limiter.take(ip, 2, 3, start)));
        assert!(!limiter.take(ip, 2, 3, start));
        assert!(limiter.take("192.0.2.2".parse().unwrap(), 2, 3, start), "another source has its own bucket");
        assert!(limiter.take(ip, 2, 3, start + Duration::from_millis(500)), "one token after half a second at 2/s");
        assert!(!limiter.take(ip, 2, 3, start + Duration::from_millis(500)));
        assert!(limiter.take(ip, 0, 0, start), "rate 0 means no limit");
        limiter.sweep(2, 3, start + Duration::from_secs(10));
        assert!(limiter.is_empty());
    }
}
