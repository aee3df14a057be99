//! The gateways under test and the origin behind them, with their configurations: the same
//! routes everywhere (`/api/*` proxied to the origin with upstream keep-alive, `/keyed/*` answered
//! 401 with API Management's JSON body by the gateway itself, `/cached/*` served from the response
//! cache: Portcullis's `cache-lookup`, nginx's `proxy_cache`), one worker, no access log, TLS 1.3
//! with one ECDSA P-256 certificate; session tickets as each gateway issues them by default (wrk
//! never resumes, so every handshake of the handshake scenario is a full one).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::procs::{self, Proc};

/// The origin's two responses.
pub(crate) const SMALL_PATH: &str = "/api/5b";
pub(crate) const LARGE_PATH: &str = "/api/1k";
pub(crate) const SMALL_BODY: &str = "hello";
pub(crate) const LARGE_BODY_BYTES: usize = 1024;
/// Served from each gateway's response cache (Portcullis: `cache-lookup`/`cache-store` on an API
/// whose backend is the origin's `LARGE_PATH`; nginx: `proxy_cache`), after the first request.
pub(crate) const CACHED_PATH: &str = "/cached/1k";
/// How long the cached response lives: longer than any run.
const CACHE_SECONDS: u32 = 3600;
/// The origin's `stub_status`: its request counter measures the busy scenarios' throughput
/// after every connection is up (wrk's own count includes the connection phase).
pub(crate) const ORIGIN_STATUS_PATH: &str = "/origin-status";
/// Proxied to the origin's small response once the request's JWT is verified (the `jwt` scenarios).
pub(crate) const JWT_PATH: &str = "/jwt/5b";
/// Answered 401 by the gateway (Portcullis: an API that requires a subscription key).
pub(crate) const REJECT_PATH: &str = "/keyed/5b";
/// Portcullis's body for a request without a key; nginx and HAProxy send the same bytes.
pub(crate) const REJECT_BODY: &str = "{ \"statusCode\": 401, \"message\": \"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.\" }";
/// The policy-set scenario's route: a key (map), a rate limit and a quota per subscription
/// (Portcullis: `rate-limit-by-key` and `quota-by-key`; nginx: two `limit_req` zones; HAProxy: a
/// stick-table's request rate and count) and three request headers set, then the origin's 5 B.
/// Limits far above the load: every request is counted and served.
pub(crate) const POLICY_PATH: &str = "/limited/5b";
/// The one subscription key the policy-set scenario sends.
pub(crate) const POLICY_KEY: &str = "0123456789abcdef0123456789abcdef";
/// Portcullis's policy for [`POLICY_PATH`].
const POLICY_SET: &str = r#"<policies>
  <inbound>
    <base />
    <rate-limit-by-key calls="2000000000" renewal-period="300" counter-key="@(context.Subscription.Id)" />
    <quota-by-key calls="2000000000" renewal-period="86400" counter-key="@(context.Subscription.Id)" />
    <set-header name="X-Policy-A" exists-action="override"><value>a</value></set-header>
    <set-header name="X-Policy-B" exists-action="override"><value>b</value></set-header>
    <set-header name="X-Policy-C" exists-action="override"><value>c</value></set-header>
  </inbound>
</policies>"#;

/// Open files a peer may use: under the hard limit of 20,000 here, above 2 × 8,000 connections.
const FILES_MAX: u32 = 19_500;
/// nginx keeps up to this many idle upstream connections: enough for every client connection of
/// the busiest scenario, as HAProxy's pool (unbounded by default) and Portcullis's do; with fewer,
/// nginx would open and close an upstream connection for most requests at 8,000 connections.
const UPSTREAM_KEEPALIVE: u32 = 8_192;
/// The origin listens on this many ports and each sample uses the next one: a gateway that
/// stops closes its upstream connections, leaving them in TIME_WAIT for 60 s, and a few thousand
/// of those towards one port would run the next gateway out of ephemeral ports.
pub(crate) const ORIGIN_PORTS: usize = 16;
/// How long a gateway may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    Portcullis,
    Nginx,
    Haproxy,
}

