//! What the benchmark reads from the system: CPU time from `/proc/stat` (machine and per CPU),
//! a thread's own CPU time, interface and stack counters inside a namespace, CPU pinning.

use std::process::Command;

use anyhow::{Context as _, Result};
use portcullis_tests::netns::in_netns;

/// Pins the calling thread to `cpu` (threads it spawns inherit that).
pub(crate) fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer for this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Lets the calling thread run on every CPU again.
pub(crate) fn unpin() {
    // SAFETY: as in `pin_to`, with every CPU the set can hold.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPU time of one `/proc/stat` line, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ticks {
    /// Everything but idle and iowait.
    pub(crate) busy: u64,
    pub(crate) softirq: u64,
    /// user + nice + system (the generator's `BPF_PROG_RUN` loop counts as system).
    pub(crate) process: u64,
}

impl Ticks {
    pub(crate) fn since(self, before: Ticks) -> Ticks {
        Ticks {
            busy: self.busy.saturating_sub(before.busy),
            softirq: self.softirq.saturating_sub(before.softirq),
            process: self.process.saturating_sub(before.process),
        }
    }
}

/// The machine (`None`) or one CPU, from `/proc/stat`.
pub(crate) fn cpu_ticks(cpu: Option<usize>) -> Result<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = cpu.map_or_else(|| "cpu".to_owned(), |cpu| format!("cpu{cpu}"));
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("{name} in /proc/stat"))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    let field = |index: usize| fields.get(index).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    Ok(Ticks {
        busy: (0..8).filter(|i| *i != 3 && *i != 4).map(field).sum(),
        softirq: field(6),
        process: field(0) + field(1) + field(2),
    })
}

pub(crate) fn tick_ns() -> f64 {
    // SAFETY: sysconf has no preconditions.
    1e9 / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU time the calling thread has used, in ns.
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Packets the interface received (XDP-processed frames included), read inside its namespace.
pub(crate) fn rx_packets(ns: &str, interface: &str) -> Result<u64> {
    let dev = in_netns(ns, || std::fs::read_to_string("/proc/thread-self/net/dev"))?;
    let line = dev
        .lines()
        .find(|line| line.trim_start().starts_with(&format!("{interface}:")))
        .context("interface in /proc/net/dev")?;
    let (_, counters) = line.split_once(':').context("/proc/net/dev line")?;
    counters.split_whitespace().nth(1).context("rx packets")?.parse().context("rx packets")
}

/// A counter of the namespace's stack, e.g. `("TcpExt", "SyncookiesSent")` or
/// `("Ip", "InHdrErrors")`, from `/proc/net/netstat` and `/proc/net/snmp`.
pub(crate) fn stack_counter(ns: &str, group: &str, name: &str) -> Result<u64> {
    let text = in_netns(ns, || -> std::io::Result<String> {
        Ok(std::fs::read_to_string("/proc/thread-self/net/netstat")?
            + &std::fs::read_to_string("/proc/thread-self/net/snmp")?)
    })?;
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|line| line.starts_with(&prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if let Some(at) = names.split_whitespace().position(|field| field == name) {
            return values.split_whitespace().nth(at).context("counter value")?.parse().context("counter value");
        }
    }
    anyhow::bail!("no counter {group}:{name}")
}

/// Sends from CPU n by transmit queue n of `interface` (XPS), for each of its `queues`.
pub(crate) fn steer_transmit_queues(ns: &str, interface: &str, queues: usize) -> Result<()> {
    for queue in 0..queues {
        let path = format!("/sys/class/net/{interface}/queues/tx-{queue}/xps_cpus");
        let status = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", &format!("echo {:x} > {path}", 1u64 << queue)])
            .status()?;
        anyhow::ensure!(status.success(), "writing {path} in {ns} failed ({status})");
    }
    Ok(())
}

pub(crate) fn mac(ns: &str, interface: &str) -> Result<[u8; 6]> {
    let output = Command::new("ip").args(["-n", ns, "link", "show", interface]).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let hex =
        text.split("link/ether ").nth(1).and_then(|rest| rest.split_whitespace().next()).context("MAC address")?;
    let mut mac = [0u8; 6];
    for (slot, byte) in mac.iter_mut().zip(hex.split(':')) {
        *slot = u8::from_str_radix(byte, 16)?;
    }
    Ok(mac)
}
