//! Selection: distributions, exclusions, health and panic mode, with an injected clock.

use std::time::Duration;

use portcullis_contract::model::{PassiveHealth, PoolSettings};

use super::*;
use crate::snapshot::resolved::ResolvedEndpoint;
use crate::upstream::circuit::CircuitState;

fn backend(algorithm: LoadBalancing, weights: &[u32]) -> ResolvedBackend {
    ResolvedBackend {
        id: "b".into(),
        base_path: String::new(),
        authority: "b".into(),
        load_balancing: algorithm,
        endpoints: weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                let addr = format!("127.0.0.1:{}", 9000 + i).parse().ok();
                ResolvedEndpoint::new(addr, weight, format!("e{i}"), None)
            })
            .collect(),
        pool: PoolSettings::default(),
        passive: PassiveHealth { consecutive_failures: 2, ejection_ms: 1_000 },
        active: None,
        tls: None,
    }
}

fn counts(backend: &ResolvedBackend, state: &mut BalanceState, picks: usize, now: Instant) -> Vec<usize> {
    let mut counts = vec![0; backend.endpoints.len()];
    for _ in 0..picks {
        counts[state.pick(backend, &[], now).unwrap()] += 1;
    }
    counts
}

#[test]
fn round_robin_alternates() {
    let backend = backend(LoadBalancing::RoundRobin, &[1, 1, 1]);
    let mut state = BalanceState::new(&backend);
    let now = Instant::now();
    let order: Vec<usize> = (0..6).map(|_| state.pick(&backend, &[], now).unwrap()).collect();
    assert_eq!(order, [0, 1, 2, 0, 1, 2]);
}

#[test]
fn smooth_weighted_round_robin_follows_weights_and_interleaves() {
    let backend = backend(LoadBalancing::Weighted, &[5, 1, 1]);
    let mut state = BalanceState::new(&backend);
    let now = Instant::now();
    let order: Vec<usize> = (0..7).map(|_| state.pick(&backend, &[], now).unwrap()).collect();
    // nginx's documented sequence for weights 5, 1, 1: a a b a c a a.
    assert_eq!(order, [0, 0, 1, 0, 2, 0, 0]);
    let two = self::backend(LoadBalancing::Weighted, &[3, 1]);
    let mut state = BalanceState::new(&two);
    assert_eq!(counts(&two, &mut state, 4_000, now), [3_000, 1_000]);
}

#[test]
fn least_requests_picks_the_idle_endpoint() {
    let backend = backend(LoadBalancing::LeastRequests, &[1, 1, 1]);
    let mut state = BalanceState::new(&backend);
    let now = Instant::now();
    let first = state.pick(&backend, &[], now).unwrap();
    let busy_a = state.in_flight(first);
    let second = state.pick(&backend, &[], now).unwrap();
    let busy_b = state.in_flight(second);
    let third = state.pick(&backend, &[], now).unwrap();
    assert_ne!(first, second);
    assert_ne!(third, first);
    assert_ne!(third, second, "the one endpoint without a request in flight");
    let _busy_c = state.in_flight(third);
    let _more = state.in_flight(first);
    drop(busy_b);
    assert_eq!(state.pick(&backend, &[], now), Some(second), "its request finished: now the least loaded");
    drop(busy_a);
    // Equal loads rotate rather than always taking the first.
    let backend2 = self::backend(LoadBalancing::LeastRequests, &[1, 1]);
    let mut idle = BalanceState::new(&backend2);
    assert_eq!(counts(&backend2, &mut idle, 10, now), [5, 5]);
}

#[test]
fn tried_endpoints_are_skipped() {
    let backend = backend(LoadBalancing::RoundRobin, &[1, 1]);
    let mut state = BalanceState::new(&backend);
    let now = Instant::now();
    assert_eq!(state.pick(&backend, &[0], now), Some(1));
    assert_eq!(state.pick(&backend, &[1], now), Some(0));
    assert_eq!(state.pick(&backend, &[0, 1], now), None);
}

