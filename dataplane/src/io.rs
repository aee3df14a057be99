//! The workers' I/O seam: one small completion-style interface, on tokio-uring or on tokio's epoll.
//!
//! Buffers are owned and handed to the operation (the io_uring model: the kernel writes into
//! them after the call returns), so the same generic proxy code runs on both backends,
//! monomorphised, without `dyn`. Timers come from tokio, which both runtimes drive.

pub(crate) mod epoll;
pub(crate) mod maybe_tls;
pub(crate) mod tls;
pub(crate) mod uring;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

/// A read always offers at least this much spare capacity (a read into no space would look like
/// EOF); callers that want larger reads reserve more themselves.
pub(crate) const READ_SPARE_BYTES_MIN: usize = 512;
/// Submission-queue entries per worker ring: one in-flight op per connection side fits
/// thousands of connections; the completion queue is twice this.
pub(crate) const RING_ENTRIES: u32 = 1024;

/// A connected TCP stream.
pub(crate) trait Stream: Sized + 'static {
    /// Opens a connection to `addr` (TCP_NODELAY set).
    async fn connect(addr: SocketAddr) -> io::Result<Self>;
    /// Reads into `buf`'s spare capacity (appending); `Ok(0)` is end of stream.
    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Writes all of `buf[range]`.
    async fn write_range(&mut self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>);
    /// Shuts both directions down now, so an operation still in flight completes and the fd can close.
    fn shutdown(&self);
    /// Like [`Stream::read`], but through a shared reference, so that a read and a write can be
    /// in flight at once (tunnels of upgraded connections copy both ways concurrently).
    async fn read_shared(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Like [`Stream::write_range`], through a shared reference.
    async fn write_shared(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>);
    /// Shuts the sending direction down (half-close): the peer reads end of stream.
    async fn shutdown_write(&self);
}

/// A listening TCP socket.
pub(crate) trait Listener: Sized + 'static {
    /// Its streams.
    type Stream: Stream;
    /// Adopts a bound, listening, non-blocking socket (inside the runtime).
    fn adopt(listener: std::net::TcpListener) -> io::Result<Self>;
    /// Accepts one connection.
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)>;
}

/// A single-threaded runtime that can spawn `!Send` tasks (`tokio::task::spawn_local`).
pub(crate) trait Runtime {
    /// Its listener (and through it, its stream).
    type Listener: Listener;
    /// Runs `future` to completion on this thread.
    fn block_on<F: Future>(future: F) -> io::Result<F::Output>;
}

/// Why a read with a deadline did not return data.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("read timed out")]
    TimedOut,
    #[error("read: {0}")]
    Io(#[from] io::Error),
}

/// Reads with a time limit. On timeout the buffer stays with the cancelled operation (the
/// kernel may still write into it), so an empty one is returned: callers close the stream then.
pub(crate) async fn read_within<S: Stream>(
    stream: &mut S,
    buf: Vec<u8>,
    limit: Duration,
) -> (Result<usize, ReadError>, Vec<u8>) {
    match tokio::time::timeout(limit, stream.read(buf)).await {
        Ok((result, buf)) => (result.map_err(ReadError::Io), buf),
        Err(_) => (Err(ReadError::TimedOut), Vec::new()),
    }
}

/// Checks that this kernel (and its seccomp policy) lets us create an io_uring.
pub fn probe_uring() -> io::Result<()> {
    io_uring::IoUring::new(8).map(drop)
}

/// Makes sure `buf` has at least [`READ_SPARE_BYTES_MIN`] bytes of spare capacity.
pub(crate) fn reserve_spare(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() < READ_SPARE_BYTES_MIN {
        buf.reserve(READ_SPARE_BYTES_MIN);
    }
}
