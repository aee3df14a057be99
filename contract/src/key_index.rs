//! The subscription-key index: an open-addressing hash table built by control, probed by the data plane.
//!
//! Keys are hashed with SipHash-1-3 under a seed chosen per snapshot, so a caller cannot aim
//! collisions at the table; probing is linear and bounded by the table size; the final comparison
//! is constant-time in the key's bytes (the length is not secret).

use std::hash::Hasher;

use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;
use subtle::ConstantTimeEq;

/// The table is kept at most half full, so a probe meets an empty slot quickly.
pub const LOAD_FACTOR_INVERSE: usize = 2;
/// Keys longer than this are refused by control and never match in the data plane (APIM keys are 32 hex digits).
pub const KEY_BYTES_MAX: usize = 256;
/// Smallest table, so that an empty config still has a valid (power-of-two) table.
pub const SLOTS_MIN: usize = 8;

/// Which of a subscription's two keys an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySlot {
    Primary,
    Secondary,
}

/// One key and the subscription it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub key: String,
    /// Index into `Config::subscriptions`.
    pub subscription: u32,
    pub slot: KeySlot,
}

/// The index itself. `slots[i]` is 0 when empty, else `entry index + 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIndex {
    seed: [u64; 2],
    slots: Vec<u32>,
    entries: Vec<KeyEntry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyIndexError {
    #[error("the key of subscription index {subscription} is used twice")]
    DuplicateKey { subscription: u32 },
    #[error("a key of subscription index {subscription} is empty or longer than {KEY_BYTES_MAX} bytes")]
    KeyLength { subscription: u32 },
    #[error(
        "the table has {slots} slots: not a power of two of at least {SLOTS_MIN}, or too small for {entries} entries"
    )]
    TableSize { slots: usize, entries: usize },
    #[error("slot {slot} points at entry {target}, past the {entries} entries")]
    SlotOutOfRange { slot: usize, target: u32, entries: usize },
    #[error("entry {entry} names subscription {subscription}, past the {subscriptions} subscriptions")]
    SubscriptionOutOfRange { entry: usize, subscription: u32, subscriptions: usize },
    #[error("entry {entry} is not reachable from its hash position")]
    Unreachable { entry: usize },
}

impl KeyIndex {
    /// Builds the index. `seed` should be fresh randomness for every snapshot.
    pub fn build(seed: [u64; 2], entries: Vec<KeyEntry>) -> Result<Self, KeyIndexError> {
        let slot_count = (entries.len() * LOAD_FACTOR_INVERSE).next_power_of_two().max(SLOTS_MIN);
        let mut index = Self { seed, slots: vec![0; slot_count], entries: Vec::new() };
        for (position, entry) in entries.iter().enumerate() {
            if entry.key.is_empty() || entry.key.len() > KEY_BYTES_MAX {
                return Err(KeyIndexError::KeyLength { subscription: entry.subscription });
            }
            let mask = slot_count - 1;
            let mut slot = index.home_slot(entry.key.as_bytes());
            loop {
                match index.slots[slot] {
                    0 => {
                        index.slots[slot] = position as u32 + 1;
                        break;
                    }
                    taken => {
                        if entries[taken as usize - 1].key == entry.key {
                            return Err(KeyIndexError::DuplicateKey { subscription: entry.subscription });
                        }
                        slot = (slot + 1) & mask;
                    }
                }
            }
        }
        index.entries = entries;
        Ok(index)
    }

