//! Benchmark-only XDP programs (never loaded by the gateway):
//! - `flood_redirect`: the packet generator. Driven by `BPF_PROG_RUN` with live frames, it
//!   stamps a source address from a rotating range into the frame (IPv4 and TCP checksums
//!   updated, so the receiving stack takes it as a real packet) and redirects it out of the veth
//!   given in `FLOOD`, so the far side receives real XDP frames (no socket-layer skb).
//! - `bare_drop`: `XDP_DROP` and nothing else, the floor the pre-filter is compared with.
//! - `pass_all`: `XDP_PASS`; lets a veth take redirected frames when the peer under test has
//!   no XDP program of its own (nftables and kernel-stack rows).
#![no_std]
#![no_main]

use aya_ebpf::bindings::xdp_action;
use aya_ebpf::helpers::bpf_redirect;
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::{Array, PerCpuArray};
use aya_ebpf::programs::XdpContext;

/// Offsets in an untagged Ethernet + IPv4 (no options) frame.
const IPV4_PROTOCOL_OFFSET: usize = 14 + 9;
const IPV4_CHECKSUM_OFFSET: usize = 14 + 10;
const IPV4_SOURCE_OFFSET: usize = 14 + 12;
const TCP_CHECKSUM_OFFSET: usize = 14 + 20 + 16;
const UDP_CHECKSUM_OFFSET: usize = 14 + 20 + 6;
/// Bytes the generator touches: through the TCP checksum.
const TOUCHED_BYTES: usize = TCP_CHECKSUM_OFFSET + 2;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Generator settings written by the benchmark.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Flood {
    /// Interface to redirect to (the generator's end of the veth).
    pub ifindex: u32,
    /// Sources rotate over `base .. base + count` (host order); 0 or 1: the frame's own source.
    pub source_count: u32,
    /// First source address, host byte order.
    pub source_base: u32,
    pub _pad: u32,
}

#[map]
static FLOOD: Array<Flood> = Array::with_max_entries(1, 0);
#[map]
static SEQUENCE: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn flood_redirect(ctx: XdpContext) -> u32 {
    let Some(flood) = FLOOD.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    if flood.source_count > 1 {
        if let Some(sequence) = SEQUENCE.get_ptr_mut(0) {
            // SAFETY: this CPU's slot of a per-CPU array, valid for the run.
            let n = unsafe {
                *sequence = (*sequence).wrapping_add(1);
                *sequence
            };
            let source = flood.source_base.wrapping_add(n % flood.source_count);
            restamp(&ctx, source);
        }
    }
    // SAFETY: a plain helper call with an interface index and no flags.
    unsafe { bpf_redirect(flood.ifindex, 0) as u32 }
}

/// Writes `source` into the frame and updates the IPv4 header checksum and the TCP or UDP
/// checksum (its pseudo-header holds the source) incrementally (RFC 1624). Frames shorter than
/// a TCP header are left alone.
#[inline(always)]
fn restamp(ctx: &XdpContext, source: u32) {
    let start = ctx.data();
    if start + TOUCHED_BYTES > ctx.data_end() {
        return;
    }
    // SAFETY: every access below lies within the first `TOUCHED_BYTES` bytes of the packet
    // (checked just above); unaligned reads and writes of byte arrays.
    unsafe {
        let at = |offset: usize| (start + offset) as *mut [u8; 2];
        let old = u32::from_be_bytes(core::ptr::read_unaligned((start + IPV4_SOURCE_OFFSET) as *const [u8; 4]));
        core::ptr::write_unaligned((start + IPV4_SOURCE_OFFSET) as *mut [u8; 4], source.to_be_bytes());
        let ip = u16::from_be_bytes(core::ptr::read_unaligned(at(IPV4_CHECKSUM_OFFSET)));
        core::ptr::write_unaligned(at(IPV4_CHECKSUM_OFFSET), checksum_replace(ip, old, source).to_be_bytes());
        let protocol = *((start + IPV4_PROTOCOL_OFFSET) as *const u8);
        let l4 = match protocol {
            IPPROTO_TCP => TCP_CHECKSUM_OFFSET,
            IPPROTO_UDP => UDP_CHECKSUM_OFFSET,
            _ => return,
        };
        let check = u16::from_be_bytes(core::ptr::read_unaligned(at(l4)));
        // A UDP checksum of 0 means "none" and stays so.
        if protocol == IPPROTO_TCP || check != 0 {
            core::ptr::write_unaligned(at(l4), checksum_replace(check, old, source).to_be_bytes());
        }
    }
}

/// An Internet checksum after one 32-bit word of the summed data changed from `old` to `new`.
#[inline(always)]
fn checksum_replace(check: u16, old: u32, new: u32) -> u16 {
    let mut sum = u32::from(!check) + ((!old >> 16) & 0xffff) + (!old & 0xffff) + (new >> 16) + (new & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[xdp]
pub fn bare_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn pass_all(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: never reached: BPF code cannot panic at run time.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
