//! Policy statements, suspension, and the heads the edits produce.

use portcullis_contract::program::{
    Builtin, Const, Cors, ExistsAction, IpFilter, IpRange, Op, Prop, Section, Side, ValueType,
};

use super::*;
use crate::http::forward::{self, ClientConnection, Forwarding};
use crate::http::response;

fn forwarding() -> Forwarding<'static> {
    Forwarding {
        base_path: "/api",
        authority: "backend:8081",
        remainder_start: 5,
        client_ip: "10.1.2.3".parse().expect("ip"),
        tls: false,
        traceparent: None,
    }
}

fn request_head(fixture: &Fixture, state: &RequestState) -> String {
    let mut out = Vec::new();
    apply::write_request_head(&mut out, &fixture.head, &fixture.buf, &forwarding(), state, &fixture.programs);
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn without_edits_heads_are_byte_identical_to_forward() {
    let request = "POST /echo/hello?x=1 HTTP/1.1\r\nHost: gw.example\r\nConnection: keep-alive, X-Secret\r\n\
X-Secret: s\r\nKeep-Alive: 5\r\nX-Forwarded-For: 10.0.0.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
    let fixture = Fixture::new(request, vec![Program::empty()]);
    let state = RequestState::new();
    let mut expected = Vec::new();
    forward::write_request_head(&mut expected, &fixture.head, &fixture.buf, &forwarding());
    assert_eq!(request_head(&fixture, &state).into_bytes(), expected);

    let buf = b"HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nok";
    let head = response::parse(buf).expect("valid").expect("complete");
    for connection in [ClientConnection::KeepAlive, ClientConnection::KeepAliveHttp10, ClientConnection::Close] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        forward::write_response_head(&mut theirs, &head, buf, connection);
        apply::write_response_head(&mut ours, &head, buf, connection, &state, &fixture.programs);
        assert_eq!(ours, theirs);
    }
}

#[test]
fn set_header_actions_and_null_values() {
    let ops = vec![
        Op::Const(1),
        Op::SetHeader { side: Side::Request, action: ExistsAction::Override, name: 0, values: 1 },
        Op::Const(3),
        Op::Null,
        Op::Const(4),
        Op::SetHeader { side: Side::Request, action: ExistsAction::Append, name: 2, values: 3 },
        Op::Const(1),
        Op::SetHeader { side: Side::Request, action: ExistsAction::Skip, name: 5, values: 1 },
        Op::SetHeader { side: Side::Request, action: ExistsAction::Delete, name: 6, values: 0 },
        Op::Const(1),
        Op::SetHeader { side: Side::Request, action: ExistsAction::Skip, name: 7, values: 1 },
    ];
    let consts = vec![s("x-env"), s("test"), s("X-New"), s("a"), s("b"), s("host"), s("ACCEPT"), s("X-Skipped")];
    let fixture = Fixture::new(GET, vec![program(ops, consts)]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Continue);
    assert_eq!(
        request_head(&fixture, &state),
        "GET /api/users/42?x=1&y=two HTTP/1.1\r\nx-env: test\r\nX-New: a\r\nX-New: b\r\nX-Skipped: test\r\n\
Host: backend:8081\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: gw.example\r\n\r\n"
    );
}

