//! The response and value caches through the running gateway, on both I/O backends: a hit never
//! reaches the backend (counted there), the key varies by the listed headers and query
//! parameters only, entries expire, `Authorization` and non-GET requests are not cached, only
//! 200 unless `cache-response`, `Cache-Control: no-store` from the backend, a large response
//! streams whole and unstored, the value policies, and Redis (up and down) as the external cache.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_tests::backend::{Reply, Request, ScriptedBackend};
use portcullis_tests::http::Connection;
use portcullis_tests::redis::{RedisServer, free_port};
use portcullis_tests::{Gateway, GatewayOptions, TempDir};

/// The entry limit the tests configure: a 40 KB response is stored, a 200 KB one is not.
const ENTRY_SIZE_KB: u64 = 64;

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A backend that numbers its responses (`n=<count>`) so a test tells a fresh one from a cached one.
fn numbering_backend() -> ScriptedBackend {
    let count = Arc::new(AtomicU64::new(0));
    ScriptedBackend::start(move |request: &Request| {
        let n = count.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.target.split('?').next().unwrap_or_default();
        let body = format!("n={n} {}", request.target);
        match path.rsplit('/').next().unwrap_or_default() {
            "missing" => Reply::new(404).header("Content-Type", "text/plain").body(body),
            "nostore" => Reply::new(200).header("Cache-Control", "no-store").body(body),
            "big" => Reply::new(200).chunked((0..40).map(|_| vec![b'b'; 5000]).collect()),
            "medium" => Reply::new(200).chunked((0..8).map(|i| vec![b'a' + i; 5000]).collect()),
            _ => Reply::new(200).header("Content-Type", "text/plain").header("Cache-Control", "max-age=5").body(body),
        }
    })
}

const LOOKUP: &str = r#"<cache-lookup vary-by-developer="false" vary-by-developer-groups="false" downstream-caching-type="public" must-revalidate="true" caching-type="CACHING">
      <vary-by-header>Accept</vary-by-header>
      <vary-by-query-parameter>version</vary-by-query-parameter>
    </cache-lookup>"#;

/// An API `id` at `/id` on `backend`, caching its GETs (`caching-type`), storing for the
/// duration in `X-Ttl` (60 s without), and `cache-response` when `any_status`.
fn cached_api(dir: &Path, id: &str, backend: &ScriptedBackend, caching: &str, extra: &str, store: &str) {
    write(
        dir,
        &format!("apis/{id}/api.toml"),
        &format!(
            "name = \"{id}\"\npath = \"{id}\"\nbackend-url = \"http://{}/b\"\nsubscription-required = false\n",
            backend.addr
        ),
    );
    write(dir, &format!("apis/{id}/operations/all.toml"), "method = \"*\"\nurl-template = \"/*\"\n");
    let lookup = LOOKUP.replace("CACHING", caching).replace("must-revalidate=\"true\"", extra);
    write(
        dir,
        &format!("apis/{id}/policy.xml"),
        &format!(
            r#"<policies>
  <inbound><base />{lookup}</inbound>
  <backend><base /></backend>
  <outbound><base /><cache-store duration="@(int.Parse(context.Request.Headers.GetValueOrDefault("X-Ttl", "60")))" {store} />
    <cache-store-value key="k-last-{id}" value="@(&quot;status &quot; + context.Response.StatusCode + &quot; &quot; + context.Request.Url.Path)" duration="60" caching-type="internal" /></outbound>
  <on-error><base /></on-error>
</policies>"#
        ),
    );
}

