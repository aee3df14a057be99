//! The XDP program against a table of packets, through `BPF_PROG_TEST_RUN`: packet in, verdict
//! and counter out. Runs the committed object (`ebpf/portcullis-xdp.bpf.o`, or the one CI just
//! rebuilt from source). Ignored, with the reason, where BPF is unavailable (see `build.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test: a failed step fails the test")]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use portcullis_contract::xdp::{IpPrefix, XdpRules};
use portcullis_dataplane::xdp::kernel::Kernel;
use portcullis_dataplane::xdp::monotonic_ns;
use portcullis_ebpf_common::{VerdictReason, XDP_DROP, XDP_PASS};
use portcullis_tests::packet::{self, Extension, TCP_ACK, TCP_SYN};

const PORT: u16 = 8080;
const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const DENIED_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc0de, 0, 0, 0, 0, 7);
const DENIED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 9);

fn prefix(text: &str) -> IpPrefix {
    IpPrefix::parse(text).unwrap()
}

fn v4_tcp(source: Ipv4Addr, port: u16, flags: u8) -> Vec<u8> {
    let tcp = packet::tcp(port, flags);
    packet::frame(&[&packet::ethernet(&[], packet::ETH_P_IPV4), &packet::ipv4(source, GATEWAY_V4, 6, 0, &tcp)])
}

fn v6_tcp(source: Ipv6Addr, extensions: &[Extension], flags: u8) -> Vec<u8> {
    let tcp = packet::tcp(PORT, flags);
    packet::frame(&[&packet::ethernet(&[], packet::ETH_P_IPV6), &packet::ipv6(source, GATEWAY_V6, extensions, 6, &tcp)])
}

/// Loads the program with listeners on 0.0.0.0:8080 (TCP) and [2001:db8::1]:8080, and a
/// denylist of 198.51.100.0/24 and 2001:db8:bad::/48.
fn loaded() -> Kernel {
    let mut kernel = Kernel::load().expect("load the XDP program (verifier)");
    let listeners: [SocketAddr; 2] = [SocketAddr::from(([0, 0, 0, 0], PORT)), SocketAddr::from((GATEWAY_V6, PORT))];
    kernel.set_listeners(&listeners).unwrap();
    kernel
        .apply(&XdpRules { deny: vec![prefix("198.51.100.0/24"), prefix("2001:db8:bad::/48")], ..XdpRules::default() })
        .unwrap();
    kernel
}

/// Runs `packet` and checks the action and that exactly the `reason` counter rose by one.
fn expect(kernel: &mut Kernel, name: &str, packet: &[u8], reason: VerdictReason) {
    let before = kernel.counters().unwrap();
    let action = kernel.test_run(packet).unwrap_or_else(|error| panic!("{name}: test run failed: {error}"));
    let after = kernel.counters().unwrap();
    let expected_action = if reason.drops() { XDP_DROP } else { XDP_PASS };
    assert_eq!(action, expected_action, "{name}: action (expected {})", reason.name());
    for (index, (a, b)) in after.iter().zip(before.iter()).enumerate() {
        let want = u64::from(index == reason as usize);
        assert_eq!(a - b, want, "{name}: counter {index} (expected reason {})", reason.name());
    }
}

/// Like [`expect`] for a run whose verdict may be either of `reasons` (it may have run on either
/// side of a moment the test cannot pin down): which one it was.
fn expect_one_of(kernel: &mut Kernel, name: &str, packet: &[u8], reasons: [VerdictReason; 2]) -> VerdictReason {
    let before = kernel.counters().unwrap();
    let action = kernel.test_run(packet).unwrap_or_else(|error| panic!("{name}: test run failed: {error}"));
    let after = kernel.counters().unwrap();
    let rose: Vec<usize> = (0..after.len()).filter(|&index| after[index] != before[index]).collect();
    let reason = reasons
        .into_iter()
        .find(|&reason| rose == [reason as usize] && after[reason as usize] - before[reason as usize] == 1)
        .unwrap_or_else(|| panic!("{name}: counters {rose:?} rose (expected one of {reasons:?}, by one)"));
    let expected_action = if reason.drops() { XDP_DROP } else { XDP_PASS };
    assert_eq!(action, expected_action, "{name}: action (for reason {})", reason.name());
    reason
}

