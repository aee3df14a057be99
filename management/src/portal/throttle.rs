//! Sign-in throttling: failed attempts counted per account and per client address in a fixed
//! window; past the limit, sign-ins are refused (429) without checking the password.

use std::collections::HashMap;
use std::sync::Mutex;

/// The window failures are counted in, in milliseconds.
pub const WINDOW_MS: u64 = 15 * 60 * 1000;
/// Failed sign-ins of one account allowed per window (then it waits, whoever tries).
pub const ACCOUNT_FAILURES_MAX: u32 = 5;
/// Failed sign-ins from one address per window (one address may try several accounts).
pub const ADDRESS_FAILURES_MAX: u32 = 20;
/// Keys remembered at most (bounded memory); past it, the entry whose window started first goes.
pub const KEYS_MAX: usize = 10_000;

/// The failure counts.
#[derive(Debug, Default)]
pub struct Throttle {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    started_ms: u64,
    failures: u32,
}

impl Throttle {
    /// `None` when `account` may try from `address` at `now_ms`, else the seconds to wait.
    pub fn check(&self, account: &str, address: &str, now_ms: u64) -> Option<u64> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let wait = |key: String, max: u32| {
            let entry = entries.get(&key)?;
            let ends_ms = entry.started_ms + WINDOW_MS;
            (entry.failures >= max && now_ms < ends_ms).then(|| (ends_ms - now_ms).div_ceil(1000))
        };
        let account = wait(account_key(account), ACCOUNT_FAILURES_MAX);
        let address = wait(address_key(address), ADDRESS_FAILURES_MAX);
        account.max(address)
    }

    /// Counts a failed sign-in.
    pub fn fail(&self, account: &str, address: &str, now_ms: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in [account_key(account), address_key(address)] {
            if !entries.contains_key(&key) && entries.len() >= KEYS_MAX {
                entries.retain(|_, entry| now_ms < entry.started_ms + WINDOW_MS);
                if entries.len() >= KEYS_MAX
                    && let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.started_ms).map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
            let entry = entries.entry(key).or_insert(Entry { started_ms: now_ms, failures: 0 });
            if now_ms >= entry.started_ms + WINDOW_MS {
                *entry = Entry { started_ms: now_ms, failures: 0 };
            }
            entry.failures = entry.failures.saturating_add(1);
        }
    }

    /// Forgets the account's failures after it signed in (the address's stay).
    pub fn succeed(&self, account: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.remove(&account_key(account));
    }
}

fn account_key(account: &str) -> String {
    format!("account:{}", account.to_ascii_lowercase())
}

fn address_key(address: &str) -> String {
    format!("address:{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_waits_after_its_failures_until_the_window_ends() {
        let throttle = Throttle::default();
        for _ in 0..ACCOUNT_FAILURES_MAX {
            assert_eq!(throttle.check("A@x", "1.1.1.1", 0), None);
            throttle.fail("a@x", "1.1.1.1", 0);
        }
        assert_eq!(throttle.check("a@x", "2.2.2.2", 1_000), Some(WINDOW_MS / 1000 - 1));
        assert_eq!(throttle.check("b@x", "1.1.1.1", 1_000), None, "the address has failures left");
        assert_eq!(throttle.check("a@x", "2.2.2.2", WINDOW_MS), None);
        throttle.succeed("a@x");
        assert_eq!(throttle.check("a@x", "1.1.1.1", 1_000), None);
    }

    #[test]
    fn an_address_waits_after_failing_across_accounts() {
        let throttle = Throttle::default();
        for n in 0..ADDRESS_FAILURES_MAX {
            throttle.fail(&format!("user{n}@x"), "9.9.9.9", 0);
        }
        assert!(throttle.check("new@x", "9.9.9.9", 0).is_some());
        assert_eq!(throttle.check("new@x", "8.8.8.8", 0), None);
    }

    #[test]
    fn memory_is_bounded() {
        let throttle = Throttle::default();
        for n in 0..KEYS_MAX + 10 {
            throttle.fail("a@x", &format!("addr{n}"), n as u64);
        }
        assert!(throttle.entries.lock().unwrap().len() <= KEYS_MAX);
    }
}
