//! Host names known only per request (`set-backend-service base-url="@(...)"` computing a URL)
//! resolved at run time, through a small per-worker cache.
//!
//! Hosts written literally in the config are resolved when a snapshot loads (on the snapshot
//! thread); this cache is for the rest. A lookup runs the system resolver (`getaddrinfo`: the
//! same `/etc/hosts`, `nsswitch` and DNS servers as control's) on tokio's blocking pool, never on
//! the worker's thread. Concurrent requests for the same name share one lookup. Answers are kept
//! for [`DNS_TTL`], failures for [`DNS_NEGATIVE_TTL`] (a name that does not resolve must not
//! cost a lookup per request); the cache holds at most [`DNS_ENTRIES_MAX`] names.
//!
//! `getaddrinfo` reports no TTL, so the cache uses a fixed one, as nginx's `resolver valid=` and
//! Envoy's `dns_refresh_rate` do.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a resolved name is used before it is looked up again.
pub(crate) const DNS_TTL: Duration = Duration::from_secs(30);
/// How long a name that failed to resolve is answered from the cache (as a failure).
pub(crate) const DNS_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Names one worker keeps; past it, expired entries go first, then the oldest.
pub(crate) const DNS_ENTRIES_MAX: usize = 1024;
/// A lookup slower than this fails the request (the system resolver's own retries can take
/// much longer).
pub(crate) const DNS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("{host} did not resolve: {reason}")]
    Failed { host: Box<str>, reason: Box<str> },
    #[error("resolving {host} took longer than {} s", DNS_LOOKUP_TIMEOUT.as_secs())]
    TimedOut { host: Box<str> },
}

/// The system lookup, replaceable in tests.
pub(crate) type Lookup = Rc<dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>>>>>;

enum Entry {
    Resolved {
        addr: IpAddr,
        expires: Instant,
    },
    Failed {
        error: ResolveError,
        expires: Instant,
    },
    /// A lookup is running; waiters are woken when it is stored.
    Pending(Rc<Notify>),
}

/// One worker's cache of run-time host names.
pub(crate) struct Resolver {
    entries: RefCell<HashMap<Box<str>, Entry>>,
    lookup: Lookup,
    ttl: Duration,
    negative_ttl: Duration,
}

impl Resolver {
    /// A cache over the system resolver.
    pub(crate) fn system() -> Self {
        Self::with_lookup(Rc::new(|host| Box::pin(system_lookup(host))), DNS_TTL, DNS_NEGATIVE_TTL)
    }

    pub(crate) fn with_lookup(lookup: Lookup, ttl: Duration, negative_ttl: Duration) -> Self {
        Self { entries: RefCell::new(HashMap::new()), lookup, ttl, negative_ttl }
    }

    /// The address of `host` (names compare case-insensitively): the first one the system
    /// resolver returns, as for the hosts in the config (its order follows RFC 6724 and
    /// `/etc/gai.conf`).
    pub(crate) async fn resolve(&self, host: &str) -> Result<IpAddr, ResolveError> {
        let key: Box<str> = host.to_ascii_lowercase().into();
        loop {
            let waiting = match self.cached(&key) {
                Cached::Hit(result) => return result,
                Cached::Pending(notify) => notify,
                Cached::Miss => break,
            };
            // Another request is looking the name up: wait for its answer, then read it.
            let notified = waiting.notified();
            if !matches!(self.entries.borrow().get(&key), Some(Entry::Pending(_))) {
                continue;
            }
            notified.await;
        }
        let notify = Rc::new(Notify::new());
        self.insert(key.clone(), Entry::Pending(Rc::clone(&notify)));
        // If this request goes away mid-lookup, its waiters must not wait forever.
        let mut pending = PendingGuard { resolver: self, key: Some(key.clone()), notify: Rc::clone(&notify) };
        let lookup = (self.lookup)(key.to_string());
        let result = match tokio::time::timeout(DNS_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
            Ok(Ok(_)) => Err(ResolveError::Failed { host: key.clone(), reason: "no addresses".into() }),
            Ok(Err(error)) => Err(ResolveError::Failed { host: key.clone(), reason: error.to_string().into() }),
            Err(_) => Err(ResolveError::TimedOut { host: key.clone() }),
        };
        let now = Instant::now();
        let (entry, answer) = match result {
            Ok(addrs) => (Entry::Resolved { addr: addrs[0], expires: now + self.ttl }, Ok(addrs[0])),
            Err(error) => (Entry::Failed { error: error.clone(), expires: now + self.negative_ttl }, Err(error)),
        };
        pending.key = None;
        self.insert(key, entry);
        notify.notify_waiters();
        answer
    }

