//! Passive health of one endpoint on one worker: a circuit breaker driven by request outcomes.
//!
//! Closed (traffic flows, consecutive failures counted) → Open after `consecutive-failures`
//! (no traffic for `ejection-ms`) → HalfOpen (one request is let through as a probe) → Closed
//! when the probe succeeds, Open again when it fails. Sans-IO: the caller passes the time.

use std::time::{Duration, Instant};

use portcullis_contract::model::PassiveHealth;

/// Where the circuit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CircuitState {
    /// Traffic flows; `failures` in a row so far.
    Closed { failures: u32 },
    /// Ejected at `since`; no traffic until `until`.
    Open { since: Instant, until: Instant },
    /// Ejected at `since`, now waiting for (or running) one probe, started at `probe`.
    HalfOpen { since: Instant, probe: Option<Instant> },
}

/// One endpoint's breaker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Circuit {
    state: CircuitState,
}

impl Default for Circuit {
    fn default() -> Self {
        Self { state: CircuitState::Closed { failures: 0 } }
    }
}

impl Circuit {
    #[cfg(test)]
    pub(crate) fn state(&self) -> CircuitState {
        self.state
    }

    /// Whether a request may go to this endpoint now. A probe that never reported (its request
    /// was dropped) is given up after one ejection period, so the endpoint cannot stay stuck.
    pub(crate) fn available(&self, now: Instant, health: PassiveHealth) -> bool {
        match self.state {
            CircuitState::Closed { .. } => true,
            CircuitState::Open { until, .. } => now >= until,
            CircuitState::HalfOpen { probe: None, .. } => true,
            CircuitState::HalfOpen { probe: Some(started), .. } => {
                now.saturating_duration_since(started) >= ejection(health)
            }
        }
    }

    /// When the endpoint was ejected, if it is.
    pub(crate) fn ejected_since(&self) -> Option<Instant> {
        match self.state {
            CircuitState::Closed { .. } => None,
            CircuitState::Open { since, .. } | CircuitState::HalfOpen { since, .. } => Some(since),
        }
    }

    /// The endpoint was picked: if it is not closed, this request is its probe.
    pub(crate) fn on_pick(&mut self, now: Instant) {
        match self.state {
            CircuitState::Closed { .. } => {}
            CircuitState::Open { since, .. } | CircuitState::HalfOpen { since, .. } => {
                self.state = CircuitState::HalfOpen { since, probe: Some(now) };
            }
        }
    }

    /// A request got a response head from the endpoint.
    pub(crate) fn on_success(&mut self) {
        self.state = CircuitState::Closed { failures: 0 };
    }

    /// A request failed to connect or lost its connection before a response head.
    pub(crate) fn on_failure(&mut self, now: Instant, health: PassiveHealth) {
        if health.consecutive_failures == 0 {
            return;
        }
        self.state = match self.state {
            CircuitState::Closed { failures } if failures + 1 < health.consecutive_failures => {
                CircuitState::Closed { failures: failures + 1 }
            }
            _ => CircuitState::Open { since: now, until: now + ejection(health) },
        };
    }

    /// A picked request ended without telling anything about the endpoint (the client went
    /// away): a probe slot is freed for the next request.
    pub(crate) fn on_release(&mut self) {
        if let CircuitState::HalfOpen { since, .. } = self.state {
            self.state = CircuitState::HalfOpen { since, probe: None };
        }
    }
}

fn ejection(health: PassiveHealth) -> Duration {
    Duration::from_millis(u64::from(health.ejection_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTH: PassiveHealth = PassiveHealth { consecutive_failures: 3, ejection_ms: 1_000 };

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn closed_open_half_open_closed() {
        let t0 = Instant::now();
        let mut circuit = Circuit::default();
        circuit.on_failure(t0, HEALTH);
        circuit.on_failure(t0, HEALTH);
        assert!(circuit.available(t0, HEALTH), "two failures of three: still closed");
        circuit.on_success();
        circuit.on_failure(t0, HEALTH);
        circuit.on_failure(t0, HEALTH);
        assert_eq!(circuit.state(), CircuitState::Closed { failures: 2 }, "a success resets the count");
        circuit.on_failure(ms(t0, 10), HEALTH);
        assert!(matches!(circuit.state(), CircuitState::Open { .. }));
        assert_eq!(circuit.ejected_since(), Some(ms(t0, 10)));
        assert!(!circuit.available(ms(t0, 500), HEALTH), "ejected");
        assert!(circuit.available(ms(t0, 1_010), HEALTH), "ejection over: one probe may go");
        circuit.on_pick(ms(t0, 1_010));
        assert!(!circuit.available(ms(t0, 1_020), HEALTH), "only one probe at a time");
        circuit.on_success();
        assert_eq!(circuit.state(), CircuitState::Closed { failures: 0 });
        assert!(circuit.available(ms(t0, 1_020), HEALTH));
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let t0 = Instant::now();
        let mut circuit = Circuit::default();
        for _ in 0..3 {
            circuit.on_failure(t0, HEALTH);
        }
        circuit.on_pick(ms(t0, 1_000));
        circuit.on_failure(ms(t0, 1_001), HEALTH);
        assert_eq!(circuit.state(), CircuitState::Open { since: ms(t0, 1_001), until: ms(t0, 2_001) });
        assert!(!circuit.available(ms(t0, 2_000), HEALTH));
        assert!(circuit.available(ms(t0, 2_001), HEALTH));
    }

    #[test]
    fn released_or_lost_probes_free_the_slot() {
        let t0 = Instant::now();
        let mut circuit = Circuit::default();
        for _ in 0..3 {
            circuit.on_failure(t0, HEALTH);
        }
        circuit.on_pick(ms(t0, 1_000));
        circuit.on_release();
        assert!(circuit.available(ms(t0, 1_000), HEALTH));
        circuit.on_pick(ms(t0, 1_000));
        assert!(!circuit.available(ms(t0, 1_999), HEALTH));
        assert!(circuit.available(ms(t0, 2_000), HEALTH), "a probe that never reported is given up");
    }

    #[test]
    fn zero_failures_never_ejects() {
        let t0 = Instant::now();
        let mut circuit = Circuit::default();
        for _ in 0..100 {
            circuit.on_failure(t0, PassiveHealth::OFF);
        }
        assert!(circuit.available(t0, PassiveHealth::OFF));
    }
}
