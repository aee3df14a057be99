//! `cargo xtask bench-xdp`: what a packet flood costs the receiving host with the gateway's XDP
//! pre-filter, against a bare `XDP_DROP`, nftables netdev ingress, rejection by the data plane in
//! user space and the kernel's TCP stack, all in one run, interleaved; then the DDoS test:
//! legitimate requests/s through the gateway while the flood runs at rising rates, with and
//! without the XDP stage. `--profile` instead times each path through the program alone;
//! `--quick` runs one round; `--ddos` only the DDoS test (its top rate from one quick flood).
//!
//! The flood is real frames into the client end of a veth pair: XDP frames from a generator
//! program returning `bpf_redirect`, driven by `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`
//! (pktgen is not available here), or, where the kernel refuses live frames, skbs from an
//! `AF_PACKET` socket (see `generator.rs`); the program's own time per packet comes from the
//! kernel's run-time statistics either way. Needs root. Everything lives in two network
//! namespaces this program creates and deletes, also when a step fails or it is interrupted.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark: a failed step aborts the run")]

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use portcullis_contract::xdp::{IpPrefix, XdpRules};
use portcullis_ebpf_common::VerdictReason;
use portcullis_tests::netns::NetnsPair;

mod ddos;
mod generator;
mod interrupt;
mod packet_socket;
mod profile;
mod run_stats;
mod sink;
mod system;

use generator::{Generator, Sample};
use run_stats::RunStats;
use sink::{Peer, Sink};

const USAGE: &str = "\
usage: cargo xtask bench-xdp [--quick | --ddos | --profile] [--packet-socket]   (root)

  (none)           the flood table (7 peers x 5 rounds of 5 s, interleaved), then the DDoS test
  --quick          one round instead of five
  --ddos           only the DDoS test (its top rate from one quick flood)
  --profile        each path through the gateway's program alone (BPF_PROG_TEST_RUN, no veth)
  --packet-socket  feed the veth from an AF_PACKET socket even where live frames are allowed
  -h, --help       this text

Two network namespaces and a veth pair are created for the run and removed after it, also when a
step fails or Ctrl-C stops it; a second Ctrl-C exits at once and leaves them (`ip netns list`).";
const OPTIONS: [&str; 5] = ["--quick", "--ddos", "--profile", "--packet-socket", "--help"];

/// The generator and reference programs (`ebpf/xdp/src/bench.rs`).
pub(crate) static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/portcullis-xdp-bench.bpf.o"));

