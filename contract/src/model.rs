//! The configuration as the data plane sees it: resolved, validated and indexed by control.
//!
//! Everything here is plain data. Control builds it from the config directory (which may grow
//! products, operations, version sets, revisions, backends and policies without changing the
//! parts below); the data plane builds its routing structures from it once per snapshot.
//! Any change to these types is a change of [`crate::snapshot::FORMAT_VERSION`].

use serde::{Deserialize, Serialize};

use crate::key_index::KeyIndex;
use crate::program::{Program, Section};

/// Header that carries the subscription key unless an API names another one (APIM's default).
pub const DEFAULT_SUBSCRIPTION_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";
/// Query parameter read for the key when the header is absent (APIM's default).
pub const DEFAULT_SUBSCRIPTION_KEY_QUERY: &str = "subscription-key";

/// One complete, immutable configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Where this configuration came from (the config directory), for status output.
    pub source: String,
    pub apis: Vec<Api>,
    pub subscriptions: Vec<Subscription>,
    /// Every key of every subscription, hashed; see [`KeyIndex`].
    pub key_index: KeyIndex,
    pub limits: Limits,
    /// Compiled policy sections, shared by the operations whose merged sections are identical;
    /// referenced by [`Policies`]. Every program passed [`crate::program::verify`].
    pub programs: Vec<Program>,
    /// Gateway identity as policies read it (`context.Deployment`).
    pub deployment: Deployment,
    /// Kernel-plane rules (XDP maps) and the per-IP request limit that feeds them.
    pub xdp: crate::xdp::XdpRules,
    pub products: Vec<Product>,
    /// The sections operations run when the request comes through a product that has policies of
    /// its own (APIM applies product-scope policies only then).
    pub product_policies: Vec<ProductPolicies>,
    /// Named backends (`backends/<backend-id>.toml`), referenced by [`Api::backend_id`] and by
    /// `set-backend-service backend-id` (by id, at run time).
    pub backends: Vec<Backend>,
    /// TLS termination: certificates and keys (DER) and client authentication.
    pub tls: crate::tls::TlsSettings,
    /// `[cache]`: the response and value caches (docs/cache.md).
    pub cache: CacheSettings,
    /// `[jwt]`, and the keys control fetched for the `<openid-config url>`s of the programs.
    pub jwt: crate::jwt::JwtSettings,
    /// Users (`context.User`): the owners of subscriptions, referenced by [`Subscription::owner`].
    pub users: Vec<User>,
    /// Groups, built-in and custom (`context.User.Groups`, `context.Product.Groups`), referenced
    /// by [`User::groups`] and [`Product::groups`].
    pub groups: Vec<Group>,
    /// Version sets (`version-sets/<id>.toml`), referenced by [`Api::version_set`].
    pub version_sets: Vec<VersionSet>,
    /// `[access-log]`, `[metrics]`, `[tracing]` and `[analytics]` (docs/observability.md).
    pub observability: crate::telemetry::ObservabilitySettings,
    /// `[managed-identity]`: where `authentication-managed-identity` gets its tokens.
    pub identity: crate::identity::IdentitySettings,
}

/// A version set: the versions of one API, each an [`Api`] of its own, told apart by one scheme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSet {
    /// Stable identifier (the file name without `.toml`).
    pub id: String,
    pub name: String,
    pub scheme: VersioningScheme,
    pub description: String,
}

/// Where a request names the version it wants (APIM's `versioningScheme`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersioningScheme {
    /// The path segment after the API path: `/{path}/{version}/...`.
    Segment,
    /// A query parameter of this name (`?api-version=v1`).
    Query(String),
    /// A request header of this name (`Api-Version: v1`).
    Header(String),
}

/// Query parameter of a query-versioned set unless it names another one (APIM's default).
pub const DEFAULT_VERSION_QUERY: &str = "api-version";
/// Header of a header-versioned set unless it names another one (APIM's default).
pub const DEFAULT_VERSION_HEADER: &str = "Api-Version";
/// Characters of a version identifier at most (APIM's `apiVersion`).
pub const VERSION_CHARS_MAX: usize = 100;
/// Digits of a revision number at most (APIM's `apiRevision` is 1 to 100 characters).
pub const REVISION_DIGITS_MAX: usize = 100;
/// What a request appends to the API path to ask for a revision (`/customers;rev=3/leads`).
pub const REVISION_MARKER: &str = ";rev=";

/// A version identifier: 1 to [`VERSION_CHARS_MAX`] URL-unreserved characters (letters, digits,
/// `-._~`), so it reads the same in a path segment, a query string and a header.
pub fn is_valid_version(version: &str) -> bool {
    (1..=VERSION_CHARS_MAX).contains(&version.len())
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// A revision number: 1 to [`REVISION_DIGITS_MAX`] digits without a leading zero, so one
/// revision has one spelling in URLs (`;rev=3`, never `;rev=03`).
pub fn is_valid_revision(revision: &str) -> bool {
    (1..=REVISION_DIGITS_MAX).contains(&revision.len())
        && revision.bytes().all(|b| b.is_ascii_digit())
        && !revision.starts_with('0')
}

/// `[cache]` in `gateway.toml`: the internal cache's bounds and the external cache. `Debug`
/// leaves out the password a `redis-url` may carry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSettings {
    /// Bytes the internal cache holds at most (keys, heads, bodies and values); least useful
    /// entries are evicted past it (TinyLFU admission, docs/cache.md).
    pub internal_bytes_max: u64,
    /// The largest response `cache-store` keeps: a larger one streams to the client unstored.
    pub entry_bytes_max: u64,
    /// The external cache (`redis://host:port[/db]`); `None`: `caching-type="external"` misses.
    pub redis_url: Option<String>,
}