#[test]
#[cfg_attr(no_bpf, ignore = "BPF is unavailable here (no CAP_BPF): cannot load the XDP program")]
fn parsing_table() {
    let mut kernel = loaded();
    let syn = |source| v4_tcp(source, PORT, TCP_SYN);
    let udp = packet::udp(PORT, 4);
    let tcp_to_port = packet::tcp(PORT, TCP_SYN);
    let eth4 = packet::ethernet(&[], packet::ETH_P_IPV4);
    let eth6 = packet::ethernet(&[], packet::ETH_P_IPV6);
    let mut truncated_tcp = syn(CLIENT_V4);
    truncated_tcp.truncate(14 + 20 + 10);
    let mut bad_ihl = syn(CLIENT_V4);
    bad_ihl[14] = 0x44;
    let mut bad_doff = syn(CLIENT_V4);
    bad_doff[14 + 20 + 12] = 4 << 4;
    let mut bad_version = v6_tcp(CLIENT_V6, &[], TCP_SYN);
    bad_version[14] = 0x40;
    let deep: Vec<Extension> = (0..7).map(|_| Extension::DestinationOptions(8)).collect();
    let fragment_v4_first = packet::frame(&[&eth4, &packet::ipv4(DENIED_V4, GATEWAY_V4, 6, 0, &tcp_to_port)]);
    let table: Vec<(&str, Vec<u8>, VerdictReason)> = vec![
        ("ipv4 syn, allowed source", syn(CLIENT_V4), VerdictReason::Passed),
        ("ipv4 ack, allowed source", v4_tcp(CLIENT_V4, PORT, TCP_ACK), VerdictReason::Passed),
        ("ipv4 syn, denylisted source", syn(DENIED_V4), VerdictReason::Denylisted),
        ("ipv4 syn to another port", v4_tcp(DENIED_V4, 22, TCP_SYN), VerdictReason::NotJudged),
        (
            "ipv4 udp to the listener port (a TCP listener)",
            packet::frame(&[&eth4, &packet::ipv4(DENIED_V4, GATEWAY_V4, 17, 0, &udp)]),
            VerdictReason::NotJudged,
        ),
        (
            "ipv4 icmp",
            packet::frame(&[&eth4, &packet::ipv4(DENIED_V4, GATEWAY_V4, 1, 0, &[8, 0, 0, 0, 0, 0, 0, 0])]),
            VerdictReason::NotJudged,
        ),
        (
            "one vlan tag",
            packet::frame(&[
                &packet::ethernet(&[10], packet::ETH_P_IPV4),
                &packet::ipv4(DENIED_V4, GATEWAY_V4, 6, 0, &tcp_to_port),
            ]),
            VerdictReason::Denylisted,
        ),
        (
            "two vlan tags (QinQ)",
            packet::frame(&[
                &packet::ethernet(&[10, 20], packet::ETH_P_IPV4),
                &packet::ipv4(DENIED_V4, GATEWAY_V4, 6, 0, &tcp_to_port),
            ]),
            VerdictReason::Denylisted,
        ),
        (
            "three vlan tags",
            packet::frame(&[
                &packet::ethernet(&[10, 20, 30], packet::ETH_P_IPV4),
                &packet::ipv4(DENIED_V4, GATEWAY_V4, 6, 0, &tcp_to_port),
            ]),
            VerdictReason::TooDeep,
        ),
        ("first ipv4 fragment (offset 0) is judged", fragment_v4_first, VerdictReason::Denylisted),
        (
            "later ipv4 fragment",
            packet::frame(&[&eth4, &packet::ipv4(DENIED_V4, GATEWAY_V4, 6, 185, &[0u8; 16])]),
            VerdictReason::Fragment,
        ),
        ("arp", packet::frame(&[&packet::ethernet(&[], packet::ETH_P_ARP), &[0u8; 28]]), VerdictReason::NotJudged),
        ("ethernet only", packet::ethernet(&[], packet::ETH_P_IPV4), VerdictReason::Malformed),
        (
            "truncated vlan tag",
            packet::frame(&[&packet::ethernet(&[], packet::ETH_P_8021Q), &[0u8; 1]]),
            VerdictReason::Malformed,
        ),
        ("truncated ipv4 header", packet::frame(&[&eth4, &[0x45, 0, 0, 40, 0, 0]]), VerdictReason::Malformed),
        ("ipv4 ihl below 5", bad_ihl, VerdictReason::Malformed),
        ("truncated tcp header", truncated_tcp, VerdictReason::Malformed),
        ("tcp data offset below 5", bad_doff, VerdictReason::Malformed),
        ("ipv6 syn, allowed source", v6_tcp(CLIENT_V6, &[], TCP_SYN), VerdictReason::Passed),
        ("ipv6 syn, denylisted source", v6_tcp(DENIED_V6, &[], TCP_SYN), VerdictReason::Denylisted),
        (
            "ipv6 hop-by-hop + routing + destination options",
            v6_tcp(
                DENIED_V6,
                &[Extension::HopByHop(8), Extension::Routing(24), Extension::DestinationOptions(16)],
                TCP_SYN,
            ),
            VerdictReason::Denylisted,
        ),
        ("ipv6 first fragment", v6_tcp(DENIED_V6, &[Extension::Fragment(0)], TCP_SYN), VerdictReason::Denylisted),
        ("ipv6 later fragment", v6_tcp(DENIED_V6, &[Extension::Fragment(100)], TCP_SYN), VerdictReason::Fragment),
        ("ipv6 more extension headers than the bound", v6_tcp(DENIED_V6, &deep, TCP_SYN), VerdictReason::TooDeep),
        (
            "ipv6 udp",
            packet::frame(&[&eth6, &packet::ipv6(DENIED_V6, GATEWAY_V6, &[], 17, &udp)]),
            VerdictReason::NotJudged,
        ),
        (
            "ipv6 to another address",
            packet::frame(&[&eth6, &packet::ipv6(DENIED_V6, Ipv6Addr::LOCALHOST, &[], 6, &tcp_to_port)]),
            VerdictReason::NotJudged,
        ),
        ("ipv6 header with version 4", bad_version, VerdictReason::Malformed),
        ("truncated ipv6 header", packet::frame(&[&eth6, &[0x60, 0, 0, 0]]), VerdictReason::Malformed),
        (
            "truncated ipv6 extension header",
            packet::frame(&[&eth6, &packet::ipv6(DENIED_V6, GATEWAY_V6, &[], 0, &[])]),
            VerdictReason::Malformed,
        ),
    ];
    for (name, packet, reason) in &table {
        expect(&mut kernel, name, packet, *reason);
    }
}

