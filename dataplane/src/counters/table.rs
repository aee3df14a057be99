//! The local store's table: a fixed array of 16-byte slots, each one 128-bit atomic holding a key
//! and its value, so that every change (claim, update, reclaim, release) is one compare-and-swap
//! of key and value together, and no thread ever waits for another.
//!
//! A key lives in one bucket of [`BUCKET_SLOTS`] slots (two cache lines) chosen by its hash; an
//! operation scans the bucket, uses the first slot holding the key, else claims the first empty
//! slot, else the first idle one (see [`idle`]). A full bucket answers "untracked" and the caller decides
//! what that means (the per-IP limits let the request through, `limit-concurrency` refuses it).

use crossbeam_utils::Backoff;
use portable_atomic::{AtomicU128, Ordering};

/// Slots of one bucket: eight 16-byte slots, two 64-byte cache lines (the adjacent-line prefetch
/// of x86 brings the pair). Eight ways keep a bucket from filling until the table is mostly full:
/// at a quarter full, a bucket is full with a probability below 0.1%.
pub const BUCKET_SLOTS: usize = 8;
/// Compare-and-swap attempts per operation. Each failure means another thread's operation on the
/// same bucket succeeded; after one, the thread backs off (crossbeam's exponential spin) before it
/// tries again, so that two threads hammering one key take turns instead of one losing every race
/// (without the back-off, the counter-store benchmark's two threads on one gauge hit this bound).
/// Past it the operation answers "untracked" instead of retrying without bound.
pub const CAS_ATTEMPTS_MAX: u32 = 1_024;

/// What a slot's value means, in the key's top two bits: a reclaimer tells idle from live by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A token bucket as GCRA: the value is the theoretical arrival time in ns (top bit: the
    /// bucket is serving a penalty).
    Bucket = 1,
    /// A window's count: `until_seconds << 32 | count`.
    Window = 2,
    /// A gauge: `version << 32 | count`; the version grows with every acquire, so a slot that went
    /// 0 → 1 → 0 never looks unchanged to a compare-and-swap.
    Gauge = 3,
}

const KIND_SHIFT: u32 = 62;
const HASH_MASK: u64 = (1 << KIND_SHIFT) - 1;
/// Key word of an empty slot (no kind is 0, so no key is).
const EMPTY: u64 = 0;
const NS_PER_SECOND: u64 = 1_000_000_000;
/// A window that never ends (lifetime quotas) is never idle.
pub(crate) const UNTIL_NEVER: u32 = u32::MAX;
/// The bucket value's penalty flag.
pub(crate) const PENALTY_FLAG: u64 = 1 << 63;

/// `kind` in the top two bits of a 62-bit hash.
pub(crate) fn tagged(hash: u64, kind: Kind) -> u64 {
    (hash & HASH_MASK) | ((kind as u64) << KIND_SHIFT)
}

fn kind_of(key: u64) -> Option<Kind> {
    match key >> KIND_SHIFT {
        1 => Some(Kind::Bucket),
        2 => Some(Kind::Window),
        3 => Some(Kind::Gauge),
        _ => None,
    }
}

/// Whether a slot's value is the same as no slot at all at `now_ns`: a full bucket, a window that
/// has ended, a gauge at zero. Only such slots are reclaimed, so reclaiming loses nothing.
pub(crate) fn idle(key: u64, value: u64, now_ns: u64) -> bool {
    match kind_of(key) {
        None => true,
        Some(Kind::Bucket) => value & !PENALTY_FLAG <= now_ns,
        Some(Kind::Window) => {
            let until = (value >> 32) as u32;
            until != UNTIL_NEVER && u64::from(until).saturating_mul(NS_PER_SECOND) <= now_ns
        }
        Some(Kind::Gauge) => value as u32 == 0,
    }
}

/// What an operation does with the value it found (`None`: the key has no slot yet).
#[derive(Debug)]
pub(crate) enum Step<R> {
    /// Store this value and answer `R`.
    Write(u64, R),
    /// Store nothing and answer `R`.
    Keep(R),
}

/// The answer of [`Table::update`].
#[derive(Debug)]
pub(crate) struct Applied<R> {
    pub(crate) result: R,
    /// The slot holding the key afterwards, if any.
    pub(crate) slot: Option<usize>,
    /// `false`: the value should have been stored and could not be (bucket full, or contended).
    pub(crate) tracked: bool,
}