/// 64 MiB for the internal cache: thousands of typical API responses, a small share of a host.
pub const CACHE_INTERNAL_SIZE_MB_DEFAULT: u64 = 64;
/// 1 MiB per cached response, as nginx's `proxy_cache` keeps them whole: larger responses are
/// rarely worth a cache slot and would evict many small ones.
pub const CACHE_ENTRY_SIZE_KB_DEFAULT: u64 = 1024;

impl std::fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSettings")
            .field("internal_bytes_max", &self.internal_bytes_max)
            .field("entry_bytes_max", &self.entry_bytes_max)
            .field("redis_url", &self.redis_url.as_deref().map(redacted_url))
            .finish()
    }
}

/// `url` with the user information (`user:password@`) replaced by `***@`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            internal_bytes_max: CACHE_INTERNAL_SIZE_MB_DEFAULT * 1024 * 1024,
            entry_bytes_max: CACHE_ENTRY_SIZE_KB_DEFAULT * 1024,
            redis_url: None,
        }
    }
}

/// A product: APIs offered together, which subscriptions can be scoped to (`context.Product`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Stable identifier (the product's directory name).
    pub id: String,
    pub name: String,
    /// Indices into [`Config::apis`]: every revision of each API the product lists.
    pub apis: Vec<u32>,
    /// `false`: an open product; requests without a key to its APIs come through it.
    pub subscription_required: bool,
    /// `context.Product.State` is `Published` (else `NotPublished`).
    pub published: bool,
    /// `context.Product.ApprovalRequired`: new subscriptions wait for an administrator.
    pub approval_required: bool,
    /// `context.Product.SubscriptionLimit`: subscriptions per user; `None` is unlimited.
    pub subscriptions_limit: Option<u32>,
    /// The groups that see the product in the portal (`context.Product.Groups`): indices into
    /// [`Config::groups`].
    pub groups: Vec<u32>,
}

/// A user: a developer (or the built-in administrator) who owns subscriptions (`context.User`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable identifier (the file name; `1` for the built-in administrator).
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub note: Option<String>,
    /// `context.User.RegistrationDate`, in milliseconds since the Unix epoch.
    pub registration_unix_ms: Option<i64>,
    /// Only an active user's keys open anything (APIM: a blocked account cannot call APIs).
    pub state: UserState,
    /// The user's groups, indices into [`Config::groups`] (`developers` for every registered user).
    pub groups: Vec<u32>,
}

/// User states as APIM names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserState {
    Active,
    Blocked,
    Pending,
    Deleted,
}

/// A group of users (`IGroup`): the built-in `administrators`, `developers` and `guests`, and
/// custom ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    /// Display name (`context.User.Groups[i].Name`).
    pub name: String,
}

/// The sections operation `operation` of API `api` runs for requests through `product`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductPolicies {
    pub product: u32,
    pub api: u32,
    pub operation: u32,
    pub policies: Policies,
}

/// `context.Deployment`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub gateway_id: String,
    pub region: String,
    pub service_name: String,
}

/// The four compiled sections of one operation: indices into [`Config::programs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    pub inbound: u32,
    pub backend: u32,
    pub outbound: u32,
    pub on_error: u32,
}

impl Policies {
    /// Every section runs program `index`.
    pub fn all(index: u32) -> Self {
        Self { inbound: index, backend: index, outbound: index, on_error: index }
    }

    pub fn program(&self, section: Section) -> u32 {
        match section {
            Section::Inbound => self.inbound,
            Section::Backend => self.backend,
            Section::Outbound => self.outbound,
            Section::OnError => self.on_error,
        }
    }
}

/// Method and URL template of the operation an API without operations gets.
pub const CATCH_ALL_METHOD: &str = "*";
pub const CATCH_ALL_TEMPLATE: &str = "/*";

/// An operation of an API: a method and a URL template below the API path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Stable identifier (`context.Operation.Id`): the operation file's name.
    pub id: String,
    /// Display name (`context.Operation.Name`).
    pub name: String,
    /// Upper-case method, or `*` for any method.
    pub method: String,
    /// Template below the API path, e.g. `/users/{id}`; `/*` matches any path
    /// (`context.Operation.UrlTemplate`).
    pub url_template: String,
    pub policies: Policies,
}

impl Operation {
    /// The operation of an API written without operations: any method, any path.
    pub fn catch_all(policies: Policies) -> Self {
        Self {
            id: "all".to_owned(),
            name: "All operations".to_owned(),
            method: CATCH_ALL_METHOD.to_owned(),
            url_template: CATCH_ALL_TEMPLATE.to_owned(),
            policies,
        }
    }
}