impl Peer {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Peer::Portcullis => "Portcullis",
            Peer::Nginx => "nginx",
            Peer::Haproxy => "HAProxy",
        }
    }
}

/// Where everything lives for this run.
#[derive(Debug, Clone)]
pub(crate) struct Environment {
    pub(crate) dir: PathBuf,
    pub(crate) nginx: PathBuf,
    pub(crate) haproxy: Option<PathBuf>,
    pub(crate) portcullis: PathBuf,
    /// The Portcullis build has `up --listen-tls`.
    pub(crate) portcullis_tls: bool,
    pub(crate) io: String,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) cert_and_key: PathBuf,
    pub(crate) origin_ports: Vec<u16>,
    /// Where Portcullis exports spans in the `observed` scenario.
    pub(crate) span_sink: SocketAddr,
}

/// A started gateway.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) http: SocketAddr,
    pub(crate) tls: Option<SocketAddr>,
    /// Every process of the gateway (Portcullis: control and data plane).
    pub(crate) pids: Vec<i32>,
    process: Proc,
    /// The data plane's own process group (Portcullis).
    extra_group: Option<i32>,
}

impl Running {
    /// SIGTERM, then SIGKILL after a grace period; every process of the gateway is gone after.
    pub(crate) fn stop(mut self) {
        self.process.stop();
        if let Some(group) = self.extra_group.take() {
            procs::kill_group(group);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(group) = self.extra_group.take() {
            procs::kill_group(group);
        }
    }
}

/// `count` distinct free loopback ports (bound together, then released; nothing else on this
/// machine binds fixed ports in the ephemeral range).
pub(crate) fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
    listeners.iter().map(|listener| Ok(listener.local_addr()?.port())).collect()
}

/// Starts the origin: nginx, one worker on cpu0, `return 200` for both responses.
pub(crate) fn start_origin(env: &Environment) -> Result<Proc> {
    let large = "x".repeat(LARGE_BODY_BYTES);
    let listen: String = env.origin_ports.iter().map(|port| format!("    listen 127.0.0.1:{port};\n")).collect();
    let config = format!(
        "{}http {{\n  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 300s;\n  default_type text/plain;\n  \
         server {{\n{listen}    location = {SMALL_PATH} {{ return 200 \"{SMALL_BODY}\"; }}\n    \
         location = {LARGE_PATH} {{ return 200 \"{large}\"; }}\n    \
         location = {ORIGIN_STATUS_PATH} {{ stub_status; }}\n  }}\n}}\n",
        nginx_main(&env.dir, "origin"),
    );
    let path = env.dir.join("origin.conf");
    std::fs::write(&path, config)?;
    let mut command = nginx_command(env, &path, "origin");
    let process = procs::spawn("origin nginx", &mut command, procs::CLIENT_CPU)?;
    for &port in &env.origin_ports {
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), || Ok(()))?;
    }
    Ok(process)
}

/// How a scenario configures the gateway.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Variant {
    /// Portcullis remembers verified tokens (off for the `jwt-nocache` scenario).
    pub(crate) token_cache: bool,
    /// An access log to a file (nginx's default format; Portcullis's JSON records), and for
    /// Portcullis spans of 1% of the requests exported to a sink on loopback (the `observed`
    /// scenario; its metrics are always on).
    pub(crate) observed: bool,
}

/// Share of requests traced in the `observed` scenario.
pub(crate) const OBSERVED_SAMPLING: f64 = 0.01;

