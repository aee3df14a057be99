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
use portcullis_ebpf_common::{FilterConfig, ListenFlags, ListenKey, VERDICT_REASONS};

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

/// What one generation's lists tries hold (prefix → `LIST_*` bits), so a refill writes only
/// the difference; and the list sizes it came from, for status.
#[derive(Debug, Default)]
struct Filled {
    entries: BTreeMap<IpPrefix, u32>,
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
            blocked_v4,
            blocked_v6,
            buckets,
            listen_ports,
            listeners,
            counters,
            generation: 0,
            blocks_version: 0,
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
        };
        self.config.set(slot, config, 0)?;
        self.active.set(common::ACTIVE_GENERATION, next, 0)?;
        self.generation = next;
        Ok(())
    }

    /// Tells the program's verdict caches that the blocked tries changed (after the change, so
    /// a verdict cached under the new version saw it).
    fn blocks_changed(&mut self) -> Result<(), KernelError> {
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
        self.blocks_changed()
    }

    /// Removes a block (no error when there is none).
    pub fn unblock(&mut self, prefix: IpPrefix) -> Result<(), KernelError> {
        let result = match prefix.addr {
            IpAddr::V4(v4) => self.blocked_v4.remove(&Key::new(u32::from(prefix.len), v4.octets())),
            IpAddr::V6(v6) => self.blocked_v6.remove(&Key::new(u32::from(prefix.len), v6.octets())),
        };
        match result {
            Ok(()) => self.blocks_changed(),
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
            blocked: self.blocked_v4.keys().count() + self.blocked_v6.keys().count(),
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

/// The key form of an address: IPv4 as v4-mapped IPv6.
fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => common::v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}
