//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs the cargo-fuzz targets of `fuzz/` (all of
//! them when none is named) for N seconds each, then prints one summary line per target:
//! executions, coverage (`cov:` and `ft:` of libFuzzer's last stats line) and crashes.
//!
//! Each target runs as `cargo +nightly fuzz run <target> fuzz/corpus/<target>
//! fuzz/seeds/<target> -- -max_total_time=N`: libFuzzer reads both folders and writes what it
//! finds new to the first, which is not committed; the seeds are. libFuzzer's whole output goes
//! to `fuzz/logs/<target>.log`; the terminal gets its status lines. See docs/fuzzing.md.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The targets, in the order they run (the files of `fuzz/fuzz_targets/`).
pub(crate) const TARGETS: [&str; 15] = [
    "request_head",
    "response_head",
    "chunked",
    "url",
    "policy_compile",
    "verifier",
    "snapshot_decode",
    "admin_request",
    "jwt",
    "openapi_import",
    "management_filter",
    "management_report_query",
    "traceparent",
    "body_transform",
    "liquid_body",
];
/// Seconds each target runs when `--seconds` is not given.
const SECONDS_DEFAULT: u64 = 60;
/// The fuzz crate (its own workspace: it builds only with nightly through cargo-fuzz).
const CRATE_DIR: &str = "fuzz";
const TOOLCHAIN: &str = "nightly";
const INSTALL_HINT: &str = "install them with:\n    rustup toolchain install nightly --profile minimal\n    \
                            cargo install cargo-fuzz --locked";
const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [TARGET...]";

/// What one target's run found.
#[derive(Debug, Default)]
struct Summary {
    target: &'static str,
    /// Inputs executed (libFuzzer's `stat::number_of_executed_units`, else its last `#N`).
    execs: Option<u64>,
    /// Coverage counters (`cov:`) and features (`ft:`) of the last stats line.
    cov: Option<u64>,
    ft: Option<u64>,
    /// Inputs libFuzzer wrote as crashes, timeouts or out-of-memory (`Test unit written to`).
    crashes: Vec<String>,
    /// The run failed without writing a crash (a build error, a bad option).
    failed: bool,
}

/// Runs the targets the arguments name (all when none) and prints the summary.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let Some((seconds, targets)) = parse_args(args)? else {
        println!("{USAGE}\ntargets: {}", TARGETS.join(" "));
        return Ok(());
    };
    check_prerequisites()?;
    std::fs::create_dir_all(root.join(CRATE_DIR).join("logs")).context("creating fuzz/logs")?;
    let mut summaries = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        eprintln!("xtask: [{}/{}] fuzzing {target} for {seconds} s", i + 1, targets.len());
        summaries.push(run_target(root, target, seconds)?);
    }
    println!("fuzz summary ({seconds} s per target):");
    for summary in &summaries {
        println!("{}", summary_line(summary));
    }
    let crashed: Vec<&str> = summaries.iter().filter(|s| !s.crashes.is_empty()).map(|s| s.target).collect();
    let failed: Vec<&str> = summaries.iter().filter(|s| s.failed).map(|s| s.target).collect();
    if !crashed.is_empty() {
        bail!(
            "{} crashed; reproduce with `cargo +nightly fuzz run <target> <crash file>` (see docs/fuzzing.md)",
            crashed.join(", ")
        );
    }
    if !failed.is_empty() {
        bail!("{} failed to run; see fuzz/logs/<target>.log", failed.join(", "));
    }
    Ok(())
}

/// `(seconds, targets)`, or `None` for `--help`.
fn parse_args(args: &[String]) -> Result<Option<(u64, Vec<&'static str>)>> {
    let mut seconds = SECONDS_DEFAULT;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seconds" => Some(args.next().with_context(|| format!("--seconds needs a value\n{USAGE}"))?.as_str()),
            other => other.strip_prefix("--seconds="),
        };
        if let Some(value) = value {
            seconds = value.parse().ok().filter(|&n| n > 0).with_context(|| {
                format!("--seconds takes a whole number of seconds above 0, not {value:?}\n{USAGE}")
            })?;
            continue;
        }
        let Some(&target) = TARGETS.iter().find(|&&name| name == arg) else {
            bail!("unknown fuzz target {arg:?}; the targets are: {}\n{USAGE}", TARGETS.join(" "));
        };
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    Ok(Some((seconds, targets)))
}

/// Fails with what to install when nightly or cargo-fuzz is missing.
fn check_prerequisites() -> Result<()> {
    let nightly = nightly_cargo().arg("--version").output();
    match nightly {
        Ok(output) if output.status.success() => {}
        Ok(_) => bail!("the {TOOLCHAIN} toolchain is not installed (cargo-fuzz needs it); {INSTALL_HINT}"),
        Err(error) => bail!("cannot run cargo ({error}); the fuzz targets need rustup, and {INSTALL_HINT}"),
    }
    let fuzz = nightly_cargo().args(["fuzz", "--version"]).output();
    if !fuzz.is_ok_and(|output| output.status.success()) {
        bail!("cargo-fuzz is not installed; {INSTALL_HINT}");
    }
    Ok(())
}

/// `cargo +nightly`, free of the toolchain the xtask itself runs under.
fn nightly_cargo() -> Command {
    let mut command = Command::new("cargo");
    command.arg(format!("+{TOOLCHAIN}")).env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO").env_remove("RUSTC");
    command
}

