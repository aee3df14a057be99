use std::sync::Arc;

use portcullis_contract::program::{ExistsAction, Op, ScopeKind, Section, Side};

use super::*;
use crate::named_values::NamedValue;
use crate::scope::{self, Document, Fragment};

struct Compiled {
    programs: Vec<Option<Program>>,
    report: Report,
}

fn compile_with(text: &str, values: &NamedValues, fragments: &Fragments, options: Options) -> Compiled {
    let document = Document::parse(Arc::new(SourceFile::new("api/policy.xml", text)), ScopeKind::Api).unwrap();
    let backends = std::collections::BTreeSet::from(["pool".to_owned()]);
    let certificates = test_certificates();
    let env = Environment {
        named_values: values,
        fragments,
        backends: &backends,
        certificates: &certificates,
        responses: &[],
        options,
    };
    let mut report = Report::default();
    let programs = Section::ALL
        .into_iter()
        .map(|section| compile_section(&scope::merge(&[&document], section).unwrap(), section, env, &mut report))
        .collect();
    Compiled { programs, report }
}

fn compile(text: &str) -> Compiled {
    compile_with(text, &NamedValues::default(), &Fragments::default(), Options::default())
}

fn first_error(text: &str) -> String {
    let compiled = compile(text);
    compiled.report.errors.first().map(ToString::to_string).unwrap_or_else(|| "no error".into())
}

#[test]
fn a_typical_inbound_section_compiles_to_verified_ops() {
    let compiled = compile(
        r#"<policies><inbound>
  <check-header name="X-Client" failed-check-httpcode="403" failed-check-error-message="no" ignore-case="true"><value>a</value><value>b</value></check-header>
  <set-header name="X-A" exists-action="override"><value>1</value></set-header>
  <set-header name="X-B" exists-action="append"><value>2</value><value>@(context.Request.Method)</value></set-header>
  <set-header name="X-C" exists-action="delete" />
  <rewrite-uri template="/v2/{id}" copy-unmatched-params="false" />
  <choose>
    <when condition="@(context.Request.Headers.GetValueOrDefault("X-Env", "") == "prod")"><set-variable name="env" value="prod" /></when>
    <otherwise><set-variable name="env" value="@(1 + 2)" /></otherwise>
  </choose>
</inbound></policies>"#,
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].as_ref().unwrap();
    // Literal operands are fused into the policy ops (see policy::fuse).
    assert!(inbound.ops.iter().any(|op| matches!(
        op,
        Op::CheckHeaderConst { values: 2, ignore_case: true, status: 403, message: Some(_), .. }
    )));
    assert!(inbound.ops.contains(&Op::SetHeaderConst {
        side: Side::Request,
        action: ExistsAction::Override,
        name: inbound_const(inbound, "X-A"),
        value: inbound_const(inbound, "1"),
    }));
    assert!(inbound.ops.contains(&Op::RequestHeader {
        name: inbound_const(inbound, "X-Env"),
        default: Some(inbound_const(inbound, "")),
    }));
    assert!(inbound.ops.contains(&Op::SetHeader {
        side: Side::Request,
        action: ExistsAction::Append,
        name: inbound_const(inbound, "X-B"),
        values: 2
    }));
    assert!(inbound.ops.contains(&Op::SetHeader {
        side: Side::Request,
        action: ExistsAction::Delete,
        name: inbound_const(inbound, "X-C"),
        values: 0
    }));
    assert!(
        inbound
            .ops
            .contains(&Op::RewriteUriConst { template: inbound_const(inbound, "/v2/{id}"), copy_unmatched: false })
    );
    assert_eq!(
        inbound.sites.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        [
            "check-header[1]",
            "set-header[1]",
            "set-header[2]",
            "set-header[3]",
            "rewrite-uri[1]",
            "choose[1]",
            "choose[1]/when[1]/set-variable[1]",
            "choose[1]/otherwise[1]/set-variable[1]",
        ]
    );
    assert!(inbound.sites.iter().all(|s| s.scope == ScopeKind::Api && s.section == Section::Inbound));
    // The backend section inherited the built-in forward-request.
    let backend = compiled.programs[1].as_ref().unwrap();
    assert!(backend.ops.iter().any(|op| matches!(op, Op::ForwardRequest { timeout_ms: 300_000, .. })));
}