#[test]
#[cfg_attr(no_bpf, ignore = "BPF is unavailable here (no CAP_BPF): cannot load the XDP program")]
fn allowlist_block_and_generation_switch() {
    let mut kernel = loaded();
    let allow = XdpRules { allow: vec![prefix("203.0.113.0/24"), prefix("2001:db8:c0de::/48")], ..XdpRules::default() };
    kernel.apply(&allow).unwrap();
    expect(&mut kernel, "allowlisted v4", &v4_tcp(CLIENT_V4, PORT, TCP_SYN), VerdictReason::Passed);
    expect(
        &mut kernel,
        "outside the allowlist v4",
        &v4_tcp(Ipv4Addr::new(192, 0, 2, 200), PORT, TCP_SYN),
        VerdictReason::NotAllowlisted,
    );
    expect(&mut kernel, "allowlisted v6", &v6_tcp(CLIENT_V6, &[], TCP_SYN), VerdictReason::Passed);
    expect(
        &mut kernel,
        "outside the allowlist v6",
        &v6_tcp(Ipv6Addr::LOCALHOST, &[], TCP_SYN),
        VerdictReason::NotAllowlisted,
    );
    // The old generation's denylist is gone with the switch.
    expect(
        &mut kernel,
        "was denylisted, now outside the allowlist",
        &v4_tcp(DENIED_V4, PORT, TCP_SYN),
        VerdictReason::NotAllowlisted,
    );

    kernel.block(prefix("203.0.113.7/32"), monotonic_ns() + 60_000_000_000).unwrap();
    expect(&mut kernel, "blocked", &v4_tcp(CLIENT_V4, PORT, TCP_SYN), VerdictReason::Blocked);
    kernel.block(prefix("203.0.113.7/32"), monotonic_ns().saturating_sub(1)).unwrap();
    expect(&mut kernel, "block expired", &v4_tcp(CLIENT_V4, PORT, TCP_SYN), VerdictReason::Passed);
    kernel.block(prefix("2001:db8:c0de::/64"), u64::MAX).unwrap();
    expect(&mut kernel, "blocked v6 prefix", &v6_tcp(CLIENT_V6, &[], TCP_SYN), VerdictReason::Blocked);
    kernel.unblock(prefix("2001:db8:c0de::/64")).unwrap();
    expect(&mut kernel, "unblocked v6", &v6_tcp(CLIENT_V6, &[], TCP_SYN), VerdictReason::Passed);

    // Deny wins over allow whatever the prefix lengths (one merged trie answers both).
    let nested = XdpRules {
        allow: vec![prefix("203.0.0.0/8"), prefix("198.51.100.0/24")],
        deny: vec![prefix("203.0.113.0/24"), prefix("198.51.0.0/16")],
        ..XdpRules::default()
    };
    kernel.apply(&nested).unwrap();
    expect(
        &mut kernel,
        "denied /24 inside an allowed /8",
        &v4_tcp(CLIENT_V4, PORT, TCP_SYN),
        VerdictReason::Denylisted,
    );
    expect(
        &mut kernel,
        "allowed /24 inside a denied /16",
        &v4_tcp(DENIED_V4, PORT, TCP_SYN),
        VerdictReason::Denylisted,
    );
    expect(
        &mut kernel,
        "allowed /8, outside the denied /24",
        &v4_tcp(Ipv4Addr::new(203, 0, 114, 1), PORT, TCP_SYN),
        VerdictReason::Passed,
    );
    expect(
        &mut kernel,
        "in neither list",
        &v4_tcp(Ipv4Addr::new(192, 0, 2, 200), PORT, TCP_SYN),
        VerdictReason::NotAllowlisted,
    );

    // Back to no rules at all: everything to the listener passes.
    kernel.apply(&XdpRules::default()).unwrap();
    expect(&mut kernel, "no rules", &v4_tcp(DENIED_V4, PORT, TCP_SYN), VerdictReason::Passed);
}

