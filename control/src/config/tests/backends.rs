//! Named backends: `backends/<id>.toml`, `backend-id` in `api.toml` and in `set-backend-service`.

use portcullis_contract::model::{LoadBalancing, PassiveHealth, Scheme};

use super::*;

const POOL: &str = "load-balancing = \"weighted\"\nbase-path = \"/api/\"\n\
    [[endpoint]]\naddress = \"127.0.0.1:9001\"\nweight = 3\n\
    [[endpoint]]\naddress = \"[::1]:9002\"\n\
    [pool]\nmax-idle-per-endpoint = 8\nidle-timeout-ms = 1000\n\
    [health.passive]\nconsecutive-failures = 2\nejection-ms = 500\n\
    [health.active]\npath = \"/health\"\ninterval-ms = 200\nexpected-status = \"200-299\"\n";

fn with_pool() -> TempConfig {
    let config = TempConfig::valid();
    config.write("backends/pool.toml", POOL).write(
        "apis/pooled/api.toml",
        "name = \"P\"\npath = \"pooled\"\nbackend-id = \"pool\"\nsubscription-required = false\n",
    );
    config
}

#[test]
fn compiles_named_backends() {
    let compiled = with_pool().load().unwrap();
    let backend = &compiled.backends[0];
    assert_eq!(backend.id, "pool");
    assert_eq!(backend.load_balancing, LoadBalancing::Weighted);
    assert_eq!(backend.base_path, "/api");
    assert_eq!(backend.authority, "127.0.0.1:9001");
    assert_eq!(
        backend.endpoints.iter().map(|e| (e.host.as_str(), e.port, e.weight)).collect::<Vec<_>>(),
        [("127.0.0.1", 9001, 3), ("::1", 9002, 1)]
    );
    assert_eq!((backend.pool.max_idle_per_endpoint, backend.pool.idle_timeout_ms), (8, 1000));
    assert_eq!(backend.passive_health, PassiveHealth { consecutive_failures: 2, ejection_ms: 500 });
    let active = backend.active_health.as_ref().unwrap();
    assert_eq!((active.interval_ms, active.timeout_ms), (200, 200));
    assert_eq!((active.expected_status_min, active.expected_status_max), (200, 299));
    let api = compiled.apis.iter().find(|api| api.id == "pooled").unwrap();
    assert_eq!(api.backend_id, Some(0));
    assert_eq!((api.backend.base_path.as_str(), api.backend.authority.as_str()), ("/api", "127.0.0.1:9001"));
    assert_eq!(compiled.apis.iter().find(|api| api.id == "echo").unwrap().backend_id, None);
}

#[test]
fn https_backends_compile_with_their_server_name() {
    let config = with_pool();
    config.write(
        "backends/secure.toml",
        "protocol = \"https\"\ntls-server-name = \"Backend.Test\"\n[[endpoint]]\naddress = \"127.0.0.1:9443\"\n",
    );
    config.write("backends/plain.toml", "protocol = \"https\"\n[[endpoint]]\naddress = \"api.test:443\"\n");
    let compiled = config.load().unwrap();
    let secure = compiled.backends.iter().find(|backend| backend.id == "secure").unwrap();
    assert_eq!((secure.scheme, secure.tls_server_name.as_deref()), (Scheme::Https, Some("backend.test")));
    let plain = compiled.backends.iter().find(|backend| backend.id == "plain").unwrap();
    assert_eq!((plain.scheme, plain.tls_server_name.as_deref()), (Scheme::Https, None));
    let pool = compiled.backends.iter().find(|backend| backend.id == "pool").unwrap();
    assert_eq!(pool.scheme, Scheme::Http);
}

#[test]
fn api_needs_exactly_one_backend() {
    let config = with_pool();
    config.write(
        "apis/pooled/api.toml",
        "name = \"P\"\npath = \"pooled\"\nbackend-url = \"http://a\"\nbackend-id = \"pool\"\n",
    );
    let (message, at) = config.error();
    assert!(message.contains("not both"), "{message}");
    assert_eq!(at, "apis/pooled/api.toml:4:14");

    config.write("apis/pooled/api.toml", "name = \"P\"\npath = \"pooled\"\nbackend-id = \"poool\"\n");
    let (message, at) = config.error();
    assert!(message.contains("unknown backend \"poool\""), "{message}");
    assert_eq!(at, "apis/pooled/api.toml:3:14");
}

