//! `cargo xtask bench-xdp`: what a packet flood costs the receiving host with the gateway's XDP
//! pre-filter, against a bare `XDP_DROP`, nftables netdev ingress and the kernel stack (refusal
//! left to user space), all in one run, interleaved; then the DDoS test: legitimate requests/s
//! through the gateway while the flood runs at rising rates, with and without the XDP stage.
//!
//! The flood is real XDP frames: a generator program returning `bpf_redirect` into the client
//! end of a veth pair, driven by `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` (pktgen is not
//! available here; socket-layer senders would make veth build an skb per packet first).
//! Needs root. Everything lives in two network namespaces this program creates and deletes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark: a failed step aborts the run")]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use aya::Ebpf;
use aya::maps::Array;
use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use portcullis_contract::xdp::{IpPrefix, XdpRules};
use portcullis_dataplane::xdp::kernel::Kernel;
use portcullis_tests::netns::{CLIENT_IPS, GATEWAY_IP, NetnsPair, connect_from, in_netns};
use portcullis_tests::{Gateway, GatewayOptions, TempDir, http, packet};

mod profile;

/// The generator and reference programs (`ebpf/xdp/src/bench.rs`).
pub(crate) static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/portcullis-xdp-bench.bpf.o"));

pub(crate) const PORT: u16 = 8080;
/// Frames per `BPF_PROG_RUN` call and per batch inside it.
const FRAMES_PER_CALL: u32 = 1 << 20;
const LIVE_FRAMES_BATCH: u32 = 64;
/// Each measurement floods this long.
const RUN: Duration = Duration::from_secs(3);
/// Interleaved rounds (medians reported).
const ROUNDS: usize = 3;
/// Prefixes per allow and deny list in the full configuration.
const LIST_PREFIXES: usize = 10_000;
/// Flood sources rotate over this many addresses.
const FLOOD_SOURCES: u32 = 1_024;
/// Denylisted flood sources: 198.18.0.0/22.
pub(crate) const DENIED_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Allowlisted but rate-limited flood sources: 198.19.0.0/22.
pub(crate) const LIMITED_BASE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
/// The CPU the generator is pinned to (the receive softirq follows it).
const GENERATOR_CPU: usize = 1;
/// Flood rates of the DDoS test, as fractions of the generator's unpaced rate.
const DDOS_RATES: [f64; 4] = [0.0, 0.25, 0.5, 1.0];
/// Length of one DDoS measurement.
const DDOS_RUN: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    BareDrop,
    XdpDenylisted,
    XdpOverRate,
    Nftables,
    KernelStack,
}

impl Peer {
    const ALL: [Peer; 5] = [Peer::BareDrop, Peer::XdpDenylisted, Peer::XdpOverRate, Peer::Nftables, Peer::KernelStack];

    fn label(self) -> &'static str {
        match self {
            Peer::BareDrop => "bare XDP_DROP",
            Peer::XdpDenylisted => "portcullis XDP, denylisted flood (full maps)",
            Peer::XdpOverRate => "portcullis XDP, allowlisted over-rate flood (full maps)",
            Peer::Nftables => "nftables netdev ingress drop (10k-prefix set)",
            Peer::KernelStack => "no kernel filter: TCP stack answers, user space refuses",
        }
    }

    fn flood_base(self) -> Ipv4Addr {
        if self == Peer::XdpOverRate { LIMITED_BASE } else { DENIED_BASE }
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    packets_per_second: f64,
    /// Receive softirq time per packet.
    softirq_ns: f64,
    /// All CPU time on the machine per packet (generator included).
    busy_ns: f64,
}

