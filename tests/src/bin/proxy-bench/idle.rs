//! Idle keep-alive connections for the memory measurement: opened in batches with non-blocking
//! sockets, each sends one request and reads its whole response (so the connection went through
//! the proxy, and the proxy did whatever it does per connection), then stays open, silent. TLS ones
//! are opened one after another with blocking sockets (rustls, TLS 1.3, a full handshake each).

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use socket2::{Domain, Socket, Type};

use crate::procs;

/// Connections set up at once (each batch completes before the next starts).
const BATCH: usize = 256;
/// A batch that has not completed by then fails the measurement.
const BATCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes a response may take (the origin's 5-byte response with its head is ~200).
const RESPONSE_BYTES_MAX: usize = 16 * 1024;

enum State {
    Connecting,
    Writing(usize),
    Reading(Vec<u8>),
    Done,
}

/// Opens `count` connections to `addr`, each having completed `GET path`; they stay open until dropped.
pub(crate) fn open(addr: SocketAddr, path: &str, count: usize) -> Result<Vec<TcpStream>> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: proxy-bench\r\n\r\n").into_bytes();
    let mut open = Vec::with_capacity(count);
    while open.len() < count {
        procs::check_interrupted()?;
        let batch = (count - open.len()).min(BATCH);
        open.extend(open_batch(addr, &request, batch)?);
    }
    Ok(open)
}

fn open_batch(addr: SocketAddr, request: &[u8], count: usize) -> Result<Vec<TcpStream>> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(error) => bail!("connect to {addr}: {error} (open-file limit {})", procs::open_file_limit()),
        }
        sockets.push((TcpStream::from(socket), State::Connecting));
    }
    let deadline = Instant::now() + BATCH_TIMEOUT;
    loop {
        let mut pending: Vec<libc::pollfd> = Vec::new();
        let mut pending_index = Vec::new();
        for (index, (stream, state)) in sockets.iter().enumerate() {
            let events = match state {
                State::Connecting | State::Writing(_) => libc::POLLOUT,
                State::Reading(_) => libc::POLLIN,
                State::Done => continue,
            };
            pending.push(libc::pollfd { fd: stream.as_raw_fd(), events, revents: 0 });
            pending_index.push(index);
        }
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {count} connections to {addr} did not complete their request in {BATCH_TIMEOUT:?}",
                pending.len()
            );
        }
        procs::check_interrupted()?;
        // SAFETY: poll reads and writes `pending.len()` pollfd structs that we own.
        let ready = unsafe { libc::poll(pending.as_mut_ptr(), pending.len() as libc::nfds_t, 100) };
        if ready < 0 {
            bail!("poll: {}", std::io::Error::last_os_error());
        }
        for (pollfd, &index) in pending.iter().zip(&pending_index) {
            if pollfd.revents != 0 {
                let (stream, state) = &mut sockets[index];
                advance(stream, state, request).map_err(|error| anyhow::anyhow!("connection to {addr}: {error}"))?;
            }
        }
    }
    Ok(sockets.into_iter().map(|(stream, _)| stream).collect())
}

/// Moves one connection forward as far as it can go without blocking.
fn advance(stream: &mut TcpStream, state: &mut State, request: &[u8]) -> std::io::Result<()> {
    loop {
        match state {
            State::Connecting => {
                if let Some(error) = stream.take_error()? {
                    return Err(error);
                }
                *state = State::Writing(0);
            }
            State::Writing(written) => match stream.write(&request[*written..]) {
                Ok(n) => {
                    *written += n;
                    if *written == request.len() {
                        *state = State::Reading(Vec::with_capacity(512));
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            },
            State::Reading(buffer) => {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk) {
                    Ok(0) => return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed before the response")),
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
                    Err(error) => return Err(error),
                }
                if buffer.len() > RESPONSE_BYTES_MAX {
                    return Err(std::io::Error::other("response too large"));
                }
                match response_complete(buffer) {
                    Some(200) => *state = State::Done,
                    Some(status) => return Err(std::io::Error::other(format!("status {status}"))),
                    None => {}
                }
            }
            State::Done => return Ok(()),
        }
    }
}

/// An idle TLS client connection (dropping it closes the socket without close_notify).
pub(crate) type TlsIdle = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Opens `count` TLS 1.3 connections to `addr` (full handshakes, no resumption), each having
/// completed `GET path`; they stay open until dropped.
pub(crate) fn open_tls(addr: SocketAddr, path: &str, count: usize) -> Result<Vec<TlsIdle>> {
    let config = Arc::new(tls_client_config()?);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: proxy-bench\r\n\r\n").into_bytes();
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        if open.len() % BATCH == 0 {
            procs::check_interrupted()?;
        }
        let tcp = TcpStream::connect_timeout(&addr, BATCH_TIMEOUT).map_err(|error| {
            anyhow::anyhow!("connect to {addr}: {error} (open-file limit {})", procs::open_file_limit())
        })?;
        tcp.set_read_timeout(Some(BATCH_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let mut stream = rustls::StreamOwned::new(rustls::ClientConnection::new(Arc::clone(&config), name)?, tcp);
        stream.write_all(&request)?;
        let mut buffer = Vec::with_capacity(512);
        let mut chunk = [0u8; 4096];
        loop {
            match response_complete(&buffer) {
                Some(200) => break,
                Some(status) => bail!("TLS connection to {addr}: status {status}"),
                None => {}
            }
            match stream.read(&mut chunk)? {
                0 => bail!("TLS connection to {addr} closed before the response"),
                n if buffer.len() + n > RESPONSE_BYTES_MAX => bail!("TLS connection to {addr}: response too large"),
                n => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        open.push(stream);
    }
    Ok(open)
}

/// TLS 1.3 only, as every gateway is configured; the benchmark's certificate is not verified
/// (what is measured is the gateways' memory, and wrk does not verify it either).
fn tls_client_config() -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption: every connection is a full handshake, as wrk's are.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Accepts any server certificate (checking its signatures only).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One blocking `GET path` on a new connection: the status and the body (`Content-Length` framed).
pub(crate) fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>)> {
    fetch_with(addr, path, &[])
}

/// As [`fetch`], with extra request headers.
pub(crate) fn fetch_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, BATCH_TIMEOUT)?;
    stream.set_read_timeout(Some(BATCH_TIMEOUT))?;
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n").as_bytes())?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(status) = response_complete(&buffer) {
            let head = buffer.windows(4).position(|w| w == b"\r\n\r\n").map_or(buffer.len(), |at| at + 4);
            return Ok((status, buffer.split_off(head)));
        }
        match stream.read(&mut chunk)? {
            0 => bail!("{addr} closed before a whole response to GET {path}"),
            n if buffer.len() + n > RESPONSE_BYTES_MAX => bail!("response to GET {path} too large"),
            n => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The status once `buffer` holds a whole response (head and `Content-Length` body).
pub(crate) fn response_complete(buffer: &[u8]) -> Option<u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(buffer).ok()? else { return None };
    let length: usize = response
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
        .and_then(|header| std::str::from_utf8(header.value).ok()?.trim().parse().ok())
        .unwrap_or(0);
    (buffer.len() >= head + length).then_some(response.code?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_responses() {
        assert_eq!(response_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), Some(200));
        assert_eq!(response_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"), None);
        assert_eq!(response_complete(b"HTTP/1.1 200 OK\r\nContent-Le"), None);
        assert_eq!(response_complete(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n"), Some(502));
    }
}
