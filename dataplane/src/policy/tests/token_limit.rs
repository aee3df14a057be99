//! The token limit op: tokens per minute (429) and quota (403) windows, the prompt estimate
//! charged before forwarding, the response's usage charged after it, headers and variables.

use portcullis_contract::program::{Side, TokenLimit, TokenQuotaPeriod};

use super::*;
use crate::policy::state::{EditTarget, TokenUsage};

const NAMES: [&str; 8] =
    ["Retry-After", "retry", "X-Remaining", "remaining", "X-Quota", "quota", "X-Consumed", "consumed"];

fn token_limit(tokens_per_minute: Option<u32>, quota: Option<u32>, estimate: bool) -> TokenLimit {
    TokenLimit {
        tokens_per_minute,
        quota: quota.map(|tokens| (tokens, TokenQuotaPeriod::Daily)),
        estimate_prompt_tokens: estimate,
        retry_after_header: Some(0),
        retry_after_variable: Some(1),
        remaining_tokens_header: Some(2),
        remaining_tokens_variable: Some(3),
        remaining_quota_tokens_header: Some(4),
        remaining_quota_tokens_variable: Some(5),
        tokens_consumed_header: Some(6),
        tokens_consumed_variable: Some(7),
    }
}

fn token_program(limit: TokenLimit) -> Program {
    let mut consts: Vec<Const> = NAMES.iter().map(|name| s(name)).collect();
    let key = consts.len() as u32;
    consts.push(s("tenant"));
    let ops = vec![Op::Site(0), Op::Const(key), Op::TokenLimit { limit: 0 }];
    Program { token_limits: vec![limit], ..program(ops, consts) }
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

/// The fixture's clock (its views' `now`).
fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 10).single().expect("date")
}

fn usage(total: u64) -> Option<TokenUsage> {
    Some(TokenUsage { prompt: total / 2, completion: total - total / 2, total })
}

/// Runs the inbound program, then charges `total` tokens as the response's usage.
fn request(fixture: &Fixture, total: u64) -> (Exit, RequestState) {
    let mut state = RequestState::new();
    let exit = fixture.run(&mut state);
    crate::policy::charge_tokens(&fixture.rate_limits, &fixture.programs, &mut state, usage(total), now(), true);
    (exit, state)
}

#[test]
fn tokens_per_minute_pass_until_spent_then_429_with_retry_after() {
    let fixture = Fixture::new(GET, vec![token_program(token_limit(Some(100), None, false))]);
    let (exit, state) = request(&fixture, 60);
    assert_eq!(exit, Exit::Continue);
    assert_eq!(header(&state, &fixture, "X-Remaining").as_deref(), Some("100"));
    assert_eq!(header(&state, &fixture, "X-Consumed").as_deref(), Some("60"));
    assert_eq!(variable(&state, &fixture, "consumed").as_deref(), Some("60"));
    // 40 left: the next request passes and its usage overshoots (APIM cannot know it before).
    let (exit, state) = request(&fixture, 60);
    assert_eq!(exit, Exit::Continue);
    assert_eq!(variable(&state, &fixture, "remaining").as_deref(), Some("40"));
    let (exit, state) = request(&fixture, 10);
    let Exit::Error(error) = exit else { panic!("the minute's tokens are spent") };
    assert_eq!(error.status(), 429);
    assert_eq!(&*error.last_error.reason, "TokenLimitExceeded");
    let seconds = error.headers.iter().find(|(name, _)| &**name == "Retry-After").map(|(_, v)| v.to_string());
    let seconds = seconds.expect("Retry-After");
    // Overshot, the window frees enough tokens within two minutes (sliding: docs/counters.md).
    assert!((1..=120).contains(&seconds.parse::<u32>().expect("seconds")), "{seconds}");
    assert_eq!(error.body_message(), format!("Token limit is exceeded. Try again in {seconds} seconds."));
    let names: Vec<&str> = error.headers.iter().map(|(name, _)| &**name).collect();
    assert_eq!(names, ["Retry-After", "X-Remaining"]);
    assert_eq!(variable(&state, &fixture, "retry"), Some(seconds));
    // A refused request charges nothing.
    assert!(!state.charges_tokens());
}

#[test]
fn a_spent_quota_answers_403() {
    let fixture = Fixture::new(GET, vec![token_program(token_limit(None, Some(50), false))]);
    let (exit, state) = request(&fixture, 50);
    assert_eq!(exit, Exit::Continue);
    assert_eq!(header(&state, &fixture, "X-Quota").as_deref(), Some("50"));
    assert_eq!(header(&state, &fixture, "X-Remaining"), None);
    let (exit, state) = request(&fixture, 1);
    let Exit::Error(error) = exit else { panic!("the quota is spent") };
    assert_eq!((error.status(), &*error.last_error.reason), (403, "TokenQuotaExceeded"));
    assert!(error.body_message().starts_with("Token quota is exceeded. Try again in "), "{}", error.body_message());
    assert_eq!(variable(&state, &fixture, "quota").as_deref(), Some("0"));
}

#[test]
fn an_estimated_prompt_is_charged_before_forwarding_and_refused_when_it_does_not_fit() {
    crate::llm::tokens::load_tokenizers();
    let mut fixture = Fixture::new(GET, vec![token_program(token_limit(Some(20), None, true))]);
    // 3 + 1 + 1 + 3 = 8 tokens.
    fixture.body = Some(br#"{"messages":[{"role":"user","content":"Hello"}]}"#.to_vec());
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Continue);
    assert_eq!(variable(&state, &fixture, "remaining").as_deref(), Some("12"), "the estimate is charged at once");
    // A second request whose usage never comes (a failed backend): the estimate stays charged.
    let mut second = RequestState::new();
    assert_eq!(fixture.run(&mut second), Exit::Continue);
    assert_eq!(variable(&second, &fixture, "remaining").as_deref(), Some("4"));
    crate::policy::charge_tokens(&fixture.rate_limits, &fixture.programs, &mut second, None, now(), false);
    assert_eq!(variable(&second, &fixture, "consumed").as_deref(), Some("8"));
    // The first one's usage was 10: 2 more than its estimate.
    crate::policy::charge_tokens(&fixture.rate_limits, &fixture.programs, &mut state, usage(10), now(), true);
    // 2 tokens left, the prompt needs 8: refused before the backend.
    let Exit::Error(error) = fixture.run(&mut RequestState::new()) else { panic!("the estimate does not fit") };
    assert_eq!(error.status(), 429);
}

#[test]
fn both_windows_are_checked_and_charged() {
    let fixture = Fixture::new(GET, vec![token_program(token_limit(Some(1_000), Some(30), false))]);
    let (exit, state) = request(&fixture, 30);
    assert_eq!(exit, Exit::Continue);
    assert_eq!(header(&state, &fixture, "X-Remaining").as_deref(), Some("1000"));
    assert_eq!(header(&state, &fixture, "X-Quota").as_deref(), Some("30"));
    let (exit, _) = request(&fixture, 1);
    assert!(matches!(exit, Exit::Error(error) if error.status() == 403), "the quota is spent first");
}