fn main() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench-xdp needs root (network namespaces, XDP attach, BPF_PROG_RUN): run it as root");
    }
    let rules = full_rules();
    if std::env::args().any(|arg| arg == "--profile") {
        return profile::run(&rules);
    }
    let pair = NetnsPair::create();
    let mut generator = Generator::load(&pair)?;
    println!(
        "flood: TCP SYN to {GATEWAY_IP}:{PORT} from {FLOOD_SOURCES} rotating sources; {ROUNDS} rounds of {RUN:?} per peer, interleaved"
    );
    let mut samples: Vec<(Peer, Sample)> = Vec::new();
    for round in 1..=ROUNDS {
        for peer in Peer::ALL {
            let sink = Sink::start(&pair, peer, &rules)?;
            let sample = generator.measure(&pair, peer.flood_base(), RUN, None)?;
            drop(sink);
            println!(
                "round {round}: {:<58} {:>6.2} Mpps  softirq {:>6.1} ns/pkt  all CPU {:>6.1} ns/pkt",
                peer.label(),
                sample.packets_per_second / 1e6,
                sample.softirq_ns,
                sample.busy_ns
            );
            samples.push((peer, sample));
        }
    }
    let median = |peer: Peer, field: fn(&Sample) -> f64| {
        let mut values: Vec<f64> = samples.iter().filter(|(p, _)| *p == peer).map(|(_, s)| field(s)).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!("\n| peer | packets/s | receive softirq ns/packet | all-CPU ns/packet | × bare drop (softirq) |");
    println!("|---|---|---|---|---|");
    let bare = median(Peer::BareDrop, |s| s.softirq_ns);
    for peer in Peer::ALL {
        let softirq = median(peer, |s| s.softirq_ns);
        println!(
            "| {} | {:.2} M | {:.1} | {:.1} | {:.2} |",
            peer.label(),
            median(peer, |s| s.packets_per_second) / 1e6,
            softirq,
            median(peer, |s| s.busy_ns),
            softirq / bare
        );
    }
    let full = median(Peer::XdpOverRate, |s| s.softirq_ns).max(median(Peer::XdpDenylisted, |s| s.softirq_ns));
    println!(
        "\nratios (softirq ns/packet, worst portcullis row): full/bare {:.2} (target <= 1.3), nftables/full {:.2} (target >= 4), kernel-stack/full {:.2} (target >= 10)",
        full / bare,
        median(Peer::Nftables, |s| s.softirq_ns) / full,
        median(Peer::KernelStack, |s| s.softirq_ns) / full
    );
    let max_rate = median(Peer::XdpDenylisted, |s| s.packets_per_second);
    ddos(&pair, &mut generator, &rules, max_rate)
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
    let deny = list(LIST_PREFIXES, IpPrefix::new(DENIED_BASE.into(), 22));
    XdpRules {
        allow,
        deny,
        // Low per-source rates, so the over-rate flood (1,024 sources) is almost all dropped.
        syn_rate_per_second: 10,
        syn_burst: 20,
        packet_rate_per_second: 10,
        packet_burst: 10,
        ..XdpRules::default()
    }
}

/// What receives the flood on the gateway's end of the veth.
#[allow(dead_code, reason = "each variant holds what keeps its program, rules or socket alive until drop")]
enum Sink {
    Program(Ebpf),
    Gateway(Box<Kernel>),
    Nftables(String, Ebpf),
    Stack(Ebpf, std::net::TcpListener),
}

impl Sink {
    fn start(pair: &NetnsPair, peer: Peer, rules: &XdpRules) -> Result<Self> {
        let interface = pair.gateway_if.clone();
        let attach = |name: &'static str| attach_program(pair, name);
        Ok(match peer {
            Peer::BareDrop => Sink::Program(attach("bare_drop")?),
            Peer::XdpDenylisted | Peer::XdpOverRate => {
                let rules = rules.clone();
                let kernel = in_netns(&pair.gateway_ns, move || -> Result<Kernel> {
                    let mut kernel = Kernel::load()?;
                    kernel.set_listeners(&[SocketAddr::from(([0, 0, 0, 0], PORT))])?;
                    kernel.apply(&rules)?;
                    kernel.attach(&interface)?;
                    Ok(kernel)
                })?;
                Sink::Gateway(Box::new(kernel))
            }
            Peer::Nftables => {
                let pass = attach("pass_all")?;
                let elements: Vec<String> = rules.deny.iter().map(ToString::to_string).collect();
                let script = format!(
                    "table netdev portcullis_bench {{\n set deny {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }} }}\n \
                     chain ingress {{ type filter hook ingress device \"{}\" priority 0; ip saddr @deny drop; }}\n}}\n",
                    elements.join(", "),
                    pair.gateway_if
                );
                let path = std::env::temp_dir().join(format!("portcullis-bench-{}.nft", std::process::id()));
                std::fs::write(&path, script)?;
                let status =
                    Command::new("ip").args(["netns", "exec", &pair.gateway_ns, "nft", "-f"]).arg(&path).status();
                let _ = std::fs::remove_file(&path);
                if !status.is_ok_and(|s| s.success()) {
                    bail!("nft failed (apt-get install nftables)");
                }
                Sink::Nftables(pair.gateway_ns.clone(), pass)
            }
            Peer::KernelStack => {
                let pass = attach("pass_all")?;
                let listener = in_netns(&pair.gateway_ns, || std::net::TcpListener::bind((GATEWAY_IP, PORT)))?;
                Sink::Stack(pass, listener)
            }
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::Nftables(ns, _) = self {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "delete", "table", "netdev", "portcullis_bench"])
                .status();
        }
    }
}

/// The flood generator: `flood_redirect` run by `BPF_PROG_RUN` with live frames.
struct Generator {
    ebpf: Ebpf,
    frame: Vec<u8>,
}

