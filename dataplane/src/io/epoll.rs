//! The epoll backend: tokio's `current_thread` runtime with a `LocalSet`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::io::{IdleRead, Listener, Park, ReadError, Runtime, Stream, reserve_spare};

/// The epoll runtime.
#[derive(Debug)]
pub(crate) struct Epoll;

/// A tokio TCP stream.
#[derive(Debug)]
pub(crate) struct EpollStream(tokio::net::TcpStream);

/// A tokio TCP listener.
#[derive(Debug)]
pub(crate) struct EpollListener(tokio::net::TcpListener);

impl Runtime for Epoll {
    type Listener = EpollListener;

    fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let local = tokio::task::LocalSet::new();
        Ok(local.block_on(&runtime, future))
    }
}

impl Stream for EpollStream {
    async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self(stream))
    }

    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        reserve_spare(&mut buf);
        let result = self.0.read_buf(&mut buf).await;
        (result, buf)
    }

    async fn write_range(&mut self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        let result = match buf.get(range) {
            Some(bytes) => self.0.write_all(bytes).await,
            None => Err(io::Error::new(io::ErrorKind::InvalidInput, "write range outside the buffer")),
        };
        (result, buf)
    }

    fn shutdown(&self) {
        // Best effort: the peer may already be gone.
        let _ = socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Both);
    }

    async fn shutdown_write(&self) {
        // Best effort: the peer may already be gone.
        let _ = socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Write);
    }

    async fn read_shared(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        reserve_spare(&mut buf);
        loop {
            if let Err(error) = self.0.readable().await {
                return (Err(error), buf);
            }
            match self.0.try_read_buf(&mut buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                result => return (result, buf),
            }
        }
    }

    async fn write_shared(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        let Some(mut rest) = buf.get(range) else {
            return (Err(io::Error::new(io::ErrorKind::InvalidInput, "write range outside the buffer")), buf);
        };
        while !rest.is_empty() {
            if let Err(error) = self.0.writable().await {
                return (Err(error), buf);
            }
            match self.0.try_write(rest) {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(written) => rest = &rest[written..],
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return (Err(error), buf),
            }
        }
        (Ok(()), buf)
    }
}

impl Park for EpollStream {
    async fn read_idle(
        &mut self,
        mut buf: Vec<u8>,
        quiet: Duration,
        _limit: Duration,
    ) -> (Result<IdleRead, ReadError>, Vec<u8>) {
        reserve_spare(&mut buf);
        let result = match tokio::time::timeout(quiet, self.0.read_buf(&mut buf)).await {
            Ok(result) => result.map(IdleRead::Read).map_err(ReadError::Io),
            // tokio's read takes bytes only in the poll that returns them: dropping it loses none.
            Err(_) => Ok(IdleRead::Quiet),
        };
        (result, buf)
    }

    fn parked_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx)
    }
}

impl Listener for EpollListener {
    type Stream = EpollStream;

    fn adopt(listener: std::net::TcpListener) -> io::Result<Self> {
        Ok(Self(tokio::net::TcpListener::from_std(listener)?))
    }

    async fn accept(&self) -> io::Result<(EpollStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((EpollStream(stream), peer))
    }
}