#[test]
#[cfg_attr(no_bpf, ignore = "BPF is unavailable here (no CAP_BPF): cannot load the XDP program")]
fn buckets_limit_syns_and_packets() {
    let mut kernel = loaded();
    // Rates of 1 per second with bursts of 3 SYNs and 5 packets: the test runs far faster
    // than a token refills.
    let rules = XdpRules {
        deny: vec![prefix("198.51.100.0/24")],
        syn_rate_per_second: 1,
        syn_burst: 3,
        packet_rate_per_second: 1,
        packet_burst: 5,
        ..XdpRules::default()
    };
    kernel.apply(&rules).unwrap();
    let syn = v4_tcp(CLIENT_V4, PORT, TCP_SYN);
    let ack = v4_tcp(CLIENT_V4, PORT, TCP_ACK);
    for n in 0..3 {
        expect(&mut kernel, &format!("syn {n} within the burst"), &syn, VerdictReason::Passed);
    }
    expect(&mut kernel, "4th syn", &syn, VerdictReason::SynOverRate);
    expect(&mut kernel, "ack 4 (packets: 3 syns + 1 ack)", &ack, VerdictReason::Passed);
    expect(&mut kernel, "ack 5", &ack, VerdictReason::Passed);
    expect(&mut kernel, "ack 6: over the packet bucket", &ack, VerdictReason::PacketOverRate);
    // Another source has its own buckets.
    expect(&mut kernel, "other source", &v4_tcp(Ipv4Addr::new(203, 0, 113, 8), PORT, TCP_SYN), VerdictReason::Passed);
    // Denylisted sources are dropped before they reach (or fill) the buckets.
    expect(&mut kernel, "denylisted", &v4_tcp(DENIED_V4, PORT, TCP_SYN), VerdictReason::Denylisted);
}

