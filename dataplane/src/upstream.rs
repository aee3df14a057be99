//! Backends from one worker's side: endpoint selection and passive health (`balance`,
//! `circuit`), idle keep-alive connections (`pool`), host names computed per request (`dns`),
//! active health checks (`health`) and connecting. The resolved form of backends is the
//! snapshot's ([`crate::snapshot::resolved`]).
//!
//! Everything here except `health` is worker-local: no state crosses cores on the hot path. The
//! one shared thing a worker reads per pick is an endpoint's active-health flag in the snapshot
//! (a relaxed atomic load).

pub(crate) mod balance;
pub(crate) mod circuit;
pub(crate) mod dns;
pub mod health;
pub(crate) mod pool;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis_contract::model::PoolSettings;
use rustls::pki_types::ServerName;

use crate::io::Stream;
use crate::io::tls::HandshakeError;
use crate::snapshot::Snapshot;
use balance::{BalanceState, InFlight, Outcome};
use pool::IdlePool;

/// Why a backend connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("backend connect: {0}")]
    Refused(#[from] std::io::Error),
    #[error("backend connect timed out")]
    TimedOut,
    #[error("backend {0}")]
    Tls(#[from] HandshakeError),
    #[error("backend host {0}")]
    Resolve(#[from] dns::ResolveError),
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

/// Where one attempt goes and how its connection is pooled afterwards.
#[derive(Debug, Clone)]
pub(crate) struct Dest {
    pub(crate) key: BackendKey,
    pub(crate) pool: PoolSettings,
}

/// An endpoint picked for one attempt; report its outcome with [`UpstreamPool::report`].
#[derive(Debug)]
pub(crate) struct Pick {
    generation: u64,
    backend: u32,
    pub(crate) endpoint: usize,
    pub(crate) dest: Dest,
    /// Counts the request on its endpoint (least-requests) until dropped.
    pub(crate) in_flight: InFlight,
}

/// One worker's view of the backends: selection state per backend of the current snapshot, and
/// idle connections per endpoint.
pub(crate) struct UpstreamPool<S> {
    idle: RefCell<IdlePool<S>>,
    /// Selection state for the snapshot of `generation`, one per [`Snapshot::upstreams`] entry;
    /// rebuilt when a newer snapshot is first used, keeping the circuits of endpoints that stay.
    balance: RefCell<(u64, Vec<BalanceState>)>,
}

impl<S> std::fmt::Debug for UpstreamPool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool").field("endpoints", &self.idle.borrow().endpoints()).finish()
    }
}

impl<S: Stream> UpstreamPool<S> {
    /// An empty pool.
    pub(crate) fn new() -> Self {
        Self { idle: RefCell::new(IdlePool::new()), balance: RefCell::new((0, Vec::new())) }
    }

    /// Picks an endpoint of backend `backend` of `snapshot`, not one of `tried`.
    pub(crate) fn pick(&self, snapshot: &Snapshot, backend: u32, tried: &[usize]) -> Option<Pick> {
        let resolved = snapshot.upstreams.get(backend as usize)?;
        let mut guard = self.balance.borrow_mut();
        let (generation, states) = &mut *guard;
        let current = *generation == snapshot.generation && states.len() == snapshot.upstreams.len();
        if snapshot.generation > *generation || (snapshot.generation == *generation && !current) {
            *generation = snapshot.generation;
            *states = snapshot.upstreams.iter().map(|backend| BalanceState::carried_over(backend, states)).collect();
        }
        let now = Instant::now();
        let mut scratch;
        let state = match states.get_mut(backend as usize) {
            // A request still on an older snapshot (during a reload): selection without memory.
            Some(state) if *generation == snapshot.generation => state,
            _ => {
                scratch = BalanceState::new(resolved);
                &mut scratch
            }
        };
        let endpoint = state.pick(resolved, tried, now)?;
        let picked = resolved.endpoints.get(endpoint)?;
        let addr = picked.addr?;
        let identity = resolved.tls.as_ref().unwrap_or(&snapshot.backend_tls).id;
        let tls = picked.tls_name.clone().map(|name| (name, identity));
        Some(Pick {
            generation: snapshot.generation,
            backend,
            endpoint,
            dest: Dest { key: BackendKey { addr, tls }, pool: resolved.pool },
            in_flight: state.in_flight(endpoint),
        })
    }

    /// Records what the attempt on `pick` said about its endpoint (passive health).
    pub(crate) fn report(&self, snapshot: &Snapshot, pick: &Pick, outcome: Outcome) {
        let mut guard = self.balance.borrow_mut();
        let (generation, states) = &mut *guard;
        if *generation != pick.generation {
            return;
        }
        if let (Some(state), Some(resolved)) =
            (states.get_mut(pick.backend as usize), snapshot.upstreams.get(pick.backend as usize))
        {
            if outcome == Outcome::Failure {
                tracing::debug!(backend = %resolved.id, endpoint = pick.endpoint, "backend endpoint failed");
            }
            state.report(resolved, pick.endpoint, outcome, Instant::now());
        }
    }

    /// An idle connection to `dest` that has not expired; expired ones are closed.
    pub(crate) fn take(&self, dest: &Dest) -> Option<S> {
        let mut expired = Vec::new();
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        idle.sweep(now, &mut expired);
        let stream = idle.take(&dest.key, dest.pool, now, &mut expired);
        drop(idle);
        for stale in expired {
            stale.shutdown();
        }
        stream
    }

    /// Returns a connection after a complete keep-alive response; closes it if the endpoint's
    /// queue is full (and closes any that expired).
    pub(crate) fn put(&self, dest: Dest, stream: S) {
        let mut closed = Vec::new();
        self.idle.borrow_mut().put(dest.key, stream, dest.pool, Instant::now(), &mut closed);
        for stream in closed {
            stream.shutdown();
        }
    }
}

/// Opens a new connection to `addr` within `limit`.
pub(crate) async fn connect<S: Stream>(addr: SocketAddr, limit: Duration) -> Result<S, ConnectError> {
    match tokio::time::timeout(limit, S::connect(addr)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ConnectError::TimedOut),
    }
}
