//! Header parsing: Ethernet (up to two VLAN tags), IPv4, IPv6 (extension headers walked within
//! a bound), TCP and UDP. Every packet access goes through [`Cursor::read`], the one
//! bounds-checked helper.

use aya_ebpf::programs::XdpContext;
use portcullis_ebpf_common::{
    IPPROTO_TCP, IPPROTO_UDP, IPV6_EXTENSION_HEADERS_MAX, VLAN_TAGS_MAX, VerdictReason, v4_mapped,
};

const ETH_HEADER_BYTES: usize = 14;
const VLAN_TAG_BYTES: usize = 4;
const IPV4_HEADER_BYTES_MIN: usize = 20;
const IPV6_HEADER_BYTES: usize = 40;
const TCP_HEADER_BYTES_MIN: usize = 20;
const UDP_HEADER_BYTES: usize = 8;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPV4_FRAGMENT_OFFSET_MASK: u16 = 0x1fff;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_ESP: u8 = 50;
const IPV6_AUTH: u8 = 51;
const IPV6_DESTINATION_OPTIONS: u8 = 60;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;

/// What parsing found.
pub(crate) enum Parsed {
    /// A TCP or UDP packet that carries ports: judge it if it is for a listener.
    Judge(Packet),
    /// Decided without judging (not IP, fragment, malformed, too deep).
    Verdict(VerdictReason),
}

/// The facts the verdict needs.
pub(crate) struct Packet {
    pub(crate) addresses: Addresses,
    /// Destination port, network byte order.
    pub(crate) dst_port_be: u16,
    pub(crate) protocol: u8,
    /// A TCP SYN without ACK: a new connection.
    pub(crate) is_syn: bool,
}

pub(crate) enum Addresses {
    V4 { source: [u8; 4], destination: [u8; 4] },
    V6 { source: [u8; 16], destination: [u8; 16] },
}

impl Addresses {
    /// The destination, IPv4 as v4-mapped IPv6.
    #[inline(always)]
    pub(crate) fn destination(&self) -> [u8; 16] {
        match *self {
            Addresses::V4 { destination, .. } => v4_mapped(destination),
            Addresses::V6 { destination, .. } => destination,
        }
    }

    /// The source as the verdict cache keys it: the v4-mapped address in two native-order
    /// words, and the family (4 or 6).
    #[inline(always)]
    pub(crate) fn source_words(&self) -> ([u64; 2], u32) {
        match *self {
            Addresses::V4 { source: [a, b, c, d], .. } => ([0, u64::from_ne_bytes([0, 0, 0xff, 0xff, a, b, c, d])], 4),
            Addresses::V6 { source: s, .. } => (
                [
                    u64::from_ne_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
                    u64::from_ne_bytes([s[8], s[9], s[10], s[11], s[12], s[13], s[14], s[15]]),
                ],
                6,
            ),
        }
    }

    /// The source, IPv4 as v4-mapped IPv6.
    #[inline(always)]
    pub(crate) fn source_mapped(&self) -> [u8; 16] {
        match *self {
            Addresses::V4 { source, .. } => v4_mapped(source),
            Addresses::V6 { source, .. } => source,
        }
    }
}

/// The packet bytes between `data` and `data_end`.
struct Cursor {
    start: usize,
    end: usize,
}

impl Cursor {
    /// The `N` bytes at `offset`, or `None` past the end of the packet. The one place that
    /// touches packet memory; the comparison against `data_end` is what the verifier checks.
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let at = self.start + offset;
        if at + N > self.end {
            return None;
        }
        // SAFETY: `[at, at + N)` lies inside the packet (checked just above); a byte array has
        // no alignment requirement.
        Some(unsafe { core::ptr::read_unaligned(at as *const [u8; N]) })
    }

    #[inline(always)]
    fn u16_at(&self, offset: usize) -> Option<u16> {
        self.read::<2>(offset).map(u16::from_be_bytes)
    }
}

/// Parses the packet far enough to judge it.
#[inline(always)]
pub(crate) fn packet(ctx: &XdpContext) -> Parsed {
    let cursor = Cursor { start: ctx.data(), end: ctx.data_end() };
    let Some(mut ethertype) = cursor.u16_at(12) else {
        return Parsed::Verdict(VerdictReason::Malformed);
    };
    let mut offset = ETH_HEADER_BYTES;
    let mut tags = 0;
    while ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        if tags == VLAN_TAGS_MAX {
            return Parsed::Verdict(VerdictReason::TooDeep);
        }
        let Some(inner) = cursor.u16_at(offset + 2) else {
            return Parsed::Verdict(VerdictReason::Malformed);
        };
        ethertype = inner;
        offset += VLAN_TAG_BYTES;
        tags += 1;
    }
    match ethertype {
        ETH_P_IPV4 => ipv4(&cursor, offset),
        ETH_P_IPV6 => ipv6(&cursor, offset),
        _ => Parsed::Verdict(VerdictReason::NotJudged),
    }
}

