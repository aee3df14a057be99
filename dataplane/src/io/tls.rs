//! TLS over any [`Stream`]: a rustls connection (server side for clients, client side for
//! HTTPS backends) driven over owned buffers.
//!
//! rustls is sans-IO: it takes ciphertext in (`read_tls`), hands plaintext out (`reader`), takes
//! plaintext in (`writer`) and hands ciphertext out (`write_tls`). This file moves bytes between
//! it and the inner stream's owned-buffer reads and writes, so TLS runs the same on io_uring
//! and epoll, with no adapter crate and no `dyn`.

use std::io::{self, BufRead as _, Write as _};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConnection, Connection, ServerConnection};

use crate::io::{Stream, reserve_spare};
use crate::tls::ClientCertificate;

/// A client has this long to complete its handshake, from the accepted connection: like the
/// request-header timeout, it stops a slow or silent client from holding a connection slot.
pub(crate) const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Sending `close_notify` when we close gets this long: the peer may have stopped reading.
pub(crate) const CLOSE_NOTIFY_TIMEOUT_MS: u64 = 1_000;
/// Plaintext rustls may buffer for sending before we flush it as records: a response head plus
/// a relay chunk fit, and memory per connection stays bounded.
pub(crate) const PLAINTEXT_BUFFERED_BYTES_MAX: usize = 64 * 1024;
/// Ciphertext read at once from the inner stream: one full TLS record (16 KiB + overhead) fits.
pub(crate) const CIPHERTEXT_READ_BYTES_MIN: usize = 17 * 1024;

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("TLS handshake timed out after {HANDSHAKE_TIMEOUT_MS} ms")]
    TimedOut,
    #[error("the client closed the connection during the TLS handshake")]
    Closed,
    #[error("TLS handshake: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS handshake I/O: {0}")]
    Io(#[from] io::Error),
}

/// A TLS connection over `S`: accepted from a client, or opened to an HTTPS backend.
pub(crate) struct TlsStream<S> {
    inner: S,
    tls: Connection,
    /// Ciphertext read from `inner` and not yet given to rustls: `incoming[incoming_start..]`.
    incoming: Vec<u8>,
    incoming_start: usize,
    /// Ciphertext rustls produced, on its way to `inner`.
    outgoing: Vec<u8>,
    /// An accepted client's verified certificate, parsed once for policies.
    client_certificate: Option<ClientCertificate>,
}

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").field("handshaking", &self.tls.is_handshaking()).finish()
    }
}

impl<S: Stream> TlsStream<S> {
    /// Runs the server side of a handshake on `inner` within [`HANDSHAKE_TIMEOUT_MS`].
    pub(crate) async fn accept(inner: S, config: Arc<rustls::ServerConfig>) -> Result<Self, HandshakeError> {
        let mut stream = Self::handshake_within(inner, Connection::Server(ServerConnection::new(config)?)).await?;
        stream.client_certificate = stream.peer_certificate().and_then(|der| ClientCertificate::parse(der));
        Ok(stream)
    }

