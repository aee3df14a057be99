//! `rate-limit`, `rate-limit-by-key`, `quota` and `quota-by-key`: their counters, shared by every
//! worker of the host in the counter store ([`crate::counters`]), and APIM's wording of their
//! refusals. The VM's side is `vm/limits.rs`; docs/counters.md says how exact they are.
//!
//! - Rate limits are sliding windows; quotas fixed windows aligned on `first-period-start`.
//! - APIM keeps one counter per key value whatever the scope or policy that uses it, so the key
//!   is the counter-key's bytes alone (per-subscription policies use the subscription's id,
//!   behind a prefix no expression can produce).
//! - Both tables are allocated when a snapshot first has a limit ([`RateLimits::allocate`], on
//!   the channel thread), never before: a gateway without limits pays no memory for them.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use portcullis_contract::program::TokenQuotaPeriod;

use crate::counters::{
    Charge, CounterKey, CounterStore, Decision, FixedWindow, KeyHasher, LocalCounters, NS_PER_SECOND, Namespace,
    SlidingWindow,
};

/// Slots of the rate-limit table (16 bytes each: 4 MiB). A sliding window takes two, so about
/// 131,072 keys live in one window; a key whose bucket is full of live keys is not counted
/// (admitted), as for the per-IP limit: a flood of keys cannot evict live counts.
pub const RATE_LIMIT_SLOTS: usize = 1 << 18;
/// Slots of the quota table (16 bytes each: 4 MiB): one per key (calls) and one more per key
/// with a bandwidth quota. Idle slots (a window that ended) are reclaimed by new keys; a lifetime
/// quota's slot never is.
pub const QUOTA_SLOTS: usize = 1 << 18;
/// `Retry-After` of a quota that never renews (`renewal-period="0"`): .NET's `TimeSpan.MaxValue`
/// in whole seconds, what APIM's arithmetic on a lifetime quota gives.
pub const LIFETIME_RETRY_SECONDS: u64 = 922_337_203_685;

/// Which counter of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Calls,
    /// A quota's kilobytes.
    Bandwidth,
}

/// One window a request is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub key: CounterKey,
    pub quota: bool,
    pub counted: Counted,
    pub limit: u32,
    pub period_seconds: u32,
    /// Where windows start, in ns since the Unix epoch (quotas; 0 for rate limits).
    pub origin_ns: u64,
}

/// The counters of every rate limit and quota of the process.
#[derive(Debug)]
pub struct RateLimits {
    rate: OnceLock<LocalCounters>,
    quota: OnceLock<LocalCounters>,
    slots: (usize, usize),
    keys: KeyHasher,
    /// The quotas' own seeds: kept with their counters across restarts ([`RateLimits::restore_quotas`]).
    quota_keys: OnceLock<KeyHasher>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::with_slots(RATE_LIMIT_SLOTS, QUOTA_SLOTS)
    }
}

impl RateLimits {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Limits with tables of these sizes (tests use small ones).
    pub fn with_slots(rate: usize, quota: usize) -> Self {
        Self {
            rate: OnceLock::new(),
            quota: OnceLock::new(),
            slots: (rate, quota),
            keys: KeyHasher::default(),
            quota_keys: OnceLock::new(),
        }
    }

    /// Allocates both tables if they are not yet: called by the channel thread before it
    /// publishes a snapshot with a limit, so that no worker ever allocates (or waits for) them.
    pub fn allocate(&self) {
        self.rate.get_or_init(|| LocalCounters::new(self.slots.0));
        self.quota.get_or_init(|| LocalCounters::new(self.slots.1));
    }

    /// Whether the tables exist (a snapshot with a limit was loaded).
    pub fn is_allocated(&self) -> bool {
        self.rate.get().is_some()
    }

