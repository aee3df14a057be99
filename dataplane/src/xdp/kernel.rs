//! The loaded XDP program and its maps (aya): load, attach/detach, fill the maps with an atomic
//! generation switch, block/unblock, counters, and `BPF_PROG_TEST_RUN` for the fixture tests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use aya::Ebpf;
use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray};
use aya::programs::{TestRun as _, TestRunOptions, Xdp, XdpMode};
use portcullis_contract::xdp::{IpPrefix, XdpRules};
use portcullis_ebpf_common as common;
use portcullis_ebpf_common::{FilterConfig, ListenFlags, ListenKey, V4CellRow, VERDICT_REASONS};

/// The program, built by `cargo xtask build-ebpf` and committed (stable builds need no BPF toolchain).
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/portcullis-xdp.bpf.o"));

/// Errors of the kernel plane.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("XDP program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("XDP map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("the XDP object has no map or program named {0}")]
    Missing(&'static str),
    #[error("the kernel's tick length (the XDP buckets' time unit): {0}")]
    Tick(String),
    #[error("interface {0}: neither native nor generic XDP attach worked: {1}")]
    Attach(String, aya::programs::ProgramError),
}

/// How a program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP).
    Native,
    /// In the generic network stack (after the skb is built; slower, works everywhere).
    Generic,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

type V4Trie = LpmTrie<MapData, [u8; 4], u32>;
type V6Trie = LpmTrie<MapData, [u8; 16], u32>;

/// What one generation's lists tries (prefix → `LIST_*` bits) and IPv4 cell table (its rows
/// that are not all [`common::CELL_NONE`]) hold, so a refill writes only the difference; and
/// the list sizes it came from, for status.
#[derive(Debug, Default)]
struct Filled {
    entries: BTreeMap<IpPrefix, u32>,
    cells: BTreeMap<u32, V4CellRow>,
    allow: usize,
    deny: usize,
}

/// The loaded program and typed handles on its maps.
pub struct Kernel {
    ebpf: Ebpf,
    active: Array<MapData, u32>,
    config: Array<MapData, FilterConfig>,
    lists_v4: [V4Trie; 2],
    lists_v6: [V6Trie; 2],
    v4_cells: [Array<MapData, V4CellRow>; 2],
    blocked_v4: LpmTrie<MapData, [u8; 4], u64>,
    blocked_v6: LpmTrie<MapData, [u8; 16], u64>,
    buckets: HashMap<MapData, common::SourceKey, common::Bucket>,
    listen_ports: Array<MapData, u32>,
    listeners: HashMap<MapData, ListenKey, u32>,
    counters: PerCpuArray<MapData, u64>,
    /// The lists generation counter in `ACTIVE` (its low bit: the active slot of `filled`).
    generation: u32,
    /// The blocked tries' version in `ACTIVE`, bumped after every change to them.
    blocks_version: u32,
    /// The kernel's tick, for `CONFIG`.
    tick_ns: u64,
    /// The prefixes in the blocked tries (their count goes to `ACTIVE` too).
    blocked: BTreeSet<IpPrefix>,
    filled: [Filled; 2],
    attached: Vec<(String, AttachMode, aya::programs::xdp::XdpLinkId)>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").field("generation", &self.generation).field("attached", &self.attached.len()).finish()
    }
}

/// Map fill, for status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fill {
    pub allow: usize,
    pub deny: usize,
    pub blocked: usize,
    pub buckets: usize,
}

