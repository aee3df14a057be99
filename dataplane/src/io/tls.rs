//! TLS over any [`Stream`]: a rustls connection (server side for clients, client side for
//! HTTPS backends) driven over owned buffers.
//!
//! rustls is sans-IO: it takes ciphertext in (`read_tls`), hands plaintext out (`reader`), takes
//! plaintext in (`writer`) and hands ciphertext out (`write_tls`). This file moves bytes between
//! it and the inner stream's owned-buffer reads and writes, so TLS runs the same on io_uring
//! and epoll, with no adapter crate and no `dyn`.
//!
//! An idle client connection parks like a plain one ([`Park`]): once its idle read is withdrawn
//! with rustls holding no plaintext and no part of a record, its ciphertext buffers are freed and
//! only the rustls state stays (its session keys, and the deframer buffer rustls keeps allocated:
//! 4 KiB in rustls 0.23).

use std::cell::RefCell;
use std::io::{self, BufRead as _, Write as _};
use std::ops::Range;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::{ClientConnection, Connection, ServerConnection};

use crate::io::{IdleRead, Park, ReadError, Stream, read_within, reserve_spare};
use crate::tls::{ClientCertificate, ServerTls};
use records::RecordBoundary;

mod records;

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
///
/// The rustls state sits in a `RefCell` so that a tunnel (an upgraded connection) can read and
/// write at once through shared references; requests and tunnels run the same read and write
/// code. No borrow is ever held across an await.
pub(crate) struct TlsStream<S> {
    inner: S,
    state: RefCell<State>,
    /// Serializes ciphertext writes of the shared (tunnel) operations, so records leave in the
    /// order rustls sealed them.
    write_turn: tokio::sync::Mutex<()>,
    /// An accepted client's verified certificate, parsed once for policies.
    client_certificate: Option<ClientCertificate>,
}

/// The rustls connection and its ciphertext buffers.
struct State {
    tls: Connection,
    /// Ciphertext read from `inner` and not yet given to rustls: `incoming[incoming_start..]`.
    incoming: Vec<u8>,
    incoming_start: usize,
    /// Where the ciphertext given to rustls so far stands against its records.
    given: RecordBoundary,
    /// Ciphertext rustls produced, on its way to `inner`.
    outgoing: Vec<u8>,
}

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let handshaking = self.state.try_borrow().map(|state| state.tls.is_handshaking()).ok();
        f.debug_struct("TlsStream").field("handshaking", &handshaking).finish()
    }
}

impl<S: Stream> TlsStream<S> {
    /// Runs the server side of a handshake on `inner` within [`HANDSHAKE_TIMEOUT_MS`].
    pub(crate) async fn accept(inner: S, config: Arc<rustls::ServerConfig>) -> Result<Self, HandshakeError> {
        let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        let state = State::new(Connection::Server(ServerConnection::new(config)?));
        let mut stream = Self::handshake_until(inner, state, deadline).await?;
        stream.client_certificate = stream.peer_chain().and_then(ClientCertificate::parse_chain);
        Ok(stream)
    }

    /// Runs the server side of a handshake with the snapshot's server side `tls`: when its
    /// configuration depends on the SNI name (client authentication per certificate), the
    /// ClientHello is read first (rustls' `Acceptor`) and picks it. Within [`HANDSHAKE_TIMEOUT_MS`].
    pub(crate) async fn accept_with(mut inner: S, tls: Arc<ServerTls>) -> Result<Self, HandshakeError> {
        if !tls.by_name() {
            return Self::accept(inner, Arc::clone(&tls.default)).await;
        }
        let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        let state = match tokio::time::timeout_at(deadline.into(), read_client_hello(&mut inner, &tls)).await {
            Ok(Ok(state)) => state,
            Ok(Err(error)) => {
                inner.shutdown();
                return Err(error);
            }
            Err(_) => {
                inner.shutdown();
                return Err(HandshakeError::TimedOut);
            }
        };
        let mut stream = Self::handshake_until(inner, state, deadline).await?;
        stream.client_certificate = stream.peer_chain().and_then(ClientCertificate::parse_chain);
        Ok(stream)
    }

