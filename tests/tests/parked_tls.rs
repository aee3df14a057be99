//! Parked idle TLS connections, through the real binary on both I/O backends: a TLS keep-alive
//! connection quiet for longer than `IDLE_PARK_AFTER_MS` (250 ms) leaves its task with its rustls
//! state, and its next requests are served on the same session (TLS 1.2 and 1.3), pipelined ones
//! in order; a record that arrives in pieces around parking time is neither lost nor answered
//! twice, and a partly received record keeps the connection in its task; the peer's close, the
//! keep-alive timeout and drain close a parked connection, the gateway's closes with close_notify.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test helpers fail the test by panicking

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_contract::model::Limits;
use portcullis_contract::tls::{KeyFormat, PrivateKey, TlsCertificate, TlsSettings};
use portcullis_tests::backend::{self, ScriptedBackend};
use portcullis_tests::gateway::kill;
use portcullis_tests::http::{Connection, Response};
use portcullis_tests::{DataPlane, TempDir, eventually, on_both_io_backends, snapshot};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, StreamOwned};

/// The data plane's debug lines about parked connections.
const PARKED_LOG: &str = "info,portcullis_dataplane::worker::parked=debug";
const PARKED: &str = "connection parked";
const WOKE: &str = "parked connection woke";
/// Longer than the gateway's IDLE_PARK_AFTER_MS, with room for a loaded machine.
const IDLE_PAST_PARKING: Duration = Duration::from_millis(600);
const SERVER_NAME: &str = "gw.test";

/// A data plane with `--listen-tls` and a certificate for [`SERVER_NAME`], and a client config
/// that trusts it.
struct Gateway {
    _dir: TempDir,
    _backend: ScriptedBackend,
    dp: DataPlane,
    certificate: CertificateDer<'static>,
}

fn start(io: &str, limits: Limits) -> Gateway {
    let dir = TempDir::new(io);
    let backend = ScriptedBackend::start(backend::echo);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()]).unwrap().self_signed(&key).unwrap();
    let mut config = snapshot::two_apis(backend.addr, "echo");
    config.limits = limits;
    config.tls = TlsSettings {
        certificates: vec![TlsCertificate {
            source: "test".into(),
            chain: vec![cert.der().to_vec()],
            key: PrivateKey { format: KeyFormat::Pkcs8, der: key.serialize_der() },
            names: vec![SERVER_NAME.into()],
            client_auth: None,
        }],
        ..TlsSettings::default()
    };
    snapshot::write_last_good(dir.path(), 1, &config);
    let dp = DataPlane::start_tls(dir.path(), io, PARKED_LOG);
    Gateway { _dir: dir, _backend: backend, dp, certificate: cert.der().clone() }
}

impl Gateway {
    fn client_config(&self, version: &'static rustls::SupportedProtocolVersion) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.certificate.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    fn connect(&self, config: &Arc<ClientConfig>) -> TlsClient {
        TlsClient::connect(self.dp.tls_addr.expect("a TLS listener"), config)
    }
}

/// A TLS keep-alive client over a blocking socket.
struct TlsClient {
    connection: Connection<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsClient {
    fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Self {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let mut stream = StreamOwned::new(ClientConnection::new(Arc::clone(config), name).unwrap(), tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        Self { connection: Connection::over(stream) }
    }

    fn local_addr(&self) -> SocketAddr {
        self.connection.stream().sock.local_addr().unwrap()
    }

    fn version(&self) -> Option<ProtocolVersion> {
        self.connection.stream().conn.protocol_version()
    }

    /// `plaintext` sealed into records, not yet sent.
    fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let stream = self.connection.stream_mut();
        stream.conn.writer().write_all(plaintext).unwrap();
        let mut ciphertext = Vec::new();
        while stream.conn.wants_write() {
            stream.conn.write_tls(&mut ciphertext).unwrap();
        }
        ciphertext
    }

    fn write_ciphertext(&mut self, bytes: &[u8]) {
        self.connection.stream_mut().sock.write_all(bytes).unwrap();
    }

    fn write(&mut self, plaintext: &[u8]) {
        let ciphertext = self.seal(plaintext);
        self.write_ciphertext(&ciphertext);
    }

    fn send(&mut self, plaintext: &[u8]) -> Response {
        self.write(plaintext);
        self.receive()
    }

    fn receive(&mut self) -> Response {
        self.connection.read_response(false).expect("a response")
    }

    /// True when the gateway closed the connection with close_notify (rustls reports a close
    /// without it as an error).
    fn is_closed_with_close_notify(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.connection.read_some(&mut byte) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected bytes from the gateway"),
            Err(error) => panic!("closed without close_notify: {error}"),
        }
    }
}

