//! Endpoint selection on one worker: round robin, smooth weighted round robin (nginx) and
//! least outstanding requests, skipping endpoints that are ejected (passive health), failing
//! active checks, unresolved or already tried for this request.
//!
//! If no endpoint is eligible, the request goes to the endpoint ejected longest ago anyway
//! (panic mode, as Envoy's): a wrong health signal then costs nothing, and a backend that is
//! really down answers 502 as it would without health checks. Sans-IO: the caller passes the time.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use portcullis_contract::model::LoadBalancing;

use super::circuit::Circuit;
use crate::snapshot::resolved::ResolvedBackend;

/// One backend's selection state on one worker.
#[derive(Debug)]
pub(crate) struct BalanceState {
    /// The backend's id and endpoint addresses, to carry circuits over a reload.
    id: String,
    addrs: Vec<Option<std::net::SocketAddr>>,
    /// Where round robin (and least-requests' tie-break) starts next.
    cursor: usize,
    /// Smooth weighted round robin's current weights.
    current: Vec<i64>,
    /// Requests in flight per endpoint (shared with their [`InFlight`] guards).
    outstanding: Rc<[Cell<u32>]>,
    circuits: Vec<Circuit>,
}

/// Counts one request against its endpoint until dropped (least-requests reads the count).
#[derive(Debug)]
pub(crate) struct InFlight {
    outstanding: Rc<[Cell<u32>]>,
    endpoint: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(count) = self.outstanding.get(self.endpoint) {
            count.set(count.get().saturating_sub(1));
        }
    }
}

/// What a finished attempt says about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response head arrived.
    Success,
    /// Connect failed, or the connection failed before a response head.
    Failure,
    /// Nothing learned (the client went away, a policy failed).
    Released,
}

impl BalanceState {
    /// Fresh state for `backend`: every circuit closed.
    pub(crate) fn new(backend: &ResolvedBackend) -> Self {
        let endpoints = backend.endpoints.len();
        Self {
            id: backend.id.clone(),
            addrs: backend.endpoints.iter().map(|endpoint| endpoint.addr).collect(),
            cursor: 0,
            current: vec![0; endpoints],
            outstanding: (0..endpoints).map(|_| Cell::new(0)).collect(),
            circuits: vec![Circuit::default(); endpoints],
        }
    }

    /// State for `backend` of a new snapshot that keeps the circuits of the endpoints `previous`
    /// states had (same named backend, same address), so a reload does not readmit ejected
    /// endpoints before their probe. Counters and cursors start afresh.
    pub(crate) fn carried_over(backend: &ResolvedBackend, previous: &[BalanceState]) -> Self {
        let mut state = Self::new(backend);
        let Some(old) = previous.iter().find(|old| !backend.id.is_empty() && old.id == backend.id) else {
            return state;
        };
        for (index, endpoint) in backend.endpoints.iter().enumerate() {
            let Some(position) = old.addrs.iter().position(|addr| addr.is_some() && *addr == endpoint.addr) else {
                continue;
            };
            state.circuits[index] = old.circuits[position];
            if state.circuits[index].ejected_since().is_some() {
                endpoint.count_ejection(true);
            }
        }
        state
    }

    /// Picks an endpoint of `backend` other than those in `tried`, or `None` when every
    /// resolved endpoint has been tried.
    pub(crate) fn pick(&mut self, backend: &ResolvedBackend, tried: &[usize], now: Instant) -> Option<usize> {
        let usable = |i: usize| backend.endpoints.get(i).is_some_and(|e| e.addr.is_some()) && !tried.contains(&i);
        let circuits = &self.circuits;
        let eligible = |i: usize| {
            usable(i)
                && backend.endpoints[i].healthy()
                && circuits.get(i).is_some_and(|c| c.available(now, backend.passive))
        };
        let picked = match select(&mut self.cursor, &mut self.current, &self.outstanding, backend, eligible) {
            Some(picked) => picked,
            // Panic mode: the endpoint ejected longest ago (never-ejected ones, failing active
            // checks only, come first).
            None => {
                (0..backend.endpoints.len()).filter(|&i| usable(i)).min_by_key(|&i| self.circuits[i].ejected_since())?
            }
        };
        self.circuits[picked].on_pick(now);
        Some(picked)
    }

    /// Counts a request on `endpoint` until the guard is dropped.
    pub(crate) fn in_flight(&self, endpoint: usize) -> InFlight {
        if let Some(count) = self.outstanding.get(endpoint) {
            count.set(count.get() + 1);
        }
        InFlight { outstanding: Rc::clone(&self.outstanding), endpoint }
    }

    /// Records what the attempt on `endpoint` said about it.
    pub(crate) fn report(&mut self, backend: &ResolvedBackend, endpoint: usize, outcome: Outcome, now: Instant) {
        let Some(circuit) = self.circuits.get_mut(endpoint) else { return };
        let was_ejected = circuit.ejected_since().is_some();
        match outcome {
            Outcome::Success => circuit.on_success(),
            Outcome::Failure => circuit.on_failure(now, backend.passive),
            Outcome::Released => circuit.on_release(),
        }
        let ejected = circuit.ejected_since().is_some();
        if ejected != was_ejected {
            if let Some(resolved) = backend.endpoints.get(endpoint) {
                resolved.count_ejection(ejected);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn circuit(&self, endpoint: usize) -> Circuit {
        self.circuits[endpoint]
    }
}

/// The algorithm over the eligible endpoints.
fn select(
    cursor: &mut usize,
    current: &mut [i64],
    outstanding: &[Cell<u32>],
    backend: &ResolvedBackend,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let count = backend.endpoints.len();
    match backend.load_balancing {
        LoadBalancing::RoundRobin => {
            let picked = (0..count).map(|k| (*cursor + k) % count).find(|&i| eligible(i))?;
            *cursor = (picked + 1) % count;
            Some(picked)
        }
        LoadBalancing::Weighted => {
            let mut total = 0i64;
            let mut best: Option<usize> = None;
            for i in (0..count).filter(|&i| eligible(i)) {
                let weight = i64::from(backend.endpoints[i].weight);
                current[i] += weight;
                total += weight;
                if best.is_none_or(|b| current[i] > current[b]) {
                    best = Some(i);
                }
            }
            let best = best?;
            current[best] -= total;
            Some(best)
        }
        LoadBalancing::LeastRequests => {
            let picked = (0..count)
                .map(|k| (*cursor + k) % count)
                .filter(|&i| eligible(i))
                .min_by_key(|&i| outstanding[i].get())?;
            // Ties rotate, so idle endpoints share the load instead of the first taking it all.
            *cursor = (picked + 1) % count;
            Some(picked)
        }
    }
}

#[cfg(test)]
mod tests;
