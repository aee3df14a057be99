//! Turning the parsed files into the `contract::model::Config` the data plane runs: cross-file
//! checks (paths, scopes, keys), named values, URL splitting and the subscription-key index.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use portcullis_contract::key_index::KeyIndex;
use portcullis_contract::model::{
    Api, Backend, BackendUrl, Config, DEFAULT_SUBSCRIPTION_KEY_HEADER, DEFAULT_SUBSCRIPTION_KEY_QUERY, Deployment,
    Limits, Product, is_valid_api_path,
};
use portcullis_policy::named_values::{self, NamedValue, NamedValues};
use toml::Spanned;

use super::backend_url;
use super::files::{ApiFile, LimitsTable, ProductFile, subscription_required_default};
use super::load::{Item, Parsed, split_revision};
use super::users::Directory;
use super::versions::{self, Claim, PathClaims, VersionSets};
use super::{Diagnostic, Diagnostics, SourceFile};

/// Scope of a subscription to every API.
pub const ALL_APIS_SCOPE: &str = "/apis";

/// What a compile leaves besides the config: what its subscriptions may name, and each
/// subscription as compiled (for patching the next compile of a store); `None`: those of
/// [`Subscriptions::Kept`], unchanged.
pub(crate) type Kept = (super::subscriptions::Refs, Option<Vec<super::subscriptions::Compiled>>);

/// Where a compile takes its subscriptions from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subscriptions<'a> {
    /// The subscription files of `parsed`.
    Parsed,
    /// The last committed compile's, when no subscription changed since (`parsed` holds none).
    Kept(&'a super::subscriptions::Patchable),
}

/// Compiles `parsed`; `provided` are values the running gateway supplies (config values win).
/// `None` with no diagnostic: the kept subscriptions name something that is gone, compile
/// again with their files.
pub(crate) fn compile(
    parsed: Parsed,
    provided: &NamedValues,
    dir: &Path,
    seed: [u64; 2],
    programs: &mut super::policies::ProgramCache,
    subscriptions: Subscriptions<'_>,
    diagnostics: &mut Diagnostics,
) -> Option<(Config, Kept)> {
    let limits = parsed
        .gateway
        .as_ref()
        .map_or_else(Limits::default, |item| limits(&item.file.limits, &item.source, diagnostics));
    let xdp = parsed.gateway.as_ref().map(|item| super::xdp::compile(&item.file.xdp, &item.source, diagnostics));
    let tls = parsed
        .gateway
        .as_ref()
        .map(|item| super::tls::compile(&item.file.tls, &item.source, dir, diagnostics))
        .unwrap_or_default();
    let cache = parsed
        .gateway
        .as_ref()
        .map(|item| super::cache::compile(&item.file.cache, &item.source, diagnostics))
        .unwrap_or_default();
    let observability = parsed.gateway.as_ref().map(|item| observability(&item.file, &item.source, diagnostics));
    let identity = parsed
        .gateway
        .as_ref()
        .map(|item| super::identity::compile(&item.file.managed_identity, &item.source, diagnostics))
        .unwrap_or_default();
    let values = named_values(parsed.named_values.as_ref(), provided, diagnostics);
    let backends = super::backends::compile(&parsed, &values, dir, diagnostics);
    let version_sets = versions::compile_sets(&parsed, diagnostics);
    let mut apis = apis(&parsed, &backends, &values, &version_sets, diagnostics);
    let directory = super::users::compile(&parsed, diagnostics);
    let products = products(&parsed, &apis, &directory, diagnostics);
    let backend_ids = super::backends::known_ids(&parsed);
    let certificates = super::certificates::read(&tls.named);
    let compiled = super::policies::compile(
        &parsed,
        &mut apis,
        &products,
        &values,
        super::policies::Known { backends: &backend_ids, certificates: &certificates },
        policy_options(&parsed),
        programs,
        diagnostics,
    );
    for warning in &compiled.warnings.items {
        tracing::warn!("{warning}");
    }
    let deployment = deployment(&parsed);
    let refs = super::subscriptions::Refs::new(&parsed, &apis, &products, &directory);
    let (kept, (subscriptions, keys)) = match subscriptions {
        Subscriptions::Parsed => {
            let kept = super::subscriptions::compile_all(&parsed, &refs, diagnostics);
            let table = super::subscriptions::table(kept.iter());
            (Some(kept), table)
        }
        Subscriptions::Kept(patchable) if patchable.refs == refs => {
            (None, super::subscriptions::table(patchable.subscriptions.values()))
        }
        Subscriptions::Kept(patchable) => {
            let kept = patchable.resolved(&refs)?;
            let table = super::subscriptions::table(kept.iter());
            (Some(kept), table)
        }
    };
    if !diagnostics.is_empty() {
        return None;
    }
    let key_index = match KeyIndex::build(seed, keys) {
        Ok(index) => index,
        Err(error) => {
            diagnostics.push(Diagnostic::at_path(dir, format!("cannot index the subscription keys: {error}")));
            return None;
        }
    };
    let apis: Vec<Api> = apis.into_iter().map(|(api, _)| api).collect();
    let mut compiled = compiled;
    let authority = parsed.gateway.as_ref().and_then(|item| item.file.jwt.azure_authority.clone());
    set_azure_authority(&mut compiled.programs, authority.as_deref());
    let mut xdp = xdp.unwrap_or_default();
    super::xdp::add_global_ip_filters(&mut xdp, &apis, &compiled.programs);
    let config = Config {
        source: dir.display().to_string(),
        apis,
        subscriptions,
        key_index,
        limits,
        programs: compiled.programs,
        deployment,
        xdp,
        tls,
        products,
        product_policies: compiled.product_policies,
        backends,
        cache,
        jwt: jwt_settings(&parsed),
        users: directory.users,
        groups: directory.groups,
        version_sets: version_sets.sets,
        observability: observability.unwrap_or_default(),
        identity,
    };
    if let Err(error) = config.validate() {
        diagnostics.push(Diagnostic::at_path(dir, format!("the compiled config is inconsistent: {error}")));
        return None;
    }
    Some((config, (refs, kept)))
}

