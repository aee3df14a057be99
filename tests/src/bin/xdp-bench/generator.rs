//! The flood generator, pinned to [`GENERATOR_CPU`], by one of two feeds into the client end of
//! the veth, so that the gateway end receives real frames and its receive softirq runs on the
//! generator's CPU (the veth schedules its NAPI there):
//! - live frames: `flood_redirect` (`ebpf/xdp/src/bench.rs`) run by `BPF_PROG_RUN` with
//!   `BPF_F_TEST_XDP_LIVE_FRAMES`, redirecting XDP frames (no skb anywhere);
//! - a packet socket ([`PacketSocket`]), where the kernel refuses live frames (or with
//!   `--packet-socket`): one prebuilt frame per source, sent as skbs.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aya::Ebpf;
use aya::maps::Array;
use aya::programs::{ProgramError, TestRun as _, TestRunAttrs, TestRunOptions, Xdp};
use aya::sys::SyscallError;
use portcullis_tests::netns::{NetnsPair, in_netns};
use portcullis_tests::packet;

use crate::packet_socket::PacketSocket;
use crate::system::{self, Ticks};
use crate::{BENCH_OBJECT, GATEWAY_IP, PORT};

/// Frames per `BPF_PROG_RUN` call when unpaced, and per batch inside it.
const FRAMES_PER_CALL: u32 = 1 << 17;
/// Frames per turn of the loop from a packet socket when unpaced: a few ms of sending, so that
/// a run ends on time (the socket feeds a few hundred thousand frames a second, not millions).
const SOCKET_FRAMES_PER_TURN: u32 = 1 << 12;
const LIVE_FRAMES_BATCH: u32 = 64;
/// The CPU the generator is pinned to (the receive softirq follows it).
pub(crate) const GENERATOR_CPU: usize = 1;
/// UDP payload: the frame must hold the bytes the generator rewrites (through a TCP checksum).
const UDP_PAYLOAD_BYTES: usize = 18;

/// What to flood with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flood {
    /// Sources rotate over `base .. base + sources`.
    pub(crate) base: Ipv4Addr,
    pub(crate) sources: u32,
    /// UDP datagrams instead of TCP SYNs.
    pub(crate) udp: bool,
}

/// One measurement of the receiving side.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    /// Packets the gateway's veth received, per second.
    pub(crate) packets_per_second: f64,
    /// Receive softirq time (whole machine) per packet received.
    pub(crate) softirq_ns: f64,
    /// All CPU time on the machine per packet (generator included).
    pub(crate) busy_ns: f64,
    /// CPU time per packet of what received the flood in user space (0 where nothing did).
    pub(crate) user_ns: f64,
    /// Share of the received packets that user space read (1 where it is not involved).
    pub(crate) read_share: f64,
    /// Per-CPU time over the run, for the DDoS test's account.
    pub(crate) generator_cpu: Ticks,
    pub(crate) other_cpu: Ticks,
    pub(crate) seconds: f64,
    /// The XDP program's own time per run, from the kernel's run-time statistics (0 where not
    /// measured).
    pub(crate) program_ns: f64,
}

/// How the generator's frames reach the veth.
enum Feed {
    LiveFrames,
    PacketSocket(PacketSocket),
}

pub(crate) struct Generator {
    ebpf: Ebpf,
    ifindex: u32,
    feed: Feed,
    syn: Vec<u8>,
    udp: Vec<u8>,
}

