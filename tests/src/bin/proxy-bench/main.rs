//! `cargo xtask bench`: the macro benchmark. Portcullis, nginx and HAProxy as reverse proxies in
//! front of one nginx origin, interleaved in one run (A B C, B C A, C A B …), each with one worker
//! pinned to cpu1 while the origin, the load generator and this driver share cpu0; gateway CPU per
//! request from schedstat, latency percentiles, syscalls per request, memory per idle connection,
//! and the ratios against the targets. The method is `../shared/design/benchmarks.md`;
//! results and the command are in docs/benchmarks.md (section between the `bench` markers).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark driver: a failed setup step aborts the run")]

mod idle;
mod jwt;
mod load;
mod measure;
mod peers;
mod procs;
mod report;
mod run;
mod sample;
mod scenario;
mod sink;
mod stats;
mod tools;

use std::time::Duration;

use anyhow::{Result, bail};

/// How long and how often to measure.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) rounds: usize,
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
    /// Extra attempts of a sample whose "other" CPU exceeded the limit.
    pub(crate) retries: usize,
    pub(crate) quick: bool,
    pub(crate) write_docs: bool,
    pub(crate) install: bool,
    /// Scenario ids to run (empty: all).
    pub(crate) scenarios: Vec<String>,
    /// Portcullis's `--io` (`auto`, `uring`, `epoll`).
    pub(crate) io: String,
    /// The command line as typed, for the docs.
    pub(crate) command: String,
}

/// Fewer rounds than this never write the docs.
const ROUNDS_FOR_DOCS: usize = 3;

const USAGE: &str =
    "usage: cargo xtask bench [--quick] [--rounds N] [--seconds S] [--scenarios A,B] [--io auto|uring|epoll] [--no-docs] [--no-install]
  --quick       one short round (1 s warm-up, 2 s per measurement), no retries, docs not written
  --rounds N    interleaved rounds (default 3, at least 3 for a result that goes into the docs)
  --seconds S   length of one measurement (default 8)
  --scenarios A,B  only these (proxy-5b, proxy-1k, fixed-load, reject-401, tls-keepalive,
                tls-handshake, idle, idle-tls, busy-1k, busy-8k, cache-hit, policy-set, jwt, jwt-nocache, observed); docs not written
  --io MODE     Portcullis data plane I/O backend (default auto: io_uring where the kernel allows it)
  --no-docs     do not rewrite the bench section of docs/benchmarks.md
  --no-install  do not apt-get install missing peers (their rows are skipped)";

fn parse_options() -> Result<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = Options {
        rounds: 3,
        warmup: Duration::from_secs(2),
        measure: Duration::from_secs(8),
        retries: 2,
        quick: false,
        write_docs: true,
        install: true,
        scenarios: Vec::new(),
        io: "auto".to_owned(),
        command: format!("cargo xtask bench {}", args.join(" ")).trim_end().to_owned(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| anyhow::anyhow!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" => {
                options.quick = true;
                options.rounds = 1;
                options.warmup = Duration::from_secs(1);
                options.measure = Duration::from_secs(2);
                options.retries = 0;
                options.write_docs = false;
            }
            "--rounds" => options.rounds = value("--rounds")?.parse()?,
            "--seconds" => options.measure = Duration::from_secs(value("--seconds")?.parse()?),
            "--io" => options.io = value("--io")?,
            "--scenarios" => {
                options.scenarios = value("--scenarios")?.split(',').map(str::to_owned).collect();
                let known: Vec<&str> = scenario::Scenario::ALL.iter().map(|s| s.id()).collect();
                if let Some(unknown) = options.scenarios.iter().find(|id| !known.contains(&id.as_str())) {
                    bail!("unknown scenario {unknown:?}: one of {}", known.join(", "));
                }
                options.write_docs = false;
            }
            "--no-docs" => options.write_docs = false,
            "--no-install" => options.install = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if options.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if options.rounds < ROUNDS_FOR_DOCS {
        // Medians of fewer rounds are not a result (../shared/design/benchmarks.md).
        options.write_docs = false;
    }
    Ok(options)
}

fn main() -> std::process::ExitCode {
    let result = parse_options().and_then(|options| {
        procs::prepare()?;
        let setup = run::Setup::new(&options)?;
        let results = run::all(&options, &setup)?;
        report::print_and_write(&options, &setup, &results)
    });
    // Whatever happened, nothing we started outlives us.
    procs::stop_all();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("proxy-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