/// `[access-log]`, `[metrics]`, `[tracing]` and `[analytics]`.
fn observability(
    file: &super::files::GatewayFile,
    source: &SourceFile,
    diagnostics: &mut Diagnostics,
) -> portcullis_contract::telemetry::ObservabilitySettings {
    let tables = super::observability::Tables {
        access_log: &file.access_log,
        metrics: &file.metrics,
        tracing: file.tracing.as_ref(),
        analytics: &file.analytics,
    };
    super::observability::compile(tables, source, diagnostics)
}

/// `[jwt]` as the snapshot carries it (the OpenID keys are added by the publisher).
fn jwt_settings(parsed: &Parsed) -> portcullis_contract::jwt::JwtSettings {
    let defaults = portcullis_contract::jwt::JwtSettings::default();
    let Some(table) = parsed.gateway.as_ref().map(|item| &item.file.jwt) else { return defaults };
    portcullis_contract::jwt::JwtSettings {
        token_cache: table.token_cache.unwrap_or(defaults.token_cache),
        openid: Vec::new(),
        openid_refresh_s: table.openid_refresh_s.unwrap_or(defaults.openid_refresh_s).max(1),
        openid_refetch_min_s: table.openid_refetch_min_s.unwrap_or(defaults.openid_refetch_min_s),
    }
}