    /// Runs the client side of a handshake with an HTTPS backend named `server_name` on `inner`,
    /// within [`HANDSHAKE_TIMEOUT_MS`].
    pub(crate) async fn open(
        inner: S,
        config: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Result<Self, HandshakeError> {
        let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        let state = State::new(Connection::Client(ClientConnection::new(config, server_name)?));
        Self::handshake_until(inner, state, deadline).await
    }

    async fn handshake_until(inner: S, mut state: State, deadline: Instant) -> Result<Self, HandshakeError> {
        state.tls.set_buffer_limit(Some(PLAINTEXT_BUFFERED_BYTES_MAX));
        let mut stream = Self {
            inner,
            state: RefCell::new(state),
            write_turn: tokio::sync::Mutex::new(()),
            client_certificate: None,
        };
        match tokio::time::timeout_at(deadline.into(), stream.handshake()).await {
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
        while self.state.get_mut().tls.is_handshaking() {
            if self.state.get_mut().tls.wants_write() {
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
    /// The certificates the peer sent, end entity first.
    pub(crate) fn peer_chain(&mut self) -> Option<&[CertificateDer<'static>]> {
        self.state.get_mut().tls.peer_certificates()
    }

    /// An accepted client's verified certificate (mTLS), as policies read it.
    pub(crate) fn client_certificate(&self) -> Option<&ClientCertificate> {
        self.client_certificate.as_ref()
    }

    /// The negotiated protocol version, for logs and tests.
    pub(crate) fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.state.try_borrow().ok().and_then(|state| state.tls.protocol_version())
    }

    /// Sends `close_notify` (bounded by [`CLOSE_NOTIFY_TIMEOUT_MS`]), then shuts the inner
    /// stream down.
    pub(crate) async fn close(&mut self) {
        self.state.get_mut().tls.send_close_notify();
        let limit = Duration::from_millis(CLOSE_NOTIFY_TIMEOUT_MS);
        let _ = tokio::time::timeout(limit, self.flush()).await;
        self.inner.shutdown();
    }

    /// Gives buffered ciphertext to rustls, reading more from `inner` first when none is
    /// buffered, and processes it. Returns `false` at end of stream. Any alert rustls queues
    /// on an error is sent before the error returns.
    async fn feed(&mut self) -> Result<bool, HandshakeError> {
        let state = self.state.get_mut();
        if state.incoming_start >= state.incoming.len() {
            let mut incoming = std::mem::take(&mut state.incoming);
            prepare_ciphertext_read(&mut incoming);
            let (result, buf) = self.inner.read(incoming).await;
            let state = self.state.get_mut();
            state.incoming = buf;
            state.incoming_start = 0;
            if result? == 0 {
                return Ok(false);
            }
        }
        if let Err(error) = self.state.get_mut().process_incoming() {
            // rustls queued an alert that tells the peer why; best effort.
            let _ = self.flush().await;
            return Err(error);
        }
        Ok(true)
    }

    /// Writes all ciphertext rustls has queued to `inner`, through a shared reference (a
    /// tunnel's two directions both write): one flush at a time (`write_turn`), and the rustls
    /// queue is drained only once it is this flush's turn, so records go out in order.
    async fn flush(&self) -> io::Result<()> {
        let _turn = self.write_turn.lock().await;
        loop {
            let outgoing = {
                let mut state = self.state.borrow_mut();
                if !state.tls.wants_write() {
                    return Ok(());
                }
                let mut outgoing = std::mem::take(&mut state.outgoing);
                outgoing.clear();
                state.tls.write_tls(&mut outgoing)?;
                outgoing
            };
            let len = outgoing.len();
            let (result, buf) = self.inner.write_shared(outgoing, 0..len).await;
            self.state.borrow_mut().outgoing = buf;
            result?;
        }
    }
}

/// Reads a client's ClientHello with rustls' `Acceptor` and starts the server connection with the
/// configuration `tls` has for its SNI name. What the acceptor took counts as given to rustls
/// (it moves into the connection), and bytes read past it stay buffered for the handshake. An
/// alert rustls has for a bad hello is sent before the error returns.
async fn read_client_hello<S: Stream>(inner: &mut S, tls: &ServerTls) -> Result<State, HandshakeError> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut given = RecordBoundary::default();
    let mut incoming = Vec::new();
    loop {
        prepare_ciphertext_read(&mut incoming);
        let (result, buf) = inner.read(incoming).await;
        incoming = buf;
        if result? == 0 {
            return Err(HandshakeError::Closed);
        }
        let mut consumed = 0;
        while consumed < incoming.len() {
            let taken = acceptor.read_tls(&mut incoming.get(consumed..).unwrap_or_default())?;
            if taken == 0 {
                break; // the acceptor's buffer is full: a hello that large is refused below
            }
            given.advance(incoming.get(consumed..consumed + taken).unwrap_or_default());
            consumed += taken;
        }
        let (error, mut alert) = match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(accepted)) => {
                let config = tls.for_name(accepted.client_hello().server_name());
                match accepted.into_connection(config) {
                    Ok(connection) => {
                        let mut state = State::new(Connection::Server(connection));
                        state.incoming = incoming;
                        state.incoming_start = consumed;
                        state.given = given;
                        return Ok(state);
                    }
                    Err(refused) => refused,
                }
            }
            Err(refused) => refused,
        };
        let mut out = Vec::new();
        if alert.write_all(&mut out).is_ok() && !out.is_empty() {
            let len = out.len();
            let _ = inner.write_range(out, 0..len).await;
        }
        return Err(error.into());
    }
}

impl State {
    fn new(tls: Connection) -> Self {
        Self { tls, incoming: Vec::new(), incoming_start: 0, given: RecordBoundary::default(), outgoing: Vec::new() }
    }