#[test]
#[cfg_attr(no_bpf, ignore = "BPF is unavailable here (no CAP_BPF): cannot load the XDP program")]
fn verdict_cache_follows_reloads_blocks_and_families() {
    let mut kernel = loaded();
    let denied = v4_tcp(DENIED_V4, PORT, TCP_SYN);
    expect(&mut kernel, "denylisted (now cached)", &denied, VerdictReason::Denylisted);
    expect(&mut kernel, "denylisted again (from the cache)", &denied, VerdictReason::Denylisted);
    // Generation 2 (slot 0) drops the deny; generation 3 (slot 1 again, as when the verdict
    // was cached) brings it back: the cache keys on the counter, not the slot.
    kernel.apply(&XdpRules::default()).unwrap();
    expect(&mut kernel, "deny gone after a reload", &denied, VerdictReason::Passed);
    kernel.apply(&XdpRules { deny: vec![prefix("198.51.100.0/24")], ..XdpRules::default() }).unwrap();
    expect(&mut kernel, "deny back after another reload", &denied, VerdictReason::Denylisted);

    let client = v4_tcp(CLIENT_V4, PORT, TCP_SYN);
    expect(&mut kernel, "passed (now cached)", &client, VerdictReason::Passed);
    kernel.block(prefix("203.0.113.0/24"), u64::MAX).unwrap();
    expect(&mut kernel, "blocked after its pass was cached", &client, VerdictReason::Blocked);
    kernel.unblock(prefix("203.0.113.0/24")).unwrap();
    expect(&mut kernel, "unblocked", &client, VerdictReason::Passed);

    // An IPv6 packet from the v4-mapped form of a cached IPv4 source asks the IPv6 tries.
    let mapped = v6_tcp(DENIED_V4.to_ipv6_mapped(), &[], TCP_SYN);
    let mut fresh = loaded();
    expect(&mut fresh, "v4-mapped source, nothing cached", &mapped, VerdictReason::Passed);
    expect(&mut kernel, "v4-mapped source after its IPv4 form was cached", &mapped, VerdictReason::Passed);
    expect(&mut kernel, "and the IPv4 form is still denied", &denied, VerdictReason::Denylisted);
}

#[test]
#[cfg_attr(no_bpf, ignore = "BPF is unavailable here (no CAP_BPF): cannot load the XDP program")]
fn refusals_are_remembered_until_the_next_token() {
    let mut kernel = loaded();
    // Packets: 50 per second (a token every 20 ms), burst 1; SYNs: burst 3.
    let rules = XdpRules {
        syn_rate_per_second: 1,
        syn_burst: 3,
        packet_rate_per_second: 50,
        packet_burst: 1,
        ..XdpRules::default()
    };
    kernel.apply(&rules).unwrap();
    let syn = v4_tcp(CLIENT_V4, PORT, TCP_SYN);
    let ack = v4_tcp(CLIENT_V4, PORT, TCP_ACK);
    expect(&mut kernel, "syn 1", &syn, VerdictReason::Passed);
    // The packet bucket is short, the SYN bucket is not: refused by the packet bucket, and a
    // SYN refused that way takes no SYN token.
    expect(&mut kernel, "syn 2: packet bucket short", &syn, VerdictReason::PacketOverRate);
    expect(&mut kernel, "syn 3: remembered", &syn, VerdictReason::PacketOverRate);
    expect(&mut kernel, "ack: remembered", &ack, VerdictReason::PacketOverRate);
    std::thread::sleep(std::time::Duration::from_millis(30));
    expect(&mut kernel, "syn after a packet token came back", &syn, VerdictReason::Passed);
    std::thread::sleep(std::time::Duration::from_millis(30));
    expect(&mut kernel, "syn 3 of the burst of 3", &syn, VerdictReason::Passed);
    std::thread::sleep(std::time::Duration::from_millis(30));
    expect(&mut kernel, "syn 4: SYN bucket short", &syn, VerdictReason::SynOverRate);
    expect(&mut kernel, "syn 5: remembered", &syn, VerdictReason::SynOverRate);
    expect(&mut kernel, "ack: the SYN bucket does not limit it", &ack, VerdictReason::Passed);
}