pub(crate) use portcullis_tests::netns::GATEWAY_IP;
pub(crate) const PORT: u16 = 8080;
/// Each measurement floods this long.
const RUN: Duration = Duration::from_secs(5);
/// The flood that reads the program's run-time statistics, after each XDP row's measurement
/// (apart from it: the statistics add two clock reads to every run).
const STATS_RUN: Duration = Duration::from_secs(1);
/// Interleaved rounds (medians reported). Five: softirq time is tick-sampled (about ±6% per 5 s
/// sample here), and the over-rate row sits near its bound.
const ROUNDS: usize = 5;
/// Prefixes per allow and deny list in the full configuration.
const LIST_PREFIXES: usize = 10_000;
/// Flood sources rotate over this many addresses (each CPU's verdict cache holds them).
pub(crate) const FLOOD_SOURCES: u32 = 1_024;
/// The spread flood's sources: four times the verdict cache, so nearly every packet misses it.
pub(crate) const SPREAD_SOURCES: u32 = 65_536;
/// Denylisted flood sources: 198.18.0.0/16 (one deny prefix).
pub(crate) const DENIED_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Allowlisted but rate-limited flood sources: 198.19.0.0/22.
pub(crate) const LIMITED_BASE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The error's chain in one line, not a backtrace: a refused step is an answer.
            eprintln!("xdp-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    if let Some(unknown) = args.iter().find(|arg| !OPTIONS.contains(&arg.as_str())) {
        bail!("unknown option {unknown:?}\n{USAGE}");
    }
    let flag = |name: &str| args.iter().any(|arg| arg == name);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench-xdp needs root (network namespaces, XDP attach, BPF_PROG_RUN): run it as root");
    }
    let rules = full_rules();
    if flag("--profile") {
        return profile::run(&rules);
    }
    // Ctrl-C or SIGTERM ends the run at the next step, by the same path as a failed step, so
    // that the namespaces are deleted (a second one kills the process).
    interrupt::install()?;
    // Two queues per veth end, transmit queue n used from cpu n (XPS): the generator's frames
    // land on queue GENERATOR_CPU and are received there; the client's packets take the other.
    let pair = NetnsPair::with_queues(2);
    for (ns, interface) in [(&pair.client_ns, &pair.client_if), (&pair.gateway_ns, &pair.gateway_if)] {
        system::steer_transmit_queues(ns, interface, 2)?;
    }
    let _replies = sink::reply_route(&pair)?;
    let mut generator = Generator::load(&pair, flag("--packet-socket"))?;
    if flag("--ddos") {
        let sink = Sink::start(&pair, Peer::XdpDenylistedSpread, &rules, generator.feeds_skbs())?;
        let sample = generator.measure(&pair, Peer::XdpDenylistedSpread.flood(), RUN, None)?;
        drop(sink);
        return ddos::run(&pair, &mut generator, &rules, sample.packets_per_second);
    }
    let rounds = if flag("--quick") { 1 } else { ROUNDS };
    println!(
        "flood: TCP SYNs (UDP for the user-space row) to {GATEWAY_IP}:{PORT}; {rounds} rounds of {RUN:?} per peer, interleaved"
    );
    let mut samples: Vec<(Peer, Sample)> = Vec::new();
    for round in 1..=rounds {
        for peer in Peer::ALL {
            let (sample, details) = measure(&pair, &mut generator, peer, &rules)?;
            println!(
                "round {round}: {:<72} {:>5.2} Mpps  softirq {:>6.1} ns/pkt  user {:>6.1} ns/read ({:>3.0}% read)  all CPU {:>6.1} ns/pkt  program {:>5.1} ns/run",
                peer.label(),
                sample.packets_per_second / 1e6,
                sample.softirq_ns,
                sample.user_ns,
                100.0 * sample.read_share,
                sample.busy_ns,
                sample.program_ns
            );
            for line in details {
                println!("         {line}");
            }
            samples.push((peer, sample));
        }
    }
    report(&samples);
    if generator.feeds_skbs() {
        println!(
            "  (frames came as skbs from a packet socket: every row's receive cost includes veth's copy of each \
             into an XDP page, which narrows the ratios; the program's own ns compare as they are)"
        );
    }
    let max_rate = median(&samples, Peer::XdpDenylistedSpread, |s| s.packets_per_second);
    ddos::run(&pair, &mut generator, &rules, max_rate)
}

/// One flood into one peer, and lines about what it did to print under its row.
fn measure(pair: &NetnsPair, generator: &mut Generator, peer: Peer, rules: &XdpRules) -> Result<(Sample, Vec<String>)> {
    let ns = &pair.gateway_ns;
    let counters = || -> Result<[u64; 3]> {
        Ok([
            system::stack_counter(ns, "TcpExt", "SyncookiesSent")?,
            system::stack_counter(ns, "Ip", "InHdrErrors")? + system::stack_counter(ns, "IpExt", "InCsumErrors")?,
            system::stack_counter(ns, "Udp", "RcvbufErrors")?,
        ])
    };
    let before = counters()?;
    let mut sink = Sink::start(pair, peer, rules, generator.feeds_skbs())?;
    let mut sample = generator.measure(pair, peer.flood(), RUN, None)?;
    let mut details = Vec::new();
    if let Some(counters) = sink.program_counters()? {
        // What the program let through goes on to the TCP stack (a SYN-ACK each, ~2.6 µs): part
        // of the row's receive cost that is the stack's work on admitted traffic, not the filter's.
        let passed = counters[VerdictReason::Passed as usize];
        let judged: u64 = counters.iter().sum();
        let share = passed as f64 * 100.0 / judged.max(1) as f64;
        details.push(format!("program: passed {passed} of {judged} ({share:.2}%)"));
    }
    if let Some((read, cpu_ns)) = sink.finish()? {
        let received = sample.packets_per_second * sample.seconds;
        sample.user_ns = cpu_ns as f64 / (read.max(1) as f64);
        sample.read_share = read as f64 / received.max(1.0);
    }
    if peer == Peer::BareDrop || peer.is_portcullis() {
        let stats = RunStats::start(ns, &pair.gateway_if)?;
        generator.measure(pair, peer.flood(), STATS_RUN, None)?;
        let (runs, ns_per_run) = stats.finish()?;
        sample.program_ns = ns_per_run;
        details.push(format!(
            "program: {ns_per_run:.1} ns a run over {runs} runs (bpf_stats, a {STATS_RUN:?} flood after)"
        ));
    }
    drop(sink);
    let after = counters()?;
    if matches!(peer, Peer::KernelStack | Peer::UserSpace) {
        details.push(format!(
            "stack: SYN cookies sent {}, IP header/checksum errors {}, UDP receive-buffer drops {}",
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ));
    }
    Ok((sample, details))
}

