//! Where a request goes: the backend a `forward-request` targets (the API's, or
//! `set-backend-service`'s), the address of a host known only per request, where a followed
//! redirect goes, and opening a backend connection (plain or TLS). The exchange on that connection
//! is [`super::exchange`]'s.

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_contract::model::{Limits, PoolSettings};
use portcullis_contract::stats::WorkerSlot;
use rustls::pki_types::ServerName;

use crate::http::redirect;
use crate::io::Stream;
use crate::io::maybe_tls::MaybeTls;
use crate::io::tls::TlsStream;
use crate::proxy::ProxyError;
use crate::snapshot::Snapshot;
use crate::upstream::{self, BackendKey, ConnectError, Dest};
use crate::worker::ctx::WorkerCtx;

/// Endpoints tried after the first one when connecting fails, for requests that may be sent again
/// (idempotent, body all buffered): bounded so that a dead backend costs a client at most three
/// connect attempts, not one per endpoint (nginx's `proxy_next_upstream_tries` idea).
pub(crate) const CONNECT_RETRY_ENDPOINTS_MAX: usize = 2;

/// Methods RFC 9110 calls idempotent: sending them twice has the effect of sending them once.
pub(super) fn is_idempotent(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE")
}

/// Where a request goes and what its forwarded head says about the backend.
pub(super) struct Target<'s> {
    pub(super) kind: TargetKind,
    pub(super) base_path: &'s str,
    pub(super) authority: &'s str,
}

#[derive(Debug, Clone)]
pub(super) enum TargetKind {
    /// A backend of [`Snapshot::upstreams`]: an endpoint is picked per attempt.
    Upstream(u32),
    /// `set-backend-service base-url`: one address (over TLS for `https://`).
    Address(BackendKey),
}

/// Where the backend request goes: the named backend of `set-backend-service backend-id`, or its
/// `base-url` (an IP literal, a host resolved when the snapshot was loaded, or else one the worker
/// resolves and caches; its base path and `Host` are written by the policy head writer), else the
/// API's backend.
pub(super) async fn target<'s, S>(
    worker: &WorkerCtx<S>,
    snapshot: &'s Snapshot,
    api: &'s portcullis_contract::model::Api,
    api_index: u32,
    policy: &crate::policy::RequestState,
) -> Result<Target<'s>, ProxyError> {
    let upstream = |index: u32| {
        let backend = snapshot.upstreams.get(index as usize).ok_or(ProxyError::BackendUnavailable)?;
        Ok(Target { kind: TargetKind::Upstream(index), base_path: &backend.base_path, authority: &backend.authority })
    };
    if let Some(id) = policy.backend_id() {
        let index = snapshot.config.backend_index(id).ok_or_else(|| ProxyError::UnknownBackend(id.to_owned()))?;
        return upstream(index);
    }
    let Some(target) = policy.backend_override() else {
        return upstream(snapshot.api_upstream(api_index).ok_or(ProxyError::BackendUnavailable)?);
    };
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let addr = host_address(worker, snapshot, host, target.port).await?;
    let tls = match target.scheme {
        portcullis_contract::model::Scheme::Http => None,
        portcullis_contract::model::Scheme::Https => Some((
            ServerName::try_from(host.to_owned()).map_err(|_| ProxyError::BackendUnavailable)?,
            snapshot.backend_tls.id,
        )),
    };
    let kind = TargetKind::Address(BackendKey { addr, tls });
    Ok(Target { kind, base_path: &api.backend.base_path, authority: &api.backend.authority })
}

/// Opens a fresh backend connection, counting it; for an `https://` backend, completes the TLS
/// handshake (within the connect timeout) with the snapshot's backend client configuration.
pub(super) async fn connect<S: Stream>(
    worker: &WorkerCtx<S>,
    key: &BackendKey,
    limits: &Limits,
    snapshot: Option<&crate::snapshot::Snapshot>,
) -> Result<MaybeTls<S>, ProxyError> {
    WorkerSlot::add(&worker.slot().backend_connects, 1);
    let limit = Duration::from_millis(u64::from(limits.backend_connect_timeout_ms));
    let plain: S = upstream::connect(key.addr, limit).await?;
    let (Some((name, identity)), Some(snapshot)) = (&key.tls, snapshot) else {
        return Ok(MaybeTls::Plain(plain));
    };
    // The key came from this snapshot, so its identity is one of the snapshot's.
    let config = std::sync::Arc::clone(snapshot.backend_tls_config(*identity).ok_or(ProxyError::BackendUnavailable)?);
    match tokio::time::timeout(limit, TlsStream::open(plain, config, name.clone())).await {
        Ok(Ok(stream)) => Ok(MaybeTls::Tls(Box::new(stream))),
        Ok(Err(error)) => Err(ProxyError::Connect(ConnectError::Tls(error))),
        Err(_) => Err(ProxyError::Connect(ConnectError::TimedOut)),
    }
}

/// The address of a backend `host` (bare, no brackets) known only per request: an IP literal as is,
/// a name the snapshot resolved when it loaded, else one the worker resolves and caches.
pub(super) async fn host_address<S>(
    worker: &WorkerCtx<S>,
    snapshot: &Snapshot,
    host: &str,
    port: u16,
) -> Result<SocketAddr, ProxyError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    match snapshot.resolved_host(host, port) {
        Some(addr) => Ok(addr),
        None => Ok(SocketAddr::new(worker.dns.resolve(host).await.map_err(ConnectError::from)?, port)),
    }
}

/// Where a followed redirect goes: the endpoint that answered when it stays on the same origin,
/// else the address its URL names (an IP literal, a host the snapshot resolved when it was loaded,
/// or one the worker resolves and caches), over TLS for `https`. `None`: the URL names no host a
/// request can go to (the redirect is relayed as it is); a name that does not resolve fails the
/// request as a connect failure would.
pub(super) async fn redirect_dest<S>(
    worker: &WorkerCtx<S>,
    snapshot: &Snapshot,
    url: &redirect::Url,
    current: &redirect::Url,
    answered: &Dest,
) -> Result<Option<Dest>, ProxyError> {
    if url.same_origin(current) {
        return Ok(Some(answered.clone()));
    }
    let host = url.bare_host();
    let tls = match url.scheme {
        redirect::Scheme::Http => None,
        redirect::Scheme::Https => match ServerName::try_from(host.to_owned()) {
            Ok(name) => Some((name, snapshot.backend_tls.id)),
            Err(_) => return Ok(None),
        },
    };
    let addr = host_address(worker, snapshot, host, url.port).await?;
    Ok(Some(Dest { key: BackendKey { addr, tls }, pool: PoolSettings::default() }))
}
