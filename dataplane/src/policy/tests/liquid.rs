//! `set-body template="liquid"`: APIM's objects rendered by a template loaded with the snapshot.

use portcullis_contract::program::{Const, Op, Side};

use super::*;

/// Runs a liquid `set-body` on the request (inbound, reading the request body) and returns the
/// new request body, or the error's message.
fn render(template: &str, request: &str, body: Option<&str>) -> String {
    let reads_body = Some(Side::Request);
    let ops = vec![Op::SetBodyLiquid { side: Side::Request, template: 0, body: reads_body }];
    let mut fixture = Fixture::new(request, vec![program(ops, vec![Const::Liquid(template.into())])]);
    fixture.body = body.map(|b| b.as_bytes().to_vec());
    let mut state = RequestState::new();
    match fixture.run(&mut state) {
        Exit::Continue => {}
        Exit::Error(error) => return format!("error: {}", error.last_error.message),
        other => panic!("unexpected exit {other:?}"),
    }
    let body = state.request_body_replacement(&fixture.programs).expect("body replaced");
    String::from_utf8_lossy(body).into_owned()
}

const POST_JSON: &str = "POST /echo/users/42?x=1&y=two%20words HTTP/1.1\r\nHost: gw.example\r\nContent-Type: application/json\r\nX-Env: prod\r\nContent-Length: 10\r\n\r\n";

#[test]
fn body_and_context_render_as_apim_documents_them() {
    let template = r#"{"name": "{{body.user.name | Upcase}}", "first": {{body.items[0]}}, "n": {{body.items | Size}}, "env": "{{context.Request.Headers["X-Env"]}}", "path": "{{context.Request.Url.Path}}", "y": "{{context.Request.Url.Query.y}}", "id": "{{context.Request.MatchedParameters.id}}", "method": "{{context.Request.Method}}", "api": "{{context.Api.Name}}", "missing": "{{body.nope | Default: 'none'}}"}"#;
    let body = r#"{"user":{"name":"ada"},"items":[7,8,9]}"#;
    let out = render(template, POST_JSON, Some(body));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["name"], "ADA");
    assert_eq!(json["first"], 7);
    assert_eq!(json["n"], 3);
    assert_eq!(json["env"], "prod");
    // The current URL: the backend's, as `@(context.Request.Url.Path)` reads it.
    assert_eq!(json["path"], "/api/users/42");
    assert_eq!(json["y"], "two words");
    assert_eq!(json["id"], "42");
    assert_eq!(json["method"], "POST");
    assert_eq!(json["api"], crate::policy::sample::api().name);
    assert_eq!(json["missing"], "none");
}

#[test]
fn a_url_prints_as_its_text() {
    let out = render("{{ context.Request.OriginalUrl }} {{ context.Request.OriginalUrl.Path }}", POST_JSON, None);
    assert_eq!(out, "http://gw.example/echo/users/42?x=1&y=two%20words /echo/users/42");
}

#[test]
fn an_xml_body_is_read_as_xml_to_json_converts_it() {
    let request = POST_JSON.replace("application/json", "application/xml");
    let out = render(
        "{{ body.order.id }}/{{ body.order.item[1] }}",
        &request,
        Some("<order><id>7</id><item>a</item><item>b</item></order>"),
    );
    assert_eq!(out, "7/b");
}

#[test]
fn headers_iterate_as_pairs_and_loops_and_conditions_work() {
    let template = "{% for header in context.Request.Headers %}{% if header[0] == 'X-Env' %}{{ header[0] }}={{ header[1] }}{% endif %}{% endfor %}";
    assert_eq!(render(template, POST_JSON, None), "X-Env=prod");
    // DotLiquid's lookups: a missing member is nil, not an error.
    let template = "{{ context.Variables['none'] | Default: 'empty' }}{{ context.Nope.Deeper }}{{ body[5] }}";
    assert_eq!(render(template, POST_JSON, Some("[1]")), "empty");
}

#[test]
fn a_body_that_is_neither_json_nor_xml_is_its_text() {
    let request = POST_JSON.replace("application/json", "text/plain");
    assert_eq!(render("[{{ body }}]", &request, Some("plain words")), "[plain words]");
    assert_eq!(render("[{{ body }}]", &request, Some("")), "[]");
}