/// Puts the Entra authority (`[jwt] azure-authority`) into `validate-azure-ad-token`'s OpenID
/// URLs, which the policy compiler leaves as `{authority}/...`.
fn set_azure_authority(programs: &mut [portcullis_contract::program::Program], authority: Option<&str>) {
    let authority = authority.unwrap_or(super::files::AZURE_AUTHORITY_DEFAULT).trim_end_matches('/');
    for rule in programs.iter_mut().flat_map(|program| program.jwt.iter_mut()) {
        for url in &mut rule.openid_urls {
            if let Some(rest) = url.strip_prefix("{authority}") {
                *url = format!("{authority}{rest}");
            }
        }
    }
}

/// Policy compile options from `gateway.toml` (`[policies] skip-unsupported`).
fn policy_options(parsed: &Parsed) -> portcullis_policy::compile::Options {
    portcullis_policy::compile::Options {
        skip_unsupported: parsed.gateway.as_ref().is_some_and(|item| item.file.policies.skip_unsupported),
        allow_unknown_references: false,
    }
}

/// `context.Deployment`, from `[deployment]` in `gateway.toml`.
fn deployment(parsed: &Parsed) -> Deployment {
    let table = parsed.gateway.as_ref().map(|item| &item.file.deployment);
    let pick = |value: Option<&Option<String>>, default: &str| {
        value.and_then(|v| v.clone()).unwrap_or_else(|| default.to_owned())
    };
    Deployment {
        gateway_id: pick(table.map(|t| &t.gateway_id), DEPLOYMENT_GATEWAY_ID_DEFAULT),
        region: pick(table.map(|t| &t.region), DEPLOYMENT_REGION_DEFAULT),
        service_name: pick(table.map(|t| &t.service_name), DEPLOYMENT_SERVICE_NAME_DEFAULT),
    }
}

/// `context.Deployment.GatewayId` unless `gateway.toml` names it.
pub(crate) const DEPLOYMENT_GATEWAY_ID_DEFAULT: &str = "portcullis";
/// `context.Deployment.Region` unless `gateway.toml` names it.
pub(crate) const DEPLOYMENT_REGION_DEFAULT: &str = "local";
/// `context.Deployment.ServiceName` unless `gateway.toml` names it.
pub(crate) const DEPLOYMENT_SERVICE_NAME_DEFAULT: &str = "portcullis";

fn limits(table: &LimitsTable, source: &SourceFile, diagnostics: &mut Diagnostics) -> Limits {
    use portcullis_contract::model::{REQUEST_HEAD_BYTES_CEILING, REQUEST_HEADERS_CEILING};
    let mut limits = Limits::default();
    let mut set = |value: &Option<Spanned<u64>>, range: std::ops::RangeInclusive<u64>, what: &str| {
        let value = value.as_ref()?;
        let number = *value.get_ref();
        if range.contains(&number) {
            return Some(number);
        }
        diagnostics
            .push(source.error(value.span(), format!("{what} must be between {} and {}", range.start(), range.end())));
        None
    };
    let timeout = 1..=u64::from(u32::MAX);
    let as_u32 = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
    if let Some(ms) = set(&table.backend_connect_timeout_ms, timeout.clone(), "backend-connect-timeout-ms") {
        limits.backend_connect_timeout_ms = as_u32(ms);
    }
    if let Some(ms) = set(&table.backend_response_timeout_ms, timeout.clone(), "backend-response-timeout-ms") {
        limits.backend_response_timeout_ms = as_u32(ms);
    }
    if let Some(ms) = set(&table.request_header_timeout_ms, timeout.clone(), "request-header-timeout-ms") {
        limits.request_header_timeout_ms = as_u32(ms);
    }
    if let Some(ms) = set(&table.keepalive_idle_timeout_ms, timeout, "keepalive-idle-timeout-ms") {
        limits.keepalive_idle_timeout_ms = as_u32(ms);
    }
    let head_bytes = 1024..=u64::from(REQUEST_HEAD_BYTES_CEILING);
    if let Some(bytes) = set(&table.request_head_bytes_max, head_bytes, "request-head-bytes-max") {
        limits.request_head_bytes_max = as_u32(bytes);
    }
    let uri_bytes = 16..=u64::from(REQUEST_HEAD_BYTES_CEILING);
    if let Some(bytes) = set(&table.request_uri_bytes_max, uri_bytes, "request-uri-bytes-max") {
        limits.request_uri_bytes_max = as_u32(bytes);
    }
    if let Some(count) = set(&table.request_headers_max, 1..=u64::from(REQUEST_HEADERS_CEILING), "request-headers-max")
    {
        limits.request_headers_max = as_u32(count);
    }
    if let Some(bytes) = set(&table.request_body_bytes_max, 0..=i64::MAX as u64, "request-body-bytes-max") {
        limits.request_body_bytes_max = bytes;
    }
    let connections = 1..=u64::from(CONNECTIONS_PER_WORKER_CEILING);
    if let Some(count) = set(&table.connections_per_worker_max, connections, "connections-per-worker-max") {
        limits.connections_per_worker_max = as_u32(count);
    }
    limits
}

