//! Types shared with the XDP program: map names, keys and values, `#[repr(C)]`, explicit
//! padding, no `bool`. The program (`ebpf/xdp`) and the data plane's loader both use these
//! definitions, so the two sides cannot disagree on a layout or a counter index.
#![no_std]

// ---------------------------------------------------------------------------------------------
// Limits (map sizes). Each is a `max_entries`; the LPM tries allocate per entry, the rest is
// preallocated by the kernel.

/// Prefixes per lists trie (allow and deny together) and family: room for large lists (the
/// benchmark loads 10k of each).
pub const PREFIXES_MAX: u32 = 131_072;
/// Blocked prefixes per family (L7 feedback and `ctl block`).
pub const BLOCKED_MAX: u32 = 65_536;
/// Sources tracked by the token buckets; the least recently seen is evicted (LRU), so a flood
/// of spoofed sources costs memory up to this bound and no more.
pub const BUCKETS_MAX: u32 = 131_072;
/// Exact (address, port, protocol) listeners; wildcard listeners live in [`LISTEN_PORTS`].
pub const LISTENERS_MAX: u32 = 256;
/// One slot per TCP/UDP port.
pub const PORTS: u32 = 65_536;
/// Configuration generations: the program reads the active one, user space fills the other
/// and then switches (so a reload never shows a half-filled set of maps).
pub const GENERATIONS: u32 = 2;
/// Entries of each CPU's verdict cache (direct-mapped, a power of two). 16 Ki entries of 64
/// bytes: 1 MiB per CPU. With hashed slots, about `n / VERDICT_CACHE_ENTRIES` of `n`
/// sources that take turns share a slot and miss (1,024 sources: ~6%); a miss costs only the
/// tries' lookups the cache saves.
pub const VERDICT_CACHE_ENTRIES: u32 = 16_384;
const _: () = assert!(VERDICT_CACHE_ENTRIES.is_power_of_two());

/// One token in the buckets' fixed-point representation: tokens are counted in billionths, so
/// that `elapsed_ns * rate_per_second` is the refill with no division in the kernel.
pub const TOKEN_SCALE: u64 = 1_000_000_000;
/// Largest rate (per second) user space may configure.
pub const RATE_MAX_PER_SECOND: u64 = 100_000_000;
/// Largest burst user space may configure (`u32::MAX`: bursts are `u32` in the contract).
pub const BURST_MAX: u64 = u32::MAX as u64;
// A full bucket in tokens fits, and so does a refill `elapsed_ns * rate` for any
// `elapsed_ns < fill_ns` (at most a full bucket plus one rate's worth).
const _: () = assert!(BURST_MAX.checked_mul(TOKEN_SCALE).is_some());
const _: () = assert!((BURST_MAX * TOKEN_SCALE).checked_add(RATE_MAX_PER_SECOND).is_some());

/// IPv6 extension headers the parser walks before it gives up and passes the packet.
pub const IPV6_EXTENSION_HEADERS_MAX: u32 = 6;
/// VLAN tags (802.1Q / 802.1ad) the parser skips.
pub const VLAN_TAGS_MAX: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Map names (the symbols in the object; the kernel keeps the first 15 bytes).

