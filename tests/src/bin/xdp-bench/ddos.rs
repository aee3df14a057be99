//! The DDoS test (as in the XDP paper): legitimate requests/s through the gateway while a
//! denylisted flood rises, with the gateway's XDP program on the veth and without it.
//!
//! The CPUs are split so that the flood costs the gateway what it would cost a real host: the
//! generator and the veth's receive softirq it drives share [`GENERATOR_CPU`] (a redirect into
//! a veth runs the receive in the sender's context); the gateway, the echo backend and the
//! client run on the other CPU. The generator's own time is the attacker's and is not counted
//! against the gateway; the receive softirq on its CPU is the host's cost of the flood, and
//! legitimate packets go through the same veth queue and softirq as the flood.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use portcullis_contract::xdp::XdpRules;
use portcullis_tests::netns::{CLIENT_IPS, NetnsPair, connect_from};
use portcullis_tests::{Gateway, GatewayOptions, TempDir, http};

use crate::generator::{Flood, GENERATOR_CPU, Generator, Sample};
use crate::sink::pass_for_redirects;
use crate::system;
use crate::{DENIED_BASE, GATEWAY_IP, PORT, SPREAD_SOURCES};

/// Flood rates, as fractions of the generator's unpaced rate into the gateway's program.
const DDOS_RATES: [f64; 4] = [0.0, 0.25, 0.5, 1.0];
/// Length of one measurement.
const DDOS_RUN: Duration = Duration::from_secs(3);
/// The CPU of the gateway, the echo backend and the client.
const APPLICATION_CPU: usize = 1 - GENERATOR_CPU;

/// One cell: the flood as received, and the legitimate rate through the gateway.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    flood: Sample,
    requests_per_second: f64,
    /// SYN cookies the gateway's stack sent, per second (the flood that reached TCP).
    syn_cookies_per_second: f64,
}

/// Runs the test and prints its table; `max_rate` is the unpaced rate of the denylisted flood
/// from 65,536 sources into the gateway's program.
pub(crate) fn run(pair: &NetnsPair, generator: &mut Generator, rules: &XdpRules, max_rate: f64) -> Result<()> {
    println!(
        "\nDDoS: closed-loop keep-alive GETs from {} through the gateway (1 worker) while a denylisted SYN flood from {SPREAD_SOURCES} sources runs;\n\
         generator + receive softirq on cpu{GENERATOR_CPU}, gateway + echo backend + client on cpu{APPLICATION_CPU}",
        CLIENT_IPS[0]
    );
    // The gateway's processes inherit this thread's CPU (its worker pins to the cores it may use).
    system::pin_to(APPLICATION_CPU);
    let mut table: Vec<Vec<Cell>> = Vec::new();
    for xdp_on in [true, false] {
        table.push(phase(pair, generator, rules, max_rate, xdp_on)?);
    }
    system::unpin();
    println!(
        "| XDP | flood offered | flood received | SYN cookies sent | requests/s | kept | cpu{GENERATOR_CPU} softirq | cpu{GENERATOR_CPU} busy | cpu{APPLICATION_CPU} busy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // Shares of one CPU over the measurement, from /proc/stat ticks.
    let percent = |ticks: u64, cell: &Cell| {
        100.0 * ticks as f64 * system::tick_ns() / 1e9 / cell.flood.seconds.max(f64::MIN_POSITIVE)
    };
    for (cells, label) in table.iter().zip(["on", "off"]) {
        for (cell, fraction) in cells.iter().zip(DDOS_RATES) {
            println!(
                "| {label} | {:.2} M | {:.2} M | {:.2} M | {:.0} | {:.0}% | {:.0}% | {:.0}% | {:.0}% |",
                fraction * max_rate / 1e6,
                cell.flood.packets_per_second / 1e6,
                cell.syn_cookies_per_second / 1e6,
                cell.requests_per_second,
                100.0 * cell.requests_per_second / cells[0].requests_per_second,
                percent(cell.flood.generator_cpu.softirq, cell),
                percent(cell.flood.generator_cpu.busy, cell),
                percent(cell.flood.other_cpu.busy, cell),
            );
        }
    }
    Ok(())
}

/// One column of the table: a gateway started with or without its XDP program, then every rate.
fn phase(
    pair: &NetnsPair,
    generator: &mut Generator,
    rules: &XdpRules,
    max_rate: f64,
    xdp_on: bool,
) -> Result<Vec<Cell>> {
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
    let mut gateway = Gateway::start(options);
    // Without the gateway's program the veth still needs one to take redirected frames.
    let _pass = if xdp_on { None } else { pass_for_redirects(pair, generator.feeds_skbs())? };
    std::thread::sleep(Duration::from_millis(500)); // the sync thread attaches within 50 ms
    // A spoofed flood's sources are many: more than the gateway's SYN queue and the verdict cache.
    let flood = Flood { base: DENIED_BASE, sources: SPREAD_SOURCES, udp: false };
    let mut cells = Vec::new();
    for fraction in DDOS_RATES {
        let rate = fraction * max_rate;
        let cookies_before = system::stack_counter(&pair.gateway_ns, "TcpExt", "SyncookiesSent")?;
        let cell = std::thread::scope(|scope| -> Result<Cell> {
            let client = scope.spawn(|| legitimate_load(pair, DDOS_RUN));
            let flood =
                if rate > 0.0 { generator.measure(pair, flood, DDOS_RUN, Some(rate))? } else { idle(DDOS_RUN)? };
            let requests_per_second = client.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
            let cookies = system::stack_counter(&pair.gateway_ns, "TcpExt", "SyncookiesSent")? - cookies_before;
            let syn_cookies_per_second = cookies as f64 / flood.seconds.max(f64::MIN_POSITIVE);
            Ok(Cell { flood, requests_per_second, syn_cookies_per_second })
        })?;
        cells.push(cell);
    }
    // SIGTERM: control stops the data plane, which detaches its program before the next phase.
    gateway.terminate();
    Ok(cells)
}

/// The CPU account of a run without flood.
fn idle(duration: Duration) -> Result<Sample> {
    let (generator_before, other_before) =
        (system::cpu_ticks(Some(GENERATOR_CPU))?, system::cpu_ticks(Some(APPLICATION_CPU))?);
    let started = Instant::now();
    std::thread::sleep(duration);
    Ok(Sample {
        generator_cpu: system::cpu_ticks(Some(GENERATOR_CPU))?.since(generator_before),
        other_cpu: system::cpu_ticks(Some(APPLICATION_CPU))?.since(other_before),
        seconds: started.elapsed().as_secs_f64(),
        ..Sample::default()
    })
}

/// Keep-alive GETs for `duration` from the first client address; returns requests/s.
fn legitimate_load(pair: &NetnsPair, duration: Duration) -> Result<f64> {
    let target = SocketAddr::from((GATEWAY_IP, PORT));
    pair.in_client(|| {
        system::pin_to(APPLICATION_CPU);
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
