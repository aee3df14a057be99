//! The TOML files of a config directory, as written: every field keeps its span for diagnostics.
//!
//! Unknown keys are errors (`deny_unknown_fields`), so a typo never silently means "default".

use serde::Deserialize;
use toml::Spanned;

/// `gateway.toml`: settings of the gateway as a whole.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct GatewayFile {
    #[serde(default)]
    pub(crate) limits: LimitsTable,
    #[serde(default)]
    pub(crate) deployment: DeploymentTable,
    #[serde(default)]
    pub(crate) policies: PoliciesTable,
    #[serde(default)]
    pub(crate) xdp: super::xdp::XdpTable,
    #[serde(default)]
    pub(crate) tls: super::tls::TlsTable,
    #[serde(default)]
    pub(crate) cache: super::cache::CacheTable,
    #[serde(default)]
    pub(crate) jwt: JwtTable,
    #[serde(default)]
    pub(crate) access_log: super::observability::AccessLogTable,
    #[serde(default)]
    pub(crate) metrics: super::observability::MetricsTable,
    pub(crate) tracing: Option<super::observability::TracingTable>,
    #[serde(default)]
    pub(crate) analytics: super::observability::AnalyticsTable,
    #[serde(default)]
    pub(crate) managed_identity: super::identity::IdentityTable,
    /// Read by the portal's listener (`crate::portal`); here so that the loader checks its keys.
    #[serde(default)]
    #[allow(dead_code, reason = "read by crate::portal::read_table, checked here")]
    pub(crate) portal: crate::portal::PortalTable,
}

/// Entra's public cloud: where `validate-azure-ad-token` finds a tenant's keys by default.
pub(crate) const AZURE_AUTHORITY_DEFAULT: &str = "https://login.microsoftonline.com";

/// `[jwt]` in `gateway.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct JwtTable {
    /// Base URL of Microsoft Entra (`validate-azure-ad-token`): a sovereign cloud, or a test
    /// issuer. Default [`AZURE_AUTHORITY_DEFAULT`].
    pub(crate) azure_authority: Option<String>,
    /// Workers remember verified tokens (default true).
    pub(crate) token_cache: Option<bool>,
    /// Seconds between refreshes of OpenID keys (default 3600).
    pub(crate) openid_refresh_s: Option<u32>,
    /// Least seconds between re-fetches after a failure or an unknown `kid` (default 300).
    pub(crate) openid_refetch_min_s: Option<u32>,
}

/// `[policies]` in `gateway.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct PoliciesTable {
    /// Policies the engine does not implement are skipped with a warning instead of refused.
    #[serde(default)]
    pub(crate) skip_unsupported: bool,
}

/// `[deployment]` in `gateway.toml`: what policies read as `context.Deployment`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct DeploymentTable {
    pub(crate) gateway_id: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) service_name: Option<String>,
}

/// `[limits]` in `gateway.toml`; each absent key keeps the default from `contract::model`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct LimitsTable {
    pub(crate) backend_connect_timeout_ms: Option<Spanned<u64>>,
    pub(crate) backend_response_timeout_ms: Option<Spanned<u64>>,
    pub(crate) request_header_timeout_ms: Option<Spanned<u64>>,
    pub(crate) keepalive_idle_timeout_ms: Option<Spanned<u64>>,
    pub(crate) request_head_bytes_max: Option<Spanned<u64>>,
    pub(crate) request_uri_bytes_max: Option<Spanned<u64>>,
    pub(crate) request_headers_max: Option<Spanned<u64>>,
    pub(crate) request_body_bytes_max: Option<Spanned<u64>>,
    pub(crate) connections_per_worker_max: Option<Spanned<u64>>,
}

/// `named-values.toml`: values substituted into `{{name}}` placeholders.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct NamedValuesFile {
    #[serde(default)]
    pub(crate) named_value: Vec<NamedValueEntry>,
}