#[inline(always)]
fn ipv4(cursor: &Cursor, offset: usize) -> Parsed {
    let Some(header) = cursor.read::<IPV4_HEADER_BYTES_MIN>(offset) else {
        return Parsed::Verdict(VerdictReason::Malformed);
    };
    let header_bytes = usize::from(header[0] & 0x0f) * 4;
    let total_bytes = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header[0] >> 4 != 4 || header_bytes < IPV4_HEADER_BYTES_MIN || total_bytes < header_bytes {
        return Parsed::Verdict(VerdictReason::Malformed);
    }
    if u16::from_be_bytes([header[6], header[7]]) & IPV4_FRAGMENT_OFFSET_MASK != 0 {
        return Parsed::Verdict(VerdictReason::Fragment);
    }
    let addresses = Addresses::V4 {
        source: [header[12], header[13], header[14], header[15]],
        destination: [header[16], header[17], header[18], header[19]],
    };
    transport(cursor, offset + header_bytes, header[9], addresses)
}

#[inline(always)]
fn ipv6(cursor: &Cursor, offset: usize) -> Parsed {
    let Some(header) = cursor.read::<IPV6_HEADER_BYTES>(offset) else {
        return Parsed::Verdict(VerdictReason::Malformed);
    };
    if header[0] >> 4 != 6 {
        return Parsed::Verdict(VerdictReason::Malformed);
    }
    let mut source = [0u8; 16];
    let mut destination = [0u8; 16];
    source.copy_from_slice(&header[8..24]);
    destination.copy_from_slice(&header[24..40]);
    let mut next = header[6];
    let mut offset = offset + IPV6_HEADER_BYTES;
    for _ in 0..IPV6_EXTENSION_HEADERS_MAX {
        let length = match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DESTINATION_OPTIONS => {
                let Some([following, units]) = cursor.read::<2>(offset) else {
                    return Parsed::Verdict(VerdictReason::Malformed);
                };
                next = following;
                (usize::from(units) + 1) * 8
            }
            IPV6_FRAGMENT => {
                let Some(fragment) = cursor.read::<8>(offset) else {
                    return Parsed::Verdict(VerdictReason::Malformed);
                };
                if u16::from_be_bytes([fragment[2], fragment[3]]) >> 3 != 0 {
                    return Parsed::Verdict(VerdictReason::Fragment);
                }
                next = fragment[0];
                8
            }
            IPV6_AUTH => {
                let Some([following, units]) = cursor.read::<2>(offset) else {
                    return Parsed::Verdict(VerdictReason::Malformed);
                };
                next = following;
                (usize::from(units) + 2) * 4
            }
            IPV6_ESP => return Parsed::Verdict(VerdictReason::TooDeep),
            _ => return transport(cursor, offset, next, Addresses::V6 { source, destination }),
        };
        offset += length;
    }
    Parsed::Verdict(VerdictReason::TooDeep)
}

#[inline(always)]
fn transport(cursor: &Cursor, offset: usize, protocol: u8, addresses: Addresses) -> Parsed {
    match protocol {
        IPPROTO_TCP => {
            let Some(tcp) = cursor.read::<TCP_HEADER_BYTES_MIN>(offset) else {
                return Parsed::Verdict(VerdictReason::Malformed);
            };
            if usize::from(tcp[12] >> 4) * 4 < TCP_HEADER_BYTES_MIN {
                return Parsed::Verdict(VerdictReason::Malformed);
            }
            let flags = tcp[13];
            Parsed::Judge(Packet {
                addresses,
                dst_port_be: u16::from_ne_bytes([tcp[2], tcp[3]]),
                protocol,
                is_syn: flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN,
            })
        }
        IPPROTO_UDP => {
            let Some(udp) = cursor.read::<UDP_HEADER_BYTES>(offset) else {
                return Parsed::Verdict(VerdictReason::Malformed);
            };
            Parsed::Judge(Packet {
                addresses,
                dst_port_be: u16::from_ne_bytes([udp[2], udp[3]]),
                protocol,
                is_syn: false,
            })
        }
        _ => Parsed::Verdict(VerdictReason::NotJudged),
    }
}
