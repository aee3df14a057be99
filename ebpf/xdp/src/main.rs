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
use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_ns};
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray};
use aya_ebpf::programs::XdpContext;
use portcullis_ebpf_common::{
    ACTIVE_BLOCKED_PREFIXES, ACTIVE_BLOCKS, ACTIVE_ENTRIES, ACTIVE_GENERATION, BLOCKED_MAX, BUCKETS_MAX, Bucket,
    CELL_TRIE, CachedRules, ClockAnchor, FILTER_ALLOWLIST, FilterConfig, GENERATIONS, LIST_ALLOW, LIST_DENY,
    LISTENERS_MAX, ListenFlags, ListenKey, PORTS, PREFIXES_MAX, SourceKey, TOKEN_SCALE, V4_CELL_ROWS, V4CellRow,
    VERDICT_CACHE_ENTRIES, VERDICT_REASONS, VerdictReason, cell_lists, time_at_most, v4_cell_position,
};

use crate::parse::{Addresses, Parsed};

#[map]
static ACTIVE: Array<u32> = Array::with_max_entries(ACTIVE_ENTRIES, 0);
#[map]
static CONFIG: Array<FilterConfig> = Array::with_max_entries(GENERATIONS, 0);
#[map]
static LISTS_V4_0: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(PREFIXES_MAX, 0);
#[map]
static LISTS_V4_1: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(PREFIXES_MAX, 0);
#[map]
static V4_CELLS_0: Array<V4CellRow> = Array::with_max_entries(V4_CELL_ROWS, 0);
#[map]
static V4_CELLS_1: Array<V4CellRow> = Array::with_max_entries(V4_CELL_ROWS, 0);
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
#[map]
static CLOCK: PerCpuArray<ClockAnchor> = PerCpuArray::with_max_entries(1, 0);
#[map]
static VERDICT_CACHE: PerCpuArray<CachedRules> = PerCpuArray::with_max_entries(VERDICT_CACHE_ENTRIES, 0);

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
    // The versions are read before any list: a verdict cached under them was computed from
    // lists at least as new (user space changes a list first, then bumps its version).
    let generation = ACTIVE.get(ACTIVE_GENERATION).map_or(0, |version| *version);
    let blocks_version = ACTIVE.get(ACTIVE_BLOCKS).map_or(0, |version| *version);
    let Some(config) = CONFIG.get(generation & 1) else {
        return VerdictReason::Passed;
    };
    // An IPv4 source's /24 usually settles the lists by itself: a refusal then needs nothing more.
    let cell = match packet.addresses {
        Addresses::V4 { source, .. } => v4_cell(source, generation & 1),
        Addresses::V6 { .. } => CELL_TRIE,
    };
    if cell != CELL_TRIE {
        if let Some(refusal) = lists_refusal(config, cell_lists(cell)) {
            return refusal;
        }
    }
    let (lists, blocked, entry) = source_rules(&packet.addresses, generation, blocks_version, cell);
    if cell == CELL_TRIE {
        if let Some(refusal) = lists_refusal(config, lists) {
            return refusal;
        }
    }
    if blocked == 0 && config.syn_rate_per_second == 0 && config.packet_rate_per_second == 0 {
        return VerdictReason::Passed;
    }
    if still_before(blocked, config.tick_ns) {
        return VerdictReason::Blocked;
    }
    rate(config, packet, entry)
}

/// The refusal the lists bits call for, if any.
#[inline(always)]
fn lists_refusal(config: &FilterConfig, lists: u32) -> Option<VerdictReason> {
    if lists & LIST_DENY != 0 {
        Some(VerdictReason::Denylisted)
    } else if config.flags & FILTER_ALLOWLIST != 0 && lists & LIST_ALLOW == 0 {
        Some(VerdictReason::NotAllowlisted)
    } else {
        None
    }
}

/// The cell of an IPv4 source's /24 in generation `slot`'s direct table ([`CELL_TRIE`]: ask the trie).
#[inline(always)]
fn v4_cell(source: [u8; 4], slot: u32) -> u64 {
    let (row, word, shift) = v4_cell_position(u32::from_be_bytes(source));
    let row = if slot == 0 { V4_CELLS_0.get(row) } else { V4_CELLS_1.get(row) };
    match row {
        Some(row) => (row.words[word & 7] >> shift) & 3,
        None => CELL_TRIE,
    }
}

/// Whether CLOCK_MONOTONIC is still before `until` (a block's expiry, set by user space in ns;
/// 0: none). A block still well ahead is settled by an upper bound from jiffies (see
/// [`ClockAnchor`]), which only ever answers "yes"; the precise clock (~35 ns in a VM) is read
/// only when the bound cannot decide, and that read re-anchors this CPU's bound.
#[inline(always)]
fn still_before(until: u64, tick_ns: u64) -> bool {
    if until == 0 {
        return false;
    }
    // SAFETY: a helper without arguments or preconditions.
    let jiffies = unsafe { bpf_jiffies64() };
    if CLOCK.get(0).is_some_and(|anchor| time_at_most(*anchor, jiffies, tick_ns) <= until) {
        return true;
    }
    // Jiffies read before the clock, so that the pair's jiffies are never ahead of its time.
    // SAFETY: a helper without arguments or preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(anchor) = CLOCK.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a per-CPU array, valid for the whole run; XDP runs are not
        // preempted on their CPU.
        unsafe { *anchor = ClockAnchor { jiffies, ns: now } };
    }
    now < until
}

