//! `TlsStream` against a rustls client over an in-memory pipe: handshake, both directions,
//! writes larger than rustls' plaintext buffer, close_notify, refused handshakes, and idle reads
//! (parking frees the ciphertext buffers, part of a record keeps them).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

use super::*;

/// One end of an in-memory pipe as a [`Stream`]; its halves sit behind async locks so that the
/// shared operations (which `TlsStream` reads and writes through) work too.
struct MemoryStream {
    reader: tokio::sync::Mutex<tokio::io::ReadHalf<DuplexStream>>,
    writer: tokio::sync::Mutex<tokio::io::WriteHalf<DuplexStream>>,
}

impl MemoryStream {
    fn new(io: DuplexStream) -> Self {
        let (reader, writer) = tokio::io::split(io);
        Self { reader: tokio::sync::Mutex::new(reader), writer: tokio::sync::Mutex::new(writer) }
    }
}

impl Stream for MemoryStream {
    async fn connect(_addr: SocketAddr) -> io::Result<Self> {
        Err(io::ErrorKind::Unsupported.into())
    }

    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.read_shared(buf).await
    }

    async fn write_range(&mut self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        self.write_shared(buf, range).await
    }

    fn shutdown(&self) {}

    async fn read_shared(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        reserve_spare(&mut buf);
        let result = self.reader.lock().await.read_buf(&mut buf).await;
        (result, buf)
    }

    async fn write_shared(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        let result = self.writer.lock().await.write_all(&buf[range]).await;
        (result, buf)
    }

    async fn shutdown_write(&self) {}
}

impl Park for MemoryStream {
    async fn read_idle(
        &mut self,
        mut buf: Vec<u8>,
        quiet: std::time::Duration,
        _limit: std::time::Duration,
    ) -> (Result<IdleRead, ReadError>, Vec<u8>) {
        reserve_spare(&mut buf);
        let mut reader = self.reader.lock().await;
        // tokio's read takes bytes only in the poll that returns them: dropping it loses none.
        let result = match tokio::time::timeout(quiet, reader.read_buf(&mut buf)).await {
            Ok(result) => result.map(IdleRead::Read).map_err(ReadError::Io),
            Err(_) => Ok(IdleRead::Quiet),
        };
        (result, buf)
    }

    fn parked_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

struct Fixture {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn fixture() -> Fixture {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["gw.test".to_owned()]).unwrap().self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Fixture { server: Arc::new(server), client: Arc::new(client) }
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// The client side, driven by hand over the other end of the pipe.
struct Client {
    tls: rustls::ClientConnection,
    io: DuplexStream,
}

impl Client {
    fn new(fixture: &Fixture, io: DuplexStream) -> Self {
        let name = ServerName::try_from("gw.test").unwrap();
        Self { tls: rustls::ClientConnection::new(Arc::clone(&fixture.client), name).unwrap(), io }
    }

    async fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            let mut out = Vec::new();
            self.tls.write_tls(&mut out)?;
            self.io.write_all(&out).await?;
        }
        Ok(())
    }

    /// Reads one chunk of ciphertext; `false` at end of stream. The chunk is smaller than
    /// rustls' received-plaintext limit, so the caller can drain plaintext between chunks.
    async fn receive(&mut self) -> io::Result<bool> {
        let mut chunk = vec![0; 8 * 1024];
        let n = self.io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(false);
        }
        let mut slice = &chunk[..n];
        while !slice.is_empty() {
            self.tls.read_tls(&mut slice)?;
            self.tls.process_new_packets().map_err(io::Error::other)?;
        }
        Ok(true)
    }

    async fn handshake(&mut self) -> io::Result<()> {
        while self.tls.is_handshaking() {
            self.flush().await?;
            if self.tls.is_handshaking() && !self.receive().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        self.flush().await
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tls.writer().write_all(bytes)?;
        self.flush().await
    }

    /// Reads until `len` plaintext bytes arrived, or the server closed (cleanly: `Ok`).
    async fn receive_plaintext(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let mut received = Vec::new();
        loop {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match self.tls.reader().read(&mut chunk) {
                    Ok(0) => return Ok(received),
                    Ok(n) => received.extend_from_slice(&chunk[..n]),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(error),
                }
            }
            if received.len() >= len {
                return Ok(received);
            }
            if !self.receive().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

#[test]
fn carries_bytes_both_ways_then_closes_with_close_notify() {
    let fixture = fixture();
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    run(async {
        let server = async {
            let mut stream =
                TlsStream::accept(MemoryStream::new(server_io), Arc::clone(&fixture.server)).await.unwrap();
            let mut buf = Vec::new();
            while buf.len() < 5 {
                let (result, returned) = stream.read(buf).await;
                buf = returned;
                assert!(result.unwrap() > 0, "client data");
            }
            assert_eq!(buf, b"hello");
            let len = large.len();
            let (result, _) = stream.write_range(large.clone(), 0..len).await;
            result.unwrap();
            stream.close().await;
        };
        let client = async {
            let mut client = Client::new(&fixture, client_io);
            client.handshake().await.unwrap();
            assert_eq!(client.tls.alpn_protocol(), None, "the client offered no ALPN");
            client.send(b"hello").await.unwrap();
            let received = client.receive_plaintext(large.len()).await.unwrap();
            assert_eq!(received.len(), large.len());
            assert!(received == large);
            // Then close_notify: a clean end of stream, not a truncation.
            assert!(client.receive_plaintext(1).await.unwrap().is_empty());
        };
        tokio::join!(server, client);
    });
}

#[test]
fn refuses_a_client_that_does_not_speak_tls() {
    let fixture = fixture();
    let (server_io, mut client_io) = tokio::io::duplex(64 * 1024);
    run(async {
        let server = TlsStream::accept(MemoryStream::new(server_io), Arc::clone(&fixture.server));
        let client = async {
            client_io.write_all(b"GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n").await.unwrap();
            // The server answers with an alert record (content type 21) before giving up.
            let mut answer = Vec::new();
            let _ = client_io.read_to_end(&mut answer).await;
            answer
        };
        let (result, answer) = tokio::join!(server, client);
        assert!(matches!(result, Err(HandshakeError::Tls(_))), "{result:?}");
        assert_eq!(answer.first(), Some(&21), "an alert: {answer:?}");
    });
}

#[test]
fn reports_a_client_that_leaves_during_the_handshake() {
    let fixture = fixture();
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    drop(client_io);
    let result = run(TlsStream::accept(MemoryStream::new(server_io), Arc::clone(&fixture.server)));
    assert!(matches!(result, Err(HandshakeError::Closed)), "{result:?}");
}

#[test]
fn times_out_a_silent_client() {
    let fixture = fixture();
    let (server_io, _client_io) = tokio::io::duplex(64 * 1024);
    // Paused time jumps ahead whenever the runtime is idle: the test takes no real 10 s.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let (result, waited) = runtime.block_on(async {
        let started = tokio::time::Instant::now();
        let result = TlsStream::accept(MemoryStream::new(server_io), Arc::clone(&fixture.server)).await;
        (result, started.elapsed())
    });
    assert!(matches!(result, Err(HandshakeError::TimedOut)), "{result:?}");
    assert!(waited >= std::time::Duration::from_millis(HANDSHAKE_TIMEOUT_MS), "{waited:?}");
}

