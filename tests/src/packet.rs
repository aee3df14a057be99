//! Test packets, byte by byte: Ethernet (with VLAN tags), IPv4, IPv6 with extension headers,
//! TCP and UDP. Checksums are left zero: XDP never looks at them.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// Ethernet header: fixed MACs, `tags` VLAN tags, then `ethertype`.
pub fn ethernet(tags: &[u16], ethertype: u16) -> Vec<u8> {
    let mut out = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    for (index, vid) in tags.iter().enumerate() {
        out.extend_from_slice(&(if index == 0 && tags.len() > 1 { ETH_P_8021AD } else { ETH_P_8021Q }).to_be_bytes());
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
    out
}

/// TCP header (20 bytes) to `port` with `flags`.
pub fn tcp(port: u16, flags: u8) -> Vec<u8> {
    let mut out = vec![0u8; 20];
    out[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    out[2..4].copy_from_slice(&port.to_be_bytes());
    out[12] = 5 << 4;
    out[13] = flags;
    out[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    out
}

/// UDP header (8 bytes) to `port`.
pub fn udp(port: u16, payload: usize) -> Vec<u8> {
    let mut out = vec![0u8; 8];
    out[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    out[2..4].copy_from_slice(&port.to_be_bytes());
    out[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    out.resize(8 + payload, 0);
    out
}

/// IPv4 header (no options) from `source` to `destination` around `payload`.
pub fn ipv4(source: Ipv4Addr, destination: Ipv4Addr, protocol: u8, fragment_offset: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 20];
    out[0] = 0x45;
    out[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    out[6..8].copy_from_slice(&(fragment_offset & 0x1fff).to_be_bytes());
    out[8] = 64;
    out[9] = protocol;
    out[12..16].copy_from_slice(&source.octets());
    out[16..20].copy_from_slice(&destination.octets());
    out.extend_from_slice(payload);
    out
}

/// An IPv6 extension header: (kind, length in bytes, fragment offset for kind 44).
#[derive(Debug, Clone, Copy)]
pub enum Extension {
    HopByHop(usize),
    Routing(usize),
    DestinationOptions(usize),
    /// Fragment header with this offset (in 8-byte units).
    Fragment(u16),
}

/// IPv6 header from `source` to `destination`, then `extensions`, then `payload` of `protocol`.
pub fn ipv6(
    source: Ipv6Addr,
    destination: Ipv6Addr,
    extensions: &[Extension],
    protocol: u8,
    payload: &[u8],
) -> Vec<u8> {
    let kind = |extension: &Extension| match extension {
        Extension::HopByHop(_) => 0u8,
        Extension::Routing(_) => 43,
        Extension::DestinationOptions(_) => 60,
        Extension::Fragment(_) => 44,
    };
    let mut chain = Vec::new();
    for (index, extension) in extensions.iter().enumerate() {
        let next = extensions.get(index + 1).map_or(protocol, kind);
        match *extension {
            Extension::HopByHop(bytes) | Extension::Routing(bytes) | Extension::DestinationOptions(bytes) => {
                let mut header = vec![0u8; bytes];
                header[0] = next;
                header[1] = (bytes / 8 - 1) as u8;
                chain.extend_from_slice(&header);
            }
            Extension::Fragment(offset) => {
                let mut header = vec![0u8; 8];
                header[0] = next;
                header[2..4].copy_from_slice(&(offset << 3).to_be_bytes());
                chain.extend_from_slice(&header);
            }
        }
    }
    let mut out = vec![0u8; 40];
    out[0] = 0x60;
    out[4..6].copy_from_slice(&((chain.len() + payload.len()) as u16).to_be_bytes());
    out[6] = extensions.first().map_or(protocol, kind);
    out[7] = 64;
    out[8..24].copy_from_slice(&source.octets());
    out[24..40].copy_from_slice(&destination.octets());
    out.extend_from_slice(&chain);
    out.extend_from_slice(payload);
    out
}

/// Concatenates header pieces into one frame.
pub fn frame(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
