//! The io_uring backend: tokio-uring (one ring per worker thread).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd as _, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_uring::buf::BoundedBuf as _;
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

use crate::io::{IdleRead, Listener, Park, RING_ENTRIES, ReadError, Runtime, Stream, reserve_spare};

/// Set when this kernel refused to cancel operations by fd (`IORING_ASYNC_CANCEL_FD`, Linux
/// 5.19): idle io_uring connections then keep their read and their task, as before parking.
static CANCEL_BY_FD_REFUSED: AtomicBool = AtomicBool::new(false);

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

impl Park for UringStream {
    async fn read_idle(
        &mut self,
        mut buf: Vec<u8>,
        quiet: Duration,
        limit: Duration,
    ) -> (Result<IdleRead, ReadError>, Vec<u8>) {
        reserve_spare(&mut buf);
        let len = buf.len();
        let read = self.0.read(buf.slice(len..));
        let mut read = std::pin::pin!(read);
        let (result, slice) = match tokio::time::timeout(quiet, read.as_mut()).await {
            Ok(done) => done,
            Err(_) => match withdraw(read, self.0.as_raw_fd(), limit.saturating_sub(quiet)).await {
                Some(done) => done,
                // The buffer stays with the read, which the close completes.
                None => return (Err(ReadError::TimedOut), Vec::new()),
            },
        };
        let result = match result {
            Ok(read) => Ok(IdleRead::Read(read)),
            Err(error) if error.raw_os_error() == Some(libc::ECANCELED) => Ok(IdleRead::Quiet),
            Err(error) => Err(ReadError::Io(error)),
        };
        (result, slice.into_inner())
    }

    fn parked_fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }

    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Never asked: `parked_fd` is always given, and its readiness is polled instead.
        Poll::Ready(Err(io::Error::new(io::ErrorKind::Unsupported, "an io_uring stream is not in tokio's reactor")))
    }
}

/// Withdraws a read in flight on `fd`. Dropping it would not cancel it (tokio-uring keeps it in
/// the ring, and bytes that arrive later would land in a buffer nobody reads), so it is cancelled
/// in the kernel and then awaited: its completion says whether bytes came first (a read) or not
/// (`ECANCELED`). Where the kernel cannot cancel by fd, the read goes on for `remaining`; `None`
/// when that runs out.
async fn withdraw<F: Future>(read: std::pin::Pin<&mut F>, fd: RawFd, remaining: Duration) -> Option<F::Output> {
    if !CANCEL_BY_FD_REFUSED.load(Ordering::Relaxed) {
        if let Err(error) = cancel_operations_on(fd).await {
            if !CANCEL_BY_FD_REFUSED.swap(true, Ordering::Relaxed) {
                tracing::info!(%error, "io_uring cannot cancel by fd here: idle connections keep their task");
            }
        }
    }
    tokio::time::timeout(remaining, read).await.ok()
}

/// Cancels every operation in flight on `fd` (`IORING_OP_ASYNC_CANCEL` by fd), submitted on the
/// worker's ring through tokio-uring's public one-shot operation. Each cancelled operation then
/// completes with `ECANCELED`; one that completed first keeps its result.
async fn cancel_operations_on(fd: RawFd) -> io::Result<()> {
    let builder = io_uring::types::CancelBuilder::fd(io_uring::types::Fd(fd)).all();
    let entry = io_uring::opcode::AsyncCancel2::new(builder).build();
    match UnsubmittedOneshot::new((), CancelCompleted, entry).submit().await {
        Ok(_) => Ok(()),
        // Nothing left to cancel (the read completed), or it is completing now.
        Err(error) if matches!(error.raw_os_error(), Some(libc::ENOENT | libc::EALREADY)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// The result of an `IORING_OP_ASYNC_CANCEL`: how many operations it cancelled.
#[derive(Debug)]
struct CancelCompleted;

impl OneshotOutputTransform for CancelCompleted {
    type Output = io::Result<u32>;
    type StoredData = ();

    fn transform_oneshot_output(self, (): (), completion: io_uring::cqueue::Entry) -> io::Result<u32> {
        u32::try_from(completion.result()).map_err(|_| io::Error::from_raw_os_error(-completion.result()))
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    use std::task::Poll;
    use std::time::Duration;

    use tokio_uring::buf::BoundedBuf as _;

    use super::{Uring, UringStream, withdraw};
    use crate::io::{IdleRead, Park as _, Runtime as _};

    /// A connected pair: our io_uring side and the peer's std socket.
    fn pair() -> (UringStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        (UringStream(tokio_uring::net::TcpStream::from_std(ours)), peer)
    }

    #[test]
    fn a_quiet_read_is_withdrawn_without_losing_later_bytes() {
        if crate::io::probe_uring().is_err() {
            return; // io_uring refused here; the epoll backend covers this machine.
        }
        Uring::block_on(async {
            let (mut ours, mut peer) = pair();
            let (result, buf) = ours.read_idle(Vec::new(), Duration::from_millis(20), Duration::from_secs(5)).await;
            assert_eq!(result.unwrap(), IdleRead::Quiet);
            assert!(buf.is_empty());
            peer.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            let (result, buf) = ours.read_idle(buf, Duration::from_secs(5), Duration::from_secs(10)).await;
            assert_eq!(result.unwrap(), IdleRead::Read(16));
            assert_eq!(buf, b"GET / HTTP/1.1\r\n", "the withdrawn read took none of them");
        })
        .unwrap();
    }

    #[test]
    fn bytes_that_came_before_the_cancel_are_returned() {
        if crate::io::probe_uring().is_err() {
            return; // io_uring refused here; the epoll backend covers this machine.
        }
        Uring::block_on(async {
            let (ours, mut peer) = pair();
            let read = ours.0.read(Vec::with_capacity(64).slice(..));
            let mut read = std::pin::pin!(read);
            // Queue the read (not yet submitted to the kernel), then let bytes arrive: the kernel
            // sees the read, which completes with them, before the cancel that follows it.
            std::future::poll_fn(|cx| {
                assert!(read.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            peer.write_all(b"GET").unwrap();
            let fd = ours.0.as_raw_fd();
            let (result, slice) = withdraw(read, fd, Duration::from_secs(5)).await.expect("the read completes");
            assert_eq!(result.unwrap(), 3);
            assert_eq!(slice.into_inner(), b"GET");
        })
        .unwrap();
    }
}