impl Kernel {
    /// Loads the program into the kernel (verifier included) and takes its maps; attaches nothing.
    pub fn load() -> Result<Self, KernelError> {
        let tick_ns = tick_ns()?;
        let mut ebpf = Ebpf::load(OBJECT)?;
        let program: &mut Xdp =
            ebpf.program_mut(common::PROGRAM_NAME).ok_or(KernelError::Missing(common::PROGRAM_NAME))?.try_into()?;
        program.load()?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(KernelError::Missing(name));
        let active = Array::try_from(take(common::MAP_ACTIVE)?)?;
        let config = Array::try_from(take(common::MAP_CONFIG)?)?;
        let lists_v4 =
            [LpmTrie::try_from(take(common::MAP_LISTS_V4[0])?)?, LpmTrie::try_from(take(common::MAP_LISTS_V4[1])?)?];
        let lists_v6 =
            [LpmTrie::try_from(take(common::MAP_LISTS_V6[0])?)?, LpmTrie::try_from(take(common::MAP_LISTS_V6[1])?)?];
        let v4_cells =
            [Array::try_from(take(common::MAP_V4_CELLS[0])?)?, Array::try_from(take(common::MAP_V4_CELLS[1])?)?];
        let blocked_v4 = LpmTrie::try_from(take(common::MAP_BLOCKED_V4)?)?;
        let blocked_v6 = LpmTrie::try_from(take(common::MAP_BLOCKED_V6)?)?;
        let buckets = HashMap::try_from(take(common::MAP_BUCKETS)?)?;
        let listen_ports = Array::try_from(take(common::MAP_LISTEN_PORTS)?)?;
        let listeners = HashMap::try_from(take(common::MAP_LISTENERS)?)?;
        let counters = PerCpuArray::try_from(take(common::MAP_COUNTERS)?)?;
        Ok(Self {
            ebpf,
            active,
            config,
            lists_v4,
            lists_v6,
            v4_cells,
            blocked_v4,
            blocked_v6,
            buckets,
            listen_ports,
            listeners,
            counters,
            generation: 0,
            blocks_version: 0,
            tick_ns,
            blocked: BTreeSet::new(),
            filled: [Filled::default(), Filled::default()],
            attached: Vec::new(),
        })
    }

    fn program(&mut self) -> Result<&mut Xdp, KernelError> {
        Ok(self.ebpf.program_mut(common::PROGRAM_NAME).ok_or(KernelError::Missing(common::PROGRAM_NAME))?.try_into()?)
    }

    /// Attaches to `interface` in native mode, or generic mode when the driver has no XDP.
    pub fn attach(&mut self, interface: &str) -> Result<AttachMode, KernelError> {
        let (mode, link) = match self.program()?.attach(interface, XdpMode::Driver) {
            Ok(link) => (AttachMode::Native, link),
            Err(error @ aya::programs::ProgramError::UnknownInterface { .. }) => {
                return Err(KernelError::Attach(interface.to_owned(), error));
            }
            Err(native_error) => {
                tracing::info!(interface, error = %native_error, "native XDP unavailable; attaching in generic mode");
                let link = self
                    .program()?
                    .attach(interface, XdpMode::Skb)
                    .map_err(|error| KernelError::Attach(interface.to_owned(), error))?;
                (AttachMode::Generic, link)
            }
        };
        self.attached.push((interface.to_owned(), mode, link));
        Ok(mode)
    }

    /// Detaches from `interface` (no-op when not attached there).
    pub fn detach(&mut self, interface: &str) -> Result<(), KernelError> {
        while let Some(at) = self.attached.iter().position(|(name, _, _)| name == interface) {
            let (_, _, link) = self.attached.remove(at);
            self.program()?.detach(link)?;
        }
        Ok(())
    }

    /// Detaches from every interface.
    pub fn detach_all(&mut self) {
        let names: Vec<String> = self.attached.iter().map(|(name, _, _)| name.clone()).collect();
        for name in names {
            if let Err(error) = self.detach(&name) {
                tracing::warn!(interface = %name, %error, "detaching XDP");
            }
        }
    }

    /// Interfaces and modes attached now.
    pub fn attached(&self) -> Vec<(String, AttachMode)> {
        self.attached.iter().map(|(name, mode, _)| (name.clone(), *mode)).collect()
    }

    /// Marks `addresses` (TCP) as the gateway's listeners: only packets to them are judged.
    pub fn set_listeners(&mut self, addresses: &[SocketAddr]) -> Result<(), KernelError> {
        for address in addresses {
            let ipv6 = u32::from(address.is_ipv6());
            let port = u32::from(address.port());
            let mut flags = self.listen_ports.get(&port, 0)?;
            if address.ip().is_unspecified() {
                flags |= ListenFlags::any(ipv6, 0);
                // A `::` socket also takes IPv4 (dual stack) unless IPV6_V6ONLY; judge both.
                if address.is_ipv6() {
                    flags |= ListenFlags::any(0, 0);
                }
            } else {
                let ip = portcullis_contract::xdp::canonical(address.ip());
                let family = u32::from(ip.is_ipv6());
                flags |= ListenFlags::exact(family, 0);
                let key = ListenKey {
                    addr: mapped(ip),
                    port_be: address.port().to_be(),
                    protocol: common::IPPROTO_TCP,
                    _pad: 0,
                };
                self.listeners.insert(key, 1, 0)?;
            }
            self.listen_ports.set(port, flags, 0)?;
        }
        Ok(())
    }

