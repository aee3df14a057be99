//! Ctrl-C and SIGTERM as a failed step: the first one sets a flag that the flood loop checks,
//! so the run returns an error and unwinds, dropping (and so deleting) its namespaces, programs
//! and gateway; a second one, for a run stuck elsewhere, ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, Result, bail};

/// Set by the first SIGINT or SIGTERM.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the handlers for SIGINT and SIGTERM.
pub(crate) fn install() -> Result<()> {
    let flag = INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The exit first: it acts only once the flag is set, i.e. on the second signal.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(flag))
            .context("installing a signal handler")?;
        signal_hook::flag::register(signal, Arc::clone(flag)).context("installing a signal handler")?;
    }
    Ok(())
}

/// An error once a signal came (the caller returns it, and the run unwinds).
pub(crate) fn check() -> Result<()> {
    if INTERRUPTED.get().is_some_and(|flag| flag.load(Ordering::Relaxed)) {
        bail!("interrupted: namespaces and programs removed");
    }
    Ok(())
}