/// An API `id` whose PUT stores `X-Value` under `X-Key`, DELETE removes it and GET answers it.
fn values_api(dir: &Path, id: &str, caching: &str) {
    write(
        dir,
        &format!("apis/{id}/api.toml"),
        &format!(
            "name = \"{id}\"\npath = \"{id}\"\nbackend-url = \"http://127.0.0.1:9/\"\nsubscription-required = false\n"
        ),
    );
    write(dir, &format!("apis/{id}/operations/all.toml"), "method = \"*\"\nurl-template = \"/*\"\n");
    let key = r#"@("k-" + context.Request.Headers.GetValueOrDefault("X-Key", ""))"#;
    write(
        dir,
        &format!("apis/{id}/policy.xml"),
        &format!(
            r#"<policies>
  <inbound>
    <base />
    <choose>
      <when condition="@(context.Request.Method == &quot;PUT&quot;)">
        <cache-store-value key='{key}' value="@(context.Request.Headers.GetValueOrDefault(&quot;X-Value&quot;, &quot;&quot;))" duration="@(int.Parse(context.Request.Headers.GetValueOrDefault(&quot;X-Ttl&quot;, &quot;60&quot;)))" caching-type="{caching}" />
        <return-response><set-status code="204" reason="No Content" /></return-response>
      </when>
      <when condition="@(context.Request.Method == &quot;DELETE&quot;)">
        <cache-remove-value key='{key}' caching-type="{caching}" />
        <return-response><set-status code="204" reason="No Content" /></return-response>
      </when>
    </choose>
    <cache-lookup-value key='{key}' variable-name="found" default-value="(none)" caching-type="{caching}" />
    <return-response><set-body>@((string)context.Variables["found"])</set-body></return-response>
  </inbound>
  <backend><base /></backend>
  <outbound><base /></outbound>
  <on-error><base /></on-error>
</policies>"#
        ),
    );
}

fn config(backend: &ScriptedBackend, redis_url: Option<&str>) -> TempDir {
    let dir = TempDir::new("config");
    let redis = redis_url.map(|url| format!("redis-url = \"{url}\"\n")).unwrap_or_default();
    write(
        dir.path(),
        "gateway.toml",
        &format!("[cache]\ninternal-size-mb = 8\nentry-size-kb = {ENTRY_SIZE_KB}\n{redis}"),
    );
    cached_api(dir.path(), "c", backend, "internal", "must-revalidate=\"true\"", "");
    cached_api(dir.path(), "any", backend, "internal", "must-revalidate=\"false\"", "cache-response=\"true\"");
    cached_api(dir.path(), "private", backend, "internal", "allow-private-response-caching=\"true\"", "");
    cached_api(dir.path(), "ext", backend, "external", "must-revalidate=\"true\"", "");
    // Keyed by developer: each subscription (one developer each) has its own entries.
    cached_api(dir.path(), "dev", backend, "internal", "must-revalidate=\"true\"", "");
    let lookup =
        LOOKUP.replace("CACHING", "internal").replace("vary-by-developer=\"false\"", "vary-by-developer=\"true\"");
    let policy = std::fs::read_to_string(dir.path().join("apis/dev/policy.xml")).unwrap();
    let policy = policy.replace(&LOOKUP.replace("CACHING", "internal"), &lookup);
    write(dir.path(), "apis/dev/policy.xml", &policy);
    let api = std::fs::read_to_string(dir.path().join("apis/dev/api.toml")).unwrap();
    write(
        dir.path(),
        "apis/dev/api.toml",
        &api.replace("subscription-required = false", "subscription-required = true"),
    );
    for developer in ["alice", "bob"] {
        write(
            dir.path(),
            &format!("subscriptions/{developer}.toml"),
            &format!(
                "name = \"{developer}\"\nscope = \"/apis/dev\"\nprimary-key = \"{developer}-key-0123456789\"\nsecondary-key = \"{developer}-key-9876543210\"\n"
            ),
        );
    }
    values_api(dir.path(), "values", "internal");
    values_api(dir.path(), "xvalues", "external");
    dir
}

fn raw(connection: &mut Connection, request: &str) -> portcullis_tests::http::Response {
    connection.round_trip(request.as_bytes()).unwrap()
}

fn backend_hits(backend: &ScriptedBackend, prefix: &str) -> usize {
    backend.requests_to(prefix).len()
}

fn cache_counter(gateway: &Gateway, name: &str) -> u64 {
    let status = gateway.status();
    status["workers"].as_array().unwrap().iter().map(|worker| worker[name].as_u64().unwrap_or(0)).sum()
}

portcullis_tests::on_both_io_backends!(
    a_hit_is_served_without_the_backend_and_varies_by_what_is_listed,
    vary_by_developer_keys_by_subscription,
    only_get_without_authorization_and_only_200_are_cached,
    a_large_response_streams_whole_and_unstored,
    value_policies_store_find_and_remove,
    a_redis_that_is_down_is_a_miss_never_an_error,
);

portcullis_tests::on_both_io_backends!(
    ignore_if(no_redis, "redis-server is not installed here (apt-get install redis-server), or io_uring is refused"):
    redis_is_the_external_cache,
);