#[test]
fn header_reads_see_edits_and_join_values() {
    // context.Request.Headers.GetValueOrDefault("Accept", "") after appending "c": the stack form
    // and the forms control's fusion pass makes of it agree.
    let stack = vec![
        Op::Const(1),
        Op::SetHeader { side: Side::Request, action: ExistsAction::Append, name: 0, values: 1 },
        Op::Context,
        Op::Prop(Prop::Request),
        Op::Prop(Prop::Headers),
        Op::Const(0),
        Op::Const(2),
        Op::Call(Builtin::GetValueOrDefaultWith, 3),
    ];
    let fused = vec![
        Op::SetHeaderConst { side: Side::Request, action: ExistsAction::Append, name: 0, value: 1 },
        Op::RequestHeader { name: 0, default: Some(2) },
    ];
    for ops in [stack, fused] {
        assert_eq!(eval(ops, vec![s("accept"), s("c"), s("")]).expect("runs"), "a,b,c");
    }
    // A missing header: the default, or null without one.
    let missing = |default| vec![Op::RequestHeader { name: 0, default }, Op::Call(Builtin::StrIsNullOrEmpty, 1)];
    assert_eq!(eval(missing(Some(1)), vec![s("x-none"), s("fallback")]).expect("runs"), "Boolean:False");
    assert_eq!(eval(missing(None), vec![s("x-none")]).expect("runs"), "Boolean:True");
}

#[test]
fn check_header_failures() {
    // The stack form (status and message computed) and the fused form (constants) agree.
    let stack = |name: u32| {
        vec![
            Op::Site(0),
            Op::Int(401),
            Op::Const(2),
            Op::CheckHeader { name, values_first: 1, values: 1, ignore_case: true },
        ]
    };
    let fused = |name: u32| {
        let check =
            Op::CheckHeaderConst { name, values_first: 1, values: 1, ignore_case: true, status: 401, message: Some(2) };
        vec![Op::Site(0), check]
    };
    for ops in [stack, fused] {
        check_header_failures_of(ops);
    }
}

fn check_header_failures_of(ops: fn(u32) -> Vec<Op>) {
    let consts = vec![s("X-Missing"), s("PROD"), s("Denied by policy")];
    let fixture = Fixture::new(GET, vec![program(ops(0), consts.clone())]);
    let mut state = RequestState::new();
    let Exit::Error(error) = fixture.run(&mut state) else { panic!("must fail") };
    assert_eq!(error.status(), 401);
    assert_eq!(&*error.last_error.reason, "HeaderNotFound");
    assert_eq!(&*error.last_error.message, "Header X-Missing was not found in the request. Access denied.");
    assert_eq!(error.body_message(), "Denied by policy");
    assert_eq!(&*error.last_error.path, "set-header[1]");
    assert_eq!(error.last_error.policy_id.as_deref(), Some("p1"));
    assert!(state.last_error().is_some());

    // X-Env: prod matches PROD ignoring case.
    let mut consts = consts;
    consts[0] = s("X-Env");
    let fixture = Fixture::new(GET, vec![program(ops(0), consts.clone())]);
    assert_eq!(fixture.run(&mut RequestState::new()), Exit::Continue);
    consts[1] = s("staging");
    let fixture = Fixture::new(GET, vec![program(ops(0), consts)]);
    let Exit::Error(error) = fixture.run(&mut RequestState::new()) else { panic!("must fail") };
    assert_eq!(&*error.last_error.message, "Header X-Env value of prod is not allowed. Access denied.");

    let mut out = Vec::new();
    apply::write_error_response(&mut out, &error, false);
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"), "{text}");
    assert!(text.ends_with("{ \"statusCode\": 401, \"message\": \"Denied by policy\" }"), "{text}");
}

