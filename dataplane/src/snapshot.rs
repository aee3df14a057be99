//! The in-memory form of a snapshot (built once, off the hot path) and the cell that publishes it to workers.

pub mod resolved;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::AHashMap;
use arc_swap::ArcSwapOption;
use portcullis_contract::model::{Config, Policies};
use portcullis_contract::stats::StatsRegion;

use crate::policy::{LoadError, Programs};
use crate::router::Router;
use crate::router::operation::Operations;
use crate::tls::TlsConfigError;
use resolved::ResolvedBackend;

/// One configuration generation, ready for the hot path: nothing in it is parsed per request.
#[derive(Debug)]
pub struct Snapshot {
    /// The generation control gave it.
    pub generation: u64,
    /// The validated config.
    pub config: Config,
    /// Path → API.
    pub router: Router,
    /// The backends requests go to: first the named ones (same index as `config.backends`), then
    /// one single-endpoint backend per API with a usable `backend-url`. Endpoint hosts resolved.
    pub upstreams: Vec<ResolvedBackend>,
    /// Per API (same index as `config.apis`): its entry in `upstreams`, or `None` when its
    /// backend cannot be used (unresolvable host, or an https host that is no valid server
    /// name): its requests are answered 502.
    pub api_upstreams: Vec<Option<u32>>,
    /// Per API (same index as `config.apis`): its operations, ready for matching.
    pub operations: Vec<Operations>,
    /// The policy programs, verified again and with their regexes compiled.
    pub programs: Programs,
    /// Hosts of literal `set-backend-service base-url`s, resolved here so that no worker ever
    /// waits on DNS.
    resolved: Vec<(String, u16, SocketAddr)>,
    /// (product, API, operation) → the sections for requests through that product.
    product_policies: AHashMap<(u32, u32, u32), Policies>,
    /// The TLS server configurations new TLS connections get (certificates, client auth).
    pub tls: Arc<crate::tls::ServerTls>,
    /// The TLS client configuration of connections to `https://` backends (a named backend
    /// with its own client certificate has its own: [`ResolvedBackend::tls`]).
    pub backend_tls: crate::tls::BackendTls,
    /// What `validate-client-certificate` judges client certificates against.
    pub client_trust: crate::tls::ClientTrust,
    /// The backend client configuration of each named certificate that has a key (in settings
    /// order, `None` for the others): `authentication-certificate` picks one per request.
    pub named_tls: Vec<Option<crate::tls::BackendTls>>,
    /// The caches the caching policies use: the host's internal cache and the external one.
    pub caches: crate::cache::Caches,
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
        let programs = Programs::load_with_keys(&config.programs, &config.jwt, generation)?;
        if config.programs.iter().any(|program| !program.limits.is_empty()) {
            // The first snapshot with a rate limit or quota allocates their tables, here on the
            // snapshot thread, before any worker can run one.
            crate::proxy::policies::LIMITS.allocate();
        }
        if config.programs.iter().any(|program| !program.token_limits.is_empty()) {
            // Token limits count in the same tables.
            crate::proxy::policies::LIMITS.allocate();
        }
        if config.programs.iter().flat_map(|program| &program.token_limits).any(|limit| limit.estimate_prompt_tokens) {
            // The tokenizers' vocabularies load here (tens of milliseconds), never on a worker.
            crate::llm::tokens::load_tokenizers();
        }
        let tls = crate::tls::server_config(&config.tls)?;
        let backend_tls =
            crate::tls::backend_client_config(&config.tls.backend_cas, config.tls.backend_client.as_ref())?;
        let router = Router::new(&config);
        for &api in router.unroutable() {
            if let Some(api) = config.apis.get(api as usize) {
                tracing::warn!(api = %api.id, path = %api.path, "API path is too deep to route; its requests get 404");
            }
        }
        let (mut upstreams, api_upstreams) = upstreams(&config);
        // Named backends come first, in config order.
        for (resolved, backend) in upstreams.iter_mut().zip(&config.backends) {
            if let Some(identity) = &backend.client_certificate {
                resolved.tls = Some(crate::tls::backend_client_config(&config.tls.backend_cas, Some(identity))?);
            }
        }
        let named_tls = config
            .tls
            .named
            .iter()
            .map(|named| {
                named
                    .identity()
                    .map(|identity| crate::tls::backend_client_config(&config.tls.backend_cas, Some(&identity)))
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let client_trust = crate::tls::ClientTrust::new(generation, &config.tls);
        let operations = config.apis.iter().map(Operations::new).collect();
        let caches = crate::cache::Caches::for_settings(&config.cache);
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
            upstreams,
            api_upstreams,
            operations,
            programs,
            resolved,
            product_policies,
            tls,
            backend_tls,
            client_trust,
            named_tls,
            caches,
        })
    }

    /// The backend client configuration whose identity is `id` (a [`BackendKey`]'s): the
    /// snapshot's, or a named backend's own.
    ///
    /// [`BackendKey`]: crate::upstream::BackendKey
    pub fn backend_tls_config(&self, id: u64) -> Option<&Arc<rustls::ClientConfig>> {
        if id == self.backend_tls.id {
            return Some(&self.backend_tls.config);
        }
        self.upstreams
            .iter()
            .filter_map(|backend| backend.tls.as_ref())
            .chain(self.named_tls.iter().flatten())
            .find(|tls| tls.id == id)
            .map(|tls| &tls.config)
    }

    /// The sections operation `operation` of API `api` runs for a request through `product`.
    pub fn policies(&self, product: Option<u32>, api: u32, operation: u32) -> Option<Policies> {
        if let Some(policies) = product.and_then(|product| self.product_policies.get(&(product, api, operation))) {
            return Some(*policies);
        }
        let api = self.config.apis.get(api as usize)?;
        Some(api.operations.get(operation as usize)?.policies)
    }

    /// Copies the active-health verdicts of `previous` for the endpoints (same backend id and
    /// address, both checked) that this snapshot still has, so a reload does not send traffic
    /// to an endpoint known to fail its checks.
    pub fn keep_active_health(&self, previous: &Snapshot) {
        for backend in self.upstreams.iter().filter(|backend| backend.active.is_some() && !backend.id.is_empty()) {
            let Some(old) = previous.upstreams.iter().find(|old| old.id == backend.id && old.active.is_some()) else {
                continue;
            };
            for endpoint in &backend.endpoints {
                if let Some(same) = old.endpoints.iter().find(|e| e.addr.is_some() && e.addr == endpoint.addr) {
                    endpoint.set_healthy(same.healthy());
                }
            }
        }
    }

    /// The backend an API's requests go to unless a policy chooses another.
    pub fn api_upstream(&self, api: u32) -> Option<u32> {
        self.api_upstreams.get(api as usize).copied().flatten()
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
    let snapshot = Snapshot::build(generation, config)?;
    if let Some(previous) = cell.load() {
        snapshot.keep_active_health(&previous);
    }
    cell.publish(Arc::new(snapshot));
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

/// The named backends, then one backend per API with a usable `backend-url`; and per API, its
/// backend's index.
fn upstreams(config: &Config) -> (Vec<ResolvedBackend>, Vec<Option<u32>>) {
    let mut upstreams: Vec<ResolvedBackend> = config.backends.iter().map(ResolvedBackend::named).collect();
    let mut per_api = Vec::with_capacity(config.apis.len());
    for api in &config.apis {
        let index = match api.backend_id {
            Some(named) => Some(named),
            None => ResolvedBackend::from_url(&api.id, &api.backend).map(|backend| {
                upstreams.push(backend);
                (upstreams.len() - 1) as u32
            }),
        };
        per_api.push(index);
    }
    (upstreams, per_api)
}

/// Where the current snapshot is published; workers read it between requests.
#[derive(Debug, Default)]
pub struct SnapshotCell {
    current: ArcSwapOption<Snapshot>,
    /// Generation of `current` (0: none), checked by workers before they touch the ArcSwap.
    generation: AtomicU64,
    /// Snapshots published since the telemetry thread last looked, so it can name what workers
    /// counted under each generation (even one replaced before it looked). Written by the
    /// publisher, taken by the telemetry thread; never touched by a worker.
    published: std::sync::Mutex<Vec<Arc<Snapshot>>>,
}

/// Published snapshots waiting for the telemetry thread at most (it takes them every 100 ms).
const PUBLISHED_KEPT: usize = 4;

impl SnapshotCell {
    /// An empty cell: requests get 503 until a snapshot is published.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `snapshot` current for every request that starts from now on.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        let generation = snapshot.generation;
        {
            let mut published = self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            published.push(Arc::clone(&snapshot));
            let excess = published.len().saturating_sub(PUBLISHED_KEPT);
            published.drain(..excess);
        }
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

    /// The snapshots published since the last call, oldest first (the telemetry thread's).
    pub fn take_published(&self) -> Vec<Arc<Snapshot>> {
        std::mem::take(&mut *self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use portcullis_contract::model::{Api, BackendUrl, Scheme};

    fn api(host: &str, scheme: Scheme) -> Api {
        Api {
            id: host.into(),
            name: host.into(),
            path: host.replace('.', "-"),
            backend_id: None,
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
            preserve_host: false,
            version_set: None,
            version: String::new(),
            revision: "1".into(),
            revision_of: None,
            online: true,
            description: String::new(),
            revision_description: String::new(),
            operations: vec![portcullis_contract::model::Operation::catch_all(
                portcullis_contract::model::Policies::all(0),
            )],
        }
    }

    #[test]
    fn resolves_backends_and_publishes() {
        let config = Config {
            apis: vec![
                api("127.0.0.1", Scheme::Http),
                api("name.invalid", Scheme::Http),
                api("127.0.0.2", Scheme::Https),
            ],
            ..Config::empty("t")
        };
        let snapshot = Snapshot::build(4, config).unwrap();
        // The https backend is usable: its certificate is verified for its host.
        assert_eq!(snapshot.api_upstreams, [Some(0), None, Some(1)]);
        assert_eq!(
            snapshot.upstreams[1].endpoints[0].tls_name,
            Some(rustls::pki_types::ServerName::try_from("127.0.0.2").unwrap())
        );
        assert_eq!(snapshot.upstreams[0].endpoints[0].addr, Some("127.0.0.1:80".parse().unwrap()));

        let cell = SnapshotCell::new();
        assert_eq!(cell.generation(), 0);
        assert!(cell.load().is_none());
        cell.publish(Arc::new(snapshot));
        assert_eq!(cell.generation(), 4);
        assert_eq!(cell.load().unwrap().generation, 4);
    }

    #[test]
    fn named_backends_come_first_and_keep_their_active_verdicts_across_reloads() {
        use portcullis_contract::model::{ActiveHealth, Backend, Endpoint, LoadBalancing, PassiveHealth, PoolSettings};
        let endpoint = |port| Endpoint { host: "127.0.0.1".into(), port, weight: 1 };
        let backend = |endpoints| Backend {
            id: "pool".into(),
            scheme: Scheme::Http,
            base_path: String::new(),
            authority: "pool".into(),
            load_balancing: LoadBalancing::RoundRobin,
            endpoints,
            pool: PoolSettings::default(),
            passive_health: PassiveHealth::default(),
            active_health: Some(ActiveHealth {
                path: "/h".into(),
                interval_ms: 100,
                timeout_ms: 100,
                healthy_threshold: 1,
                unhealthy_threshold: 1,
                expected_status_min: 200,
                expected_status_max: 299,
            }),
            tls_server_name: None,
            client_certificate: None,
        };
        let config = |endpoints| {
            let mut named = api("127.0.0.3", Scheme::Http);
            named.backend_id = Some(0);
            Config {
                apis: vec![api("127.0.0.1", Scheme::Http), named],
                backends: vec![backend(endpoints)],
                ..Config::empty("t")
            }
        };
        let old = Snapshot::build(1, config(vec![endpoint(1), endpoint(2)])).unwrap();
        assert_eq!(old.api_upstreams, [Some(1), Some(0)]);
        old.upstreams[0].endpoints[1].set_healthy(false);
        let new = Snapshot::build(2, config(vec![endpoint(2), endpoint(3)])).unwrap();
        new.keep_active_health(&old);
        assert!(!new.upstreams[0].endpoints[0].healthy(), "127.0.0.1:2 failed its checks before the reload");
        assert!(new.upstreams[0].endpoints[1].healthy(), "a new endpoint starts healthy");
    }
}
