//! The host's counter store: token buckets as GCRA, sliding windows as two fixed windows weighted
//! (the approximation nginx, Envoy and Kong use), fixed windows and gauges, each one slot (a
//! sliding window two) of the lock-free table.

use portable_atomic::AtomicU128;

use super::table::{Kind, PENALTY_FLAG, Step, Table, UNTIL_NEVER, tagged};
use super::{
    Charge, CounterKey, CounterStore, Decision, FixedWindow, Lease, NS_PER_SECOND, SlidingWindow, TokenBucket,
};

/// The other half of a sliding window: the key with bit 61 flipped, so both halves share a bucket.
const SLIDING_HALF: u64 = 1 << 61;

/// The counter store of one host: every worker shares it, none waits for another.
#[derive(Debug)]
pub struct LocalCounters {
    table: Table,
}

impl LocalCounters {
    /// A store of at least `slots` slots of 16 bytes (a key with its value; a sliding window takes
    /// two), allocated at once.
    pub fn new(slots: usize) -> Self {
        Self { table: Table::new(slots) }
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Every live counter as (key word, value), for a store kept across restarts; a copy of a
    /// moment (slots change while it is taken, each slot is read atomically).
    pub fn entries(&self, now_ns: u64) -> Vec<(u64, u64)> {
        self.table.entries(now_ns)
    }

    /// Puts back an entry of [`LocalCounters::entries`] (at start, before any worker runs);
    /// `false` when its bucket has no room.
    pub fn restore(&self, key: u64, value: u64, now_ns: u64) -> bool {
        self.table.update(key, now_ns, |_| Step::Write(value, ())).tracked
    }

    /// Whether this CPU does 128-bit compare-and-swap natively (cmpxchg16b, LSE); every x86-64
    /// since 2008 does. Otherwise the atomics fall back to a lock per operation.
    pub fn is_lock_free() -> bool {
        AtomicU128::is_lock_free()
    }
}

fn refused(retry_after_ns: u64) -> Decision {
    Decision { admitted: false, remaining: 0, retry_after_ns, tracked: true, penalty_started: false }
}

fn admitted(remaining: u64) -> Decision {
    Decision { admitted: true, remaining, retry_after_ns: 0, tracked: true, penalty_started: false }
}

/// A window slot's value: when it stops mattering (seconds on the store's clock) and its count.
fn window_value(until_seconds: u32, count: u64) -> u64 {
    (u64::from(until_seconds) << 32) | count.min(u64::from(u32::MAX))
}

/// The count of a window slot whose window ends `until_seconds`; 0 for any other window's.
fn window_count(value: Option<u64>, until_seconds: u32) -> u64 {
    value.filter(|value| (value >> 32) as u32 == until_seconds).map_or(0, |value| value & u64::from(u32::MAX))
}

/// `ns` as whole seconds, rounded up (a window is idle only once it has really ended).
fn until_seconds(ns: u64) -> u32 {
    ns.div_ceil(NS_PER_SECOND).min(u64::from(UNTIL_NEVER - 1)) as u32
}

/// `value * numerator / denominator`, rounded up.
fn scaled_up(value: u64, numerator: u64, denominator: u64) -> u64 {
    (u128::from(value) * u128::from(numerator)).div_ceil(u128::from(denominator.max(1))) as u64
}

impl CounterStore for LocalCounters {
    /// GCRA: the bucket is its theoretical arrival time `tat`; a request at `now` fits when
    /// `max(tat, now) - now <= (burst - 1) * interval` and moves `tat` one interval on.
    fn take(&self, key: CounterKey, bucket: TokenBucket, now_ns: u64) -> Decision {
        if bucket.rate_per_second == 0 {
            return admitted(u64::MAX);
        }
        let now = now_ns.min(PENALTY_FLAG - 1);
        let interval = (NS_PER_SECOND / u64::from(bucket.rate_per_second)).max(1);
        let tolerance = u64::from(bucket.burst.max(1) - 1).saturating_mul(interval);
        let applied = self.table.update(tagged(key.0, Kind::Bucket), now, |value| {
            let (tat, penalized) = value.map_or((now, false), |v| (v & !PENALTY_FLAG, v & PENALTY_FLAG != 0));
            let start = tat.max(now);
            let ahead = start - now;
            if ahead <= tolerance {
                return Step::Write((start + interval).min(PENALTY_FLAG - 1), admitted((tolerance - ahead) / interval));
            }
            if bucket.penalty_ns == 0 {
                return Step::Keep(refused(ahead - tolerance));
            }
            if penalized {
                // The penalty runs until the bucket is full again.
                return Step::Keep(refused(ahead));
            }
            let retry_after_ns = ahead - tolerance;
            let until = start.max(now.saturating_add(bucket.penalty_ns)).min(PENALTY_FLAG - 1);
            let decision = Decision { penalty_started: true, ..refused(retry_after_ns.max(bucket.penalty_ns)) };
            Step::Write(until | PENALTY_FLAG, decision)
        });
        Decision { tracked: applied.tracked, ..applied.result }
    }