fn median(samples: &[(Peer, Sample)], peer: Peer, field: fn(&Sample) -> f64) -> f64 {
    let mut values: Vec<f64> = samples.iter().filter(|(p, _)| *p == peer).map(|(_, s)| field(s)).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The receive cost of one packet: its softirq time, plus for the user-space peer what the
/// reader spent per datagram it read.
fn cost_ns(sample: &Sample) -> f64 {
    sample.softirq_ns + sample.user_ns
}

/// The flood table (medians) and the ratios the targets are stated in.
fn report(samples: &[(Peer, Sample)]) {
    println!(
        "\n| peer | packets/s received | receive softirq ns/packet | user space ns/packet read | receive cost ns/packet | × bare drop | program ns/packet (bpf_stats) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let bare = median(samples, Peer::BareDrop, cost_ns);
    for peer in Peer::ALL {
        let cost = median(samples, peer, cost_ns);
        let user = median(samples, peer, |s| s.user_ns);
        let program = median(samples, peer, |s| s.program_ns);
        println!(
            "| {} | {:.2} M | {:.1} | {} | {:.1} | {:.2} | {} |",
            peer.label(),
            median(samples, peer, |s| s.packets_per_second) / 1e6,
            median(samples, peer, |s| s.softirq_ns),
            if user > 0.0 {
                format!("{user:.1} ({:.0}% read)", 100.0 * median(samples, peer, |s| s.read_share))
            } else {
                "–".to_owned()
            },
            cost,
            cost / bare,
            if program > 0.0 { format!("{program:.1}") } else { "–".to_owned() }
        );
    }
    let nftables = median(samples, Peer::Nftables, cost_ns);
    let user_space = median(samples, Peer::UserSpace, cost_ns);
    println!("\nratios per portcullis row (target: <= 1.3 x bare drop, nftables >= 4 x, user space >= 10 x):");
    let bare_program = median(samples, Peer::BareDrop, |s| s.program_ns);
    for peer in Peer::ALL.into_iter().filter(|peer| peer.is_portcullis()) {
        let cost = median(samples, peer, cost_ns);
        let program = median(samples, peer, |s| s.program_ns);
        println!(
            "  {}: {:.2} x bare drop; nftables / it {:.1}; user space / it {:.1}; program +{:.1} ns over bare drop's",
            peer.label(),
            cost / bare,
            nftables / cost,
            user_space / cost,
            program - bare_program
        );
    }
}

/// The full configuration: 10k-prefix allow and deny lists, per-source buckets.
fn full_rules() -> XdpRules {
    let mut seed: u64 = 0x5eed_1234;
    let mut random = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 32) as u32
    };
    let reserved = |addr: u32| {
        let first = addr >> 24;
        first == 0
            || first == 127
            || first >= 224
            || (addr >> 17) == (u32::from(DENIED_BASE) >> 17)
            || (addr >> 8) == (u32::from(GATEWAY_IP) >> 8)
    };
    let mut list = |count: usize, first: IpPrefix| {
        let mut prefixes = vec![first];
        while prefixes.len() < count {
            let addr = random();
            let len = 16 + (random() % 17) as u8;
            if !reserved(addr) {
                prefixes.push(IpPrefix::new(Ipv4Addr::from(addr).into(), len));
            }
        }
        prefixes.sort_unstable();
        prefixes.dedup();
        prefixes
    };
    let mut allow = list(LIST_PREFIXES - 1, IpPrefix::new(LIMITED_BASE.into(), 22));
    allow.push(IpPrefix::new(GATEWAY_IP.into(), 24)); // the legitimate clients
    let deny = list(LIST_PREFIXES, IpPrefix::new(DENIED_BASE.into(), 16));
    XdpRules {
        allow,
        deny,
        // Low per-source rates, so the over-rate flood (1,024 sources) is almost all dropped:
        // it measures refusals. (At 10/s, with bursts of 20 and 10, 0.4% of it passed and the
        // stack's SYN-ACKs for those added ~10 ns to every packet's receive cost.)
        syn_rate_per_second: 1,
        syn_burst: 5,
        packet_rate_per_second: 1,
        packet_burst: 5,
        ..XdpRules::default()
    }
}