/// The lists bits and `blocked_until` of the packet's source, and this CPU's verdict-cache
/// entry for it: from the cache when it holds the source for the active versions, else from
/// the direct table's `cell` or the lists trie, and the blocked trie when it holds anything
/// (and then cached, with no bucket memo). A repeat source skips every lookup but this one.
#[inline(always)]
fn source_rules(
    addresses: &Addresses,
    generation: u32,
    blocks_version: u32,
    cell: u64,
) -> (u32, u64, Option<*mut CachedRules>) {
    let (source, family) = addresses.source_words();
    let entry = VERDICT_CACHE.get_ptr_mut(CachedRules::slot(source));
    if let Some(entry) = entry {
        // SAFETY: this CPU's slot of a per-CPU array, valid for the whole run; XDP runs are not
        // preempted on their CPU, so no other run writes it meanwhile.
        let cached = unsafe { &*entry };
        if cached.source[0] == source[0]
            && cached.source[1] == source[1]
            && cached.family == family
            && cached.generation == generation
            && cached.blocks_version == blocks_version
        {
            return (cached.lists, cached.blocked_until, Some(entry));
        }
    }
    let lists = if cell == CELL_TRIE { lists_trie(addresses, generation & 1) } else { cell_lists(cell) };
    let any_blocked = ACTIVE.get(ACTIVE_BLOCKED_PREFIXES).is_some_and(|count| *count != 0);
    let blocked_until = if any_blocked { blocked_trie(addresses) } else { 0 };
    if let Some(entry) = entry {
        let fresh = CachedRules {
            source,
            generation,
            blocks_version,
            lists,
            family,
            blocked_until,
            syn_refused_until: 0,
            packet_refused_until: 0,
            _pad: 0,
        };
        // SAFETY: as above.
        unsafe { *entry = fresh };
    }
    (lists, blocked_until, entry)
}

/// One LPM lookup answers deny and allow: the merged lists trie of generation `slot`.
#[inline(always)]
fn lists_trie(addresses: &Addresses, slot: u32) -> u32 {
    let lists = match *addresses {
        Addresses::V4 { source, .. } => {
            let key = Key::new(32, source);
            if slot == 0 { LISTS_V4_0.get(&key) } else { LISTS_V4_1.get(&key) }
        }
        Addresses::V6 { source, .. } => {
            let key = Key::new(128, source);
            if slot == 0 { LISTS_V6_0.get(&key) } else { LISTS_V6_1.get(&key) }
        }
    };
    lists.map_or(0, |flags| *flags)
}

/// The source's `blocked_until` (0: not blocked), from the blocked trie of its family.
#[inline(always)]
fn blocked_trie(addresses: &Addresses) -> u64 {
    let until = match *addresses {
        Addresses::V4 { source, .. } => BLOCKED_V4.get(&Key::new(32, source)),
        Addresses::V6 { source, .. } => BLOCKED_V6.get(&Key::new(128, source)),
    };
    until.map_or(0, |until| *until)
}

/// The per-source token buckets (shared by all CPUs, in the LRU map), timed in jiffies: one
/// load, where the precise clock costs ~35 ns. A packet is admitted only if every bucket that
/// limits it holds a token, and only then are tokens taken. A refusal leaves in this CPU's cache
/// entry the tick at which each short bucket gets its next token: until then the same refusal
/// needs neither the shared bucket nor a write to it (tokens come back only with time, and other
/// CPUs can only take them).
#[inline(always)]
fn rate(config: &FilterConfig, packet: &parse::Packet, entry: Option<*mut CachedRules>) -> VerdictReason {
    let limits =
        Limits { syns: config.syn_rate_per_second != 0 && packet.is_syn, packets: config.packet_rate_per_second != 0 };
    // A rate always comes with the tick (user space writes both); without it nothing is limited.
    if !limits.packets && !limits.syns || config.tick_ns == 0 {
        return VerdictReason::Passed;
    }
    // SAFETY: a helper without arguments or preconditions.
    let jiffies = unsafe { bpf_jiffies64() };
    if let Some(entry) = entry {
        // SAFETY: this CPU's verdict-cache entry for this source (see `source_rules`).
        let memo = unsafe { &*entry };
        if limits.syns && jiffies < memo.syn_refused_until {
            return VerdictReason::SynOverRate;
        }
        // Both ticks come from the same refusal, and while the packet bucket is short no packet
        // of this source is admitted anywhere, so no SYN token is taken: a SYN past its own tick
        // still has its token and is refused by the packet bucket alone.
        if limits.packets && jiffies < memo.packet_refused_until {
            return VerdictReason::PacketOverRate;
        }
    }
    take_tokens(config, packet, jiffies, limits, entry)
}

