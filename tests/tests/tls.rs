//! TLS termination end to end: `--listen-tls` with certificates from the config directory, a
//! rustls client over real sockets. SNI picks the certificate, TLS 1.2 and 1.3 both work, ALPN is
//! `http/1.1`, sessions resume, requests reach the backend with `X-Forwarded-Proto: https`, a
//! reload serves a new certificate, a bad key is refused while the old one keeps serving,
//! client authentication admits only clients with a certificate from the configured CA, and
//! `https://` backends are verified against `backend-ca-file`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis_tests::http::{self, Connection, RESPONSE_TIMEOUT};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins, on_both_io_backends};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, RootCertStore, StreamOwned};

type TlsConnection = Connection<StreamOwned<ClientConnection, TcpStream>>;

/// A test CA and what it issues.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate (PEM and DER) with its private key (PEM).
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Portcullis test CA");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Self { ca_pem: ca.pem(), ca_der: ca.der().clone(), issuer: Issuer::new(params, key) }
    }

    fn issue(&self, names: &[&str]) -> Issued {
        self.issue_with(names, |_| {})
    }

    /// Issues a certificate for `names` after `adjust` had its say (serial, dates).
    fn issue_with(&self, names: &[&str], adjust: impl FnOnce(&mut CertificateParams)) -> Issued {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    /// A revocation list (PEM) of this CA that revokes the serial numbers `serials`.
    fn crl(&self, serials: &[u8]) -> String {
        let now = time::OffsetDateTime::now_utc();
        let revoked = serials.iter().map(|serial| rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(&[*serial]),
            revocation_time: now,
            reason_code: None,
            invalidity_date: None,
        });
        let params = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(7),
            crl_number: rcgen::SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: revoked.collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        Arc::new(roots)
    }
}

/// The quickstart config plus `certs/` and a `[tls]` section appended to `gateway.toml`.
fn config_with_tls(certificates: &[(&str, &Issued)], tls_table: &str) -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    let mut gateway = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    gateway.push_str(&format!("\n[tls]\n{tls_table}\n"));
    for (name, issued) in certificates {
        write_certificate(dir.path(), name, issued);
        gateway.push_str(&format!(
            "\n[[tls.certificate]]\ncert-file = \"certs/{name}.pem\"\nkey-file = \"certs/{name}.key\"\n"
        ));
    }
    std::fs::write(dir.path().join("gateway.toml"), gateway).unwrap();
    dir
}

fn write_certificate(config: &Path, name: &str, issued: &Issued) {
    std::fs::write(config.join(format!("certs/{name}.pem")), &issued.cert_pem).unwrap();
    std::fs::write(config.join(format!("certs/{name}.key")), &issued.key_pem).unwrap();
}