impl Generator {
    fn load(pair: &NetnsPair) -> Result<Self> {
        let client_if = pair.client_if.clone();
        let (ebpf, ifindex) = in_netns(&pair.client_ns, move || -> Result<(Ebpf, u32)> {
            let mut ebpf = Ebpf::load(BENCH_OBJECT)?;
            let program: &mut Xdp = ebpf.program_mut("flood_redirect").context("program")?.try_into()?;
            program.load()?;
            let name = std::ffi::CString::new(client_if)?;
            // SAFETY: a NUL-terminated interface name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            Ok((ebpf, ifindex))
        })?;
        let sink_mac = mac(&pair.gateway_ns, &pair.gateway_if)?;
        let tcp = packet::tcp(PORT, packet::TCP_SYN);
        let mut frame = packet::frame(&[
            &packet::ethernet(&[], packet::ETH_P_IPV4),
            &packet::ipv4(DENIED_BASE, GATEWAY_IP, 6, 0, &tcp),
        ]);
        frame[0..6].copy_from_slice(&sink_mac);
        let mut generator = Self { ebpf, frame };
        generator.configure(ifindex, DENIED_BASE)?;
        Ok(generator)
    }

    fn configure(&mut self, ifindex: u32, base: Ipv4Addr) -> Result<()> {
        let mut flood: Array<_, [u32; 4]> = Array::try_from(self.ebpf.map_mut("FLOOD").context("FLOOD map")?)?;
        flood.set(0, [ifindex, FLOOD_SOURCES, u32::from(base), 0], 0)?;
        Ok(())
    }

    fn ifindex(&self) -> Result<u32> {
        let flood: Array<_, [u32; 4]> = Array::try_from(self.ebpf.map("FLOOD").context("FLOOD map")?)?;
        Ok(flood.get(&0, 0)?[0])
    }

    /// Floods for `duration` (at `rate` packets/s, or as fast as it can) and measures.
    fn measure(&mut self, pair: &NetnsPair, base: Ipv4Addr, duration: Duration, rate: Option<f64>) -> Result<Sample> {
        let ifindex = self.ifindex()?;
        self.configure(ifindex, base)?;
        let program: &Xdp = self.ebpf.program("flood_redirect").context("program")?.try_into()?;
        let frame = &self.frame;
        let rx_before = rx_packets(&pair.gateway_ns, &pair.gateway_if)?;
        let cpu_before = cpu_ticks()?;
        let started = Instant::now();
        in_netns(&pair.client_ns, || -> Result<()> {
            pin_to(GENERATOR_CPU);
            let mut sent: u64 = 0;
            while started.elapsed() < duration {
                let frames = match rate {
                    Some(rate) => {
                        let due = (started.elapsed().as_secs_f64() * rate) as u64;
                        if due <= sent {
                            std::thread::sleep(Duration::from_micros(200));
                            continue;
                        }
                        (due - sent).min(u64::from(FRAMES_PER_CALL)) as u32
                    }
                    None => FRAMES_PER_CALL / 8,
                };
                let mut options = TestRunOptions::new();
                options.data_in = Some(frame);
                options.repeat = frames;
                options.attrs = TestRunAttrs::new().xdp_live_frames(LIVE_FRAMES_BATCH);
                program.test_run(options)?;
                sent += u64::from(frames);
            }
            Ok(())
        })?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_after = cpu_ticks()?;
        let received = rx_packets(&pair.gateway_ns, &pair.gateway_if)?.saturating_sub(rx_before).max(1) as f64;
        let tick_ns = 1e9 / clock_ticks_per_second();
        Ok(Sample {
            packets_per_second: received / elapsed,
            softirq_ns: (cpu_after.1 - cpu_before.1) as f64 * tick_ns / received,
            busy_ns: (cpu_after.0 - cpu_before.0) as f64 * tick_ns / received,
        })
    }
}