/// An API: a path prefix on the gateway, a backend, and who may call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Api {
    /// Stable identifier (the API's directory name in the config).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Path prefix without leading or trailing slash; empty for an API mounted at the root.
    /// Matched on whole segments: `echo` matches `/echo` and `/echo/x`, not `/echoes`.
    pub path: String,
    /// The service URL (`context.Api.ServiceUrl`), and where requests go when `backend_id` is
    /// `None`. For an API on a named backend: the backend's scheme, first endpoint, base path
    /// and `Host`.
    pub backend: BackendUrl,
    /// The named backend (index into [`Config::backends`]) that serves this API, if any.
    pub backend_id: Option<u32>,
    pub subscription_required: bool,
    /// Header that carries the key for this API.
    pub subscription_key_header: String,
    /// Query parameter that carries the key when the header is absent.
    pub subscription_key_query: String,
    /// Send the client's `Host` (the host it asked for) to the backend instead of the backend's
    /// own authority (Kong's `preserve_host`).
    pub preserve_host: bool,
    /// The version set this API is a version of (index into [`Config::version_sets`]).
    pub version_set: Option<u32>,
    /// `context.Api.Version`: empty when the API is not versioned, and for the `Original`
    /// version of a set (which answers when a request names no version).
    pub version: String,
    /// `context.Api.Revision`: this revision's number ([`is_valid_revision`]).
    pub revision: String,
    /// `None` for the current revision (`context.Api.IsCurrentRevision`), which answers URLs
    /// without `;rev=`. For another revision: the index into [`Config::apis`] of the current
    /// one, with the same id, path, version set and version.
    pub revision_of: Option<u32>,
    /// `false`: an offline revision, which answers 404 even with `;rev=` (always `true` for the
    /// current revision).
    pub online: bool,
    pub description: String,
    pub revision_description: String,
    /// The API's operations. An API written without operations gets one catch-all operation
    /// (`*` on `/*`), so every routed request matches exactly one operation.
    pub operations: Vec<Operation>,
}

/// Where an API's requests go: the backend's base URL, split once by control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendUrl {
    pub scheme: Scheme,
    /// Host name or IP literal, as written in the URL (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Base path without trailing slash (`""` or `/v1`); the request path after the API
    /// prefix is appended to it.
    pub base_path: String,
    /// The `Host` header value sent to the backend (`host` or `host:port` when not default).
    pub authority: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheme {
    Http,
    Https,
}

/// Endpoints of one named backend at most: selection scans them per request.
pub const ENDPOINTS_PER_BACKEND_MAX: usize = 256;
/// An endpoint's weight at most: keeps smooth weighted round robin's sums far from overflow.
pub const ENDPOINT_WEIGHT_MAX: u32 = 10_000;
/// Idle connections kept per endpoint and worker unless the backend says otherwise: enough for
/// bursts, bounded so a quiet worker does not hold hundreds of backend sockets.
pub const POOL_IDLE_PER_ENDPOINT_DEFAULT: u32 = 64;
/// Idle connections per endpoint and worker at most: as many as a worker may have clients
/// (`CONNECTIONS_PER_WORKER_MAX_DEFAULT`), so a pool can match a busy worker's concurrency (as
/// nginx's `keepalive N` can); the open-file limit is the real bound.
pub const POOL_IDLE_PER_ENDPOINT_MAX: u32 = 16_384;
/// An idle connection older than this is closed rather than reused: below the 5 s keep-alive
/// timeout of common backends (Node.js, many load balancers), so we rarely race their close.
pub const POOL_IDLE_TIMEOUT_MS_DEFAULT: u32 = 4_000;
/// Consecutive transport failures that eject an endpoint, unless the backend says otherwise
/// (Envoy's outlier detection defaults to 5 consecutive errors).
pub const PASSIVE_CONSECUTIVE_FAILURES_DEFAULT: u32 = 5;
/// How long an ejected endpoint gets no traffic before one probe request (Envoy: 30 s base).
pub const PASSIVE_EJECTION_MS_DEFAULT: u32 = 30_000;

/// A named backend: a pool of endpoints behind one load-balancing algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Stable identifier (the file name without `.toml`).
    pub id: String,
    pub scheme: Scheme,
    /// Base path without trailing slash (`""` or `/v1`), as in [`BackendUrl::base_path`].
    pub base_path: String,
    /// The `Host` header sent to every endpoint.
    pub authority: String,
    pub load_balancing: LoadBalancing,
    /// At least one, at most [`ENDPOINTS_PER_BACKEND_MAX`].
    pub endpoints: Vec<Endpoint>,
    pub pool: PoolSettings,
    pub passive_health: PassiveHealth,
    pub active_health: Option<ActiveHealth>,
    /// `https` backends: the name every endpoint's certificate is verified against and sent as
    /// SNI; each endpoint's own host when `None`.
    pub tls_server_name: Option<String>,
    /// `https` backends: the certificate the gateway presents to this backend's endpoints when
    /// they ask for one (mTLS), instead of `[tls]`'s `backend-client-cert-file`.
    pub client_certificate: Option<crate::tls::TlsCertificate>,
}

/// One server of a named backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Host name or IP literal (IPv6 without brackets); names are resolved by the data plane
    /// when the snapshot is loaded, never on a worker.
    pub host: String,
    pub port: u16,
    /// 1 to [`ENDPOINT_WEIGHT_MAX`]; used by [`LoadBalancing::Weighted`].
    pub weight: u32,
}

/// How a worker picks an endpoint for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadBalancing {
    /// Each endpoint in turn.
    RoundRobin,
    /// Smooth weighted round robin (nginx): endpoint `i` gets `weight_i / sum` of the requests,
    /// interleaved rather than in bursts.
    Weighted,
    /// The endpoint with the fewest requests in flight on this worker.
    LeastRequests,
}

/// Keep-alive connections to each endpoint, per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettings {
    pub max_idle_per_endpoint: u32,
    pub idle_timeout_ms: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { max_idle_per_endpoint: POOL_IDLE_PER_ENDPOINT_DEFAULT, idle_timeout_ms: POOL_IDLE_TIMEOUT_MS_DEFAULT }
    }
}

/// Circuit breaking from the requests themselves (per worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassiveHealth {
    /// Consecutive connect or transport failures that eject an endpoint; 0 turns it off.
    pub consecutive_failures: u32,
    /// How long an ejected endpoint gets no requests before one probe is let through.
    pub ejection_ms: u32,
}

