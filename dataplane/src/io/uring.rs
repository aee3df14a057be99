//! The io_uring backend: tokio-uring (one ring per worker thread).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;

use tokio_uring::buf::BoundedBuf as _;

use crate::io::{Listener, RING_ENTRIES, Runtime, Stream, reserve_spare};

/// The io_uring runtime.
#[derive(Debug)]
pub(crate) struct Uring;

/// A tokio-uring TCP stream.
pub(crate) struct UringStream(tokio_uring::net::TcpStream);

/// A tokio-uring TCP listener, plus a non-blocking handle on the same socket: connections
/// already waiting in the accept queue are taken with plain `accept4` calls, and only an empty
/// queue costs an io_uring accept (one per ring round trip). A burst of thousands of connects is
/// then accepted in one go instead of one per event-loop turn.
pub(crate) struct UringListener {
    ring: tokio_uring::net::TcpListener,
    queued: std::net::TcpListener,
}

impl std::fmt::Debug for UringStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UringStream")
    }
}

impl std::fmt::Debug for UringListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UringListener")
    }
}

impl Runtime for Uring {
    type Listener = UringListener;

    fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
        let mut builder = tokio_uring::builder();
        builder.entries(RING_ENTRIES);
        // Runtime::new (unlike tokio_uring::start) reports a refused ring instead of panicking.
        let runtime = tokio_uring::Runtime::new(&builder)?;
        Ok(runtime.block_on(future))
    }
}

impl Stream for UringStream {
    async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = tokio_uring::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self(stream))
    }

    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.read_shared(buf).await
    }

    async fn write_range(&mut self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        self.write_shared(buf, range).await
    }

    fn shutdown(&self) {
        // Best effort: the peer may already be gone.
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }

    async fn shutdown_write(&self) {
        // Best effort: the peer may already be gone.
        let _ = self.0.shutdown(std::net::Shutdown::Write);
    }

    async fn read_shared(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        reserve_spare(&mut buf);
        let len = buf.len();
        // The slice is the spare capacity; on completion tokio-uring sets the Vec's length to len + n.
        let (result, slice) = self.0.read(buf.slice(len..)).await;
        (result, slice.into_inner())
    }

    async fn write_shared(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        if range.is_empty() {
            return (Ok(()), buf);
        }
        if range.end > buf.len() || range.start > range.end {
            return (Err(io::Error::new(io::ErrorKind::InvalidInput, "write range outside the buffer")), buf);
        }
        let (result, slice) = self.0.write_all(buf.slice(range)).await;
        (result, slice.into_inner())
    }
}

impl Listener for UringListener {
    type Stream = UringStream;

    fn adopt(listener: std::net::TcpListener) -> io::Result<Self> {
        // The listener is non-blocking (see `listener::bind`), and so is this handle on it.
        let queued = listener.try_clone()?;
        Ok(Self { ring: tokio_uring::net::TcpListener::from_std(listener), queued })
    }

    async fn accept(&self) -> io::Result<(UringStream, SocketAddr)> {
        let (stream, peer) = match self.queued.accept() {
            Ok((stream, peer)) => (tokio_uring::net::TcpStream::from_std(stream), peer),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.ring.accept().await?,
            Err(error) => return Err(error),
        };
        stream.set_nodelay(true)?;
        Ok((UringStream(stream), peer))
    }
}
