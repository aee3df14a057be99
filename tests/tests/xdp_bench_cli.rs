//! The `xdp-bench` driver's command line (`cargo xtask bench-xdp ...`): usage and refusals come
//! before anything that needs root, and an error is one line, not a backtrace.
#![allow(clippy::expect_used, reason = "a failed step fails the test")]

use std::process::Command;

fn xdp_bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xdp-bench")).args(args).env("RUST_BACKTRACE", "1").output().expect("run xdp-bench")
}

#[test]
fn help_prints_the_usage_and_starts_nothing() {
    for flag in ["--help", "-h"] {
        let output = xdp_bench(&[flag]);
        assert!(output.status.success(), "{flag}: {:?}", output.status);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with("usage: cargo xtask bench-xdp"), "{flag}: {stdout}");
        assert!(stdout.contains("--packet-socket"), "{stdout}");
        assert!(!stdout.contains("flood:") && !stdout.contains("feed:"), "{flag} started a run: {stdout}");
    }
}

#[test]
fn an_unknown_option_is_refused_in_one_line_with_the_usage() {
    let output = xdp_bench(&["--quick", "--rounds=3"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("xdp-bench: unknown option \"--rounds=3\"\nusage:"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert!(output.stdout.is_empty());
}
