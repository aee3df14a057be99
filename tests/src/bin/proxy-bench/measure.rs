//! What the kernel tells about CPU and memory: on-CPU time of processes (the first field of
//! `/proc/PID/task/*/schedstat`, ns), the machine's busy time (`/proc/stat`), resident memory
//! (`VmRSS`), and syscalls counted by `perf stat -e raw_syscalls:sys_enter`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::procs::{self, Proc};

/// On-CPU ns of every thread of `pids` (threads that exited earlier are not counted: every
/// process measured here keeps its threads for its whole life).
pub(crate) fn cpu_ns(pids: &[i32]) -> u64 {
    pids.iter().map(|&pid| process_cpu_ns(pid)).sum()
}

fn process_cpu_ns(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| parse_schedstat(&text))
        .sum()
}

/// The first field of a schedstat line: time spent on the CPU, ns.
pub(crate) fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The machine's busy CPU time, ns: everything but idle and iowait on the `cpu` line of
/// `/proc/stat` (user, nice, system, irq, softirq, steal). This kernel accounts by ticks and
/// without IRQ time accounting, so softirq work done in a task's context (loopback TCP's receive
/// path, run by the sender) is in that task's schedstat too; the rest runs in ksoftirqd, which
/// [`softirq_threads`] lets the run count as its own.
pub(crate) fn machine_busy_ns() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_proc_stat_busy(&text, clock_ticks_per_second()).context("parsing /proc/stat")
}

/// user + nice + system + irq + softirq + steal of the aggregate `cpu` line, in ns.
pub(crate) fn parse_proc_stat_busy(text: &str, ticks_per_second: u64) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let busy = [0, 1, 2, 5, 6, 7];
    let ticks: u64 = busy.iter().map(|&index| fields.get(index).copied()).sum::<Option<u64>>()?;
    Some(ticks * (1_000_000_000 / ticks_per_second.max(1)))
}

/// The pids of the `ksoftirqd/N` kernel threads (the softirq work our traffic pushes out of task
/// context runs there).
pub(crate) fn softirq_threads() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("ksoftirqd/")))
        .collect()
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100)
}

/// Resident memory of `pids`, bytes (sum of `VmRSS`).
pub(crate) fn rss_bytes(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|text| parse_vm_rss_kib(&text))
        .sum::<u64>()
        * 1024
}

/// `VmRSS:   1234 kB` -> 1234.
pub(crate) fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A running `perf stat -e raw_syscalls:sys_enter -p PIDS`, writing to a file.
#[derive(Debug)]
pub(crate) struct SyscallCounter {
    perf: Proc,
    output: std::path::PathBuf,
}

impl SyscallCounter {
    /// Attaches to every thread of `pids`; counting starts once perf has attached (~100 ms).
    pub(crate) fn start(perf: &Path, pids: &[i32], output: &Path) -> Result<Self> {
        let list: Vec<String> = pids.iter().map(ToString::to_string).collect();
        let mut command = Command::new(perf);
        command
            .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o"])
            .arg(output)
            .args(["-p", &list.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let perf = procs::spawn("perf", &mut command, procs::CLIENT_CPU)?;
        procs::sleep(Duration::from_millis(300))?;
        Ok(Self { perf, output: output.to_owned() })
    }

    /// Stops counting (SIGINT makes perf print its totals) and returns the count.
    pub(crate) fn finish(mut self) -> Result<u64> {
        self.perf.signal_group(libc::SIGINT);
        let _ = self.perf.wait_with_cpu(Duration::from_secs(10))?;
        let text = std::fs::read_to_string(&self.output).context("reading perf's output")?;
        match parse_perf_count(&text) {
            Some(count) => Ok(count),
            None => bail!("no raw_syscalls:sys_enter count in perf's output: {text:?}"),
        }
    }
}

/// The count from `perf stat -x,` output: `12345,,raw_syscalls:sys_enter,...`.
pub(crate) fn parse_perf_count(text: &str) -> Option<u64> {
    text.lines()
        .filter(|line| line.contains("raw_syscalls:sys_enter"))
        .find_map(|line| line.split(',').next()?.trim().parse().ok())
}

/// Requests served so far, from nginx's `stub_status` page:
/// `Active connections: 2\nserver accepts handled requests\n 10 10 345\nReading: …`.
pub(crate) fn parse_stub_status_requests(text: &str) -> Option<u64> {
    let mut lines = text.lines().skip_while(|line| !line.starts_with("server accepts handled requests"));
    lines.nth(1)?.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_first_field() {
        assert_eq!(parse_schedstat("123456789 2345 67\n"), Some(123_456_789));
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn proc_stat_busy_leaves_out_idle_and_iowait() {
        let text = "cpu  100 5 50 9000 7 3 40 2 0 0\ncpu0 50 2 25 4500 3 1 20 1 0 0\nintr 1\n";
        // (100 + 5 + 50 + 3 + 40 + 2) ticks of 10 ms
        assert_eq!(parse_proc_stat_busy(text, 100), Some(200 * 10_000_000));
        assert_eq!(parse_proc_stat_busy("intr 1\n", 100), None);
        assert_eq!(parse_proc_stat_busy("cpu  1 2 3\n", 100), None, "a short line is refused");
    }

    #[test]
    fn vm_rss() {
        let status = "Name:\tnginx\nVmPeak:\t  20000 kB\nVmRSS:\t    8120 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss_kib(status), Some(8120));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn stub_status() {
        let text = "Active connections: 65 \nserver accepts handled requests\n 130 130 412345 \nReading: 0 Writing: 1 Waiting: 64 \n";
        assert_eq!(parse_stub_status_requests(text), Some(412_345));
        assert_eq!(parse_stub_status_requests("Active connections: 1\n"), None);
    }

    #[test]
    fn perf_count() {
        let text = "# started on Fri Nov 27 13:00:00 2026\n\n84213,,raw_syscalls:sys_enter,2004150233,100.00,,\n";
        assert_eq!(parse_perf_count(text), Some(84_213));
        assert_eq!(parse_perf_count("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n"), None);
    }
}
