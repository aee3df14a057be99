//! The in-memory form of a snapshot (built once, off the hot path) and the cell that publishes it to workers.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::AHashMap;
use arc_swap::ArcSwapOption;
use portcullis_contract::model::{Config, Policies, Scheme};
use portcullis_contract::stats::StatsRegion;
use rustls::pki_types::ServerName;

use crate::policy::{LoadError, Programs};
use crate::router::Router;
use crate::router::operation::Operations;
use crate::tls::TlsConfigError;

/// One configuration generation, ready for the hot path: nothing in it is parsed per request.
#[derive(Debug)]
pub struct Snapshot {
    /// The generation control gave it.
    pub generation: u64,
    /// The validated config.
    pub config: Config,
    /// Path → API.
    pub router: Router,
    /// Per API (same index as `config.apis`): the backend address, or `None` when the backend
    /// cannot be used (unresolvable host): its requests are answered 502.
    pub backends: Vec<Option<SocketAddr>>,
    /// Per API (same index as `config.apis`): for an `https://` backend, the name its certificate
    /// is verified against (and sent as SNI); `None` for plain HTTP.
    pub backend_names: Vec<Option<ServerName<'static>>>,
    /// Per API (same index as `config.apis`): its operations, ready for matching.
    pub operations: Vec<Operations>,
    /// The policy programs, verified again and with their regexes compiled.
    pub programs: Programs,
    /// Hosts of literal `set-backend-service base-url`s, resolved here so that no worker ever
    /// waits on DNS.
    resolved: Vec<(String, u16, SocketAddr)>,
    /// (product, API, operation) → the sections for requests through that product.
    product_policies: AHashMap<(u32, u32, u32), Policies>,
    /// The TLS server configuration new TLS connections get (certificates, client auth).
    pub tls: Arc<rustls::ServerConfig>,
    /// The TLS client configuration of connections to `https://` backends.
    pub backend_tls: crate::tls::BackendTls,
}

/// Why a snapshot cannot be built; the current one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("a policy program was refused: {0}")]
    Policy(#[from] LoadError),
    #[error("the TLS settings were refused: {0}")]
    Tls(#[from] TlsConfigError),
}

impl Snapshot {
    /// Builds the in-memory form: routing table, operations, programs and resolved backends.
    /// Resolution blocks (DNS), so this runs on the snapshot-channel or start-up thread, never
    /// on a worker. A program that does not verify or load, or TLS settings rustls refuses,
    /// refuse the whole snapshot.
    pub fn build(generation: u64, config: Config) -> Result<Self, BuildError> {
        let programs = Programs::load(&config.programs)?;
        let tls = crate::tls::server_config(&config.tls)?;
        let backend_tls = crate::tls::backend_client_config(&config.tls)?;
        let router = Router::new(&config);
        for &api in router.unroutable() {
            if let Some(api) = config.apis.get(api as usize) {
                tracing::warn!(api = %api.id, path = %api.path, "API path is too deep to route; its requests get 404");
            }
        }
        let backends = config.apis.iter().map(|api| resolve(&api.id, &api.backend)).collect();
        let backend_names = config.apis.iter().map(|api| server_name(&api.id, &api.backend)).collect();
        let operations = config.apis.iter().map(Operations::new).collect();
        let resolved = resolve_policy_backends(&config.programs);
        let product_policies = config
            .product_policies
            .iter()
            .map(|entry| ((entry.product, entry.api, entry.operation), entry.policies))
            .collect();
        Ok(Self {
            generation,
            config,
            router,
            backends,
            backend_names,
            operations,
            programs,
            resolved,
            product_policies,
            tls,
            backend_tls,
        })
    }

    /// The sections operation `operation` of API `api` runs for a request through `product`.
    pub fn policies(&self, product: Option<u32>, api: u32, operation: u32) -> Option<Policies> {
        if let Some(policies) = product.and_then(|product| self.product_policies.get(&(product, api, operation))) {
            return Some(*policies);
        }
        let api = self.config.apis.get(api as usize)?;
        Some(api.operations.get(operation as usize)?.policies)
    }

    /// The address of `host:port` when a policy names it literally (see [`Self::build`]).
    pub fn resolved_host(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.resolved.iter().find(|(h, p, _)| h.eq_ignore_ascii_case(host) && *p == port).map(|(_, _, addr)| *addr)
    }
}

/// Builds `config` as `generation`, makes it current for every request that starts from now on,
/// and records the generation in the stats header (where `ctl status` reads it). Blocks on DNS:
/// call it from the snapshot-channel or start-up thread, never from a worker. On error nothing
/// changes: the current snapshot keeps serving.
pub fn install(cell: &SnapshotCell, stats: &StatsRegion, generation: u64, config: Config) -> Result<(), BuildError> {
    cell.publish(Arc::new(Snapshot::build(generation, config)?));
    stats.header().generation.store(generation, Ordering::Relaxed);
    Ok(())
}

/// Resolves the hosts of `set-backend-service` URLs given as literals (a constant pushed right
/// before the op); hosts only known at run time must be IP literals.
fn resolve_policy_backends(programs: &[portcullis_contract::program::Program]) -> Vec<(String, u16, SocketAddr)> {
    use portcullis_contract::program::{Const, Op};
    let mut resolved: Vec<(String, u16, SocketAddr)> = Vec::new();
    for program in programs {
        for pair in program.ops.windows(2) {
            let [Op::Const(index), Op::SetBackendUrl] = pair else { continue };
            let Some(Const::Str(url)) = program.consts.get(*index as usize) else { continue };
            let Ok(target) = crate::policy::parse_backend_url(url) else { continue };
            if target.host.parse::<std::net::IpAddr>().is_ok()
                || resolved.iter().any(|(h, p, _)| *h == target.host && *p == target.port)
            {
                continue;
            }
            match (target.host.as_str(), target.port).to_socket_addrs().map(|mut addrs| addrs.next()) {
                Ok(Some(addr)) => resolved.push((target.host, target.port, addr)),
                _ => tracing::warn!(url = %url, "set-backend-service host does not resolve; its requests get 502"),
            }
        }
    }
    resolved
}

/// The name an `https://` backend's certificate must carry: its host (a DNS name or an IP).
fn server_name(api: &str, backend: &portcullis_contract::model::BackendUrl) -> Option<ServerName<'static>> {
    if backend.scheme != Scheme::Https {
        return None;
    }
    let host = backend.host.trim_start_matches('[').trim_end_matches(']');
    match ServerName::try_from(host.to_owned()) {
        Ok(name) => Some(name),
        Err(error) => {
            tracing::warn!(api, host = %backend.host, %error, "https backend host is not a valid server name");
            None
        }
    }
}

