//! What several fuzz targets (and the seed writer) share: running a program the data plane
//! accepted through its VM, and the context policy documents are compiled in.
//!
//! The verifier exists so that the VM can trust a program without re-checking it per op (stack
//! depths, indices, jump targets). The strongest check of that promise is to run every program
//! that passes it: a panic in the VM on a verified program is a verifier bug (or a VM bug).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use chrono::{TimeZone as _, Utc};
use portcullis_contract::model::{Api, Deployment, Operation, Policies};
use portcullis_contract::program::{Program, Section};
use portcullis_dataplane::counters::LocalCounters;
use portcullis_dataplane::http::{request, response};
use portcullis_dataplane::policy::{
    ConcurrencyLimits, Exit, LoadedProgram, MatchedParam, Programs, RateLimits, RequestState, ResponseView, View,
    resume, run,
};
use portcullis_policy::compile::Options;
use portcullis_policy::scope::{Fragment, Fragments};
use portcullis_policy::{Context, NamedValue, NamedValues, SourceFile};

/// Ops one fuzzed run may execute: far below [`portcullis_contract::program::STEPS_MAX`] so that a
/// loop of a million steps does not turn every input into a slow one; the bound itself is what
/// is tested, not its size.
pub const FUZZ_STEPS_MAX: u32 = 20_000;
/// Slots of the fuzzers' `limit-concurrency` table (the gateway's is 4 MiB; no need here).
const CONCURRENCY_SLOTS: usize = 1024;
/// Times a run that suspends (`forward-request`, a `retry` wait) is resumed before giving up.
const RESUMES_MAX: usize = 4;

/// The request every fuzzed program runs against: a body, a query and a few headers, so the
/// request accessors have something to read.
const REQUEST: &[u8] = b"POST /echo/users/42?x=1&y=two%20three HTTP/1.1\r\nHost: gw.example\r\n\
X-Env: prod\r\nAccept: a\r\nAccept: b\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n";
const REQUEST_BODY: &[u8] = br#"{"name":"x","n":[1,2.5,"3"]}"#;
/// The backend response a resumed program sees.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: b1\r\nContent-Length: 5\r\n\r\n";
const RESPONSE_BODY: &[u8] = b"hello";

/// Loads `program` as the data plane does when a snapshot arrives; `None` when it refuses it.
/// The step limit is lowered to [`FUZZ_STEPS_MAX`] first (keeping it valid).
pub fn load(mut program: Program) -> Option<LoadedProgram> {
    if program.step_limit > FUZZ_STEPS_MAX {
        program.step_limit = FUZZ_STEPS_MAX;
    }
    LoadedProgram::load(0, program).ok()
}

/// Runs a loaded program as `section` over the fixed request, resuming it after every
/// suspension (with the fixed backend response). It must return, never panic.
pub fn run_loaded(program: LoadedProgram, section: Section) {
    let programs = Programs::from_loaded(vec![program]);
    let Some(program) = programs.get(0) else { return };
    // The fixtures are constants of this file: they parse (a failure here is a harness bug).
    let Ok(Some(head)) = request::parse(REQUEST) else { panic!("the fuzz harness's request does not parse") };
    let Ok(Some(response_head)) = response::parse(RESPONSE) else {
        panic!("the fuzz harness's response does not parse")
    };
    let api = Api { operations: Vec::new(), ..portcullis_dataplane::policy::sample::api() };
    let operation: Operation = portcullis_dataplane::policy::sample::operation(Policies::all(0));
    let deployment = Deployment { gateway_id: "gw".into(), region: "east us".into(), service_name: "svc".into() };
    let matched = [MatchedParam { name: "id", value: "42" }];
    let time = Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).single().unwrap_or_default();
    let mut view = View {
        programs: &programs,
        request: &head,
        request_buf: REQUEST,
        remainder_start: 5,
        peer: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        client_certificate: None,
        client_trust: &portcullis_dataplane::tls::NO_CLIENT_TRUST,
        api: &api,
        operation: &operation,
        subscription: None,
        subscription_key: None,
        caller: Default::default(),
        product: None,
        deployment: &deployment,
        matched: &matched,
        request_id: 0x1234,
        timestamp: time,
        now: time,
        request_body: Some(REQUEST_BODY),
        response: None,
        concurrency: concurrency(),
        limits: rate_limits(),
        tracing: true,
        traceparent: None,
    };
    if section != Section::Inbound {
        view.response = Some(ResponseView { head: &response_head, buf: RESPONSE, body: Some(RESPONSE_BODY) });
    }
    let mut state = RequestState::new();
    let mut exit = run(section, program, &view, &mut state);
    for _ in 0..RESUMES_MAX {
        if !matches!(exit, Exit::Forward { .. } | Exit::Wait(_) | Exit::Cache(_)) {
            break;
        }
        view.response = Some(ResponseView { head: &response_head, buf: RESPONSE, body: Some(RESPONSE_BODY) });
        exit = resume(section, program, &view, &mut state);
    }
}

/// The `limit-concurrency` counters every run shares (built once per process).
fn concurrency() -> &'static Arc<ConcurrencyLimits> {
    static LIMITS: OnceLock<Arc<ConcurrencyLimits>> = OnceLock::new();
    LIMITS.get_or_init(|| Arc::new(ConcurrencyLimits::with_store(Box::new(LocalCounters::new(CONCURRENCY_SLOTS)))))
}

/// The `rate-limit` / `quota` counters the fuzzed programs count in, shared by every run.
fn rate_limits() -> &'static Arc<RateLimits> {
    static LIMITS: OnceLock<Arc<RateLimits>> = OnceLock::new();
    LIMITS.get_or_init(RateLimits::new)
}

/// What fuzzed policy documents may refer to: two named values (`backend-url`, and `api-key`, a
/// secret), a fragment (`common`) and a named backend (`b1`), so that documents naming them get
/// past the reference checks.
pub fn policy_context(options: Options) -> Context {
    let mut named_values = NamedValues::default();
    named_values.insert("backend-url", NamedValue { value: "http://127.0.0.1:9/api".into(), secret: false });
    named_values.insert("api-key", NamedValue { value: "s3cr3t".into(), secret: true });
    let mut fragments = Fragments::default();
    let source =
        r#"<fragment><set-header name="X-Fragment" exists-action="override"><value>1</value></set-header></fragment>"#;
    match Fragment::parse(Arc::new(SourceFile::new("fragments/common.xml", source))) {
        Ok(fragment) => fragments.insert("common".into(), fragment),
        Err(errors) => panic!("the fuzz harness's fragment does not parse: {errors:?}"),
    }
    Context { named_values, fragments, backends: ["b1".to_owned()].into(), options, ..Context::default() }
}
