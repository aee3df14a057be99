//! Types shared with the XDP program: map keys and values, `#[repr(C)]`, explicit padding,
//! no `bool`. The XDP program itself arrives with the kernel-plane issue; the verdict reasons
//! are fixed here so that counters have one definition on both sides.
#![no_std]

/// Key of the IPv4 allow/deny LPM tries (`prefix_len` first, as the kernel's LPM trie requires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Ipv4LpmKey {
    pub prefix_len: u32,
    /// Address in network byte order.
    pub addr: [u8; 4],
}

/// Key of the IPv6 allow/deny LPM tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Ipv6LpmKey {
    pub prefix_len: u32,
    pub addr: [u8; 16],
}

/// Why a packet got its verdict; the index into the per-CPU counter array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum VerdictReason {
    /// Not addressed to a gateway listener: passed untouched.
    NotJudged = 0,
    Passed = 1,
    Denylisted = 2,
    NotAllowlisted = 3,
    Blocked = 4,
    OverRate = 5,
    Malformed = 6,
}

/// Number of [`VerdictReason`]s: the length of the counter array.
pub const VERDICT_REASONS: u32 = 7;

const _: () = assert!(core::mem::size_of::<Ipv4LpmKey>() == 8);
const _: () = assert!(core::mem::size_of::<Ipv6LpmKey>() == 20);
