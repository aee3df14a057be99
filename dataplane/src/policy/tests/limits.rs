//! The limit ops: counting, refusals with APIM's errors and headers, variables, conditions
//! (inbound and after the response), quota keys moved once per request, requests without a
//! subscription.

use portcullis_contract::model::{Subscription, SubscriptionScope, SubscriptionState};
use portcullis_contract::program::{Limit, LimitKind, LimitScope, Side};

use super::*;
use crate::policy::state::EditTarget;

/// A limit of `calls` in `period` seconds with the default names.
fn limit(kind: LimitKind, by_key: bool, calls: u32, period_seconds: u32) -> Limit {
    Limit {
        kind,
        by_key,
        calls: Some(calls),
        bandwidth_kb: None,
        period_seconds,
        first_period_start: -62_135_596_800,
        count_after_response: false,
        retry_after_header: Some(0),
        retry_after_variable: Some(1),
        remaining_calls_header: Some(2),
        remaining_calls_variable: Some(3),
        total_calls_header: Some(4),
        remaining_bandwidth_header: None,
        remaining_bandwidth_variable: None,
        scopes: Vec::new(),
    }
}

const NAMES: [&str; 5] = ["Retry-After", "retry", "X-Remaining", "remaining", "X-Total"];

/// A program running `limits` in order, each with `key` (a constant; `None`: null) and
/// `condition` (`None`: null).
fn limit_program(limits: Vec<Limit>, key: Option<&str>, condition: Option<bool>) -> Program {
    let mut consts: Vec<Const> = NAMES.iter().map(|name| s(name)).collect();
    let key_const = consts.len() as u32;
    consts.push(s(key.unwrap_or("")));
    let mut ops = Vec::new();
    for index in 0..limits.len() as u32 {
        ops.push(Op::Site(0));
        ops.extend([Op::Null, Op::Null]);
        ops.push(if key.is_some() { Op::Const(key_const) } else { Op::Null });
        ops.push(condition.map_or(Op::Null, Op::Bool));
        ops.push(Op::Null);
        let at = ops.len() as u32;
        ops.push(Op::Limit { limit: index, resume: at + 1 });
    }
    Program { limits, ..program(ops, consts) }
}

fn header(state: &RequestState, fixture: &Fixture, name: &str) -> Option<String> {
    let programs = &fixture.programs;
    let mut found = None;
    state.fold_edits(EditTarget::Header(Side::Response), name.as_bytes(), false, programs, |value| {
        found = Some(value.resolve(programs).to_owned());
    });
    found
}

fn variable(state: &RequestState, fixture: &Fixture, name: &str) -> Option<String> {
    state.variable(name, &fixture.programs).map(|value| {
        let mut out = String::new();
        value.write_display(&mut out);
        out
    })
}

#[test]
fn a_rate_limit_counts_until_the_limit_then_refuses_with_apims_429() {
    let fixture =
        Fixture::new(GET, vec![limit_program(vec![limit(LimitKind::RateLimit, true, 2, 60)], Some("k"), None)]);
    for remaining in ["1", "0"] {
        let mut state = RequestState::new();
        assert_eq!(fixture.run(&mut state), Exit::Continue);
        assert_eq!(header(&state, &fixture, "X-Remaining").as_deref(), Some(remaining));
        assert_eq!(header(&state, &fixture, "X-Total").as_deref(), Some("2"));
        assert_eq!(variable(&state, &fixture, "remaining").as_deref(), Some(remaining));
    }
    let mut state = RequestState::new();
    let Exit::Error(error) = fixture.run(&mut state) else { panic!("over the limit") };
    assert_eq!(error.status(), 429);
    assert_eq!(&*error.last_error.reason, "RateLimitExceeded");
    assert_eq!(&*error.last_error.message, "Rate limit is exceeded");
    assert_eq!(&*error.last_error.source, "set-header", "the site's policy");
    let seconds = error.headers.iter().find(|(name, _)| &**name == "Retry-After").map(|(_, v)| v.to_string()).unwrap();
    assert_eq!(error.body_message(), format!("Rate limit is exceeded. Try again in {seconds} seconds."));
    let names: Vec<&str> = error.headers.iter().map(|(name, _)| &**name).collect();
    assert_eq!(names, ["Retry-After", "X-Remaining", "X-Total"]);
    assert_eq!(variable(&state, &fixture, "retry"), Some(seconds));
    assert_eq!(variable(&state, &fixture, "remaining").as_deref(), Some("0"));
}

#[test]
fn a_false_condition_checks_without_counting() {
    let fixture =
        Fixture::new(GET, vec![limit_program(vec![limit(LimitKind::RateLimit, true, 1, 60)], Some("k"), Some(false))]);
    for _ in 0..3 {
        assert_eq!(fixture.run(&mut RequestState::new()), Exit::Continue);
    }
}

#[test]
fn per_subscription_limits_skip_requests_without_a_subscription() {
    let fixture = Fixture::new(GET, vec![limit_program(vec![limit(LimitKind::Quota, false, 1, 0)], None, None)]);
    for _ in 0..3 {
        let mut state = RequestState::new();
        assert_eq!(fixture.run(&mut state), Exit::Continue);
        assert_eq!(header(&state, &fixture, "X-Remaining"), None);
    }
}

