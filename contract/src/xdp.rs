//! The kernel-plane rules as a snapshot carries them: source prefixes to allow and deny,
//! per-source buckets, the per-IP request limit and how long its offenders stay blocked.
//!
//! Hand-off point for the policy engine: a global-scope `ip-filter` compiles into
//! [`XdpRules::allow`] / [`XdpRules::deny`] (with [`prefixes_of_range`] for `address-range`),
//! the same lists `gateway.toml`'s `[xdp]` section fills today. The data plane does not care
//! which of the two produced them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Largest allow or deny list (prefixes per family): the kernel keeps both lists of a family in
/// one trie of [`portcullis_ebpf_common::PREFIXES_MAX`] entries, half for each.
pub const PREFIXES_MAX: usize = portcullis_ebpf_common::PREFIXES_MAX as usize / 2;
/// Longest block a client earns or an operator sets: one day.
pub const BLOCK_SECONDS_MAX: u32 = 86_400;
/// Default time a client that exceeded the per-IP limit stays blocked.
pub const BLOCK_SECONDS_DEFAULT: u32 = 60;
/// Highest per-source rate accepted (per second), bounded by the kernel's fixed-point buckets
/// (the kernel's limit, as the `u32` rates of [`XdpRules`]).
pub const RATE_MAX_PER_SECOND: u32 = portcullis_ebpf_common::RATE_MAX_PER_SECOND as u32;
const _: () = assert!(portcullis_ebpf_common::RATE_MAX_PER_SECOND <= u32::MAX as u64, "the cast keeps the value");

/// The kernel-plane rules of one snapshot. All rates 0 mean "no limit".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpRules {
    /// When non-empty, only these sources reach the gateway.
    pub allow: Vec<IpPrefix>,
    /// Sources that never reach the gateway (checked before the allowlist).
    pub deny: Vec<IpPrefix>,
    /// New TCP connections per second per source.
    pub syn_rate_per_second: u32,
    pub syn_burst: u32,
    /// Packets per second per source.
    pub packet_rate_per_second: u32,
    pub packet_burst: u32,
    /// Requests per second per client IP, enforced by the data plane (429, then blocked).
    pub per_ip_requests_per_second: u32,
    pub per_ip_burst: u32,
    /// How long a client that exceeded the per-IP limit is dropped at the NIC.
    pub block_seconds: u32,
    /// Interfaces to attach to, in addition to `--xdp-iface`.
    pub interfaces: Vec<String>,
}

/// An address prefix with its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

/// Why a prefix or range does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?} is not an IP address, a CIDR prefix (a.b.c.d/n) or a range (first-last)")]
    Syntax(String),
    #[error("prefix length {len} is longer than {max} bits")]
    Length { len: u32, max: u32 },
    #[error("{0:?} has host bits set; did you mean {1}?")]
    HostBits(String, IpPrefix),
    #[error("range {0:?} mixes IPv4 and IPv6, or ends before it starts")]
    Range(String),
}

impl IpPrefix {
    /// A prefix, host bits cleared.
    pub fn new(addr: IpAddr, len: u8) -> Self {
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(len))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(len))),
        };
        Self { addr, len }
    }

    /// Whether `ip` lies in this prefix (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask32(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask128(self.len) == u128::from(net),
            _ => false,
        }
    }

    /// Parses `a.b.c.d`, `a.b.c.d/n`, `x::y` or `x::/n` (host bits must be zero).
    pub fn parse(text: &str) -> Result<Self, PrefixError> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| PrefixError::Syntax(text.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => len.trim().parse::<u32>().map_err(|_| PrefixError::Syntax(text.to_owned()))?,
        };
        if len > max {
            return Err(PrefixError::Length { len, max });
        }
        let prefix = Self::new(addr, len as u8);
        if prefix.addr != addr {
            return Err(PrefixError::HostBits(text.to_owned(), prefix));
        }
        Ok(prefix)
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Parses one list entry: a prefix (see [`IpPrefix::parse`]) or a range `first-last`, which
/// becomes the fewest prefixes that cover exactly that range.
pub fn parse_entry(text: &str) -> Result<Vec<IpPrefix>, PrefixError> {
    match text.split_once('-') {
        Some((first, last)) => {
            let parse = |s: &str| s.trim().parse::<IpAddr>().map_err(|_| PrefixError::Syntax(text.to_owned()));
            prefixes_of_range(parse(first)?, parse(last)?).ok_or_else(|| PrefixError::Range(text.to_owned()))
        }
        None => IpPrefix::parse(text).map(|prefix| vec![prefix]),
    }
}

