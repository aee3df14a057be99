//! One sample: a freshly started gateway, its responses checked, a warm-up, then the measurement
//! (the whole generator run, or for the busy scenarios a window after every connection is up),
//! repeated while other processes used more than [`OTHER_CPU_MAX`] of a core (bounded), then
//! syscalls in a separate pass; or for the idle scenario, memory per idle connection.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::load::{LoadResult, LoadSpec};
use crate::peers::{self, Peer, Running};
use crate::run::Setup;
use crate::scenario::{CONNECTIONS, IDLE_SETTLE, IDLE_STEPS, Scenario};
use crate::{Options, idle, measure, procs};

/// "Other" CPU (not the benchmark's processes) above which a sample is discarded, in cores.
pub(crate) const OTHER_CPU_MAX: f64 = 0.05;
/// Syscalls are counted in a separate pass (perf's tracepoint costs CPU), this long.
const SYSCALL_PASS: Duration = Duration::from_secs(2);
/// A windowed measurement ends this long before the generator stops (and closes its connections).
const WINDOW_TAIL: Duration = Duration::from_secs(1);

/// One measurement of one gateway in one scenario.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub(crate) cpu_us_per_request: f64,
    pub(crate) load: LoadResult,
    pub(crate) syscalls_per_request: Option<f64>,
    /// Resident memory of the gateway's processes after the run.
    pub(crate) rss_bytes: u64,
    /// CPU used by processes outside the benchmark during the run, in cores.
    pub(crate) other_cores: f64,
    /// Memory per idle connection at each of [`IDLE_STEPS`] (idle scenario only).
    pub(crate) idle_bytes_per_connection: Vec<f64>,
    /// Responses with an unexpected status (a 401 where a 200 was due, or the reverse).
    pub(crate) unexpected_status: u64,
}

pub(crate) fn measure_sample(
    options: &Options,
    setup: &Setup,
    (scenario, peer, origin): (Scenario, Peer, u16),
    round: usize,
    discarded: &mut usize,
) -> Result<Sample> {
    let gateway = peers::start(&setup.env, peer, origin, scenario.variant())?;
    check_responses(&gateway, peer)?;
    if scenario.jwt() {
        check_jwt(&gateway, peer)?;
    }
    let sample = match scenario.load(&gateway, options.measure) {
        None => measure_idle(options, setup, scenario, &gateway),
        Some(spec) => measure_load(options, setup, scenario, &gateway, &spec, round, discarded),
    };
    gateway.stop();
    sample
}

fn measure_load(
    options: &Options,
    setup: &Setup,
    scenario: Scenario,
    gateway: &Running,
    spec: &LoadSpec,
    round: usize,
    discarded: &mut usize,
) -> Result<Sample> {
    let windowed = matches!(scenario, Scenario::Busy1K | Scenario::Busy8K);
    if !windowed {
        setup.generators.run(&LoadSpec { duration: options.warmup, ..spec.clone() })?;
    }
    let mut attempt = 0;
    let mut sample = loop {
        let measured = match windowed {
            false => measure_whole_run(setup, gateway, spec)?,
            true => measure_window(setup, gateway, spec, options.warmup, options.measure)?,
        };
        let load = measured.load;
        let sample = Sample {
            cpu_us_per_request: measured.gateway_cpu_ns as f64 / 1e3 / load.requests.max(1) as f64,
            load,
            other_cores: measured.other_cores,
            unexpected_status: match scenario {
                Scenario::Reject401 => load.requests.saturating_sub(load.status_errors),
                _ => load.status_errors,
            },
            ..Sample::default()
        };
        if sample.other_cores <= OTHER_CPU_MAX || attempt >= options.retries {
            break sample;
        }
        attempt += 1;
        *discarded += 1;
        println!(
            "        discarded: other load {:.0}% of a core (limit {:.0}%); retry {attempt}/{}",
            sample.other_cores * 100.0,
            OTHER_CPU_MAX * 100.0,
            options.retries
        );
    };
    sample.rss_bytes = measure::rss_bytes(&gateway.pids);
    if let (0, Some(perf)) = (round, &setup.tools.perf) {
        sample.syscalls_per_request = Some(count_syscalls(setup, perf, gateway, spec, windowed)?);
    }
    Ok(sample)
}

/// What one measured stretch of load gave.
struct Measured {
    /// For a window: requests the origin served in it and its length.
    load: LoadResult,
    gateway_cpu_ns: u64,
    other_cores: f64,
}

