//! The snapshot channel: a `SOCK_SEQPACKET` Unix socket from the data plane to control.
//!
//! Every message is one datagram holding one JSON object (so boundaries and attached fds never
//! split); a snapshot announcement carries the sealed memfd as `SCM_RIGHTS`. The data plane
//! connects, says [`ToControl::Hello`], then receives [`ToDataPlane::Snapshot`]s and answers
//! each with [`ToControl::Applied`] or [`ToControl::Rejected`]. Blocking sockets: each side
//! runs the channel on its own thread, never on a worker.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Largest message; a message is a few hundred bytes of JSON (the snapshot travels as an fd).
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// Connections control keeps waiting in its accept queue.
pub const LISTEN_BACKLOG: i32 = 8;

/// Data plane → control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToControl {
    /// First message after connecting.
    Hello {
        pid: u32,
        workers: u32,
        /// `uring` or `epoll`.
        io_backend: String,
        /// Addresses the workers listen on, as `ip:port`.
        listen: Vec<String>,
        /// Address the workers listen on for TLS (`--listen-tls`), as `ip:port`.
        #[serde(default)]
        listen_tls: Option<String>,
        /// Generation being served (from disk or an earlier control), 0 if none.
        generation: u64,
    },
    /// The snapshot was validated and every worker will use it from its next request on.
    Applied { generation: u64 },
    /// The snapshot was refused; the previous one keeps serving.
    Rejected { generation: u64, reason: String },
    /// Tokens named a `kid` that no key of these `<openid-config url>`s answers to (a key
    /// rotation): control re-fetches them, at most once per 5 minutes each.
    UnknownKid { urls: Vec<String> },
    /// A [`crate::telemetry::Batch`] is attached as a sealed memfd (postcard); control answers
    /// [`ToDataPlane::TelemetryAck`] once it has committed it. Sent again after a reconnect until
    /// acknowledged.
    Telemetry { sequence: u64 },
}

/// Control → data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToDataPlane {
    /// A sealed memfd holding this generation is attached.
    Snapshot { generation: u64 },
    /// Control has committed every telemetry batch up to and including `sequence`.
    TelemetryAck { sequence: u64 },
    /// Reopen the access-log file (`ctl logs reopen`, after logrotate moved it).
    ReopenLogs,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("snapshot channel I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("snapshot channel message is not valid JSON for this side: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("snapshot channel message was larger than {MESSAGE_BYTES_MAX} bytes and was cut")]
    Truncated,
}

/// Binds the channel's listening socket at `path` (replacing a stale one) with mode 0600.
pub fn listen(path: &Path) -> Result<OwnedFd, ChannelError> {
    let _ = std::fs::remove_file(path);
    let socket = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
        .map_err(std::io::Error::from)?;
    rustix::net::bind(&socket, &SocketAddrUnix::new(path).map_err(std::io::Error::from)?)
        .map_err(std::io::Error::from)?;
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(0o600)).map_err(std::io::Error::from)?;
    rustix::net::listen(&socket, LISTEN_BACKLOG).map_err(std::io::Error::from)?;
    Ok(socket)
}

/// Accepts one data-plane connection (blocking).
pub fn accept(listener: impl AsFd) -> Result<OwnedFd, ChannelError> {
    Ok(rustix::net::accept_with(listener, SocketFlags::CLOEXEC).map_err(std::io::Error::from)?)
}

/// Connects to control's channel at `path`.
pub fn connect(path: &Path) -> Result<OwnedFd, ChannelError> {
    let socket = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
        .map_err(std::io::Error::from)?;
    rustix::net::connect(&socket, &SocketAddrUnix::new(path).map_err(std::io::Error::from)?)
        .map_err(std::io::Error::from)?;
    Ok(socket)
}

/// Sends one message, with `fd` attached when given.
pub fn send<M: Serialize>(socket: impl AsFd, message: &M, fd: Option<BorrowedFd<'_>>) -> Result<(), ChannelError> {
    let body = serde_json::to_vec(message)?;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(fd) = fd {
        fds = [fd];
        // The buffer is sized for exactly one fd (cmsg_space above), so the push fits.
        let pushed = control.push(SendAncillaryMessage::ScmRights(&fds));
        debug_assert!(pushed, "cmsg space sized for one fd");
    }
    rustix::net::sendmsg(socket, &[IoSlice::new(&body)], &mut control, SendFlags::NOSIGNAL)
        .map_err(std::io::Error::from)?;
    Ok(())
}

/// Receives one message and the fd attached to it, if any. `Ok(None)` when the peer closed.
pub fn recv<M: DeserializeOwned>(socket: impl AsFd) -> Result<Option<(M, Option<OwnedFd>)>, ChannelError> {
    let mut body = vec![0u8; MESSAGE_BYTES_MAX];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received =
        rustix::net::recvmsg(socket, &mut [IoSliceMut::new(&mut body)], &mut control, RecvFlags::CMSG_CLOEXEC)
            .map_err(std::io::Error::from)?;
    let mut attached = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                // Keep the first; extra fds are dropped (closed) here.
                attached.get_or_insert(fd);
            }
        }
    }
    if received.flags.contains(rustix::net::ReturnFlags::TRUNC) {
        return Err(ChannelError::Truncated);
    }
    if received.bytes == 0 {
        return Ok(None);
    }
    let message = serde_json::from_slice(&body[..received.bytes])?;
    Ok(Some((message, attached)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fds_cross() {
        let (a, b) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
        let hello = ToControl::Hello {
            pid: 1,
            workers: 2,
            io_backend: "epoll".into(),
            listen: vec![],
            listen_tls: None,
            generation: 0,
        };
        send(&a, &hello, None).unwrap();
        let (got, fd) = recv::<ToControl>(&b).unwrap().unwrap();
        assert_eq!(got, hello);
        assert!(fd.is_none());

        let memfd = crate::snapshot::sealed_memfd("t", b"abc").unwrap();
        send(&b, &ToDataPlane::Snapshot { generation: 7 }, Some(memfd.as_fd())).unwrap();
        let (got, fd) = recv::<ToDataPlane>(&a).unwrap().unwrap();
        assert_eq!(got, ToDataPlane::Snapshot { generation: 7 });
        assert_eq!(rustix::fs::fstat(fd.unwrap()).unwrap().st_size, 3);

        drop(b);
        assert!(recv::<ToDataPlane>(&a).unwrap().is_none());
    }
}
