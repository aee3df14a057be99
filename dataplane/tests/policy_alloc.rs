//! The policy VM's hot path allocates nothing once warm: a typical inbound section (check-header,
//! three literal set-header, rewrite-uri with a literal template, a choose on a header) runs,
//! and its forwarded head is written, with zero heap allocations on a reused request state.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test set-up fails the test by panicking

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{TimeZone as _, Utc};
use portcullis_contract::model::{Deployment, Policies};
use portcullis_contract::program::{
    self, Builtin, Const, ExistsAction, Op, Program, Prop, ScopeKind, Section, Side, Site,
};
use portcullis_dataplane::http::forward::Forwarding;
use portcullis_dataplane::http::request;
use portcullis_dataplane::policy::{
    self, ConcurrencyLimits, Exit, LoadedProgram, MatchedParam, Programs, RequestState, View,
};

/// Counts allocations made by the thread that switched counting on.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator unchanged; counting touches only an
// atomic and a const-initialised thread-local (neither allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn inbound() -> Program {
    let s = |text: &str| Const::Str(text.into());
    let consts = vec![
        s("X-Env"),              // 0
        s("Header is required"), // 1
        s("X-Gateway"),          // 2
        s("portcullis"),         // 3
        s("X-Tier"),             // 4
        s("gold"),               // 5
        s("X-Trace"),            // 6
        s("on"),                 // 7
        s("/v2/users/{id}"),     // 8
        s(""),                   // 9
        s("prod"),               // 10
        s("X-Prod"),             // 11
        s("yes"),                // 12
    ];
    let ops = vec![
        Op::Site(0),
        Op::Int(401),
        Op::Const(1),
        Op::CheckHeader { name: 0, values_first: 0, values: 0, ignore_case: false },
        Op::Site(1),
        Op::Const(3),
        Op::SetHeader { side: Side::Request, action: ExistsAction::Override, name: 2, values: 1 },
        Op::Const(5),
        Op::SetHeader { side: Side::Request, action: ExistsAction::Override, name: 4, values: 1 },
        Op::Const(7),
        Op::SetHeader { side: Side::Request, action: ExistsAction::Append, name: 6, values: 1 },
        Op::Const(8),
        Op::RewriteUri { copy_unmatched: true },
        // choose: when Headers.GetValueOrDefault("X-Env", "") == "prod"
        Op::Context,
        Op::Prop(Prop::Request),
        Op::Prop(Prop::Headers),
        Op::Const(0),
        Op::Const(9),
        Op::Call(Builtin::GetValueOrDefaultWith, 3),
        Op::Const(10),
        Op::Eq,
        Op::JumpIfFalse(24),
        Op::Const(12),
        Op::SetHeader { side: Side::Request, action: ExistsAction::Override, name: 11, values: 1 },
    ];
    let site = |policy: &str| Site {
        policy: policy.into(),
        scope: ScopeKind::Api,
        section: Section::Inbound,
        path: format!("{policy}[1]"),
        policy_id: None,
        location: "api.xml:1:1".into(),
    };
    let max_stack = program::stack_depth_max(&ops).unwrap() as u16;
    Program {
        ops,
        consts,
        locals: 0,
        max_stack,
        step_limit: 1000,
        sites: vec![site("check-header"), site("set-header")],
        ..Program::default()
    }
}

#[test]
fn typical_inbound_section_allocates_nothing_once_warm() {
    let buf = b"GET /echo/users/42?page=2 HTTP/1.1\r\nHost: gw.example\r\nX-Env: prod\r\nAccept: */*\r\n\r\n".to_vec();
    let head = request::parse(&buf).unwrap().unwrap();
    let programs = Programs::from_loaded(vec![LoadedProgram::load(0, inbound()).unwrap()]);
    let api = portcullis_dataplane::policy::sample::api();
    let operation = portcullis_dataplane::policy::sample::operation(Policies::all(0));
    let deployment = Deployment::default();
    let limits = ConcurrencyLimits::new();
    let rate_limits = portcullis_dataplane::policy::RateLimits::new();
    let matched = [MatchedParam { name: "id", value: "42" }];
    let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().unwrap();
    let view = View {
        programs: &programs,
        request: &head,
        request_buf: &buf,
        remainder_start: 5,
        peer: "127.0.0.1".parse().unwrap(),
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
        request_id: 1,
        timestamp: now,
        now,
        request_body: None,
        response: None,
        concurrency: &limits,
        limits: &rate_limits,
        tracing: false,
        traceparent: None,
    };
    let forwarding = Forwarding {
        base_path: "/api",
        authority: "backend:8081",
        remainder_start: 5,
        client_ip: "127.0.0.1".parse().unwrap(),
        tls: false,
        // The gateway's traceparent is written from a stack buffer: no allocation either.
        traceparent: Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    };
    let program = programs.get(0).unwrap();
    let mut state = RequestState::new();
    let mut out = Vec::with_capacity(4096);

    // Warm: the state's vectors and the output buffer reach their working size.
    assert_eq!(policy::run(Section::Inbound, program, &view, &mut state), Exit::Continue);
    policy::apply::write_request_head(&mut out, &head, &buf, &forwarding, &state, &programs);
    let expected = out.clone();
    state.reset();

    COUNTING.with(|c| c.set(true));
    let exit = policy::run(Section::Inbound, program, &view, &mut state);
    let after_run = ALLOCATIONS.load(Ordering::Relaxed);
    policy::apply::write_request_head(&mut out, &head, &buf, &forwarding, &state, &programs);
    COUNTING.with(|c| c.set(false));

    assert_eq!(exit, Exit::Continue);
    assert_eq!(out, expected);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("GET /api/v2/users/42?page=2 HTTP/1.1\r\n"), "{text}");
    assert!(text.contains("X-Gateway: portcullis\r\nX-Tier: gold\r\nX-Trace: on\r\nX-Prod: yes\r\n"), "{text}");
    assert_eq!(after_run, 0, "heap allocations while running the section");
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0, "heap allocations while writing the forwarded head");
}