    /// Makes `rules` the active generation: fills the inactive generation's tries and config,
    /// then switches. A packet sees either the old rules or the new ones, never a mix.
    /// The generation counter only grows, so verdicts the program cached under the old one
    /// are never taken for the new one's.
    pub fn apply(&mut self, rules: &XdpRules) -> Result<(), KernelError> {
        let next = self.generation.wrapping_add(1);
        let slot = next & 1;
        let index = slot as usize;
        let want = merged_lists(&rules.allow, &rules.deny);
        sync(&mut self.lists_v4[index], &mut self.lists_v6[index], &mut self.filled[index].entries, &want)?;
        sync_cells(&mut self.v4_cells[index], &mut self.filled[index].cells, v4_cells(&want))?;
        self.filled[index].allow = rules.allow.len();
        self.filled[index].deny = rules.deny.len();
        let config = FilterConfig {
            flags: if rules.allow.is_empty() { 0 } else { common::FILTER_ALLOWLIST },
            _pad: 0,
            syn_rate_per_second: u64::from(rules.syn_rate_per_second),
            syn_burst: u64::from(rules.syn_burst),
            packet_rate_per_second: u64::from(rules.packet_rate_per_second),
            packet_burst: u64::from(rules.packet_burst),
            syn_fill_ns: common::fill_ns(u64::from(rules.syn_burst), u64::from(rules.syn_rate_per_second)),
            packet_fill_ns: common::fill_ns(u64::from(rules.packet_burst), u64::from(rules.packet_rate_per_second)),
            tick_ns: self.tick_ns,
        };
        self.config.set(slot, config, 0)?;
        self.active.set(common::ACTIVE_GENERATION, next, 0)?;
        self.generation = next;
        Ok(())
    }

    /// Tells the program's verdict caches that the blocked tries changed (after the change, so
    /// a verdict cached under the new version saw it).
    fn blocks_changed(&mut self) -> Result<(), KernelError> {
        let count = u32::try_from(self.blocked.len()).unwrap_or(u32::MAX);
        self.active.set(common::ACTIVE_BLOCKED_PREFIXES, count, 0)?;
        self.blocks_version = self.blocks_version.wrapping_add(1);
        self.active.set(common::ACTIVE_BLOCKS, self.blocks_version, 0)?;
        Ok(())
    }

    /// Drops packets from `prefix` until `until_monotonic_ns` (CLOCK_MONOTONIC).
    pub fn block(&mut self, prefix: IpPrefix, until_monotonic_ns: u64) -> Result<(), KernelError> {
        match prefix.addr {
            IpAddr::V4(v4) => {
                self.blocked_v4.insert(&Key::new(u32::from(prefix.len), v4.octets()), until_monotonic_ns, 0)?
            }
            IpAddr::V6(v6) => {
                self.blocked_v6.insert(&Key::new(u32::from(prefix.len), v6.octets()), until_monotonic_ns, 0)?
            }
        }
        self.blocked.insert(prefix);
        self.blocks_changed()
    }