/// One `[[named-value]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct NamedValueEntry {
    pub(crate) name: Spanned<String>,
    pub(crate) value: Spanned<String>,
    #[serde(default)]
    pub(crate) secret: bool,
}

/// `apis/<api-id>/api.toml` (the current revision), or `apis/<api-id>;rev=<n>/api.toml` (another
/// revision, which inherits `name`, `path`, `description`, `version-set`, `version` and
/// `subscription-required` from the current one and may not change them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ApiFile {
    /// Required in the current revision.
    pub(crate) name: Option<Spanned<String>>,
    /// Required in the current revision.
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) description: Option<Spanned<String>>,
    /// Exactly one of `backend-url` and `backend-id`.
    pub(crate) backend_url: Option<Spanned<String>>,
    /// A named backend: `backends/<backend-id>.toml`.
    pub(crate) backend_id: Option<Spanned<String>>,
    /// Forward the client's `Host` instead of the backend's authority.
    #[serde(default)]
    pub(crate) preserve_host: bool,
    /// `true` when absent (APIM's default).
    pub(crate) subscription_required: Option<Spanned<bool>>,
    #[serde(default)]
    pub(crate) subscription_key: SubscriptionKeyTable,
    /// APIM properties Portcullis keeps but has no key for (written by `export`).
    #[serde(default)]
    #[expect(dead_code, reason = "config::resources reads it from the text; declared so the strict parse accepts it")]
    pub(crate) apim: Option<toml::Table>,
    /// The version set this API is a version of: `version-sets/<id>.toml`.
    pub(crate) version_set: Option<Spanned<String>>,
    /// The version identifier; absent or empty in a version set: the `Original` version.
    pub(crate) version: Option<Spanned<String>>,
    /// The current revision's number (`"1"` when absent); in another revision, its directory's.
    pub(crate) revision: Option<Spanned<String>>,
    pub(crate) revision_description: Option<Spanned<String>>,
    /// Only in a non-current revision: `false` takes it offline (404 even with `;rev=`).
    pub(crate) online: Option<Spanned<bool>>,
}

/// `version-sets/<version-set-id>.toml`: the versions of one API and how requests name them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct VersionSetFile {
    pub(crate) name: Spanned<String>,
    pub(crate) scheme: Spanned<SchemeName>,
    /// Only with `scheme = "query"`; `api-version` when absent.
    pub(crate) query_name: Option<Spanned<String>>,
    /// Only with `scheme = "header"`; `Api-Version` when absent.
    pub(crate) header_name: Option<Spanned<String>>,
    pub(crate) description: Option<Spanned<String>>,
    /// APIM properties Portcullis keeps but has no key for (written by `export`).
    #[serde(default)]
    #[expect(dead_code, reason = "config::resources reads it from the text; declared so the strict parse accepts it")]
    pub(crate) apim: Option<toml::Table>,
}

/// Versioning schemes as APIM names them, in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SchemeName {
    Segment,
    Query,
    Header,
}

/// `[subscription-key]` in `api.toml`: where callers put their key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct SubscriptionKeyTable {
    pub(crate) header: Option<Spanned<String>>,
    pub(crate) query: Option<Spanned<String>>,
}

/// `backends/<backend-id>.toml`: a named backend (endpoints, load balancing, pool, health).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct BackendFile {
    pub(crate) protocol: Option<Spanned<ProtocolName>>,
    #[serde(default)]
    pub(crate) load_balancing: LoadBalancingName,
    /// Path prefix on every endpoint (`/api`).
    pub(crate) base_path: Option<Spanned<String>>,
    /// `Host` header sent to the endpoints; the first endpoint's address when absent.
    pub(crate) host_header: Option<Spanned<String>>,
    /// `https` backends: the name certificates are verified against (and SNI); each endpoint's
    /// host when absent.
    pub(crate) tls_server_name: Option<Spanned<String>>,
    /// `https` backends: the certificate (PEM chain) and key the gateway presents when the
    /// endpoints ask for one; `[tls]`'s `backend-client-cert-file` when absent.
    pub(crate) tls_client_cert_file: Option<Spanned<String>>,
    pub(crate) tls_client_key_file: Option<Spanned<String>>,
    /// `[[endpoint]]` tables.
    #[serde(default)]
    pub(crate) endpoint: Vec<EndpointEntry>,
    #[serde(default)]
    pub(crate) pool: PoolTable,
    #[serde(default)]
    pub(crate) health: HealthTable,
}