/// The fewest prefixes covering `first..=last` (APIM's `address-range from/to`); `None` when the
/// families differ or the range is reversed.
pub fn prefixes_of_range(first: IpAddr, last: IpAddr) -> Option<Vec<IpPrefix>> {
    let (start, end, bits, v4) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32u32, true),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128u32, false),
        _ => return None,
    };
    if start > end {
        return None;
    }
    let mut prefixes = Vec::new();
    let mut at = start;
    loop {
        // The largest aligned block starting at `at` that does not pass `end`.
        let mut size_bits = if at == 0 { bits } else { at.trailing_zeros().min(bits) };
        while size_bits > 0 && block_last(at, size_bits).is_none_or(|last| last > end) {
            size_bits -= 1;
        }
        let addr = if v4 { IpAddr::V4(Ipv4Addr::from(at as u32)) } else { IpAddr::V6(Ipv6Addr::from(at)) };
        prefixes.push(IpPrefix { addr, len: (bits - size_bits) as u8 });
        match block_last(at, size_bits) {
            Some(last) if last < end => at = last + 1,
            _ => return Some(prefixes),
        }
    }
}

fn block_last(at: u128, size_bits: u32) -> Option<u128> {
    if size_bits >= 128 {
        return (at == 0).then_some(u128::MAX);
    }
    at.checked_add((1u128 << size_bits) - 1)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; others unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The network mask of an IPv4 prefix of `len` bits.
pub fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) }
}

/// The network mask of an IPv6 prefix of `len` bits.
pub fn mask128(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> IpPrefix {
        IpPrefix::parse(text).unwrap()
    }

    #[test]
    fn parses_addresses_and_prefixes() {
        assert_eq!(p("10.1.2.3"), IpPrefix { addr: "10.1.2.3".parse().unwrap(), len: 32 });
        assert_eq!(p("10.1.0.0/16").len, 16);
        assert_eq!(p("2001:db8::/32").len, 32);
        assert_eq!(p("::1").len, 128);
        assert!(matches!(IpPrefix::parse("10.1.2.3/16"), Err(PrefixError::HostBits(..))));
        assert!(matches!(IpPrefix::parse("10.0.0.0/33"), Err(PrefixError::Length { .. })));
        assert!(matches!(IpPrefix::parse("ten"), Err(PrefixError::Syntax(_))));
        assert!(matches!(IpPrefix::parse("10.0.0.0/x"), Err(PrefixError::Syntax(_))));
    }

    #[test]
    fn contains_handles_mapped_addresses() {
        let net = p("192.0.2.0/24");
        assert!(net.contains("192.0.2.77".parse().unwrap()));
        assert!(net.contains("::ffff:192.0.2.77".parse().unwrap()));
        assert!(!net.contains("192.0.3.1".parse().unwrap()));
        assert!(p("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!(!p("0.0.0.0/0").contains("::1".parse().unwrap()));
    }

    #[test]
    fn ranges_become_the_fewest_prefixes() {
        let r = |a: &str| parse_entry(a).unwrap().iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(r("10.0.0.0-10.0.0.255"), ["10.0.0.0/24"]);
        assert_eq!(r("10.0.0.1-10.0.0.6"), ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]);
        assert_eq!(r("0.0.0.0-255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(r("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), ["::/0"]);
        assert_eq!(r("2001:db8::-2001:db8::1"), ["2001:db8::/127"]);
        assert_eq!(r("255.255.255.255-255.255.255.255"), ["255.255.255.255/32"]);
        assert!(matches!(parse_entry("10.0.0.9-10.0.0.1"), Err(PrefixError::Range(_))));
        assert!(matches!(parse_entry("10.0.0.1-::1"), Err(PrefixError::Range(_))));
    }
}