/// The DDoS test: legitimate requests/s through the gateway while the flood rises.
fn ddos(pair: &NetnsPair, generator: &mut Generator, rules: &XdpRules, max_rate: f64) -> Result<()> {
    println!(
        "\nDDoS: closed-loop keep-alive GETs from {} through the gateway while a denylisted flood runs",
        CLIENT_IPS[0]
    );
    println!("| flood (packets/s) | with XDP: requests/s | kept | without XDP: requests/s | kept |");
    println!("|---|---|---|---|---|");
    let mut table: Vec<Vec<(f64, f64)>> = Vec::new();
    for xdp_on in [true, false] {
        let config = TempDir::new("bench-config");
        let deny: Vec<String> = rules.deny.iter().map(|p| format!("\"{p}\"")).collect();
        let interfaces = if xdp_on { format!("\"{}\"", pair.gateway_if) } else { String::new() };
        std::fs::create_dir_all(config.path().join("apis/echo"))?;
        std::fs::write(
            config.path().join("apis/echo/api.toml"),
            "name = \"Echo\"\npath = \"echo\"\nbackend-url = \"{{echo-backend-url}}\"\nsubscription-required = false\n",
        )?;
        std::fs::write(
            config.path().join("gateway.toml"),
            format!("[xdp]\ninterfaces = [{interfaces}]\ndeny = [{}]\n", deny.join(", ")),
        )?;
        let mut options = GatewayOptions::new("epoll").config(config.path());
        options.listen = format!("{GATEWAY_IP}:{PORT}");
        options.netns = Some(pair.gateway_ns.clone());
        options.workers = 1;
        let gateway = Gateway::start(options);
        // Without the gateway's program the veth still needs one to take redirected frames.
        let _pass = if xdp_on { None } else { Some(attach_program(pair, "pass_all")?) };
        std::thread::sleep(Duration::from_millis(500)); // the sync thread attaches within 50 ms
        let mut row = Vec::new();
        for fraction in DDOS_RATES {
            let rate = fraction * max_rate;
            let rps = std::thread::scope(|scope| -> Result<f64> {
                let client = scope.spawn(|| legitimate_load(pair, DDOS_RUN));
                if rate > 0.0 {
                    generator.measure(pair, DENIED_BASE, DDOS_RUN, Some(rate))?;
                }
                client.join().map_err(|_| anyhow::anyhow!("client thread panicked"))?
            })?;
            row.push((rate, rps));
        }
        // SIGTERM: control stops the data plane, which detaches its program before the next phase.
        let mut gateway = gateway;
        gateway.terminate();
        table.push(row);
    }
    for index in 0..DDOS_RATES.len() {
        let (rate, with) = table[0][index];
        let without = table[1][index].1;
        println!(
            "| {:.2} M | {:.0} | {:.0}% | {:.0} | {:.0}% |",
            rate / 1e6,
            with,
            100.0 * with / table[0][0].1,
            without,
            100.0 * without / table[1][0].1
        );
    }
    Ok(())
}

/// Keep-alive GETs for `duration` from the first client address; returns requests/s.
fn legitimate_load(pair: &NetnsPair, duration: Duration) -> Result<f64> {
    let target = SocketAddr::from((GATEWAY_IP, PORT));
    pair.in_client(|| {
        let started = Instant::now();
        let mut done: u64 = 0;
        while started.elapsed() < duration {
            let Ok(stream) = connect_from(CLIENT_IPS[0], target, Duration::from_secs(1)) else { continue };
            let Ok(mut connection) = http::Connection::from_stream(stream) else { continue };
            while started.elapsed() < duration {
                match connection.get("/echo/x", &[]) {
                    Ok(response) if response.status == 200 => done += 1,
                    _ => break,
                }
            }
        }
        Ok(done as f64 / started.elapsed().as_secs_f64())
    })
}

/// Loads `name` from the bench object and attaches it natively to the gateway's veth end.
fn attach_program(pair: &NetnsPair, name: &'static str) -> Result<Ebpf> {
    let interface = pair.gateway_if.clone();
    in_netns(&pair.gateway_ns, move || {
        let mut ebpf = Ebpf::load(BENCH_OBJECT)?;
        let program: &mut Xdp = ebpf.program_mut(name).context("program")?.try_into()?;
        program.load()?;
        // A just-killed gateway's link may take a moment to go: retry while the device is busy.
        let mut tries = 0;
        while let Err(error) = program.attach(&interface, XdpMode::Driver) {
            tries += 1;
            if tries == 20 {
                return Err(error.into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(ebpf)
    })
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer for this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// (busy ticks, softirq ticks) of the whole machine, from /proc/stat.
fn cpu_ticks() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("/proc/stat is empty")?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal
    let busy = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Ok((busy, fields.get(6).copied().unwrap_or(0)))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Packets the interface received (XDP-processed frames included), read inside its namespace.
fn rx_packets(ns: &str, interface: &str) -> Result<u64> {
    let dev = in_netns(ns, || std::fs::read_to_string("/proc/thread-self/net/dev"))?;
    let line = dev
        .lines()
        .find(|line| line.trim_start().starts_with(&format!("{interface}:")))
        .context("interface in /proc/net/dev")?;
    let (_, counters) = line.split_once(':').context("/proc/net/dev line")?;
    counters.split_whitespace().nth(1).context("rx packets")?.parse().context("rx packets")
}

fn mac(ns: &str, interface: &str) -> Result<[u8; 6]> {
    let output = Command::new("ip").args(["-n", ns, "link", "show", interface]).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let hex =
        text.split("link/ether ").nth(1).and_then(|rest| rest.split_whitespace().next()).context("MAC address")?;
    let mut mac = [0u8; 6];
    for (slot, byte) in mac.iter_mut().zip(hex.split(':')) {
        *slot = u8::from_str_radix(byte, 16)?;
    }
    Ok(mac)
}