fn inbound_const(program: &Program, text: &str) -> u32 {
    program.consts.iter().position(|c| matches!(c, portcullis_contract::program::Const::Str(s) if s == text)).unwrap()
        as u32
}

#[test]
fn unsupported_and_unknown_policies_are_errors_with_positions() {
    let error =
        first_error("<policies><inbound>\n  <xsl-transform><xsl:stylesheet /></xsl-transform>\n</inbound></policies>");
    assert!(error.contains("unsupported policy <xsl-transform>"), "{error}");
    assert!(error.contains("api/policy.xml:2:4"), "{error}");
    assert!(error.contains("--skip-unsupported"), "{error}");
    let error = first_error("<policies><inbound><set-heder name=\"x\"/></inbound></policies>");
    assert!(error.contains("unknown policy <set-heder>"), "{error}");
    let error = first_error("<policies><outbound><rewrite-uri template=\"/x\"/></outbound></policies>");
    assert!(error.contains("not allowed in the outbound section"), "{error}");
    let error = first_error(
        "<policies><inbound><set-header name=\"x\" exist-action=\"skip\"><value>1</value></set-header></inbound></policies>",
    );
    assert!(error.contains("no attribute \"exist-action\""), "{error}");
}

#[test]
fn emit_metric_compiles_default_and_computed_dimensions() {
    let compiled = compile(
        r#"<policies><inbound>
  <emit-metric name="Request" value="1" namespace="shop">
    <dimension name="API ID" />
    <dimension name="Client IP" value="@(context.Request.IpAddress)" />
  </emit-metric>
  <emit-metric name="Calls" />
</inbound></policies>"#,
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].as_ref().unwrap();
    let emits: Vec<(u32, u32, Vec<String>)> = inbound
        .ops
        .iter()
        .filter_map(|op| match *op {
            Op::EmitMetric { name, namespace, names_first, dimensions } => {
                let names: Vec<String> =
                    (0..u32::from(dimensions)).map(|n| inbound_string(inbound, names_first + n)).collect();
                Some((name, namespace, names))
            }
            _ => None,
        })
        .collect();
    assert_eq!(emits.len(), 2);
    assert_eq!(emits[0].2, ["API ID", "Client IP"]);
    assert_eq!(
        (inbound_string(inbound, emits[0].0), inbound_string(inbound, emits[0].1)),
        ("Request".into(), "shop".into())
    );
    assert_eq!(inbound_string(inbound, emits[1].1), "API Management");
    assert!(emits[1].2.is_empty());

    for (text, expected) in [
        (r#"<emit-metric value="1" />"#, "needs name="),
        (r#"<emit-metric name="x" value="many" />"#, "value must be a number"),
        (r#"<emit-metric name="x"><dimension name="Color" /></emit-metric>"#, "needs a value (only API ID"),
        (r#"<emit-metric name="x"><dimension name="@(&quot;a&quot;)" value="1" /></emit-metric>"#, "fixed names"),
        (r#"<emit-metric name="x"><value>1</value></emit-metric>"#, "holds <dimension>"),
    ] {
        let error = first_error(&format!("<policies><inbound>{text}</inbound></policies>"));
        assert!(error.contains(expected), "{text}: {error}");
        assert!(error.contains("api/policy.xml:1:"), "{error}");
    }
    let eleven: String = (0..11).map(|n| format!(r#"<dimension name="d{n}" value="v" />"#)).collect();
    let error = first_error(&format!(
        r#"<policies><inbound><emit-metric name="x">{eleven}</emit-metric></inbound></policies>"#
    ));
    assert!(error.contains("at most 10"), "{error}");
}

/// The string constant at `index` (any constant that is not a string: empty).
fn inbound_string(program: &Program, index: u32) -> String {
    match &program.consts.get(index as usize) {
        Some(portcullis_contract::program::Const::Str(text)) => text.clone(),
        _ => String::new(),
    }
}

#[test]
fn skip_unsupported_turns_errors_into_warnings() {
    let options = Options { skip_unsupported: true, allow_unknown_references: false };
    let compiled = compile_with(
        "<policies><inbound><log-to-eventhub logger-id=\"a\"/><set-header name=\"x\"><value>1</value></set-header></inbound></policies>",
        &NamedValues::default(),
        &Fragments::default(),
        options,
    );
    assert!(compiled.report.errors.is_empty());
    assert_eq!(compiled.report.warnings.len(), 1);
    assert!(compiled.report.warnings[0].message.contains("skipped"));
    assert!(compiled.programs[0].is_some());
}

#[test]
fn expression_errors_point_into_the_attribute() {
    let text =
        "<policies><inbound><set-variable name=\"x\" value=\"@(context.Request.Hedaers)\" /></inbound></policies>";
    let compiled = compile(text);
    let error = &compiled.report.errors[0];
    let column = text.find("Hedaers").unwrap() + 1;
    assert_eq!(error.location.unwrap().column, column, "{error}");
}

#[test]
fn an_expression_that_fails_half_way_is_reported_once_not_as_a_compiler_bug() {
    // Found by the policy_compile fuzz target: a block that failed after emitting some ops left
    // values on the stack, and the failed section then did not verify ("internal compiler
    // error (please report)") on top of the real error.
    for expression in [
        "@{ var a = null; return 1; }",
        "@{ int a = \"x\"; return a; }",
        "@{ var a = 1; a = \"x\"; return a; }",
        "@{ if (1) { return 1; } return 2; }",
        "@{ foreach (var c in 5) { } return 1; }",
    ] {
        let text = format!(
            "<policies><inbound><set-variable name=\"v\" value=\"{}\" /><set-header name=\"X-A\"><value>1</value></set-header></inbound></policies>",
            expression.replace('"', "&quot;")
        );
        let compiled = compile(&text);
        let messages: Vec<&str> = compiled.report.errors.iter().map(|error| error.message.as_str()).collect();
        assert_eq!(messages.len(), 1, "{expression}: {messages:?}");
        assert!(!messages[0].contains("internal compiler error"), "{expression}: {messages:?}");
        assert!(compiled.programs[0].is_none(), "{expression}: a section with an error has no program");
    }
}

#[test]
fn named_values_and_fragments() {
    let mut values = NamedValues::default();
    values.insert("tenant", NamedValue { value: "contoso".into(), secret: false });
    values.insert("token", NamedValue { value: "s3cr3t".into(), secret: true });
    let mut fragments = Fragments::default();
    let fragment = Fragment::parse(Arc::new(SourceFile::new(
        "fragments/common.xml",
        "<fragment><set-header name=\"X-Tenant\"><value>{{tenant}}</value></set-header></fragment>",
    )))
    .unwrap();
    fragments.insert("common".into(), fragment);
    let compiled = compile_with(
        "<policies><inbound><include-fragment fragment-id=\"common\"/><set-header name=\"Authorization\"><value>Bearer {{token}}</value></set-header><set-variable name=\"t\" value=\"@(&quot;{{tenant}}&quot;.ToUpper())\"/></inbound></policies>",
        &values,
        &fragments,
        Options::default(),
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].as_ref().unwrap();
    inbound_const(inbound, "contoso");
    inbound_const(inbound, "Bearer s3cr3t");
    assert!(inbound.sites[0].location.starts_with("fragments/common.xml:1:"));
    let rendered = crate::explain::render_program(Section::Inbound, inbound, &values.secret_values());
    assert!(!rendered.contains("s3cr3t") && rendered.contains("Bearer ***"), "{rendered}");

    let error = first_error("<policies><inbound><include-fragment fragment-id=\"missing\"/></inbound></policies>");
    assert!(error.contains("unknown fragment \"missing\""), "{error}");
    let error = first_error(
        "<policies><inbound><set-header name=\"a\"><value>{{nope}}</value></set-header></inbound></policies>",
    );
    assert!(error.contains("unknown named value"), "{error}");
}

#[test]
fn named_values_are_substituted_in_the_texts_of_access_policies() {
    // check-header values, cors lists and ip-filter addresses are element texts; APIM substitutes
    // named values there as anywhere in a document (found by the issue-17 corpus: a partner key
    // check against `{{partner-key}}` compared with the placeholder itself).
    let mut values = NamedValues::default();
    values.insert("key", NamedValue { value: "k-123".into(), secret: true });
    values.insert("portal", NamedValue { value: "portal.contoso.example".into(), secret: false });
    values.insert("office", NamedValue { value: "10.1.2.3".into(), secret: false });
    values.insert("last", NamedValue { value: "10.1.2.9".into(), secret: false });
    let compiled = compile_with(
        r#"<policies><inbound>
          <check-header name="X-Key"><value>{{key}}</value><value>fixed</value></check-header>
          <cors><allowed-origins><origin>https://{{portal}}</origin></allowed-origins><allowed-headers><header>X-{{portal}}</header></allowed-headers></cors>
          <ip-filter action="allow"><address>{{office}}</address><address-range from="{{office}}" to="{{last}}" /></ip-filter>
        </inbound></policies>"#,
        &values,
        &Fragments::default(),
        Options::default(),
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].as_ref().unwrap();
    inbound_const(inbound, "k-123");
    inbound_const(inbound, "fixed");
    assert_eq!(inbound.cors[0].allowed_origins, ["https://portal.contoso.example"]);
    assert_eq!(inbound.cors[0].allowed_headers, ["x-portal.contoso.example"]);
    let office = access::ip_bits("10.1.2.3".parse().unwrap());
    let last = access::ip_bits("10.1.2.9".parse().unwrap());
    let ranges: Vec<(u128, u128)> = inbound.ip_filters[0].ranges.iter().map(|r| (r.first, r.last)).collect();
    assert_eq!(ranges, [(office, office), (office, last)]);
    let rendered = crate::explain::render_program(Section::Inbound, inbound, &values.secret_values());
    assert!(!rendered.contains("k-123"), "{rendered}");

    // An unknown name is an error there too, or a warning with --allow-unknown.
    let error = first_error(
        "<policies><inbound><check-header name=\"X-Key\"><value>{{nope}}</value></check-header></inbound></policies>",
    );
    assert!(error.contains("unknown named value \"nope\""), "{error}");
    let lenient = compile_with(
        "<policies><inbound><ip-filter action=\"allow\"><address>{{nope}}</address></ip-filter></inbound></policies>",
        &NamedValues::default(),
        &Fragments::default(),
        Options { allow_unknown_references: true, ..Options::default() },
    );
    assert!(lenient.report.warnings.iter().any(|w| w.to_string().contains("nope")), "{:?}", lenient.report.warnings);
}

#[test]
fn a_relative_rewrite_uri_template_says_what_it_must_be() {
    let error = first_error("<policies><inbound><rewrite-uri template=\"v2/orders\"/></inbound></policies>");
    assert!(error.contains("a rewrite-uri template must start with '/'"), "{error}");
}

#[test]
fn an_error_inside_an_attribute_with_entities_points_at_its_own_line_and_column() {
    // The value is unescaped before it compiles; the error's position is mapped back through the
    // entities (it pointed at the start of the value).
    let compiled = compile(
        "<policies><inbound>\n<set-variable name=\"a\"\n  value=\"@{\n    var s = &quot;x&lt;y&quot;;\n    return s.Nope();\n  }\" />\n</inbound></policies>",
    );
    let error = compiled.report.errors.first().expect("an error");
    assert!(error.message.contains("Nope"), "{error}");
    assert_eq!(error.location, Some(crate::diagnostic::Location { line: 5, column: 14 }), "{error}");
    assert!(error.to_string().ends_with(" 5 |     return s.Nope();\n   |              ^^^^"), "{error}");
    // Character references too.
    let compiled = compile(
        "<policies><inbound><set-variable name=\"a\" value=\"@(&#34;&#x41;&#34;.Nope())\" /></inbound></policies>",
    );
    let error = compiled.report.errors.first().expect("an error");
    let column = "<policies><inbound><set-variable name=\"a\" value=\"@(&#34;&#x41;&#34;.".chars().count() + 1;
    assert_eq!(error.location, Some(crate::diagnostic::Location { line: 1, column }), "{error}");
}

#[test]
fn retry_and_limit_concurrency_wrap_their_children() {
    let compiled = compile(
        r#"<policies><backend><retry condition="@(context.Response.StatusCode >= 500)" count="3" interval="1" first-fast-retry="true"><limit-concurrency key="@(context.Request.IpAddress)" max-count="2"><forward-request timeout="5"/></limit-concurrency></retry></backend></policies>"#,
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let backend = compiled.programs[1].as_ref().unwrap();
    assert!(
        backend
            .ops
            .iter()
            .any(|op| matches!(op, Op::RetryNext { count: 3, interval_ms: 1000, first_fast_retry: true, .. }))
    );
    assert!(backend.ops.contains(&Op::LimitConcurrencyEnter { max: 2 }));
    assert!(backend.ops.contains(&Op::LimitConcurrencyExit));
    assert!(backend.ops.iter().any(|op| matches!(op, Op::ForwardRequest { timeout_ms: 5000, .. })));
    assert!(
        first_error("<policies><backend><retry condition=\"@(true)\" count=\"51\"/></backend></policies>")
            .contains("1 to 50")
    );
}

#[test]
fn conversions_check_their_literal_attributes() {
    let compiled = compile(
        r##"<policies><inbound><xml-to-json kind="direct" apply="always" consider-accept-header="false" />
<json-to-xml apply="@(context.Variables.GetValueOrDefault<string>(&quot;apply&quot;, &quot;always&quot;))" namespace-prefix="xmlns" attribute-block-name="#attrs" parse-date="false" /></inbound>
<outbound><jsonp callback-parameter-name="cb" /></outbound></policies>"##,
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let ops = &compiled.programs[0].as_ref().unwrap().ops;
    assert!(ops.iter().any(|op| matches!(op, Op::XmlToJson { side: Side::Request })), "{ops:?}");
    assert!(ops.iter().any(|op| matches!(op, Op::JsonToXml { side: Side::Request, parse_date: false })), "{ops:?}");
    let error =
        first_error("<policies><inbound>\n<xml-to-json kind=\"friendly\" apply=\"always\" /></inbound></policies>");
    assert!(error.contains("kind: \"friendly\" is not one of javascript-friendly, direct"), "{error}");
    assert!(error.contains(":2:20"), "{error}");
    let error = first_error("<policies><inbound><json-to-xml consider-accept-header=\"false\" /></inbound></policies>");
    assert!(error.contains("<json-to-xml> needs apply=\"...\""), "{error}");
    let error =
        first_error("<policies><inbound><json-to-xml apply=\"always\" parse-date=\"@(true)\" /></inbound></policies>");
    assert!(error.contains("does not accept policy expressions"), "{error}");
    let error = first_error("<policies><inbound><jsonp callback-parameter-name=\"cb\" /></inbound></policies>");
    assert!(error.contains("not allowed in the inbound section"), "{error}");
}

#[test]
fn access_policies_validate_their_rules() {
    let compiled = compile(
        r#"<policies><inbound><ip-filter action="allow"><address>10.0.0.1</address><address-range from="192.168.0.0" to="192.168.0.255"/><address>::1</address></ip-filter>
<cors allow-credentials="true"><allowed-origins><origin>https://a.example</origin></allowed-origins><allowed-methods preflight-result-max-age="300"><method>get</method></allowed-methods><allowed-headers><header>X-Key</header></allowed-headers></cors></inbound></policies>"#,
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].as_ref().unwrap();
    assert_eq!(inbound.ip_filters[0].ranges.len(), 3);
    assert_eq!(inbound.cors[0].allowed_methods, ["GET"]);
    assert_eq!(inbound.cors[0].preflight_max_age_s, Some(300));
    assert!(first_error("<policies><inbound><ip-filter action=\"allow\"><address>10.0.0.300</address></ip-filter></inbound></policies>").contains("not an IPv4 or IPv6"));
    assert!(first_error("<policies><inbound><cors allow-credentials=\"true\"><allowed-origins><origin>*</origin></allowed-origins></cors></inbound></policies>").contains("wildcard"));
}

#[test]
fn return_response_builds_a_response() {
    let compiled = compile(
        r#"<policies><inbound><return-response><set-status code="418" reason="Teapot"/><set-header name="X" exists-action="override"><value>y</value></set-header><set-body>short and stout</set-body></return-response></inbound></policies>"#,
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].as_ref().unwrap();
    assert!(inbound.ops.contains(&Op::BeginResponse));
    assert!(inbound.ops.contains(&Op::SetStatus { side: Side::Returned }));
    assert!(inbound.ops.contains(&Op::SetBody { side: Side::Returned }));
    assert_eq!(inbound.ops.last(), Some(&Op::Respond));
}

#[test]
fn forward_request_options_compile_into_the_op() {
    let compiled = compile(
        "<policies><backend><forward-request timeout=\"20\" follow-redirects=\"true\" fail-on-error-status-code=\"true\" buffer-request-body=\"true\" buffer-response=\"false\"/></backend></policies>",
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let backend = compiled.programs[1].as_ref().unwrap();
    assert!(backend.ops.contains(&Op::ForwardRequest {
        timeout_ms: 20_000,
        follow_redirects: true,
        buffer_response: false,
        fail_on_error_status: true,
    }));
    // false is the default behaviour, and accepted; anything but a boolean is an error.
    let compiled =
        compile("<policies><backend><forward-request follow-redirects=\"false\" timeout=\"20\"/></backend></policies>");
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let error =
        first_error("<policies><backend><forward-request fail-on-error-status-code=\"yes\"/></backend></policies>");
    assert_ne!(error, "no error");
    // Expressions (as APIM allows) are computed per request: the op takes them from the stack,
    // the timeout in seconds scaled to milliseconds, the flags not given as false.
    let compiled = compile(
        "<policies><backend><forward-request timeout=\"@(3 + 4)\" follow-redirects=\"@(true)\" buffer-response=\"false\"/></backend></policies>",
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let backend = compiled.programs[1].as_ref().unwrap();
    let tail = &backend.ops[backend.ops.len() - 4..];
    assert_eq!(tail, [Op::Mul, Op::Bool(true), Op::Bool(false), Op::ForwardRequestComputed { buffer_response: false }]);
    let error =
        first_error("<policies><backend><forward-request timeout=\"@(1)\" timeout-ms=\"@(2)\"/></backend></policies>");
    assert!(error.contains("not both"), "{error}");
}

#[test]
fn validate_client_certificate_compiles_rules_and_identities() {
    let compiled = compile(
        r#"<policies><inbound>
  <validate-client-certificate validate-revocation="false" validate-trust="true" ignore-error="false">
    <identities>
      <identity subject="CN=client" issuer-certificate-id="ca" />
      <identity thumbprint="ab12" dns-name="api.test" />
    </identities>
  </validate-client-certificate>
</inbound></policies>"#,
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].as_ref().unwrap();
    assert!(inbound.ops.contains(&Op::ValidateClientCertificate(0)), "{:?}", inbound.ops);
    let check = &inbound.client_certificate_checks[0];
    assert!(
        !check.validate_revocation && check.validate_trust && check.validate_not_before && check.validate_not_after
    );
    assert!(!check.ignore_error);
    assert_eq!(check.identities.len(), 2);
    assert_eq!(check.identities[0].subject.as_deref(), Some("CN=client"));
    assert_eq!(check.identities[0].issuer_certificate_id.as_deref(), Some("ca"));
    assert_eq!(check.identities[1].thumbprint.as_deref(), Some("ab12"));
    assert_eq!(check.identities[1].dns_name.as_deref(), Some("api.test"));
}

#[test]
fn certificate_policies_refuse_what_apim_refuses() {
    let error = first_error(
        "<policies><inbound><validate-client-certificate>\n<identities><identity subjekt=\"CN=a\"/></identities></validate-client-certificate></inbound></policies>",
    );
    assert!(error.contains("no attribute \"subjekt\""), "{error}");
    assert!(error.contains("api/policy.xml:2:23"), "{error}");
    let error = first_error(
        "<policies><inbound><validate-client-certificate><identities><identity issuer-certificate-id=\"nope\"/></identities></validate-client-certificate></inbound></policies>",
    );
    assert!(error.contains("unknown certificate \"nope\""), "{error}");
    let error = first_error(
        "<policies><inbound><validate-client-certificate validate-trust=\"@(true)\"/></inbound></policies>",
    );
    assert!(error.contains("does not accept policy expressions"), "{error}");
    let eleven = "<identity common-name=\"a\"/>".repeat(11);
    let error = first_error(&format!(
        "<policies><inbound><validate-client-certificate><identities>{eleven}</identities></validate-client-certificate></inbound></policies>"
    ));
    assert!(error.contains("at most 10 <identity>"), "{error}");
    let error = first_error("<policies><outbound><validate-client-certificate/></outbound></policies>");
    assert!(error.contains("not allowed in the outbound section"), "{error}");
    let error = first_error("<policies><inbound><authentication-certificate/></inbound></policies>");
    assert!(error.contains("needs certificate-id"), "{error}");
    let error = first_error(
        "<policies><inbound><authentication-certificate certificate-id=\"client\" thumbprint=\"AB\"/></inbound></policies>",
    );
    assert!(error.contains("not several"), "{error}");
    let error = first_error(
        "<policies><inbound><authentication-certificate body=\"@(context.Variables[&quot;p12&quot;])\" password=\"x\"/></inbound></policies>",
    );
    assert!(error.contains("is not supported"), "{error}");
    let error =
        first_error("<policies><inbound><authentication-certificate certificate-id=\"other\"/></inbound></policies>");
    assert!(error.contains("unknown certificate \"other\""), "{error}");
}

#[test]
fn authentication_certificate_takes_an_id_a_thumbprint_or_an_expression() {
    for (policy, by_thumbprint) in [
        (r#"<authentication-certificate certificate-id="client" />"#, false),
        (r#"<authentication-certificate thumbprint="AB12" />"#, true),
        (r#"<authentication-certificate certificate-id="@(&quot;cli&quot; + &quot;ent&quot;)" />"#, false),
    ] {
        let compiled = compile(&format!("<policies><inbound>{policy}</inbound></policies>"));
        assert!(compiled.report.errors.is_empty(), "{policy}: {:?}", compiled.report.errors);
        let ops = &compiled.programs[0].as_ref().unwrap().ops;
        assert!(ops.contains(&Op::AuthenticationCertificate { by_thumbprint }), "{policy}: {ops:?}");
    }
}
mod cache;
mod content;
mod identity;
/// The certificates the compile tests know: `signer` (an RSA public key).
fn test_certificates() -> Certificates {
    let material = portcullis_contract::jwt::KeyMaterial::RsaDer(vec![0x30, 0x00]);
    ["signer", "ca", "client"].into_iter().map(|id| (id.to_owned(), material.clone())).collect()
}

mod jwt;
mod outbound;
mod positions;