#[test]
fn ejected_endpoints_get_no_traffic_until_their_probe() {
    let backend = backend(LoadBalancing::RoundRobin, &[1, 1]);
    let mut state = BalanceState::new(&backend);
    let t0 = Instant::now();
    state.report(&backend, 0, Outcome::Failure, t0);
    state.report(&backend, 0, Outcome::Failure, t0);
    assert!(matches!(state.circuit(0).state(), CircuitState::Open { .. }));
    assert_eq!(backend.endpoints[0].ejected_workers(), 1, "counted for the status report");
    assert_eq!(counts(&backend, &mut state, 10, t0 + Duration::from_millis(500)), [0, 10]);
    // After the ejection, endpoint 0 gets exactly one probe until it reports.
    let later = t0 + Duration::from_millis(1_000);
    assert_eq!(counts(&backend, &mut state, 10, later), [1, 9]);
    state.report(&backend, 0, Outcome::Success, later);
    assert_eq!(backend.endpoints[0].ejected_workers(), 0);
    assert_eq!(counts(&backend, &mut state, 10, later), [5, 5]);
}

#[test]
fn active_health_and_unresolved_endpoints_are_skipped() {
    let mut backend = backend(LoadBalancing::Weighted, &[1, 1, 1]);
    backend.endpoints[1].addr = None;
    backend.endpoints[2].set_healthy(false);
    let mut state = BalanceState::new(&backend);
    assert_eq!(counts(&backend, &mut state, 6, Instant::now()), [6, 0, 0]);
}

#[test]
fn panic_mode_picks_the_endpoint_ejected_longest_ago() {
    let backend = backend(LoadBalancing::RoundRobin, &[1, 1]);
    let mut state = BalanceState::new(&backend);
    let t0 = Instant::now();
    for (endpoint, at) in [(1, 0), (0, 100)] {
        state.report(&backend, endpoint, Outcome::Failure, t0 + Duration::from_millis(at));
        state.report(&backend, endpoint, Outcome::Failure, t0 + Duration::from_millis(at));
    }
    assert_eq!(state.pick(&backend, &[], t0 + Duration::from_millis(200)), Some(1));
    // The panic pick is a probe: a success closes its circuit.
    state.report(&backend, 1, Outcome::Success, t0 + Duration::from_millis(200));
    assert_eq!(state.circuit(1).state(), CircuitState::Closed { failures: 0 });
}

#[test]
fn a_reload_keeps_the_circuits_of_endpoints_that_stay() {
    let old = backend(LoadBalancing::RoundRobin, &[1, 1]);
    let mut state = BalanceState::new(&old);
    let t0 = Instant::now();
    state.report(&old, 1, Outcome::Failure, t0);
    state.report(&old, 1, Outcome::Failure, t0);
    // The new config drops endpoint 0 and adds another: 127.0.0.1:9001 keeps its open circuit.
    let mut new = backend(LoadBalancing::RoundRobin, &[1, 1]);
    new.endpoints.swap(0, 1);
    new.endpoints[1] = ResolvedEndpoint::new("127.0.0.1:9100".parse().ok(), 1, "e9".into(), None);
    let carried = BalanceState::carried_over(&new, &[state]);
    assert!(matches!(carried.circuit(0).state(), CircuitState::Open { .. }));
    assert_eq!(carried.circuit(1).state(), CircuitState::Closed { failures: 0 });
    assert_eq!(new.endpoints[0].ejected_workers(), 1);
    // Another backend id starts afresh.
    let mut other = backend(LoadBalancing::RoundRobin, &[1, 1]);
    other.id = "other".into();
    let fresh = BalanceState::carried_over(&other, &[carried]);
    assert_eq!(fresh.circuit(1).state(), CircuitState::Closed { failures: 0 });
}
