//! Batches on their way to control: the telemetry thread puts each one in; the channel thread
//! sends it, keeps it until control acknowledges it, and sends the unacknowledged ones again
//! after a reconnect. Shared by those two threads only (a mutex no worker ever takes).

use std::collections::VecDeque;
use std::sync::Mutex;

use portcullis_contract::telemetry::UNACKED_BATCHES_MAX;

/// The batches control has not acknowledged yet.
#[derive(Debug, Default)]
pub struct Outbox {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// (sequence, encoded batch), oldest first.
    batches: VecDeque<(u64, Vec<u8>)>,
    /// Batches up to this sequence went out on the current connection.
    sent_up_to: u64,
    /// Batches dropped unacknowledged because control stayed away too long.
    dropped: u64,
}

impl Outbox {
    /// Adds a batch; past [`UNACKED_BATCHES_MAX`] the oldest is dropped (and counted).
    pub fn push(&self, sequence: u64, encoded: Vec<u8>) {
        let mut inner = self.lock();
        inner.batches.push_back((sequence, encoded));
        while inner.batches.len() > UNACKED_BATCHES_MAX {
            inner.batches.pop_front();
            inner.dropped += 1;
        }
    }

    /// The batches not sent on this connection yet, marked as sent.
    pub fn take_unsent(&self) -> Vec<(u64, Vec<u8>)> {
        let mut inner = self.lock();
        let after = inner.sent_up_to;
        let unsent: Vec<(u64, Vec<u8>)> =
            inner.batches.iter().filter(|(sequence, _)| *sequence > after).cloned().collect();
        if let Some((last, _)) = unsent.last() {
            inner.sent_up_to = *last;
        }
        unsent
    }

    /// Control committed every batch up to and including `sequence`.
    pub fn acknowledged(&self, sequence: u64) {
        self.lock().batches.retain(|(kept, _)| *kept > sequence);
    }

    /// A new connection: everything unacknowledged goes again.
    pub fn reconnected(&self) {
        self.lock().sent_up_to = 0;
    }

    /// Batches waiting for an acknowledgement, and batches dropped without one.
    pub fn counts(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.batches.len(), inner.dropped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it leaves plain data behind: keep using it.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_go_once_per_connection_until_acknowledged() {
        let outbox = Outbox::default();
        outbox.push(1, vec![1]);
        outbox.push(2, vec![2]);
        assert_eq!(outbox.take_unsent().iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
        assert!(outbox.take_unsent().is_empty());
        outbox.push(3, vec![3]);
        outbox.acknowledged(2);
        assert_eq!(outbox.take_unsent().iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3]);
        outbox.reconnected();
        assert_eq!(outbox.take_unsent().iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3], "resent after a reconnect");
        outbox.acknowledged(3);
        assert_eq!(outbox.counts(), (0, 0));
    }

    #[test]
    fn control_away_too_long_loses_the_oldest() {
        let outbox = Outbox::default();
        for sequence in 1..=(UNACKED_BATCHES_MAX as u64 + 5) {
            outbox.push(sequence, Vec::new());
        }
        assert_eq!(outbox.counts(), (UNACKED_BATCHES_MAX, 5));
        assert_eq!(outbox.take_unsent().first().map(|(s, _)| *s), Some(6));
    }
}