#[test]
fn ip_filter_allow_and_forbid() {
    let v4 = |a: [u8; 4]| u128::from(std::net::Ipv4Addr::from(a).to_ipv6_mapped());
    let range = IpRange { first: v4([10, 1, 0, 0]), last: v4([10, 1, 255, 255]) };
    for (allow, ranges, passes) in [(true, vec![range], true), (false, vec![range], false), (true, vec![], false)] {
        let mut p = program(vec![Op::Site(0), Op::IpFilter(0)], vec![]);
        p.ip_filters = vec![IpFilter { allow, ranges }];
        let fixture = Fixture::new(GET, vec![p]);
        match fixture.run(&mut RequestState::new()) {
            Exit::Continue => assert!(passes),
            Exit::Error(error) => {
                assert!(!passes);
                assert_eq!(error.status(), 403);
                assert_eq!(&*error.last_error.message, "Caller IP address 10.1.2.3 is not allowed. Access denied.");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn rewrite_uri_fills_parameters_and_copies_unmatched_query() {
    let set_query =
        [Op::Const(1), Op::Const(2), Op::SetQueryParameter { action: ExistsAction::Override, name: 3, values: 2 }];
    let stack = [&[Op::Const(0), Op::RewriteUri { copy_unmatched: true }][..], &set_query].concat();
    let fused = [&[Op::RewriteUriConst { template: 0, copy_unmatched: true }][..], &set_query].concat();
    for ops in [stack, fused] {
        let consts = vec![s("/v2/people/{id}?keep={x}"), s("a b"), s("c"), s("added")];
        let fixture = Fixture::new(GET, vec![program(ops, consts)]);
        let mut state = RequestState::new();
        assert_eq!(fixture.run(&mut state), Exit::Continue);
        let head = request_head(&fixture, &state);
        assert!(head.starts_with("GET /api/v2/people/42?keep=1&y=two&added=a%20b&added=c HTTP/1.1\r\n"), "{head}");
    }
}

#[test]
fn set_variable_keeps_type_and_choose_on_header() {
    // if (Headers.GetValueOrDefault("X-Env", "") == "prod") result = 1 else result = "other"
    let ops = vec![
        Op::Context,
        Op::Prop(Prop::Request),
        Op::Prop(Prop::Headers),
        Op::Const(0),
        Op::Const(1),
        Op::Call(Builtin::GetValueOrDefaultWith, 3),
        Op::Const(2),
        Op::Eq,
        Op::JumpIfFalse(11),
        Op::Int(1),
        Op::Jump(12),
        Op::Const(3),
    ];
    assert_eq!(eval(ops, vec![s("x-env"), s(""), s("prod"), s("other")]).expect("runs"), "Int32:1");
}

#[test]
fn return_response_and_mock_response_build_responses() {
    let ops = vec![
        Op::BeginResponse,
        Op::Int(418),
        Op::Const(0),
        Op::SetStatus { side: Side::Returned },
        Op::Const(1),
        Op::SetHeader { side: Side::Returned, action: ExistsAction::Override, name: 2, values: 1 },
        Op::Const(3),
        Op::SetBody { side: Side::Returned },
        Op::Respond,
    ];
    let fixture =
        Fixture::new(GET, vec![program(ops, vec![s("Teapot"), s("text/plain"), s("Content-Type"), s("short")])]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Respond);
    let mut out = Vec::new();
    assert!(apply::write_built_response(&mut out, &state, &fixture.programs, ClientConnection::Close, false));
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        "HTTP/1.1 418 Teapot\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nshort"
    );

    let mock = vec![Op::MockResponse { status: 200, content_type: 0, example: Some(1) }];
    let fixture = Fixture::new(GET, vec![program(mock, vec![s("application/json"), s("{}")])]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Respond);
    let mut out = Vec::new();
    assert!(apply::write_built_response(&mut out, &state, &fixture.programs, ClientConnection::KeepAlive, false));
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    );
}

fn cors_rule() -> Cors {
    Cors {
        allow_credentials: true,
        terminate_unmatched_request: true,
        allowed_origins: vec!["https://app.example".into()],
        allowed_methods: vec!["GET".into(), "POST".into()],
        preflight_max_age_s: Some(300),
        allowed_headers: vec!["content-type".into()],
        expose_headers: vec!["x-total".into()],
    }
}

#[test]
fn cors_preflight_simple_request_and_unmatched() {
    let mut p = program(vec![Op::Cors(0)], vec![]);
    p.cors = vec![cors_rule()];
    let preflight = "OPTIONS /echo/users/42 HTTP/1.1\r\nHost: gw\r\nOrigin: https://app.example\r\n\
Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: Content-Type\r\n\r\n";
    let fixture = Fixture::new(preflight, vec![p.clone()]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Respond);
    let mut out = Vec::new();
    apply::write_built_response(&mut out, &state, &fixture.programs, ClientConnection::KeepAlive, false);
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: https://app.example\r\nAccess-Control-Allow-Credentials: true\r\n\
Access-Control-Allow-Methods: POST\r\nAccess-Control-Allow-Headers: Content-Type\r\nAccess-Control-Max-Age: 300\r\n\
Content-Length: 0\r\n\r\n"
    );

    let unmatched = preflight.replace("https://app.example", "https://evil.example");
    let fixture = Fixture::new(&unmatched, vec![p.clone()]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Respond);
    let mut out = Vec::new();
    apply::write_built_response(&mut out, &state, &fixture.programs, ClientConnection::KeepAlive, false);
    assert_eq!(String::from_utf8(out).expect("utf-8"), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");

    let simple = "GET /echo/users/42 HTTP/1.1\r\nHost: gw\r\nOrigin: https://app.example\r\n\r\n";
    let fixture = Fixture::new(simple, vec![p]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Continue);
    let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let head = response::parse(buf).expect("valid").expect("complete");
    let mut out = Vec::new();
    apply::write_response_head(&mut out, &head, buf, ClientConnection::KeepAlive, &state, &fixture.programs);
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nAccess-Control-Allow-Origin: https://app.example\r\n\
Access-Control-Allow-Credentials: true\r\nAccess-Control-Expose-Headers: x-total\r\nVary: Origin\r\n\r\n"
    );
}

#[test]
fn limit_concurrency_refuses_and_releases_on_every_path() {
    let ops = vec![
        Op::Site(0),
        Op::Const(0),
        Op::LimitConcurrencyEnter { max: 1 },
        Op::ForwardRequest {
            timeout_ms: 1000,
            follow_redirects: false,
            buffer_response: true,
            fail_on_error_status: false,
        },
        Op::LimitConcurrencyExit,
    ];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("key")])]);
    let mut first = RequestState::new();
    assert!(fixture.run(&mut first).forward().is_some());
    assert_eq!(fixture.limits.count("key"), 1);
    let mut second = RequestState::new();
    let Exit::Error(error) = fixture.run(&mut second) else { panic!("over the limit") };
    assert_eq!(error.status(), 429);
    // The first request's connection drops while it waits for the backend.
    drop(first);
    assert_eq!(fixture.limits.count("key"), 0);
    let mut third = RequestState::new();
    assert!(fixture.run(&mut third).forward().is_some());
    let matched = [MatchedParam { name: "id", value: "42" }];
    let view = fixture.view(&matched);
    let program = fixture.programs.get(0).expect("program");
    assert_eq!(resume(Section::Inbound, program, &view, &mut third), Exit::Continue);
    assert_eq!(fixture.limits.count("key"), 0);
}

