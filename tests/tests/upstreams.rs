//! Named backends with real processes: round robin and weights across small named servers, a
//! dead endpoint ejected with no client-visible errors (connect-failure retry) and readmitted
//! by its half-open probe, active health checks, `set-backend-service backend-id`, and config
//! errors with file:line:col.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis_tests::http::{self, Connection};
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

/// A tiny keep-alive HTTP server that answers every request with its own name, counts them,
/// and answers `/health` with 200 or 503 as told.
struct NamedServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
}

impl NamedServer {
    fn start(name: &'static str) -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap(), name)
    }

    fn on(listener: TcpListener, name: &'static str) -> Self {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let (counter, health) = (Arc::clone(&hits), Arc::clone(&healthy));
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (counter, health) = (Arc::clone(&counter), Arc::clone(&health));
                std::thread::spawn(move || serve(stream, name, &counter, &health));
            }
        });
        Self { addr, hits, healthy }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

fn serve(stream: TcpStream, name: &str, hits: &AtomicUsize, healthy: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((header, value)) = line.split_once(':') {
                if header.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("");
        let response = if path == "/health" {
            let status = if healthy.load(Ordering::Relaxed) { "200 OK" } else { "503 Service Unavailable" };
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n")
        } else {
            hits.fetch_add(1, Ordering::Relaxed);
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-path: {path}\r\n\r\n{name}", name.len())
        };
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn write(dir: &Path, relative: &str, text: &str) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// An API at `/<id>` without subscription keys on backend `backend`.
fn api(dir: &Path, id: &str, backend: &str) {
    write(
        dir,
        &format!("apis/{id}/api.toml"),
        &format!("name = \"{id}\"\npath = \"{id}\"\nbackend-id = \"{backend}\"\nsubscription-required = false\n"),
    );
}

fn endpoints(servers: &[(&SocketAddr, u32)]) -> String {
    servers.iter().map(|(addr, weight)| format!("[[endpoint]]\naddress = \"{addr}\"\nweight = {weight}\n")).collect()
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

portcullis_tests::on_both_io_backends!(round_robin_alternates_and_weights_distribute);

fn round_robin_alternates_and_weights_distribute(io: &str) {
    let (a, b) = (NamedServer::start("A"), NamedServer::start("B"));
    let config = TempDir::new("config");
    write(
        config.path(),
        "backends/rr.toml",
        &format!(
            "load-balancing = \"round-robin\"\nbase-path = \"/base\"\n{}",
            endpoints(&[(&a.addr, 1), (&b.addr, 1)])
        ),
    );
    write(
        config.path(),
        "backends/weighted.toml",
        &format!("load-balancing = \"weighted\"\n{}", endpoints(&[(&a.addr, 3), (&b.addr, 1)])),
    );
    write(
        config.path(),
        "backends/least.toml",
        &format!("load-balancing = \"least-requests\"\n{}", endpoints(&[(&a.addr, 1), (&b.addr, 1)])),
    );
    api(config.path(), "rr", "rr");
    api(config.path(), "weighted", "weighted");
    api(config.path(), "least", "least");
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));

    // One client connection stays on one worker, whose round robin alternates.
    let mut connection = Connection::open(gateway.addr).unwrap();
    let bodies: Vec<String> = (0..6).map(|_| connection.get("/rr/x", &[]).unwrap().text()).collect();
    assert!(bodies == ["A", "B", "A", "B", "A", "B"] || bodies == ["B", "A", "B", "A", "B", "A"], "{bodies:?}");
    let response = connection.get("/rr/items?q=1", &[]).unwrap();
    assert_eq!(response.header("x-path"), Some("/base/items?q=1"), "the backend's base path");

    let mut counts = [0usize; 2];
    for _ in 0..40 {
        let body = connection.get("/weighted/x", &[]).unwrap().text();
        counts[usize::from(body == "B")] += 1;
    }
    assert_eq!(counts, [30, 10], "smooth weighted round robin on one worker: exactly 3:1");

    // Sequential requests leave both endpoints idle each time: least-requests rotates its ties.
    let mut counts = [0usize; 2];
    for _ in 0..10 {
        let body = connection.get("/least/x", &[]).unwrap().text();
        counts[usize::from(body == "B")] += 1;
    }
    assert_eq!(counts, [5, 5]);
}

portcullis_tests::on_both_io_backends!(a_dead_endpoint_is_ejected_without_client_errors_and_comes_back);

fn a_dead_endpoint_is_ejected_without_client_errors_and_comes_back(io: &str) {
    let live = NamedServer::start("live");
    let dead = closed_port();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let config = TempDir::new("config");
    write(
        config.path(),
        "backends/pool.toml",
        &format!(
            "{}[health.passive]\nconsecutive-failures = 1\nejection-ms = 1500\n",
            endpoints(&[(&live.addr, 1), (&dead_addr, 1)])
        ),
    );
    api(config.path(), "pool", "pool");
    write(config.path(), "backends/down.toml", &endpoints(&[(&dead_addr, 1)]));
    api(config.path(), "down", "down");
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));

    // Every GET succeeds: a connect failure moves the request to the live endpoint.
    for round in 0..30 {
        let response = http::get(gateway.addr, "/pool/x", &[]).unwrap();
        assert_eq!(response.status, 200, "request {round}: {}", response.text());
        assert_eq!(response.text(), "live");
    }

    // `ctl status` shows the ejection (the data plane's report is rewritten every second).
    let dead_name = dead_addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = gateway.status();
        let ejected = status["backends"].as_array().into_iter().flatten().any(|backend| {
            backend["id"] == "pool"
                && backend["endpoints"].as_array().into_iter().flatten().any(|endpoint| {
                    endpoint["address"] == dead_name.as_str() && endpoint["ejected_on_workers"].as_u64() >= Some(1)
                })
        });
        if ejected {
            break;
        }
        assert!(Instant::now() < deadline, "ctl status never showed the ejection: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let table = String::from_utf8_lossy(&gateway.ctl(&["status"]).stdout).into_owned();
    assert!(table.contains(&dead_name), "{table}");

    // With no endpoint left (panic mode picks the dead one), the client gets APIM's 502.
    let down = http::get(gateway.addr, "/down/x", &[]).unwrap();
    assert_eq!(down.status, 502, "{}", down.text());
    assert_eq!(down.json()["statusCode"], 502);

    // The endpoint comes back; after the ejection its half-open probe readmits it.
    let reborn = NamedServer::on(TcpListener::bind(dead_addr).unwrap(), "reborn");
    std::thread::sleep(Duration::from_millis(1_600));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut connection = Connection::open(gateway.addr).unwrap();
    while reborn.hits() < 3 && Instant::now() < deadline {
        let response = connection.get("/pool/x", &[]).unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    assert!(reborn.hits() >= 3, "the readmitted endpoint gets traffic again ({} hits)", reborn.hits());
    // Closed again: round robin between the two.
    let before = (live.hits(), reborn.hits());
    for _ in 0..10 {
        assert_eq!(connection.get("/pool/x", &[]).unwrap().status, 200);
    }
    assert_eq!((live.hits() - before.0, reborn.hits() - before.1), (5, 5));
}

#[test]
fn active_health_checks_take_a_failing_endpoint_out_and_back() {
    let (a, b) = (NamedServer::start("A"), NamedServer::start("B"));
    let config = TempDir::new("config");
    write(
        config.path(),
        "backends/checked.toml",
        &format!(
            "{}[health.active]\npath = \"/health\"\ninterval-ms = 100\ntimeout-ms = 100\nhealthy-threshold = 1\nunhealthy-threshold = 1\n",
            endpoints(&[(&a.addr, 1), (&b.addr, 1)])
        ),
    );
    api(config.path(), "checked", "checked");
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    a.healthy.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(600));
    let before = a.hits();
    for _ in 0..10 {
        assert_eq!(http::get(gateway.addr, "/checked/x", &[]).unwrap().text(), "B");
    }
    assert_eq!(a.hits(), before);
    a.healthy.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(600));
    let mut connection = Connection::open(gateway.addr).unwrap();
    let bodies: Vec<String> = (0..4).map(|_| connection.get("/checked/x", &[]).unwrap().text()).collect();
    assert!(bodies.contains(&"A".to_owned()), "{bodies:?}");
}