fn client_config(roots: Arc<RootCertStore>, versions: &[&'static rustls::SupportedProtocolVersion]) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// A client that trusts `roots` and presents `certificate` (mTLS), ALPN `http/1.1`.
fn certified_client(roots: Arc<RootCertStore>, certificate: &Issued) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![certificate.der.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn all_versions() -> Vec<&'static rustls::SupportedProtocolVersion> {
    vec![&rustls::version::TLS13, &rustls::version::TLS12]
}

/// Connects and completes the handshake.
fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> std::io::Result<TlsConnection> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let tls = ClientConnection::new(Arc::clone(config), server_name).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(tls, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(Connection::over(stream))
}

fn peer_certificate(connection: &TlsConnection) -> CertificateDer<'static> {
    connection.stream().conn.peer_certificates().expect("server certificate")[0].clone()
}

fn get_echo(connection: &mut TlsConnection, key: &str) -> serde_json::Value {
    let response = connection.get("/echo/hello", &[("Ocp-Apim-Subscription-Key", key)]).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

/// A verifier that accepts any server certificate: for the cases where the name deliberately
/// does not match (no SNI, an unknown name), to see which certificate the gateway picked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn unverified_config(sni: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.enable_sni = sni;
    Arc::new(config)
}

fn start(config: &TempDir, io: &str) -> Gateway {
    let mut options = GatewayOptions::new(io).config(config.path());
    options.extra_args = vec!["--listen-tls".into(), "127.0.0.1:0".into()];
    Gateway::start(options)
}

/// SNI, versions, ALPN, keep-alive proxying with `X-Forwarded-Proto: https`, resumption.
fn serves_https_by_sni(io: &str) {
    let pki = Pki::new();
    let api = pki.issue(&["api.test"]);
    let admin = pki.issue(&["admin.test", "*.admin.test"]);
    let config = config_with_tls(&[("api", &api), ("admin", &admin)], "");
    let gateway = start(&config, io);
    let addr = gateway.tls_addr.expect("the https ready line");
    let key = gateway.demo_key.clone().expect("demo key");

    // Each name gets its own certificate; no SNI or an unknown name gets the first.
    let verified = Arc::new(client_config(pki.roots(), &all_versions()));
    assert_eq!(peer_certificate(&connect(addr, &verified, "api.test").unwrap()), api.der);
    assert_eq!(peer_certificate(&connect(addr, &verified, "admin.test").unwrap()), admin.der);
    assert_eq!(peer_certificate(&connect(addr, &verified, "eu.admin.test").unwrap()), admin.der);
    assert_eq!(peer_certificate(&connect(addr, &unverified_config(false), "admin.test").unwrap()), api.der);
    assert_eq!(peer_certificate(&connect(addr, &unverified_config(true), "other.test").unwrap()), api.der);

    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = Arc::new(client_config(pki.roots(), &[version]));
        let mut first = connect(addr, &client, "api.test").unwrap();
        let conn = &first.stream().conn;
        assert_eq!(conn.protocol_version(), Some(version.version));
        assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(conn.handshake_kind(), Some(HandshakeKind::Full));
        // Keep-alive: two requests on one connection, proxied to the echo backend; the second after
        // the connection was idle for longer than it takes to park (tests/parked_tls.rs).
        for _ in 0..2 {
            let echoed = get_echo(&mut first, &key);
            assert_eq!(echoed["headers"]["x-forwarded-proto"][0], "https", "{echoed}");
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
        // The second connection resumes the first one's session (the client config keeps it).
        let mut second = connect(addr, &client, "api.test").unwrap();
        assert_eq!(second.stream().conn.handshake_kind(), Some(HandshakeKind::Resumed), "{version:?}");
        get_echo(&mut second, &key);
    }

    // `ctl status` shows the TLS listener.
    assert_eq!(gateway.status()["dataplane"]["listen_tls"], addr.to_string());

    // Plain HTTP keeps working next to TLS, and says so.
    let plain = portcullis_tests::http::get(gateway.addr, "/echo/hello", &[("Ocp-Apim-Subscription-Key", &key)]);
    assert_eq!(plain.unwrap().json()["headers"]["x-forwarded-proto"][0], "http");
}

on_both_io_backends!(serves_https_by_sni);

#[test]
fn reload_serves_new_certificates_and_refuses_bad_keys() {
    let pki = Pki::new();
    let old = pki.issue(&["api.test"]);
    let config = config_with_tls(&[("api", &old)], "");
    let gateway = start(&config, "epoll");
    let addr = gateway.tls_addr.expect("the https ready line");
    let client = Arc::new(client_config(pki.roots(), &all_versions()));
    let mut kept = connect(addr, &client, "api.test").unwrap();
    assert_eq!(peer_certificate(&kept), old.der);

    let new = pki.issue(&["api.test"]);
    write_certificate(config.path(), "api", &new);
    let reload = gateway.ctl(&["reload"]);
    assert!(reload.status.success(), "reload failed: {}", String::from_utf8_lossy(&reload.stderr));
    let fresh = Arc::new(client_config(pki.roots(), &all_versions()));
    assert_eq!(peer_certificate(&connect(addr, &fresh, "api.test").unwrap()), new.der);
    // A connection opened before the reload goes on.
    get_echo(&mut kept, gateway.demo_key.as_deref().unwrap());
    // The last-good snapshot on disk now holds private keys: owner-only, in an owner-only directory.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&gateway.data().join("snapshots/last-good.snap")), 0o600);
    assert_eq!(mode(&gateway.data().join("snapshots")), 0o700);
    assert_eq!(mode(&gateway.data()), 0o700);

    // A key that is not the certificate's, then one that is not a key at all: both refused with
    // the file named, and the running certificate keeps serving.
    let stranger = pki.issue(&["api.test"]);
    std::fs::write(config.path().join("certs/api.key"), &stranger.key_pem).unwrap();
    for (case, expected) in
        [("mismatched key", "the private key is not the certificate's key"), ("not a key", "no private key found")]
    {
        if case == "not a key" {
            std::fs::write(config.path().join("certs/api.key"), "hello\n").unwrap();
        }
        let check = std::process::Command::new(bins::portcullis())
            .args(["config", "check", "--config"])
            .arg(config.path())
            .output()
            .unwrap();
        let check_text = String::from_utf8_lossy(&check.stderr).into_owned() + &String::from_utf8_lossy(&check.stdout);
        assert!(!check.status.success(), "{case}: config check passed: {check_text}");
        assert!(check_text.contains("certs/api.key") && check_text.contains(expected), "{case}: {check_text}");
        assert!(check_text.contains("gateway.toml:"), "{case}: no file:line:col: {check_text}");

        let reload = gateway.ctl(&["reload"]);
        let reload_text =
            String::from_utf8_lossy(&reload.stderr).into_owned() + &String::from_utf8_lossy(&reload.stdout);
        assert!(!reload.status.success(), "{case}: reload passed: {reload_text}");
        assert!(reload_text.contains(expected), "{case}: {reload_text}");
        let fresh = Arc::new(client_config(pki.roots(), &all_versions()));
        assert_eq!(peer_certificate(&connect(addr, &fresh, "api.test").unwrap()), new.der, "{case}");
    }
}

#[test]
fn client_auth_required_admits_only_certificates_from_the_ca() {
    let pki = Pki::new();
    let server = pki.issue(&["api.test"]);
    let config = config_with_tls(&[("api", &server)], "client-auth = \"required\"\nclient-ca-file = \"certs/ca.pem\"");
    std::fs::write(config.path().join("certs/ca.pem"), &pki.ca_pem).unwrap();
    let gateway = start(&config, "epoll");
    let addr = gateway.tls_addr.expect("the https ready line");
    let key = gateway.demo_key.clone().expect("demo key");

    // Without a certificate: the handshake (TLS 1.2) or the first exchange (TLS 1.3, where the
    // server's verdict arrives after the client's Finished) fails.
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let anonymous = Arc::new(client_config(pki.roots(), &[version]));
        let refused = connect(addr, &anonymous, "api.test")
            .and_then(|mut connection| connection.get("/echo/hello", &[("Ocp-Apim-Subscription-Key", &key)]));
        assert!(refused.is_err(), "{version:?}: a client without a certificate got {refused:?}");
    }

    // A certificate from another CA is refused too.
    let other_pki = Pki::new();
    for (pki_used, admitted) in [(&other_pki, false), (&pki, true)] {
        let client = certified_client(pki.roots(), &pki_used.issue(&["client.test"]));
        let result = connect(addr, &client, "api.test")
            .and_then(|mut connection| connection.get("/echo/hello", &[("Ocp-Apim-Subscription-Key", &key)]));
        match admitted {
            true => assert_eq!(result.unwrap().status, 200),
            false => assert!(result.is_err(), "a certificate from another CA got {result:?}"),
        }
    }
}