    /// Gives the buffered ciphertext to rustls and processes it.
    fn process_incoming(&mut self) -> Result<(), HandshakeError> {
        let pending = self.incoming.get(self.incoming_start..).unwrap_or_default();
        let consumed = self.tls.read_tls(&mut &*pending)?;
        self.given.advance(pending.get(..consumed).unwrap_or_default());
        self.incoming_start += consumed;
        self.tls.process_new_packets()?;
        Ok(())
    }

    /// Whether the connection holds nothing in flight: no ciphertext unread by rustls, no part of
    /// a record inside rustls, no plaintext to hand out, nothing to send, no close_notify
    /// received, the handshake done. Only then may it park.
    fn at_rest(&self) -> bool {
        self.incoming_start >= self.incoming.len()
            && self.given.at_boundary()
            // false while rustls holds plaintext, or after close_notify.
            && self.tls.wants_read()
            && !self.tls.wants_write()
            && !self.tls.is_handshaking()
    }

    /// Frees the ciphertext buffers (both empty) of a connection about to park.
    fn release_buffers(&mut self) {
        self.incoming = Vec::new();
        self.incoming_start = 0;
        self.outgoing = Vec::new();
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
                // Ok(0) here means the peer sent close_notify: end of stream.
                Some(Ok(n))
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => None,
            Err(error) => Some(Err(error)),
        }
    }
}

/// An emptied ciphertext buffer, with room for a full record.
fn prepare_ciphertext_read(incoming: &mut Vec<u8>) {
    incoming.clear();
    if incoming.capacity() < CIPHERTEXT_READ_BYTES_MIN {
        incoming.reserve(CIPHERTEXT_READ_BYTES_MIN);
    }
}