/// Starts `peer` with one worker pinned to cpu1, on fresh ports, proxying to the origin's `origin` port.
pub(crate) fn start(env: &Environment, peer: Peer, origin: u16, variant: Variant) -> Result<Running> {
    // Both bound at once: two ports picked one after the other can be the same one.
    let pair = [std::net::TcpListener::bind("127.0.0.1:0")?, std::net::TcpListener::bind("127.0.0.1:0")?];
    let (http, tls) = (pair[0].local_addr()?, pair[1].local_addr()?);
    drop(pair);
    match peer {
        Peer::Portcullis => start_portcullis(env, http, tls, origin, variant),
        Peer::Nginx => {
            let path = env.dir.join("gateway-nginx.conf");
            std::fs::write(&path, nginx_gateway_config(env, http, tls, origin, variant.observed))?;
            let mut command = nginx_command(env, &path, "gateway");
            let mut process = procs::spawn("nginx", &mut command, procs::GATEWAY_CPU)?;
            wait_listening(http, || exited(&mut process, &env.dir.join("gateway.err")))?;
            wait_listening(tls, || exited(&mut process, &env.dir.join("gateway.err")))?;
            Ok(Running { http, tls: Some(tls), pids: vec![process.pid], process, extra_group: None })
        }
        Peer::Haproxy => {
            let binary = env.haproxy.as_ref().context("HAProxy is not installed")?;
            let path = env.dir.join("haproxy.cfg");
            std::fs::write(&path, haproxy_config(env, http, tls, origin))?;
            let log = env.dir.join("haproxy.log");
            let mut command = Command::new(binary);
            command.arg("-db").arg("-f").arg(&path).stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
            let mut process = procs::spawn("haproxy", &mut command, procs::GATEWAY_CPU)?;
            wait_listening(http, || exited(&mut process, &log))?;
            wait_listening(tls, || exited(&mut process, &log))?;
            Ok(Running { http, tls: Some(tls), pids: vec![process.pid], process, extra_group: None })
        }
    }
}

fn start_portcullis(
    env: &Environment,
    http: SocketAddr,
    tls: SocketAddr,
    origin: u16,
    variant: Variant,
) -> Result<Running> {
    let config = env.dir.join("portcullis-config");
    let _ = std::fs::remove_dir_all(&config);
    write_portcullis_config(env, &config, origin)?;
    write_portcullis_jwt(&config, variant.token_cache)?;
    if variant.observed {
        write_portcullis_observed(&config, env.span_sink)?;
    }
    let data = env.dir.join("portcullis-data");
    let _ = std::fs::remove_dir_all(&data);
    let stdout_path = env.dir.join("portcullis.out");
    let log = env.dir.join("portcullis.log");
    let mut command = Command::new(&env.portcullis);
    command
        .arg("up")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["--no-echo-backend", "--listen", &http.to_string(), "--workers", "1", "--io", &env.io])
        .args(["--drain-timeout-ms", "1000", "--listen-management", "127.0.0.1:0", "--listen-ops", "127.0.0.1:0"])
        .args(["--listen-portal", "127.0.0.1:0"])
        .env("PORTCULLIS_LOG", "warn")
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&log)?);
    if env.portcullis_tls {
        command.args(["--listen-tls", &tls.to_string()]);
    }
    let mut process = procs::spawn("portcullis up", &mut command, procs::GATEWAY_CPU)?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !std::fs::read_to_string(&stdout_path).unwrap_or_default().contains("portcullis: gateway listening on") {
        exited(&mut process, &log)?;
        if Instant::now() > deadline {
            bail!("portcullis up did not start within {START_TIMEOUT:?}: {}", read_tail(&log));
        }
        procs::sleep(Duration::from_millis(20))?;
    }
    let pid_file = data.join("run/dataplane.pid");
    let dataplane: i32 = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?
        .trim()
        .parse()
        .context("the data plane's pid")?;
    // The data plane runs in its own process group (control stops it in order on SIGTERM).
    procs::adopt_group(dataplane);
    let tls = env.portcullis_tls.then_some(tls);
    if let Some(tls) = tls {
        wait_listening(tls, || exited(&mut process, &log))?;
    }
    Ok(Running { http, tls, pids: vec![process.pid, dataplane], process, extra_group: Some(dataplane) })
}