fn resolve(api: &str, backend: &portcullis_contract::model::BackendUrl) -> Option<SocketAddr> {
    match (backend.host.as_str(), backend.port).to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => Some(addr),
        Ok(None) => {
            tracing::warn!(api, host = %backend.host, "backend host has no address; requests to this API get 502");
            None
        }
        Err(error) => {
            tracing::warn!(api, host = %backend.host, %error, "backend host does not resolve; requests to this API get 502");
            None
        }
    }
}

/// Where the current snapshot is published; workers read it between requests.
#[derive(Debug, Default)]
pub struct SnapshotCell {
    current: ArcSwapOption<Snapshot>,
    /// Generation of `current` (0: none), checked by workers before they touch the ArcSwap.
    generation: AtomicU64,
}

impl SnapshotCell {
    /// An empty cell: requests get 503 until a snapshot is published.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `snapshot` current for every request that starts from now on.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        let generation = snapshot.generation;
        self.current.store(Some(snapshot));
        self.generation.store(generation, Ordering::Release);
    }

    /// Generation published last (0: none).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot.
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_contract::key_index::KeyIndex;
    use portcullis_contract::model::{Api, BackendUrl, Limits};

    fn api(host: &str, scheme: Scheme) -> Api {
        Api {
            id: host.into(),
            name: host.into(),
            path: host.replace('.', "-"),
            backend: BackendUrl {
                scheme,
                host: host.into(),
                port: 80,
                base_path: String::new(),
                authority: host.into(),
            },
            subscription_required: false,
            subscription_key_header: String::new(),
            subscription_key_query: String::new(),
            version: String::new(),
            revision: "1".into(),
            operations: vec![portcullis_contract::model::Operation::catch_all(
                portcullis_contract::model::Policies::all(0),
            )],
        }
    }

    #[test]
    fn resolves_backends_and_publishes() {
        let config = Config {
            source: "t".into(),
            apis: vec![
                api("127.0.0.1", Scheme::Http),
                api("name.invalid", Scheme::Http),
                api("127.0.0.2", Scheme::Https),
            ],
            subscriptions: Vec::new(),
            key_index: KeyIndex::default(),
            limits: Limits::default(),
            programs: vec![portcullis_contract::program::Program::empty()],
            deployment: Default::default(),
            products: Vec::new(),
            product_policies: Vec::new(),
            xdp: Default::default(),
            tls: Default::default(),
        };
        let snapshot = Snapshot::build(4, config).unwrap();
        assert_eq!(snapshot.backends[0], Some("127.0.0.1:80".parse().unwrap()));
        assert_eq!(snapshot.backends[1], None);
        assert_eq!(snapshot.backends[2], Some("127.0.0.2:80".parse().unwrap()));
        assert_eq!(snapshot.backend_names[0], None);
        assert_eq!(snapshot.backend_names[2], Some(ServerName::try_from("127.0.0.2").unwrap()));

        let cell = SnapshotCell::new();
        assert_eq!(cell.generation(), 0);
        assert!(cell.load().is_none());
        cell.publish(Arc::new(snapshot));
        assert_eq!(cell.generation(), 4);
        assert_eq!(cell.load().unwrap().generation, 4);
    }
}