/// CPU counters of everything the "other load" check needs.
struct Counters {
    at: Instant,
    busy: u64,
    gateway: u64,
    support: u64,
    generator: u64,
}

impl Counters {
    fn read(setup: &Setup, gateway: &Running, generator: Option<i32>) -> Result<Self> {
        Ok(Self {
            at: Instant::now(),
            busy: measure::machine_busy_ns()?,
            gateway: measure::cpu_ns(&gateway.pids),
            support: measure::cpu_ns(&setup.support_pids()),
            generator: generator.map_or(0, |pid| measure::cpu_ns(&[pid])),
        })
    }

    /// (gateway CPU, other load in cores) from `self` to `later`, plus `generator_ns` if the
    /// generator's CPU was not in the counters.
    fn until(&self, later: &Counters, generator_ns: u64) -> (u64, f64) {
        let gateway = later.gateway.saturating_sub(self.gateway);
        let ours = gateway
            + later.support.saturating_sub(self.support)
            + later.generator.saturating_sub(self.generator)
            + generator_ns;
        let wall = later.at.duration_since(self.at).as_nanos().max(1) as f64;
        (gateway, later.busy.saturating_sub(self.busy).saturating_sub(ours) as f64 / wall)
    }
}

/// The whole generator run is the measurement (keep-alive scenarios: connections are up at once).
fn measure_whole_run(setup: &Setup, gateway: &Running, spec: &LoadSpec) -> Result<Measured> {
    let before = Counters::read(setup, gateway, None)?;
    let (load, generator_ns) = setup.generators.run(spec)?;
    let (gateway_cpu_ns, other_cores) = before.until(&Counters::read(setup, gateway, None)?, generator_ns);
    Ok(Measured { load, gateway_cpu_ns, other_cores })
}

/// Busy scenarios: one generator run of warm-up + measurement; only the stretch after the
/// warm-up counts (every connection is up by then; opening thousands may take SYN retries),
/// with the requests counted by the origin. Latency percentiles are wrk's, over the whole run.
fn measure_window(
    setup: &Setup,
    gateway: &Running,
    spec: &LoadSpec,
    warmup: Duration,
    length: Duration,
) -> Result<Measured> {
    let started = setup.generators.start(&LoadSpec { duration: warmup + length + WINDOW_TAIL, ..spec.clone() })?;
    procs::sleep(warmup)?;
    let (requests_before, before) = (origin_requests(setup)?, Counters::read(setup, gateway, Some(started.pid()))?);
    procs::sleep(length)?;
    let after = Counters::read(setup, gateway, Some(started.pid()))?;
    // Each status request counts itself; the second one is inside the window.
    let requests = origin_requests(setup)?.saturating_sub(requests_before + 1);
    let (mut load, _) = started.finish()?;
    load.requests = requests;
    load.seconds = after.at.duration_since(before.at).as_secs_f64();
    let (gateway_cpu_ns, other_cores) = before.until(&after, 0);
    Ok(Measured { load, gateway_cpu_ns, other_cores })
}

/// Requests the origin has served so far.
fn origin_requests(setup: &Setup) -> Result<u64> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], setup.env.origin_ports[0]));
    let (_, body) = idle::fetch(addr, peers::ORIGIN_STATUS_PATH)?;
    measure::parse_stub_status_requests(&String::from_utf8_lossy(&body)).context("the origin's stub_status page")
}

/// Syscalls per request in a separate pass under perf (whose tracepoint costs CPU).
fn count_syscalls(setup: &Setup, perf: &Path, gateway: &Running, spec: &LoadSpec, windowed: bool) -> Result<f64> {
    let output = setup.env.dir.join("perf.out");
    if !windowed {
        let counter = measure::SyscallCounter::start(perf, &gateway.pids, &output)?;
        let (load, _) = setup.generators.run(&LoadSpec { duration: SYSCALL_PASS, ..spec.clone() })?;
        return Ok(counter.finish()? as f64 / load.requests.max(1) as f64);
    }
    let lead = Duration::from_secs(1);
    let started = setup.generators.start(&LoadSpec { duration: lead + SYSCALL_PASS + WINDOW_TAIL, ..spec.clone() })?;
    procs::sleep(lead)?;
    let counter = measure::SyscallCounter::start(perf, &gateway.pids, &output)?;
    let before = origin_requests(setup)?;
    procs::sleep(SYSCALL_PASS)?;
    let syscalls = counter.finish()?;
    let requests = origin_requests(setup)?.saturating_sub(before + 1);
    started.finish()?;
    Ok(syscalls as f64 / requests.max(1) as f64)
}

