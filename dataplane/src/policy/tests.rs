//! Tests of the policy VM on hand-built programs over a parsed request.

mod builtins;
mod cache;
mod content_safety;
mod expressions;
mod jwt;
mod limits;
mod liquid;
mod lists;
mod ops;
mod outbound;
mod token_limit;
mod users;
mod validation;

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{TimeZone as _, Utc};
use portcullis_contract::model::{Api, Deployment, Operation, Policies};
use portcullis_contract::program::{self, Const, Op, Program, ScopeKind, Section, Site};

use super::*;
use crate::http::request::{self, RequestHead};

/// A program with one site (`policy`) and enough locals and steps.
pub(super) fn program(ops: Vec<Op>, consts: Vec<Const>) -> Program {
    let max_stack = program::stack_depth_max(&ops).expect("well-formed ops") as u16;
    Program {
        ops,
        consts,
        locals: 4,
        max_stack,
        step_limit: 10_000,
        sites: vec![Site {
            policy: "set-header".into(),
            scope: ScopeKind::Api,
            section: Section::Inbound,
            path: "set-header[1]".into(),
            policy_id: Some("p1".into()),
            location: "api.xml:3:5".into(),
        }],
        ip_filters: Vec::new(),
        cors: Vec::new(),
        client_certificate_checks: Vec::new(),
        limits: Vec::new(),
        jwt: Vec::new(),
        token_limits: Vec::new(),
        content_safety: Vec::new(),
        content_validations: Vec::new(),
    }
}

pub(super) fn s(text: &str) -> Const {
    Const::Str(text.into())
}

/// Everything a view borrows.
pub(super) struct Fixture {
    pub(super) programs: Programs,
    pub(super) api: Api,
    pub(super) operation: Operation,
    pub(super) deployment: Deployment,
    pub(super) buf: Vec<u8>,
    pub(super) head: RequestHead,
    pub(super) limits: Arc<ConcurrencyLimits>,
    pub(super) rate_limits: Arc<crate::policy::RateLimits>,
    pub(super) peer: IpAddr,
    pub(super) body: Option<Vec<u8>>,
    pub(super) client_certificate: Option<crate::tls::ClientCertificate>,
    pub(super) client_trust: crate::tls::ClientTrust,
}

impl Fixture {
    pub(super) fn new(request: &str, programs: Vec<Program>) -> Self {
        let buf = request.as_bytes().to_vec();
        let head = request::parse(&buf).expect("valid").expect("complete");
        let loaded = programs
            .into_iter()
            .enumerate()
            .map(|(index, program)| LoadedProgram::load(index as u32, program).expect("loads"))
            .collect();
        Self {
            programs: Programs::from_loaded(loaded),
            api: crate::policy::sample::api(),
            operation: crate::policy::sample::operation(Policies::all(0)),
            deployment: Deployment { gateway_id: "gw".into(), region: "east us".into(), service_name: "svc".into() },
            buf,
            head,
            limits: ConcurrencyLimits::new(),
            rate_limits: Arc::new(crate::policy::RateLimits::with_slots(1024, 1024)),
            peer: "10.1.2.3".parse().expect("ip"),
            body: None,
            client_certificate: None,
            client_trust: crate::tls::ClientTrust::default(),
        }
    }

    pub(super) fn view<'a>(&'a self, matched: &'a [MatchedParam<'a>]) -> View<'a> {
        View {
            programs: &self.programs,
            request: &self.head,
            request_buf: &self.buf,
            remainder_start: 5,
            peer: self.peer,
            client_certificate: self.client_certificate.as_ref(),
            client_trust: &self.client_trust,
            api: &self.api,
            operation: &self.operation,
            subscription: None,
            subscription_key: None,
            caller: Default::default(),
            product: None,
            deployment: &self.deployment,
            matched,
            request_id: 0x1234,
            timestamp: Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).single().expect("date"),
            now: Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 10).single().expect("date"),
            request_body: self.body.as_deref(),
            response: None,
            concurrency: &self.limits,
            limits: &self.rate_limits,
            tracing: false,
            traceparent: None,
        }
    }

    /// Runs program 0 as the inbound section.
    pub(super) fn run(&self, state: &mut RequestState) -> Exit {
        let matched = [MatchedParam { name: "id", value: "42" }];
        let view = self.view(&matched);
        run(Section::Inbound, self.programs.get(0).expect("program"), &view, state)
    }
}

