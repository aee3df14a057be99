//! A connection that is plain TCP or TLS over the worker's stream type: the client side of a
//! proxied connection (TLS when accepted on `--listen-tls`) and backend connections (TLS to
//! `https://` backends).
//!
//! An enum rather than a second type parameter keeps `Connection<S>` and the backend pool as
//! they are; the match per read or write costs a branch, never a `dyn`.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::RawFd;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::io::tls::TlsStream;
use crate::io::{IdleRead, Park, ReadError, Stream};
use crate::tls::ClientCertificate;

/// A connection as the proxy sees it.
#[derive(Debug)]
pub(crate) enum MaybeTls<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
}

impl<S: Stream> MaybeTls<S> {
    /// Whether it is TLS (for a client: `X-Forwarded-Proto: https`).
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// The client's verified certificate (mTLS), as policies read it.
    pub(crate) fn client_certificate(&self) -> Option<&ClientCertificate> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(stream) => stream.client_certificate(),
        }
    }

    /// Closes the connection: TLS sends `close_notify` first.
    pub(crate) async fn close(&mut self) {
        match self {
            Self::Plain(stream) => stream.shutdown(),
            Self::Tls(stream) => stream.close().await,
        }
    }
}

/// Plain and TLS connections park alike: a TLS one through its inner stream ([`TlsStream`]'s
/// `Park`), once rustls holds nothing in flight.
impl<S: Park> Park for MaybeTls<S> {
    async fn read_idle(
        &mut self,
        buf: Vec<u8>,
        quiet: Duration,
        limit: Duration,
    ) -> (Result<IdleRead, ReadError>, Vec<u8>) {
        match self {
            Self::Plain(stream) => stream.read_idle(buf, quiet, limit).await,
            Self::Tls(stream) => stream.read_idle(buf, quiet, limit).await,
        }
    }

    fn parked_fd(&self) -> Option<RawFd> {
        match self {
            Self::Plain(stream) => stream.parked_fd(),
            Self::Tls(stream) => stream.parked_fd(),
        }
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(stream) => stream.poll_read_ready(cx),
            Self::Tls(stream) => stream.poll_read_ready(cx),
        }
    }
}

impl<S: Stream> Stream for MaybeTls<S> {
    /// Opens a plain connection (TLS is added on top with [`TlsStream::open`]).
    async fn connect(addr: SocketAddr) -> io::Result<Self> {
        S::connect(addr).await.map(Self::Plain)
    }

    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Self::Plain(stream) => stream.read(buf).await,
            Self::Tls(stream) => stream.read(buf).await,
        }
    }

    async fn write_range(&mut self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Self::Plain(stream) => stream.write_range(buf, range).await,
            Self::Tls(stream) => stream.write_range(buf, range).await,
        }
    }

    fn shutdown(&self) {
        match self {
            Self::Plain(stream) => stream.shutdown(),
            Self::Tls(stream) => stream.shutdown(),
        }
    }

    async fn read_shared(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Self::Plain(stream) => stream.read_shared(buf).await,
            Self::Tls(stream) => stream.read_shared(buf).await,
        }
    }

    async fn write_shared(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Self::Plain(stream) => stream.write_shared(buf, range).await,
            Self::Tls(stream) => stream.write_shared(buf, range).await,
        }
    }

    async fn shutdown_write(&self) {
        match self {
            Self::Plain(stream) => stream.shutdown_write().await,
            Self::Tls(stream) => stream.shutdown_write().await,
        }
    }
}