impl Generator {
    /// Loads the generator and picks its feed: live frames unless the kernel refuses them or
    /// `packet_socket` asks for the socket. Prints one line saying which, and why.
    pub(crate) fn load(pair: &NetnsPair, packet_socket: bool) -> Result<Self> {
        let client_if = pair.client_if.clone();
        let (ebpf, ifindex) = in_netns(&pair.client_ns, move || -> Result<(Ebpf, u32)> {
            let mut ebpf = Ebpf::load(BENCH_OBJECT)?;
            let program: &mut Xdp = ebpf.program_mut("flood_redirect").context("program")?.try_into()?;
            program.load()?;
            let name = std::ffi::CString::new(client_if)?;
            // SAFETY: a NUL-terminated interface name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            Ok((ebpf, ifindex))
        })?;
        let refused = if packet_socket { None } else { live_frames_refused(&ebpf)? };
        let feed = match (packet_socket, refused) {
            (false, None) => {
                println!("feed: BPF_PROG_RUN with live frames (flood_redirect into {})", pair.client_if);
                Feed::LiveFrames
            }
            (_, refused) => {
                let why = refused.unwrap_or_else(|| "asked for (--packet-socket)".to_owned());
                println!("feed: AF_PACKET socket on {} (sendmmsg, qdisc bypass): {why}", pair.client_if);
                Feed::PacketSocket(in_netns(&pair.client_ns, || PacketSocket::open(ifindex))?)
            }
        };
        let sink_mac = system::mac(&pair.gateway_ns, &pair.gateway_if)?;
        let frame = |protocol: u8, transport: &[u8]| {
            let mut frame = packet::frame(&[
                &packet::ethernet(&[], packet::ETH_P_IPV4),
                &packet::ipv4(Ipv4Addr::new(198, 18, 0, 0), GATEWAY_IP, protocol, 0, transport),
            ]);
            frame[0..6].copy_from_slice(&sink_mac);
            checksum(&mut frame);
            frame
        };
        let syn = frame(6, &packet::tcp(PORT, packet::TCP_SYN));
        let udp = frame(17, &packet::udp(PORT, UDP_PAYLOAD_BYTES));
        Ok(Self { ebpf, ifindex, feed, syn, udp })
    }

    /// Whether the frames come from a packet socket (as skbs) rather than as live XDP frames.
    pub(crate) fn feeds_skbs(&self) -> bool {
        matches!(self.feed, Feed::PacketSocket(_))
    }

    fn configure(&mut self, flood: Flood) -> Result<()> {
        let template = if flood.udp { &self.udp } else { &self.syn };
        match &mut self.feed {
            Feed::LiveFrames => {
                let mut map: Array<_, [u32; 4]> = Array::try_from(self.ebpf.map_mut("FLOOD").context("FLOOD map")?)?;
                map.set(0, [self.ifindex, flood.sources, u32::from(flood.base), 0], 0)?;
            }
            Feed::PacketSocket(socket) => socket.set_frames(&flood_frames(template, flood)),
        }
        Ok(())
    }