fn measure_idle(options: &Options, setup: &Setup, scenario: Scenario, gateway: &Running) -> Result<Sample> {
    let tls = match scenario {
        Scenario::IdleTls => Some(gateway.tls.context("the gateway has no TLS listener")?),
        _ => None,
    };
    // The warm-up speaks what the idle connections will, so the TLS code paths are warm too.
    let base = match tls {
        Some(tls) => format!("https://{tls}"),
        None => format!("http://{}", gateway.http),
    };
    let warmup = LoadSpec {
        url: format!("{base}{}", peers::SMALL_PATH),
        connections: CONNECTIONS,
        duration: options.warmup,
        headers: Vec::new(),
        rate: None,
        script: None,
    };
    setup.generators.run(&warmup)?;
    procs::sleep(Duration::from_millis(500))?;
    let before = measure::rss_bytes(&gateway.pids);
    let mut plain = Vec::new();
    let mut encrypted = Vec::new();
    let mut sample = Sample::default();
    for step in IDLE_STEPS {
        let more = step - plain.len() - encrypted.len();
        match tls {
            Some(tls) => encrypted.extend(idle::open_tls(tls, peers::SMALL_PATH, more)?),
            None => plain.extend(idle::open(gateway.http, peers::SMALL_PATH, more)?),
        }
        procs::sleep(IDLE_SETTLE)?;
        let after = measure::rss_bytes(&gateway.pids);
        sample.idle_bytes_per_connection.push(after.saturating_sub(before) as f64 / step as f64);
        sample.rss_bytes = after;
    }
    Ok(sample)
}

/// Every gateway must answer the same bytes: the origin's bodies through the proxy, and
/// Portcullis's 401 body from the gateway itself.
fn check_responses(gateway: &Running, peer: Peer) -> Result<()> {
    let large = "x".repeat(peers::LARGE_BODY_BYTES);
    let expected = [
        (peers::SMALL_PATH, 200, peers::SMALL_BODY),
        (peers::LARGE_PATH, 200, &large),
        (peers::REJECT_PATH, 401, peers::REJECT_BODY),
    ];
    for (path, status, body) in expected {
        let (got_status, got_body) = idle::fetch(gateway.http, path)?;
        if got_status != status || got_body != body.as_bytes() {
            anyhow::bail!(
                "{} answered GET {path} with {got_status} {:?}, expected {status} {body:?}",
                peer.label(),
                String::from_utf8_lossy(&got_body)
            );
        }
    }
    Ok(())
}

/// The gateway verifies the scenario's tokens (200) and refuses a forged one (401).
fn check_jwt(gateway: &Running, peer: Peer) -> Result<()> {
    let token = &crate::jwt::tokens()[1];
    for (bearer, expected) in [(token.clone(), 200), (format!("{token}x"), 401)] {
        let (status, _) =
            idle::fetch_with(gateway.http, peers::JWT_PATH, &[("Authorization", &format!("Bearer {bearer}"))])?;
        if status != expected {
            anyhow::bail!("{} answered a JWT request with {status}, expected {expected}", peer.label());
        }
    }
    Ok(())
}

/// One line about a sample, for the progress output.
pub(crate) fn describe(scenario: Scenario, sample: &Sample) -> String {
    if scenario.idle() {
        let steps: Vec<String> = IDLE_STEPS
            .iter()
            .zip(&sample.idle_bytes_per_connection)
            .map(|(count, bytes)| format!("{count} conns: {bytes:.0} B/conn"))
            .collect();
        return format!("{}; RSS {:.1} MiB", steps.join(", "), sample.rss_bytes as f64 / 1048576.0);
    }
    let load = &sample.load;
    let mut line = format!(
        "{:.2} µs/req CPU, {:.0} rps, p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, other {:.1}% of a core",
        sample.cpu_us_per_request,
        load.rps(),
        load.p50_us,
        load.p99_us,
        load.p999_us,
        sample.other_cores * 100.0
    );
    if let Some(syscalls) = sample.syscalls_per_request {
        line.push_str(&format!(", {syscalls:.2} syscalls/req"));
    }
    if load.requests == 0 {
        line.push_str(" — WARNING: no request completed (left out of the medians)");
    } else if load.errors > 0 || sample.unexpected_status > 0 {
        line.push_str(&format!(
            " — WARNING: {} socket errors, {} unexpected statuses",
            load.errors, sample.unexpected_status
        ));
    }
    line
}
