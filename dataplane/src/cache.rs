//! The response and value caches behind the caching policies (docs/cache.md).
//!
//! - [`internal`]: the built-in cache, one per host (data plane process), shared by every worker:
//!   moka's concurrent cache, bounded in bytes, TinyLFU admission, per-entry time to live.
//! - [`external`]: Redis (APIM's external cache is Azure Cache for Redis), driven by one side
//!   thread with its own tokio runtime; workers send it requests and await the answer.
//! - [`key`]: how `cache-lookup` composes a response's key, and which requests and responses
//!   are cacheable (APIM's rules).
//! - [`entry`]: a cached response, and the bounded tee that collects one as it is relayed.
//!
//! [`Caches`] is what a snapshot carries: built on the snapshot thread, never on a worker.

pub mod entry;
pub mod external;
pub mod internal;
pub mod key;

use std::sync::{Arc, Mutex};

use portcullis_contract::model::CacheSettings;
use portcullis_contract::program::CachingType;

pub use entry::CachedResponse;
pub use external::ExternalCache;
pub use internal::{Entry, InternalCache};

/// The caches requests of one snapshot use.
#[derive(Debug, Clone)]
pub struct Caches {
    pub internal: Arc<InternalCache>,
    /// `None`: no `[cache] redis-url`; `caching-type="external"` then always misses.
    pub external: Option<ExternalCache>,
    /// The largest response `cache-store` keeps, in bytes (head and body).
    pub entry_bytes_max: u64,
}

/// Which cache one policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing<'c> {
    Internal(&'c InternalCache),
    External(&'c ExternalCache),
    /// `external` without Redis configured: nothing is found, nothing is kept.
    Nowhere,
}

impl Caches {
    /// The caches for `settings`: the host's internal cache (kept across snapshots while its size
    /// stays the same) and the side thread for `redis-url` (kept while the URL stays the same).
    /// Runs on the snapshot thread; the registry's lock is never taken by a worker.
    pub fn for_settings(settings: &CacheSettings) -> Self {
        static INTERNAL: Mutex<Option<Arc<InternalCache>>> = Mutex::new(None);
        static EXTERNAL: Mutex<Option<ExternalCache>> = Mutex::new(None);
        let internal = {
            let mut kept = INTERNAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match kept.as_ref() {
                Some(cache) if cache.capacity_bytes() == settings.internal_bytes_max => cache.clone(),
                _ => {
                    let cache = Arc::new(InternalCache::new(settings.internal_bytes_max));
                    *kept = Some(cache.clone());
                    cache
                }
            }
        };
        let external = settings.redis_url.as_ref().map(|url| {
            let mut kept = EXTERNAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match kept.as_ref() {
                Some(external) if external.url() == url => external.clone(),
                _ => {
                    let external = ExternalCache::start(url);
                    *kept = Some(external.clone());
                    external
                }
            }
        });
        Self { internal, external, entry_bytes_max: settings.entry_bytes_max }
    }

    /// The cache `caching` names: `prefer-external` is Redis when configured, else internal.
    pub fn backing(&self, caching: CachingType) -> Backing<'_> {
        match (caching, &self.external) {
            (CachingType::Internal, _) | (CachingType::PreferExternal, None) => Backing::Internal(&self.internal),
            (CachingType::External | CachingType::PreferExternal, Some(external)) => Backing::External(external),
            (CachingType::External, None) => Backing::Nowhere,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caching_types_pick_their_cache() {
        let settings = CacheSettings { internal_bytes_max: 1 << 20, ..CacheSettings::default() };
        let caches = Caches::for_settings(&settings);
        assert!(matches!(caches.backing(CachingType::Internal), Backing::Internal(_)));
        assert!(matches!(caches.backing(CachingType::PreferExternal), Backing::Internal(_)));
        assert_eq!(caches.backing(CachingType::External), Backing::Nowhere);
        let with_redis = CacheSettings { redis_url: Some("redis://127.0.0.1:1".into()), ..settings };
        let caches = Caches::for_settings(&with_redis);
        assert!(matches!(caches.backing(CachingType::PreferExternal), Backing::External(_)));
        assert!(matches!(caches.backing(CachingType::External), Backing::External(_)));
        assert!(matches!(caches.backing(CachingType::Internal), Backing::Internal(_)));
    }
}