/// The table: `buckets` buckets of [`BUCKET_SLOTS`] slots each, the first starting at `first`, a
/// slot aligned to 128 bytes (the two cache lines a bucket fills).
#[derive(Debug)]
pub(crate) struct Table {
    slots: Box<[AtomicU128]>,
    first: usize,
    buckets: usize,
}

/// Bytes a bucket is aligned to: the two cache lines it fills (the adjacent-line prefetch of x86
/// brings the pair).
const BUCKET_ALIGN: usize = 128;

/// `count` empty slots, allocated zeroed (`calloc`): the allocator hands out pages the kernel maps
/// on first touch, so a table costs resident memory only where keys land, not its whole size at
/// start (written slot by slot, the per-IP and concurrency tables made an idle data plane 8 MiB
/// larger). Slot alignment (16) stays within what `calloc` guarantees: a larger one (a bucket's
/// 128) would make the allocator zero the memory itself and fault every page in.
#[allow(unsafe_code, reason = "the one way to get a zeroed table without writing every slot")]
fn zeroed_slots(count: usize) -> Box<[AtomicU128]> {
    // `count` is at least one bucket, so the layout is never zero-sized.
    let Ok(layout) = std::alloc::Layout::array::<AtomicU128>(count.max(1)) else {
        panic!("a counter table of {count} slots overflows the address space");
    };
    // SAFETY: the layout is not zero-sized (above). The memory is zeroed, and an `AtomicU128` is
    // valid with any bit pattern (all-zero is an empty slot: key `EMPTY`, value 0, what
    // `AtomicU128::default()` holds), so it holds `count.max(1)` initialized slots; it was
    // allocated by the global allocator with the layout of `[AtomicU128; count.max(1)]`, which is
    // what `Box` frees it with.
    unsafe {
        let memory = std::alloc::alloc_zeroed(layout).cast::<AtomicU128>();
        if memory.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(memory, count.max(1)))
    }
}

fn join(key: u64, value: u64) -> u128 {
    (u128::from(key) << 64) | u128::from(value)
}

fn split(word: u128) -> (u64, u64) {
    ((word >> 64) as u64, word as u64)
}

impl Table {
    /// A table of at least `slots` slots (rounded up to a power-of-two number of buckets).
    pub(crate) fn new(slots: usize) -> Self {
        let buckets = slots.div_ceil(BUCKET_SLOTS).max(1).next_power_of_two();
        let spare = BUCKET_ALIGN / size_of::<AtomicU128>();
        let slots = zeroed_slots(buckets * BUCKET_SLOTS + spare);
        // The first slot on a bucket boundary: within `spare` slots of the start, as slots are
        // aligned to their size and a bucket boundary comes every `spare` of them.
        let misaligned = (slots.as_ptr() as usize / size_of::<AtomicU128>()) % spare;
        let first = (spare - misaligned) % spare;
        Self { slots, first, buckets }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buckets * BUCKET_SLOTS
    }

    /// The index of `key`'s bucket: in bounds, as the count is a power of two.
    fn bucket_of(&self, key: u64) -> usize {
        (key as usize) & (self.buckets - 1)
    }

    /// Bucket `index`'s slots (`index` < `buckets`, so in bounds by construction).
    fn bucket(&self, index: usize) -> &[AtomicU128] {
        let start = self.first + index * BUCKET_SLOTS;
        self.slots.get(start..start + BUCKET_SLOTS).unwrap_or(&[])
    }

    /// Every slot of every bucket.
    fn all_slots(&self) -> &[AtomicU128] {
        self.slots.get(self.first..self.first + self.buckets * BUCKET_SLOTS).unwrap_or(&[])
    }

