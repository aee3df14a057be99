//! Process metrics of control and the data plane, from `/proc/<pid>`: CPU time, resident
//! memory, open file descriptors, threads and start time.

use std::path::Path;

/// The unit of `/proc/<pid>/stat`'s times: `USER_HZ`, which Linux fixes at 100 for this
/// interface on every architecture we build for (x86_64, aarch64).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
const BYTES_PER_KIB: u64 = 1024;

/// One process at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    pub threads: u64,
    /// When the process started, in Unix seconds.
    pub start_time_seconds: f64,
}

/// Reads `pid`'s statistics; `None` when it does not exist (or `/proc` is not readable).
pub fn read(pid: u32) -> Option<ProcessStats> {
    read_at(&Path::new("/proc").join(pid.to_string()), boot_time_seconds()?)
}

/// As [`read`], from a `/proc/<pid>` directory, with the system's boot time.
pub fn read_at(dir: &Path, boot_time_seconds: u64) -> Option<ProcessStats> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after the last `)`.
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); fields are numbered from 1 in proc(5).
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    let (utime, stime, threads, start_ticks, vsize) = (field(14)?, field(15)?, field(20)?, field(22)?, field(23)?);
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let resident_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let open_fds = std::fs::read_dir(dir.join("fd")).map_or(0, |entries| entries.count() as u64);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / CLOCK_TICKS_PER_SECOND,
        resident_memory_bytes: resident_kib * BYTES_PER_KIB,
        virtual_memory_bytes: vsize,
        open_fds,
        threads,
        start_time_seconds: boot_time_seconds as f64 + start_ticks as f64 / CLOCK_TICKS_PER_SECOND,
    })
}

/// The `btime` line of `/proc/stat`: when the system booted, in Unix seconds.
fn boot_time_seconds() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|line| line.strip_prefix("btime "))?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let stats = read(std::process::id()).unwrap();
        assert!(stats.resident_memory_bytes > 0);
        assert!(stats.open_fds >= 3, "{stats:?}");
        assert!(stats.threads >= 1);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(stats.start_time_seconds <= now + 1.0 && stats.start_time_seconds > now - 3600.0, "{stats:?}");
    }

    #[test]
    fn a_missing_process_reads_as_none() {
        assert!(read_at(Path::new("/nonexistent/proc/1"), 0).is_none());
    }
}
