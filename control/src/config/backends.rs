//! Named backends (`backends/<backend-id>.toml`) compiled into `contract::model::Backend`s:
//! endpoint addresses, load balancing, pool and health settings, each checked with its span.

use std::collections::BTreeSet;
use std::path::Path;

use portcullis_contract::model::{
    ActiveHealth, Backend, ENDPOINT_WEIGHT_MAX, ENDPOINTS_PER_BACKEND_MAX, Endpoint, LoadBalancing,
    POOL_IDLE_PER_ENDPOINT_MAX, PassiveHealth, PoolSettings, Scheme,
};
use portcullis_contract::tls::TlsCertificate;
use portcullis_policy::named_values::{self, NamedValues};
use toml::Spanned;

use super::backend_url;
use super::files::{ActiveTable, BackendFile, LoadBalancingName, ProtocolName};
use super::load::{Item, Parsed};
use super::{Diagnostics, SourceFile};

/// Active checks every 5 s unless the backend says otherwise (Envoy and HAProxy use 2-5 s).
pub const ACTIVE_INTERVAL_MS_DEFAULT: u32 = 5_000;
/// Checks more often than every 100 ms would load the backends more than they tell us.
pub const ACTIVE_INTERVAL_MS_MIN: u32 = 100;
/// A check that has no answer after 1 s failed, unless the backend says otherwise.
pub const ACTIVE_TIMEOUT_MS_DEFAULT: u32 = 1_000;
/// Passed checks in a row that bring an endpoint back (HAProxy's `rise` default is 2).
pub const ACTIVE_HEALTHY_THRESHOLD_DEFAULT: u32 = 2;
/// Failed checks in a row that take an endpoint out (HAProxy's `fall` default is 3).
pub const ACTIVE_UNHEALTHY_THRESHOLD_DEFAULT: u32 = 3;
/// Statuses that pass a check unless the backend says otherwise (HAProxy's `http-check` default).
pub const ACTIVE_EXPECTED_STATUS_DEFAULT: (u16, u16) = (200, 399);
/// A weight unless the endpoint gives one.
pub const ENDPOINT_WEIGHT_DEFAULT: u32 = 1;