impl PassiveHealth {
    /// Never ejects (the single endpoint of a `backend-url` API).
    pub const OFF: Self = Self { consecutive_failures: 0, ejection_ms: PASSIVE_EJECTION_MS_DEFAULT };
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self { consecutive_failures: PASSIVE_CONSECUTIVE_FAILURES_DEFAULT, ejection_ms: PASSIVE_EJECTION_MS_DEFAULT }
    }
}

/// Health checks the data plane sends to every endpoint, whatever the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveHealth {
    /// Request target of the check (`/health`): starts with `/`, visible ASCII.
    pub path: String,
    pub interval_ms: u32,
    /// At most `interval_ms`.
    pub timeout_ms: u32,
    /// Consecutive passed checks that mark an unhealthy endpoint healthy again.
    pub healthy_threshold: u32,
    /// Consecutive failed checks that mark a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Statuses that pass, inclusive.
    pub expected_status_min: u16,
    pub expected_status_max: u16,
}

/// A subscription: a named grant with two keys (primary and secondary) and a state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub name: String,
    pub scope: SubscriptionScope,
    pub state: SubscriptionState,
    /// The user who owns it (`context.User`): an index into [`Config::users`].
    pub owner: Option<u32>,
    /// `context.Subscription.CreatedDate`, `StartDate` and `EndDate`, in milliseconds since the
    /// Unix epoch. Audit only, as in APIM: no date changes what a key opens.
    pub created_unix_ms: Option<i64>,
    pub start_unix_ms: Option<i64>,
    pub end_unix_ms: Option<i64>,
    /// The subscription may ask for request tracing (APIM's `allowTracing`).
    pub allow_tracing: bool,
}

impl Subscription {
    /// A subscription without owner, dates or tracing (the fields a config may leave out).
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        scope: SubscriptionScope,
        state: SubscriptionState,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            scope,
            state,
            owner: None,
            created_unix_ms: None,
            start_unix_ms: None,
            end_unix_ms: None,
            allow_tracing: false,
        }
    }
}

/// Which APIs a subscription's keys open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionScope {
    /// Every API (APIM's all-APIs / built-in all-access subscription).
    AllApis,
    /// One API, all its revisions: the index into [`Config::apis`] of its current revision.
    Api(u32),
    /// The APIs of one product: an index into [`Config::products`].
    Product(u32),
}

/// Subscription states as APIM names them. Only `Active` opens anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionState {
    Active,
    Suspended,
    Submitted,
    Rejected,
    Cancelled,
    Expired,
}

/// Limits the data plane enforces; each has a default named in this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Time allowed to connect to a backend.
    pub backend_connect_timeout_ms: u32,
    /// Time allowed between sending a request and the backend's response head.
    pub backend_response_timeout_ms: u32,
    /// Time a client may take to send a complete request head.
    pub request_header_timeout_ms: u32,
    /// Time an idle keep-alive client connection is kept open.
    pub keepalive_idle_timeout_ms: u32,
    /// Largest request head, request line and headers (431; 414 when the request line alone is larger).
    pub request_head_bytes_max: u32,
    /// Longest request target (414).
    pub request_uri_bytes_max: u32,
    /// Most request headers (431).
    pub request_headers_max: u32,
    /// Largest request body (413): a larger Content-Length is refused before anything is
    /// forwarded; a chunked body that grows past it is cut off.
    pub request_body_bytes_max: u64,
    /// Open client connections per worker; beyond it new connections are closed at once, so a
    /// flood cannot exhaust file descriptors or memory.
    pub connections_per_worker_max: u32,
}

/// A backend that does not accept a connection in 10 s is treated as down.
pub const BACKEND_CONNECT_TIMEOUT_MS_DEFAULT: u32 = 10_000;
/// APIM's `forward-request` default timeout is 300 s.
pub const BACKEND_RESPONSE_TIMEOUT_MS_DEFAULT: u32 = 300_000;
/// Slow-header (slowloris) bound, as nginx's `client_header_timeout` default of 60 s.
pub const REQUEST_HEADER_TIMEOUT_MS_DEFAULT: u32 = 60_000;
/// nginx's `keepalive_timeout` default is 75 s; we keep idle clients for 60 s.
pub const KEEPALIVE_IDLE_TIMEOUT_MS_DEFAULT: u32 = 60_000;
/// 16 KiB: twice nginx's default `large_client_header_buffers` line; real clients stay far below.
pub const REQUEST_HEAD_BYTES_MAX_DEFAULT: u32 = 16 * 1024;
/// The most `request-head-bytes-max` may allow: a head is buffered whole, per connection.
pub const REQUEST_HEAD_BYTES_CEILING: u32 = 64 * 1024;
/// 8 KiB, nginx's default limit for a request line.
pub const REQUEST_URI_BYTES_MAX_DEFAULT: u32 = 8 * 1024;
/// 100 headers: nginx's practical ceiling for real clients.
pub const REQUEST_HEADERS_MAX_DEFAULT: u32 = 100;
/// The most `request-headers-max` may allow: the parser's fixed header array.
pub const REQUEST_HEADERS_CEILING: u32 = 100;
/// 100 MiB: large uploads pass (bodies are streamed, never held), abuse does not.
pub const REQUEST_BODY_BYTES_MAX_DEFAULT: u64 = 100 * 1024 * 1024;
/// 16,384 connections per worker: well under the open-file limit with two fds per proxied request.
pub const CONNECTIONS_PER_WORKER_MAX_DEFAULT: u32 = 16_384;