fn request(path: &str) -> Vec<u8> {
    format!("GET /open/{path} HTTP/1.1\r\nHost: g\r\n\r\n").into_bytes()
}

fn versions() -> [&'static rustls::SupportedProtocolVersion; 2] {
    [&rustls::version::TLS12, &rustls::version::TLS13]
}

/// Parks, wakes and serves on the same session, twice, then pipelined requests after a wake.
fn parked_tls_connections_are_served_again(io: &str) {
    let gateway = start(io, Limits::default());
    let dp = &gateway.dp;
    for version in versions() {
        let mut client = gateway.connect(&gateway.client_config(version));
        assert_eq!(client.version(), Some(version.version));
        // This connection's lines (parking takes IDLE_PARK_AFTER_MS: waited for, not read once).
        let parked_line = format!("{PARKED} peer={}", client.local_addr());
        let woke_line = format!("{WOKE} peer={}", client.local_addr());
        let parks = |count| eventually("the idle TLS connection parks", || dp.log_count(&parked_line) == count);
        let wakes = |count| eventually("served after waking from the registry", || dp.log_count(&woke_line) == count);
        assert_eq!(client.send(&request("first")).status, 200);
        for round in 1..=2 {
            parks(round);
            std::thread::sleep(IDLE_PAST_PARKING);
            assert_eq!(gateway.dp.connections_active(), 1, "a parked connection is still open");
            let response = client.send(&request("again"));
            assert_eq!(response.status, 200, "{response:?}");
            assert!(response.text().contains("target=/again\n"), "{}", response.text());
            wakes(round);
        }
        // Pipelined requests on a woken connection, in one record and in two, are answered in order.
        parks(3);
        client.write(&[request("p1"), request("p2")].concat());
        assert!(client.receive().text().contains("target=/p1\n"));
        assert!(client.receive().text().contains("target=/p2\n"));
        wakes(3);
        parks(4);
        let records = [client.seal(&request("p3")), client.seal(&request("p4"))].concat();
        client.write_ciphertext(&records);
        assert!(client.receive().text().contains("target=/p3\n"));
        assert!(client.receive().text().contains("target=/p4\n"));
        wakes(4);
        drop(client);
        eventually("the closed connection is counted out", || gateway.dp.connections_active() == 0);
    }
    assert_eq!(gateway.dp.terminate().code(), Some(0));
}

/// A request whose record arrives in two pieces around the moment the connection parks (the
/// io_uring read is being cancelled, or the socket is being handed to the reactor) is neither
/// lost nor answered twice; a connection holding part of a record does not park.
fn records_split_while_parking_are_not_lost(io: &str) {
    let gateway = start(io, Limits::default());
    let addr = gateway.dp.tls_addr.unwrap();
    let clients: Vec<_> = (0..30u64)
        .map(|i| {
            let config = gateway.client_config(versions()[i as usize % 2]);
            std::thread::spawn(move || {
                let mut client = TlsClient::connect(addr, &config);
                assert_eq!(client.send(&request("warm")).status, 200);
                // 220..=278 ms after the response, 2 ms apart: across IDLE_PARK_AFTER_MS.
                std::thread::sleep(Duration::from_millis(220 + 2 * i));
                let record = client.seal(&request(&format!("half{i}")));
                let (first, rest) = record.split_at(record.len() / 2);
                client.write_ciphertext(first);
                std::thread::sleep(Duration::from_millis(20));
                client.write_ciphertext(rest);
                let response = client.receive();
                assert_eq!(response.status, 200, "{response:?}");
                assert!(response.text().contains(&format!("target=/half{i}\n")), "{}", response.text());
                // And once more after a full park.
                std::thread::sleep(IDLE_PAST_PARKING);
                assert!(client.send(&request("after")).text().contains("target=/after\n"));
                client
            })
        })
        .collect();
    let _clients: Vec<_> = clients.into_iter().map(|client| client.join().unwrap()).collect();
    eventually("every connection parked at least once", || gateway.dp.log_count(PARKED) >= 30);
    assert_eq!(gateway.dp.connections_active(), 30);

    // A request's record, then the first bytes of the next one: once the first is answered, the
    // connection holds part of a record (inside rustls) and waits for the rest in its task.
    let mut client = gateway.connect(&gateway.client_config(&rustls::version::TLS13));
    let parked_line = format!("{PARKED} peer={}", client.local_addr());
    let parks = || gateway.dp.log_count(&parked_line);
    let whole = client.seal(&request("whole"));
    let pieces = client.seal(&request("pieces"));
    client.write_ciphertext(&[&whole[..], &pieces[..3]].concat());
    assert!(client.receive().text().contains("target=/whole\n"));
    std::thread::sleep(IDLE_PAST_PARKING);
    assert_eq!(parks(), 0, "part of a record keeps the connection in its task");
    client.write_ciphertext(&pieces[3..]);
    assert!(client.receive().text().contains("target=/pieces\n"));
    eventually("then it parks", || parks() == 1);
    assert_eq!(gateway.dp.terminate().code(), Some(0));
}