/// `client-auth` per `[[tls.certificate]]` (mTLS per host): the certificate a client's SNI
/// name picks decides whether the gateway asks for a client certificate. `strict.test` requires
/// one; `open.test` (the default certificate, and `[tls]`'s setting) does not ask.
fn client_auth_differs_per_certificate(io: &str) {
    let pki = Pki::new();
    let open = pki.issue(&["open.test"]);
    let strict = pki.issue(&["strict.test"]);
    let config = config_with_tls(&[("open", &open), ("strict", &strict)], "client-ca-file = \"certs/ca.pem\"");
    std::fs::write(config.path().join("certs/ca.pem"), &pki.ca_pem).unwrap();
    let gateway_toml = config.path().join("gateway.toml");
    let text = std::fs::read_to_string(&gateway_toml)
        .unwrap()
        .replace("key-file = \"certs/strict.key\"\n", "key-file = \"certs/strict.key\"\nclient-auth = \"required\"\n");
    std::fs::write(&gateway_toml, text).unwrap();
    let gateway = start(&config, io);
    let addr = gateway.tls_addr.expect("the https ready line");
    let key = gateway.demo_key.clone().expect("demo key");

    let certified = certified_client(pki.roots(), &pki.issue(&["client.test"]));
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let anonymous = Arc::new(client_config(pki.roots(), &[version]));
        let mut served = connect(addr, &anonymous, "open.test").unwrap();
        get_echo(&mut served, &key);
        assert_eq!(peer_certificate(&served), open.der, "{version:?}: open.test's certificate");
        let refused = connect(addr, &anonymous, "strict.test")
            .and_then(|mut connection| connection.get("/echo/hello", &[("Ocp-Apim-Subscription-Key", &key)]));
        assert!(refused.is_err(), "{version:?}: strict.test served a client without a certificate: {refused:?}");
    }
    let mut strict_served = connect(addr, &certified, "strict.test").unwrap();
    get_echo(&mut strict_served, &key);
    assert_eq!(peer_certificate(&strict_served), strict.der, "strict.test's certificate");
    // open.test does not ask, so the certified client presents nothing there and is served.
    let mut open_served = connect(addr, &certified, "open.test").unwrap();
    get_echo(&mut open_served, &key);
}

on_both_io_backends!(client_auth_differs_per_certificate);