    /// Runs the client side of a handshake with an HTTPS backend named `server_name` on `inner`,
    /// within [`HANDSHAKE_TIMEOUT_MS`].
    pub(crate) async fn open(
        inner: S,
        config: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Result<Self, HandshakeError> {
        Self::handshake_within(inner, Connection::Client(ClientConnection::new(config, server_name)?)).await
    }

    async fn handshake_within(inner: S, mut tls: Connection) -> Result<Self, HandshakeError> {
        tls.set_buffer_limit(Some(PLAINTEXT_BUFFERED_BYTES_MAX));
        let mut stream = Self {
            inner,
            tls,
            incoming: Vec::new(),
            incoming_start: 0,
            outgoing: Vec::new(),
            client_certificate: None,
        };
        let limit = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        match tokio::time::timeout(limit, stream.handshake()).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(error)) => {
                stream.inner.shutdown();
                Err(error)
            }
            Err(_) => {
                stream.inner.shutdown();
                Err(HandshakeError::TimedOut)
            }
        }
    }

    async fn handshake(&mut self) -> Result<(), HandshakeError> {
        while self.tls.is_handshaking() {
            if self.tls.wants_write() {
                self.flush().await?;
                continue;
            }
            if !self.feed().await? {
                return Err(HandshakeError::Closed);
            }
        }
        // TLS 1.3 session tickets go out right after the handshake (client side: its Finished).
        self.flush().await?;
        Ok(())
    }

    /// The peer's certificate (end entity, DER): a client's when it presented one (rustls
    /// verified it against the configured CAs during the handshake), always a backend's.
    pub(crate) fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.tls.peer_certificates().and_then(|chain| chain.first())
    }

    /// An accepted client's verified certificate (mTLS), as policies read it.
    pub(crate) fn client_certificate(&self) -> Option<&ClientCertificate> {
        self.client_certificate.as_ref()
    }

    /// The negotiated protocol version, for logs and tests.
    pub(crate) fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.tls.protocol_version()
    }

    /// Sends `close_notify` (bounded by [`CLOSE_NOTIFY_TIMEOUT_MS`]), then shuts the inner
    /// stream down.
    pub(crate) async fn close(&mut self) {
        self.tls.send_close_notify();
        let limit = Duration::from_millis(CLOSE_NOTIFY_TIMEOUT_MS);
        let _ = tokio::time::timeout(limit, self.flush()).await;
        self.inner.shutdown();
    }

    /// Gives buffered ciphertext to rustls, reading more from `inner` first when none is
    /// buffered, and processes it. Returns `false` at end of stream. Any alert rustls queues
    /// on an error is sent before the error returns.
    async fn feed(&mut self) -> Result<bool, HandshakeError> {
        if self.incoming_start >= self.incoming.len() {
            self.incoming.clear();
            self.incoming_start = 0;
            if self.incoming.capacity() < CIPHERTEXT_READ_BYTES_MIN {
                self.incoming.reserve(CIPHERTEXT_READ_BYTES_MIN);
            }
            let (result, buf) = self.inner.read(std::mem::take(&mut self.incoming)).await;
            self.incoming = buf;
            if result? == 0 {
                return Ok(false);
            }
        }
        let mut pending = self.incoming.get(self.incoming_start..).unwrap_or_default();
        let consumed = self.tls.read_tls(&mut pending)?;
        self.incoming_start += consumed;
        if let Err(error) = self.tls.process_new_packets() {
            // rustls queued an alert that tells the client why; best effort.
            let _ = self.flush().await;
            return Err(error.into());
        }
        Ok(true)
    }

    /// Writes all ciphertext rustls has queued to `inner`.
    async fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.outgoing.clear();
            self.tls.write_tls(&mut self.outgoing)?;
            let len = self.outgoing.len();
            let (result, buf) = self.inner.write_range(std::mem::take(&mut self.outgoing), 0..len).await;
            self.outgoing = buf;
            result?;
        }
        Ok(())
    }

    /// Moves decrypted bytes into `buf`'s spare capacity. `None`: nothing buffered yet.
    fn take_plaintext(&mut self, buf: &mut Vec<u8>) -> Option<io::Result<usize>> {
        reserve_spare(buf);
        let spare = buf.capacity() - buf.len();
        let mut reader = self.tls.reader();
        match reader.fill_buf() {
            Ok(chunk) => {
                let n = chunk.len().min(spare);
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                reader.consume(n);
                // Ok(0) here means the client sent close_notify: end of stream.
                Some(Ok(n))
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => None,
            Err(error) => Some(Err(error)),
        }
    }
}

impl<S: Stream> Stream for TlsStream<S> {
    /// A TLS connection needs a server name and a configuration: see [`TlsStream::open`].
    async fn connect(_addr: std::net::SocketAddr) -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "open TLS connections with TlsStream::open"))
    }

    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            if let Some(result) = self.take_plaintext(&mut buf) {
                return (result, buf);
            }
            match self.feed().await {
                // A peer that closes TCP without close_notify: end of stream all the same (HTTP
                // framing tells truncation apart).
                Ok(false) => return (Ok(0), buf),
                Ok(true) => {}
                Err(HandshakeError::Io(error)) => return (Err(error), buf),
                Err(error) => return (Err(io::Error::new(io::ErrorKind::InvalidData, error)), buf),
            }
            // Post-handshake messages (key updates, alerts) may need an answer.
            if let Err(error) = self.flush().await {
                return (Err(error), buf);
            }
        }
    }

    async fn write_range(&mut self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        let Range { mut start, end } = range;
        if start > end || end > buf.len() {
            return (Err(io::Error::new(io::ErrorKind::InvalidInput, "write range outside the buffer")), buf);
        }
        while start < end {
            let written = match self.tls.writer().write(buf.get(start..end).unwrap_or_default()) {
                Ok(written) => written,
                Err(error) => return (Err(error), buf),
            };
            start += written;
            if let Err(error) = self.flush().await {
                return (Err(error), buf);
            }
            if written == 0 && !self.tls.wants_write() {
                return (Err(io::Error::new(io::ErrorKind::WriteZero, "TLS connection refuses more data")), buf);
            }
        }
        (Ok(()), buf)
    }

    fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Reading and writing at once would share the rustls connection across two operations in
    /// flight; upgraded connections (tunnels) over TLS are refused before they start instead
    /// ([`MaybeTls::can_tunnel`](crate::io::maybe_tls::MaybeTls::can_tunnel)).
    async fn read_shared(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        (Err(io::Error::new(io::ErrorKind::Unsupported, "tunnels over TLS are not supported yet")), buf)
    }

    async fn write_shared(&self, buf: Vec<u8>, _range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        (Err(io::Error::new(io::ErrorKind::Unsupported, "tunnels over TLS are not supported yet")), buf)
    }

    fn shutdown_write(&self) {
        self.inner.shutdown_write();
    }
}

#[cfg(test)]
mod tests;