#[test]
fn retry_waits_per_interval_rules_and_resumes() {
    // RetryInit; body: Int 1 → local 1 (count attempts); condition true; RetryNext back to body.
    let ops = vec![
        Op::RetryInit(0),
        Op::LoadLocal(0),
        Op::StoreLocal(1),
        Op::Bool(true),
        Op::JumpIfFalse(6),
        Op::RetryNext {
            local: 0,
            count: 3,
            interval_ms: 100,
            max_interval_ms: 0,
            delta_ms: 50,
            first_fast_retry: true,
            target: 1,
        },
    ];
    let fixture = Fixture::new(GET, vec![program(ops, vec![])]);
    let matched = [MatchedParam { name: "id", value: "42" }];
    let view = fixture.view(&matched);
    let program = fixture.programs.get(0).expect("program");
    let mut state = RequestState::new();
    // First retry is immediate (no suspension), the second waits interval + delta.
    assert_eq!(run(Section::Backend, program, &view, &mut state), Exit::Wait(std::time::Duration::from_millis(150)));
    assert!(state.is_suspended(Section::Backend));
    assert_eq!(resume(Section::Backend, program, &view, &mut state), Exit::Wait(std::time::Duration::from_millis(200)));
    assert_eq!(resume(Section::Backend, program, &view, &mut state), Exit::Continue);
    let rule = vm::statements::RetryInterval {
        interval_ms: 100,
        max_interval_ms: 1000,
        delta_ms: 100,
        first_fast_retry: false,
    };
    let waits: Vec<u64> = (1..=6).map(|n| rule.before(n).as_millis() as u64).collect();
    assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
}

