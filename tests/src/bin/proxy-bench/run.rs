//! The run: set-up (tools, certificate, origin), then every scenario for every gateway, rounds
//! interleaved (the gateway order rotates each round: A B C, B C A, C A B), each sample on a
//! freshly started gateway, with progress and an estimate of the time left.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use portcullis_tests::{TempDir, bins};

use crate::load::Generators;
use crate::peers::{self, Environment, Peer};
use crate::procs::{self, Proc};
use crate::sample::{self, OTHER_CPU_MAX, Sample};
use crate::scenario::Scenario;
use crate::tools::{self, Tools};
use crate::{Options, measure};

/// Everything measured.
#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) samples: Vec<(Scenario, Peer, usize, Sample)>,
    /// (scenario, gateway, why it was not measured)
    pub(crate) skipped: Vec<(Scenario, Peer, String)>,
    pub(crate) discarded: usize,
    /// (scenario, gateway, error) of samples that failed.
    pub(crate) failed: Vec<(Scenario, Peer, String)>,
    /// Samples kept although other load exceeded the limit (the retries ran out).
    pub(crate) disturbed: usize,
}

/// What the run needs before the first sample; dropping it stops the origin and removes the directory.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) tools: Tools,
    pub(crate) env: Environment,
    pub(crate) generators: Generators,
    pub(crate) peers: Vec<Peer>,
    pub(crate) commit: String,
    pub(crate) machine: String,
    origin: Proc,
    _dir: TempDir,
}

impl Setup {
    pub(crate) fn new(options: &Options) -> Result<Self> {
        let tools = tools::find_or_install(options.install)?;
        println!("setup: building Portcullis (release) if needed");
        let portcullis = bins::portcullis();
        let help = Command::new(&portcullis).args(["up", "--help"]).output().context("portcullis up --help")?;
        let portcullis_tls = String::from_utf8_lossy(&help.stdout).contains("--listen-tls");
        let dir = TempDir::new("proxy-bench");
        let (cert, key, cert_and_key) = tools::make_certificate(&tools.openssl, dir.path())?;
        let env = Environment {
            dir: dir.path().to_owned(),
            nginx: tools.nginx.clone(),
            haproxy: tools.haproxy.clone(),
            portcullis,
            portcullis_tls,
            io: options.io.clone(),
            cert,
            key,
            cert_and_key,
            origin_ports: peers::free_ports(peers::ORIGIN_PORTS)?,
            span_sink: crate::sink::start()?,
        };
        let origin = peers::start_origin(&env)?;
        let mut peers = vec![Peer::Portcullis, Peer::Nginx];
        if tools.haproxy.is_some() {
            peers.push(Peer::Haproxy);
        }
        let generators = Generators { wrk: tools.wrk.clone(), oha: tools.oha.clone(), dir: env.dir.clone() };
        Ok(Self { tools, env, generators, peers, commit: commit(), machine: machine(), origin, _dir: dir })
    }

    /// Processes that belong to the benchmark besides the gateway under test and the generator:
    /// the origin, this driver, and the softirq threads that carry part of the loopback traffic.
    pub(crate) fn support_pids(&self) -> Vec<i32> {
        let mut pids = vec![self.origin.pid, std::process::id() as i32];
        pids.extend(measure::softirq_threads());
        pids
    }
}

/// Runs every sample.
pub(crate) fn all(options: &Options, setup: &Setup) -> Result<Results> {
    let peers = &setup.peers;
    let mut plan = Vec::new();
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| options.scenarios.is_empty() || options.scenarios.iter().any(|id| id == s.id()))
        .collect();
    for round in 0..options.rounds {
        for &scenario in &scenarios {
            for index in 0..peers.len() {
                plan.push((round, scenario, peers[(index + round) % peers.len()]));
            }
        }
    }
    let mut results = Results::default();
    plan.retain(|&(round, scenario, peer)| {
        let why = if peer == Peer::Portcullis && scenario.tls() && !setup.env.portcullis_tls {
            Some("n/a (no TLS in this build)")
        } else if peer == Peer::Nginx && scenario.jwt() {
            Some("n/a (open-source nginx does not verify JWTs)")
        } else if !scenario.runs_on(peer) {
            Some(if scenario == Scenario::Observed {
                "n/a (compared with nginx's access log; HAProxy logs to syslog only)"
            } else {
                "n/a (compared with nginx proxy_cache)"
            })
        } else {
            None
        };
        if let Some(why) = why.filter(|_| round == 0) {
            results.skipped.push((scenario, peer, why.to_owned()));
        }
        why.is_none()
    });
    println!(
        "proxy-bench: {} rounds × {} scenarios × {} gateways ({}), {:?} per measurement after {:?} warm-up; \
         gateways on cpu{}, origin + load generator on cpu{}",
        options.rounds,
        scenarios.len(),
        peers.len(),
        peers.iter().map(|p| p.label()).collect::<Vec<_>>().join(", "),
        options.measure,
        options.warmup,
        procs::GATEWAY_CPU,
        procs::CLIENT_CPU
    );
    for note in &setup.tools.notes {
        println!("note: {note}");
    }
    let started = Instant::now();
    let estimate = options.warmup + options.measure + Duration::from_millis(1500);
    for (done, &(round, scenario, peer)) in plan.iter().enumerate() {
        procs::check_interrupted()?;
        let left = plan.len() - done;
        let per_sample = if done == 0 { estimate } else { started.elapsed() / done as u32 };
        println!(
            "[{}/{}] round {}/{} · {} · {} · ETA {}",
            done + 1,
            plan.len(),
            round + 1,
            options.rounds,
            scenario.label(),
            peer.label(),
            format_duration(per_sample * left as u32)
        );
        let origin = setup.env.origin_ports[done % setup.env.origin_ports.len()];
        // One failed sample (a peer that did not start, a generator that failed) costs its row,
        // not the whole run; an interruption ends the run.
        let sample =
            match sample::measure_sample(options, setup, (scenario, peer, origin), round, &mut results.discarded) {
                Ok(sample) => sample,
                Err(error) if !procs::interrupted() => {
                    println!("        FAILED: {error:#}");
                    results.failed.push((scenario, peer, format!("{error:#}")));
                    continue;
                }
                Err(error) => return Err(error),
            };
        if sample.other_cores > OTHER_CPU_MAX {
            results.disturbed += 1;
        }
        println!("        {}", sample::describe(scenario, &sample));
        results.samples.push((scenario, peer, round, sample));
    }
    println!("proxy-bench: measured in {}", format_duration(started.elapsed()));
    Ok(results)
}

pub(crate) fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 { format!("{}m{:02}s", seconds / 60, seconds % 60) } else { format!("{seconds}s") }
}

fn commit() -> String {
    let output = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(bins::repo_root()).output();
    let hash = output.map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned()).unwrap_or_default();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(bins::repo_root())
        .output()
        .is_ok_and(|out| !out.stdout.is_empty());
    format!(
        "{}{}",
        if hash.is_empty() { "unknown" } else { &hash },
        if dirty { " (with uncommitted changes)" } else { "" }
    )
}

/// CPUs online (this driver is pinned to one, so not its own affinity), CPU model, kernel.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{} CPUs, {model}, kernel {}", cpu_count(), kernel.trim())
}

fn cpu_count() -> usize {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(online).unwrap_or(0)
}

/// The repository root, for the docs.
pub(crate) fn repo_root() -> PathBuf {
    bins::repo_root()
}
