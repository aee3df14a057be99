//! The `ValidateJwt` op: where it reads the token, what it stores, how it fails.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_contract::jwt::{JwtKey, JwtRule, KeyMaterial, TokenSource};
use portcullis_contract::program::Op;

use super::*;
use crate::policy::value::Value;

const SECRET: &[u8] = b"vm-test-secret";

fn rule(source: TokenSource) -> JwtRule {
    JwtRule {
        policy: "validate-jwt".into(),
        source,
        status: 401,
        message: None,
        require_expiration_time: true,
        require_signed_tokens: true,
        clock_skew_s: 0,
        output_variable: Some("jwt".into()),
        keys: vec![JwtKey { id: None, material: KeyMaterial::Symmetric(SECRET.to_vec()) }],
        openid_urls: Vec::new(),
        audiences: Vec::new(),
        issuers: Vec::new(),
        required_claims: Vec::new(),
        azure: None,
    }
}

fn token(exp: i64) -> String {
    let claims = serde_json::json!({ "sub": "vm", "exp": exp });
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).expect("sign")
}

/// Runs `ops` over `request` with `rule` as the program's only rule.
fn run_rule(request: &str, rule: JwtRule, ops: Vec<Op>, consts: Vec<Const>) -> (Fixture, RequestState, Exit) {
    let mut program = program(ops, consts);
    program.jwt = vec![rule];
    let fixture = Fixture::new(request, vec![program]);
    let mut state = RequestState::new();
    let exit = fixture.run(&mut state);
    (fixture, state, exit)
}

fn request_with(header: &str) -> String {
    format!("GET /echo/users/42 HTTP/1.1\r\nHost: gw.example\r\n{header}\r\n\r\n")
}

// The fixture's clock reads 2024-05-06; these dates are after it.
const FUTURE: i64 = 1_900_000_000;

#[test]
fn a_valid_bearer_token_passes_and_is_stored() {
    let validate = vec![Op::Site(0), Op::ValidateJwt { rule: 0, token_on_stack: false }];
    let header = format!("Authorization: Bearer {}", token(FUTURE));
    let source = TokenSource::Header { name: "Authorization".into(), scheme: Some("Bearer".into()) };
    let (fixture, state, exit) = run_rule(&request_with(&header), rule(source), validate, vec![]);
    assert_eq!(exit, Exit::Continue);
    let stored = state.variable("jwt", &fixture.programs).expect("stored");
    let Value::Jwt(jwt) = stored else { panic!("a Jwt, not {}", stored.type_name()) };
    assert_eq!(jwt.claims["sub"], "vm");
}

#[test]
fn failures_carry_apims_reason_status_and_body() {
    let validate = vec![Op::Site(0), Op::ValidateJwt { rule: 0, token_on_stack: false }];
    let bearer = TokenSource::Header { name: "Authorization".into(), scheme: Some("Bearer".into()) };
    // No header; the wrong scheme is no token either.
    for request in [GET.to_owned(), request_with("Authorization: Basic YTpi")] {
        let (_, _, exit) = run_rule(&request, rule(bearer.clone()), validate.clone(), vec![]);
        let Exit::Error(error) = exit else { panic!("must fail") };
        assert_eq!((error.status(), &*error.last_error.reason), (401, "TokenNotPresent"));
        assert_eq!((&*error.last_error.message, error.body_message()), ("JWT not present.", "JWT not present."));
        assert_eq!(&*error.last_error.source, "set-header");
    }
    // An expired token with the policy's own status and message.
    let mut custom = rule(bearer);
    custom.status = 403;
    custom.message = Some("Go away.".into());
    let header = format!("Authorization: Bearer {}", token(1_000));
    let (_, _, exit) = run_rule(&request_with(&header), custom, validate, vec![]);
    let Exit::Error(error) = exit else { panic!("must fail") };
    assert_eq!((error.status(), &*error.last_error.reason, error.body_message()), (403, "TokenExpired", "Go away."));
}

#[test]
fn token_value_and_query_sources() {
    let on_stack = vec![Op::Site(0), Op::Const(0), Op::ValidateJwt { rule: 0, token_on_stack: true }];
    let (_, _, exit) = run_rule(GET, rule(TokenSource::Value), on_stack, vec![s(&token(FUTURE))]);
    assert_eq!(exit, Exit::Continue);
    let null = vec![Op::Site(0), Op::Null, Op::ValidateJwt { rule: 0, token_on_stack: true }];
    let (_, _, exit) = run_rule(GET, rule(TokenSource::Value), null, vec![]);
    assert!(matches!(exit, Exit::Error(error) if &*error.last_error.reason == "TokenNotPresent"));
    let query = format!("GET /echo/users/42?access_token={} HTTP/1.1\r\nHost: gw.example\r\n\r\n", token(FUTURE));
    let validate = vec![Op::Site(0), Op::ValidateJwt { rule: 0, token_on_stack: false }];
    let (_, _, exit) = run_rule(&query, rule(TokenSource::Query("access_token".into())), validate, vec![]);
    assert_eq!(exit, Exit::Continue);
}
