//! The outbound-call ops: the request a `send-request` builds and suspends with, the section
//! resuming with the `IResponse` (its members read by later expressions), a failed call failing
//! the section where it stands (or a null with `ignore-error`), `mode="copy"`, and
//! `return-response` from a response variable.

use std::rc::Rc;

use portcullis_contract::program::{ExistsAction, Op, Prop, Section, Side, ValueType};

use super::{Fixture, GET, program, s};
use crate::http::forward::ClientConnection;
use crate::policy::value::Value;
use crate::policy::{CallFailure, CallMode, Exit, RequestState, SentResponse, resume};

fn response() -> SentResponse {
    SentResponse {
        status: 201,
        reason: "Created".into(),
        headers: vec![("Content-Type".into(), "application/json".into()), ("X-Svc".into(), "a".into())],
        body: Rc::from(&br#"{"name":"ada"}"#[..]),
    }
}

/// `context.Variables["r"]` cast to `IResponse`, then `prop`.
fn read_response(prop: Prop) -> Vec<Op> {
    vec![Op::Context, Op::Prop(Prop::Variables), Op::Const(0), Op::Index, Op::Cast(ValueType::Response), Op::Prop(prop)]
}

#[test]
fn send_request_suspends_with_the_built_request_and_resumes_with_the_response() {
    let mut ops = vec![
        Op::BeginOutgoing { copy: false },
        Op::Const(1),
        Op::OutgoingUrl,
        Op::Const(2),
        Op::OutgoingMethod,
        Op::Const(4),
        Op::SetHeader { side: Side::Outgoing, action: ExistsAction::Override, name: 3, values: 1 },
        Op::Const(5),
        Op::SetBody { side: Side::Outgoing },
        Op::Site(0),
        Op::Int(5000),
        Op::SendRequest { variable: Some(0), ignore_error: false, one_way: false, deferred: false },
    ];
    ops.extend(read_response(Prop::StatusCode));
    ops.push(Op::SetVariable { name: 6 });
    ops.extend(read_response(Prop::Body));
    // `As<string>(preserveContent: false)`: the type is its index in the VM's type list (String, 0).
    ops.extend([Op::Bool(false), Op::Int(0), Op::Call(portcullis_contract::program::Builtin::BodyAs, 3)]);
    ops.push(Op::SetVariable { name: 7 });
    let consts = vec![
        s("r"),
        s("https://svc.example/token?x=1"),
        s("POST"),
        s("X-Token"),
        s("t1"),
        s("grant"),
        s("status"),
        s("body"),
    ];
    let fixture = Fixture::new(GET, vec![program(ops, consts)]);
    let mut state = RequestState::new();
    let Exit::Send(call) = fixture.run(&mut state) else { panic!("must suspend") };
    assert_eq!(call.request.url, "https://svc.example/token?x=1");
    assert_eq!(call.request.method, "POST");
    assert_eq!(call.request.headers, [("X-Token".to_owned(), "t1".to_owned())]);
    assert_eq!(call.request.body.as_deref(), Some(&b"grant"[..]));
    assert_eq!((call.timeout_ms, call.mode, call.ignore_error), (5000, CallMode::Now, false));
    assert!(!state.has_edits(crate::policy::state::EditTarget::Header(Side::Outgoing)), "the call's edits are its own");
    state.finish_call(&call, Ok(response()), &fixture.programs);
    let matched = [];
    let view = fixture.view(&matched);
    let program = fixture.programs.get(0).expect("program");
    assert_eq!(resume(Section::Inbound, program, &view, &mut state), Exit::Continue);
    assert!(matches!(state.variable("status", &fixture.programs), Some(Value::Int(201))));
    let body = state.variable("body", &fixture.programs).expect("set");
    assert_eq!(body.as_str(), Some(r#"{"name":"ada"}"#));
}

#[test]
fn a_failed_call_fails_the_section_at_the_call_unless_ignored() {
    let ops = vec![
        Op::BeginOutgoing { copy: false },
        Op::Const(1),
        Op::OutgoingUrl,
        Op::Site(0),
        Op::Int(1000),
        Op::SendRequest { variable: Some(0), ignore_error: false, one_way: false, deferred: false },
    ];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("r"), s("http://127.0.0.1:9/")])]);
    let mut state = RequestState::new();
    let Exit::Send(call) = fixture.run(&mut state) else { panic!("must suspend") };
    state.finish_call(&call, Err(CallFailure::Timeout), &fixture.programs);
    let matched = [];
    let view = fixture.view(&matched);
    let program = fixture.programs.get(0).expect("program");
    let Exit::Error(error) = resume(Section::Inbound, program, &view, &mut state) else { panic!("must fail") };
    assert_eq!(&*error.last_error.reason, "Timeout");
    assert_eq!(&*error.last_error.path, "set-header[1]", "the call's own site");
    assert_eq!(error.status(), 500);
    assert_eq!(error.body_message(), "Request to the send-request URL timed out after 1000 ms.");

    let mut state = RequestState::new();
    let Exit::Send(mut call) = fixture.run(&mut state) else { panic!("must suspend") };
    call.ignore_error = true;
    state.finish_call(&call, Err(CallFailure::ConnectionFailure), &fixture.programs);
    assert_eq!(resume(Section::Inbound, program, &view, &mut state), Exit::Continue);
    assert!(matches!(state.variable("r", &fixture.programs), Some(Value::Null)), "ignore-error leaves a null");
}