    fn cached(&self, key: &str) -> Cached {
        let mut entries = self.entries.borrow_mut();
        let now = Instant::now();
        match entries.get_mut(key) {
            Some(Entry::Resolved { addr, expires }) if *expires > now => Cached::Hit(Ok(*addr)),
            Some(Entry::Failed { error, expires }) if *expires > now => Cached::Hit(Err(error.clone())),
            Some(Entry::Pending(notify)) => Cached::Pending(Rc::clone(notify)),
            _ => Cached::Miss,
        }
    }

    /// Stores `entry`, making room first: expired entries go, then (still full) the one that
    /// expires soonest. Pending lookups are never evicted (their waiters expect an answer).
    fn insert(&self, key: Box<str>, entry: Entry) {
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= DNS_ENTRIES_MAX && !entries.contains_key(&key) {
            let now = Instant::now();
            entries.retain(|_, entry| match entry {
                Entry::Resolved { expires, .. } | Entry::Failed { expires, .. } => *expires > now,
                Entry::Pending(_) => true,
            });
            if entries.len() >= DNS_ENTRIES_MAX {
                let soonest = entries
                    .iter()
                    .filter_map(|(name, entry)| match entry {
                        Entry::Resolved { expires, .. } | Entry::Failed { expires, .. } => Some((*expires, name)),
                        Entry::Pending(_) => None,
                    })
                    .min()
                    .map(|(_, name)| name.clone());
                if let Some(name) = soonest {
                    entries.remove(&name);
                }
            }
        }
        entries.insert(key, entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.borrow().len()
    }
}

/// Removes a pending entry whose lookup was dropped, waking its waiters (one of them looks the
/// name up again).
struct PendingGuard<'r> {
    resolver: &'r Resolver,
    key: Option<Box<str>>,
    notify: Rc<Notify>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.resolver.entries.borrow_mut().remove(&key);
            self.notify.notify_waiters();
        }
    }
}

enum Cached {
    Hit(Result<IpAddr, ResolveError>),
    Pending(Rc<Notify>),
    Miss,
}