const _: () = assert!(REQUEST_HEAD_BYTES_MAX_DEFAULT <= REQUEST_HEAD_BYTES_CEILING);
const _: () = assert!(REQUEST_URI_BYTES_MAX_DEFAULT < REQUEST_HEAD_BYTES_MAX_DEFAULT);
const _: () = assert!(REQUEST_HEADERS_MAX_DEFAULT <= REQUEST_HEADERS_CEILING);

impl Default for Limits {
    fn default() -> Self {
        Self {
            backend_connect_timeout_ms: BACKEND_CONNECT_TIMEOUT_MS_DEFAULT,
            backend_response_timeout_ms: BACKEND_RESPONSE_TIMEOUT_MS_DEFAULT,
            request_header_timeout_ms: REQUEST_HEADER_TIMEOUT_MS_DEFAULT,
            keepalive_idle_timeout_ms: KEEPALIVE_IDLE_TIMEOUT_MS_DEFAULT,
            request_head_bytes_max: REQUEST_HEAD_BYTES_MAX_DEFAULT,
            request_uri_bytes_max: REQUEST_URI_BYTES_MAX_DEFAULT,
            request_headers_max: REQUEST_HEADERS_MAX_DEFAULT,
            request_body_bytes_max: REQUEST_BODY_BYTES_MAX_DEFAULT,
            connections_per_worker_max: CONNECTIONS_PER_WORKER_MAX_DEFAULT,
        }
    }
}

/// Facts about a [`Config`] that the data plane relies on without re-checking per request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("subscription {subscription:?} is scoped to API index {api}, but there are only {apis} APIs")]
    ScopeOutOfRange { subscription: String, api: u32, apis: usize },
    #[error("two APIs share the path {path:?} (only versions of one version set may)")]
    DuplicatePath { path: String },
    #[error(
        "API {api:?} has path {path:?}: a path has no leading or trailing slash, no empty segment, no '?', '#' or ';rev='"
    )]
    InvalidPath { api: String, path: String },
    #[error("API {api:?} refers to version set index {version_set}, but there are only {version_sets}")]
    VersionSetOutOfRange { api: String, version_set: u32, version_sets: usize },
    #[error("API {api:?} has version {version:?} or revision {revision:?}, which is not well-formed")]
    InvalidVersioning { api: String, version: String, revision: String },
    #[error("revision {revision:?} of API {api:?} does not match its current revision (index {current})")]
    RevisionMismatch { api: String, revision: String, current: u32 },
    #[error("key index: {0}")]
    KeyIndex(#[from] crate::key_index::KeyIndexError),
    #[error("API {api:?} has no operation")]
    NoOperation { api: String },
    #[error("operation {operation:?} of API {api:?} refers to program {program}, but there are only {programs}")]
    ProgramOutOfRange { api: String, operation: String, program: u32, programs: usize },
    #[error("program {index}: {error}")]
    Program { index: usize, error: crate::program::VerifyError },
    #[error("product {product:?} refers to API index {api}, but there are only {apis} APIs")]
    ProductApiOutOfRange { product: String, api: u32, apis: usize },
    #[error("subscription {subscription:?} is scoped to product index {product}, but there are only {products}")]
    ProductOutOfRange { subscription: String, product: u32, products: usize },
    #[error("product policies {index} refer to a product, API, operation or program that does not exist")]
    ProductPoliciesOutOfRange { index: usize },
    #[error("API {api:?} refers to backend index {backend}, but there are only {backends}")]
    BackendOutOfRange { api: String, backend: u32, backends: usize },
    #[error("backend {backend:?}: {problem}")]
    Backend { backend: String, problem: String },
    #[error("two backends share the id {id:?}")]
    DuplicateBackend { id: String },
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsSettingsError),
    #[error("subscription {subscription:?} is owned by user index {user}, but there are only {users} users")]
    OwnerOutOfRange { subscription: String, user: u32, users: usize },
    #[error("{what} {id:?} is in group index {group}, but there are only {groups} groups")]
    GroupOutOfRange { what: &'static str, id: String, group: u32, groups: usize },
}