/// Clients that close a parked TLS connection, with close_notify or by closing TCP alone, are
/// counted out, and the worker still serves.
fn clients_closing_parked_tls_connections_are_counted_out(io: &str) {
    let gateway = start(io, Limits::default());
    let dp = &gateway.dp;
    // Each client sends its first request as soon as its handshake is done: a connection quiet for
    // IDLE_PARK_AFTER_MS parks before its first request too, and would wake for it.
    let clients: Vec<_> = (0..10)
        .map(|i| {
            let mut client = gateway.connect(&gateway.client_config(versions()[i % 2]));
            assert_eq!(client.send(&request("warm")).status, 200);
            client
        })
        .collect();
    eventually("the idle connections park", || dp.log_count(PARKED) >= 10);
    assert_eq!(gateway.dp.connections_active(), 10, "parked connections are still open");
    for (i, mut client) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            let stream = client.connection.stream_mut();
            stream.conn.send_close_notify();
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
    }
    eventually("closed parked connections are counted out", || gateway.dp.connections_active() == 0);
    // A peer's close wakes its parked connection, which then closes.
    eventually("every closed connection woke", || dp.log_count(WOKE) == 10);
    let mut client = gateway.connect(&gateway.client_config(&rustls::version::TLS13));
    assert_eq!(client.send(&request("after")).status, 200);
    drop(client);
    assert_eq!(gateway.dp.terminate().code(), Some(0));
}

/// The keep-alive timeout closes a parked TLS connection, with close_notify.
fn parked_tls_connections_close_at_the_idle_timeout(io: &str) {
    let limits = Limits { keepalive_idle_timeout_ms: 1_000, ..Limits::default() };
    let gateway = start(io, limits);
    for version in versions() {
        let mut client = gateway.connect(&gateway.client_config(version));
        assert_eq!(client.send(&request("once")).status, 200);
        let idle_since = Instant::now();
        assert!(client.is_closed_with_close_notify(), "the gateway closes the parked connection");
        let waited = idle_since.elapsed();
        assert!(waited >= Duration::from_millis(900), "closed after {waited:?}, before the timeout");
        assert!(waited < Duration::from_millis(3_000), "closed after {waited:?}");
        eventually("the closed connection is counted out", || gateway.dp.connections_active() == 0);
    }
    let closed = "parked connection reached the keep-alive idle timeout";
    eventually("the registry closed both", || gateway.dp.log_count(closed) == 2);
    assert_eq!(gateway.dp.terminate().code(), Some(0));
}

/// Drain closes parked TLS connections at once, with close_notify.
fn drain_closes_parked_tls_connections(io: &str) {
    let gateway = start(io, Limits::default());
    let mut clients: Vec<_> = (0..4).map(|i| gateway.connect(&gateway.client_config(versions()[i % 2]))).collect();
    for client in &mut clients {
        assert_eq!(client.send(&request("warm")).status, 200);
    }
    eventually("the idle connections park", || gateway.dp.log_count(PARKED) >= 4);
    let started = Instant::now();
    kill(gateway.dp.pid(), libc::SIGTERM);
    for client in &mut clients {
        assert!(client.is_closed_with_close_notify(), "drain closes parked connections");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "at once, not at the drain timeout");
    assert_eq!(gateway.dp.terminate().code(), Some(0));
}

on_both_io_backends!(
    parked_tls_connections_are_served_again,
    records_split_while_parking_are_not_lost,
    clients_closing_parked_tls_connections_are_counted_out,
    parked_tls_connections_close_at_the_idle_timeout,
    drain_closes_parked_tls_connections,
);