fn a_hit_is_served_without_the_backend_and_varies_by_what_is_listed(io: &str) {
    let backend = numbering_backend();
    let config = config(&backend, None);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let mut connection = Connection::open(gateway.addr).unwrap();

    let first = connection.get("/c/items?version=1&other=a", &[("Accept", "text/plain")]).unwrap();
    assert_eq!((first.status, first.text()), (200, "n=1 /b/items?version=1&other=a".to_owned()));
    // The miss stored the response: its client gets the downstream Cache-Control a hit gets
    // (the backend's `max-age=5` replaced), with the whole duration.
    assert_eq!(first.header("cache-control"), Some("public, max-age=60, must-revalidate"));
    // The hit: the same bytes, with the downstream Cache-Control, and the backend never sees it.
    connection
        .send_raw(b"GET /c/items?other=b&version=1 HTTP/1.1\r\nHost: gateway.test\r\nAccept: text/plain\r\n\r\n")
        .unwrap();
    let head = String::from_utf8(connection.read_through_empty_line().unwrap()).unwrap();
    let max_age = head.split("max-age=").nth(1).and_then(|rest| rest.split(',').next()).unwrap().to_owned();
    assert!(["59", "60"].contains(&max_age.as_str()), "{head}");
    assert_eq!(
        head,
        format!(
            "HTTP/1.1 200 Scripted\r\nContent-Type: text/plain\r\nContent-Length: 30\r\nCache-Control: public, max-age={max_age}, must-revalidate\r\n\r\n"
        )
    );
    let mut body = [0u8; 30];
    let mut read = 0;
    while read < body.len() {
        read += connection.read_some(&mut body[read..]).unwrap();
    }
    assert_eq!(&body, b"n=1 /b/items?version=1&other=a", "unlisted parameters do not vary the key");
    assert_eq!(backend_hits(&backend, "/b/items"), 1);

    // A listed header or query parameter with another value is another entry.
    assert_eq!(
        connection.get("/c/items?version=2", &[("Accept", "text/plain")]).unwrap().text(),
        "n=2 /b/items?version=2"
    );
    assert_eq!(
        connection.get("/c/items?version=1", &[("Accept", "application/json")]).unwrap().text(),
        "n=3 /b/items?version=1"
    );
    assert_eq!(
        connection.get("/c/items?version=1", &[("Accept", "application/json")]).unwrap().text(),
        "n=3 /b/items?version=1"
    );
    assert_eq!(backend_hits(&backend, "/b/items"), 3);

    // Conditional headers do not reach the backend on a miss: it must send a whole response.
    let unstored = connection.get("/c/nostore", &[]).unwrap();
    assert_eq!(unstored.header("cache-control"), Some("no-store"), "a response not stored is relayed as it came");
    let fresh = connection.get("/c/cond", &[("If-None-Match", "\"x\""), ("Cache-Control", "no-cache")]).unwrap();
    assert_eq!(fresh.status, 200);
    let sent = backend.requests_to("/b/cond");
    assert_eq!((sent[0].header("if-none-match"), sent[0].header("cache-control")), (None, None));

    // An entry lives for cache-store's duration.
    assert_eq!(connection.get("/c/short", &[("X-Ttl", "1")]).unwrap().status, 200);
    assert_eq!(connection.get("/c/short", &[]).unwrap().text(), connection.get("/c/short", &[]).unwrap().text());
    assert_eq!(backend_hits(&backend, "/b/short"), 1);
    std::thread::sleep(Duration::from_millis(2100));
    let _ = connection.get("/c/short", &[]).unwrap();
    assert_eq!(backend_hits(&backend, "/b/short"), 2, "the entry expired after 1 s");

    // Hits and misses are counted in the stats region (ctl status).
    portcullis_tests::wait::eventually_within(Duration::from_secs(5), "the cache counters", || {
        cache_counter(&gateway, "cache_hits") >= 4 && cache_counter(&gateway, "cache_misses") >= 5
    });
    let text = gateway.ctl(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains(" hits, "), "{text}");
}