/// `Array<u32>`, [`ACTIVE_ENTRIES`] entries: the rules' versions. [`ACTIVE_GENERATION`] counts
/// list reloads (its low bit is the generation whose `CONFIG` and lists tries are active);
/// [`ACTIVE_BLOCKS`] counts changes to the blocked tries. Both only grow, so a cached verdict
/// that carries them is current exactly when they still match.
pub const MAP_ACTIVE: &str = "ACTIVE";
/// Index in [`MAP_ACTIVE`]: the lists generation counter.
pub const ACTIVE_GENERATION: u32 = 0;
/// Index in [`MAP_ACTIVE`]: the blocked-tries version.
pub const ACTIVE_BLOCKS: u32 = 1;
/// Index in [`MAP_ACTIVE`]: how many prefixes the blocked tries hold (both families). While it
/// is 0 the program skips their lookup.
pub const ACTIVE_BLOCKED_PREFIXES: u32 = 2;
/// Entries of [`MAP_ACTIVE`].
pub const ACTIVE_ENTRIES: u32 = 3;
/// `Array<FilterConfig>`, [`GENERATIONS`] entries.
pub const MAP_CONFIG: &str = "CONFIG";
/// `PerCpuArray<ClockAnchor>`, one entry: the last (jiffies, monotonic ns) pair this CPU read.
pub const MAP_CLOCK: &str = "CLOCK";
/// The allow and deny lists of one family and generation, merged into one LPM trie
/// (`LpmTrie<[u8; 4 or 16], u32>`, value: [`LIST_DENY`] | [`LIST_ALLOW`]), so that one lookup
/// answers both questions. User space stores in each prefix's value whether it, or a shorter
/// prefix covering it, is in each list; the longest match then carries the exact answer,
/// because every listed prefix that contains an address covers the longest one that does.
pub const MAP_LISTS_V4: [&str; 2] = ["LISTS_V4_0", "LISTS_V4_1"];
pub const MAP_LISTS_V6: [&str; 2] = ["LISTS_V6_0", "LISTS_V6_1"];
/// The IPv4 lists of one generation as a direct table in front of the trie (`Array<V4CellRow>`,
/// [`V4_CELL_ROWS`] rows): one 2-bit cell per /24, [`V4_CELLS_PER_ROW`] cells (a /16) per
/// 64-byte row. A cell says what every address of its /24 gets from the lists
/// ([`CELL_NONE`], [`CELL_DENY`], [`CELL_ALLOW`]) or that they differ within it and the trie
/// must answer ([`CELL_TRIE`]). One array read instead of an LPM walk: for a flood from many
/// sources, which misses the verdict cache, that is most of the program's cost.
pub const MAP_V4_CELLS: [&str; 2] = ["V4_CELLS_0", "V4_CELLS_1"];
/// Rows of a [`MAP_V4_CELLS`] table: one per /16.
pub const V4_CELL_ROWS: u32 = 1 << 16;
/// Cells (/24s) per row.
pub const V4_CELLS_PER_ROW: u32 = 256;
/// No listed prefix covers any address of the /24.
pub const CELL_NONE: u64 = 0;
/// Every address of the /24 is denylisted (whether or not also allowlisted: deny wins).
pub const CELL_DENY: u64 = 1;
/// Every address of the /24 is allowlisted and none is denylisted.
pub const CELL_ALLOW: u64 = 2;
/// The /24 holds addresses with different answers: ask the lists trie.
pub const CELL_TRIE: u64 = 3;

/// One row of a [`MAP_V4_CELLS`] table: 256 cells of 2 bits, cell `n` at bits `2 * (n % 32)` of
/// word `n / 32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct V4CellRow {
    pub words: [u64; 8],
}

/// Where the cell of IPv4 address `addr` (host order) lives: its row, the word in the row and
/// the shift of its two bits in the word.
pub const fn v4_cell_position(addr: u32) -> (u32, usize, u32) {
    let cell = (addr >> 8) & (V4_CELLS_PER_ROW - 1);
    (addr >> 16, (cell / 32) as usize, (cell % 32) * 2)
}

/// The `LIST_*` bits a non-[`CELL_TRIE`] cell stands for.
pub const fn cell_lists(cell: u64) -> u32 {
    match cell {
        CELL_DENY => LIST_DENY,
        CELL_ALLOW => LIST_ALLOW,
        _ => 0,
    }
}

/// The cell class of a lists-trie value (what matters for the verdict: deny wins over allow).
pub const fn lists_cell(lists: u32) -> u64 {
    if lists & LIST_DENY != 0 {
        CELL_DENY
    } else if lists & LIST_ALLOW != 0 {
        CELL_ALLOW
    } else {
        CELL_NONE
    }
}

