//! The processes this driver starts: each pinned to a CPU, in its own process group, stopped by
//! PID (and group) when done and killed on every way out (error, panic, Ctrl-C); and the
//! driver's own preparation: pinned to cpu0, open-file limit raised, SIGINT/SIGTERM caught.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// The CPU of the gateway under test.
pub(crate) const GATEWAY_CPU: usize = 1;
/// The CPU of the origin, the load generator and this driver.
pub(crate) const CLIENT_CPU: usize = 0;
/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Process groups started and not yet stopped.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Set by SIGINT or SIGTERM.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Pins this driver to cpu0, raises its open-file limit to the hard limit (children inherit
/// both) and turns SIGINT/SIGTERM into a flag the run checks between and during steps.
pub(crate) fn prepare() -> Result<()> {
    pin_current_thread(CLIENT_CPU)?;
    let flag = INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(flag)).context("installing a signal handler")?;
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write one rlimit struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    Ok(())
}

/// The open-file limit in force (after [`prepare`]).
pub(crate) fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur
}

/// True once SIGINT or SIGTERM arrived.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.get().is_some_and(|flag| flag.load(Ordering::Relaxed))
}

/// An error once interrupted, so `?` unwinds the run (and every [`Proc`] is dropped, i.e. killed).
pub(crate) fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps in small steps, returning early (with an error) when interrupted.
pub(crate) fn sleep(duration: Duration) -> Result<()> {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        check_interrupted()?;
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
    }
    check_interrupted()
}

fn pin_current_thread(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer; affects this thread only.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result != 0 {
        bail!("cannot pin to cpu{cpu}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// A started process, leader of its own process group.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) pid: i32,
    child: Child,
    reaped: bool,
}

/// Starts `command` pinned to `cpu`, in a new process group.
pub(crate) fn spawn(name: &str, command: &mut Command, cpu: usize) -> Result<Proc> {
    command.process_group(0).stdin(std::process::Stdio::null());
    // SAFETY: only sched_setaffinity (async-signal-safe) runs between fork and exec, on a stack value.
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut groups = GROUPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let child = command.spawn().with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
    let pid = child.id() as i32;
    groups.push(pid);
    Ok(Proc { name: name.to_owned(), pid, child, reaped: false })
}

impl Proc {
    /// Still running (not exited)?
    pub(crate) fn running(&mut self) -> bool {
        !self.reaped && matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit on its own (a load generator), returning whether it
    /// succeeded and the CPU time it used (user + system, from `wait4`'s rusage), in ns.
    /// Kills it when `timeout` passes or the run is interrupted.
    pub(crate) fn wait_with_cpu(&mut self, timeout: Duration) -> Result<(bool, u64)> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut status = 0;
            // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 on our own child, writing into two values we own.
            let reaped = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
            if reaped == self.pid {
                self.reaped = true;
                forget_group(self.pid);
                let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
                let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
                return Ok((success, ns(usage.ru_utime) + ns(usage.ru_stime)));
            }
            if reaped < 0 {
                bail!("wait4({}) failed: {}", self.name, std::io::Error::last_os_error());
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("{} did not finish within {timeout:?}", self.name);
            }
            check_interrupted()?;
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` to the whole process group.
    pub(crate) fn signal_group(&self, signal: i32) {
        if !self.reaped {
            // SAFETY: kill(2) on the process group we created; no memory is involved.
            unsafe { libc::kill(-self.pid, signal) };
        }
    }

    /// SIGTERM to the group, SIGKILL after a grace period; waits for the leader.
    pub(crate) fn stop(&mut self) {
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    fn kill(&mut self) {
        self.signal_group(libc::SIGKILL);
        if !self.reaped {
            let _ = self.child.wait();
            self.reaped = true;
        }
        forget_group(self.pid);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Registers a process group we did not spawn ourselves but must not leave behind (the data
/// plane that `portcullis up` starts in its own group).
pub(crate) fn adopt_group(pgid: i32) {
    GROUPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(pgid);
}

/// SIGKILLs an adopted group and forgets it.
pub(crate) fn kill_group(pgid: i32) {
    // SAFETY: kill(2) on a process group we registered; no memory is involved.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    forget_group(pgid);
}

fn forget_group(pgid: i32) {
    GROUPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|&group| group != pgid);
}

/// Kills every process group still registered (the last line of defence on the way out).
pub(crate) fn stop_all() {
    let groups = std::mem::take(&mut *GROUPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    for pgid in groups {
        // SAFETY: kill(2) on a process group we created; no memory is involved.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}