    /// The counter of `bytes` for a rate limit or a quota's calls or bandwidth.
    pub fn key(&self, quota: bool, counted: Counted, bytes: &[u8]) -> CounterKey {
        let quota_keys = || self.quota_keys.get_or_init(KeyHasher::default);
        match (quota, counted) {
            (false, _) => self.keys.key(Namespace::RateLimit, bytes),
            (true, Counted::Calls) => quota_keys().key(Namespace::Quota, bytes),
            // The bandwidth counter of a key is another counter of the same table.
            (true, Counted::Bandwidth) => CounterKey(quota_keys().key(Namespace::Quota, bytes).0 ^ BANDWIDTH_KEY_FLIP),
        }
    }

    /// The counter of `bytes` for a token limit's tokens per minute or its token quota (apart
    /// from every call counter of the same key; the quota's with the quotas, kept across restarts).
    pub fn token_key(&self, quota: bool, bytes: &[u8]) -> CounterKey {
        match quota {
            false => self.keys.key(Namespace::TokenRate, bytes),
            true => self.quota_keys.get_or_init(KeyHasher::default).key(Namespace::TokenQuota, bytes),
        }
    }

    /// The quota counters to keep (their hashes' seeds and live entries), `None` before a
    /// snapshot had a limit (nothing to keep).
    pub fn quota_state(&self, now_ns: u64) -> Option<QuotaState> {
        let table = self.quota.get()?;
        let seeds = self.quota_keys.get_or_init(KeyHasher::default).seeds();
        Some(QuotaState { seeds, entries: table.entries(now_ns) })
    }

    /// Puts back quota counters kept by an earlier process: their seeds (so that keys hash as
    /// before) and entries. At start, before any worker or snapshot: `false` if the seeds were
    /// already chosen (the entries are then dropped, as their keys would not match).
    pub fn restore_quotas(&self, state: &QuotaState, now_ns: u64) -> bool {
        if self.quota_keys.set(KeyHasher::with_seeds(state.seeds)).is_err() {
            return false;
        }
        self.allocate();
        if let Some(table) = self.quota.get() {
            for &(key, value) in &state.entries {
                table.restore(key, value, now_ns);
            }
        }
        true
    }

    /// Adds `hits` to `check`'s window at `now_ns` (ns since the Unix epoch).
    pub fn hit(&self, check: &Check, hits: u32, charge: Charge, now_ns: u64) -> Decision {
        let table = if check.quota { &self.quota } else { &self.rate };
        // The channel thread allocates before publishing; this only runs first in tests.
        let store = table.get_or_init(|| LocalCounters::new(if check.quota { self.slots.1 } else { self.slots.0 }));
        if check.quota {
            let window =
                FixedWindow { limit: check.limit, period_seconds: check.period_seconds, origin_ns: check.origin_ns };
            store.hit_fixed(check.key, window, hits, charge, now_ns)
        } else {
            let window = SlidingWindow { limit: check.limit, period_seconds: check.period_seconds, origin_ns: 0 };
            store.hit_sliding(check.key, window, hits, charge, now_ns)
        }
    }
}

/// The window of a token quota at `now`: its length in seconds and where windows of that length
/// start (ns since the Unix epoch), the UTC hour, day, week (from Monday), month or year `now`
/// is in. A month's (or year's) window starts at its first day; the next one has another end, so
/// its counter starts from 0.
pub fn token_quota_window(period: TokenQuotaPeriod, now: DateTime<Utc>) -> (u32, u64) {
    /// 1970-01-05, the first Monday after the epoch.
    const FIRST_MONDAY_SECONDS: u64 = 4 * 86_400;
    let calendar = |start: Option<NaiveDate>, end: Option<NaiveDate>| -> (u32, u64) {
        let seconds = |date: Option<NaiveDate>| {
            date.and_then(|date| date.and_hms_opt(0, 0, 0)).map(|at| at.and_utc().timestamp().max(0) as u64)
        };
        match (seconds(start), seconds(end)) {
            (Some(start), Some(end)) if end > start => {
                (u32::try_from(end - start).unwrap_or(u32::MAX), start * NS_PER_SECOND)
            }
            // Out of chrono's range: one day's window rather than none.
            _ => (86_400, 0),
        }
    };
    let (year, month) = (now.year(), now.month());
    match period {
        TokenQuotaPeriod::Hourly => (3_600, 0),
        TokenQuotaPeriod::Daily => (86_400, 0),
        TokenQuotaPeriod::Weekly => (7 * 86_400, FIRST_MONDAY_SECONDS * NS_PER_SECOND),
        TokenQuotaPeriod::Monthly => {
            let next = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
            calendar(NaiveDate::from_ymd_opt(year, month, 1), NaiveDate::from_ymd_opt(next.0, next.1, 1))
        }
        TokenQuotaPeriod::Yearly => {
            calendar(NaiveDate::from_ymd_opt(year, 1, 1), NaiveDate::from_ymd_opt(year + 1, 1, 1))
        }
    }
}