/// A lists-trie value bit: the address is denylisted.
pub const LIST_DENY: u32 = 1;
/// A lists-trie value bit: the address is allowlisted.
pub const LIST_ALLOW: u32 = 2;
/// `LpmTrie<[u8; 4], u64>`: blocked prefix → `blocked_until` (CLOCK_MONOTONIC ns).
pub const MAP_BLOCKED_V4: &str = "BLOCKED_V4";
/// `LpmTrie<[u8; 16], u64>`: as [`MAP_BLOCKED_V4`].
pub const MAP_BLOCKED_V6: &str = "BLOCKED_V6";
/// `LruHashMap<SourceKey, Bucket>`.
pub const MAP_BUCKETS: &str = "BUCKETS";
/// `Array<u32>` indexed by port: [`ListenFlags`] bits.
pub const MAP_LISTEN_PORTS: &str = "LISTEN_PORTS";
/// `HashMap<ListenKey, u32>`: exact-address listeners.
pub const MAP_LISTENERS: &str = "LISTENERS";
/// `PerCpuArray<u64>` indexed by [`VerdictReason`].
pub const MAP_COUNTERS: &str = "COUNTERS";
/// `PerCpuArray<CachedRules>`, [`VERDICT_CACHE_ENTRIES`] per CPU: what the tries said about a
/// recent source, in front of them (slot: [`CachedRules::slot`]).
pub const MAP_VERDICT_CACHE: &str = "VERDICT_CACHE";
/// The program's name in the object.
pub const PROGRAM_NAME: &str = "portcullis_xdp";

// ---------------------------------------------------------------------------------------------
// Keys and values.

/// Per-generation settings, one [`MAP_CONFIG`] entry per generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FilterConfig {
    /// [`FILTER_ALLOWLIST`] and friends.
    pub flags: u32,
    pub _pad: u32,
    /// New TCP connections (SYN without ACK) per second per source; 0: unlimited.
    pub syn_rate_per_second: u64,
    /// SYN bucket depth, in SYNs.
    pub syn_burst: u64,
    /// Packets per second per source; 0: unlimited.
    pub packet_rate_per_second: u64,
    /// Packet bucket depth, in packets.
    pub packet_burst: u64,
    /// Time an empty SYN bucket takes to fill: `ceil(syn_burst * TOKEN_SCALE / syn_rate)` ns
    /// ([`fill_ns`]); a longer gap refills it whole, a shorter one by `elapsed * rate`.
    pub syn_fill_ns: u64,
    /// As `syn_fill_ns`, for the packet bucket.
    pub packet_fill_ns: u64,
    /// The kernel's tick (one jiffy) in ns, from `clock_getres(CLOCK_MONOTONIC_COARSE)`: the
    /// buckets' time unit (they refill by whole ticks) and the jiffies bound's. User space
    /// writes it with any rate, between [`TICK_NS_MIN`] and [`TICK_NS_MAX`].
    pub tick_ns: u64,
}

/// The time an empty bucket of `burst` tokens takes to fill at `rate_per_second` (0 for no
/// rate): with it the program refills exactly like a token bucket (`min(full, tokens + elapsed
/// * rate)`) without an overflowing product.
pub const fn fill_ns(burst: u64, rate_per_second: u64) -> u64 {
    if rate_per_second == 0 { 0 } else { (burst * TOKEN_SCALE).div_ceil(rate_per_second) }
}

/// The shortest kernel tick accepted (HZ = 10,000).
pub const TICK_NS_MIN: u64 = 100_000;
/// The longest kernel tick accepted (HZ = 10; Linux has 100 at least).
pub const TICK_NS_MAX: u64 = 100_000_000;
const _: () = assert!(TICK_NS_MAX < 1 << 34);

/// How many ticks jiffies may lag the monotonic clock on a CPU that runs the program. The kernel
/// advances jiffies on the tick of whichever CPU keeps time, and on interrupt entry after idle,
/// so a running CPU sees them at most about one tick behind; two leave a margin.
pub const JIFFIES_LAG_TICKS: u64 = 2;

/// A (jiffies, CLOCK_MONOTONIC ns) pair read together, jiffies first. Jiffies advance once per
/// tick on a fixed grid of the monotonic clock and never ahead of it, so with a pair read at
/// any time before, jiffies read now bound the time from above without the ~35 ns clock read:
/// `now < ns + (jiffies_now - jiffies + 1 + JIFFIES_LAG_TICKS) * tick_ns` ([`time_at_most`]).
/// Enough to keep refusing what a block still covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct ClockAnchor {
    pub jiffies: u64,
    /// 0: never set.
    pub ns: u64,
}

