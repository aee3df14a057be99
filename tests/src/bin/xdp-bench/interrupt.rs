//! Ctrl-C and SIGTERM as a failed step: the first one sets a flag that the flood loop checks,
//! so the run returns an error and unwinds, dropping (and so deleting) its namespaces, programs
//! and gateway; a second one, for a run stuck elsewhere, ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler for SIGINT and SIGTERM.
pub(crate) fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that only does async-signal-safe
        // work (an atomic swap, `_exit`).
        unsafe { libc::signal(signal, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

extern "C" fn on_signal(signal: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::Relaxed) {
        // SAFETY: _exit is async-signal-safe and ends the process without unwinding.
        unsafe { libc::_exit(128 + signal) };
    }
}

/// An error once a signal came (the caller returns it, and the run unwinds).
pub(crate) fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted: namespaces and programs removed");
    }
    Ok(())
}