/// APIM's 429 message of a token limit's tokens per minute.
pub fn token_limit_message(seconds: u64) -> String {
    format!("Token limit is exceeded. Try again in {seconds} seconds.")
}

/// APIM's 403 message of a token quota.
pub fn token_quota_message(seconds: u64) -> String {
    format!("Token quota is exceeded. Try again in {}.", time_span(seconds))
}

/// What outlives the process of the quota counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaState {
    pub seeds: [u64; 4],
    /// (key word, value) of every live slot.
    pub entries: Vec<(u64, u64)>,
}

/// Flips bits of a quota key's hash for its bandwidth counter (kept within the 62 compared bits).
const BANDWIDTH_KEY_FLIP: u64 = 0x2aaa_aaaa_aaaa_aaaa;

/// Where a quota's windows start, in ns since the Unix epoch: the last window start at or before
/// the epoch, aligned on `first_period_start` (seconds since the epoch, maybe before it).
pub fn quota_origin_ns(first_period_start: i64, period_seconds: u32) -> u64 {
    if period_seconds == 0 {
        return 0;
    }
    let offset = first_period_start.rem_euclid(i64::from(period_seconds));
    (offset as u64) * NS_PER_SECOND
}

/// `Retry-After` of a refusal, in whole seconds (at least 1).
pub fn retry_after_seconds(decision: &Decision) -> u64 {
    if decision.retry_after_ns == u64::MAX { LIFETIME_RETRY_SECONDS } else { decision.retry_after_seconds() }
}

/// APIM's 429 message.
pub fn rate_limit_message(seconds: u64) -> String {
    format!("Rate limit is exceeded. Try again in {seconds} seconds.")
}

/// APIM's 403 message for a quota of `counted`.
pub fn quota_message(counted: Counted, seconds: u64) -> String {
    let what = match counted {
        Counted::Calls => "call volume",
        Counted::Bandwidth => "bandwidth",
    };
    format!("Out of {what} quota. Quota will be replenished in {}.", time_span(seconds))
}