/// An upper bound of CLOCK_MONOTONIC ns now, from `jiffies_now` and an `anchor` read on this
/// CPU earlier (see [`ClockAnchor`]); `u64::MAX` when there is no bound (no anchor, no tick).
pub const fn time_at_most(anchor: ClockAnchor, jiffies_now: u64, tick_ns: u64) -> u64 {
    if anchor.ns == 0 || tick_ns == 0 || jiffies_now < anchor.jiffies {
        return u64::MAX;
    }
    let ticks = jiffies_now - anchor.jiffies + 1 + JIFFIES_LAG_TICKS;
    // Bounded so that the product fits in 64 bits without a 128-bit multiply (which BPF lacks):
    // an anchor 2^24 ticks old (46 days at 250 Hz) is no use anyway.
    if ticks >= 1 << 24 || tick_ns >= 1 << 34 {
        return u64::MAX;
    }
    anchor.ns.saturating_add(ticks * tick_ns)
}

/// [`FilterConfig::flags`]: an allowlist is set; sources outside it (either family) are dropped.
pub const FILTER_ALLOWLIST: u32 = 1;

/// Key of [`MAP_BUCKETS`]: the source address, IPv4 as v4-mapped IPv6 (`::ffff:a.b.c.d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct SourceKey {
    pub addr: [u8; 16],
}

/// A source's token buckets, in [`TOKEN_SCALE`] units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Bucket {
    pub syn_tokens: u64,
    pub packet_tokens: u64,
    /// The jiffies of the last refill.
    pub refilled_jiffies: u64,
}

/// One entry of a CPU's verdict cache: the lists bits and `blocked_until` of `source`, as the
/// tries answered them at lists generation `generation` and blocked version `blocks_version`.
/// Valid while both versions are the active ones; the clock and the buckets are still checked
/// for every packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct CachedRules {
    /// The source, v4-mapped, as two native-order words (compared without a `memcmp`).
    pub source: [u64; 2],
    pub generation: u32,
    pub blocks_version: u32,
    /// [`LIST_DENY`] | [`LIST_ALLOW`].
    pub lists: u32,
    /// 4 or 6: the family whose tries answered (an IPv6 packet from a v4-mapped source asks
    /// the IPv6 tries); 0 in a never-written entry, which therefore never matches.
    pub family: u32,
    /// CLOCK_MONOTONIC ns; 0: not blocked.
    pub blocked_until: u64,
    /// Until this tick (jiffies) the source's SYN bucket holds less than one token, as this CPU
    /// computed when it last refused a SYN (0: unknown). Tokens only come back with time, so
    /// SYNs before it are refused without touching the shared bucket.
    pub syn_refused_until: u64,
    /// As `syn_refused_until`, for the packet bucket (used for packets that are not SYNs).
    pub packet_refused_until: u64,
    pub _pad: u64,
}

impl CachedRules {
    /// The cache slot of `source` (two native-order words of the v4-mapped address): the
    /// murmur3 finalizer of the folded address, so nearby addresses spread like random ones.
    pub const fn slot(source: [u64; 2]) -> u32 {
        let folded = source[0] ^ source[1];
        let mut h = (folded ^ (folded >> 32)) as u32;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        h & (VERDICT_CACHE_ENTRIES - 1)
    }
}

/// Key of [`MAP_LISTENERS`]: one listening socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct ListenKey {
    /// IPv4 as v4-mapped IPv6.
    pub addr: [u8; 16],
    /// Port in network byte order, as read from the packet.
    pub port_be: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: u8,
    pub _pad: u8,
}

/// Bits of a [`MAP_LISTEN_PORTS`] entry: which listeners use this port.
#[derive(Debug)]
pub struct ListenFlags;

