//! The draining signal: set once on SIGTERM/SIGINT, seen by every worker and connection.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Shared between the main thread (which starts draining) and the workers.
#[derive(Debug)]
pub struct Drain {
    draining: AtomicBool,
    signal: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// Not draining.
    pub fn new() -> Self {
        Self { draining: AtomicBool::new(false), signal: watch::Sender::new(false) }
    }

    /// Starts draining: workers stop accepting, idle connections close, busy ones close after
    /// their current response.
    pub fn start(&self) {
        self.draining.store(true, Ordering::Release);
        self.signal.send_replace(true);
    }

    /// Whether draining has started (cheap: one atomic load, checked per request).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// A receiver for [`signalled`].
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.signal.subscribe()
    }
}

/// Resolves once draining has started (never, if the sender is gone).
pub(crate) async fn signalled(receiver: &mut watch::Receiver<bool>) {
    if receiver.wait_for(|&draining| draining).await.is_err() {
        std::future::pending::<()>().await;
    }
}
