//! The per-worker upstream pool: idle keep-alive connections to backends, keyed by address.
//!
//! Worker-local (never shared between cores), bounded per backend, with idle expiry.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use rustls::pki_types::ServerName;

use crate::io::Stream;
use crate::io::tls::HandshakeError;

/// Idle connections kept per backend and worker: enough for bursts, bounded so a quiet worker
/// does not hold hundreds of backend sockets.
pub const IDLE_PER_BACKEND_MAX: usize = 64;
/// An idle connection older than this is closed rather than reused: below the 5 s keep-alive
/// timeout of common backends (Node.js, many load balancers), so we rarely race their close.
pub const IDLE_TIMEOUT_MS: u64 = 4_000;

/// Why a backend connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("backend connect: {0}")]
    Refused(#[from] std::io::Error),
    #[error("backend connect timed out")]
    TimedOut,
    #[error("backend {0}")]
    Tls(#[from] HandshakeError),
}

/// Which pooled connections a request may use: the same address, and for `https://` backends
/// the same server name and trust anchors (a connection verified for one name, or under CAs a
/// reload removed, never serves another request).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BackendKey {
    pub(crate) addr: SocketAddr,
    /// `Some`: TLS, verified for this name under the configuration with this id
    /// (`crate::tls::BackendTls::id`).
    pub(crate) tls: Option<(ServerName<'static>, u64)>,
}

struct Idle<S> {
    stream: S,
    since: Instant,
}

/// One worker's idle backend connections.
pub(crate) struct UpstreamPool<S> {
    idle: RefCell<AHashMap<BackendKey, VecDeque<Idle<S>>>>,
}

impl<S> std::fmt::Debug for UpstreamPool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool").field("backends", &self.idle.borrow().len()).finish()
    }
}

impl<S: Stream> UpstreamPool<S> {
    /// An empty pool.
    pub(crate) fn new() -> Self {
        Self { idle: RefCell::new(AHashMap::new()) }
    }

    /// The most recently used idle connection to `key` that has not expired.
    pub(crate) fn take(&self, key: &BackendKey) -> Option<S> {
        let mut idle = self.idle.borrow_mut();
        let queue = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(entry) = queue.pop_back() {
            if now.duration_since(entry.since) < Duration::from_millis(IDLE_TIMEOUT_MS) {
                return Some(entry.stream);
            }
            // Older entries sit in front of this one: all of them have expired too.
            queue.clear();
        }
        None
    }

    /// Returns a connection after a complete keep-alive response; closes it if the pool is full.
    pub(crate) fn put(&self, key: BackendKey, stream: S) {
        let mut idle = self.idle.borrow_mut();
        let queue = idle.entry(key).or_default();
        let now = Instant::now();
        while queue
            .front()
            .is_some_and(|entry| now.duration_since(entry.since) >= Duration::from_millis(IDLE_TIMEOUT_MS))
        {
            queue.pop_front();
        }
        if queue.len() >= IDLE_PER_BACKEND_MAX {
            queue.pop_front();
        }
        queue.push_back(Idle { stream, since: now });
    }
}

/// Opens a new connection to `addr` within `limit`.
pub(crate) async fn connect<S: Stream>(addr: SocketAddr, limit: Duration) -> Result<S, ConnectError> {
    match tokio::time::timeout(limit, S::connect(addr)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ConnectError::TimedOut),
    }
}