    /// Runs `step` on `key`'s value and stores what it returns, atomically with respect to every
    /// other operation on the table. `step` may run more than once (after a lost race).
    pub(crate) fn update<R>(&self, key: u64, now_ns: u64, mut step: impl FnMut(Option<u64>) -> Step<R>) -> Applied<R> {
        let base = self.bucket_of(key);
        let bucket = self.bucket(base);
        let backoff = Backoff::new();
        for _ in 0..CAS_ATTEMPTS_MAX {
            let mut found = None;
            let (mut empty, mut reclaimable) = (None, None);
            for (index, slot) in bucket.iter().enumerate() {
                let word = slot.load(Ordering::Acquire);
                let (slot_key, value) = split(word);
                if slot_key == key {
                    found = Some((index, value));
                    break;
                }
                if slot_key == EMPTY {
                    empty = empty.or(Some((index, word)));
                } else if idle(slot_key, value, now_ns) {
                    reclaimable = reclaimable.or(Some((index, word)));
                }
            }
            // An empty slot first: slots only ever leave the empty state (unless `sweep` runs), so
            // two threads inserting one key both pick the first empty slot, one claims it and the
            // other then finds the key there. Idle slots, whose state changes with time, only when
            // the bucket has no empty one left.
            let free = empty.or(reclaimable);
            let (index, expected, written) = match found {
                Some((index, value)) => match step(Some(value)) {
                    Step::Keep(result) => {
                        return Applied { result, slot: Some(base * BUCKET_SLOTS + index), tracked: true };
                    }
                    Step::Write(new, result) => (index, join(key, value), (join(key, new), result)),
                },
                None => match (step(None), free) {
                    (Step::Keep(result), _) => return Applied { result, slot: None, tracked: true },
                    (Step::Write(_, result), None) => return Applied { result, slot: None, tracked: false },
                    (Step::Write(new, result), Some((index, word))) => (index, word, (join(key, new), result)),
                },
            };
            let (word, result) = written;
            if bucket[index].compare_exchange(expected, word, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Applied { result, slot: Some(base * BUCKET_SLOTS + index), tracked: true };
            }
            backoff.spin();
        }
        let result = match step(None) {
            Step::Write(_, result) | Step::Keep(result) => result,
        };
        Applied { result, slot: None, tracked: false }
    }

    /// Runs `step` on the value in `slot` if it still holds `key` (a gauge's release); `false` if
    /// it does not or stays contended.
    pub(crate) fn update_slot(&self, slot: usize, key: u64, mut step: impl FnMut(u64) -> u64) -> bool {
        let Some(cell) = self.all_slots().get(slot) else {
            return false;
        };
        let backoff = Backoff::new();
        for _ in 0..CAS_ATTEMPTS_MAX {
            let word = cell.load(Ordering::Acquire);
            let (slot_key, value) = split(word);
            if slot_key != key {
                return false;
            }
            let new = join(key, step(value));
            if cell.compare_exchange(word, new, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return true;
            }
            backoff.spin();
        }
        false
    }

    /// `key`'s value, if it has a slot.
    pub(crate) fn get(&self, key: u64) -> Option<u64> {
        self.bucket(self.bucket_of(key))
            .iter()
            .map(|slot| split(slot.load(Ordering::Acquire)))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Every live slot's (key, value).
    pub(crate) fn entries(&self, now_ns: u64) -> Vec<(u64, u64)> {
        self.all_slots()
            .iter()
            .map(|slot| split(slot.load(Ordering::Acquire)))
            .filter(|&(key, value)| key != EMPTY && !idle(key, value, now_ns))
            .collect()
    }

    /// Empties every idle slot; returns the slots still live. Slots turning empty again re-open
    /// the insertion race that the empty-first rule of [`Table::update`] closes, so this is for
    /// tests and tools, not a timer.
    pub(crate) fn sweep(&self, now_ns: u64) -> usize {
        let mut live = 0;
        for slot in self.all_slots() {
            let word = slot.load(Ordering::Acquire);
            let (key, value) = split(word);
            if key == EMPTY {
                continue;
            }
            // A lost race means the slot was just used: it is live.
            if !idle(key, value, now_ns) || slot.compare_exchange(word, 0, Ordering::AcqRel, Ordering::Acquire).is_err()
            {
                live += 1;
            }
        }
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_start_on_their_two_cache_lines() {
        for slots in [1, 8, 100, 1 << 12] {
            let table = Table::new(slots);
            assert!(table.capacity() >= slots);
            for index in [0, table.buckets - 1] {
                let bucket = table.bucket(index);
                assert_eq!(bucket.len(), BUCKET_SLOTS);
                assert_eq!(bucket.as_ptr() as usize % BUCKET_ALIGN, 0, "bucket {index} of {slots} slots");
            }
        }
    }
}