#[test]
#[cfg_attr(no_bpf, ignore = "BPF is unavailable here (no CAP_BPF): cannot load the XDP program")]
fn ipv4_cells_defer_to_the_trie_inside_mixed_24s() {
    let mut kernel = loaded();
    // 203.0.113.0/24 is mixed (one denied address in an allowed /16): its cell sends the lookup
    // to the trie. 203.0.114.0/24 is whole (allowed), 198.51.0.0/16 whole (denied).
    let rules = XdpRules {
        allow: vec![prefix("203.0.0.0/16"), prefix("198.51.100.0/24")],
        deny: vec![prefix("203.0.113.7/32"), prefix("198.51.0.0/16"), prefix("192.0.2.128/25")],
        ..XdpRules::default()
    };
    kernel.apply(&rules).unwrap();
    let syn = |source| v4_tcp(source, PORT, TCP_SYN);
    let cases = [
        ("the denied /32 in a mixed /24", Ipv4Addr::new(203, 0, 113, 7), VerdictReason::Denylisted),
        ("its neighbour in the mixed /24", Ipv4Addr::new(203, 0, 113, 8), VerdictReason::Passed),
        ("a whole allowed /24", Ipv4Addr::new(203, 0, 114, 1), VerdictReason::Passed),
        ("an allowed /24 in a denied /16: deny wins", Ipv4Addr::new(198, 51, 100, 9), VerdictReason::Denylisted),
        ("a denied /25 alone in its /24", Ipv4Addr::new(192, 0, 2, 200), VerdictReason::Denylisted),
        ("the other half of that /24", Ipv4Addr::new(192, 0, 2, 100), VerdictReason::NotAllowlisted),
        ("in no list", Ipv4Addr::new(192, 0, 3, 1), VerdictReason::NotAllowlisted),
    ];
    for (name, source, reason) in cases {
        expect(&mut kernel, name, &syn(source), reason);
    }
    // The same sources once cached, then after a reload that swaps the lists' roles.
    for (name, source, reason) in cases {
        expect(&mut kernel, &format!("{name}, again"), &syn(source), reason);
    }
    let swapped = XdpRules {
        allow: vec![prefix("203.0.113.7/32"), prefix("198.51.0.0/16")],
        deny: vec![prefix("203.0.0.0/16")],
        ..XdpRules::default()
    };
    kernel.apply(&swapped).unwrap();
    expect(&mut kernel, "allowed /32 in a denied /16", &syn(Ipv4Addr::new(203, 0, 113, 7)), VerdictReason::Denylisted);
    expect(&mut kernel, "was denied, now allowed", &syn(Ipv4Addr::new(198, 51, 7, 7)), VerdictReason::Passed);
    expect(
        &mut kernel,
        "was mixed, now in no list",
        &syn(Ipv4Addr::new(192, 0, 2, 200)),
        VerdictReason::NotAllowlisted,
    );
}

/// The packet rate of the refusal rounds (burst 1): a token every [`TOKEN_EVERY_MS`].
const TOKEN_RATE_PER_SECOND: u32 = 2;
const TOKEN_EVERY_MS: u64 = 1_000 / TOKEN_RATE_PER_SECOND as u64;
/// Rounds of a token and its refusals the test checks.
const REFUSAL_ROUNDS: u32 = 3;
/// Refusals per round, [`REFUSAL_SPACING_MS`] apart: the first ~180 ms of the token's 500.
const REFUSALS_PER_ROUND: u32 = 15;
const REFUSAL_SPACING_MS: u64 = 12;
/// How long after the run that took the only token every run must be refused: the next token
/// comes [`TOKEN_EVERY_MS`] after it by jiffies, which may trail the clock by a few ticks (4 ms
/// each at HZ=250, 10 ms at HZ=100). A run that ended later than this (the machine held the test
/// up: 15 refusals 5 ms apart took up to 181 ms while it compiled) may have come after the next
/// token: its round is run again.
const REFUSED_FOR_SURE_MS: u64 = 400;
/// Rounds it may take: the rounds held up past [`REFUSED_FOR_SURE_MS`] are run again.
const REFUSAL_ROUND_ATTEMPTS: u32 = 10;
/// When a round checks that the next token came: this long after the previous one (at most a
/// tick or two later by jiffies).
const NEXT_TOKEN_CHECKED_MS: u64 = TOKEN_EVERY_MS + 25;
const _: () = assert!(REFUSAL_SPACING_MS * REFUSALS_PER_ROUND as u64 <= REFUSED_FOR_SURE_MS / 2);
// Sure refusals end before the next token even three 10 ms ticks early (HZ=100: the tick the
// token was taken in, and two of jiffies lag).
const _: () = assert!(REFUSED_FOR_SURE_MS + 3 * 10 < TOKEN_EVERY_MS);