/// Keys live in the last-good snapshot: a data plane started while control is down serves TLS
/// from disk, with the same certificate.
#[test]
fn cold_start_without_control_serves_tls_from_the_last_good_snapshot() {
    let pki = Pki::new();
    let api = pki.issue(&["api.test"]);
    let config = config_with_tls(&[("api", &api)], "");
    let mut gateway = start(&config, "epoll");
    let addr = gateway.tls_addr.expect("the https ready line");
    let key = gateway.demo_key.clone().expect("demo key");
    let dataplane = gateway.dataplane_pid();
    gateway.signal_control(libc::SIGKILL);
    gateway.wait_exit(Duration::from_secs(10)).expect("control died");
    portcullis_tests::gateway::kill(dataplane, libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while portcullis_tests::gateway::alive(dataplane) {
        assert!(std::time::Instant::now() < deadline, "the data plane did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }

    let log = std::fs::File::create(gateway.data().join("cold-dataplane.log")).unwrap();
    let _cold = KilledOnDrop(
        std::process::Command::new(bins::dataplane())
            .arg("--data-dir")
            .arg(gateway.data())
            .args(["--listen", "127.0.0.1:0", "--listen-tls", &addr.to_string(), "--io", "epoll", "--workers", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let client = Arc::new(client_config(pki.roots(), &all_versions()));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut connection = loop {
        match connect(addr, &client, "api.test") {
            Ok(connection) => break connection,
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(error) => panic!("the cold data plane never served TLS: {error}"),
        }
    };
    assert_eq!(peer_certificate(&connection), api.der);
    let echoed = get_echo(&mut connection, &key);
    assert_eq!(echoed["headers"]["x-forwarded-proto"][0], "https");
}

/// A process the test started itself, killed when the test ends (also when it fails).
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the client's certificate in a policy, as `context.Request.Certificate`.
const CERTIFICATE_POLICY: &str = r#"<policies>
  <inbound>
    <set-header name="X-Client-Thumbprint" exists-action="override">
      <value>@(context.Request.Certificate == null ? "none" : context.Request.Certificate.Thumbprint)</value>
    </set-header>
    <set-header name="X-Client-Subject" exists-action="override">
      <value>@(context.Request.Certificate == null ? "none" : context.Request.Certificate.Subject)</value>
    </set-header>
  </inbound>
  <backend><base /></backend>
  <outbound />
  <on-error />
</policies>"#;

#[test]
fn client_auth_optional_shows_the_certificate_to_policies() {
    let pki = Pki::new();
    let server = pki.issue(&["api.test"]);
    let config = config_with_tls(&[("api", &server)], "client-auth = \"optional\"\nclient-ca-file = \"certs/ca.pem\"");
    std::fs::write(config.path().join("certs/ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(config.path().join("policy.xml"), CERTIFICATE_POLICY).unwrap();
    let gateway = start(&config, "epoll");
    let addr = gateway.tls_addr.expect("the https ready line");
    let key = gateway.demo_key.clone().expect("demo key");

    let anonymous = Arc::new(client_config(pki.roots(), &all_versions()));
    let echoed = get_echo(&mut connect(addr, &anonymous, "api.test").unwrap(), &key);
    assert_eq!(echoed["headers"]["x-client-thumbprint"][0], "none", "{echoed}");

    let client_cert = pki.issue(&["client.test"]);
    let certified = certified_client(pki.roots(), &client_cert);
    let echoed = get_echo(&mut connect(addr, &certified, "api.test").unwrap(), &key);
    use sha1::Digest as _;
    let thumbprint: String = sha1::Sha1::digest(client_cert.der.as_ref()).iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(echoed["headers"]["x-client-thumbprint"][0], thumbprint.as_str(), "{echoed}");
    assert_eq!(echoed["headers"]["x-client-subject"][0], "CN=client.test", "{echoed}");
}

#[test]
fn without_certificates_tls_fails_cleanly_and_http_serves() {
    let config = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), config.path()).unwrap();
    let gateway = start(&config, "epoll");
    let addr = gateway.tls_addr.expect("the https ready line");
    let pki = Pki::new();
    let client = Arc::new(client_config(pki.roots(), &all_versions()));
    let error = connect(addr, &client, "api.test").expect_err("no certificate to serve");
    assert!(error.to_string().contains("alert") || error.kind() != std::io::ErrorKind::TimedOut, "{error}");
    let key = gateway.demo_key.clone().expect("demo key");
    let plain = portcullis_tests::http::get(gateway.addr, "/echo/hello", &[("Ocp-Apim-Subscription-Key", &key)]);
    assert_eq!(plain.unwrap().status, 200);
    // A second refused handshake: the warning is logged once.
    let _ = connect(addr, &client, "api.test");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(gateway.log().matches("has no [[tls.certificate]]").count(), 1, "{}", gateway.log());
}

/// An `https://` backend: gateway A proxies to gateway B's TLS listener, verifying B's
/// certificate against `backend-ca-file`; without that CA (system roots only) it answers 502.
fn https_backends(io: &str) {
    let pki = Pki::new();
    let backend_cert = pki.issue(&["backend.test", "127.0.0.1"]);
    let backend_config = config_with_tls(&[("backend", &backend_cert)], "");
    let backend = start(&backend_config, io);
    let backend_tls = backend.tls_addr.expect("the backend's https ready line");
    let backend_key = backend.demo_key.clone().expect("the backend's demo key");

    let front_config = config_with_tls(&[], "backend-ca-file = \"certs/ca.pem\"");
    std::fs::write(front_config.path().join("certs/ca.pem"), &pki.ca_pem).unwrap();
    std::fs::create_dir_all(front_config.path().join("apis/secure")).unwrap();
    std::fs::write(
        front_config.path().join("apis/secure/api.toml"),
        format!(
            "name = \"Secure\"\npath = \"secure\"\nbackend-url = \"https://127.0.0.1:{}/echo\"\nsubscription-required = false\n",
            backend_tls.port()
        ),
    )
    .unwrap();
    let front = Gateway::start(GatewayOptions::new(io).config(front_config.path()));

    let mut connection = Connection::open(front.addr).unwrap();
    for _ in 0..2 {
        let response = connection.get("/secure/hello", &[("Ocp-Apim-Subscription-Key", &backend_key)]).unwrap();
        assert_eq!(response.status, 200, "{}\n{}", response.text(), front.log());
        let echoed = response.json();
        assert_eq!(echoed["path"], "/api/hello", "{echoed}");
        // B saw a TLS client (A), so it tells its backend https.
        assert_eq!(echoed["headers"]["x-forwarded-proto"][0], "https", "{echoed}");
    }

    // Without the CA (system roots only), B's certificate does not verify: 502.
    let gateway_toml = front_config.path().join("gateway.toml");
    let text = std::fs::read_to_string(&gateway_toml).unwrap().replace("backend-ca-file = \"certs/ca.pem\"", "");
    std::fs::write(&gateway_toml, text).unwrap();
    let reload = front.ctl(&["reload"]);
    assert!(reload.status.success(), "{}", String::from_utf8_lossy(&reload.stderr));
    let refused = http::get(front.addr, "/secure/hello", &[("Ocp-Apim-Subscription-Key", &backend_key)]).unwrap();
    assert_eq!(refused.status, 502, "{}", refused.text());
}

on_both_io_backends!(https_backends);

/// Gateway B: HTTPS with a certificate of `pki` for `name`, requiring client certificates of
/// `pki`; with its config dir (kept alive with the gateway), TLS address and demo key.
fn mtls_backend(pki: &Pki, name: &str, io: &str) -> ((Gateway, TempDir), SocketAddr, String) {
    let certificate = pki.issue(&[name]);
    let config =
        config_with_tls(&[("backend", &certificate)], "client-auth = \"required\"\nclient-ca-file = \"certs/ca.pem\"");
    std::fs::write(config.path().join("certs/ca.pem"), &pki.ca_pem).unwrap();
    let gateway = start(&config, io);
    let tls = gateway.tls_addr.expect("the backend's https ready line");
    let key = gateway.demo_key.clone().expect("the backend's demo key");
    ((gateway, config), tls, key)
}

/// A named `https` backend that requires client certificates: gateway A presents
/// `backend-client-cert-file` to gateway B (client-auth required), verifies B by
/// `tls-server-name` against `backend-ca-file`, and checks B's health over TLS. Without the
/// client certificate B refuses the handshake: requests get 502 and the health checks fail; with
/// the backend's own `tls-client-cert-file` they pass again, and only for that backend.
fn named_https_backends_present_client_certificates(io: &str) {
    let pki = Pki::new();
    let (_backend, backend_tls, backend_key) = mtls_backend(&pki, "backend.test", io);

    let client_identity = pki.issue(&[]);
    let identity_lines =
        "backend-client-cert-file = \"certs/client.pem\"\nbackend-client-key-file = \"certs/client.key\"\n";
    let front_config = config_with_tls(&[], &format!("backend-ca-file = \"certs/ca.pem\"\n{identity_lines}"));
    std::fs::write(front_config.path().join("certs/ca.pem"), &pki.ca_pem).unwrap();
    write_certificate(front_config.path(), "client", &client_identity);
    std::fs::create_dir_all(front_config.path().join("backends")).unwrap();
    std::fs::write(
        front_config.path().join("backends/secure.toml"),
        format!(
            "protocol = \"https\"\ntls-server-name = \"backend.test\"\nbase-path = \"/echo\"\n\
             [[endpoint]]\naddress = \"{backend_tls}\"\n\
             [health.active]\npath = \"/health\"\ninterval-ms = 200\ntimeout-ms = 200\nexpected-status = \"200-499\"\n\
             healthy-threshold = 1\nunhealthy-threshold = 1\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(front_config.path().join("apis/secure")).unwrap();
    std::fs::write(
        front_config.path().join("apis/secure/api.toml"),
        "name = \"Secure\"\npath = \"secure\"\nbackend-id = \"secure\"\nsubscription-required = false\n",
    )
    .unwrap();
    let front = Gateway::start(GatewayOptions::new(io).config(front_config.path()));

    let mut connection = Connection::open(front.addr).unwrap();
    for _ in 0..2 {
        let response = connection.get("/secure/hello", &[("Ocp-Apim-Subscription-Key", &backend_key)]).unwrap();
        assert_eq!(response.status, 200, "{}\n{}", response.text(), front.log());
        assert_eq!(response.json()["path"], "/api/hello");
    }
    let endpoint_health = |front: &Gateway| {
        let status = front.status();
        status["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["id"] == "secure")
            .map(|backend| backend["endpoints"][0]["active_healthy"].as_bool())
    };
    wait_for(|| endpoint_health(&front) == Some(Some(true)), "the TLS health check to pass", &front);

    // Without its client certificate, B refuses A: 502, and the health check fails.
    let gateway_toml = front_config.path().join("gateway.toml");
    let text = std::fs::read_to_string(&gateway_toml).unwrap().replace(identity_lines, "");
    std::fs::write(&gateway_toml, text).unwrap();
    let reload = front.ctl(&["reload"]);
    assert!(reload.status.success(), "{}", String::from_utf8_lossy(&reload.stderr));
    let refused = http::get(front.addr, "/secure/hello", &[("Ocp-Apim-Subscription-Key", &backend_key)]).unwrap();
    assert_eq!(refused.status, 502, "{}", refused.text());
    wait_for(|| endpoint_health(&front) == Some(Some(false)), "the TLS health check to fail", &front);

    // The backend's own certificate (`tls-client-cert-file` in its file) brings both back, with
    // no identity in [tls]; another named backend to B without one still gets 502.
    let backend_file = front_config.path().join("backends/secure.toml");
    let text = std::fs::read_to_string(&backend_file).unwrap().replace(
        "protocol = \"https\"\n",
        "protocol = \"https\"\ntls-client-cert-file = \"certs/client.pem\"\ntls-client-key-file = \"certs/client.key\"\n",
    );
    std::fs::write(&backend_file, text).unwrap();
    std::fs::write(
        front_config.path().join("backends/anonymous.toml"),
        format!("protocol = \"https\"\ntls-server-name = \"backend.test\"\nbase-path = \"/echo\"\n[[endpoint]]\naddress = \"{backend_tls}\"\n"),
    )
    .unwrap();
    std::fs::create_dir_all(front_config.path().join("apis/anonymous")).unwrap();
    std::fs::write(
        front_config.path().join("apis/anonymous/api.toml"),
        "name = \"Anonymous\"\npath = \"anonymous\"\nbackend-id = \"anonymous\"\nsubscription-required = false\n",
    )
    .unwrap();
    let reload = front.ctl(&["reload"]);
    assert!(reload.status.success(), "{}", String::from_utf8_lossy(&reload.stderr));
    let mut connection = Connection::open(front.addr).unwrap();
    for _ in 0..2 {
        let response = connection.get("/secure/hello", &[("Ocp-Apim-Subscription-Key", &backend_key)]).unwrap();
        assert_eq!(response.status, 200, "{}\n{}", response.text(), front.log());
    }
    wait_for(|| endpoint_health(&front) == Some(Some(true)), "the TLS health check to pass again", &front);
    let anonymous = http::get(front.addr, "/anonymous/hello", &[("Ocp-Apim-Subscription-Key", &backend_key)]).unwrap();
    assert_eq!(anonymous.status, 502, "{}", anonymous.text());
}

on_both_io_backends!(named_https_backends_present_client_certificates);

fn wait_for(mut condition: impl FnMut() -> bool, what: &str, gateway: &Gateway) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {}", gateway.status());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A backend that accepts any upgrade: answers 101, then echoes what it reads in upper case;
/// at end of stream it sends `BYE` and closes.
fn upgrade_backend() -> SocketAddr {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
                stream.write_all(answer).unwrap();
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => stream.write_all(&buf[..n].to_ascii_uppercase()).unwrap(),
                    }
                }
                let _ = stream.write_all(b"BYE");
            });
        }
    });
    addr
}

/// WebSocket over TLS on both sides of the tunnel: a TLS client → gateway A (TLS listener) →
/// `https://` gateway B (TLS listener) → a plain upgrade backend. Bytes flow both ways through
/// two rustls connections per gateway hop, and a half-close (the client's `close_notify`)
/// reaches the backend, whose last words still come back.
fn websocket_over_tls(io: &str) {
    use std::io::{Read as _, Write as _};
    let pki = Pki::new();
    let backend_addr = upgrade_backend();
    let api = |dir: &Path, url: &str| {
        std::fs::create_dir_all(dir.join("apis/ws")).unwrap();
        std::fs::write(
            dir.join("apis/ws/api.toml"),
            format!("name = \"WS\"\npath = \"ws\"\nbackend-url = \"{url}\"\nsubscription-required = false\n"),
        )
        .unwrap();
    };
    let b_cert = pki.issue(&["b.test", "127.0.0.1"]);
    let b_config = config_with_tls(&[("b", &b_cert)], "");
    api(b_config.path(), &format!("http://{backend_addr}"));
    let b = start(&b_config, io);
    let b_tls = b.tls_addr.expect("B's https ready line");

    let a_cert = pki.issue(&["a.test"]);
    let a_config = config_with_tls(&[("a", &a_cert)], "backend-ca-file = \"certs/ca.pem\"");
    std::fs::write(a_config.path().join("certs/ca.pem"), &pki.ca_pem).unwrap();
    api(a_config.path(), &format!("https://127.0.0.1:{}/ws", b_tls.port()));
    let a = start(&a_config, io);
    let a_tls = a.tls_addr.expect("A's https ready line");

    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = Arc::new(client_config(pki.roots(), &[version]));
        let connection = connect(a_tls, &client, "a.test").unwrap();
        let mut stream = connection.into_stream();
        stream
            .write_all(b"GET /ws/chat HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).unwrap(), 1, "{version:?}: {}", String::from_utf8_lossy(&head));
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{version:?}: {head}\n{}", a.log());
        for message in ["hello", "over two tls hops"] {
            stream.write_all(message.as_bytes()).unwrap();
            let mut echoed = vec![0u8; message.len()];
            stream.read_exact(&mut echoed).unwrap();
            assert_eq!(echoed, message.to_ascii_uppercase().as_bytes(), "{version:?}");
        }
        // Half-close: close_notify; the backend sees end of stream and answers BYE.
        stream.conn.send_close_notify();
        stream.conn.complete_io(&mut stream.sock).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert_eq!(rest, b"BYE", "{version:?}");
    }
}

on_both_io_backends!(websocket_over_tls);

/// `validate-client-certificate` behind `client-auth = "negotiate"`: any certificate gets through
/// the handshake, the policy admits only current, trusted, unrevoked certificates of the listed
/// identity, and answers the others 401 with the failed rule.
const VALIDATE_POLICY: &str = r#"<policies>
  <inbound>
    <validate-client-certificate validate-revocation="true" validate-trust="true">
      <identities>
        <identity common-name="client.test" issuer-certificate-id="test-ca" />
      </identities>
    </validate-client-certificate>
  </inbound>
  <backend><base /></backend>
  <outbound />
  <on-error />
</policies>"#;

fn validate_client_certificate_when_negotiated(io: &str) {
    let pki = Pki::new();
    let server = pki.issue(&["api.test"]);
    let tls_table = "client-auth = \"negotiate\"\nclient-ca-file = \"certs/ca.pem\"\n\
                     client-crl-files = [\"certs/ca.crl\"]\n\n\
                     [[tls.named-certificate]]\nid = \"test-ca\"\ncert-file = \"certs/ca.pem\"\n";
    let config = config_with_tls(&[("api", &server)], tls_table);
    std::fs::write(config.path().join("certs/ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(config.path().join("certs/ca.crl"), pki.crl(&[66])).unwrap();
    std::fs::write(config.path().join("policy.xml"), VALIDATE_POLICY).unwrap();
    let gateway = start(&config, io);
    let addr = gateway.tls_addr.expect("the https ready line");
    let key = gateway.demo_key.clone().expect("demo key");
    let call = |client: &Arc<ClientConfig>| {
        let mut connection = connect(addr, client, "api.test").expect("the handshake lets every client in");
        connection.get("/echo/hello", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap()
    };
    let refused = |client: &Arc<ClientConfig>, message: &str| {
        let response = call(client);
        assert_eq!(response.status, 401, "{}", response.text());
        assert_eq!(response.text(), format!(r#"{{ "statusCode": 401, "message": "{message}" }}"#));
    };

    let days = |n: i64| time::OffsetDateTime::now_utc() + time::Duration::days(n);
    let good = pki.issue(&["client.test"]);
    let response = call(&certified_client(pki.roots(), &good));
    assert_eq!(response.status, 200, "{}\n{}", response.text(), gateway.log());

    refused(&Arc::new(client_config(pki.roots(), &all_versions())), "Client certificate is not present.");
    let other = pki.issue(&["other.test"]);
    refused(&certified_client(pki.roots(), &other), "Client certificate does not match any of the allowed identities.");
    let stranger = Pki::new().issue(&["client.test"]);
    refused(&certified_client(pki.roots(), &stranger), "Client certificate is not trusted.");
    let expired = pki.issue_with(&["client.test"], |params| {
        (params.not_before, params.not_after) = (days(-30), days(-1));
    });
    refused(&certified_client(pki.roots(), &expired), "Client certificate has expired.");
    let early = pki.issue_with(&["client.test"], |params| (params.not_before, params.not_after) = (days(1), days(30)));
    refused(&certified_client(pki.roots(), &early), "Client certificate is not valid yet.");
    let revoked =
        pki.issue_with(&["client.test"], |params| params.serial_number = Some(rcgen::SerialNumber::from_slice(&[66])));
    refused(&certified_client(pki.roots(), &revoked), "Client certificate has been revoked.");
}

on_both_io_backends!(validate_client_certificate_when_negotiated);

/// `authentication-certificate certificate-id`: gateway A presents a named certificate to gateway
/// B (client-auth required) for one API only; without the policy B refuses A's handshake.
fn authentication_certificate_presents_a_named_certificate(io: &str) {
    let pki = Pki::new();
    let (_backend, backend_tls, backend_key) = mtls_backend(&pki, "127.0.0.1", io);

    let identity = pki.issue(&["gateway-a"]);
    let front_config = config_with_tls(
        &[],
        "backend-ca-file = \"certs/ca.pem\"\n\n[[tls.named-certificate]]\nid = \"to-b\"\n\
         cert-file = \"certs/to-b.pem\"\nkey-file = \"certs/to-b.key\"\n",
    );
    std::fs::write(front_config.path().join("certs/ca.pem"), &pki.ca_pem).unwrap();
    write_certificate(front_config.path(), "to-b", &identity);
    for (api, policy) in [("with", r#"<authentication-certificate certificate-id="to-b" />"#), ("without", "")] {
        let dir = front_config.path().join(format!("apis/{api}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("api.toml"),
            format!(
                "name = \"{api}\"\npath = \"{api}\"\nbackend-url = \"https://127.0.0.1:{}/echo\"\nsubscription-required = false\n",
                backend_tls.port()
            ),
        )
        .unwrap();
        let document = format!(
            "<policies><inbound><base />{policy}</inbound>\
             <backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
        );
        std::fs::write(dir.join("policy.xml"), document).unwrap();
    }
    let front = Gateway::start(GatewayOptions::new(io).config(front_config.path()));
    let with = http::get(front.addr, "/with/hello", &[("Ocp-Apim-Subscription-Key", &backend_key)]).unwrap();
    assert_eq!(with.status, 200, "{}\n{}", with.text(), front.log());
    assert_eq!(with.json()["path"], "/api/hello", "{}", with.text());
    let without = http::get(front.addr, "/without/hello", &[("Ocp-Apim-Subscription-Key", &backend_key)]).unwrap();
    assert_eq!(without.status, 502, "{}", without.text());
}

on_both_io_backends!(authentication_certificate_presents_a_named_certificate);

/// `authentication-certificate` inside `send-request`: the call to gateway B (client-auth
/// required) presents the named certificate; the same call without it is refused (a null
/// response with `ignore-error`).
fn send_request_presents_a_named_certificate(io: &str) {
    let pki = Pki::new();
    let (_backend, backend_tls, backend_key) = mtls_backend(&pki, "127.0.0.1", io);
    let identity = pki.issue(&["gateway-a"]);
    let front_config = config_with_tls(
        &[],
        "backend-ca-file = \"certs/ca.pem\"\n\n[[tls.named-certificate]]\nid = \"to-b\"\n\
         cert-file = \"certs/to-b.pem\"\nkey-file = \"certs/to-b.key\"\n",
    );
    std::fs::write(front_config.path().join("certs/ca.pem"), &pki.ca_pem).unwrap();
    write_certificate(front_config.path(), "to-b", &identity);
    let port = backend_tls.port();
    for (api, certificate) in [("with", r#"<authentication-certificate certificate-id="to-b" />"#), ("without", "")] {
        let dir = front_config.path().join(format!("apis/{api}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("api.toml"),
            format!("name = \"{api}\"\npath = \"{api}\"\nbackend-url = \"http://127.0.0.1:9/\"\nsubscription-required = false\n"),
        )
        .unwrap();
        let document = format!(
            r#"<policies><inbound><base />
  <send-request mode="new" response-variable-name="r" ignore-error="true">
    <set-url>https://127.0.0.1:{port}/echo/hello</set-url>
    <set-header name="Ocp-Apim-Subscription-Key" exists-action="override"><value>{backend_key}</value></set-header>
    {certificate}
  </send-request>
  <return-response><set-body>@(context.Variables["r"] == null ? "failed" : (string)((IResponse)context.Variables["r"]).Body.As&lt;JObject&gt;()["path"])</set-body></return-response>
</inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"#
        );
        std::fs::write(dir.join("policy.xml"), document).unwrap();
    }
    let front = Gateway::start(GatewayOptions::new(io).config(front_config.path()));
    let with = http::get(front.addr, "/with/x", &[]).unwrap();
    assert_eq!((with.status, with.text()), (200, "/api/hello".to_owned()), "{}", front.log());
    let without = http::get(front.addr, "/without/x", &[]).unwrap();
    assert_eq!((without.status, without.text()), (200, "failed".to_owned()));
}

on_both_io_backends!(send_request_presents_a_named_certificate);