    /// Two fixed windows: the estimate is the current window's count plus the previous one's
    /// weighted by the share of it still inside the sliding window.
    fn hit_sliding(&self, key: CounterKey, window: SlidingWindow, hits: u32, charge: Charge, now_ns: u64) -> Decision {
        let period = u64::from(window.period_seconds.max(1)) * NS_PER_SECOND;
        let since = now_ns.saturating_sub(window.origin_ns);
        let (index, elapsed) = (since / period, since % period);
        let start = window.origin_ns.saturating_add(index * period);
        // A window's slot is the current one, then the previous one: it matters for two periods.
        let until_current = until_seconds(start.saturating_add(2 * period));
        let until_previous = until_seconds(start.saturating_add(period));
        let halves = [tagged(key.0, Kind::Window), tagged(key.0 ^ SLIDING_HALF, Kind::Window)];
        let current_key = halves[(index % 2) as usize];
        let previous = window_count(self.table.get(halves[((index + 1) % 2) as usize]), until_previous);
        let weighted = scaled_up(previous, period - elapsed, period);
        let (limit, hits) = (u64::from(window.limit), u64::from(hits));
        let applied = self.table.update(current_key, now_ns, |value| {
            let current = window_count(value, until_current);
            let used = current + weighted;
            let decision = if used + hits <= limit {
                admitted(limit - used - hits)
            } else {
                refused(sliding_retry(limit, hits, current, previous, elapsed, period))
            };
            match (hits, decision.admitted, charge) {
                (0, _, _) | (_, false, Charge::IfAdmitted) | (_, _, Charge::Never) => Step::Keep(decision),
                _ => Step::Write(window_value(until_current, current + hits), decision),
            }
        });
        Decision { tracked: applied.tracked, ..applied.result }
    }

    fn hit_fixed(&self, key: CounterKey, window: FixedWindow, hits: u32, charge: Charge, now_ns: u64) -> Decision {
        let end = match window.period_seconds {
            0 => None,
            seconds => {
                let period = u64::from(seconds) * NS_PER_SECOND;
                let index = now_ns.saturating_sub(window.origin_ns) / period;
                Some(window.origin_ns.saturating_add((index + 1) * period))
            }
        };
        let until = end.map_or(UNTIL_NEVER, until_seconds);
        let (limit, hits) = (u64::from(window.limit), u64::from(hits));
        let applied = self.table.update(tagged(key.0, Kind::Window), now_ns, |value| {
            let current = window_count(value, until);
            let decision = if current + hits <= limit {
                admitted(limit - current - hits)
            } else {
                refused(end.filter(|_| hits <= limit).map_or(u64::MAX, |end| end.saturating_sub(now_ns)))
            };
            match (hits, decision.admitted, charge) {
                (0, _, _) | (_, false, Charge::IfAdmitted) | (_, _, Charge::Never) => Step::Keep(decision),
                _ => Step::Write(window_value(until, current + hits), decision),
            }
        });
        Decision { tracked: applied.tracked, ..applied.result }
    }

    fn acquire(&self, key: CounterKey, max: u32) -> Option<Lease> {
        let tagged_key = tagged(key.0, Kind::Gauge);
        let applied = self.table.update(tagged_key, 0, |value| {
            let (version, count) = value.map_or((0, 0), |v| ((v >> 32) as u32, v as u32));
            if count >= max {
                return Step::Keep(false);
            }
            Step::Write((u64::from(version.wrapping_add(1)) << 32) | u64::from(count + 1), true)
        });
        match (applied.result, applied.tracked, applied.slot) {
            (true, true, Some(slot)) => Some(Lease { key, slot: slot as u64 }),
            _ => None,
        }
    }

    fn release(&self, lease: Lease) {
        // A gauge above 0 is never reclaimed, so the slot still holds the key.
        let released = self.table.update_slot(lease.slot as usize, tagged(lease.key.0, Kind::Gauge), |value| {
            (value & !u64::from(u32::MAX)) | u64::from((value as u32).saturating_sub(1))
        });
        debug_assert!(released, "a leased gauge keeps its slot until released");
    }

    fn gauge(&self, key: CounterKey) -> u64 {
        self.table.get(tagged(key.0, Kind::Gauge)).map_or(0, |value| u64::from(value as u32))
    }

    fn sweep(&self, now_ns: u64) -> usize {
        self.table.sweep(now_ns)
    }
}

/// How long until `hits` fit in a sliding window that refused them, if nothing else comes:
/// within this window while the previous one's weight fades, else in the next window while this
/// one's does.
fn sliding_retry(limit: u64, hits: u64, current: u64, previous: u64, elapsed: u64, period: u64) -> u64 {
    if hits > limit {
        return u64::MAX;
    }
    if current + hits <= limit {
        // ceil(previous * (period - e) / period) <= room  ⇐  e >= period - room * period / previous.
        let room = limit - current - hits;
        let at = period - (u128::from(room) * u128::from(period) / u128::from(previous.max(1))) as u64;
        return at.saturating_sub(elapsed).max(1);
    }
    let room = limit - hits;
    let at =
        period - (u128::from(room) * u128::from(period) / u128::from(current.max(1))).min(u128::from(period)) as u64;
    (period - elapsed) + at
}