fn vary_by_developer_keys_by_subscription(io: &str) {
    let backend = numbering_backend();
    let config = config(&backend, None);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let mut connection = Connection::open(gateway.addr).unwrap();
    let as_developer = |connection: &mut Connection, developer: &str| {
        let key = format!("{developer}-key-0123456789");
        connection.get("/dev/profile", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap().text()
    };
    assert_eq!(as_developer(&mut connection, "alice"), "n=1 /b/profile");
    assert_eq!(as_developer(&mut connection, "alice"), "n=1 /b/profile");
    assert_eq!(as_developer(&mut connection, "bob"), "n=2 /b/profile", "another developer, another entry");
    assert_eq!(as_developer(&mut connection, "bob"), "n=2 /b/profile");
    // The secondary key is the same subscription, so the same developer.
    let secondary = connection.get("/dev/profile", &[("Ocp-Apim-Subscription-Key", "alice-key-9876543210")]).unwrap();
    assert_eq!(secondary.text(), "n=1 /b/profile");
    assert_eq!(backend_hits(&backend, "/b/profile"), 2);
}

fn only_get_without_authorization_and_only_200_are_cached(io: &str) {
    let backend = numbering_backend();
    let config = config(&backend, None);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let mut connection = Connection::open(gateway.addr).unwrap();

    // POST and HEAD are not looked up, and their responses are not stored for GET.
    for _ in 0..2 {
        let posted = raw(&mut connection, "POST /c/post HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(posted.status, 200);
    }
    assert_eq!(backend_hits(&backend, "/b/post"), 2);
    assert_eq!(connection.get("/c/post", &[]).unwrap().status, 200);
    assert_eq!(backend_hits(&backend, "/b/post"), 3, "a POST's response is not a GET's entry");

    // A request with Authorization is neither looked up nor stored...
    for _ in 0..2 {
        assert_eq!(connection.get("/c/auth", &[("Authorization", "Bearer secret")]).unwrap().status, 200);
    }
    assert_eq!(backend_hits(&backend, "/b/auth"), 2);
    // ... unless allow-private-response-caching says so.
    for _ in 0..2 {
        assert_eq!(connection.get("/private/auth", &[("Authorization", "Bearer secret")]).unwrap().status, 200);
    }
    assert_eq!(backend_hits(&backend, "/b/auth"), 3);

    // Only 200 is stored, unless cache-response="true".
    for _ in 0..2 {
        assert_eq!(connection.get("/c/missing", &[]).unwrap().status, 404);
    }
    assert_eq!(backend_hits(&backend, "/b/missing"), 2);
    for _ in 0..2 {
        assert_eq!(connection.get("/any/missing", &[]).unwrap().status, 404);
    }
    assert_eq!(backend_hits(&backend, "/b/missing"), 3, "cache-response=\"true\" stores a 404");

    // The backend's Cache-Control: no-store keeps a response out.
    for _ in 0..2 {
        assert_eq!(connection.get("/c/nostore", &[]).unwrap().status, 200);
    }
    assert_eq!(backend_hits(&backend, "/b/nostore"), 2);
}

fn a_large_response_streams_whole_and_unstored(io: &str) {
    let backend = numbering_backend();
    let config = config(&backend, None);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let mut connection = Connection::open(gateway.addr).unwrap();

    // 40 KB, streamed by the relay (over the 16 KiB that go out with the head) and stored.
    let expected: Vec<u8> = (0..8u8).flat_map(|i| vec![b'a' + i; 5000]).collect();
    let first = connection.get("/c/medium", &[]).unwrap();
    let second = connection.get("/c/medium", &[]).unwrap();
    assert_eq!((first.body == expected, second.body == expected), (true, true));
    assert_eq!(second.header("transfer-encoding"), Some("chunked"));
    assert_eq!(backend_hits(&backend, "/b/medium"), 1);

    // 200 KB: past the 64 KB entry limit, relayed whole every time, never stored.
    for _ in 0..2 {
        let big = connection.get("/c/big", &[]).unwrap();
        assert_eq!(big.body.len(), 200_000);
        assert!(big.body.iter().all(|&b| b == b'b'));
    }
    assert_eq!(backend_hits(&backend, "/b/big"), 2);
}

fn value_policies_store_find_and_remove(io: &str) {
    let backend = numbering_backend();
    let config = config(&backend, None);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let mut connection = Connection::open(gateway.addr).unwrap();
    value_round_trips(&mut connection, "/values");

    // A value stored by the outbound section of another API (the section suspends and resumes
    // around it, then the response is relayed; the request URL is the backend's by then).
    let response = connection.get("/c/outbound", &[]).unwrap();
    assert_eq!((response.status, response.text()), (200, "n=1 /b/outbound".to_owned()));
    assert_eq!(connection.get("/values/v", &[("X-Key", "last-c")]).unwrap().text(), "status 200 /b/outbound");
}

/// Stores, finds, expires and removes values through the values API at `prefix`.
fn value_round_trips(connection: &mut Connection, prefix: &str) {
    let put = |connection: &mut Connection, key: &str, value: &str, ttl: &str| {
        let request = format!(
            "PUT {prefix}/v HTTP/1.1\r\nHost: g\r\nX-Key: {key}\r\nX-Value: {value}\r\nX-Ttl: {ttl}\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(raw(connection, &request).status, 204);
    };
    let get = |connection: &mut Connection, key: &str| {
        connection.get(&format!("{prefix}/v"), &[("X-Key", key)]).unwrap().text()
    };
    assert_eq!(get(connection, "a"), "(none)", "a miss gives the default value");
    put(connection, "a", "alpha", "60");
    put(connection, "b", "beta", "1");
    assert_eq!(get(connection, "a"), "alpha");
    assert_eq!(get(connection, "b"), "beta");
    let request = format!("DELETE {prefix}/v HTTP/1.1\r\nHost: g\r\nX-Key: a\r\n\r\n");
    assert_eq!(raw(connection, &request).status, 204);
    portcullis_tests::wait::eventually_within(Duration::from_secs(5), "the removal", || {
        get(connection, "a") == "(none)"
    });
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(get(connection, "b"), "(none)", "a value expires after its duration");
}

fn redis_is_the_external_cache(io: &str) {
    let redis = RedisServer::start();
    let backend = numbering_backend();
    let config = config(&backend, Some(&redis.url()));
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let mut connection = Connection::open(gateway.addr).unwrap();

    let first = connection.get("/ext/items", &[]).unwrap();
    // The store is queued to the side thread: the next request finds it once Redis has it.
    portcullis_tests::wait::eventually_within(Duration::from_secs(5), "the entry in Redis", || {
        redis.keys("r:*").contains("items")
    });
    let second = connection.get("/ext/items", &[]).unwrap();
    assert_eq!(first.body, second.body);
    assert_eq!(backend_hits(&backend, "/b/items"), 1, "the hit came from Redis");
    // The key: API, operation, path, then the listed query parameter and header (absent: `-`).
    let ttl = redis.command("TTL r:3:ext3:all10:/ext/itemsq7:version-h6:accept-\r\n").unwrap();
    assert!(ttl == ":60\r\n" || ttl == ":59\r\n", "{ttl:?}");

    value_round_trips(&mut connection, "/xvalues");
}

fn a_redis_that_is_down_is_a_miss_never_an_error(io: &str) {
    let backend = numbering_backend();
    // With a password: it appears in no log line.
    let down = format!("redis://:pa55-w0rd-secret@127.0.0.1:{}", free_port());
    let config = config(&backend, Some(&down));
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let mut connection = Connection::open(gateway.addr).unwrap();
    for n in 1..=3 {
        let response = connection.get("/ext/items", &[]).unwrap();
        assert_eq!((response.status, response.text()), (200, format!("n={n} /b/items")));
    }
    let put = raw(
        &mut connection,
        "PUT /xvalues/v HTTP/1.1\r\nHost: g\r\nX-Key: a\r\nX-Value: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(put.status, 204);
    assert_eq!(connection.get("/xvalues/v", &[("X-Key", "a")]).unwrap().text(), "(none)");
    // The internal cache still works beside it.
    let _ = connection.get("/c/items", &[]).unwrap();
    let _ = connection.get("/c/items", &[]).unwrap();
    assert_eq!(backend_hits(&backend, "/b/items"), 4);
    portcullis_tests::wait::eventually_within(Duration::from_secs(5), "the external errors counted", || {
        cache_counter(&gateway, "cache_external_errors") >= 3
    });
    let log = gateway.log();
    let warnings = log.matches("external cache").count();
    assert!(warnings >= 1, "logged: {log}");
    assert!(warnings <= 2, "logged once per outage, not per request: {log}");
    assert!(!log.contains("pa55-w0rd-secret"), "the password is never logged: {log}");
}