#[test]
fn step_limit_and_runtime_type_errors_fail_the_request() {
    let mut looping = program(vec![Op::Jump(0)], vec![]);
    looping.step_limit = 50;
    let fixture = Fixture::new(GET, vec![looping]);
    let Exit::Error(error) = fixture.run(&mut RequestState::new()) else { panic!("loops forever") };
    assert_eq!(&*error.last_error.reason, "ExpressionValueEvaluationFailure");
    assert_eq!(error.status(), 500);

    let error = eval(vec![Op::Int(1), Op::Int(0), Op::Div], vec![]).expect_err("divides by zero");
    assert!(error.last_error.message.contains("divide by zero"));
    let error = eval(vec![Op::Const(0), Op::Cast(ValueType::Int)], vec![s("x")]).expect_err("bad cast");
    assert!(error.last_error.message.contains("Unable to cast"), "{}", error.last_error.message);
    let error = eval(vec![Op::Null, Op::Call(Builtin::StrToLower, 1)], vec![]).expect_err("null");
    assert!(error.last_error.message.contains("StrToLower"), "{}", error.last_error.message);
}

#[test]
fn backend_id_and_base_url_replace_each_other() {
    let ops = vec![Op::Const(0), Op::SetBackendUrl, Op::Const(1), Op::SetBackendId];
    let mut fixture =
        Fixture::new("GET /echo/x HTTP/1.1\r\nHost: gw\r\n\r\n", vec![program(ops, vec![s("http://a"), s("pool")])]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Continue);
    assert_eq!(state.backend_id(), Some("pool"));
    assert!(state.backend_override().is_none(), "the last set-backend-service wins");
    let ops = vec![Op::Const(1), Op::SetBackendId, Op::Const(0), Op::SetBackendUrl];
    fixture =
        Fixture::new("GET /echo/x HTTP/1.1\r\nHost: gw\r\n\r\n", vec![program(ops, vec![s("http://a"), s("pool")])]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Continue);
    assert_eq!(state.backend_id(), None);
    assert!(state.backend_override().is_some());
    state.reset();
    assert_eq!(state.backend_id(), None);
}