/// `/api` proxied without a key; `/keyed` requires one (none is configured: every request is 401).
/// The origin is a named backend whose keep-alive pool matches nginx's `keepalive
/// {UPSTREAM_KEEPALIVE}` (and its 60 s upstream idle timeout), so no gateway pays for new
/// upstream connections that another one reuses.
fn write_portcullis_config(env: &Environment, dir: &Path, origin: u16) -> Result<()> {
    std::fs::create_dir_all(dir.join("backends"))?;
    std::fs::write(
        dir.join("backends/origin.toml"),
        format!(
            "base-path = \"/api\"\n[[endpoint]]\naddress = \"127.0.0.1:{origin}\"\n\
             [pool]\nmax-idle-per-endpoint = {UPSTREAM_KEEPALIVE}\nidle-timeout-ms = 60000\n"
        ),
    )?;
    for (id, path, required) in
        [("plain", "api", false), ("keyed", "keyed", true), ("cached", "cached", false), ("limited", "limited", true)]
    {
        let api = dir.join("apis").join(id);
        std::fs::create_dir_all(&api)?;
        std::fs::write(
            api.join("api.toml"),
            format!(
                "name = \"{id}\"\npath = \"{path}\"\nbackend-id = \"origin\"\nsubscription-required = {required}\n"
            ),
        )?;
    }
    std::fs::write(
        dir.join("apis/cached/policy.xml"),
        format!(
            "<policies><inbound><base /><cache-lookup vary-by-developer=\"false\" vary-by-developer-groups=\"false\" \
             caching-type=\"internal\" /></inbound><backend><base /></backend>\
             <outbound><base /><cache-store duration=\"{CACHE_SECONDS}\" /></outbound><on-error><base /></on-error></policies>"
        ),
    )?;
    std::fs::write(dir.join("apis/limited/policy.xml"), POLICY_SET)?;
    std::fs::create_dir_all(dir.join("subscriptions"))?;
    std::fs::write(
        dir.join("subscriptions/bench.toml"),
        format!(
            "name = \"bench\"\nscope = \"/apis/limited\"\nstate = \"active\"\nprimary-key = \"{POLICY_KEY}\"\nsecondary-key = \"fedcba9876543210fedcba9876543210\"\n"
        ),
    )?;
    if env.portcullis_tls {
        std::fs::write(
            dir.join("gateway.toml"),
            format!(
                "[[tls.certificate]]\ncert-file = \"{}\"\nkey-file = \"{}\"\n",
                env.cert.display(),
                env.key.display()
            ),
        )?;
    }
    Ok(())
}

/// The `/jwt` API: `validate-jwt` with the fixture's RSA key (`n`, `e`) and EC certificate,
/// checking signature, expiry, issuer and audience, as HAProxy's `jwt_verify` rules do.
fn write_portcullis_jwt(dir: &Path, token_cache: bool) -> Result<()> {
    let api = dir.join("apis/jwt");
    std::fs::create_dir_all(&api)?;
    std::fs::create_dir_all(dir.join("certs"))?;
    std::fs::copy(portcullis_tests::jwt::fixtures().join("signer-ec256.pem"), dir.join("certs/bench-ec.pem"))?;
    std::fs::write(
        api.join("api.toml"),
        "name = \"jwt\"\npath = \"jwt\"\nbackend-id = \"origin\"\nsubscription-required = false\n",
    )?;
    let rsa = portcullis_tests::jwt::jwk("rsa-a", "rsa");
    std::fs::write(
        api.join("policy.xml"),
        format!(
            "<policies><inbound><base /><validate-jwt header-name=\"Authorization\" require-scheme=\"Bearer\">\
             <issuer-signing-keys><key id=\"rsa\" n=\"{}\" e=\"{}\" /><key id=\"ec\" certificate-id=\"bench-ec\" /></issuer-signing-keys>\
             <audiences><audience>{}</audience></audiences><issuers><issuer>{}</issuer></issuers>\
             </validate-jwt></inbound></policies>",
            rsa["n"].as_str().unwrap_or_default(),
            rsa["e"].as_str().unwrap_or_default(),
            crate::jwt::AUDIENCE,
            crate::jwt::ISSUER,
        ),
    )?;
    let gateway_toml = dir.join("gateway.toml");
    let mut text = std::fs::read_to_string(&gateway_toml).unwrap_or_default();
    text.push_str("\n[[tls.named-certificate]]\nid = \"bench-ec\"\ncert-file = \"certs/bench-ec.pem\"\n");
    text.push_str(&format!("\n[jwt]\ntoken-cache = {token_cache}\n"));
    std::fs::write(gateway_toml, text)?;
    Ok(())
}

