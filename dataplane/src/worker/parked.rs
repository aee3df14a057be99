//! Parked connections: a worker's idle keep-alive client connections that left their task.
//!
//! A connection quiet for [`crate::proxy::IDLE_PARK_AFTER_MS`] gives up its task and its read
//! buffer and becomes an entry here: its socket (plain, or TLS with its rustls state but no
//! ciphertext buffer), peer address, when it went idle and a waker.
//! One task per worker (the watcher in [`crate::worker`]) waits for three things: a parked socket becoming readable (a
//! request, or the peer closing), the oldest entry reaching the keep-alive idle timeout, and
//! drain. A readable socket leaves the registry and gets a fresh connection task, as if it had
//! just been accepted (a TLS one resumes its session); an expired one is closed (a TLS one with
//! close_notify, as a connection closed from its task).
//!
//! Each entry has its own waker, registered with tokio's reactor for its socket; waking it queues
//! the entry's key, so a wake polls the sockets that became ready and never scans the registry.
//! All entries share the keep-alive timeout, so their deadlines come in the order they went idle:
//! the entries form one list in that order and one timer waits for its head.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::drain::Drain;
use crate::io::maybe_tls::MaybeTls;
use crate::io::{Park, Watched};

/// A worker's parked connections (on its thread only).
pub(crate) struct Parked<S> {
    entries: RefCell<Slab<Entry<S>>>,
    /// The entry that went idle first (the next to expire) and the one that went idle last.
    oldest: Cell<Option<u32>>,
    newest: Cell<Option<u32>>,
    /// Keys whose socket woke, for the watching task.
    ready: Arc<ReadyKeys>,
    /// The watching task's copy of `ready`'s keys (kept, so that a wake allocates nothing).
    scratch: RefCell<Vec<usize>>,
}

/// One parked connection.
struct Entry<S> {
    stream: Watched<MaybeTls<S>>,
    peer: SocketAddr,
    /// When the connection went idle: its keep-alive timeout runs from then.
    idle_since: Instant,
    /// Queues this entry's key in [`ReadyKeys`] when its socket becomes readable.
    waker: Waker,
    /// Neighbours in idle order (`older` is closer to expiring).
    older: Option<u32>,
    newer: Option<u32>,
}

/// Keys of entries whose socket woke, shared with their wakers (which tokio's reactor may call
/// from its driver; on these single-threaded runtimes that is the worker's own thread).
#[derive(Debug, Default)]
struct ReadyKeys {
    keys: Mutex<Vec<usize>>,
    notify: tokio::sync::Notify,
}

/// The waker of one parked entry.
#[derive(Debug)]
struct EntryWaker {
    key: usize,
    ready: Arc<ReadyKeys>,
}

impl Wake for EntryWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.push(self.key);
    }
}

impl ReadyKeys {
    /// Queues `key` and wakes the watching task. A key can be stale (its entry left, or the slot
    /// holds a newer entry): polling that entry once more is harmless.
    fn push(&self, key: usize) {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).push(key);
        self.notify.notify_one();
    }
}

impl<S> Default for Parked<S> {
    fn default() -> Self {
        Self {
            entries: RefCell::new(Slab::new()),
            oldest: Cell::new(None),
            newest: Cell::new(None),
            ready: Arc::default(),
            scratch: RefCell::new(Vec::new()),
        }
    }
}

impl<S> std::fmt::Debug for Parked<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked").field("len", &self.len()).finish()
    }
}

impl<S> Parked<S> {
    /// How many connections are parked.
    pub(crate) fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Returns when a parked socket woke (or a connection parked): then [`Self::wake_ready`].
    pub(crate) async fn woken(&self) {
        self.ready.notify.notified().await;
    }

    /// When the connection that went idle first did, if any is parked.
    pub(crate) fn oldest_idle_since(&self) -> Option<Instant> {
        let oldest = self.oldest.get()?;
        self.entries.borrow().get(oldest as usize).map(|entry| entry.idle_since)
    }

    /// Links the entry at `key` into the idle order: after the last entry that went idle no later
    /// than it (connections park IDLE_PARK_AFTER_MS after going idle, so that is almost always the
    /// newest; the walk is bounded by the entries that went idle within the timer's jitter).
    fn link(&self, entries: &mut Slab<Entry<S>>, key: u32) {
        let idle_since = entries[key as usize].idle_since;
        let mut older = self.newest.get();
        while let Some(candidate) = older {
            let entry = &entries[candidate as usize];
            if entry.idle_since <= idle_since {
                break;
            }
            older = entry.older;
        }
        let newer = match older {
            Some(older) => entries[older as usize].newer.replace(key),
            None => self.oldest.replace(Some(key)),
        };
        match newer {
            Some(newer) => entries[newer as usize].older = Some(key),
            None => self.newest.set(Some(key)),
        }
        let entry = &mut entries[key as usize];
        entry.older = older;
        entry.newer = newer;
    }