/// The most `connections-per-worker-max` may allow: one million, far above what the open-file
/// limit of any host lets a worker hold.
const CONNECTIONS_PER_WORKER_CEILING: u32 = 1_000_000;

pub(crate) fn named_values(
    file: Option<&Item<super::files::NamedValuesFile>>,
    provided: &NamedValues,
    diagnostics: &mut Diagnostics,
) -> NamedValues {
    let mut values = provided.clone();
    let Some(item) = file else { return values };
    let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
    for entry in &item.file.named_value {
        let name = entry.name.get_ref().as_str();
        if !named_values::is_valid_name(name) {
            diagnostics.push(item.source.error(
                entry.name.span(),
                format!(
                    "{name:?} is not a valid named-value name: use 1 to {} letters, digits, '.', '-' or '_'",
                    named_values::NAME_CHARS_MAX
                ),
            ));
        } else if seen.insert(name, ()).is_some() {
            diagnostics.push(item.source.error(entry.name.span(), format!("named value {name:?} is defined twice")));
        } else {
            values.insert(name, NamedValue { value: entry.value.get_ref().clone(), secret: entry.secret });
        }
    }
    values
}

/// Compiled APIs with the directory each came from (`<id>`, or `<id>;rev=<n>` for a non-current
/// revision): the current revisions in directory order, then the other revisions; broken ones
/// are left out.
fn apis(
    parsed: &Parsed,
    backends: &[Backend],
    values: &NamedValues,
    sets: &VersionSets,
    diagnostics: &mut Diagnostics,
) -> Vec<(Api, String)> {
    let inputs = ApiInputs { parsed, backends, values, sets };
    let mut apis = Vec::new();
    let mut claims = PathClaims::default();
    for item in parsed.apis.iter().filter(|item| split_revision(&item.id).1.is_none()) {
        if let Some(api) = current_api(item, &inputs, &mut claims, diagnostics) {
            apis.push((api, item.id.clone()));
        }
    }
    for item in &parsed.apis {
        let (id, Some(number)) = split_revision(&item.id) else { continue };
        let Some(current) = apis.iter().position(|(_, dir)| dir == id) else {
            // A current revision with errors of its own is reported there, not here.
            if !parsed.broken_api_ids.contains(id) && !parsed.apis.iter().any(|other| other.id == id) {
                let message =
                    format!("revision {number} of an unknown API {id:?}: add its current revision, apis/{id}/");
                diagnostics.push(item.source.error_at_start(message));
            }
            continue;
        };
        if let Some(api) = revision_api(item, number, (&apis[current].0, current as u32), &inputs, diagnostics) {
            apis.push((api, item.id.clone()));
        }
    }
    apis
}

/// What compiling one `api.toml` reads besides the file.
struct ApiInputs<'a> {
    parsed: &'a Parsed,
    backends: &'a [Backend],
    values: &'a NamedValues,
    sets: &'a VersionSets,
}