/// `protocol` of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ProtocolName {
    Http,
    Https,
}

/// The load-balancing algorithms, as written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LoadBalancingName {
    #[default]
    RoundRobin,
    Weighted,
    LeastRequests,
}

/// One `[[endpoint]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct EndpointEntry {
    /// `host:port` (`[v6]:port`); named values allowed.
    pub(crate) address: Spanned<String>,
    pub(crate) weight: Option<Spanned<u32>>,
}

/// `[pool]` of a backend.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct PoolTable {
    pub(crate) max_idle_per_endpoint: Option<Spanned<u32>>,
    pub(crate) idle_timeout_ms: Option<Spanned<u32>>,
}

/// `[health]` of a backend.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct HealthTable {
    #[serde(default)]
    pub(crate) passive: PassiveTable,
    pub(crate) active: Option<ActiveTable>,
}

/// `[health.passive]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct PassiveTable {
    pub(crate) consecutive_failures: Option<Spanned<u32>>,
    pub(crate) ejection_ms: Option<Spanned<u32>>,
}

/// `[health.active]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ActiveTable {
    pub(crate) path: Spanned<String>,
    pub(crate) interval_ms: Option<Spanned<u32>>,
    pub(crate) timeout_ms: Option<Spanned<u32>>,
    pub(crate) healthy_threshold: Option<Spanned<u32>>,
    pub(crate) unhealthy_threshold: Option<Spanned<u32>>,
    pub(crate) expected_status: Option<Spanned<String>>,
}

/// `apis/<api-id>/operations/<operation-id>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct OperationFile {
    /// Display name; the id when absent.
    pub(crate) name: Option<Spanned<String>>,
    /// `GET`, `POST`, ... or `*` for any method.
    pub(crate) method: Spanned<String>,
    /// Path template below the API path: `/users/{id}`, `/files/*`.
    pub(crate) url_template: Spanned<String>,
    /// `[[response]]`: the operation's documented responses, with examples for `mock-response`.
    #[serde(default)]
    pub(crate) response: Vec<ResponseFile>,
    /// APIM properties Portcullis keeps but has no key for (written by `export`).
    #[serde(default)]
    #[expect(dead_code, reason = "config::resources reads it from the text; declared so the strict parse accepts it")]
    pub(crate) apim: Option<toml::Table>,
}

/// One `[[response]]` of an operation file: a status, a representation and its example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ResponseFile {
    pub(crate) status: Spanned<i64>,
    /// The representation's media type; `application/json` when absent.
    pub(crate) content_type: Option<Spanned<String>>,
    /// The example body `mock-response` returns.
    pub(crate) example: Option<Spanned<String>>,
}

/// `products/<product-id>/product.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ProductFile {
    pub(crate) name: Spanned<String>,
    /// Ids of the APIs in the product.
    #[serde(default)]
    pub(crate) apis: Vec<Spanned<String>>,
    /// `false`: an open product (requests need no key).
    #[serde(default = "subscription_required_default")]
    pub(crate) subscription_required: bool,
    #[serde(default)]
    pub(crate) state: ProductState,
    /// APIM properties Portcullis keeps but has no key for (written by `export`).
    #[serde(default)]
    #[expect(dead_code, reason = "config::resources reads it from the text; declared so the strict parse accepts it")]
    pub(crate) apim: Option<toml::Table>,
    /// Shown in the portal (at most 1000 characters, as APIM).
    pub(crate) description: Option<Spanned<String>>,
    /// Terms of use the portal asks subscribers to accept.
    #[expect(dead_code, reason = "the developer portal's: parsed so that the file form is complete")]
    pub(crate) terms: Option<String>,
    /// New subscriptions wait for an administrator (`submitted`).
    #[serde(default)]
    pub(crate) approval_required: bool,
    /// Subscriptions per user; absent is unlimited.
    pub(crate) subscriptions_limit: Option<Spanned<i64>>,
    /// Ids of the groups that see the product in the portal.
    #[serde(default)]
    pub(crate) groups: Vec<Spanned<String>>,
}