impl<S: Stream> Stream for TlsStream<S> {
    /// A TLS connection needs a server name and a configuration: see [`TlsStream::open`].
    async fn connect(_addr: std::net::SocketAddr) -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "open TLS connections with TlsStream::open"))
    }

    /// The request path reads and writes through the same code as a tunnel (the shared
    /// operations below); with one operation in flight their borrows and turns never wait.
    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.read_shared(buf).await
    }

    async fn write_range(&mut self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        self.write_shared(buf, range).await
    }

    fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Plaintext rustls holds, else ciphertext read from `inner` (the rustls state is borrowed
    /// only between awaits, so a tunnel's write may run meanwhile). A peer that closes TCP
    /// without close_notify is end of stream all the same (HTTP framing tells truncation apart).
    /// Answers post-handshake messages (key updates) through [`Self::flush`].
    async fn read_shared(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            let incoming = {
                let mut state = self.state.borrow_mut();
                if let Some(result) = state.take_plaintext(&mut buf) {
                    return (result, buf);
                }
                if state.incoming_start < state.incoming.len() {
                    // Ciphertext read before the tunnel began.
                    None
                } else {
                    let mut incoming = std::mem::take(&mut state.incoming);
                    prepare_ciphertext_read(&mut incoming);
                    Some(incoming)
                }
            };
            if let Some(incoming) = incoming {
                let (result, returned) = self.inner.read_shared(incoming).await;
                let mut state = self.state.borrow_mut();
                state.incoming = returned;
                state.incoming_start = 0;
                match result {
                    // A peer that closes TCP without close_notify: end of stream all the same.
                    Ok(0) => return (Ok(0), buf),
                    Ok(_) => {}
                    Err(error) => return (Err(error), buf),
                }
            }
            let processed = self.state.borrow_mut().process_incoming();
            if let Err(error) = processed {
                // rustls queued an alert that tells the peer why; best effort.
                let _ = self.flush().await;
                return match error {
                    HandshakeError::Io(error) => (Err(error), buf),
                    error => (Err(io::Error::new(io::ErrorKind::InvalidData, error)), buf),
                };
            }
            if let Err(error) = self.flush().await {
                return (Err(error), buf);
            }
        }
    }

    /// Sealed into records by rustls, then sent in turn.
    async fn write_shared(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        let Range { mut start, end } = range;
        if start > end || end > buf.len() {
            return (Err(io::Error::new(io::ErrorKind::InvalidInput, "write range outside the buffer")), buf);
        }
        while start < end {
            let (written, pending) = {
                let mut state = self.state.borrow_mut();
                match state.tls.writer().write(buf.get(start..end).unwrap_or_default()) {
                    Ok(written) => (written, state.tls.wants_write()),
                    Err(error) => return (Err(error), buf),
                }
            };
            start += written;
            if let Err(error) = self.flush().await {
                return (Err(error), buf);
            }
            if written == 0 && !pending {
                return (Err(io::Error::new(io::ErrorKind::WriteZero, "TLS connection refuses more data")), buf);
            }
        }
        (Ok(()), buf)
    }

    /// Half-close: `close_notify`, then the TCP sending direction.
    async fn shutdown_write(&self) {
        self.state.borrow_mut().tls.send_close_notify();
        let limit = Duration::from_millis(CLOSE_NOTIFY_TIMEOUT_MS);
        let _ = tokio::time::timeout(limit, self.flush()).await;
        self.inner.shutdown_write().await;
    }
}

impl<S: Park> Park for TlsStream<S> {
    /// At rest ([`State::at_rest`]), the inner stream's idle read brings ciphertext: when it is
    /// withdrawn as quiet, the ciphertext buffers are freed and the connection may park; when
    /// bytes come, they are decrypted as any read's. Not at rest (plaintext or part of a record
    /// already here), an ordinary read within `limit`.
    async fn read_idle(
        &mut self,
        buf: Vec<u8>,
        quiet: Duration,
        mut limit: Duration,
    ) -> (Result<IdleRead, ReadError>, Vec<u8>) {
        if self.state.get_mut().at_rest() {
            let started = Instant::now();
            let state = self.state.get_mut();
            let mut incoming = std::mem::take(&mut state.incoming);
            prepare_ciphertext_read(&mut incoming);
            let (result, incoming) = self.inner.read_idle(incoming, quiet, limit).await;
            let state = self.state.get_mut();
            state.incoming = incoming;
            state.incoming_start = 0;
            match result {
                Ok(IdleRead::Quiet) => {
                    state.release_buffers();
                    return (Ok(IdleRead::Quiet), buf);
                }
                // Bytes came: the read below gives them to rustls.
                Ok(IdleRead::Read(read)) if read > 0 => limit = limit.saturating_sub(started.elapsed()),
                // End of stream, or an error (a timeout took the buffer: the connection closes).
                ended => return (ended, buf),
            }
        }
        let (result, buf) = read_within(self, buf, limit).await;
        (result.map(IdleRead::Read), buf)
    }

    fn parked_fd(&self) -> Option<RawFd> {
        self.inner.parked_fd()
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }
}

#[cfg(test)]
mod tests;