/// A current revision (`apis/<id>/api.toml`); `None` after reporting its problems.
fn current_api(
    item: &Item<ApiFile>,
    inputs: &ApiInputs<'_>,
    claims: &mut PathClaims,
    diagnostics: &mut Diagnostics,
) -> Option<Api> {
    let before = diagnostics.len();
    let (source, file) = (&item.source, &item.file);
    let name = api_name(file.name.as_ref(), source, diagnostics);
    let versioning = versions::current(file, source, inputs.sets, diagnostics);
    let path = match &file.path {
        Some(spanned) => {
            let path = spanned.get_ref().trim_matches('/').to_owned();
            if !is_valid_api_path(&path) {
                diagnostics.push(source.error(
                    spanned.span(),
                    "bad API path: use segments of visible ASCII separated by single '/', without '?', '#' or ';rev=' \
                     (\"\" mounts the API at the root)",
                ));
            } else if let Some(versioning) = &versioning {
                let version_span = file.version.as_ref().or(file.version_set.as_ref()).map_or(0..0, Spanned::span);
                let claim = Claim { api: &item.id, path: &path, path_span: spanned.span(), versioning, version_span };
                claims.claim(&claim, inputs.sets, source, diagnostics);
            }
            path
        }
        None => {
            diagnostics.push(source.error_at_start("an API needs a path: path = \"orders\" (\"\" for the root)"));
            String::new()
        }
    };
    let endpoint = endpoint(item, inputs, diagnostics);
    let (Some(endpoint), Some(versioning), true) = (endpoint, versioning, diagnostics.len() == before) else {
        return None;
    };
    Some(Api {
        id: item.id.clone(),
        name,
        path,
        backend: endpoint.backend,
        backend_id: endpoint.backend_id,
        subscription_required: file
            .subscription_required
            .as_ref()
            .map_or_else(subscription_required_default, |v| *v.get_ref()),
        subscription_key_header: endpoint.key_header,
        subscription_key_query: endpoint.key_query,
        preserve_host: file.preserve_host,
        version_set: versioning.version_set,
        version: versioning.version,
        revision: versioning.revision,
        revision_of: None,
        online: true,
        description: versions::text(&file.description),
        revision_description: versions::text(&file.revision_description),
        // Filled by the policy compiler.
        operations: Vec::new(),
    })
}

/// The `name` of a current revision: required, not blank.
fn api_name(name: Option<&Spanned<String>>, source: &SourceFile, diagnostics: &mut Diagnostics) -> String {
    match name {
        Some(name) if name.get_ref().trim().is_empty() => {
            diagnostics.push(source.error(name.span(), "an API needs a name"));
            String::new()
        }
        Some(name) => name.get_ref().clone(),
        None => {
            diagnostics.push(source.error_at_start("an API needs a name: name = \"...\""));
            String::new()
        }
    }
}

/// Revision `number` of the API whose current revision is `current` (and its index), from
/// `apis/<id>;rev=<number>/api.toml`; `None` after reporting its problems.
fn revision_api(
    item: &Item<ApiFile>,
    number: &str,
    (current, current_index): (&Api, u32),
    inputs: &ApiInputs<'_>,
    diagnostics: &mut Diagnostics,
) -> Option<Api> {
    let (source, file) = (&item.source, &item.file);
    let consistent = versions::check_revision(file, source, number, current, inputs.sets, diagnostics);
    let endpoint = endpoint(item, inputs, diagnostics)?;
    consistent.then(|| Api {
        backend: endpoint.backend,
        backend_id: endpoint.backend_id,
        subscription_key_header: endpoint.key_header,
        subscription_key_query: endpoint.key_query,
        preserve_host: file.preserve_host,
        revision: number.to_owned(),
        revision_of: Some(current_index),
        online: file.online.as_ref().is_none_or(|online| *online.get_ref()),
        revision_description: versions::text(&file.revision_description),
        operations: Vec::new(),
        ..current.clone()
    })
}