    /// Finds the entry for `key`. At most `slots.len()` probes; constant-time comparison.
    pub fn lookup(&self, key: &[u8]) -> Option<&KeyEntry> {
        if key.is_empty() || key.len() > KEY_BYTES_MAX || self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut slot = self.home_slot(key);
        for _ in 0..self.slots.len() {
            let target = self.slots[slot];
            if target == 0 {
                return None;
            }
            let entry = self.entries.get(target as usize - 1)?;
            if bool::from(entry.key.as_bytes().ct_eq(key)) {
                return Some(entry);
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// The `slot` key of subscription `subscription` (`context.Subscription.PrimaryKey`), found
    /// in O(1) where the entries follow control's layout: two per subscription, in subscription
    /// order, primary then secondary (`config::compile` builds them so). `None` for an index laid
    /// out otherwise (hand-built test configs).
    pub fn key_of(&self, subscription: u32, slot: KeySlot) -> Option<&str> {
        let position = (subscription as usize).checked_mul(2)? + usize::from(slot == KeySlot::Secondary);
        let entry = self.entries.get(position)?;
        (entry.subscription == subscription && entry.slot == slot).then_some(entry.key.as_str())
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Checks everything `lookup` relies on; run on every snapshot the data plane decodes.
    pub fn validate(&self, subscriptions: usize) -> Result<(), KeyIndexError> {
        let slots = self.slots.len();
        if !slots.is_power_of_two() || slots < SLOTS_MIN || slots < self.entries.len() * LOAD_FACTOR_INVERSE {
            return Err(KeyIndexError::TableSize { slots, entries: self.entries.len() });
        }
        for (slot, &target) in self.slots.iter().enumerate() {
            if target as usize > self.entries.len() {
                return Err(KeyIndexError::SlotOutOfRange { slot, target, entries: self.entries.len() });
            }
        }
        for (position, entry) in self.entries.iter().enumerate() {
            if entry.subscription as usize >= subscriptions {
                return Err(KeyIndexError::SubscriptionOutOfRange {
                    entry: position,
                    subscription: entry.subscription,
                    subscriptions,
                });
            }
            if entry.key.is_empty() || entry.key.len() > KEY_BYTES_MAX {
                return Err(KeyIndexError::KeyLength { subscription: entry.subscription });
            }
            if !self.reachable(position) {
                return Err(KeyIndexError::Unreachable { entry: position });
            }
        }
        Ok(())
    }

    /// Whether `lookup` of entry `position`'s key finds that entry: its probe sequence reaches the
    /// slot pointing at it before an empty slot, and no entry before it there has the same key.
    /// Compares slot numbers rather than keys (a key only against an entry on its own chain), so
    /// checking the 200,000 keys of 100,000 subscriptions costs a hash each, not a lookup.
    fn reachable(&self, position: usize) -> bool {
        let key = self.entries[position].key.as_bytes();
        let mask = self.slots.len() - 1;
        let mut slot = self.home_slot(key);
        for _ in 0..self.slots.len() {
            match self.slots[slot] as usize {
                0 => return false,
                target if target == position + 1 => return true,
                target => {
                    if self.entries.get(target - 1).is_some_and(|other| other.key.as_bytes() == key) {
                        return false;
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
        false
    }

    fn home_slot(&self, key: &[u8]) -> usize {
        let mut hasher = SipHasher13::new_with_keys(self.seed[0], self.seed[1]);
        hasher.write(key);
        // Truncation is intended: the mask keeps only the low bits.
        (hasher.finish() as usize) & (self.slots.len() - 1)
    }
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self { seed: [0, 0], slots: vec![0; SLOTS_MIN], entries: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, subscription: u32) -> KeyEntry {
        KeyEntry { key: key.to_owned(), subscription, slot: KeySlot::Primary }
    }

    #[test]
    fn finds_every_key_and_nothing_else() {
        let entries: Vec<_> = (0..1000).map(|i| entry(&format!("key-{i:04}"), i)).collect();
        let index = KeyIndex::build([7, 11], entries).unwrap();
        index.validate(1000).unwrap();
        for i in 0..1000 {
            let found = index.lookup(format!("key-{i:04}").as_bytes()).unwrap();
            assert_eq!(found.subscription, i);
        }
        assert!(index.lookup(b"key-1000").is_none());
        assert!(index.lookup(b"").is_none());
        assert!(index.lookup(&[b'a'; KEY_BYTES_MAX + 1]).is_none());
    }

    #[test]
    fn refuses_duplicates_and_bad_lengths() {
        let duplicate = KeyIndex::build([1, 2], vec![entry("a", 0), entry("a", 1)]);
        assert_eq!(duplicate.unwrap_err(), KeyIndexError::DuplicateKey { subscription: 1 });
        assert_eq!(
            KeyIndex::build([1, 2], vec![entry("", 0)]).unwrap_err(),
            KeyIndexError::KeyLength { subscription: 0 }
        );
    }

    #[test]
    fn validate_catches_tampering() {
        let mut index = KeyIndex::build([3, 4], vec![entry("a", 0), entry("b", 0)]).unwrap();
        assert!(index.validate(1).is_ok());
        assert!(matches!(index.validate(0), Err(KeyIndexError::SubscriptionOutOfRange { .. })));
        index.slots[0] = 99;
        assert!(matches!(index.validate(1), Err(KeyIndexError::SlotOutOfRange { .. })));
        let mut index = KeyIndex::build([3, 4], vec![entry("a", 0)]).unwrap();
        index.slots.push(0);
        assert!(matches!(index.validate(1), Err(KeyIndexError::TableSize { .. })));

        // An entry whose slot was cleared cannot be found.
        let build = || KeyIndex::build([3, 4], (0..40).map(|i| entry(&format!("k{i}"), 0)).collect()).unwrap();
        let mut index = build();
        let taken = index.slots.iter().position(|&target| target != 0).unwrap();
        index.slots[taken] = 0;
        assert!(matches!(index.validate(1), Err(KeyIndexError::Unreachable { .. })));
        // Two entries with one key: `lookup` finds only one of them.
        let mut index = build();
        index.entries[9].key = "k3".into();
        assert!(matches!(index.validate(1), Err(KeyIndexError::Unreachable { .. })));
        assert!(build().validate(1).is_ok());
    }

    #[test]
    fn keys_of_a_subscription_are_found_in_control_s_layout_only() {
        let pair = |key: &str, subscription, slot| KeyEntry { key: key.to_owned(), subscription, slot };
        let entries = vec![
            pair("a1", 0, KeySlot::Primary),
            pair("a2", 0, KeySlot::Secondary),
            pair("b1", 1, KeySlot::Primary),
            pair("b2", 1, KeySlot::Secondary),
        ];
        let index = KeyIndex::build([5, 6], entries).unwrap();
        assert_eq!(index.key_of(1, KeySlot::Primary), Some("b1"));
        assert_eq!(index.key_of(0, KeySlot::Secondary), Some("a2"));
        assert_eq!(index.key_of(2, KeySlot::Primary), None);
        let other_layout = KeyIndex::build([5, 6], vec![entry("x", 0), entry("y", 1)]).unwrap();
        assert_eq!(other_layout.key_of(1, KeySlot::Primary), None, "entry 2 does not exist");
        assert_eq!(other_layout.key_of(0, KeySlot::Secondary), None, "entry 1 belongs to subscription 1");
    }

    #[test]
    fn empty_index_is_valid() {
        let index = KeyIndex::default();
        index.validate(0).unwrap();
        assert!(index.lookup(b"anything").is_none());
    }
}
