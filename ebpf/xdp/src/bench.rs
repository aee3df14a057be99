//! Benchmark-only XDP programs (never loaded by the gateway):
//! - `flood_redirect`: the packet generator. Driven by `BPF_PROG_RUN` with live frames, it
//!   stamps a source address from a rotating range into the frame and redirects it out of the
//!   veth given in `FLOOD`, so the far side receives real XDP frames (no socket-layer skb).
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

/// Offset of the IPv4 source address in an untagged Ethernet + IPv4 frame.
const IPV4_SOURCE_OFFSET: usize = 14 + 12;

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
            let at = ctx.data() + IPV4_SOURCE_OFFSET;
            if at + 4 <= ctx.data_end() {
                // SAFETY: inside the packet (checked above).
                unsafe { core::ptr::write_unaligned(at as *mut [u8; 4], source.to_be_bytes()) };
            }
        }
    }
    // SAFETY: a plain helper call with an interface index and no flags.
    unsafe { bpf_redirect(flood.ifindex, 0) as u32 }
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