/// What each revision's `api.toml` says for itself: where requests go and where keys are.
struct Endpoint {
    backend: BackendUrl,
    backend_id: Option<u32>,
    key_header: String,
    key_query: String,
}

/// The backend and key names of one `api.toml`; `None` after reporting a problem.
fn endpoint(item: &Item<ApiFile>, inputs: &ApiInputs<'_>, diagnostics: &mut Diagnostics) -> Option<Endpoint> {
    let (source, file) = (&item.source, &item.file);
    let (backend, backend_id) = match (&file.backend_url, &file.backend_id) {
        (Some(url), None) => (backend(url, source, inputs.values, diagnostics), None),
        (None, Some(id)) => named_backend(id, source, inputs.parsed, inputs.backends, diagnostics),
        (Some(_), Some(id)) => {
            diagnostics.push(source.error(id.span(), "give backend-url or backend-id, not both"));
            (None, None)
        }
        (None, None) => {
            diagnostics.push(source.error_at_start(
                "an API needs backend-url = \"http://...\" or backend-id = \"<id of backends/<id>.toml>\"",
            ));
            (None, None)
        }
    };
    let header = key_name(file.subscription_key.header.as_ref(), DEFAULT_SUBSCRIPTION_KEY_HEADER, is_token);
    let query = key_name(file.subscription_key.query.as_ref(), DEFAULT_SUBSCRIPTION_KEY_QUERY, is_query_name);
    if let Err(span) = &header {
        diagnostics.push(source.error(span.clone(), "not a valid HTTP header name"));
    }
    if let Err(span) = &query {
        diagnostics.push(source.error(span.clone(), "not a valid query parameter name (letters, digits, -._~)"));
    }
    Some(Endpoint { backend: backend?, backend_id, key_header: header.ok()?, key_query: query.ok()? })
}

/// An API's named backend: its index, and the service URL it stands for (scheme, first endpoint,
/// base path, `Host`).
fn named_backend(
    id: &Spanned<String>,
    source: &SourceFile,
    parsed: &Parsed,
    backends: &[Backend],
    diagnostics: &mut Diagnostics,
) -> (Option<BackendUrl>, Option<u32>) {
    let Some(index) = backends.iter().position(|backend| backend.id == *id.get_ref()) else {
        // A backend with errors of its own is reported there, not here.
        if !parsed.backends.iter().any(|item| item.id == *id.get_ref())
            && !parsed.broken_backend_ids.contains(id.get_ref())
        {
            let message = format!("unknown backend {:?} (add backends/{}.toml)", id.get_ref(), id.get_ref());
            diagnostics.push(source.error(id.span(), message));
        }
        return (None, None);
    };
    let backend = &backends[index];
    let Some(first) = backend.endpoints.first() else { return (None, None) };
    let url = BackendUrl {
        scheme: backend.scheme,
        host: first.host.clone(),
        port: first.port,
        base_path: backend.base_path.clone(),
        authority: backend.authority.clone(),
    };
    (Some(url), Some(index as u32))
}

fn backend(
    url: &Spanned<String>,
    source: &SourceFile,
    values: &NamedValues,
    diagnostics: &mut Diagnostics,
) -> Option<portcullis_contract::model::BackendUrl> {
    let resolved = match named_values::substitute(url.get_ref(), values) {
        Ok(resolved) => resolved,
        Err(error) => {
            diagnostics.push(source.error(inner_span(source, url, error.range()), error.to_string()));
            return None;
        }
    };
    match backend_url::parse(&resolved.text) {
        Ok(backend) => Some(backend),
        Err(error) => {
            // The message never quotes the resolved URL when a secret went into it.
            let message = if resolved.secret {
                "bad backend URL (after substituting secret named values)".to_owned()
            } else {
                format!("bad backend URL {:?}: {error}", resolved.text)
            };
            diagnostics.push(source.error(url.span(), message));
            None
        }
    }
}

