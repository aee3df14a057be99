//! The programs the benchmark runs: found on the PATH or installed with apt (nginx-light,
//! haproxy, wrk, linux-perf, openssl), with `/usr/sbin/policy-rc.d` answering 101 first so apt
//! never starts nginx or HAProxy as daemons. oha is used when present (`cargo install oha`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Makes apt's maintainer scripts skip starting services (`invoke-rc.d` asks this script).
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const POLICY_RC_D_DENY_ALL: &str = "#!/bin/sh\nexit 101\n";

/// What was found, with versions for the report.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) nginx: PathBuf,
    pub(crate) haproxy: Option<PathBuf>,
    pub(crate) wrk: PathBuf,
    pub(crate) oha: Option<PathBuf>,
    /// `perf` that can count the `raw_syscalls:sys_enter` tracepoint here.
    pub(crate) perf: Option<PathBuf>,
    pub(crate) openssl: PathBuf,
    /// `name version` lines.
    pub(crate) versions: Vec<String>,
    /// Why something is missing (said again in the report).
    pub(crate) notes: Vec<String>,
}

/// (program, Debian package)
const APT_TOOLS: [(&str, &str); 5] =
    [("nginx", "nginx-light"), ("haproxy", "haproxy"), ("wrk", "wrk"), ("perf", "linux-perf"), ("openssl", "openssl")];

/// Finds every tool, installing the missing ones with apt when `install`.
pub(crate) fn find_or_install(install: bool) -> Result<Tools> {
    let missing: Vec<&str> =
        APT_TOOLS.iter().filter(|(program, _)| which(program).is_none()).map(|(_, package)| *package).collect();
    let mut notes = Vec::new();
    if !missing.is_empty() {
        if install {
            apt_install(&missing)?;
        } else {
            notes.push(format!("not installed (--no-install): {}", missing.join(", ")));
        }
    }
    let required = |program: &str| which(program).with_context(|| format!("{program} is required and not installed"));
    let nginx = required("nginx")?;
    let wrk = required("wrk")?;
    let openssl = required("openssl")?;
    let haproxy = which("haproxy");
    if haproxy.is_none() {
        notes.push("HAProxy is not installed: its rows are skipped".to_owned());
    }
    let oha = which("oha");
    if oha.is_none() {
        notes.push(
            "oha is not installed (`cargo install oha --locked`): the fixed-load scenario paces wrk instead \
             (64 connections, one request every 4 ms each: a closed loop with think time, not a true open loop)"
                .to_owned(),
        );
    }
    let perf = which("perf").filter(|perf| perf_counts_syscalls(perf));
    if perf.is_none() {
        notes.push("perf cannot count raw_syscalls:sys_enter here: syscalls per request are n/a".to_owned());
    }
    let mut versions = vec![version(&nginx, &["-v"]), version(&wrk, &["-v"]), version(&openssl, &["version"])];
    if let Some(haproxy) = &haproxy {
        versions.insert(1, version(haproxy, &["-v"]));
    }
    if let Some(oha) = &oha {
        versions.push(version(oha, &["--version"]));
    }
    Ok(Tools { nginx, haproxy, wrk, oha, perf, openssl, versions, notes })
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let policy = Path::new(POLICY_RC_D);
    let wrote_policy = !policy.exists();
    if wrote_policy {
        println!("setup: writing {POLICY_RC_D} (exit 101) so apt does not start the servers it installs");
        std::fs::write(policy, POLICY_RC_D_DENY_ALL).with_context(|| format!("writing {POLICY_RC_D}"))?;
        std::fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    println!("setup: installing with apt-get: {}", packages.join(" "));
    let install = |quiet_update: bool| -> Result<bool> {
        if quiet_update {
            let _ = Command::new("apt-get").args(["update", "-q"]).status();
        }
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get (are you root?)")?;
        Ok(status.success())
    };
    let installed = install(false)? || install(true)?;
    if wrote_policy {
        let _ = std::fs::remove_file(policy);
    }
    if !installed {
        bail!("apt-get install {} failed", packages.join(" "));
    }
    Ok(())
}

/// `program` on the PATH, in the sbin directories (nginx and HAProxy live there), or in
/// `~/.cargo/bin` (oha).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn perf_counts_syscalls(perf: &Path) -> bool {
    Command::new(perf).args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"]).output().is_ok_and(|out| {
        out.status.success() && String::from_utf8_lossy(&out.stderr).contains("raw_syscalls:sys_enter")
    })
}

/// The first line a program prints about its version (some print it on stderr).
fn version(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output();
    let text = output
        .map(|out| format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        .unwrap_or_default();
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let line = text.lines().find(|line| !line.trim().is_empty()).unwrap_or("version unknown").trim();
    if line.to_ascii_lowercase().contains(&name) { line.to_owned() } else { format!("{name}: {line}") }
}

/// A self-signed ECDSA P-256 certificate for 127.0.0.1/localhost: (cert, key, cert+key for HAProxy).
pub(crate) fn make_certificate(openssl: &Path, dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "7", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .output()
        .context("running openssl")?;
    if !status.status.success() {
        bail!("openssl req failed: {}", String::from_utf8_lossy(&status.stderr));
    }
    let combined = dir.join("cert-and-key.pem");
    std::fs::write(&combined, [std::fs::read(&cert)?, std::fs::read(&key)?].concat())?;
    Ok((cert, key, combined))
}