/// Product states as APIM names them, in lower case.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ProductState {
    #[default]
    Published,
    NotPublished,
}

/// `subscriptions/<sub-id>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct SubscriptionFile {
    pub(crate) name: Spanned<String>,
    pub(crate) scope: Spanned<String>,
    #[serde(default)]
    pub(crate) state: StateName,
    pub(crate) primary_key: Spanned<String>,
    pub(crate) secondary_key: Spanned<String>,
    /// APIM properties Portcullis keeps but has no key for (written by `export`).
    #[serde(default)]
    #[expect(dead_code, reason = "config::resources reads it from the text; declared so the strict parse accepts it")]
    pub(crate) apim: Option<toml::Table>,
    /// Id of the user who owns it (`users/<user-id>.toml`, or `1`, the administrator).
    pub(crate) owner: Option<Spanned<String>>,
    /// RFC 3339 dates, audit only: none of them changes the state (as in APIM).
    pub(crate) created_date: Option<Spanned<String>>,
    pub(crate) start_date: Option<Spanned<String>>,
    pub(crate) expiration_date: Option<Spanned<String>>,
    pub(crate) end_date: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) allow_tracing: bool,
    /// Why the state is what it is (set on reject, for example).
    #[expect(dead_code, reason = "the management API's: parsed so that the file form is complete")]
    pub(crate) state_comment: Option<String>,
}

/// `users/<user-id>.toml`: a developer who owns subscriptions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct UserFile {
    /// Unique, compared case-insensitively.
    pub(crate) email: Spanned<String>,
    pub(crate) first_name: Spanned<String>,
    pub(crate) last_name: Spanned<String>,
    #[serde(default)]
    pub(crate) state: UserStateName,
    pub(crate) note: Option<String>,
    /// Group ids besides `developers`, which every registered user is in.
    #[serde(default)]
    pub(crate) groups: Vec<Spanned<String>>,
    /// RFC 3339.
    pub(crate) registration_date: Option<Spanned<String>>,
    /// APIM properties Portcullis keeps but has no key for (written by `export`).
    #[serde(default)]
    #[expect(dead_code, reason = "config::resources reads it from the text; declared so the strict parse accepts it")]
    pub(crate) apim: Option<toml::Table>,
}

/// User states as APIM names them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UserStateName {
    #[default]
    Active,
    Blocked,
    Pending,
    Deleted,
}

/// `groups/<group-id>.toml`: a custom group of users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct GroupFile {
    pub(crate) name: Spanned<String>,
    pub(crate) description: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub(crate) kind: Option<Spanned<GroupKind>>,
    /// The group's id at the external identity provider (`type = "external"` only).
    pub(crate) external_id: Option<Spanned<String>>,
    /// APIM properties Portcullis keeps but has no key for (written by `export`).
    #[serde(default)]
    #[expect(dead_code, reason = "config::resources reads it from the text; declared so the strict parse accepts it")]
    pub(crate) apim: Option<toml::Table>,
}

/// Group types a file may declare (APIM's third, `system`, is the built-in groups').
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GroupKind {
    #[default]
    Custom,
    External,
}

/// Subscription states, spelled as APIM spells them in lower case.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StateName {
    #[default]
    Active,
    Suspended,
    Submitted,
    Rejected,
    Cancelled,
    Expired,
}

/// APIM requires a subscription unless an API or product says otherwise.
pub(crate) fn subscription_required_default() -> bool {
    true
}