#[test]
fn backend_url_auth_method_and_bodies() {
    let ops = vec![
        Op::Const(0),
        Op::SetBackendUrl,
        Op::Const(1),
        Op::Const(2),
        Op::AuthenticationBasic,
        Op::Const(3),
        Op::SetMethod,
        Op::Const(4),
        Op::Const(5),
        Op::FindAndReplace { side: Side::Request },
    ];
    let consts = vec![s("https://api.example:8443/v3/"), s("user"), s("pa:ss"), s("PUT"), s("cat"), s("dog")];
    let post = "POST /echo/users/42 HTTP/1.1\r\nHost: gw\r\nContent-Length: 7\r\nAuthorization: old\r\n\r\na cat!!";
    let mut fixture = Fixture::new(post, vec![program(ops, consts)]);
    fixture.body = Some(b"a cat!!".to_vec());
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Continue);
    let backend = state.backend_override().expect("override");
    assert_eq!((backend.host.as_str(), backend.port, backend.base_path.as_str()), ("api.example", 8443, "/v3"));
    assert_eq!(state.request_body_replacement(&fixture.programs), Some(&b"a dog!!"[..]));
    assert_eq!(
        request_head(&fixture, &state),
        "PUT /v3/users/42 HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYTpzcw==\r\nContent-Length: 7\r\n\
Host: api.example:8443\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: gw\r\n\r\n"
    );
    for bad in ["ftp://x", "http://", "http://h:99999", "http://a b", "http://h/p?q"] {
        assert!(vm::statements::parse_backend_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn body_as_consumes_unless_preserved() {
    let ops = |preserve: bool| {
        vec![
            Op::Context,
            Op::Prop(Prop::Request),
            Op::Prop(Prop::Body),
            Op::Bool(preserve),
            Op::Int(4),
            Op::Call(Builtin::BodyAs, 3),
            Op::Const(0),
            Op::Index,
            Op::SetVariable { name: 1 },
        ]
    };
    for preserve in [true, false] {
        let post = "POST /echo/users/42 HTTP/1.1\r\nHost: gw\r\nContent-Length: 9\r\n\r\n{\"a\":\"b\"}";
        let mut fixture = Fixture::new(post, vec![program(ops(preserve), vec![s("a"), s("v")])]);
        fixture.body = Some(b"{\"a\":\"b\"}".to_vec());
        let mut state = RequestState::new();
        assert_eq!(fixture.run(&mut state), Exit::Continue);
        assert_eq!(
            state.variable("v", &fixture.programs).and_then(|v| v.as_str().map(str::to_owned)).as_deref(),
            Some("b")
        );
        let forwarded = state.request_body_replacement(&fixture.programs);
        assert_eq!(forwarded, if preserve { None } else { Some(&b""[..]) });
    }
}

#[test]
fn outbound_status_and_header_edits_on_the_relayed_response() {
    let ops = vec![
        Op::Int(201),
        Op::Null,
        Op::SetStatus { side: Side::Response },
        Op::SetHeader { side: Side::Response, action: ExistsAction::Delete, name: 0, values: 0 },
        Op::Const(1),
        Op::SetBody { side: Side::Response },
    ];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("server"), s("replaced")])]);
    let buf = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 2\r\n\r\nok";
    let head = response::parse(buf).expect("valid").expect("complete");
    let matched = [];
    let mut view = fixture.view(&matched);
    view.response = Some(ResponseView { head: &head, buf, body: Some(b"ok") });
    let mut state = RequestState::new();
    assert_eq!(run(Section::Outbound, fixture.programs.get(0).expect("p"), &view, &mut state), Exit::Continue);
    let mut out = Vec::new();
    apply::write_response_head(&mut out, &head, buf, ClientConnection::KeepAlive, &state, &fixture.programs);
    assert_eq!(String::from_utf8(out).expect("utf-8"), "HTTP/1.1 201 Created\r\nContent-Length: 8\r\n\r\n");
    assert_eq!(state.response_body_replacement(&fixture.programs), Some(&b"replaced"[..]));
}

#[test]
fn traces_are_collected() {
    let ops =
        vec![Op::Const(1), Op::Trace { source: 0, severity: portcullis_contract::program::Severity::Information }];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("src"), s("hello")])]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Continue);
    assert_eq!(state.traces().len(), 1);
    assert_eq!(state.traces()[0].message.resolve(&fixture.programs), "hello");
    let _ = Const::Int(0);
}

