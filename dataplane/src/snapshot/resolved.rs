//! Backends as the hot path uses them: endpoint addresses resolved when the snapshot is built,
//! and the active-health verdict of each endpoint, written by the health thread and read by
//! every worker with one relaxed atomic load.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use portcullis_contract::model::{
    ActiveHealth, Backend, BackendUrl, LoadBalancing, PassiveHealth, PoolSettings, Scheme,
};
use rustls::pki_types::ServerName;

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
    /// This backend's own TLS client configuration (its `tls-client-cert-file`); the snapshot's
    /// when `None`. Set by [`crate::snapshot::Snapshot::build`], which has the backend CAs.
    pub tls: Option<crate::tls::BackendTls>,
}

/// One endpoint of a [`ResolvedBackend`].
#[derive(Debug)]
pub struct ResolvedEndpoint {
    /// `None` when the host did not resolve: never picked.
    pub addr: Option<SocketAddr>,
    pub weight: u32,
    /// As written (`host:port`), for logs and status.
    pub name: String,
    /// `https` backends: the name this endpoint's certificate is verified against (and sent as
    /// SNI); `None` for plain HTTP.
    pub tls_name: Option<ServerName<'static>>,
    /// The active health checks' verdict; `true` without checks.
    healthy: AtomicBool,
    /// Workers whose circuit breaker has this endpoint ejected: written only when a circuit opens
    /// or closes (rare), read for the status report.
    ejected_workers: AtomicU32,
}

impl ResolvedEndpoint {
    pub fn new(addr: Option<SocketAddr>, weight: u32, name: String, tls_name: Option<ServerName<'static>>) -> Self {
        Self { addr, weight, name, tls_name, healthy: AtomicBool::new(true), ejected_workers: AtomicU32::new(0) }
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
                // An https endpoint whose name is no valid server name gets no requests, as one
                // whose host does not resolve.
                let (addr, tls_name) = match backend.scheme {
                    Scheme::Http => (resolve(&endpoint.host, endpoint.port, &backend.id), None),
                    Scheme::Https => {
                        let host = backend.tls_server_name.as_deref().unwrap_or(&endpoint.host);
                        match server_name(&backend.id, host) {
                            Some(tls_name) => (resolve(&endpoint.host, endpoint.port, &backend.id), Some(tls_name)),
                            None => (None, None),
                        }
                    }
                };
                ResolvedEndpoint::new(addr, endpoint.weight, name, tls_name)
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
            tls: None,
        }
    }

    /// An API's `backend-url` as a backend of one endpoint without health checks; `None` when it
    /// cannot be used (unresolvable host, or an https host that is no valid server name).
    pub fn from_url(api: &str, url: &BackendUrl) -> Option<Self> {
        let tls_name = match url.scheme {
            Scheme::Http => None,
            Scheme::Https => Some(server_name(api, &url.host)?),
        };
        let addr = resolve(&url.host, url.port, api)?;
        Some(Self {
            id: String::new(),
            base_path: url.base_path.clone(),
            authority: url.authority.clone(),
            load_balancing: LoadBalancing::RoundRobin,
            endpoints: vec![ResolvedEndpoint::new(Some(addr), 1, url.authority.clone(), tls_name)],
            pool: PoolSettings::default(),
            passive: PassiveHealth::OFF,
            active: None,
            tls: None,
        })
    }
}

/// The name an `https://` backend's certificate must carry: its host (a DNS name or an IP).
fn server_name(owner: &str, host: &str) -> Option<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match ServerName::try_from(host.to_owned()) {
        Ok(name) => Some(name),
        Err(error) => {
            tracing::warn!(owner, host, %error, "https backend host is not a valid server name; it gets no requests");
            None
        }
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