/// `getaddrinfo` on tokio's blocking pool.
async fn system_lookup(host: String) -> io::Result<Vec<IpAddr>> {
    let lookup = tokio::task::spawn_blocking(move || {
        use std::net::ToSocketAddrs as _;
        (host.as_str(), 0).to_socket_addrs().map(|addrs| addrs.map(|addr| addr.ip()).collect::<Vec<_>>())
    });
    match lookup.await {
        Ok(result) => result,
        Err(error) => Err(io::Error::other(error)),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A lookup that answers from a table after `delay`, counting calls.
    fn fake(calls: Rc<Cell<u32>>, delay: Duration) -> Lookup {
        Rc::new(move |host: String| {
            calls.set(calls.get() + 1);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                match host.as_str() {
                    "api.test" => Ok(vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()]),
                    "hang.test" => std::future::pending().await,
                    _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
                }
            })
        })
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
    }

    #[test]
    fn answers_are_cached_for_their_ttl() {
        runtime().block_on(async {
            let calls = Rc::new(Cell::new(0));
            let resolver = Resolver::with_lookup(fake(calls.clone(), Duration::ZERO), DNS_TTL, DNS_NEGATIVE_TTL);
            let first = resolver.resolve("API.test").await.unwrap();
            let second = resolver.resolve("api.test").await.unwrap();
            assert_eq!((first, second), ("10.0.0.1".parse().unwrap(), first));
            assert_eq!(calls.get(), 1, "names compare case-insensitively and are cached");
            tokio::time::advance(DNS_TTL + Duration::from_millis(1)).await;
            resolver.resolve("api.test").await.unwrap();
            assert_eq!(calls.get(), 2, "an expired answer is looked up again");
        });
    }

    #[test]
    fn failures_are_cached_briefly() {
        runtime().block_on(async {
            let calls = Rc::new(Cell::new(0));
            let resolver = Resolver::with_lookup(fake(calls.clone(), Duration::ZERO), DNS_TTL, DNS_NEGATIVE_TTL);
            let error = resolver.resolve("nowhere.test").await.unwrap_err();
            assert!(error.to_string().starts_with("nowhere.test did not resolve: no such host"), "{error}");
            assert_eq!(resolver.resolve("nowhere.test").await.unwrap_err(), error);
            assert_eq!(calls.get(), 1);
            tokio::time::advance(DNS_NEGATIVE_TTL + Duration::from_millis(1)).await;
            assert!(resolver.resolve("nowhere.test").await.is_err());
            assert_eq!(calls.get(), 2);
        });
    }

    #[test]
    fn concurrent_requests_share_one_lookup() {
        runtime().block_on(async {
            let calls = Rc::new(Cell::new(0));
            let lookup = fake(calls.clone(), Duration::from_millis(100));
            let resolver = Rc::new(Resolver::with_lookup(lookup, DNS_TTL, DNS_NEGATIVE_TTL));
            let local = tokio::task::LocalSet::new();
            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let resolver = Rc::clone(&resolver);
                    local.spawn_local(async move { resolver.resolve("api.test").await })
                })
                .collect();
            local.await;
            for task in tasks {
                assert!(task.await.unwrap().is_ok());
            }
            assert_eq!(calls.get(), 1);
        });
    }

    #[test]
    fn a_dropped_lookup_does_not_strand_its_waiters() {
        runtime().block_on(async {
            let calls = Rc::new(Cell::new(0));
            let lookup = fake(calls.clone(), Duration::from_millis(100));
            let resolver = Rc::new(Resolver::with_lookup(lookup, DNS_TTL, DNS_NEGATIVE_TTL));
            let local = tokio::task::LocalSet::new();
            let first = {
                let resolver = Rc::clone(&resolver);
                local.spawn_local(async move { resolver.resolve("api.test").await })
            };
            let second = {
                let resolver = Rc::clone(&resolver);
                local.spawn_local(async move { resolver.resolve("api.test").await })
            };
            local
                .run_until(async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    first.abort();
                })
                .await;
            local.await;
            assert!(second.await.unwrap().is_ok());
            assert_eq!(calls.get(), 2, "the waiter looked the name up itself");
        });
    }

    #[test]
    fn a_hung_lookup_times_out() {
        runtime().block_on(async {
            let calls = Rc::new(Cell::new(0));
            let resolver = Resolver::with_lookup(fake(calls, Duration::ZERO), DNS_TTL, DNS_NEGATIVE_TTL);
            let error = resolver.resolve("hang.test").await.unwrap_err();
            assert_eq!(error, ResolveError::TimedOut { host: "hang.test".into() });
        });
    }

    #[test]
    fn the_cache_is_bounded() {
        runtime().block_on(async {
            let calls = Rc::new(Cell::new(0));
            let resolver = Resolver::with_lookup(fake(calls, Duration::ZERO), DNS_TTL, DNS_NEGATIVE_TTL);
            for index in 0..DNS_ENTRIES_MAX + 10 {
                let _ = resolver.resolve(&format!("host-{index}.test")).await;
            }
            assert_eq!(resolver.len(), DNS_ENTRIES_MAX);
        });
    }
}
