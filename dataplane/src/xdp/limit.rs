//! Per-source token buckets in user space, in the counter store: the per-IP request limit (whose
//! offenders get a 429 and are then blocked at the NIC) and, when the kernel plane is off, the
//! new-connection rate. The 429 itself is the request lifecycle's
//! ([`crate::http::error_response::too_many_requests`]).

use std::net::IpAddr;

use portcullis_contract::xdp::{XdpRules, canonical};

use crate::counters::{
    CounterKey, CounterStore as _, Decision, KeyHasher, LocalCounters, NS_PER_SECOND, Namespace, TokenBucket,
};

/// Slots of the sources' counter table (16 bytes each: 8 MiB), for both limits. At 131,072 live
/// sources (65,536 per limit, what the table held before it was lock-free) a bucket of slots is
/// full with a probability near 0.1%; a source that finds no room is let through uncounted, so a
/// flood of addresses cannot grow the table, and idle sources' slots are reused.
pub const SOURCE_SLOTS: usize = 1 << 19;

/// The per-source buckets, shared by every worker; none waits for another.
#[derive(Debug)]
pub struct SourceLimits {
    store: LocalCounters,
    keys: KeyHasher,
}

impl Default for SourceLimits {
    fn default() -> Self {
        Self { store: LocalCounters::new(SOURCE_SLOTS), keys: KeyHasher::default() }
    }
}

impl SourceLimits {
    /// One request from `ip` against the per-IP limit, at `now_ns` (CLOCK_MONOTONIC). A refusal
    /// keeps the source refused for `block_seconds` (the block the caller then installs).
    pub fn take_request(&self, ip: IpAddr, rules: &XdpRules, now_ns: u64) -> Decision {
        let bucket = TokenBucket {
            rate_per_second: rules.per_ip_requests_per_second,
            burst: rules.per_ip_burst,
            penalty_ns: u64::from(rules.block_seconds.max(1)) * NS_PER_SECOND,
        };
        self.store.take(self.key(Namespace::SourceRequests, ip), bucket, now_ns)
    }

    /// One new connection from `ip` against `[xdp] syn-rate`; `false`: over it.
    pub fn take_connection(&self, ip: IpAddr, rules: &XdpRules, now_ns: u64) -> bool {
        let bucket = TokenBucket { rate_per_second: rules.syn_rate_per_second, burst: rules.syn_burst, penalty_ns: 0 };
        self.store.take(self.key(Namespace::SourceConnections, ip), bucket, now_ns).admitted
    }

    /// Forgets sources idle long enough for their bucket to be full again; returns the others.
    pub fn sweep(&self, now_ns: u64) -> usize {
        self.store.sweep(now_ns)
    }

    fn key(&self, namespace: Namespace, ip: IpAddr) -> CounterKey {
        match canonical(ip) {
            IpAddr::V4(v4) => self.keys.key(namespace, &v4.octets()),
            IpAddr::V6(v6) => self.keys.key(namespace, &v6.octets()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(rate: u32, burst: u32) -> XdpRules {
        XdpRules {
            per_ip_requests_per_second: rate,
            per_ip_burst: burst,
            syn_rate_per_second: rate,
            syn_burst: burst,
            block_seconds: 60,
            ..XdpRules::default()
        }
    }

    #[test]
    fn buckets_refill_at_their_rate() {
        let limits = SourceLimits::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let start = 7 * NS_PER_SECOND;
        let rules = rules(2, 3);
        assert!((0..3).all(|_| limits.take_connection(ip, &rules, start)));
        assert!(!limits.take_connection(ip, &rules, start));
        assert!(
            limits.take_connection("192.0.2.2".parse().unwrap(), &rules, start),
            "another source has its own bucket"
        );
        let half = start + NS_PER_SECOND / 2;
        assert!(limits.take_connection(ip, &rules, half), "one token after half a second at 2/s");
        assert!(!limits.take_connection(ip, &rules, half));
        assert!(limits.take_connection(ip, &XdpRules::default(), start), "rate 0 means no limit");
        assert_eq!(limits.sweep(start + 10 * NS_PER_SECOND), 0, "idle sources are forgotten");
    }

    #[test]
    fn a_refused_request_keeps_its_source_refused_for_the_block() {
        let limits = SourceLimits::default();
        let ip: IpAddr = "::ffff:198.51.100.4".parse().unwrap();
        let rules = rules(1, 1);
        assert!(limits.take_request(ip, &rules, 0).admitted);
        let refused = limits.take_request("198.51.100.4".parse().unwrap(), &rules, 0);
        assert!(!refused.admitted && refused.penalty_started, "a v4-mapped source is its v4 address");
        assert_eq!(refused.retry_after_seconds(), 60);
        let again = limits.take_request(ip, &rules, 30 * NS_PER_SECOND);
        assert!(!again.admitted && !again.penalty_started);
        assert!(limits.take_request(ip, &rules, 60 * NS_PER_SECOND).admitted);
        assert!(limits.take_connection(ip, &rules, 0), "requests and connections are counted apart");
    }
}
