//! The keys behind `<openid-config url>`: control fetches them (a worker never does), keeps the
//! last good set of each URL, and puts them in every snapshot it publishes.
//!
//! When: at load (before the snapshot that needs them is published), every
//! `[jwt] openid-refresh-s` (default an hour, as APIM), and, at most once per
//! `[jwt] openid-refetch-min-s` (default 5 minutes, as APIM), after a failed fetch or when the
//! data plane reports a token whose `kid` no key answers to (a key rotation). A failed fetch
//! keeps the last good keys (fail static) and `ctl status` says so.

pub mod fetch;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use portcullis_contract::jwt::OpenIdKeySet;
use portcullis_contract::model::Config;
use serde::{Deserialize, Serialize};

/// What `ctl status` shows for one URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenIdStatus {
    pub url: String,
    /// Keys of the last good fetch (0: never fetched).
    pub keys: usize,
    /// When the last good fetch finished (Unix seconds).
    pub fetched_unix_s: Option<u64>,
    /// The last fetch's error, when it failed: the last good keys keep serving.
    pub last_error: Option<String>,
}

/// Every URL's last good keys and fetch history. Shared by the refresher, the publisher (which
/// reads the keys into snapshots) and the snapshot channel (which records key misses).
#[derive(Debug, Default)]
pub struct Store {
    entries: Mutex<BTreeMap<String, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    keys: Option<OpenIdKeySet>,
    fetched: Option<(Instant, SystemTime)>,
    attempted: Option<Instant>,
    last_error: Option<String>,
    miss_reported: bool,
}

/// The `[jwt]` intervals, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    pub refresh: Duration,
    pub refetch_min: Duration,
}

impl Intervals {
    pub fn of(config: &Config) -> Self {
        Self {
            refresh: Duration::from_secs(u64::from(config.jwt.openid_refresh_s)),
            refetch_min: Duration::from_secs(u64::from(config.jwt.openid_refetch_min_s)),
        }
    }
}

impl Store {
    /// The URLs `config`'s programs trust, in order, without repeats.
    pub fn urls(config: &Config) -> Vec<String> {
        let mut urls: Vec<String> = Vec::new();
        for url in config.programs.iter().flat_map(|p| p.jwt.iter()).flat_map(|rule| rule.openid_urls.iter()) {
            if !urls.contains(url) {
                urls.push(url.clone());
            }
        }
        urls
    }

    /// The URLs of `config` to fetch now: never tried; good but older than the refresh
    /// interval; or failed, or reported for an unknown `kid`, and last tried at least the
    /// minimum re-fetch interval ago.
    pub fn due(&self, config: &Config, now: Instant) -> Vec<String> {
        let intervals = Intervals::of(config);
        let entries = self.lock();
        Self::urls(config)
            .into_iter()
            .filter(|url| match entries.get(url) {
                None => true,
                Some(entry) => {
                    let since = |at: Option<Instant>| at.map_or(Duration::MAX, |at| now.saturating_duration_since(at));
                    let stale = since(entry.fetched.map(|(at, _)| at)) >= intervals.refresh;
                    let retry = (entry.last_error.is_some() || entry.miss_reported || entry.keys.is_none())
                        && since(entry.attempted) >= intervals.refetch_min;
                    stale || retry
                }
            })
            .collect()
    }

    /// Records a good fetch; returns whether the keys differ from the last good ones.
    pub fn succeeded(&self, set: OpenIdKeySet, now: Instant) -> bool {
        let mut entries = self.lock();
        let entry = entries.entry(set.url.clone()).or_default();
        let changed = entry.keys.as_ref() != Some(&set);
        entry.keys = Some(set);
        entry.fetched = Some((now, SystemTime::now()));
        entry.attempted = Some(now);
        entry.last_error = None;
        entry.miss_reported = false;
        changed
    }

    /// Records a failed fetch: the last good keys stay.
    pub fn failed(&self, url: &str, error: String, now: Instant) {
        let mut entries = self.lock();
        let entry = entries.entry(url.to_owned()).or_default();
        match &entry.keys {
            Some(keys) => tracing::warn!(
                "cannot refresh the keys of {url} ({error}); keeping the last good {} keys",
                keys.keys.len()
            ),
            None => {
                tracing::warn!("cannot fetch the keys of {url} ({error}); tokens it signs are refused until it answers")
            }
        }
        entry.attempted = Some(now);
        entry.last_error = Some(error);
    }

    /// The data plane saw a `kid` no key of these URLs answers to.
    pub fn report_misses(&self, urls: &[String]) {
        let mut entries = self.lock();
        for url in urls {
            if let Some(entry) = entries.get_mut(url) {
                entry.miss_reported = true;
            }
        }
    }

    /// The last good keys of `config`'s URLs, for its snapshot.
    pub fn sets_for(&self, config: &Config) -> Vec<OpenIdKeySet> {
        let entries = self.lock();
        Self::urls(config).iter().filter_map(|url| entries.get(url)?.keys.clone()).collect()
    }

    /// What `ctl status` shows, for `config`'s URLs.
    pub fn status(&self, config: &Config) -> Vec<OpenIdStatus> {
        let entries = self.lock();
        Self::urls(config)
            .into_iter()
            .map(|url| {
                let entry = entries.get(&url);
                OpenIdStatus {
                    keys: entry.and_then(|e| e.keys.as_ref()).map_or(0, |keys| keys.keys.len()),
                    fetched_unix_s: entry
                        .and_then(|e| e.fetched)
                        .and_then(|(_, at)| at.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                    last_error: entry.and_then(|e| e.last_error.clone()),
                    url,
                }
            })
            .collect()
    }

    /// Fetches every due URL of `config`; returns whether any URL's keys changed.
    pub async fn refresh(&self, config: &Config) -> bool {
        let mut changed = false;
        for url in self.due(config, Instant::now()) {
            match fetch::keys(&url).await {
                Ok(set) => {
                    let keys = set.keys.len();
                    if self.succeeded(set, Instant::now()) {
                        tracing::info!("fetched {keys} signing keys from {url}");
                        changed = true;
                    }
                }
                Err(error) => self.failed(&url, error.to_string(), Instant::now()),
            }
        }
        changed
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // Every update leaves the map consistent before it can panic.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests;