    /// Floods for `duration` (at `rate` packets/s, or as fast as it can) and measures the
    /// receiving side.
    pub(crate) fn measure(
        &mut self,
        pair: &NetnsPair,
        flood: Flood,
        duration: Duration,
        rate: Option<f64>,
    ) -> Result<Sample> {
        self.configure(flood)?;
        let program: &Xdp = self.ebpf.program("flood_redirect").context("program")?.try_into()?;
        let frame = if flood.udp { &self.udp } else { &self.syn };
        let feed = &mut self.feed;
        let rx_before = system::rx_packets(&pair.gateway_ns, &pair.gateway_if)?;
        let (all_before, generator_before, other_before) = (
            system::cpu_ticks(None)?,
            system::cpu_ticks(Some(GENERATOR_CPU))?,
            system::cpu_ticks(Some(1 - GENERATOR_CPU))?,
        );
        let started = Instant::now();
        in_netns(&pair.client_ns, || {
            system::pin_to(GENERATOR_CPU);
            send(feed, program, frame, started, duration, rate)
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let all = system::cpu_ticks(None)?.since(all_before);
        let generator_cpu = system::cpu_ticks(Some(GENERATOR_CPU))?.since(generator_before);
        let other_cpu = system::cpu_ticks(Some(1 - GENERATOR_CPU))?.since(other_before);
        let received = system::rx_packets(&pair.gateway_ns, &pair.gateway_if)?.saturating_sub(rx_before).max(1) as f64;
        let tick_ns = system::tick_ns();
        Ok(Sample {
            packets_per_second: received / seconds,
            softirq_ns: all.softirq as f64 * tick_ns / received,
            busy_ns: all.busy as f64 * tick_ns / received,
            user_ns: 0.0,
            read_share: 1.0,
            generator_cpu,
            other_cpu,
            seconds,
            program_ns: 0.0,
        })
    }
}

/// Sends the flood from `started` for `duration`, at `rate` frames/s or as fast as the feed goes.
fn send(
    feed: &mut Feed,
    program: &Xdp,
    frame: &[u8],
    started: Instant,
    duration: Duration,
    rate: Option<f64>,
) -> Result<()> {
    let per_turn = match feed {
        Feed::LiveFrames => FRAMES_PER_CALL,
        Feed::PacketSocket(_) => SOCKET_FRAMES_PER_TURN,
    };
    let mut sent: u64 = 0;
    while started.elapsed() < duration {
        crate::interrupt::check()?;
        let frames = match rate {
            Some(rate) => {
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                if due <= sent {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                (due - sent).min(u64::from(per_turn)) as u32
            }
            None => per_turn,
        };
        sent += match feed {
            Feed::LiveFrames => {
                program.test_run(live_frames(frame, frames))?;
                u64::from(frames)
            }
            Feed::PacketSocket(socket) => socket.send(u64::from(frames))?,
        };
    }
    Ok(())
}

/// `BPF_PROG_RUN` options that send `frame` `repeat` times as live frames.
fn live_frames(frame: &[u8], repeat: u32) -> TestRunOptions<'_> {
    let mut options = TestRunOptions::new();
    options.data_in = Some(frame);
    options.repeat = repeat;
    options.attrs = TestRunAttrs::new().xdp_live_frames(LIVE_FRAMES_BATCH);
    options
}

/// Asks the kernel to run the generator once with live frames: `None` if it does, what it
/// refuses if it answers `EPERM` (other errors are errors).
///
/// Kernel 6.18.44-fc-v1300 answers `EPERM` to `BPF_PROG_TEST_RUN` with
/// `BPF_F_TEST_XDP_LIVE_FRAMES` for any XDP program (even two instructions returning `XDP_DROP`
/// on one frame, as root, with no BPF program loaded that could hook `bpf()`), while the same
/// call without the flag works; upstream's live-frames path has no `EPERM` of its own, so the
/// refusal is that build's restriction (live frames transmit arbitrary frames on any interface
/// without a socket). See docs/benchmarks.md.
fn live_frames_refused(ebpf: &Ebpf) -> Result<Option<String>> {
    let program: &Xdp = ebpf.program("flood_redirect").context("program")?.try_into()?;
    // A frame too short for the generator to touch: it is redirected unchanged, or dropped.
    let probe = [0u8; 14];
    match program.test_run(live_frames(&probe, 1)) {
        Ok(_) => Ok(None),
        Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
            if io_error.raw_os_error() == Some(libc::EPERM) =>
        {
            Ok(Some(format!(
                "this kernel ({}) refuses BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (EPERM for \
                 any XDP program: this build's restriction, not upstream's); frames arrive as skbs, \
                 so every row's receive cost includes veth's copy of each into an XDP page",
                kernel_release()
            )))
        }
        Err(error) => Err(error.into()),
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".to_owned(), |r| r.trim().to_owned())
}

/// Offset of the IPv4 source address in an untagged Ethernet frame.
const IPV4_SOURCE: usize = 14 + 12;

/// The packet socket's frames: `template` from each of the flood's sources in turn, checksums
/// right (what `flood_redirect` makes of the template with live frames).
fn flood_frames(template: &[u8], flood: Flood) -> Vec<Vec<u8>> {
    (0..flood.sources.max(1))
        .map(|offset| {
            let mut frame = template.to_vec();
            let source = u32::from(flood.base).wrapping_add(offset);
            frame[IPV4_SOURCE..IPV4_SOURCE + 4].copy_from_slice(&source.to_be_bytes());
            checksum(&mut frame);
            frame
        })
        .collect()
}

/// Fills in the IPv4 header checksum and the TCP or UDP checksum of an untagged IPv4 frame
/// (the generator then keeps them right as it rewrites the source).
fn checksum(frame: &mut [u8]) {
    const IP: usize = 14;
    let header_bytes = usize::from(frame[IP] & 0x0f) * 4;
    frame[IP + 10..IP + 12].fill(0);
    let ip = internet_checksum(0, &frame[IP..IP + header_bytes]);
    frame[IP + 10..IP + 12].copy_from_slice(&ip.to_be_bytes());
    let l4 = IP + header_bytes;
    let offset = match frame[IP + 9] {
        6 => 16,
        17 => 6,
        _ => return,
    };
    frame[l4 + offset..l4 + offset + 2].fill(0);
    let length = (frame.len() - l4) as u32;
    let mut pseudo = 0u32;
    for pair in frame[IP + 12..IP + 20].chunks(2) {
        pseudo += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    pseudo += u32::from(frame[IP + 9]) + length;
    let sum = match internet_checksum(pseudo, &frame[l4..]) {
        0 => 0xffff, // 0 would mean "no checksum" in UDP; the two are equal in one's complement
        sum => sum,
    };
    frame[l4 + offset..l4 + offset + 2].copy_from_slice(&sum.to_be_bytes());
}

fn internet_checksum(initial: u32, bytes: &[u8]) -> u16 {
    let mut sum = initial;
    for chunk in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame whose IPv4 header and TCP checksums verify: one's-complement sums of 0.
    fn checksums_verify(frame: &[u8]) -> bool {
        const IP: usize = 14;
        let l4 = IP + 20;
        let mut pseudo = 0u32;
        for pair in frame[IP + 12..IP + 20].chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        pseudo += u32::from(frame[IP + 9]) + (frame.len() - l4) as u32;
        internet_checksum(0, &frame[IP..l4]) == 0 && internet_checksum(pseudo, &frame[l4..]) == 0
    }

    #[test]
    fn the_packet_socket_sends_one_right_frame_per_source() {
        let mut template = packet::frame(&[
            &packet::ethernet(&[], packet::ETH_P_IPV4),
            &packet::ipv4(Ipv4Addr::new(198, 18, 0, 0), GATEWAY_IP, 6, 0, &packet::tcp(PORT, packet::TCP_SYN)),
        ]);
        checksum(&mut template);
        let base = Ipv4Addr::new(198, 18, 255, 254);
        let frames = flood_frames(&template, Flood { base, sources: 4, udp: false });
        let sources: Vec<Ipv4Addr> =
            frames.iter().map(|frame| Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29])).collect();
        let expected = [[198, 18, 255, 254], [198, 18, 255, 255], [198, 19, 0, 0], [198, 19, 0, 1]];
        assert_eq!(sources, expected.map(Ipv4Addr::from));
        assert!(frames.iter().all(|frame| checksums_verify(frame)), "a frame's checksums do not verify");
        // Only the source and the checksums differ from the template (header checksum at 24..26).
        assert!(frames.iter().all(|frame| frame[..24] == template[..24] && frame[30..34] == template[30..34]));
    }

    #[test]
    fn a_flood_from_one_source_is_one_frame() {
        let mut template = packet::frame(&[
            &packet::ethernet(&[], packet::ETH_P_IPV4),
            &packet::ipv4(Ipv4Addr::new(198, 18, 0, 0), GATEWAY_IP, 6, 0, &packet::tcp(PORT, packet::TCP_SYN)),
        ]);
        checksum(&mut template);
        let frames = flood_frames(&template, Flood { base: Ipv4Addr::new(198, 18, 0, 7), sources: 0, udp: false });
        assert_eq!(frames.len(), 1);
        assert!(checksums_verify(&frames[0]));
    }
}