/// A wait as .NET's `TimeSpan` prints it (the constant format `[d.]hh:mm:ss`, whole seconds), as
/// APIM's 403s on the wire show it: `00:04:59`, `5.03:23:11`.
pub fn time_span(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (hours, minutes, secs) = (rest / 3_600, rest % 3_600 / 60, rest % 60);
    if days > 0 {
        format!("{days}.{hours:02}:{minutes:02}:{secs:02}")
    } else {
        format!("{hours:02}:{minutes:02}:{secs:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_print_as_apim_prints_them() {
        assert_eq!(time_span(299), "00:04:59");
        assert_eq!(time_span(5 * 86_400 + 3 * 3_600 + 23 * 60 + 11), "5.03:23:11");
        assert_eq!(time_span(LIFETIME_RETRY_SECONDS), "10675199.02:48:05");
        assert_eq!(rate_limit_message(57), "Rate limit is exceeded. Try again in 57 seconds.");
        assert_eq!(
            quota_message(Counted::Calls, 59),
            "Out of call volume quota. Quota will be replenished in 00:00:59."
        );
        assert_eq!(
            quota_message(Counted::Bandwidth, 3_600),
            "Out of bandwidth quota. Quota will be replenished in 01:00:00."
        );
    }

    #[test]
    fn token_quota_windows_are_calendar_periods() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).expect("a date").with_timezone(&Utc);
        let ns = |text: &str| at(text).timestamp() as u64 * NS_PER_SECOND;
        // February 2028 has 29 days.
        let (seconds, origin) = token_quota_window(TokenQuotaPeriod::Monthly, at("2028-02-17T10:00:00Z"));
        assert_eq!((seconds, origin), (29 * 86_400, ns("2028-02-01T00:00:00Z")));
        let (seconds, origin) = token_quota_window(TokenQuotaPeriod::Monthly, at("2026-12-31T23:59:59Z"));
        assert_eq!((seconds, origin), (31 * 86_400, ns("2026-12-01T00:00:00Z")));
        let (seconds, origin) = token_quota_window(TokenQuotaPeriod::Yearly, at("2026-12-08T03:00:00Z"));
        assert_eq!((seconds, origin), (365 * 86_400, ns("2026-01-01T00:00:00Z")));
        // Weeks start on Monday: 2026-12-07 is one.
        let (seconds, origin) = token_quota_window(TokenQuotaPeriod::Weekly, at("2026-12-08T03:00:00Z"));
        let now = ns("2026-12-08T03:00:00Z");
        let start = now - (now - origin) % (u64::from(seconds) * NS_PER_SECOND);
        assert_eq!(start, ns("2026-12-07T00:00:00Z"));
        assert_eq!(token_quota_window(TokenQuotaPeriod::Hourly, at("2026-12-08T03:00:00Z")), (3_600, 0));
        assert_eq!(token_limit_message(7), "Token limit is exceeded. Try again in 7 seconds.");
        assert_eq!(token_quota_message(3_600), "Token quota is exceeded. Try again in 01:00:00.");
    }

    #[test]
    fn quota_windows_align_on_the_first_period_start() {
        // 0001-01-01T00:00:00Z: days start at midnight UTC.
        assert_eq!(quota_origin_ns(-62_135_596_800, 86_400), 0);
        // A window of an hour starting at 00:30.
        assert_eq!(quota_origin_ns(1_800, 3_600), 1_800 * NS_PER_SECOND);
        assert_eq!(quota_origin_ns(1_800 - 3_600 * 1000, 3_600), 1_800 * NS_PER_SECOND);
        assert_eq!(quota_origin_ns(12_345, 0), 0);
    }

    #[test]
    fn quota_counters_survive_a_restore_into_another_process() {
        let now = 1_700_000_000 * NS_PER_SECOND;
        let before = RateLimits::with_slots(64, 64);
        let key = before.key(true, Counted::Calls, b"tenant");
        let check = Check { key, quota: true, counted: Counted::Calls, limit: 3, period_seconds: 0, origin_ns: 0 };
        before.hit(&check, 2, Charge::IfAdmitted, now);
        let kept = before.quota_state(now).expect("allocated");
        let after = RateLimits::with_slots(64, 64);
        assert!(after.restore_quotas(&kept, now));
        let key = after.key(true, Counted::Calls, b"tenant");
        assert_eq!(key, check.key, "the same seeds hash the key the same");
        assert_eq!(after.hit(&Check { key, ..check }, 0, Charge::IfAdmitted, now).remaining, 1);
        // Seeds chosen already: nothing is restored.
        assert!(!after.restore_quotas(&kept, now));
    }

    #[test]
    fn tables_are_allocated_on_demand_and_counted_apart() {
        let limits = RateLimits::with_slots(64, 64);
        assert!(!limits.is_allocated());
        limits.allocate();
        assert!(limits.is_allocated());
        let calls = limits.key(true, Counted::Calls, b"k");
        assert_ne!(calls, limits.key(true, Counted::Bandwidth, b"k"));
        assert_ne!(calls, limits.key(false, Counted::Calls, b"k"));
    }
}