    /// Takes the entry at `key` out of the registry and the idle order.
    fn remove(&self, key: usize) -> Option<Entry<S>> {
        let mut entries = self.entries.borrow_mut();
        let entry = entries.try_remove(key)?;
        match entry.older {
            Some(older) => entries[older as usize].newer = entry.newer,
            None => self.oldest.set(entry.newer),
        }
        match entry.newer {
            Some(newer) => entries[newer as usize].older = entry.older,
            None => self.newest.set(entry.older),
        }
        Some(entry)
    }
}

impl<S: Park> Parked<S> {
    /// Parks `stream`, idle since `idle_since`. Gives it back when the worker is draining (drain
    /// closes parked connections at once, and may have done so already) or the reactor refused it.
    pub(crate) fn park(
        &self,
        stream: MaybeTls<S>,
        peer: SocketAddr,
        idle_since: Instant,
        drain: &Drain,
    ) -> Result<(), MaybeTls<S>> {
        if drain.is_draining() {
            return Err(stream);
        }
        let mut entries = self.entries.borrow_mut();
        let vacant = entries.vacant_entry();
        let key = vacant.key();
        let Ok(key32) = u32::try_from(key) else {
            // More than 4 billion parked connections: cannot happen under the per-worker
            // connection limit (a u32); the connection stays in its task.
            return Err(stream);
        };
        let stream = Watched::new(stream)?;
        let waker = Waker::from(Arc::new(EntryWaker { key, ready: Arc::clone(&self.ready) }));
        vacant.insert(Entry { stream, peer, idle_since, waker, older: None, newer: None });
        self.link(&mut entries, key32);
        drop(entries);
        // The watching task polls the new entry once, which registers its waker.
        self.ready.push(key);
        tracing::debug!(%peer, "connection parked");
        Ok(())
    }

    /// Polls the entries whose sockets woke: a readable one leaves for `resume` (a fresh
    /// connection task), a failed one for `close`.
    pub(crate) fn wake_ready(
        &self,
        mut resume: impl FnMut(MaybeTls<S>, SocketAddr, Instant),
        mut close: impl FnMut(MaybeTls<S>),
    ) {
        let mut keys = self.scratch.take();
        std::mem::swap(&mut keys, &mut *self.ready.keys.lock().unwrap_or_else(PoisonError::into_inner));
        for key in keys.drain(..) {
            let readable = {
                let entries = self.entries.borrow();
                let Some(entry) = entries.get(key) else { continue };
                entry.stream.poll_readable(&mut Context::from_waker(&entry.waker))
            };
            let Poll::Ready(readable) = readable else { continue };
            let Some(entry) = self.remove(key) else { continue };
            let Entry { stream, peer, idle_since, .. } = entry;
            let stream = stream.into_stream();
            match readable {
                Ok(()) => {
                    tracing::debug!(%peer, "parked connection woke");
                    resume(stream, peer, idle_since);
                }
                Err(error) => {
                    tracing::debug!(%peer, %error, "parked connection failed");
                    close(stream);
                }
            }
        }
        *self.scratch.borrow_mut() = keys;
    }

    /// Hands `close` the connections idle for `timeout` or longer at `now`.
    pub(crate) fn close_expired(&self, now: Instant, timeout: Duration, mut close: impl FnMut(MaybeTls<S>)) {
        while let Some(oldest) = self.oldest.get() {
            let expired =
                self.entries.borrow().get(oldest as usize).is_some_and(|entry| entry.idle_since + timeout <= now);
            if !expired {
                break;
            }
            if let Some(entry) = self.remove(oldest as usize) {
                tracing::debug!(peer = %entry.peer, "parked connection reached the keep-alive idle timeout");
                close(entry.stream.into_stream());
            }
        }
    }

    /// Hands `close` every parked connection (drain).
    pub(crate) fn close_all(&self, mut close: impl FnMut(MaybeTls<S>)) {
        while let Some(oldest) = self.oldest.get() {
            if let Some(entry) = self.remove(oldest as usize) {
                close(entry.stream.into_stream());
            }
        }
    }
}