#[test]
fn copy_starts_from_the_current_request() {
    let ops = vec![
        Op::Const(1),
        Op::SetHeader { side: Side::Request, action: ExistsAction::Override, name: 0, values: 1 },
        Op::BeginOutgoing { copy: true },
        Op::Int(1000),
        Op::SendRequest { variable: None, ignore_error: false, one_way: true, deferred: false },
    ];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("X-Added"), s("yes")])]);
    let Exit::Send(call) = fixture.run(&mut RequestState::new()) else { panic!("must suspend") };
    assert_eq!(call.mode, CallMode::OneWay);
    assert_eq!(call.request.method, "GET");
    assert!(call.request.url.ends_with("?x=1&y=two"), "{}", call.request.url);
    let names: Vec<&str> = call.request.headers.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["X-Env", "Accept", "X-Added"], "Host is the call's own");
    assert_eq!(call.request.headers[1].1, "a,b");
    assert_eq!(call.request.body, None, "a GET without a body");
}

#[test]
fn return_response_starts_from_a_response_variable() {
    let ops = vec![
        Op::BeginResponseFrom { name: 0 },
        Op::Const(2),
        Op::SetHeader { side: Side::Returned, action: ExistsAction::Override, name: 1, values: 1 },
        Op::Respond,
    ];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("r"), s("X-Extra"), s("1")])]);
    let mut state = RequestState::new();
    let call = crate::policy::SendCall {
        request: crate::policy::OutgoingRequest::new(),
        timeout_ms: 1,
        variable: Some(crate::policy::load::LitRef { program: 0, index: 0 }),
        ignore_error: false,
        mode: CallMode::Now,
        site: None,
    };
    state.finish_call(&call, Ok(response()), &fixture.programs);
    assert_eq!(fixture.run(&mut state), Exit::Respond);
    let mut out = Vec::new();
    assert!(crate::policy::apply::write_built_response(
        &mut out,
        &state,
        &fixture.programs,
        ClientConnection::KeepAlive,
        false
    ));
    let text = String::from_utf8(out).expect("text");
    assert!(text.starts_with("HTTP/1.1 201 Created\r\n"), "{text}");
    assert!(text.contains("Content-Type: application/json\r\n") && text.contains("X-Svc: a\r\n"), "{text}");
    assert!(text.contains("X-Extra: 1\r\n") && text.ends_with("\r\n\r\n{\"name\":\"ada\"}"), "{text}");

    let missing = Fixture::new(GET, vec![program(vec![Op::BeginResponseFrom { name: 0 }, Op::Respond], vec![s("r")])]);
    let Exit::Error(error) = missing.run(&mut RequestState::new()) else { panic!("must fail") };
    assert!(error.last_error.message.contains("'r' was not present"), "{}", error.last_error.message);
}
