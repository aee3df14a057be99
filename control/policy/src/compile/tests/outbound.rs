//! The outbound calls' compiler: `send-request`, `send-one-way-request`, `wait`, and the
//! refusals of what they do not take, with positions.

use portcullis_contract::program::{ExistsAction, Op, Side};

use super::{compile, first_error, inbound_const};

fn inbound_ops(text: &str) -> (Vec<Op>, portcullis_contract::program::Program) {
    let compiled = compile(text);
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let program = compiled.programs[0].clone().expect("inbound compiled");
    (program.ops.clone(), program)
}

fn policies(inbound: &str) -> String {
    format!("<policies><inbound>{inbound}</inbound></policies>")
}

#[test]
fn send_request_builds_its_request_then_suspends_with_its_variable() {
    let (ops, program) = inbound_ops(&policies(
        r#"<send-request mode="new" response-variable-name="user" timeout="20" ignore-error="true">
  <set-url>https://login.example.com/token</set-url>
  <set-method>POST</set-method>
  <set-header name="Content-Type" exists-action="override"><value>application/x-www-form-urlencoded</value></set-header>
  <set-body>@("grant_type=client_credentials&amp;id=" + context.Request.Headers.GetValueOrDefault("X-Id", ""))</set-body>
</send-request>"#,
    ));
    let begin = ops.iter().position(|op| *op == Op::BeginOutgoing { copy: false }).expect("BeginOutgoing");
    let url = ops.iter().position(|op| *op == Op::OutgoingUrl).expect("OutgoingUrl");
    let method = ops.iter().position(|op| *op == Op::OutgoingMethod).expect("OutgoingMethod");
    let header = ops
        .iter()
        .position(|op| matches!(op, Op::SetHeaderConst { side: Side::Outgoing, action: ExistsAction::Override, .. }))
        .expect("the header edits the built request");
    let body = ops.iter().position(|op| *op == Op::SetBody { side: Side::Outgoing }).expect("SetBody on the call");
    let user = inbound_const(&program, "user");
    let send = ops
        .iter()
        .position(|op| {
            *op == Op::SendRequest { variable: Some(user), ignore_error: true, one_way: false, deferred: false }
        })
        .expect("SendRequest");
    assert!(begin < url && url < method && method < header && header < body && body < send);
    // The timeout in milliseconds is the op's one operand; the site before it is the call's own.
    assert_eq!(ops[send - 1], Op::Int(20_000));
    let Op::Site(site) = ops[send - 2] else { panic!("a site before the timeout: {:?}", ops[send - 2]) };
    assert_eq!(program.sites[site as usize].policy, "send-request");
    assert_eq!(program.sites[site as usize].path, "send-request[1]");
}