impl Config {
    /// A configuration with nothing in it: no APIs, subscriptions, products or backends, default
    /// limits, an empty key index, and one program, the empty one at index 0 (which
    /// `Policies::all(0)` points at). Tests and fixtures start here and set what they need
    /// (`Config { apis, ..Config::empty("test") }`), so a new field is added in one place.
    pub fn empty(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            apis: Vec::new(),
            subscriptions: Vec::new(),
            key_index: KeyIndex::default(),
            limits: Limits::default(),
            programs: vec![Program::empty()],
            deployment: Deployment::default(),
            xdp: crate::xdp::XdpRules::default(),
            products: Vec::new(),
            product_policies: Vec::new(),
            backends: Vec::new(),
            tls: crate::tls::TlsSettings::default(),
            cache: CacheSettings::default(),
            jwt: crate::jwt::JwtSettings::default(),
            users: Vec::new(),
            groups: Vec::new(),
            version_sets: Vec::new(),
            observability: crate::telemetry::ObservabilitySettings::default(),
            identity: crate::identity::IdentitySettings::default(),
        }
    }

    /// Checks every cross-reference. Control calls this before publishing and the data plane
    /// again after decoding: a snapshot that fails it is refused. The checks run in a fixed
    /// order, so a config with several problems always reports the same one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_apis()?;
        for (index, program) in self.programs.iter().enumerate() {
            crate::program::verify(program).map_err(|error| ConfigError::Program { index, error })?;
        }
        self.validate_versions()?;
        self.validate_subscriptions()?;
        self.validate_products()?;
        self.validate_backends()?;
        self.validate_users()?;
        self.key_index.validate(self.subscriptions.len())?;
        self.tls.check()?;
        Ok(())
    }

    /// Each API: a valid path, at least one operation, and programs that exist.
    fn validate_apis(&self) -> Result<(), ConfigError> {
        for api in &self.apis {
            if !is_valid_api_path(&api.path) {
                return Err(ConfigError::InvalidPath { api: api.id.clone(), path: api.path.clone() });
            }
            if api.operations.is_empty() {
                return Err(ConfigError::NoOperation { api: api.id.clone() });
            }
            for operation in &api.operations {
                for section in Section::ALL {
                    let program = operation.policies.program(section);
                    if program as usize >= self.programs.len() {
                        return Err(ConfigError::ProgramOutOfRange {
                            api: api.id.clone(),
                            operation: operation.id.clone(),
                            program,
                            programs: self.programs.len(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Version sets exist; current revisions share a path only as different versions of one set;
    /// every other revision matches its current one and has a number of its own.
    fn validate_versions(&self) -> Result<(), ConfigError> {
        for api in &self.apis {
            if let Some(version_set) = api.version_set.filter(|&set| set as usize >= self.version_sets.len()) {
                return Err(ConfigError::VersionSetOutOfRange {
                    api: api.id.clone(),
                    version_set,
                    version_sets: self.version_sets.len(),
                });
            }
            let version_ok = api.version.is_empty() || (api.version_set.is_some() && is_valid_version(&api.version));
            if !version_ok || !is_valid_revision(&api.revision) {
                return Err(ConfigError::InvalidVersioning {
                    api: api.id.clone(),
                    version: api.version.clone(),
                    revision: api.revision.clone(),
                });
            }
        }
        // (path, version set, version) of the current revisions, sorted: same-path APIs are
        // neighbours, and so are two with the same set and version.
        let mut routes: Vec<(&str, Option<u32>, &str)> = self
            .apis
            .iter()
            .filter(|api| api.revision_of.is_none())
            .map(|api| (api.path.as_str(), api.version_set, api.version.as_str()))
            .collect();
        routes.sort_unstable();
        if let Some(pair) = routes.windows(2).find(|pair| {
            pair[0].0 == pair[1].0 && (pair[0].1.is_none() || pair[0].1 != pair[1].1 || pair[0].2 == pair[1].2)
        }) {
            return Err(ConfigError::DuplicatePath { path: pair[0].0.to_owned() });
        }
        let mut revisions: Vec<(u32, &str)> = Vec::with_capacity(self.apis.len());
        for (index, api) in self.apis.iter().enumerate() {
            let current = api.revision_of.unwrap_or(index as u32);
            let matches = self.apis.get(current as usize).is_some_and(|head| {
                head.revision_of.is_none()
                    && head.id == api.id
                    && head.path == api.path
                    && head.version_set == api.version_set
                    && head.version == api.version
            });
            if !matches || (api.revision_of.is_none() && !api.online) {
                return Err(ConfigError::RevisionMismatch {
                    api: api.id.clone(),
                    revision: api.revision.clone(),
                    current,
                });
            }
            revisions.push((current, api.revision.as_str()));
        }
        revisions.sort_unstable();
        if let Some(pair) = revisions.windows(2).find(|pair| pair[0] == pair[1]) {
            let api = self.apis.get(pair[0].0 as usize).map_or_else(String::new, |api| api.id.clone());
            return Err(ConfigError::RevisionMismatch { api, revision: pair[0].1.to_owned(), current: pair[0].0 });
        }
        Ok(())
    }

    /// Each subscription's scope names an API or product that exists.
    fn validate_subscriptions(&self) -> Result<(), ConfigError> {
        for subscription in &self.subscriptions {
            match subscription.scope {
                SubscriptionScope::Api(api) if api as usize >= self.apis.len() => {
                    return Err(ConfigError::ScopeOutOfRange {
                        subscription: subscription.id.clone(),
                        api,
                        apis: self.apis.len(),
                    });
                }
                SubscriptionScope::Product(product) if product as usize >= self.products.len() => {
                    return Err(ConfigError::ProductOutOfRange {
                        subscription: subscription.id.clone(),
                        product,
                        products: self.products.len(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Products name APIs that exist; product policies name a product, an operation and
    /// programs that exist.
    fn validate_products(&self) -> Result<(), ConfigError> {
        for product in &self.products {
            if let Some(&api) = product.apis.iter().find(|&&api| api as usize >= self.apis.len()) {
                return Err(ConfigError::ProductApiOutOfRange {
                    product: product.id.clone(),
                    api,
                    apis: self.apis.len(),
                });
            }
        }
        for (index, entry) in self.product_policies.iter().enumerate() {
            let operation_exists =
                self.apis.get(entry.api as usize).is_some_and(|api| (entry.operation as usize) < api.operations.len());
            let programs_exist =
                Section::ALL.iter().all(|&section| (entry.policies.program(section) as usize) < self.programs.len());
            if entry.product as usize >= self.products.len() || !operation_exists || !programs_exist {
                return Err(ConfigError::ProductPoliciesOutOfRange { index });
            }
        }
        Ok(())
    }

    /// APIs name backends that exist; each backend is consistent and its id unique.
    fn validate_backends(&self) -> Result<(), ConfigError> {
        for api in &self.apis {
            if let Some(backend) = api.backend_id.filter(|&backend| backend as usize >= self.backends.len()) {
                return Err(ConfigError::BackendOutOfRange {
                    api: api.id.clone(),
                    backend,
                    backends: self.backends.len(),
                });
            }
        }
        let mut ids: Vec<&str> = Vec::with_capacity(self.backends.len());
        for backend in &self.backends {
            backend.validate().map_err(|problem| ConfigError::Backend { backend: backend.id.clone(), problem })?;
            ids.push(&backend.id);
        }
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::DuplicateBackend { id: pair[0].to_owned() });
        }
        Ok(())
    }

    /// Subscriptions are owned by users that exist; users and products are in groups that exist.
    fn validate_users(&self) -> Result<(), ConfigError> {
        for subscription in &self.subscriptions {
            if let Some(user) = subscription.owner.filter(|&user| user as usize >= self.users.len()) {
                return Err(ConfigError::OwnerOutOfRange {
                    subscription: subscription.id.clone(),
                    user,
                    users: self.users.len(),
                });
            }
        }
        let members = self.users.iter().map(|user| ("user", &user.id, &user.groups));
        let products = self.products.iter().map(|product| ("product", &product.id, &product.groups));
        for (what, id, groups) in members.chain(products) {
            if let Some(&group) = groups.iter().find(|&&group| group as usize >= self.groups.len()) {
                return Err(ConfigError::GroupOutOfRange { what, id: id.clone(), group, groups: self.groups.len() });
            }
        }
        Ok(())
    }

    /// The index of the backend named `id`.
    pub fn backend_index(&self, id: &str) -> Option<u32> {
        self.backends.iter().position(|backend| backend.id == id).map(|index| index as u32)
    }
}

impl Backend {
    /// The facts the data plane's selection relies on.
    fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() || self.endpoints.len() > ENDPOINTS_PER_BACKEND_MAX {
            return Err(format!("{} endpoints; a backend has 1 to {ENDPOINTS_PER_BACKEND_MAX}", self.endpoints.len()));
        }
        if self.endpoints.iter().any(|endpoint| endpoint.weight == 0 || endpoint.weight > ENDPOINT_WEIGHT_MAX) {
            return Err(format!("an endpoint weight is 1 to {ENDPOINT_WEIGHT_MAX}"));
        }
        if self.pool.max_idle_per_endpoint > POOL_IDLE_PER_ENDPOINT_MAX || self.pool.idle_timeout_ms == 0 {
            return Err(format!(
                "pool: at most {POOL_IDLE_PER_ENDPOINT_MAX} idle connections per endpoint, idle timeout at least 1 ms"
            ));
        }
        if self.scheme == Scheme::Http && self.tls_server_name.is_some() {
            return Err("a TLS server name on a plain-HTTP backend".to_owned());
        }
        if self.scheme == Scheme::Http && self.client_certificate.is_some() {
            return Err("a TLS client certificate on a plain-HTTP backend".to_owned());
        }
        if self.passive_health.consecutive_failures > 0 && self.passive_health.ejection_ms == 0 {
            return Err("an ejection lasts at least 1 ms".to_owned());
        }
        if let Some(active) = &self.active_health {
            let valid = active.path.starts_with('/')
                && active.path.bytes().all(|b| b.is_ascii_graphic())
                && active.interval_ms > 0
                && active.timeout_ms > 0
                && active.timeout_ms <= active.interval_ms
                && active.healthy_threshold > 0
                && active.unhealthy_threshold > 0
                && active.expected_status_min <= active.expected_status_max;
            if !valid {
                return Err("active health check settings out of range".to_owned());
            }
        }
        Ok(())
    }
}

/// An API path: segments of visible ASCII separated by single slashes, or empty. No segment
/// holds [`REVISION_MARKER`], which in a request asks for a revision.
pub fn is_valid_api_path(path: &str) -> bool {
    path.is_empty()
        || path.split('/').all(|segment| {
            !segment.is_empty()
                && segment.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
                && !segment.contains(REVISION_MARKER)
        })
}

impl Api {
    /// Whether this is the API's current revision (`context.Api.IsCurrentRevision`).
    pub fn is_current(&self) -> bool {
        self.revision_of.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_settings_never_show_the_redis_password() {
        let settings = CacheSettings {
            redis_url: Some("redis://user:s3cret@cache.example:6380/2".into()),
            ..CacheSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redis://***@cache.example:6380/2"), "{shown}");
        assert_eq!(redacted_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted_url("rediss://:p@h/0"), "rediss://***@h/0");
    }

    #[test]
    fn api_paths() {
        assert!(is_valid_api_path(""));
        assert!(is_valid_api_path("echo"));
        assert!(is_valid_api_path("v1/orders"));
        assert!(!is_valid_api_path("/echo"));
        assert!(!is_valid_api_path("echo/"));
        assert!(!is_valid_api_path("a//b"));
        assert!(!is_valid_api_path("a b"));
        assert!(!is_valid_api_path("a?b"));
    }

    #[test]
    fn the_empty_config_is_valid_and_its_program_zero_does_nothing() {
        let config = Config::empty("t");
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.source, "t");
        assert_eq!(config.programs, [Program::empty()]);
        let api = Api {
            id: "a".into(),
            name: "a".into(),
            path: "a".into(),
            backend_id: None,
            backend: BackendUrl {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: 80,
                base_path: String::new(),
                authority: "127.0.0.1".into(),
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
            operations: vec![Operation::catch_all(Policies::all(0))],
        };
        let with_api = Config { apis: vec![api.clone()], ..Config::empty("t") };
        assert_eq!(with_api.validate(), Ok(()), "operations without policies point at program 0");
        let twice = Config { apis: vec![api.clone(), api], ..Config::empty("t") };
        assert_eq!(twice.validate(), Err(ConfigError::DuplicatePath { path: "a".into() }));
    }

    fn versioned(api: &Api, version_set: Option<u32>, version: &str) -> Api {
        Api { version_set, version: version.into(), ..api.clone() }
    }

    #[test]
    fn versions_share_a_path_and_revisions_follow_their_current_one() {
        let base = Config::empty("t");
        let api = Api {
            id: "a".into(),
            name: "a".into(),
            path: "a".into(),
            backend_id: None,
            backend: BackendUrl {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: 80,
                base_path: String::new(),
                authority: "127.0.0.1".into(),
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
            operations: vec![Operation::catch_all(Policies::all(0))],
        };
        let set = VersionSet {
            id: "s".into(),
            name: "S".into(),
            scheme: VersioningScheme::Segment,
            description: String::new(),
        };
        let config = |apis: Vec<Api>| Config { apis, version_sets: vec![set.clone()], ..base.clone() };
        let (original, v1, v2) =
            (versioned(&api, Some(0), ""), versioned(&api, Some(0), "v1"), versioned(&api, Some(0), "v2"));
        assert_eq!(config(vec![original.clone(), v1.clone(), v2.clone()]).validate(), Ok(()));
        let duplicate = Err(ConfigError::DuplicatePath { path: "a".into() });
        assert_eq!(config(vec![v1.clone(), v2.clone(), v1.clone()]).validate(), duplicate, "one version twice");
        assert_eq!(config(vec![api.clone(), v1.clone()]).validate(), duplicate, "an unversioned API and a version");
        assert!(matches!(
            config(vec![versioned(&api, Some(1), "v1")]).validate(),
            Err(ConfigError::VersionSetOutOfRange { version_set: 1, .. })
        ));
        assert!(matches!(
            config(vec![versioned(&api, None, "v1")]).validate(),
            Err(ConfigError::InvalidVersioning { .. })
        ));
        assert!(matches!(
            config(vec![versioned(&api, Some(0), "v/1")]).validate(),
            Err(ConfigError::InvalidVersioning { .. })
        ));

        let revision = Api { revision: "2".into(), revision_of: Some(0), online: false, ..api.clone() };
        assert_eq!(config(vec![api.clone(), revision.clone()]).validate(), Ok(()));
        let mismatch = |apis| matches!(config(apis).validate(), Err(ConfigError::RevisionMismatch { .. }));
        assert!(mismatch(vec![api.clone(), Api { revision: "1".into(), ..revision.clone() }]), "the current's number");
        assert!(mismatch(vec![api.clone(), Api { path: "b".into(), ..revision.clone() }]), "another path");
        assert!(mismatch(vec![api.clone(), Api { revision_of: Some(1), ..revision.clone() }]), "its own current");
        assert!(mismatch(vec![api.clone(), revision.clone(), revision.clone()]), "one number twice");
        assert!(mismatch(vec![Api { online: false, ..api.clone() }]), "an offline current revision");
        assert!(matches!(
            config(vec![Api { revision: "01".into(), ..api.clone() }]).validate(),
            Err(ConfigError::InvalidVersioning { .. })
        ));
    }

    #[test]
    fn versions_and_revisions_are_well_formed() {
        assert!(is_valid_version("v1") && is_valid_version("2024-05-01") && is_valid_version("1.0~beta_x"));
        assert!(
            !is_valid_version("") && !is_valid_version("v 1") && !is_valid_version("v/1") && !is_valid_version("v;1")
        );
        assert!(!is_valid_version(&"v".repeat(VERSION_CHARS_MAX + 1)));
        assert!(
            is_valid_revision("1") && is_valid_revision("42") && is_valid_revision(&"9".repeat(REVISION_DIGITS_MAX))
        );
        assert!(
            !is_valid_revision("") && !is_valid_revision("0") && !is_valid_revision("07") && !is_valid_revision("1a")
        );
        assert!(!is_valid_revision(&"9".repeat(REVISION_DIGITS_MAX + 1)));
        assert!(!is_valid_api_path("customers;rev=3") && is_valid_api_path("customers;v=3"));
    }

    #[test]
    fn backends_are_checked() {
        let backend = Backend {
            id: "pool".into(),
            scheme: Scheme::Http,
            base_path: String::new(),
            authority: "pool".into(),
            load_balancing: LoadBalancing::Weighted,
            endpoints: vec![Endpoint { host: "127.0.0.1".into(), port: 1, weight: 1 }],
            pool: PoolSettings::default(),
            passive_health: PassiveHealth::default(),
            active_health: None,
            tls_server_name: None,
            client_certificate: None,
        };
        assert_eq!(backend.validate(), Ok(()));
        let mut broken = backend.clone();
        broken.endpoints.clear();
        assert!(broken.validate().unwrap_err().contains("0 endpoints"));
        let mut broken = backend.clone();
        broken.endpoints[0].weight = 0;
        assert!(broken.validate().is_err());
        let mut broken = backend.clone();
        broken.tls_server_name = Some("a.test".into());
        assert!(broken.validate().unwrap_err().contains("TLS server name"));
        let mut broken = backend;
        broken.active_health = Some(ActiveHealth {
            path: "/h".into(),
            interval_ms: 100,
            timeout_ms: 200,
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            expected_status_min: 200,
            expected_status_max: 299,
        });
        assert!(broken.validate().is_err(), "a timeout longer than the interval");
    }
}