#[test]
fn set_backend_service_backend_id_routes_to_the_named_backend() {
    let (a, b) = (NamedServer::start("A"), NamedServer::start("B"));
    let config = TempDir::new("config");
    write(config.path(), "backends/first.toml", &endpoints(&[(&a.addr, 1)]));
    write(config.path(), "backends/second.toml", &format!("base-path = \"/two\"\n{}", endpoints(&[(&b.addr, 1)])));
    api(config.path(), "svc", "first");
    write(
        config.path(),
        "apis/svc/policy.xml",
        r#"<policies>
  <inbound>
    <base />
    <choose>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Backend", "") == "second")">
        <set-backend-service backend-id="second" />
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Backend", "") != "")">
        <set-backend-service backend-id="@(context.Request.Headers.GetValueOrDefault("X-Backend", ""))" />
      </when>
    </choose>
  </inbound>
  <backend><base /></backend>
  <outbound><base /></outbound>
  <on-error><base /></on-error>
</policies>"#,
    );
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    assert_eq!(http::get(gateway.addr, "/svc/x", &[]).unwrap().text(), "A");
    let second = http::get(gateway.addr, "/svc/x", &[("X-Backend", "second")]).unwrap();
    assert_eq!(second.text(), "B");
    assert_eq!(second.header("x-path"), Some("/two/x"), "the named backend's base path");
    // An expression is looked up per request.
    assert_eq!(http::get(gateway.addr, "/svc/x", &[("X-Backend", "first")]).unwrap().text(), "A");
    let unknown = http::get(gateway.addr, "/svc/x", &[("X-Backend", "nope")]).unwrap();
    assert_eq!(unknown.status, 500, "{}", unknown.text());
    assert_eq!(unknown.json()["statusCode"], 500);

    // A reload moves the backend to other endpoints without a restart.
    write(config.path(), "backends/first.toml", &endpoints(&[(&b.addr, 1)]));
    let output = gateway.ctl(&["reload"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(http::get(gateway.addr, "/svc/x", &[]).unwrap().text(), "B");
}

portcullis_tests::on_both_io_backends!(set_backend_service_base_url_computed_per_request_resolves_host_names);

/// `base-url` from an expression naming a host the config never mentions: the worker resolves
/// it (the system resolver, here `/etc/hosts`'s `localhost`) and caches the answer; a name that
/// does not resolve is APIM's 502 and does not stop the next request.
fn set_backend_service_base_url_computed_per_request_resolves_host_names(io: &str) {
    use std::net::ToSocketAddrs as _;
    // Listen where the system resolver sends `localhost` first (127.0.0.1 or ::1 per gai.conf).
    let localhost = ("localhost", 0).to_socket_addrs().unwrap().next().unwrap();
    let server = NamedServer::on(TcpListener::bind(localhost).unwrap(), "L");
    let port = server.addr.port();
    let other = NamedServer::start("O");
    let config = TempDir::new("config");
    write(config.path(), "backends/other.toml", &endpoints(&[(&other.addr, 1)]));
    api(config.path(), "svc", "other");
    write(
        config.path(),
        "apis/svc/policy.xml",
        &format!(
            r#"<policies>
  <inbound>
    <base />
    <set-backend-service base-url="@("http://" + context.Request.Headers.GetValueOrDefault("X-Host", "") + ":{port}/base")" />
  </inbound>
  <backend><base /></backend>
</policies>"#
        ),
    );
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let mut connection = Connection::open(gateway.addr).unwrap();
    for _ in 0..3 {
        let answer = connection.get("/svc/x", &[("X-Host", "LocalHost")]).unwrap();
        assert_eq!((answer.status, answer.text()), (200, "L".to_owned()));
        assert_eq!(answer.header("x-path"), Some("/base/x"));
    }
    assert_eq!(server.hits(), 3);
    let unresolvable = connection.get("/svc/x", &[("X-Host", "no-such-host.invalid")]).unwrap();
    // 502; 504 only if this machine's resolver takes longer than the lookup timeout to say no.
    assert!(matches!(unresolvable.status, 502 | 504), "{} {}", unresolvable.status, unresolvable.text());
    assert_eq!(unresolvable.json()["statusCode"], unresolvable.status);
    let again = http::get(gateway.addr, "/svc/x", &[("X-Host", "localhost")]).unwrap();
    assert_eq!(again.text(), "L");
    assert_eq!(other.hits(), 0);
}

#[test]
fn config_errors_name_file_line_and_column() {
    let config = TempDir::new("config");
    write(config.path(), "backends/pool.toml", "[[endpoint]]\naddress = \"127.0.0.1:9\"\n");
    write(
        config.path(),
        "apis/both/api.toml",
        "name = \"b\"\npath = \"both\"\nbackend-url = \"http://127.0.0.1:9\"\nbackend-id = \"pool\"\n",
    );
    write(config.path(), "apis/unknown/api.toml", "name = \"u\"\npath = \"u\"\nbackend-id = \"poll\"\n");
    let output =
        Command::new(bins::portcullis()).args(["config", "check", "--config"]).arg(config.path()).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("give backend-url or backend-id, not both"), "{stderr}");
    assert!(stderr.contains("apis/both/api.toml:4:14"), "{stderr}");
    assert!(stderr.contains("unknown backend \"poll\" (add backends/poll.toml)"), "{stderr}");
    assert!(stderr.contains("apis/unknown/api.toml:3:14"), "{stderr}");
}
