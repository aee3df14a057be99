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
use std::os::fd::{AsRawFd, RawFd};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

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

/// A client connection that can park while idle: leave its task and its read buffer and wait in
/// the worker's registry (`worker::parked`), watched for readability through tokio's reactor. A
/// worker's own TCP stream, and TLS over it (`io/tls`), which parks through its TCP stream.
pub(crate) trait Park: Stream {
    /// Reads like [`read_within`] with `limit`, except that when no byte has come after `quiet`
    /// (shorter than `limit`) the read is withdrawn without losing a byte and
    /// [`IdleRead::Quiet`] is returned; bytes that arrived while it was being withdrawn are
    /// returned as a read.
    async fn read_idle(
        &mut self,
        buf: Vec<u8>,
        quiet: Duration,
        limit: Duration,
    ) -> (Result<IdleRead, ReadError>, Vec<u8>);
    /// The fd to add to tokio's reactor while the stream is parked; `None` when the stream is in
    /// the reactor for its whole life already ([`Park::poll_read_ready`] asks it then).
    fn parked_fd(&self) -> Option<RawFd>;
    /// Readability of a stream that is in tokio's reactor by itself (`parked_fd` is `None`).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// How an idle read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleRead {
    /// This many bytes were appended (0: end of stream).
    Read(usize),
    /// Nothing came: the read was withdrawn and took no byte.
    Quiet,
}

/// A parked stream, watched for readability (bytes, or the peer's close) through tokio's reactor.
/// An epoll stream is in the reactor for its whole life already; an io_uring stream's fd is added
/// while it is parked and removed (never closed) when it leaves, so that epoll_ctl pair is paid
/// per park, not per request.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    /// Declared before `stream`, so dropped (the fd leaves the reactor) before the stream closes
    /// the fd; [`Watched::into_stream`] drops it first too.
    added: Option<AsyncFd<WatchedFd>>,
    stream: S,
}

/// A borrowed fd in an [`AsyncFd`]: dropping it deregisters the fd and does not close it.
#[derive(Debug)]
struct WatchedFd(RawFd);

impl AsRawFd for WatchedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl<S: Park> Watched<S> {
    /// Starts watching `stream`; gives it back if the reactor refuses its fd.
    pub(crate) fn new(stream: S) -> Result<Self, S> {
        let Some(fd) = stream.parked_fd() else {
            return Ok(Self { added: None, stream });
        };
        // SAFETY: `fd` is `stream`'s open socket, and `stream` lives in this struct, which drops
        // the AsyncFd before the stream (field order; `into_stream` drops it first), so the fd
        // stays open and the same for the AsyncFd's whole life.
        let added = unsafe { AsyncFd::register_with_interest(WatchedFd(fd), Interest::READABLE) };
        match added {
            Ok(added) => Ok(Self { added: Some(added), stream }),
            Err(_) => Err(stream),
        }
    }

    /// Whether the stream has become readable; wakes `cx` when it does.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.added {
            Some(added) => added.poll_read_ready(cx).map_ok(drop),
            None => self.stream.poll_read_ready(cx),
        }
    }

    /// Stops watching and gives the stream back.
    pub(crate) fn into_stream(self) -> S {
        let Self { added, stream } = self;
        drop(added);
        stream
    }
}

/// A listening TCP socket.
pub(crate) trait Listener: Sized + 'static {
    /// Its streams.
    type Stream: Park;
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