/// The named backends that compiled, in directory order.
/// `dir` is the config directory that certificate paths are relative to.
pub(crate) fn compile(
    parsed: &Parsed,
    values: &NamedValues,
    dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Vec<Backend> {
    let mut backends = Vec::new();
    for item in &parsed.backends {
        let before = diagnostics.len();
        let backend = backend(item, values, dir, diagnostics);
        if diagnostics.len() == before {
            backends.extend(backend);
        }
    }
    backends
}

/// Every backend id a reference may name: compiled, or with errors of its own.
pub(crate) fn known_ids(parsed: &Parsed) -> BTreeSet<String> {
    parsed.backends.iter().map(|item| item.id.clone()).chain(parsed.broken_backend_ids.iter().cloned()).collect()
}

/// One backend file: each part is checked on its own (in file order, so diagnostics come in the
/// order a reader meets them), then assembled.
fn backend(
    item: &Item<BackendFile>,
    values: &NamedValues,
    dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<Backend> {
    let source = &item.source;
    let file = &item.file;
    let https = file.protocol.as_ref().is_some_and(|protocol| *protocol.get_ref() == ProtocolName::Https);
    let tls_server_name = tls_server_name(file, https, source, diagnostics);
    let client_certificate = client_certificate(file, https, source, dir, diagnostics);
    let endpoints = endpoints(file, https, source, values, diagnostics);
    let base_path = base_path(file.base_path.as_ref(), source, diagnostics);
    let authority = host_header(file, endpoints.first(), https, source, diagnostics);
    let pool = pool(item, diagnostics);
    let passive_health = passive(item, diagnostics);
    let active_health = file.health.active.as_ref().and_then(|table| active(table, source, diagnostics));
    Some(Backend {
        id: item.id.clone(),
        scheme: if https { Scheme::Https } else { Scheme::Http },
        base_path: base_path?,
        authority,
        load_balancing: match file.load_balancing {
            LoadBalancingName::RoundRobin => LoadBalancing::RoundRobin,
            LoadBalancingName::Weighted => LoadBalancing::Weighted,
            LoadBalancingName::LeastRequests => LoadBalancing::LeastRequests,
        },
        endpoints,
        pool,
        passive_health,
        active_health,
        tls_server_name,
        client_certificate,
    })
}

/// `tls-server-name`, lower case: only for https backends, and a DNS name or an IP address.
fn tls_server_name(
    file: &BackendFile,
    https: bool,
    source: &SourceFile,
    diagnostics: &mut Diagnostics,
) -> Option<String> {
    match &file.tls_server_name {
        Some(name) if !https => {
            diagnostics
                .push(source.error(name.span(), "tls-server-name is for https backends: add protocol = \"https\""));
            None
        }
        Some(name) if rustls::pki_types::ServerName::try_from(name.get_ref().as_str()).is_err() => {
            diagnostics
                .push(source.error(name.span(), format!("{:?} is not a DNS name or an IP address", name.get_ref())));
            None
        }
        Some(name) => Some(name.get_ref().to_ascii_lowercase()),
        None => None,
    }
}

/// The backend's own TLS client certificate and key (only for https backends), read and checked
/// as a pair.
fn client_certificate(
    file: &BackendFile,
    https: bool,
    source: &SourceFile,
    dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<TlsCertificate> {
    match (&file.tls_client_cert_file, &file.tls_client_key_file) {
        (Some(file), _) | (None, Some(file)) if !https => {
            let message = "a TLS client certificate is for https backends: add protocol = \"https\"";
            diagnostics.push(source.error(file.span(), message));
            None
        }
        (cert_file, key_file) => super::tls::client_identity(
            super::tls::ClientIdentityKeys {
                cert_file: cert_file.as_ref(),
                key_file: key_file.as_ref(),
                names: ("tls-client-cert-file", "tls-client-key-file"),
            },
            source,
            dir,
            diagnostics,
        ),
    }
}

/// The `[[endpoint]]`s: 1 to [`ENDPOINTS_PER_BACKEND_MAX`], each address once, weights in range.
fn endpoints(
    file: &BackendFile,
    https: bool,
    source: &SourceFile,
    values: &NamedValues,
    diagnostics: &mut Diagnostics,
) -> Vec<Endpoint> {
    if file.endpoint.is_empty() {
        diagnostics.push(source.error_at_start("a backend needs at least one [[endpoint]] with an address"));
    }
    if file.endpoint.len() > ENDPOINTS_PER_BACKEND_MAX {
        diagnostics.push(source.error_at_start(format!("a backend has at most {ENDPOINTS_PER_BACKEND_MAX} endpoints")));
    }
    let mut endpoints = Vec::with_capacity(file.endpoint.len());
    let mut seen = BTreeSet::new();
    for entry in &file.endpoint {
        let weight = match &entry.weight {
            None => ENDPOINT_WEIGHT_DEFAULT,
            Some(weight) if (1..=ENDPOINT_WEIGHT_MAX).contains(weight.get_ref()) => *weight.get_ref(),
            Some(weight) => {
                let message = format!("an endpoint weight is 1 to {ENDPOINT_WEIGHT_MAX}");
                diagnostics.push(source.error(weight.span(), message));
                continue;
            }
        };
        if let Some((host, port)) = address(&entry.address, https, source, values, diagnostics) {
            if !seen.insert((host.to_ascii_lowercase(), port)) {
                let message = "this endpoint is listed twice (use weight to give it more traffic)";
                diagnostics.push(source.error(entry.address.span(), message));
            }
            endpoints.push(Endpoint { host, port, weight });
        }
    }
    endpoints
}

/// The `Host` the backend is sent: `host-header` when given, else the first endpoint's authority.
fn host_header(
    file: &BackendFile,
    first: Option<&Endpoint>,
    https: bool,
    source: &SourceFile,
    diagnostics: &mut Diagnostics,
) -> String {
    match (&file.host_header, first) {
        (Some(host), _) if is_host_header(host.get_ref()) => host.get_ref().clone(),
        (Some(host), _) => {
            diagnostics.push(source.error(host.span(), "a Host header is visible ASCII without spaces or '/'"));
            String::new()
        }
        (None, Some(first)) => authority(&first.host, first.port, https),
        (None, None) => String::new(),
    }
}

/// `host:port` of an endpoint, named values substituted; without a port, the scheme's (80 for
/// http, 443 for https).
fn address(
    value: &Spanned<String>,
    https: bool,
    source: &SourceFile,
    values: &NamedValues,
    diagnostics: &mut Diagnostics,
) -> Option<(String, u16)> {
    let resolved = match named_values::substitute(value.get_ref(), values) {
        Ok(resolved) => resolved,
        Err(error) => {
            diagnostics.push(source.error(value.span(), error.to_string()));
            return None;
        }
    };
    let text = resolved.text.trim();
    let parsed = if text.contains(['/', '?', '#', '@']) || text.contains("://") {
        None
    } else {
        let scheme = if https { "https" } else { "http" };
        backend_url::parse(&format!("{scheme}://{text}")).ok()
    };
    match parsed {
        Some(url) => Some((url.host, url.port)),
        None => {
            let shown = if resolved.secret { "(secret)".to_owned() } else { format!("{text:?}") };
            let message = format!(
                "bad endpoint address {shown}: use host:port, [ipv6]:port or host (port 80, https 443), without a scheme"
            );
            diagnostics.push(source.error(value.span(), message));
            None
        }
    }
}

/// `Host` for `host:port` (the port only when it is not the scheme's default).
fn authority(host: &str, port: u16, https: bool) -> String {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    let default = if https { backend_url::HTTPS_PORT_DEFAULT } else { backend_url::HTTP_PORT_DEFAULT };
    if port == default { host } else { format!("{host}:{port}") }
}

fn is_host_header(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// `base-path`: empty, or `/segments` of visible ASCII without `?` or `#`; trailing `/` dropped.
fn base_path(value: Option<&Spanned<String>>, source: &SourceFile, diagnostics: &mut Diagnostics) -> Option<String> {
    let Some(value) = value else { return Some(String::new()) };
    let text = value.get_ref().trim_end_matches('/');
    if text.is_empty()
        || (text.starts_with('/') && text.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#'))
    {
        Some(text.to_owned())
    } else {
        diagnostics
            .push(source.error(value.span(), "a base path starts with '/' and is visible ASCII without '?' or '#'"));
        None
    }
}

fn pool(item: &Item<BackendFile>, diagnostics: &mut Diagnostics) -> PoolSettings {
    let table = &item.file.pool;
    let mut pool = PoolSettings::default();
    if let Some(max) = &table.max_idle_per_endpoint {
        if *max.get_ref() > POOL_IDLE_PER_ENDPOINT_MAX {
            let message = format!("at most {POOL_IDLE_PER_ENDPOINT_MAX} idle connections per endpoint and worker");
            diagnostics.push(item.source.error(max.span(), message));
        } else {
            pool.max_idle_per_endpoint = *max.get_ref();
        }
    }
    pool.idle_timeout_ms =
        at_least_one(table.idle_timeout_ms.as_ref(), pool.idle_timeout_ms, &item.source, diagnostics);
    pool
}

fn passive(item: &Item<BackendFile>, diagnostics: &mut Diagnostics) -> PassiveHealth {
    let table = &item.file.health.passive;
    let mut passive = PassiveHealth::default();
    if let Some(failures) = &table.consecutive_failures {
        passive.consecutive_failures = *failures.get_ref();
    }
    passive.ejection_ms = at_least_one(table.ejection_ms.as_ref(), passive.ejection_ms, &item.source, diagnostics);
    passive
}

fn active(table: &ActiveTable, source: &SourceFile, diagnostics: &mut Diagnostics) -> Option<ActiveHealth> {
    let before = diagnostics.len();
    let path = table.path.get_ref();
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        diagnostics.push(source.error(table.path.span(), "a health check path starts with '/' and has no spaces"));
    }
    let interval_ms = at_least_one(table.interval_ms.as_ref(), ACTIVE_INTERVAL_MS_DEFAULT, source, diagnostics);
    if let Some(interval) = table.interval_ms.as_ref().filter(|interval| *interval.get_ref() < ACTIVE_INTERVAL_MS_MIN) {
        let message = format!("health checks run at most every {ACTIVE_INTERVAL_MS_MIN} ms");
        diagnostics.push(source.error(interval.span(), message));
    }
    let timeout_default = ACTIVE_TIMEOUT_MS_DEFAULT.min(interval_ms);
    let timeout_ms = at_least_one(table.timeout_ms.as_ref(), timeout_default, source, diagnostics);
    if let Some(timeout) = table.timeout_ms.as_ref().filter(|timeout| *timeout.get_ref() > interval_ms) {
        diagnostics.push(source.error(timeout.span(), "the check timeout cannot be longer than its interval"));
    }
    let healthy_threshold =
        at_least_one(table.healthy_threshold.as_ref(), ACTIVE_HEALTHY_THRESHOLD_DEFAULT, source, diagnostics);
    let unhealthy_threshold =
        at_least_one(table.unhealthy_threshold.as_ref(), ACTIVE_UNHEALTHY_THRESHOLD_DEFAULT, source, diagnostics);
    let (expected_status_min, expected_status_max) = match &table.expected_status {
        None => ACTIVE_EXPECTED_STATUS_DEFAULT,
        Some(value) => match status_range(value.get_ref()) {
            Some(range) => range,
            None => {
                let message = "expected-status is a status (\"200\") or a range (\"200-399\") within 100-599";
                diagnostics.push(source.error(value.span(), message));
                ACTIVE_EXPECTED_STATUS_DEFAULT
            }
        },
    };
    (diagnostics.len() == before).then(|| ActiveHealth {
        path: path.clone(),
        interval_ms,
        timeout_ms,
        healthy_threshold,
        unhealthy_threshold,
        expected_status_min,
        expected_status_max,
    })
}

/// `"200"` or `"200-399"`, within 100..=599.
fn status_range(text: &str) -> Option<(u16, u16)> {
    let (min, max) = text.split_once('-').unwrap_or((text, text));
    let parse = |part: &str| part.trim().parse::<u16>().ok().filter(|status| (100..=599).contains(status));
    let (min, max) = (parse(min)?, parse(max)?);
    (min <= max).then_some((min, max))
}

/// A duration that must be at least 1 ms; `default` when absent.
fn at_least_one(value: Option<&Spanned<u32>>, default: u32, source: &SourceFile, diagnostics: &mut Diagnostics) -> u32 {
    match value {
        None => default,
        Some(value) if *value.get_ref() == 0 => {
            diagnostics.push(source.error(value.span(), "must be at least 1"));
            default
        }
        Some(value) => *value.get_ref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(status_range("200-399"), Some((200, 399)));
        assert_eq!(status_range("204"), Some((204, 204)));
        assert_eq!(status_range("399-200"), None);
        assert_eq!(status_range("99"), None);
        assert_eq!(status_range("2xx"), None);
    }

    #[test]
    fn authorities() {
        assert_eq!(authority("a", 80, false), "a");
        assert_eq!(authority("a", 81, false), "a:81");
        assert_eq!(authority("::1", 81, false), "[::1]:81");
        assert_eq!(authority("a", 443, true), "a");
        assert_eq!(authority("a", 80, true), "a:80");
    }
}