#[test]
fn opens_to_a_server_and_verifies_its_name() {
    let fixture = fixture();
    let name = ServerName::try_from("gw.test").unwrap();
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    run(async {
        let server = async {
            let mut stream =
                TlsStream::accept(MemoryStream::new(server_io), Arc::clone(&fixture.server)).await.unwrap();
            let (result, buf) = stream.read(Vec::new()).await;
            assert_eq!(&buf[..result.unwrap()], b"ping");
            let (result, _) = stream.write_range(b"pong".to_vec(), 0..4).await;
            result.unwrap();
        };
        let client = async {
            let mut stream =
                TlsStream::open(MemoryStream::new(client_io), Arc::clone(&fixture.client), name.clone()).await.unwrap();
            assert!(stream.peer_chain().is_some_and(|chain| !chain.is_empty()));
            let (result, _) = stream.write_range(b"ping".to_vec(), 0..4).await;
            result.unwrap();
            let (result, buf) = stream.read(Vec::new()).await;
            assert_eq!(&buf[..result.unwrap()], b"pong");
        };
        tokio::join!(server, client);
    });
    // A name the certificate does not carry: the client refuses the server.
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let other = ServerName::try_from("other.test").unwrap();
    let (_, client) = run(async {
        tokio::join!(
            TlsStream::accept(MemoryStream::new(server_io), Arc::clone(&fixture.server)),
            TlsStream::open(MemoryStream::new(client_io), Arc::clone(&fixture.client), other)
        )
    });
    assert!(matches!(client, Err(HandshakeError::Tls(rustls::Error::InvalidCertificate(_)))), "{client:?}");
}

#[test]
fn an_idle_read_frees_the_ciphertext_buffers_only_between_records() {
    let fixture = fixture();
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let quiet = std::time::Duration::from_millis(20);
    let limit = std::time::Duration::from_secs(5);
    run(async {
        let (server, client) =
            tokio::join!(TlsStream::accept(MemoryStream::new(server_io), Arc::clone(&fixture.server)), async {
                let mut client = Client::new(&fixture, client_io);
                client.handshake().await.unwrap();
                client
            });
        let (mut server, mut client) = (server.unwrap(), client);
        client.send(b"one").await.unwrap();
        let (result, buf) = server.read_idle(Vec::new(), quiet, limit).await;
        assert_eq!(result.unwrap(), IdleRead::Read(3));
        assert_eq!(buf, b"one");
        assert!(server.state.get_mut().incoming.capacity() > 0, "a ciphertext buffer while busy");

        // Nothing comes: quiet, and the connection keeps no ciphertext buffer.
        let (result, buf) = server.read_idle(Vec::new(), quiet, limit).await;
        assert_eq!(result.unwrap(), IdleRead::Quiet);
        assert!(buf.is_empty());
        let state = server.state.get_mut();
        assert_eq!((state.incoming.capacity(), state.outgoing.capacity()), (0, 0));

        // The same session goes on.
        client.send(b"two").await.unwrap();
        let (result, buf) = server.read_idle(Vec::new(), quiet, limit).await;
        assert_eq!(result.unwrap(), IdleRead::Read(3));
        assert_eq!(buf, b"two");

        // A whole record, then part of the next: once the first is read, the second's first
        // bytes sit inside rustls, and the idle read waits for the rest instead of going quiet.
        client.tls.writer().write_all(b"three").unwrap();
        let mut ciphertext = Vec::new();
        client.tls.write_tls(&mut ciphertext).unwrap();
        client.tls.writer().write_all(b"four").unwrap();
        let first_len = ciphertext.len();
        client.tls.write_tls(&mut ciphertext).unwrap();
        client.io.write_all(&ciphertext[..first_len + 3]).await.unwrap();
        let (result, buf) = server.read_idle(Vec::new(), quiet, limit).await;
        assert_eq!(result.unwrap(), IdleRead::Read(5));
        assert_eq!(buf, b"three");
        let short = std::time::Duration::from_millis(100);
        let (result, _) = server.read_idle(Vec::new(), quiet, short).await;
        assert!(matches!(result, Err(ReadError::TimedOut)), "not quiet with part of a record: {result:?}");
    });
}