#[test]
fn a_render_error_fails_the_policy_with_a_reason() {
    // Liquid refuses an unknown index on a strict lookup: APIM fails the request too.
    let out = render("{{ 1 | DividedBy: 0 }}", POST_JSON, None);
    assert!(out.starts_with("error: Expression evaluation failed. Liquid:"), "{out}");
}

#[test]
fn hostile_bodies_render_without_panicking() {
    for body in ["{", "[[[[[[[[", "\u{0}", "<a><b></a>", "{\"a\":1e400}", "null", "\"just a string\""] {
        // Each renders or fails the policy; none panics.
        let _ = render("{{ body.a }}{% for x in body %}{{ x }}{% endfor %}", POST_JSON, Some(body));
    }
}

#[test]
fn a_snapshot_with_a_bad_template_is_refused() {
    let ops = vec![Op::SetBodyLiquid { side: Side::Request, template: 0, body: None }];
    let error = LoadedProgram::load(0, program(ops, vec![Const::Liquid("{% if %}".into())])).unwrap_err();
    assert!(matches!(error, crate::policy::load::LoadError::Liquid { .. }), "{error}");
    // A template constant that is a string is not one the verifier accepts.
    let ops = vec![Op::SetBodyLiquid { side: Side::Request, template: 0, body: None }];
    assert!(LoadedProgram::load(0, program(ops, vec![s("{{ x }}")])).is_err());
}

#[test]
fn the_template_reads_the_body_only_when_it_names_it() {
    let reading = Op::SetBodyLiquid { side: Side::Response, template: 0, body: Some(Side::Response) };
    let loaded =
        LoadedProgram::load(0, program(vec![reading], vec![Const::Liquid("{{body.a}}".into())])).expect("loads");
    assert!(loaded.bodies().reads_response && loaded.bodies().replaces_response);
    let blind = Op::SetBodyLiquid { side: Side::Response, template: 0, body: None };
    let loaded = LoadedProgram::load(0, program(vec![blind], vec![Const::Liquid("x".into())])).expect("loads");
    assert!(!loaded.bodies().reads_response && loaded.bodies().replaces_response);
}

#[test]
fn the_fuzz_entry_renders_a_body_alone() {
    let template =
        crate::policy::load::LiquidTemplate::parse("{% for x in body.a %}{{ x | Plus: 1 }}{% endfor %}{{ body.zz }}")
            .expect("parses");
    let out = crate::policy::vm::liquid::render_body(&template, br#"{"a":[1,2]}"#, false).expect("renders");
    assert_eq!(out, "23");
    // A loop over a string is Liquid's error, not a panic.
    assert!(crate::policy::vm::liquid::render_body(&template, b"<a>5</a>", true).is_err());
    let scalar = crate::policy::load::LiquidTemplate::parse("{{ body.a | Plus: 1 }}").expect("parses");
    assert_eq!(crate::policy::vm::liquid::render_body(&scalar, b"<a>5</a>", true).expect("renders"), "6");
}

/// `redirect-content-urls` on the request (inbound): gateway URLs become the backend's.
#[test]
fn redirect_content_urls_swaps_gateway_and_backend_base_urls() {
    let run = |side: Side, body: &[u8]| -> Option<Vec<u8>> {
        let ops = vec![Op::RedirectContentUrls { side }];
        let request = "POST /echo/links HTTP/1.1\r\nHost: gw.example:8080\r\nContent-Length: 1\r\n\r\n";
        let mut fixture = Fixture::new(request, vec![program(ops, Vec::new())]);
        fixture.body = Some(body.to_vec());
        let mut state = RequestState::new();
        assert_eq!(fixture.run(&mut state), Exit::Continue);
        state.request_body_replacement(&fixture.programs).map(<[u8]>::to_vec)
    };
    let body = br#"{"next":"http://gw.example:8080/echo/users?page=2","other":"http://elsewhere/x"}"#;
    assert_eq!(
        run(Side::Request, body).as_deref(),
        Some(&br#"{"next":"http://backend:8081/api/users?page=2","other":"http://elsewhere/x"}"#[..])
    );
    // Nothing to rewrite, or not text: the body is left as it is.
    assert_eq!(run(Side::Request, b"no links"), None);
    assert_eq!(run(Side::Request, b"\xff http://gw.example:8080/echo"), None);
}