/// Runs one target for `seconds`, its output logged and its status lines echoed.
fn run_target(root: &Path, target: &'static str, seconds: u64) -> Result<Summary> {
    let corpus = Path::new(CRATE_DIR).join("corpus").join(target);
    let seeds = Path::new(CRATE_DIR).join("seeds").join(target);
    std::fs::create_dir_all(root.join(&corpus)).with_context(|| format!("creating {}", corpus.display()))?;
    let log_path = root.join(CRATE_DIR).join("logs").join(format!("{target}.log"));
    let mut log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = nightly_cargo()
        .current_dir(root)
        .args(["fuzz", "run", target])
        .arg(&corpus)
        .arg(&seeds)
        .args(["--", &format!("-max_total_time={seconds}"), "-print_final_stats=1"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running cargo +{TOOLCHAIN} fuzz run {target}"))?;
    let mut summary = Summary { target, ..Summary::default() };
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).split(b'\n') {
            let line = String::from_utf8_lossy(&line.context("reading the fuzzer's output")?).into_owned();
            writeln!(log, "{line}").with_context(|| format!("writing {}", log_path.display()))?;
            if is_status_line(&line) {
                eprintln!("  {line}");
            }
            read_stats(&line, &mut summary);
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    summary.failed = !status.success() && summary.crashes.is_empty();
    if !status.success() {
        eprintln!("xtask: {target} exited with {status}; its output is in {}", log_path.display());
    }
    Ok(summary)
}

/// Lines worth showing while a target runs: cargo's and libFuzzer's own messages and its
/// periodic stats, not one line per new input.
fn is_status_line(line: &str) -> bool {
    match line.strip_prefix('#') {
        Some(rest) => ["INITED", "pulse", "DONE"].iter().any(|word| rest.contains(word)),
        None => !line.starts_with("stat::") && !line.trim().is_empty(),
    }
}

/// Takes what the summary needs from one line of libFuzzer's output.
fn read_stats(line: &str, summary: &mut Summary) {
    if let Some(rest) = line.strip_prefix('#') {
        if let Some(runs) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
            summary.execs = summary.execs.max(Some(runs));
        }
        summary.cov = field(line, "cov:").or(summary.cov);
        summary.ft = field(line, "ft:").or(summary.ft);
    } else if let Some(value) = line.strip_prefix("stat::number_of_executed_units:") {
        summary.execs = value.trim().parse().ok().or(summary.execs);
    } else if let Some((_, path)) = line.split_once("Test unit written to ") {
        summary.crashes.push(path.trim().to_owned());
    }
}

/// The number after `name` in a stats line (`cov: 1234`).
fn field(line: &str, name: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    words.find(|&word| word == name)?;
    words.next()?.parse().ok()
}

fn summary_line(summary: &Summary) -> String {
    let number = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let mut line = format!(
        "  {:<16} execs {:>11}  cov {:>6}  ft {:>7}  crashes {}",
        summary.target,
        number(summary.execs),
        number(summary.cov),
        number(summary.ft),
        summary.crashes.len()
    );
    for crash in &summary.crashes {
        line.push_str(&format!("\n    {crash}"));
    }
    if summary.failed {
        line.push_str("  (failed: see fuzz/logs)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn arguments_pick_seconds_and_targets() {
        assert_eq!(parse_args(&args(&[])).unwrap(), Some((SECONDS_DEFAULT, TARGETS.to_vec())));
        assert_eq!(
            parse_args(&args(&["--seconds", "5", "url", "chunked", "url"])).unwrap(),
            Some((5, vec!["url", "chunked"]))
        );
        assert_eq!(parse_args(&args(&["--seconds=7"])).unwrap(), Some((7, TARGETS.to_vec())));
        assert_eq!(parse_args(&args(&["--help"])).unwrap(), None);
        assert!(parse_args(&args(&["--seconds"])).is_err());
        assert!(parse_args(&args(&["--seconds", "0"])).is_err());
        assert!(parse_args(&args(&["nope"])).unwrap_err().to_string().contains("request_head"));
    }

    #[test]
    fn stats_come_from_libfuzzer_lines() {
        let mut summary = Summary::default();
        for line in [
            "#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb",
            "#1024\tpulse  cov: 120 ft: 300 corp: 20/400b lim: 4 exec/s: 512 rss: 40Mb",
            "#1500\tNEW    cov: 125 ft: 310 corp: 21/420b lim: 4 exec/s: 500 rss: 40Mb L: 3/9 MS: 1 ChangeBit-",
            "stat::number_of_executed_units: 1600",
            "artifact_prefix='/w/fuzz/artifacts/url/'; Test unit written to /w/fuzz/artifacts/url/crash-ab12",
        ] {
            read_stats(line, &mut summary);
        }
        assert_eq!((summary.execs, summary.cov, summary.ft), (Some(1600), Some(125), Some(310)));
        assert_eq!(summary.crashes, ["/w/fuzz/artifacts/url/crash-ab12"]);
        assert!(is_status_line("#1024\tpulse  cov: 120"));
        assert!(!is_status_line("#1500\tNEW    cov: 125"));
        assert!(is_status_line("==1== ERROR: libFuzzer: deadly signal"));
    }
}
