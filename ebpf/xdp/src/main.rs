//! The Portcullis XDP pre-filter: drops traffic to the gateway's listeners from sources the
//! configuration refuses (denylisted, outside the allowlist, blocked, over their bucket),
//! before the kernel spends a socket buffer on it. Everything else passes untouched.
//!
//! Built by `cargo xtask build-ebpf` (nightly, `bpfel-unknown-none`, bitcode + `llc`); the
//! object is committed as `ebpf/portcullis-xdp.bpf.o` and loaded by the data plane.
#![no_std]
#![no_main]

mod parse;

use aya_ebpf::bindings::xdp_action;
use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray};
use aya_ebpf::programs::XdpContext;
use portcullis_ebpf_common::{
    BLOCKED_MAX, BUCKETS_MAX, Bucket, ELAPSED_CAP_NS, FILTER_ALLOWLIST, FilterConfig, GENERATIONS, LIST_ALLOW,
    LIST_DENY, LISTENERS_MAX, ListenFlags, ListenKey, PORTS, PREFIXES_MAX, SourceKey, TOKEN_SCALE, VERDICT_REASONS,
    VerdictReason,
};

use crate::parse::{Addresses, Parsed};

#[map]
static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static CONFIG: Array<FilterConfig> = Array::with_max_entries(GENERATIONS, 0);
#[map]
static LISTS_V4_0: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(PREFIXES_MAX, 0);
#[map]
static LISTS_V4_1: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(PREFIXES_MAX, 0);
#[map]
static LISTS_V6_0: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(PREFIXES_MAX, 0);
#[map]
static LISTS_V6_1: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(PREFIXES_MAX, 0);
#[map]
static BLOCKED_V4: LpmTrie<[u8; 4], u64> = LpmTrie::with_max_entries(BLOCKED_MAX, 0);
#[map]
static BLOCKED_V6: LpmTrie<[u8; 16], u64> = LpmTrie::with_max_entries(BLOCKED_MAX, 0);
#[map]
static BUCKETS: LruHashMap<SourceKey, Bucket> = LruHashMap::with_max_entries(BUCKETS_MAX, 0);
#[map]
static LISTEN_PORTS: Array<u32> = Array::with_max_entries(PORTS, 0);
#[map]
static LISTENERS: HashMap<ListenKey, u32> = HashMap::with_max_entries(LISTENERS_MAX, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(VERDICT_REASONS, 0);

/// The XDP entry point: one verdict per packet, counted by reason.
#[xdp]
pub fn portcullis_xdp(ctx: XdpContext) -> u32 {
    let reason = match parse::packet(&ctx) {
        Parsed::Judge(packet) if is_listener(&packet) => judge(&packet),
        Parsed::Judge(_) => VerdictReason::NotJudged,
        Parsed::Verdict(reason) => reason,
    };
    count(reason);
    if reason.drops() { xdp_action::XDP_DROP } else { xdp_action::XDP_PASS }
}

#[inline(always)]
fn count(reason: VerdictReason) {
    if let Some(counter) = COUNTERS.get_ptr_mut(reason as u32) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array entry, valid for the whole
        // program run, and XDP programs are not preempted on their CPU.
        unsafe { *counter += 1 };
    }
}

/// Whether the packet is addressed to one of the gateway's listening sockets.
#[inline(always)]
fn is_listener(packet: &parse::Packet) -> bool {
    let ipv6 = u32::from(matches!(packet.addresses, Addresses::V6 { .. }));
    let udp = u32::from(packet.protocol == portcullis_ebpf_common::IPPROTO_UDP);
    let Some(flags) = LISTEN_PORTS.get(u32::from(u16::from_be(packet.dst_port_be))) else {
        return false;
    };
    let flags = *flags;
    if flags & ListenFlags::any(ipv6, udp) != 0 {
        return true;
    }
    if flags & ListenFlags::exact(ipv6, udp) == 0 {
        return false;
    }
    let key = ListenKey {
        addr: packet.addresses.destination(),
        port_be: packet.dst_port_be,
        protocol: packet.protocol,
        _pad: 0,
    };
    // SAFETY: the value is only tested for presence, never read after a concurrent delete.
    unsafe { LISTENERS.get(&key) }.is_some()
}