#[test]
#[cfg_attr(no_bpf, ignore = "BPF is unavailable here (no CAP_BPF): cannot load the XDP program")]
fn refusals_and_blocks_end_on_time_without_the_clock() {
    let mut kernel = loaded();
    // A token every 500 ms, burst 1: refusals are remembered for 500 ms, in jiffies (buckets
    // refill by whole ticks, at most 10 ms at HZ=100); past that the packet must pass.
    let rules = XdpRules { packet_rate_per_second: TOKEN_RATE_PER_SECOND, packet_burst: 1, ..XdpRules::default() };
    kernel.apply(&rules).unwrap();
    let ack = v4_tcp(CLIENT_V4, PORT, TCP_ACK);
    let ms = std::time::Duration::from_millis;
    let mut rounds = 0;
    for attempt in 1..=REFUSAL_ROUND_ATTEMPTS {
        let round = rounds;
        // The token is taken between these two instants: the refusal window is counted from the
        // first (the earliest it can have been taken), the next token from the second (the latest).
        let token_asked = std::time::Instant::now();
        expect(&mut kernel, &format!("round {round}: a token"), &ack, VerdictReason::Passed);
        let token_taken = std::time::Instant::now();
        let mut held_up = false;
        for n in 0..REFUSALS_PER_ROUND {
            let name = format!("round {round}: refusal {n}");
            let reason =
                expect_one_of(&mut kernel, &name, &ack, [VerdictReason::PacketOverRate, VerdictReason::Passed]);
            let since_token = token_asked.elapsed();
            if since_token >= ms(REFUSED_FOR_SURE_MS) {
                // The test was held up (a loaded machine): this run may have come after the next
                // token, so either verdict is right. The round does not count.
                eprintln!("{name}: {since_token:?} after the token (attempt {attempt}); the round is run again");
                held_up = true;
                break;
            }
            assert_eq!(reason, VerdictReason::PacketOverRate, "{name}: {since_token:?} after the token");
            std::thread::sleep(ms(REFUSAL_SPACING_MS));
        }
        if held_up {
            // Long enough for a token the late run may have taken to come back.
            std::thread::sleep(ms(NEXT_TOKEN_CHECKED_MS));
            continue;
        }
        // The next token is due TOKEN_EVERY_MS after this one, at most a tick or two later by
        // jiffies: the next round checks it then (later if the machine holds the test up), and
        // after the last one the block's end is checked with it back.
        std::thread::sleep(ms(NEXT_TOKEN_CHECKED_MS).saturating_sub(token_taken.elapsed()));
        rounds += 1;
        if rounds == REFUSAL_ROUNDS {
            break;
        }
    }
    assert_eq!(
        rounds, REFUSAL_ROUNDS,
        "rounds checked whole in {REFUSAL_ROUND_ATTEMPTS} attempts (the others were held up past the refusal window)"
    );
    // A block 300 ms long: blocked (settled by the jiffies bound for most of it), then not.
    let until = monotonic_ns() + 300_000_000;
    kernel.block(prefix("203.0.113.0/24"), until).unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(250) {
        let syn = v4_tcp(CLIENT_V4, PORT, TCP_SYN);
        let reason = expect_one_of(&mut kernel, "blocked", &syn, [VerdictReason::Blocked, VerdictReason::Passed]);
        // A run that ended before the block did ran inside it (on the program's clock); one held up
        // past the end may be either.
        if monotonic_ns() < until {
            assert_eq!(reason, VerdictReason::Blocked, "blocked, {:?} into the block", started.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(60));
    expect(&mut kernel, "the block expired", &ack, VerdictReason::Passed);
}
