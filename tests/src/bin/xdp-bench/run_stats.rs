//! The XDP side's own time per packet: run count and run time of the program attached to an
//! interface, from the kernel's BPF run-time statistics. They are on only while a [`RunStats`]
//! holds them (`BPF_ENABLE_STATS` returns a descriptor; closing it turns them off, so a failed
//! run leaves nothing on), because they cost every program two clock reads per run.

use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};
use aya::programs::{ProgramInfo, loaded_programs};
use aya::sys::{Stats, enable_stats};

/// Statistics switched on, and the program's totals when they were.
pub(crate) struct RunStats {
    _enabled: OwnedFd,
    program_id: u32,
    runs_before: u64,
    time_before: Duration,
}

impl RunStats {
    /// Switches the statistics on and reads the totals of the XDP program attached to
    /// `interface` in namespace `ns`.
    pub(crate) fn start(ns: &str, interface: &str) -> Result<Self> {
        let enabled = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
        let program_id = attached_program(ns, interface)?;
        let info = program(program_id)?;
        Ok(Self { _enabled: enabled, program_id, runs_before: info.run_count(), time_before: info.run_time() })
    }

    /// Switches the statistics off: (runs since `start`, ns per run).
    pub(crate) fn finish(self) -> Result<(u64, f64)> {
        let info = program(self.program_id)?;
        let runs = info.run_count().saturating_sub(self.runs_before);
        let time = info.run_time().saturating_sub(self.time_before);
        Ok((runs, time.as_nanos() as f64 / runs.max(1) as f64))
    }
}

/// The id of the XDP program attached to `interface` (`prog/xdp id N` in `ip link`).
fn attached_program(ns: &str, interface: &str) -> Result<u32> {
    let output = Command::new("ip").args(["-n", ns, "link", "show", "dev", interface]).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let id = text
        .split("prog/xdp id ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("no XDP program on {interface} in {ns}"))?;
    id.parse().with_context(|| format!("XDP program id {id:?}"))
}

fn program(id: u32) -> Result<ProgramInfo> {
    for info in loaded_programs() {
        let info = info?;
        if info.id() == id {
            return Ok(info);
        }
    }
    anyhow::bail!("XDP program {id} is gone")
}