impl ListenFlags {
    /// A wildcard listener (`0.0.0.0` / `::`) of this family and protocol: judge every packet.
    pub const fn any(ipv6: u32, udp: u32) -> u32 {
        1 << (ipv6 * 2 + udp)
    }
    /// An exact-address listener of this family and protocol: look in [`MAP_LISTENERS`].
    pub const fn exact(ipv6: u32, udp: u32) -> u32 {
        16 << (ipv6 * 2 + udp)
    }
}

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Why a packet got its verdict: the index into the per-CPU counter array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum VerdictReason {
    /// Not IP, not TCP/UDP, or not addressed to a gateway listener: passed untouched.
    NotJudged = 0,
    /// Addressed to a gateway listener and within every rule: passed.
    Passed = 1,
    Denylisted = 2,
    NotAllowlisted = 3,
    /// In the blocked map with an expiry still ahead.
    Blocked = 4,
    /// Over its per-source SYN (new connection) bucket.
    SynOverRate = 5,
    /// Over its per-source packet bucket.
    PacketOverRate = 6,
    /// Truncated or inconsistent headers (the kernel would discard it too): dropped.
    Malformed = 7,
    /// A non-first IP fragment: it has no ports to judge; passed (its first fragment was judged).
    Fragment = 8,
    /// More VLAN tags or IPv6 extension headers than the parser walks, or an ESP payload: passed.
    TooDeep = 9,
}

/// Number of [`VerdictReason`]s: the length of the counter array.
pub const VERDICT_REASONS: u32 = 10;

/// Every reason, in counter order.
pub const VERDICT_REASONS_ALL: [VerdictReason; VERDICT_REASONS as usize] = [
    VerdictReason::NotJudged,
    VerdictReason::Passed,
    VerdictReason::Denylisted,
    VerdictReason::NotAllowlisted,
    VerdictReason::Blocked,
    VerdictReason::SynOverRate,
    VerdictReason::PacketOverRate,
    VerdictReason::Malformed,
    VerdictReason::Fragment,
    VerdictReason::TooDeep,
];

/// `XDP_DROP` from the kernel's UAPI.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS` from the kernel's UAPI.
pub const XDP_PASS: u32 = 2;

impl VerdictReason {
    /// The XDP action for this reason.
    pub const fn action(self) -> u32 {
        if self.drops() { XDP_DROP } else { XDP_PASS }
    }

    /// Whether packets with this reason are dropped.
    pub const fn drops(self) -> bool {
        matches!(
            self,
            VerdictReason::Denylisted
                | VerdictReason::NotAllowlisted
                | VerdictReason::Blocked
                | VerdictReason::SynOverRate
                | VerdictReason::PacketOverRate
                | VerdictReason::Malformed
        )
    }

    /// Name used in status output and docs.
    pub const fn name(self) -> &'static str {
        match self {
            VerdictReason::NotJudged => "not-judged",
            VerdictReason::Passed => "passed",
            VerdictReason::Denylisted => "denylisted",
            VerdictReason::NotAllowlisted => "not-allowlisted",
            VerdictReason::Blocked => "blocked",
            VerdictReason::SynOverRate => "syn-over-rate",
            VerdictReason::PacketOverRate => "packet-over-rate",
            VerdictReason::Malformed => "malformed",
            VerdictReason::Fragment => "fragment",
            VerdictReason::TooDeep => "too-deep",
        }
    }
}

const _: () = {
    let mut i = 0;
    while i < VERDICT_REASONS_ALL.len() {
        assert!(VERDICT_REASONS_ALL[i] as usize == i);
        i += 1;
    }
};
const _: () = assert!(core::mem::size_of::<FilterConfig>() == 64);
const _: () = assert!(core::mem::size_of::<V4CellRow>() == 64);
const _: () = assert!(core::mem::size_of::<ClockAnchor>() == 16);
const _: () = assert!(core::mem::size_of::<Bucket>() == 24);
const _: () = assert!(core::mem::size_of::<ListenKey>() == 20);
const _: () = assert!(core::mem::size_of::<SourceKey>() == 16);
const _: () = assert!(core::mem::size_of::<CachedRules>() == 64);

/// v4-mapped IPv6 form of an IPv4 address (`::ffff:a.b.c.d`), the key form for both families.
pub const fn v4_mapped(addr: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3]]
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: each type is `#[repr(C)]`, `Copy`, made only of integers and byte arrays, with
    // every padding byte an explicit field, so any bit pattern is valid and none is uninit.
    unsafe impl aya::Pod for super::FilterConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SourceKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Bucket {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ListenKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CachedRules {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::V4CellRow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ClockAnchor {}
}