/// Which buckets limit a packet.
#[derive(Clone, Copy)]
struct Limits {
    /// A SYN without ACK, with a SYN rate set.
    syns: bool,
    /// A packet rate is set.
    packets: bool,
}

/// Refills the source's shared buckets and takes a token from each that limits the packet, or
/// refuses it (taking none) and remembers until which tick in this CPU's cache entry. Updates
/// from two CPUs may race and lose a decrement: the limit is approximate by up to one token per
/// CPU, the price of no lock here.
#[inline(always)]
fn take_tokens(
    config: &FilterConfig,
    packet: &parse::Packet,
    jiffies: u64,
    limits: Limits,
    entry: Option<*mut CachedRules>,
) -> VerdictReason {
    let key = SourceKey { addr: packet.addresses.source_mapped() };
    let syn_full = config.syn_burst * TOKEN_SCALE;
    let packet_full = config.packet_burst * TOKEN_SCALE;
    let Some(bucket) = BUCKETS.get_ptr_mut(&key) else {
        // First packet of this source: full buckets, minus this packet.
        let fresh = Bucket {
            syn_tokens: syn_full.saturating_sub(if limits.syns { TOKEN_SCALE } else { 0 }),
            packet_tokens: packet_full.saturating_sub(if limits.packets { TOKEN_SCALE } else { 0 }),
            refilled_jiffies: jiffies,
        };
        let _ = BUCKETS.insert(&key, &fresh, 0);
        return VerdictReason::Passed;
    };
    // SAFETY: a live LRU entry; the kernel keeps the memory valid for this run even if the
    // entry is evicted concurrently (RCU), and a racing writer can only cost a token.
    let bucket = unsafe { &mut *bucket };
    let elapsed = elapsed_ns(jiffies.saturating_sub(bucket.refilled_jiffies), config.tick_ns);
    let syns = refill(bucket.syn_tokens, elapsed, config.syn_rate_per_second, config.syn_fill_ns, syn_full);
    let packets =
        refill(bucket.packet_tokens, elapsed, config.packet_rate_per_second, config.packet_fill_ns, packet_full);
    bucket.refilled_jiffies = jiffies;
    bucket.syn_tokens = syns;
    bucket.packet_tokens = packets;
    let syn_short = config.syn_rate_per_second != 0 && syns < TOKEN_SCALE;
    let packet_short = limits.packets && packets < TOKEN_SCALE;
    if (limits.syns && syn_short) || packet_short {
        if let Some(entry) = entry {
            // SAFETY: this CPU's verdict-cache entry for this source (see `source_rules`).
            let memo = unsafe { &mut *entry };
            memo.syn_refused_until =
                if syn_short { next_token(jiffies, syns, config.syn_rate_per_second, config.tick_ns) } else { 0 };
            memo.packet_refused_until = if packet_short {
                next_token(jiffies, packets, config.packet_rate_per_second, config.tick_ns)
            } else {
                0
            };
        }
        return if limits.syns && syn_short { VerdictReason::SynOverRate } else { VerdictReason::PacketOverRate };
    }
    if limits.syns {
        bucket.syn_tokens = syns - TOKEN_SCALE;
    }
    if limits.packets {
        bucket.packet_tokens = packets - TOKEN_SCALE;
    }
    VerdictReason::Passed
}

/// `ticks` of `tick_ns` (below 2^34 ns, checked by user space) in ns; past 2^24 ticks (a day and
/// more) every bucket is full anyway, and `u64::MAX` says so without a 128-bit product.
#[inline(always)]
fn elapsed_ns(ticks: u64, tick_ns: u64) -> u64 {
    if ticks >= 1 << 24 { u64::MAX } else { ticks * tick_ns }
}

/// The tick at which a bucket holding `tokens` (less than one) at tick `jiffies` holds one, at
/// `rate_per_second` (not 0): buckets refill by whole ticks, so after `ceil((10⁹ − tokens) /
/// (rate × tick_ns))` of them.
#[inline(always)]
fn next_token(jiffies: u64, tokens: u64, rate_per_second: u64, tick_ns: u64) -> u64 {
    jiffies + (TOKEN_SCALE - tokens).div_ceil(rate_per_second).div_ceil(tick_ns)
}

/// A token bucket's content after `elapsed_ns` at `rate_per_second`: `min(full, tokens +
/// elapsed * rate)`, computed without overflow because a gap of `fill_ns` or more fills it.
#[inline(always)]
fn refill(tokens: u64, elapsed_ns: u64, rate_per_second: u64, fill_ns: u64, full: u64) -> u64 {
    if elapsed_ns >= fill_ns { full } else { (tokens + elapsed_ns * rate_per_second).min(full) }
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