#[test]
fn emitted_metrics_keep_their_value_and_dimensions() {
    let ops = vec![
        Op::Const(2),
        Op::Const(3),
        Op::Int(7),
        Op::EmitMetric { name: 0, namespace: 1, names_first: 4, dimensions: 2 },
    ];
    let consts = vec![s("Requests"), s("shop"), s("2.5"), s("eu-west"), s("Region"), s("Tier")];
    let fixture = Fixture::new(GET, vec![program(ops, consts)]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Continue);
    let [metric] = state.metrics() else { panic!("one metric: {:?}", state.metrics()) };
    assert_eq!(metric.value, 2.5);
    assert_eq!(fixture.programs.literal(metric.namespace), "shop");
    assert_eq!(fixture.programs.literal(metric.name), "Requests");
    let dimensions: Vec<(&str, String)> = metric
        .dimensions
        .iter()
        .map(|(name, value)| (fixture.programs.literal(*name), value.resolve(&fixture.programs).to_string()))
        .collect();
    assert_eq!(dimensions, [("Region", "eu-west".to_owned()), ("Tier", "7".to_owned())]);

    // A value that is not a number fails the expression, as APIM's double conversion does.
    let ops = vec![Op::Const(1), Op::EmitMetric { name: 0, namespace: 0, names_first: 0, dimensions: 0 }];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("Requests"), s("lots")])]);
    let mut state = RequestState::new();
    assert!(matches!(fixture.run(&mut state), Exit::Error(_)), "a non-number fails");
    assert!(state.metrics().is_empty());
}

#[test]
fn a_lone_forward_request_is_recognised() {
    let plain = LoadedProgram::load(0, Program::forward_only()).expect("loads");
    assert_eq!(plain.plain_forward().map(|forward| forward.timeout_ms), Some(300_000));
    let mut shaped = Program::forward_only();
    shaped.ops.insert(0, Op::Const(0));
    shaped.ops.insert(1, Op::SetHeader { side: Side::Request, action: ExistsAction::Override, name: 0, values: 1 });
    shaped.consts = vec![s("x")];
    shaped.max_stack = 1;
    let shaped = LoadedProgram::load(0, shaped).expect("loads");
    assert!(shaped.plain_forward().is_none());
}

#[test]
fn a_computed_forward_request_takes_its_settings_from_the_stack() {
    let ops = |timeout: Op| {
        vec![timeout, Op::Bool(true), Op::Bool(false), Op::ForwardRequestComputed { buffer_response: true }]
    };
    let fixture = Fixture::new(GET, vec![program(ops(Op::Int(1500)), vec![])]);
    let mut state = RequestState::new();
    let expected =
        Forward { timeout_ms: 1500, follow_redirects: true, buffer_response: true, fail_on_error_status: false };
    assert_eq!(fixture.run(&mut state).forward(), Some(expected));
    // A program that computes flags is one that may send the request twice.
    assert!(fixture.programs.get(0).expect("program").bodies().replays_request);
    // A negative timeout is an expression failure, as a wrong type is.
    let fixture = Fixture::new(GET, vec![program(ops(Op::Int(-1)), vec![])]);
    let Exit::Error(error) = fixture.run(&mut RequestState::new()) else { panic!("must fail") };
    assert_eq!(&*error.last_error.reason, "ExpressionValueEvaluationFailure");
    let fixture = Fixture::new(GET, vec![program(ops(Op::Null), vec![])]);
    assert!(matches!(fixture.run(&mut RequestState::new()), Exit::Error(_)));
}

#[test]
fn api_members_name_the_version_and_revision_the_request_reached() {
    let member = |prop| vec![Op::Context, Op::Prop(Prop::Api), Op::Prop(prop)];
    assert_eq!(eval(member(Prop::IsCurrentRevision), vec![]).expect("runs"), "Boolean:True");
    let revision = |fixture: &mut Fixture| {
        fixture.api.version = "v2".into();
        fixture.api.revision = "3".into();
        fixture.api.revision_of = Some(0);
    };
    assert_eq!(eval_with(revision, member(Prop::IsCurrentRevision), vec![]).expect("runs"), "Boolean:False");
    assert_eq!(eval_with(revision, member(Prop::Revision), vec![]).expect("runs"), "3");
    assert_eq!(eval_with(revision, member(Prop::Version), vec![]).expect("runs"), "v2");
}
