//! The blocked sources as workers read them: an immutable table, rebuilt by the xdp threads after
//! every change and published through arc-swap, so a worker's lookup takes no lock and probes
//! one hash map per prefix length present (at most 33 or 129) instead of scanning every block.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ahash::AHashMap;
use portcullis_contract::xdp::{IpPrefix, canonical, mask32, mask128};

use super::Block;

/// Blocks by family and prefix length.
#[derive(Debug, Default)]
pub struct BlockLookup {
    v4: AHashMap<(u8, u32), Block>,
    v6: AHashMap<(u8, u128), Block>,
    /// Lengths present, longest first.
    v4_lengths: Vec<u8>,
    v6_lengths: Vec<u8>,
}

impl BlockLookup {
    pub fn new<'a>(blocks: impl IntoIterator<Item = (&'a IpPrefix, &'a Block)>) -> Self {
        let mut lookup = Self::default();
        for (prefix, block) in blocks {
            match prefix.addr {
                IpAddr::V4(v4) => {
                    lookup.v4.insert((prefix.len, u32::from(v4)), *block);
                    lookup.v4_lengths.push(prefix.len);
                }
                IpAddr::V6(v6) => {
                    lookup.v6.insert((prefix.len, u128::from(v6)), *block);
                    lookup.v6_lengths.push(prefix.len);
                }
            }
        }
        for lengths in [&mut lookup.v4_lengths, &mut lookup.v6_lengths] {
            lengths.sort_unstable_by(|a, b| b.cmp(a));
            lengths.dedup();
        }
        lookup
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// The block covering `ip` now that lasts longest (the one `Retry-After` should name), if any.
    pub fn covering(&self, ip: IpAddr, now_unix_ms: u64) -> Option<(IpPrefix, Block)> {
        let live = |block: &Block| block.until_unix_ms.is_none_or(|until| until > now_unix_ms);
        let lasting = |block: &Block| block.until_unix_ms.unwrap_or(u64::MAX);
        match canonical(ip) {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4_lengths
                    .iter()
                    .filter_map(|&len| {
                        let network = bits & mask32(len);
                        let block = self.v4.get(&(len, network)).filter(|block| live(block))?;
                        Some((IpPrefix { addr: Ipv4Addr::from(network).into(), len }, *block))
                    })
                    .max_by_key(|(_, block)| lasting(block))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6_lengths
                    .iter()
                    .filter_map(|&len| {
                        let network = bits & mask128(len);
                        let block = self.v6.get(&(len, network)).filter(|block| live(block))?;
                        Some((IpPrefix { addr: Ipv6Addr::from(network).into(), len }, *block))
                    })
                    .max_by_key(|(_, block)| lasting(block))
            }
        }
    }

    /// Whether `ip` is blocked now.
    pub fn is_blocked(&self, ip: IpAddr, now_unix_ms: u64) -> bool {
        !self.is_empty() && self.covering(ip, now_unix_ms).is_some()
    }
}
