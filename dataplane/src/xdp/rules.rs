//! The `[xdp]` rules in user space: the same verdicts as the XDP program for allow, deny and
//! blocked, used at accept when the kernel plane is off (no CAP_BPF, `--xdp=off`) and as a
//! second line for traffic on interfaces without the program (e.g. loopback).

use std::collections::HashSet;
use std::net::IpAddr;

use portcullis_contract::xdp::{IpPrefix, XdpRules, canonical, mask32, mask128};
use portcullis_ebpf_common::VerdictReason;

/// Prefix sets by length: a lookup probes each length present (at most 33 or 129), a hash hit
/// on each, so a 10k-entry list costs a few dozen hash probes rather than 10k comparisons.
#[derive(Debug, Default)]
pub struct PrefixSet {
    v4: HashSet<(u8, u32)>,
    v6: HashSet<(u8, u128)>,
    v4_lengths: Vec<u8>,
    v6_lengths: Vec<u8>,
}

impl PrefixSet {
    pub fn new<'a>(prefixes: impl IntoIterator<Item = &'a IpPrefix>) -> Self {
        let mut set = Self::default();
        for prefix in prefixes {
            match prefix.addr {
                IpAddr::V4(v4) => {
                    set.v4.insert((prefix.len, u32::from(v4)));
                    set.v4_lengths.push(prefix.len);
                }
                IpAddr::V6(v6) => {
                    set.v6.insert((prefix.len, u128::from(v6)));
                    set.v6_lengths.push(prefix.len);
                }
            }
        }
        for lengths in [&mut set.v4_lengths, &mut set.v6_lengths] {
            lengths.sort_unstable_by(|a, b| b.cmp(a));
            lengths.dedup();
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether some prefix in the set contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4_lengths.iter().any(|&len| self.v4.contains(&(len, bits & mask32(len))))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6_lengths.iter().any(|&len| self.v6.contains(&(len, bits & mask128(len))))
            }
        }
    }
}

/// One snapshot's allow and deny lists, ready for lookups.
#[derive(Debug, Default)]
pub struct SourceRules {
    pub allow: PrefixSet,
    pub deny: PrefixSet,
}

impl SourceRules {
    pub fn new(rules: &XdpRules) -> Self {
        Self { allow: PrefixSet::new(&rules.allow), deny: PrefixSet::new(&rules.deny) }
    }

    /// The drop reason for `ip`, as the XDP program would decide it (blocks are checked apart).
    pub fn refuses(&self, ip: IpAddr) -> Option<VerdictReason> {
        if self.deny.contains(ip) {
            Some(VerdictReason::Denylisted)
        } else if !self.allow.is_empty() && !self.allow.contains(ip) {
            Some(VerdictReason::NotAllowlisted)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> SourceRules {
        let parse = |list: &[&str]| list.iter().map(|p| IpPrefix::parse(p).unwrap()).collect();
        SourceRules::new(&XdpRules { allow: parse(allow), deny: parse(deny), ..XdpRules::default() })
    }

    #[test]
    fn same_verdicts_as_the_program() {
        let open = rules(&[], &["198.51.100.0/24", "2001:db8:bad::/48"]);
        assert_eq!(open.refuses("198.51.100.9".parse().unwrap()), Some(VerdictReason::Denylisted));
        assert_eq!(open.refuses("::ffff:198.51.100.9".parse().unwrap()), Some(VerdictReason::Denylisted));
        assert_eq!(open.refuses("2001:db8:bad::1".parse().unwrap()), Some(VerdictReason::Denylisted));
        assert_eq!(open.refuses("203.0.113.1".parse().unwrap()), None);

        let closed = rules(&["203.0.113.0/24", "10.0.0.7"], &["203.0.113.66"]);
        assert_eq!(closed.refuses("203.0.113.1".parse().unwrap()), None);
        assert_eq!(closed.refuses("10.0.0.7".parse().unwrap()), None);
        assert_eq!(closed.refuses("10.0.0.8".parse().unwrap()), Some(VerdictReason::NotAllowlisted));
        assert_eq!(closed.refuses("::1".parse().unwrap()), Some(VerdictReason::NotAllowlisted));
        assert_eq!(closed.refuses("203.0.113.66".parse().unwrap()), Some(VerdictReason::Denylisted));
        assert_eq!(closed.allow.len(), 2);
    }
}