#[test]
fn defaults_copy_one_way_and_a_computed_timeout() {
    let (ops, _) = inbound_ops(&policies(
        r#"<send-request response-variable-name="r"><set-url>http://a/</set-url></send-request>"#,
    ));
    assert!(ops.contains(&Op::Int(60_000)), "APIM's 60 s default: {ops:?}");
    let (ops, _) = inbound_ops(&policies(r#"<send-request mode="copy" response-variable-name="r" />"#));
    assert!(ops.contains(&Op::BeginOutgoing { copy: true }));
    let (ops, _) = inbound_ops(&policies(
        r#"<send-one-way-request mode="new" timeout="@(int.Parse(&quot;3&quot;))"><set-url>http://a/</set-url></send-one-way-request>"#,
    ));
    assert!(ops.contains(&Op::SendRequest { variable: None, ignore_error: false, one_way: true, deferred: false }));
    assert!(ops.windows(3).any(|w| matches!(w, [Op::Call(..), Op::Int(1000), Op::Mul])), "{ops:?}");
    // `authentication-certificate` names the call's certificate, in any section the call stands.
    let text = r#"<policies><outbound><send-request response-variable-name="r"><set-url>https://a/</set-url><authentication-certificate certificate-id="nope" /></send-request></outbound></policies>"#;
    let error = compile(text).report.errors.first().map(ToString::to_string).unwrap_or_default();
    assert!(error.contains("unknown certificate \"nope\""), "{error}");
    for section in ["outbound", "on-error"] {
        let text = format!(
            r#"<policies><{section}><send-request response-variable-name="r"><set-url>http://a/</set-url></send-request></{section}></policies>"#
        );
        assert!(compile(&text).report.errors.is_empty(), "allowed in {section}");
    }
}

#[test]
fn wait_defers_its_calls_and_collects_them() {
    let (ops, program) = inbound_ops(&policies(
        r#"<wait for="any">
  <send-request response-variable-name="a"><set-url>http://a/</set-url></send-request>
  <choose><when condition="@(true)"><send-request response-variable-name="b"><set-url>http://b/</set-url></send-request></when></choose>
  <cache-lookup-value key="k" variable-name="c" />
</wait>
<send-request response-variable-name="d"><set-url>http://d/</set-url></send-request>"#,
    ));
    let sends: Vec<(u32, bool)> = ops
        .iter()
        .filter_map(|op| match *op {
            Op::SendRequest { variable: Some(variable), deferred, .. } => Some((variable, deferred)),
            _ => None,
        })
        .collect();
    let name = |text| inbound_const(&program, text);
    assert_eq!(sends, [(name("a"), true), (name("b"), true), (name("d"), false)]);
    let wait = ops.iter().position(|op| *op == Op::Wait { any: true }).expect("Wait");
    let last_deferred = ops.iter().rposition(|op| matches!(op, Op::SendRequest { deferred: true, .. })).unwrap_or(0);
    assert!(last_deferred < wait);
    let (ops, _) = inbound_ops(&policies(
        r#"<wait><send-request response-variable-name="a"><set-url>http://a/</set-url></send-request></wait>"#,
    ));
    assert!(ops.contains(&Op::Wait { any: false }), "for=all by default");
}

#[test]
fn return_response_takes_a_response_variable() {
    let (ops, program) = inbound_ops(&policies(r#"<return-response response-variable-name="r" />"#));
    assert!(ops.contains(&Op::BeginResponseFrom { name: inbound_const(&program, "r") }));
}

#[test]
fn refusals_name_the_construct_and_its_position() {
    let cases = [
        (r#"<send-request response-variable-name="r" />"#, "<send-request> needs <set-url> (or mode=\"copy\")"),
        (r#"<send-request><set-url>http://a/</set-url></send-request>"#, "needs response-variable-name"),
        (
            r#"<send-request mode="clone" response-variable-name="r"><set-url>http://a/</set-url></send-request>"#,
            "mode \"clone\"",
        ),
        (
            r#"<send-request response-variable-name="r"><set-url>ftp://a/</set-url></send-request>"#,
            "is not an http:// or https:// URL",
        ),
        (
            r#"<send-request response-variable-name="r" timeout="0"><set-url>http://a/</set-url></send-request>"#,
            "at least 1 second",
        ),
        (
            r#"<send-request response-variable-name="r"><set-url>http://a/</set-url><authentication-managed-identity resource="x" ignore-error="maybe" /></send-request>"#,
            "ignore-error: \"maybe\" is not true or false",
        ),
        (
            r#"<send-request response-variable-name="r"><set-url>http://a/</set-url><proxy url="http://p/" /></send-request>"#,
            "<proxy> inside <send-request> is not supported yet",
        ),
        (
            r#"<send-request response-variable-name="r"><set-url>http://a/</set-url><set-status code="200" /></send-request>"#,
            "not <set-status>",
        ),
        (
            r#"<send-request response-variable-name="r"><set-url encode="true">http://a/</set-url></send-request>"#,
            "<set-url> takes no attribute \"encode\"",
        ),
        (r#"<wait for="some" />"#, "for \"some\": expected all or any"),
        (r#"<wait><set-header name="x"><value>1</value></set-header></wait>"#, "<wait> holds send-request"),
        (r#"<wait><wait /></wait>"#, "not <wait>"),
        (
            r#"<wait><choose><when condition="@(true)"><wait /></when></choose></wait>"#,
            "<wait> cannot stand inside another <wait>",
        ),
        (
            r#"<send-one-way-request response-variable-name="r"><set-url>http://a/</set-url></send-one-way-request>"#,
            "no attribute \"response-variable-name\"",
        ),
        (r#"<set-url>http://a/</set-url>"#, "unknown policy <set-url>"),
    ];
    let error = first_error(
        r#"<policies><on-error><wait><send-request response-variable-name="a"><set-url>http://a/</set-url></send-request></wait></on-error></policies>"#,
    );
    assert!(error.contains("<wait> is not allowed in the on-error section"), "{error}");
    for (inbound, expected) in cases {
        let error = first_error(&policies(inbound));
        assert!(error.contains(expected), "{inbound}: {error}");
        assert!(error.contains("api/policy.xml:1:"), "{inbound}: {error}");
    }
}

#[test]
fn real_world_reads_of_a_response_compile() {
    let reads = [
        r#"@(((IResponse)context.Variables["r"]).Body.As<JObject>(preserveContent: true)["access_token"].ToString())"#,
        r#"@(context.Variables.GetValueOrDefault<IResponse>("r").StatusCode.ToString())"#,
        r#"@(((IResponse)context.Variables["r"]).Headers.GetValueOrDefault("Content-Type", ""))"#,
        r#"@{ var response = (IResponse)context.Variables["r"]; return response.StatusCode == 200 ? response.Body.As<string>() : "none"; }"#,
    ];
    for read in reads {
        let text = policies(&format!(
            r#"<send-request mode="new" response-variable-name="r" timeout="20" ignore-error="true"><set-url>https://login.example.com/</set-url><set-method>POST</set-method></send-request>
<set-header name="X-Out" exists-action="override"><value>{read}</value></set-header>"#
        ));
        let compiled = compile(&text);
        assert!(compiled.report.errors.is_empty(), "{read}: {:?}", compiled.report.errors);
    }
}
