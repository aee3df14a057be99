//! The `identity` thread: keeps a current token for every (resource, client-id) the current
//! snapshot's programs name. It fetches each as soon as a snapshot names it, refreshes it
//! `refresh-ahead-s` before expiry (at half its lifetime when that is sooner), retries a failure
//! with a doubling delay, and publishes the whole set to [`super::TOKENS`] after each change.
//! A token whose refresh fails stays in use until it expires.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_contract::identity::IdentitySettings;
use portcullis_contract::model::Config;
use portcullis_contract::program::{Const, Op};

use super::{Token, TokenTable, fetch};
use crate::snapshot::SnapshotCell;

/// How often the thread looks for a new snapshot and for tokens due (a new resource waits at
/// most this long before its first fetch starts).
pub const POLL_INTERVAL_MS: u64 = 100;
/// The first retry after a failure; each further failure doubles it up to [`RETRY_MAX_MS`].
pub const RETRY_MIN_MS: u64 = 500;
pub const RETRY_MAX_MS: u64 = 60_000;
/// Distinct (resource, client-id) pairs kept at most: one snapshot naming more is a mistake,
/// and the rest are not fetched (their requests fail as without a token).
pub const TOKENS_MAX: usize = 1024;
/// A token is never refreshed sooner than this after it was fetched (a source that hands out
/// nearly expired tokens must not be asked in a loop).
const REFRESH_MIN_MS: u64 = 1_000;

/// (resource, client id).
type Key = (String, Option<String>);

#[derive(Debug)]
struct Slot {
    token: Option<Arc<Token>>,
    next_attempt: Instant,
    failures: u32,
}

/// Starts the thread (once per process).
pub fn spawn(cell: Arc<SnapshotCell>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("identity".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "identity thread: no runtime; authentication-managed-identity will fail");
                return;
            }
        };
        runtime.block_on(run(&cell));
    })
}

async fn run(cell: &SnapshotCell) {
    let mut slots: HashMap<Key, Slot> = HashMap::new();
    let mut settings: Option<IdentitySettings> = None;
    let mut generation = 0;
    loop {
        if let Some(snapshot) = cell.load() {
            let mut changed = false;
            // The programs are scanned once per snapshot, not at every poll.
            if snapshot.generation != generation {
                generation = snapshot.generation;
                if settings.as_ref() != Some(&snapshot.config.identity) {
                    // Another source: what the old one issued is not what the new one would.
                    changed = !slots.is_empty();
                    slots.clear();
                    settings = Some(snapshot.config.identity.clone());
                }
                let wanted = wanted(&snapshot.config);
                let before = slots.len();
                slots.retain(|key, _| wanted.contains(key));
                changed |= slots.len() != before;
                let now = Instant::now();
                for key in wanted {
                    slots.entry(key).or_insert(Slot { token: None, next_attempt: now, failures: 0 });
                }
            }
            if let Some(settings) = &settings {
                changed |= refresh_due(settings, &mut slots).await;
            }
            if changed {
                publish(&slots);
            }
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Fetches every token that is due; true when one changed.
async fn refresh_due(settings: &IdentitySettings, slots: &mut HashMap<Key, Slot>) -> bool {
    let mut changed = false;
    for ((resource, client_id), slot) in slots.iter_mut() {
        if Instant::now() < slot.next_attempt {
            continue;
        }
        match fetch::token(&settings.source, resource, client_id.as_deref()).await {
            Ok(fetched) => {
                let lifetime_s = fetched.lifetime_s.max(0);
                let expires_at_s = chrono::Utc::now().timestamp() + lifetime_s;
                slot.token = Some(Arc::new(Token::new(fetched.value, expires_at_s)));
                slot.failures = 0;
                slot.next_attempt = Instant::now() + refresh_in(lifetime_s, settings.refresh_ahead_s);
                changed = true;
                tracing::info!(
                    resource = resource.as_str(),
                    client_id = client_id.as_deref().unwrap_or("(system-assigned)"),
                    source = settings.source.kind(),
                    expires_in_s = lifetime_s,
                    "managed identity token acquired"
                );
            }
            Err(error) => {
                let delay = RETRY_MIN_MS.saturating_mul(1 << slot.failures.min(16)).min(RETRY_MAX_MS);
                slot.failures = slot.failures.saturating_add(1);
                slot.next_attempt = Instant::now() + Duration::from_millis(delay);
                tracing::warn!(
                    resource = resource.as_str(),
                    client_id = client_id.as_deref().unwrap_or("(system-assigned)"),
                    source = settings.source.kind(),
                    %error,
                    retry_in_ms = delay,
                    "managed identity token not acquired"
                );
            }
        }
    }
    changed
}

/// When to refresh a token that lives `lifetime_s`: `ahead_s` before it expires, or at half its
/// lifetime when that is sooner, and never within [`REFRESH_MIN_MS`].
pub fn refresh_in(lifetime_s: i64, ahead_s: u32) -> Duration {
    let lifetime_ms = u64::try_from(lifetime_s).unwrap_or(0).saturating_mul(1000);
    let ahead_ms = (u64::from(ahead_s) * 1000).min(lifetime_ms / 2);
    Duration::from_millis((lifetime_ms - ahead_ms).max(REFRESH_MIN_MS))
}

/// Every (resource, client id) the config's programs ask for, at most [`TOKENS_MAX`].
fn wanted(config: &Config) -> BTreeSet<Key> {
    let mut keys = BTreeSet::new();
    for program in &config.programs {
        let text = |index: u32| match program.consts.get(index as usize) {
            Some(Const::Str(text)) => Some(text.clone()),
            _ => None,
        };
        for op in &program.ops {
            if let Op::ManagedIdentityToken { resource, client_id, .. } = *op {
                let Some(resource) = text(resource) else { continue };
                if keys.len() < TOKENS_MAX {
                    keys.insert((resource, client_id.and_then(text)));
                }
            }
        }
    }
    keys
}

fn publish(slots: &HashMap<Key, Slot>) {
    let mut table = TokenTable::default();
    for ((resource, client_id), slot) in slots {
        if let Some(token) = &slot.token {
            table.insert(resource, client_id.as_deref(), Arc::clone(token));
        }
    }
    super::TOKENS.store(Arc::new(table));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_ahead_of_expiry_or_at_half_life() {
        assert_eq!(refresh_in(3600, 300), Duration::from_secs(3300));
        assert_eq!(refresh_in(4, 300), Duration::from_secs(2));
        assert_eq!(refresh_in(0, 300), Duration::from_millis(REFRESH_MIN_MS));
    }
}