/// The verdict for a packet to a listener, by the active generation's rules.
#[inline(always)]
fn judge(packet: &parse::Packet) -> VerdictReason {
    let generation = ACTIVE.get(0).map_or(0, |active| *active & 1);
    let Some(config) = CONFIG.get(generation) else {
        return VerdictReason::Passed;
    };
    // One LPM lookup answers deny and allow; the clock is read only for what needs it.
    let (lists, blocked) = match packet.addresses {
        Addresses::V4 { source, .. } => {
            let key = Key::new(32, source);
            let lists = if generation == 0 { LISTS_V4_0.get(&key) } else { LISTS_V4_1.get(&key) };
            (lists.map_or(0, |flags| *flags), BLOCKED_V4.get(&key).map_or(0, |until| *until))
        }
        Addresses::V6 { source, .. } => {
            let key = Key::new(128, source);
            let lists = if generation == 0 { LISTS_V6_0.get(&key) } else { LISTS_V6_1.get(&key) };
            (lists.map_or(0, |flags| *flags), BLOCKED_V6.get(&key).map_or(0, |until| *until))
        }
    };
    if lists & LIST_DENY != 0 {
        return VerdictReason::Denylisted;
    }
    if config.flags & FILTER_ALLOWLIST != 0 && lists & LIST_ALLOW == 0 {
        return VerdictReason::NotAllowlisted;
    }
    if blocked == 0 && config.syn_rate_per_second == 0 && config.packet_rate_per_second == 0 {
        return VerdictReason::Passed;
    }
    // SAFETY: a helper without arguments or preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if blocked > now {
        return VerdictReason::Blocked;
    }
    rate(config, packet, now)
}

/// The per-source token buckets. Updates from two CPUs may race and lose a decrement: the
/// limit is approximate by up to one token per CPU, which is the price of no lock here.
#[inline(always)]
fn rate(config: &FilterConfig, packet: &parse::Packet, now: u64) -> VerdictReason {
    let limits_syns = config.syn_rate_per_second != 0 && packet.is_syn;
    if config.packet_rate_per_second == 0 && !limits_syns {
        return VerdictReason::Passed;
    }
    let key = SourceKey { addr: packet.addresses.source_mapped() };
    let syn_full = config.syn_burst * TOKEN_SCALE;
    let packet_full = config.packet_burst * TOKEN_SCALE;
    let Some(bucket) = BUCKETS.get_ptr_mut(&key) else {
        // First packet of this source: full buckets, minus this packet.
        let fresh = Bucket {
            syn_tokens: syn_full.saturating_sub(if packet.is_syn { TOKEN_SCALE } else { 0 }),
            packet_tokens: packet_full.saturating_sub(TOKEN_SCALE),
            refilled_ns: now,
        };
        let _ = BUCKETS.insert(&key, &fresh, 0);
        return VerdictReason::Passed;
    };
    // SAFETY: a live LRU entry; the kernel keeps the memory valid for this run even if the
    // entry is evicted concurrently (RCU), and a racing writer can only cost a token.
    let bucket = unsafe { &mut *bucket };
    let elapsed = now.saturating_sub(bucket.refilled_ns);
    bucket.refilled_ns = now;
    let (syn_add, packet_add) = if elapsed >= ELAPSED_CAP_NS {
        (syn_full, packet_full)
    } else {
        (elapsed * config.syn_rate_per_second, elapsed * config.packet_rate_per_second)
    };
    let syns = (bucket.syn_tokens + syn_add).min(syn_full);
    let packets = (bucket.packet_tokens + packet_add).min(packet_full);
    bucket.syn_tokens = syns;
    bucket.packet_tokens = packets;
    if limits_syns {
        if syns < TOKEN_SCALE {
            return VerdictReason::SynOverRate;
        }
        bucket.syn_tokens = syns - TOKEN_SCALE;
    }
    if config.packet_rate_per_second != 0 {
        if packets < TOKEN_SCALE {
            return VerdictReason::PacketOverRate;
        }
        bucket.packet_tokens = packets - TOKEN_SCALE;
    }
    VerdictReason::Passed
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: BPF programs cannot panic at run time (the verifier rejects unbounded code);
    // this handler exists only to satisfy `no_std` and is never reached.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