    /// Removes a block (no error when there is none).
    pub fn unblock(&mut self, prefix: IpPrefix) -> Result<(), KernelError> {
        let result = match prefix.addr {
            IpAddr::V4(v4) => self.blocked_v4.remove(&Key::new(u32::from(prefix.len), v4.octets())),
            IpAddr::V6(v6) => self.blocked_v6.remove(&Key::new(u32::from(prefix.len), v6.octets())),
        };
        match result {
            Ok(()) => {
                self.blocked.remove(&prefix);
                self.blocks_changed()
            }
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Packet counts by [`common::VerdictReason`], summed over CPUs.
    pub fn counters(&self) -> Result<[u64; VERDICT_REASONS as usize], KernelError> {
        let mut out = [0u64; VERDICT_REASONS as usize];
        for (index, slot) in out.iter_mut().enumerate() {
            *slot = self.counters.get(&(index as u32), 0)?.iter().sum();
        }
        Ok(out)
    }

    /// Entries in the active generation's tries, the blocked tries and the buckets.
    pub fn fill(&self) -> Fill {
        let filled = &self.filled[(self.generation & 1) as usize];
        Fill {
            allow: filled.allow,
            deny: filled.deny,
            blocked: self.blocked.len(),
            buckets: self.buckets.keys().count(),
        }
    }

    /// Runs the program once on `packet` (`BPF_PROG_TEST_RUN`) and returns its XDP action.
    pub fn test_run(&mut self, packet: &[u8]) -> Result<u32, KernelError> {
        let program = self.program()?;
        let mut options = TestRunOptions::new();
        options.data_in = Some(packet);
        options.repeat = 1;
        Ok(program.test_run(options)?.return_value)
    }

    /// Runs the program `repeat` times on `packet` (`BPF_PROG_TEST_RUN`): its XDP action and the
    /// kernel's mean time per run (the program alone, no driver): for profiling.
    pub fn time_run(&mut self, packet: &[u8], repeat: u32) -> Result<(u32, std::time::Duration), KernelError> {
        let program = self.program()?;
        let mut options = TestRunOptions::new();
        options.data_in = Some(packet);
        options.repeat = repeat;
        let result = program.test_run(options)?;
        Ok((result.return_value, result.duration))
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// The merged lists trie's content: every listed prefix, valued with whether it or a shorter
/// prefix covering it is denied ([`common::LIST_DENY`]) and allowed ([`common::LIST_ALLOW`]).
fn merged_lists(allow: &[IpPrefix], deny: &[IpPrefix]) -> BTreeMap<IpPrefix, u32> {
    let allow: BTreeSet<IpPrefix> = allow.iter().copied().collect();
    let deny: BTreeSet<IpPrefix> = deny.iter().copied().collect();
    let covered = |set: &BTreeSet<IpPrefix>, prefix: &IpPrefix| {
        (0..=prefix.len).any(|len| set.contains(&IpPrefix::new(prefix.addr, len)))
    };
    allow
        .union(&deny)
        .map(|prefix| {
            let deny_bit = if covered(&deny, prefix) { common::LIST_DENY } else { 0 };
            let allow_bit = if covered(&allow, prefix) { common::LIST_ALLOW } else { 0 };
            (*prefix, deny_bit | allow_bit)
        })
        .collect()
}

/// Makes one generation's tries hold exactly `want`, writing only the difference.
fn sync(
    v4: &mut V4Trie,
    v6: &mut V6Trie,
    have: &mut BTreeMap<IpPrefix, u32>,
    want: &BTreeMap<IpPrefix, u32>,
) -> Result<(), KernelError> {
    for prefix in have.keys().filter(|prefix| !want.contains_key(prefix)) {
        let removed = match prefix.addr {
            IpAddr::V4(a) => v4.remove(&Key::new(u32::from(prefix.len), a.octets())),
            IpAddr::V6(a) => v6.remove(&Key::new(u32::from(prefix.len), a.octets())),
        };
        match removed {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(error) => return Err(error.into()),
        }
    }
    for (prefix, flags) in want.iter().filter(|(prefix, flags)| have.get(prefix) != Some(flags)) {
        match prefix.addr {
            IpAddr::V4(a) => v4.insert(&Key::new(u32::from(prefix.len), a.octets()), *flags, 0)?,
            IpAddr::V6(a) => v6.insert(&Key::new(u32::from(prefix.len), a.octets()), *flags, 0)?,
        }
    }
    have.clone_from(want);
    Ok(())
}

/// The IPv4 cell table for the merged lists `want`: the rows that are not all
/// [`common::CELL_NONE`]. Each /24 takes the class of the longest listed prefix of length 24 or
/// less that covers it (painted shortest first), unless a longer prefix inside it answers
/// differently: then the trie must ([`common::CELL_TRIE`]).
fn v4_cells(want: &BTreeMap<IpPrefix, u32>) -> BTreeMap<u32, V4CellRow> {
    let empty_row = || vec![common::CELL_NONE as u8; common::V4_CELLS_PER_ROW as usize];
    let mut rows: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut v4: Vec<(u32, u8, u64)> = want
        .iter()
        .filter_map(|(prefix, lists)| match prefix.addr {
            IpAddr::V4(addr) => Some((u32::from(addr), prefix.len, common::lists_cell(*lists))),
            IpAddr::V6(_) => None,
        })
        .collect();
    v4.sort_by_key(|&(_, len, _)| len);
    let (short, long) = v4.split_at(v4.partition_point(|&(_, len, _)| len <= 24));
    for &(addr, len, class) in short {
        let first = u64::from(addr >> 8);
        let end = first + (1u64 << (24 - len));
        for cell in first..end {
            let row = rows.entry((cell >> 8) as u32).or_insert_with(empty_row);
            row[(cell & 0xff) as usize] = class as u8;
        }
    }
    for &(addr, _, class) in long {
        let (row, cell) = (addr >> 16, ((addr >> 8) & 0xff) as usize);
        let row = rows.entry(row).or_insert_with(empty_row);
        if u64::from(row[cell]) != class {
            row[cell] = common::CELL_TRIE as u8;
        }
    }
    rows.into_iter()
        .filter_map(|(index, cells)| {
            let mut packed = V4CellRow::default();
            for (cell, class) in cells.iter().enumerate() {
                packed.words[cell / 32] |= u64::from(*class) << ((cell % 32) * 2);
            }
            (packed != V4CellRow::default()).then_some((index, packed))
        })
        .collect()
}

/// Makes one generation's IPv4 cell table hold exactly `want` (absent rows: all zero), writing
/// only the rows that change.
fn sync_cells(
    table: &mut Array<MapData, V4CellRow>,
    have: &mut BTreeMap<u32, V4CellRow>,
    want: BTreeMap<u32, V4CellRow>,
) -> Result<(), KernelError> {
    for row in have.keys().filter(|row| !want.contains_key(row)) {
        table.set(*row, V4CellRow::default(), 0)?;
    }
    for (row, cells) in want.iter().filter(|(row, cells)| have.get(row) != Some(cells)) {
        table.set(*row, *cells, 0)?;
    }
    *have = want;
    Ok(())
}

/// The kernel's tick in ns: the resolution of the coarse clocks, which advance once a tick.
fn tick_ns() -> Result<u64, KernelError> {
    let mut resolution = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `resolution` is a valid, writable timespec for the call's duration.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut resolution) } != 0 {
        return Err(KernelError::Tick(std::io::Error::last_os_error().to_string()));
    }
    let ns = u64::try_from(resolution.tv_sec)
        .ok()
        .and_then(|seconds| seconds.checked_mul(1_000_000_000))
        .and_then(|ns| ns.checked_add(u64::try_from(resolution.tv_nsec).ok()?))
        .unwrap_or(u64::MAX);
    if (common::TICK_NS_MIN..=common::TICK_NS_MAX).contains(&ns) {
        Ok(ns)
    } else {
        Err(KernelError::Tick(format!("CLOCK_MONOTONIC_COARSE has a resolution of {ns} ns, not a kernel tick")))
    }
}

/// The key form of an address: IPv4 as v4-mapped IPv6.
fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => common::v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// The cell an address falls in, as the program reads it.
    fn cell(table: &BTreeMap<u32, V4CellRow>, addr: u32) -> u64 {
        let (row, word, shift) = common::v4_cell_position(addr);
        table.get(&row).map_or(common::CELL_NONE, |row| (row.words[word] >> shift) & 3)
    }

    /// What the merged trie answers for `addr` (its longest matching prefix).
    fn longest_match(merged: &BTreeMap<IpPrefix, u32>, addr: u32) -> u32 {
        (0..=32u8)
            .rev()
            .find_map(|len| merged.get(&IpPrefix::new(Ipv4Addr::from(addr).into(), len)))
            .copied()
            .unwrap_or(0)
    }

    fn prefix(text: &str) -> IpPrefix {
        IpPrefix::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn cells_agree_with_the_trie_wherever_they_answer() {
        // Overlapping random lists inside 10.0.0.0/8, lengths 14 to 32, so that every kind of
        // nesting (deny in allow, allow in deny, long prefixes in short ones) occurs.
        let mut seed: u64 = 0x1234_5678;
        let mut random = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 32) as u32
        };
        let mut list = |count: usize| -> Vec<IpPrefix> {
            (0..count)
                .map(|_| {
                    let addr = 0x0a00_0000 | (random() & 0x00ff_ffff);
                    let len = 14 + (random() % 19) as u8;
                    IpPrefix::new(Ipv4Addr::from(addr).into(), len)
                })
                .collect()
        };
        let (allow, deny) = (list(400), list(400));
        let merged = merged_lists(&allow, &deny);
        let table = v4_cells(&merged);
        let listed: Vec<&IpPrefix> = merged.keys().collect();
        let mut classes = [0usize; 4];
        let samples = 100_000;
        for n in 0..samples {
            // Half anywhere around the lists, half inside a listed prefix (long ones included).
            let addr = if n % 2 == 0 {
                0x0900_0000 + (random() % 0x0200_0000) // 9.0.0.0 - 10.255.255.255
            } else {
                let prefix = listed[random() as usize % listed.len()];
                let IpAddr::V4(base) = prefix.addr else { unreachable!("IPv4 lists only") };
                u32::from(base) | (random() & u32::MAX.checked_shr(u32::from(prefix.len)).unwrap_or(0))
            };
            let class = cell(&table, addr);
            classes[class as usize] += 1;
            if class != common::CELL_TRIE {
                let want = common::lists_cell(longest_match(&merged, addr));
                assert_eq!(class, want, "{}: cell {class}, trie {want}", Ipv4Addr::from(addr));
            }
        }
        // Every class occurs (the lists are not one big prefix), and the table answers most
        // lookups itself, or it saves nothing.
        assert!(classes.iter().all(|&count| count > samples / 100), "cells by class: {classes:?}");
        assert!(classes[common::CELL_TRIE as usize] < samples / 4, "cells by class: {classes:?}");
    }

    #[test]
    fn a_long_prefix_sends_its_cell_to_the_trie_only_when_it_answers_differently() {
        let cells = |allow: &[&str], deny: &[&str]| {
            let allow: Vec<IpPrefix> = allow.iter().map(|text| prefix(text)).collect();
            let deny: Vec<IpPrefix> = deny.iter().map(|text| prefix(text)).collect();
            v4_cells(&merged_lists(&allow, &deny))
        };
        let at =
            |table: &BTreeMap<u32, V4CellRow>, text: &str| cell(table, u32::from(text.parse::<Ipv4Addr>().unwrap()));

        let table = cells(&[], &["198.51.0.0/16", "198.51.100.9/32"]);
        assert_eq!(at(&table, "198.51.100.1"), common::CELL_DENY, "a deny inside a deny changes nothing");
        let table = cells(&["198.51.100.9/32"], &["198.51.0.0/16"]);
        assert_eq!(at(&table, "198.51.100.1"), common::CELL_DENY, "an allow inside a deny: deny wins");
        let table = cells(&["198.51.0.0/16"], &["198.51.100.9/32"]);
        assert_eq!(at(&table, "198.51.100.1"), common::CELL_TRIE, "a deny inside an allow");
        assert_eq!(at(&table, "198.51.101.1"), common::CELL_ALLOW, "the next /24 is whole");
        let table = cells(&[], &["203.0.113.128/25"]);
        assert_eq!(at(&table, "203.0.113.1"), common::CELL_TRIE, "a /25 alone in an empty /24");
        assert_eq!(at(&table, "203.0.112.1"), common::CELL_NONE);
        let table = cells(&["0.0.0.0/0"], &["10.0.0.0/8"]);
        assert_eq!(at(&table, "10.200.1.1"), common::CELL_DENY);
        assert_eq!(at(&table, "11.0.0.1"), common::CELL_ALLOW);
        assert_eq!(at(&table, "255.255.255.255"), common::CELL_ALLOW);
        assert!(cells(&[], &[]).is_empty(), "no lists: no rows to write");
    }
}