#[test]
fn backend_file_errors_point_at_their_key() {
    let config = with_pool();
    config.write("backends/pool.toml", "[[endpoint]]\naddress = \"127.0.0.1:9001\"\nwieght = 2\n");
    let (message, at) = config.error();
    assert!(message.contains("unknown field `wieght`"), "{message}");
    assert_eq!(at, "backends/pool.toml:3:1");

    config.write("backends/pool.toml", "load-balancing = \"random\"\n[[endpoint]]\naddress = \"a:1\"\n");
    assert_eq!(config.error().1, "backends/pool.toml:1:18");

    config.write("backends/pool.toml", "[[endpoint]]\naddress = \"http://a:1\"\n");
    let (message, at) = config.error();
    assert!(message.contains("bad endpoint address"), "{message}");
    assert_eq!(at, "backends/pool.toml:2:11");

    config.write("backends/pool.toml", "[[endpoint]]\naddress = \"a:1\"\nweight = 0\n");
    assert_eq!(config.error().1, "backends/pool.toml:3:10");

    config.write("backends/pool.toml", "tls-server-name = \"a.test\"\n[[endpoint]]\naddress = \"a:1\"\n");
    let (message, at) = config.error();
    assert!(message.contains("add protocol = \"https\""), "{message}");
    assert_eq!(at, "backends/pool.toml:1:19");

    config.write(
        "backends/pool.toml",
        "protocol = \"https\"\ntls-server-name = \"not a name\"\n[[endpoint]]\naddress = \"a:1\"\n",
    );
    let (message, at) = config.error();
    assert!(message.contains("is not a DNS name or an IP address"), "{message}");
    assert_eq!(at, "backends/pool.toml:2:19");

    config.write(
        "backends/pool.toml",
        "tls-client-cert-file = \"certs/c.pem\"\ntls-client-key-file = \"certs/c.key\"\n[[endpoint]]\naddress = \"a:1\"\n",
    );
    let (message, at) = config.error();
    assert!(message.contains("for https backends: add protocol = \"https\""), "{message}");
    assert_eq!(at, "backends/pool.toml:1:24");

    config.write(
        "backends/pool.toml",
        "protocol = \"https\"\ntls-client-cert-file = \"certs/c.pem\"\n[[endpoint]]\naddress = \"a:1\"\n",
    );
    let (message, at) = config.error();
    assert!(message.contains("tls-client-cert-file needs its key: add tls-client-key-file"), "{message}");
    assert_eq!(at, "backends/pool.toml:2:24");

    config.write("backends/pool.toml", "base-path = \"/x\"\n");
    assert!(config.error().0.contains("at least one [[endpoint]]"));

    config.write(
        "backends/pool.toml",
        "[[endpoint]]\naddress = \"a:1\"\n[health.active]\npath = \"/h\"\ninterval-ms = 200\ntimeout-ms = 300\n",
    );
    let (message, at) = config.error();
    assert!(message.contains("longer than its interval"), "{message}");
    assert_eq!(at, "backends/pool.toml:6:14");

    // A broken backend is reported once, not again from the API that names it.
    config.write("backends/pool.toml", "[[endpoint]]\naddress = 1\n");
    assert_eq!(config.error().1, "backends/pool.toml:2:11");
}

#[test]
fn set_backend_service_backend_id_is_checked() {
    let config = with_pool();
    config.write(
        "apis/echo/policy.xml",
        "<policies><inbound><set-backend-service backend-id=\"pool\" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>",
    );
    config.load().unwrap();
    config.write(
        "apis/echo/policy.xml",
        "<policies><inbound><set-backend-service backend-id=\"nope\" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>",
    );
    let (message, at) = config.error();
    assert!(message.contains("unknown backend \"nope\""), "{message}");
    assert_eq!(at, "apis/echo/policy.xml:1:53");
    // An expression is looked up per request.
    config.write(
        "apis/echo/policy.xml",
        "<policies><inbound><set-backend-service backend-id=\"@(&quot;no&quot; + &quot;pe&quot;)\" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>",
    );
    config.load().unwrap();
}
