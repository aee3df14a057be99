//! `cargo xtask <task>`: developer and CI tasks that are more than one cargo command.
//!
//! - `lint`: rustfmt check and clippy with warnings denied, over the whole workspace.
//! - `bench`: the macro benchmark against nginx and HAProxy (root; see docs/benchmarks.md).
//! - `bench-micro`: the criterion micro-benchmarks of the sans-IO cores.
//! - `build-ebpf`: the XDP objects (nightly + rust-src + llvm-tools), written to `ebpf/*.bpf.o`.
//! - `bench-xdp`: the XDP flood benchmark and DDoS test (root; see docs/benchmarks.md).
//! - `fuzz`: the cargo-fuzz targets, N seconds each, with a summary (nightly + cargo-fuzz; see
//!   docs/fuzzing.md).

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod ebpf;
mod fuzz;

const USAGE: &str = "usage: cargo xtask <lint|bench [--quick] [--help]|bench-micro|build-ebpf|bench-xdp [--help]|\
                     fuzz [--seconds N] [TARGET...]>";

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("lint") => lint(),
        Some("bench") => bench(),
        Some("bench-micro") => cargo(&["bench", "-p", "portcullis-benches"]),
        Some("build-ebpf") => ebpf::build(&workspace_root()),
        Some("bench-xdp") => driver("xdp-bench"),
        Some("fuzz") => fuzz::run(&workspace_root(), &std::env::args().skip(2).collect::<Vec<_>>()),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(anyhow::anyhow!("unknown task {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn lint() -> Result<()> {
    eprintln!("xtask: [1/3] rustfmt --check (workspace, ebpf/xdp and fuzz)");
    cargo(&["fmt", "--all", "--check"]).context("formatting differs: run `cargo fmt --all`")?;
    // The crates outside the workspace (they build only with nightly) are formatted all the same.
    for manifest in ["ebpf/xdp/Cargo.toml", "fuzz/Cargo.toml"] {
        cargo(&["fmt", "--check", "--manifest-path", manifest])
            .with_context(|| format!("formatting differs: run `cargo fmt --manifest-path {manifest}`"))?;
    }
    eprintln!("xtask: [2/3] clippy -D warnings");
    cargo(&["clippy", "--workspace", "--all-targets", "--quiet", "--", "-D", "warnings"])?;
    // The fuzz harness uses the data plane's types (`View`, the VM): it must keep compiling when
    // they change, though only nightly links it with libFuzzer. `cargo check` needs no nightly.
    eprintln!("xtask: [3/3] cargo check the fuzz targets");
    cargo(&["check", "--quiet", "--manifest-path", "fuzz/Cargo.toml", "--bins"])
        .context("the fuzz targets do not compile: fix fuzz/ for the API change")
}

/// Builds the gateway and the driver in release, then runs the driver with the arguments after `bench`.
fn bench() -> Result<()> {
    eprintln!("xtask: building portcullis, portcullis-dataplane and proxy-bench (release)");
    cargo(&["build", "--release", "--quiet", "-p", "portcullis-control", "-p", "portcullis-dataplane"])?;
    driver("proxy-bench")
}

/// Runs a benchmark driver of `portcullis-tests` in release with the arguments after the task's
/// name (`--help` included: the driver prints its usage).
fn driver(bin: &str) -> Result<()> {
    let mut args = vec!["run", "--release", "--quiet", "-p", "portcullis-tests", "--bin", bin, "--"];
    let rest: Vec<String> = std::env::args().skip(2).collect();
    args.extend(rest.iter().map(String::as_str));
    cargo(&args)
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo).args(args).status().with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> std::path::PathBuf {
    let manifest_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map_or_else(|| manifest_dir.clone(), std::path::Path::to_path_buf)
}
