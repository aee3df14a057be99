//! The flood generator: `flood_redirect` (`ebpf/xdp/src/bench.rs`) run by `BPF_PROG_RUN` with
//! live frames on a thread pinned to [`GENERATOR_CPU`]. The frames are redirected into the
//! client end of the veth, so the gateway end receives real XDP frames, and its receive softirq
//! runs on the generator's CPU (the redirect schedules the veth's NAPI there).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aya::Ebpf;
use aya::maps::Array;
use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp};
use portcullis_tests::netns::{NetnsPair, in_netns};
use portcullis_tests::packet;

use crate::system::{self, Ticks};
use crate::{BENCH_OBJECT, GATEWAY_IP, PORT};

/// Frames per `BPF_PROG_RUN` call when unpaced, and per batch inside it.
const FRAMES_PER_CALL: u32 = 1 << 17;
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
}

pub(crate) struct Generator {
    ebpf: Ebpf,
    ifindex: u32,
    syn: Vec<u8>,
    udp: Vec<u8>,
}

impl Generator {
    pub(crate) fn load(pair: &NetnsPair) -> Result<Self> {
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
        Ok(Self { ebpf, ifindex, syn, udp })
    }

    fn configure(&mut self, flood: Flood) -> Result<()> {
        let mut map: Array<_, [u32; 4]> = Array::try_from(self.ebpf.map_mut("FLOOD").context("FLOOD map")?)?;
        map.set(0, [self.ifindex, flood.sources, u32::from(flood.base), 0], 0)?;
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
        let rx_before = system::rx_packets(&pair.gateway_ns, &pair.gateway_if)?;
        let (all_before, generator_before, other_before) = (
            system::cpu_ticks(None)?,
            system::cpu_ticks(Some(GENERATOR_CPU))?,
            system::cpu_ticks(Some(1 - GENERATOR_CPU))?,
        );
        let started = Instant::now();
        in_netns(&pair.client_ns, || -> Result<()> {
            system::pin_to(GENERATOR_CPU);
            let mut sent: u64 = 0;
            while started.elapsed() < duration {
                let frames = match rate {
                    Some(rate) => {
                        let due = (started.elapsed().as_secs_f64() * rate) as u64;
                        if due <= sent {
                            std::thread::sleep(Duration::from_micros(200));
                            continue;
                        }
                        (due - sent).min(u64::from(FRAMES_PER_CALL)) as u32
                    }
                    None => FRAMES_PER_CALL,
                };
                let mut options = TestRunOptions::new();
                options.data_in = Some(frame);
                options.repeat = frames;
                options.attrs = TestRunAttrs::new().xdp_live_frames(LIVE_FRAMES_BATCH);
                program.test_run(options)?;
                sent += u64::from(frames);
            }
            Ok(())
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
        })
    }
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