#[test]
fn per_subscription_limits_count_by_subscription_and_scope() {
    let mut scoped = limit(LimitKind::Quota, false, 100, 0);
    let api = crate::policy::sample::api();
    scoped.scopes = vec![
        LimitScope { api: api.id.clone(), operation: None, calls: Some(1), bandwidth_kb: None, period_seconds: 0 },
        LimitScope { api: "other".into(), operation: None, calls: Some(0), bandwidth_kb: None, period_seconds: 0 },
    ];
    let fixture = Fixture::new(GET, vec![limit_program(vec![scoped], None, None)]);
    let subscription = Subscription::new("sub-1", "one", SubscriptionScope::AllApis, SubscriptionState::Active);
    let matched = [MatchedParam { name: "id", value: "42" }];
    let run = |state: &mut RequestState| {
        let view = View { subscription: Some(&subscription), ..fixture.view(&matched) };
        run(Section::Inbound, fixture.programs.get(0).expect("program"), &view, state)
    };
    let mut state = RequestState::new();
    assert_eq!(run(&mut state), Exit::Continue);
    // The smallest remaining count of the windows that apply (the API's).
    assert_eq!(header(&state, &fixture, "X-Remaining").as_deref(), Some("0"));
    let Exit::Error(error) = run(&mut RequestState::new()) else { panic!("the API's quota is used up") };
    assert_eq!((error.status(), &*error.last_error.reason), (403, "QuotaExceeded"));
    assert_eq!(&*error.last_error.message, "Out of call volume quota. Quota will be replenished in 10675199.02:48:05.");
}

#[test]
fn a_quota_key_moves_once_per_request() {
    let quota = || limit(LimitKind::Quota, true, 2, 0);
    let fixture = Fixture::new(GET, vec![limit_program(vec![quota(), quota(), quota()], Some("k"), None)]);
    for _ in 0..2 {
        assert_eq!(fixture.run(&mut RequestState::new()), Exit::Continue);
    }
    assert!(matches!(fixture.run(&mut RequestState::new()), Exit::Error(error) if error.status() == 403));
}

#[test]
fn a_deferred_condition_counts_after_the_response() {
    let mut deferred = limit(LimitKind::RateLimit, true, 1, 60);
    deferred.count_after_response = true;
    // Limit, then its deferred condition (a constant here) and LimitCommit.
    let build = |counted: bool| {
        let mut program = limit_program(vec![deferred.clone()], Some("k"), None);
        let at = program.ops.len() as u32 - 1;
        program.ops[at as usize] = Op::Limit { limit: 0, resume: at + 3 };
        program.ops.extend([Op::Bool(counted), Op::LimitCommit { limit: 0 }]);
        program
    };
    let fixture = Fixture::new(GET, vec![build(false), build(true)]);
    let matched = [MatchedParam { name: "id", value: "42" }];
    let view = fixture.view(&matched);
    let run_program = |index: u32, state: &mut RequestState| {
        let exit = run(Section::Inbound, fixture.programs.get(index).expect("program"), &view, state);
        crate::policy::after_response(&view, state, Some(0));
        exit
    };
    // A condition that does not hold never counts.
    for _ in 0..3 {
        assert_eq!(run_program(0, &mut RequestState::new()), Exit::Continue);
    }
    let mut state = RequestState::new();
    assert_eq!(run(Section::Inbound, fixture.programs.get(1).expect("program"), &view, &mut state), Exit::Continue);
    assert!(state.counts_after_response(), "checked, not counted yet");
    assert_eq!(run_program(1, &mut RequestState::new()), Exit::Continue, "the first is not counted yet");
    crate::policy::after_response(&view, &mut state, Some(0));
    assert!(!state.counts_after_response());
    assert!(matches!(run_program(1, &mut RequestState::new()), Exit::Error(error) if error.status() == 429));
}

#[test]
fn operands_of_the_wrong_type_are_expression_failures() {
    let mut program = limit_program(vec![limit(LimitKind::RateLimit, true, 1, 60)], Some("k"), None);
    // increment-count: a string.
    let at = program.ops.len() - 2;
    program.ops[at] = Op::Const(0);
    let fixture = Fixture::new(GET, vec![program]);
    let Exit::Error(error) = fixture.run(&mut RequestState::new()) else { panic!("a string count") };
    assert_eq!((error.status(), &*error.last_error.reason), (500, "ExpressionValueEvaluationFailure"));
    assert!(error.last_error.message.contains("increment-count"), "{}", error.last_error.message);
}

#[test]
fn bandwidth_counts_after_the_response_when_the_request_counts() {
    let bandwidth = |counted: bool| {
        let mut quota = limit(LimitKind::Quota, true, 0, 0);
        quota.calls = None;
        quota.bandwidth_kb = Some(1);
        limit_program(vec![quota], Some("kb"), Some(counted))
    };
    let fixture = Fixture::new(GET, vec![bandwidth(false), bandwidth(true)]);
    let matched = [MatchedParam { name: "id", value: "42" }];
    let view = fixture.view(&matched);
    let exchange = |index: u32| {
        let mut state = RequestState::new();
        let exit = run(Section::Inbound, fixture.programs.get(index).expect("program"), &view, &mut state);
        crate::policy::after_response(&view, &mut state, Some(2_000));
        exit
    };
    // A request the condition leaves out moves no bytes.
    for _ in 0..3 {
        assert_eq!(exchange(0), Exit::Continue);
    }
    // The first counted exchange is let in (nothing used yet) and counts 2 KB after its response.
    assert_eq!(exchange(1), Exit::Continue);
    let Exit::Error(error) = exchange(1) else { panic!("out of bandwidth") };
    assert_eq!((error.status(), &*error.last_error.reason), (403, "QuotaExceeded"));
    assert_eq!(&*error.last_error.message, "Out of bandwidth quota. Quota will be replenished in 10675199.02:48:05.");
}
