//! Backends as the hot path uses them: endpoint addresses resolved when the snapshot is built,
//! and the active-health verdict of each endpoint, written by the health thread and read by
//! every worker with one relaxed atomic load.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use portcullis_contract::model::{
    ActiveHealth, Backend, BackendUrl, LoadBalancing, PassiveHealth, PoolSettings, Scheme,
};

/// One backend: a named one, or the single endpoint of an API's `backend-url`.
#[derive(Debug)]
pub struct ResolvedBackend {
    /// The named backend's id (`""` for an API's `backend-url`).
    pub id: String,
    pub base_path: String,
    /// The `Host` header.
    pub authority: String,
    pub load_balancing: LoadBalancing,
    pub endpoints: Vec<ResolvedEndpoint>,
    pub pool: PoolSettings,
    pub passive: PassiveHealth,
    pub active: Option<ActiveHealth>,
}

/// One endpoint of a [`ResolvedBackend`].
#[derive(Debug)]
pub struct ResolvedEndpoint {
    /// `None` when the host did not resolve: never picked.
    pub addr: Option<SocketAddr>,
    pub weight: u32,
    /// As written (`host:port`), for logs and status.
    pub name: String,
    /// The active health checks' verdict; `true` without checks.
    healthy: AtomicBool,
    /// Workers whose circuit breaker has this endpoint ejected: written only when a circuit opens
    /// or closes (rare), read for the status report.
    ejected_workers: AtomicU32,
}

impl ResolvedEndpoint {
    pub fn new(addr: Option<SocketAddr>, weight: u32, name: String) -> Self {
        Self { addr, weight, name, healthy: AtomicBool::new(true), ejected_workers: AtomicU32::new(0) }
    }

    /// Whether active checks (if any) pass. Relaxed: a verdict a moment late is harmless.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Workers that have this endpoint ejected (passive health).
    pub fn ejected_workers(&self) -> u32 {
        self.ejected_workers.load(Ordering::Relaxed)
    }

    /// A worker's circuit for this endpoint opened (`true`) or closed (`false`).
    pub(crate) fn count_ejection(&self, ejected: bool) {
        if ejected {
            self.ejected_workers.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self.ejected_workers.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Written by the health thread, and when a reload carries a verdict over.
    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }
}

impl ResolvedBackend {
    /// Resolves a named backend's hosts. Blocks on DNS: snapshot-build thread only.
    pub fn named(backend: &Backend) -> Self {
        let endpoints = backend
            .endpoints
            .iter()
            .map(|endpoint| {
                let name = format!("{}:{}", endpoint.host, endpoint.port);
                let addr = resolve(&endpoint.host, endpoint.port, &backend.id);
                ResolvedEndpoint::new(addr, endpoint.weight, name)
            })
            .collect();
        Self {
            id: backend.id.clone(),
            base_path: backend.base_path.clone(),
            authority: backend.authority.clone(),
            load_balancing: backend.load_balancing,
            endpoints,
            pool: backend.pool,
            passive: backend.passive_health,
            active: backend.active_health.clone(),
        }
    }

    /// An API's `backend-url` as a backend of one endpoint without health checks; `None` when it
    /// cannot be used (unresolvable host, or https which this build does not speak yet).
    pub fn from_url(api: &str, url: &BackendUrl) -> Option<Self> {
        if url.scheme == Scheme::Https {
            tracing::warn!(api, host = %url.host, "https backends are not supported yet; requests to this API get 502");
            return None;
        }
        let addr = resolve(&url.host, url.port, api)?;
        Some(Self {
            id: String::new(),
            base_path: url.base_path.clone(),
            authority: url.authority.clone(),
            load_balancing: LoadBalancing::RoundRobin,
            endpoints: vec![ResolvedEndpoint::new(Some(addr), 1, url.authority.clone())],
            pool: PoolSettings::default(),
            passive: PassiveHealth::OFF,
            active: None,
        })
    }
}

fn resolve(host: &str, port: u16, owner: &str) -> Option<SocketAddr> {
    match (host, port).to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => Some(addr),
        Ok(None) => {
            tracing::warn!(owner, host, "backend host has no address; it gets no requests");
            None
        }
        Err(error) => {
            tracing::warn!(owner, host, %error, "backend host does not resolve; it gets no requests");
            None
        }
    }
}