pub(super) const GET: &str =
    "GET /echo/users/42?x=1&y=two HTTP/1.1\r\nHost: gw.example\r\nX-Env: prod\r\nAccept: a\r\nAccept: b\r\n\r\n";

/// Runs `ops` and returns variable `result`.
pub(super) fn eval(ops: Vec<Op>, consts: Vec<Const>) -> Result<String, Box<PolicyError>> {
    eval_with(|_| {}, ops, consts)
}

/// As [`eval`], on a fixture `prepare` adjusts first.
pub(super) fn eval_with(
    prepare: impl FnOnce(&mut Fixture),
    ops: Vec<Op>,
    consts: Vec<Const>,
) -> Result<String, Box<PolicyError>> {
    let mut consts = consts;
    let name = consts.len() as u32;
    consts.push(s("result"));
    let mut ops = ops;
    ops.push(Op::SetVariable { name });
    let mut fixture = Fixture::new(GET, vec![program(ops, consts)]);
    prepare(&mut fixture);
    let mut state = RequestState::new();
    match fixture.run(&mut state) {
        Exit::Continue => {}
        Exit::Error(error) => return Err(error),
        other => panic!("unexpected exit {other:?}"),
    }
    let value = state.variable("result", &fixture.programs).expect("result set");
    let mut out = String::new();
    match value {
        value::Value::Null => out.push_str("null"),
        value::Value::Str(text) => out.push_str(text.as_str()),
        other => {
            out.push_str(other.type_name());
            out.push(':');
            other.write_display(&mut out);
        }
    }
    Ok(out)
}

#[test]
fn loading_verifies_and_compiles_regexes() {
    let bad_regex =
        program(vec![Op::Const(0), Op::Pop], vec![Const::Regex { pattern: "(".into(), ignore_case: false }]);
    assert!(matches!(LoadedProgram::load(0, bad_regex), Err(LoadError::Regex { .. })));
    let unverified = Program { max_stack: 0, ..program(vec![Op::Null, Op::Pop], vec![]) };
    assert!(matches!(LoadedProgram::load(0, unverified), Err(LoadError::Verify { .. })));
    let body = LoadedProgram::load(
        0,
        program(
            vec![
                Op::Context,
                Op::Prop(portcullis_contract::program::Prop::Response),
                Op::Prop(portcullis_contract::program::Prop::Body),
                Op::Pop,
            ],
            vec![],
        ),
    )
    .expect("loads");
    assert!(body.bodies().reads_response && !body.bodies().reads_request);
    assert!(LoadedProgram::load(0, Program::empty()).expect("loads").is_empty());
}

#[test]
fn programs_that_may_send_the_request_again_ask_for_its_body_buffered() {
    let forward = |follow_redirects| Op::ForwardRequest {
        timeout_ms: 1000,
        follow_redirects,
        buffer_response: true,
        fail_on_error_status: false,
    };
    let replays = |ops: Vec<Op>| LoadedProgram::load(0, program(ops, vec![])).expect("loads").bodies().replays_request;
    // As the compiler lays out <retry>: init, body, condition, exit jump, RetryNext back to the body.
    let retry = |body: Vec<Op>| {
        let end = body.len() as u32 + 4;
        let mut ops = vec![Op::RetryInit(0)];
        ops.extend(body);
        ops.extend([
            Op::Bool(true),
            Op::JumpIfFalse(end),
            Op::RetryNext {
                local: 0,
                count: 2,
                interval_ms: 0,
                max_interval_ms: 0,
                delta_ms: 0,
                first_fast_retry: false,
                target: 1,
            },
        ]);
        ops
    };
    assert!(!replays(vec![forward(false)]));
    assert!(replays(vec![forward(true)]), "follow-redirects may send the body to the redirect's target");
    assert!(replays(retry(vec![forward(false)])), "retry around forward-request");
    let mut after = retry(vec![Op::Null, Op::Pop]);
    after.push(forward(false));
    assert!(!replays(after), "a retry before forward-request sends it once");
    let mut before = vec![forward(false)];
    let mut looped = retry(vec![Op::Null, Op::Pop]);
    for op in &mut looped {
        if let Op::JumpIfFalse(target) | Op::RetryNext { target, .. } = op {
            *target += 1;
        }
    }
    before.extend(looped);
    assert!(!replays(before), "a retry after forward-request sends it once");
}