/// `[access-log]` to a file in the data directory and `[tracing]` at [`OBSERVED_SAMPLING`] to the
/// span sink.
fn write_portcullis_observed(dir: &Path, sink: SocketAddr) -> Result<()> {
    let gateway_toml = dir.join("gateway.toml");
    let mut text = std::fs::read_to_string(&gateway_toml).unwrap_or_default();
    text.push_str(&format!(
        "\n[access-log]\ndestination = \"file\"\npath = \"access.log\"\n\
         \n[tracing]\nendpoint = \"http://{sink}/v1/traces\"\nsampling-ratio = {OBSERVED_SAMPLING}\n"
    ));
    std::fs::write(gateway_toml, text)?;
    Ok(())
}

/// The main context shared by both nginx configurations: one process (no master), one worker.
fn nginx_main(dir: &Path, name: &str) -> String {
    format!(
        "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {dir}/{name}.pid;\nerror_log {dir}/{name}.err warn;\n\
         worker_rlimit_nofile {FILES_MAX};\nevents {{ worker_connections {FILES_MAX}; }}\n",
        dir = dir.display()
    )
}

fn nginx_command(env: &Environment, config: &Path, name: &str) -> Command {
    let mut command = Command::new(&env.nginx);
    command
        .arg("-p")
        .arg(&env.dir)
        .arg("-e")
        .arg(env.dir.join(format!("{name}.err")))
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn nginx_gateway_config(env: &Environment, http: SocketAddr, tls: SocketAddr, origin: u16, logged: bool) -> String {
    let mut config = nginx_main(&env.dir, "gateway");
    let access_log = if logged { format!("{}/nginx-access.log", env.dir.display()) } else { "off".to_owned() };
    let _ = write!(
        config,
        "http {{\n  access_log {access_log};\n  keepalive_requests 1000000;\n  keepalive_timeout 300s;\n  \
         proxy_cache_path {dir}/nginx-cache keys_zone=hits:10m;\n  \
         upstream origin {{ server 127.0.0.1:{origin}; keepalive {UPSTREAM_KEEPALIVE}; keepalive_requests 1000000; }}\n  \
         map $http_ocp_apim_subscription_key $subscription {{ default \"\"; \"{POLICY_KEY}\" bench; }}\n  \
         limit_req_zone $subscription zone=rate:1m rate=1000000r/s;\n  \
         limit_req_zone $subscription zone=quota:1m rate=1000000r/s;\n  \
         server {{\n    listen {http};\n    listen {tls} ssl;\n    \
         ssl_certificate {cert};\n    ssl_certificate_key {key};\n    ssl_protocols TLSv1.3;\n    \
         location /api/ {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n    \
         location /keyed/ {{ default_type application/json; return 401 '{REJECT_BODY}'; }}\n    \
         location /cached/ {{ proxy_pass http://origin/api/; proxy_cache hits; proxy_cache_valid 200 {CACHE_SECONDS}s; \
         proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n    \
         location /limited/ {{ if ($subscription = \"\") {{ return 401; }} limit_req zone=rate burst=1000000 nodelay; \
         limit_req zone=quota burst=1000000 nodelay; proxy_set_header X-Policy-A a; proxy_set_header X-Policy-B b; \
         proxy_set_header X-Policy-C c; proxy_pass http://origin/api/; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n",
        cert = env.cert.display(),
        key = env.key.display(),
        dir = env.dir.display(),
    );
    config
}

fn haproxy_config(env: &Environment, http: SocketAddr, tls: SocketAddr, origin: u16) -> String {
    format!(
        "global\n  nbthread 1\n  maxconn 9000\n  \
         ssl-default-bind-options ssl-min-ver TLSv1.3\n\
         defaults\n  mode http\n  maxconn 9000\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n  \
         timeout http-keep-alive 300s\n  http-reuse always\n\
         frontend gateway\n  bind {http}\n  bind {tls} ssl crt {pem}\n  \
         http-request return status 401 content-type application/json string '{REJECT_BODY}' if {{ path_beg /keyed/ }}\n  \
         stick-table type string len 64 size 100k expire 300s store http_req_rate(300s),http_req_cnt\n  \
         http-request set-var(txn.subscription) req.hdr(ocp-apim-subscription-key),map({keys}) if {{ path_beg /limited/ }}\n  \
         http-request return status 401 if {{ path_beg /limited/ }} !{{ var(txn.subscription) -m found }}\n  \
         http-request track-sc0 var(txn.subscription) if {{ path_beg /limited/ }}\n  \
         http-request deny deny_status 429 if {{ path_beg /limited/ }} {{ sc_http_req_rate(0) gt 2000000000 }}\n  \
         http-request deny deny_status 403 if {{ path_beg /limited/ }} {{ sc_http_req_cnt(0) gt 2000000000 }}\n  \
         http-request set-header X-Policy-A a if {{ path_beg /limited/ }}\n  \
         http-request set-header X-Policy-B b if {{ path_beg /limited/ }}\n  \
         http-request set-header X-Policy-C c if {{ path_beg /limited/ }}\n  \
         http-request replace-path ^/limited(/.*) /api\\1\n\
         {jwt}  default_backend origin\n\
         backend origin\n  server origin 127.0.0.1:{origin}\n",
        pem = env.cert_and_key.display(),
        keys = haproxy_keys(env).display(),
        jwt = haproxy_jwt(),
    )
}

/// HAProxy's `jwt_verify` doing the `/jwt` API's check: the signature (RS256 with the RSA key,
/// ES256 with the EC one), then `exp`, `iss` and `aud`; the path then goes to the origin.
fn haproxy_jwt() -> String {
    let fixtures = portcullis_tests::jwt::fixtures();
    // HAProxy 2.6 reads these with PEM_read_bio_PUBKEY: public keys, not certificates (its docs
    // say certificate; a certificate is "file not found" and every token "Unknown certificate").
    let (rsa, ec) = (fixtures.join("rsa-a.pub.pem"), fixtures.join("ec256.pub.pem"));
    let deny = "http-request return status 401 content-type application/json string '{ \"statusCode\": 401, \"message\": \"Invalid JWT.\" }'";
    format!(
        "  acl jwt path_beg /jwt/\n  \
         http-request set-var(txn.bearer) http_auth_bearer if jwt\n  \
         http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg') if jwt\n  \
         http-request set-var(txn.now) date() if jwt\n  \
         http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int') if jwt\n  \
         {deny} if jwt !{{ var(txn.alg) -m str RS256 ES256 }}\n  \
         {deny} if jwt {{ var(txn.alg) -m str RS256 }} !{{ var(txn.bearer),jwt_verify(txn.alg,\"{rsa}\") -m int 1 }}\n  \
         {deny} if jwt {{ var(txn.alg) -m str ES256 }} !{{ var(txn.bearer),jwt_verify(txn.alg,\"{ec}\") -m int 1 }}\n  \
         {deny} if jwt {{ var(txn.exp),sub(txn.now) -m int lt 0 }}\n  \
         {deny} if jwt !{{ var(txn.bearer),jwt_payload_query('$.iss') -m str {issuer} }}\n  \
         {deny} if jwt !{{ var(txn.bearer),jwt_payload_query('$.aud') -m str {audience} }}\n  \
         http-request replace-path /jwt/(.*) /api/\\1 if jwt\n",
        rsa = rsa.display(),
        ec = ec.display(),
        issuer = crate::jwt::ISSUER,
        audience = crate::jwt::AUDIENCE,
    )
}

/// HAProxy's map of subscription keys (written next to its configuration).
fn haproxy_keys(env: &Environment) -> PathBuf {
    let path = env.dir.join("haproxy-keys.map");
    // Written before HAProxy starts; a failure shows as HAProxy's own start-up error.
    let _ = std::fs::write(&path, format!("{POLICY_KEY} bench\n"));
    path
}

/// Waits until `addr` accepts connections; `check` fails when the process died meanwhile.
fn wait_listening(addr: SocketAddr, mut check: impl FnMut() -> Result<()>) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        check()?;
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after {START_TIMEOUT:?}");
        }
        procs::sleep(Duration::from_millis(20))?;
    }
    Ok(())
}

fn exited(process: &mut Proc, log: &Path) -> Result<()> {
    if process.running() {
        return Ok(());
    }
    bail!("{} exited during start-up: {}", process.name, read_tail(log))
}

fn read_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
