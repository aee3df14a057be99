//! The flood's second feed, for kernels that refuse `BPF_PROG_RUN` with live frames: an
//! `AF_PACKET` socket on the client's end of the veth that sends prebuilt frames, one per flood
//! source, with `sendmmsg` and `PACKET_QDISC_BYPASS` (straight to the veth's transmit, no qdisc).
//!
//! Veth hands each frame to the gateway end's receive queue of the sending CPU and schedules
//! that queue's NAPI there, as a redirect does; the gateway end's XDP program then runs on it as
//! on a frame off a wire. The difference from live frames is upstream of the program: the frame
//! arrives as an skb, which veth copies into a page with XDP headroom before running the program
//! (an AF_PACKET skb has too little headroom), so the receive softirq per packet is higher by that
//! copy for every row alike. The program's own time is measured apart (`bpf_stats`).

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{Result, bail};

/// Frames per `sendmmsg` call.
const SEND_BATCH: usize = 64;

/// A bound `AF_PACKET` socket and the frames it cycles through.
pub(crate) struct PacketSocket {
    socket: OwnedFd,
    /// Every frame, each `frame_bytes` long, back to back.
    frames: Vec<u8>,
    frame_bytes: usize,
    /// Index of the next frame to send.
    next: usize,
}

impl PacketSocket {
    /// Opens a socket bound to interface `ifindex` for sending only. Call it inside the
    /// interface's namespace (a socket stays in the namespace it was made in).
    pub(crate) fn open(ifindex: u32) -> Result<Self> {
        // SAFETY: socket(2) with constant arguments; protocol 0 receives nothing.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and own alone.
        let socket = unsafe { OwnedFd::from_raw_fd(raw) };
        let bypass: libc::c_int = 1;
        // SAFETY: setsockopt(2) reading one c_int we own.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&raw const bypass).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!("PACKET_QDISC_BYPASS: {}", std::io::Error::last_os_error());
        }
        // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set below.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        address.sll_ifindex = ifindex as i32;
        // SAFETY: bind(2) reading one sockaddr_ll we own, with its size.
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!("binding the AF_PACKET socket to interface {ifindex}: {}", std::io::Error::last_os_error());
        }
        Ok(Self { socket, frames: Vec::new(), frame_bytes: 0, next: 0 })
    }

    /// Replaces the frames the socket cycles through; all must have the same length.
    pub(crate) fn set_frames(&mut self, frames: &[Vec<u8>]) {
        self.frame_bytes = frames.first().map_or(0, Vec::len);
        self.frames = frames.concat();
        self.next = 0;
    }

    fn frame_count(&self) -> usize {
        self.frames.len().checked_div(self.frame_bytes).unwrap_or(0)
    }

    /// Sends `count` frames (the next ones in the cycle); returns how many the socket took.
    /// Frames the veth refused (a full receive ring: `ENOBUFS`) are skipped, as a NIC drops
    /// what overflows its ring.
    pub(crate) fn send(&mut self, count: u64) -> Result<u64> {
        let frames = self.frame_count();
        if frames == 0 {
            bail!("no frames to send");
        }
        let mut sent = 0u64;
        let mut iovecs = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; SEND_BATCH];
        // SAFETY: all-zero is a valid mmsghdr (no name, no control data).
        let mut headers: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
        while sent < count {
            let batch = (count - sent).min(SEND_BATCH as u64) as usize;
            for (iovec, header) in iovecs.iter_mut().zip(headers.iter_mut()).take(batch) {
                let start = self.next * self.frame_bytes;
                iovec.iov_base = self.frames[start..start + self.frame_bytes].as_ptr().cast_mut().cast();
                iovec.iov_len = self.frame_bytes;
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
                self.next = (self.next + 1) % frames;
            }
            // SAFETY: the first `batch` headers each point at one iovec of ours, which points at
            // `frame_bytes` bytes of `self.frames`; the kernel only reads them.
            let taken = unsafe { libc::sendmmsg(self.socket.as_raw_fd(), headers.as_mut_ptr(), batch as u32, 0) };
            if taken < 0 {
                let error = std::io::Error::last_os_error();
                if error.raw_os_error() != Some(libc::ENOBUFS) {
                    bail!("sendmmsg on the AF_PACKET socket: {error}");
                }
                std::thread::yield_now();
                continue;
            }
            // Frames after the first refused one were not sent; the cycle just moves on.
            sent += taken as u64;
        }
        Ok(sent)
    }
}