/// Points inside a string literal when the literal is written without escapes; else at all of it.
fn inner_span(source: &SourceFile, value: &Spanned<String>, range: Range<usize>) -> Range<usize> {
    let span = value.span();
    let literal = source.text.get(span.clone()).unwrap_or_default();
    let plain =
        literal.len() == value.get_ref().len() + 2 && literal.get(1..literal.len() - 1) == Some(value.get_ref());
    if plain { span.start + 1 + range.start..span.start + 1 + range.end } else { span }
}

fn key_name(value: Option<&Spanned<String>>, default: &str, valid: fn(&str) -> bool) -> Result<String, Range<usize>> {
    match value {
        None => Ok(default.to_owned()),
        Some(value) if valid(value.get_ref()) => Ok(value.get_ref().clone()),
        Some(value) => Err(value.span()),
    }
}

/// RFC 9110 token: the characters of a header name.
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 3986 unreserved characters, so the name never needs percent-encoding.
pub(crate) fn is_query_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The products, in directory order (the order of `parsed.products`); an unknown API id in a
/// product is an error at its position.
fn products(
    parsed: &Parsed,
    apis: &[(Api, String)],
    directory: &Directory,
    diagnostics: &mut Diagnostics,
) -> Vec<Product> {
    let mut products = Vec::new();
    for (item, _) in &parsed.products {
        let file = &item.file;
        if file.name.get_ref().trim().is_empty() {
            diagnostics.push(item.source.error(file.name.span(), "a product needs a name"));
        }
        let mut indices = Vec::new();
        for api in &file.apis {
            let current = apis.iter().position(|(compiled, id)| compiled.is_current() && id == api.get_ref());
            match current {
                Some(index) if indices.contains(&(index as u32)) => {
                    diagnostics.push(item.source.error(api.span(), format!("API {:?} is listed twice", api.get_ref())));
                }
                // The API and all its revisions.
                Some(index) => indices.extend(
                    apis.iter()
                        .enumerate()
                        .filter(|(other, (compiled, _))| *other == index || compiled.revision_of == Some(index as u32))
                        .map(|(other, _)| other as u32),
                ),
                None if split_revision(api.get_ref()).1.is_some() => {
                    let (base, _) = split_revision(api.get_ref());
                    let message = format!("a product lists API ids, each with all its revisions: use {base:?}");
                    diagnostics.push(item.source.error(api.span(), message));
                }
                None if parsed.broken_api_ids.contains(api.get_ref()) => {}
                None => diagnostics
                    .push(item.source.error(api.span(), format!("unknown API {:?} in product", api.get_ref()))),
            }
        }
        products.push(Product {
            id: item.id.clone(),
            name: file.name.get_ref().clone(),
            apis: indices,
            subscription_required: file.subscription_required,
            published: file.state == super::files::ProductState::Published,
            approval_required: file.approval_required,
            subscriptions_limit: subscriptions_limit(file, &item.source, diagnostics),
            groups: super::users::group_refs(
                &file.groups,
                &item.source,
                directory,
                &parsed.broken_group_ids,
                diagnostics,
            ),
        });
        if let Some(description) = &file.description {
            let max = super::users::DESCRIPTION_CHARS_MAX;
            super::users::check_text(description, 0, max, "a description", &item.source, diagnostics);
        }
    }
    products
}

/// `subscriptions-limit` of a product: 0 to APIM's int32 maximum.
fn subscriptions_limit(file: &ProductFile, source: &SourceFile, diagnostics: &mut Diagnostics) -> Option<u32> {
    let limit = file.subscriptions_limit.as_ref()?;
    match u32::try_from(*limit.get_ref()) {
        Ok(count) if count <= i32::MAX as u32 => Some(count),
        _ => {
            let message = format!("subscriptions-limit is 0 to {} (leave it out for no limit)", i32::MAX);
            diagnostics.push(source.error(limit.span(), message));
            None
        }
    }
}
