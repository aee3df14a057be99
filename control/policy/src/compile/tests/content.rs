//! Content policies: `set-body template="liquid"` (and, below, the validation family).

use portcullis_contract::program::{Const, Op, Side, ValidateAs, ValidationAction};

use super::{compile, compile_with, first_error};
use crate::compile::{Fragments, Options};
use crate::named_values::{NamedValue, NamedValues};

fn liquid_op(text: &str, section: usize) -> (Op, String) {
    let compiled = compile(text);
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let program = compiled.programs[section].clone().expect("compiled");
    let op = *program.ops.iter().find(|op| matches!(op, Op::SetBodyLiquid { .. })).expect("SetBodyLiquid");
    let Op::SetBodyLiquid { template, .. } = op else { unreachable!() };
    let Some(Const::Liquid(source)) = program.consts.get(template as usize).cloned() else { panic!("no template") };
    (op, source)
}

#[test]
fn a_liquid_body_compiles_to_its_template_and_reads_the_sections_body() {
    let (op, source) = liquid_op(
        r#"<policies><inbound/><backend/><outbound><set-body template="liquid">{"r": "{{body.choices[0].message.content}}"}</set-body></outbound></policies>"#,
        2,
    );
    assert_eq!(op, Op::SetBodyLiquid { side: Side::Response, template: 0, body: Some(Side::Response) });
    assert_eq!(source, r#"{"r": "{{body.choices[0].message.content}}"}"#);
    // Inside return-response in inbound: builds the returned response; `body` is the request's.
    let (op, _) = liquid_op(
        r#"<policies><inbound><return-response><set-body template="liquid">{% for h in context.Request.Headers %}{{- h[0] }}{% endfor %}</set-body></return-response></inbound></policies>"#,
        0,
    );
    assert!(matches!(op, Op::SetBodyLiquid { side: Side::Returned, body: None, .. }), "{op:?}");
}

#[test]
fn named_values_fill_liquid_placeholders_only_where_they_exist() {
    let mut values = NamedValues::default();
    values.insert("greeting", NamedValue { value: "hello".into(), secret: false });
    let text = r#"<policies><inbound><set-body template="liquid">{{greeting}} {{ context.Request.Method }} {{ other }}</set-body></inbound></policies>"#;
    let compiled = compile_with(text, &values, &Fragments::default(), Options::default());
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let program = compiled.programs[0].clone().expect("inbound");
    assert!(program.consts.contains(&Const::Liquid("hello {{ context.Request.Method }} {{ other }}".into())));
}

#[test]
fn a_bad_liquid_template_is_refused_at_its_position() {
    let error = first_error(
        "<policies><inbound><set-body template=\"liquid\">line one\n{{ x | NoSuchFilter }}</set-body></inbound></policies>",
    );
    assert!(error.contains("api/policy.xml:2:8"), "{error}");
    assert!(error.contains("set-body liquid template") && error.contains("NoSuchFilter"), "{error}");
    let error =
        first_error(r#"<policies><inbound><set-body template="liquid">{% if x %}open</set-body></inbound></policies>"#);
    assert!(error.contains("set-body liquid template"), "{error}");
    let error = first_error(r#"<policies><inbound><set-body template="mustache">x</set-body></inbound></policies>"#);
    assert!(error.contains("\"mustache\" is not supported"), "{error}");
}

#[test]
fn validate_content_compiles_to_its_rule() {
    let compiled = compile(
        r#"<policies><inbound><validate-content unspecified-content-type-action="prevent" max-size="102400" size-exceeded-action="detect" errors-variable-name="validationErrors">
    <content type="Application/JSON" validate-as="json" action="prevent" allow-additional-properties="false" />
    <content type="text/xml" validate-as="soap" action="detect" />
</validate-content></inbound><outbound><validate-content unspecified-content-type-action="ignore"><content type="application/json" validate-as="json" action="detect" /></validate-content></outbound></policies>"#,
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].clone().expect("inbound");
    assert!(inbound.ops.contains(&Op::ValidateContent(0)));
    let rule = &inbound.content_validations[0];
    assert_eq!(rule.side, Side::Request);
    assert_eq!((rule.max_size_bytes, rule.size_exceeded), (Some(102_400), ValidationAction::Detect));
    assert_eq!(rule.errors_variable.as_deref(), Some("validationErrors"));
    assert_eq!(rule.contents[0].content_type, "application/json");
    assert_eq!(rule.contents[0].allow_additional_properties, Some(false));
    assert_eq!(rule.contents[1].validate_as, ValidateAs::Soap);
    let outbound = compiled.programs[2].clone().expect("outbound");
    assert_eq!(outbound.content_validations[0].side, Side::Response);
}

#[test]
fn validate_content_refusals_name_the_attribute() {
    let doc = |inner: &str| format!("<policies><inbound>{inner}</inbound></policies>");
    let error = first_error(&doc(r#"<validate-content unspecified-content-type-action="block" />"#));
    assert!(error.contains("\"block\" is not ignore, prevent or detect"), "{error}");
    let error = first_error(&doc(
        r#"<validate-content unspecified-content-type-action="ignore"><content type="application/json" validate-as="json" schema-id="orders" action="prevent" /></validate-content>"#,
    ));
    assert!(error.contains("schema-id") && error.contains("not in Portcullis' configuration"), "{error}");
    let error = first_error(&doc(
        r#"<validate-content unspecified-content-type-action="ignore"><content type="application/json" validate-as="yaml" action="prevent" /></validate-content>"#,
    ));
    assert!(error.contains("\"yaml\" is not json, xml or soap"), "{error}");
    let error = first_error(&doc(r#"<validate-content unspecified-content-type-action="ignore" max-size="10" />"#));
    assert!(error.contains("max-size needs size-exceeded-action"), "{error}");
    let error = first_error(
        r#"<policies><inbound/><backend><validate-content unspecified-content-type-action="ignore" /></backend></policies>"#,
    );
    assert!(error.contains("validate-content"), "{error}");
}

#[test]
fn dotliquid_dictionary_entries_become_liquid_pairs() {
    let (_, source) = liquid_op(
        r#"<policies><inbound><return-response><set-body template="liquid">{% for header in context.Request.Headers %}{{- header.Key }}: {{ header.Value }} {{ header.Keys }}{% endfor %}{{ header.Key }}{% for x in body.items %}{{ x.Key }}{% endfor %}</set-body></return-response></inbound></policies>"#,
        0,
    );
    assert_eq!(
        source,
        "{% for header in context.Request.Headers %}{{- header[0] }}: {{ header[1] }} {{ header.Keys }}{% endfor %}{{ header.Key }}{% for x in body.items %}{{ x.Key }}{% endfor %}"
    );
}

#[test]
fn redirect_content_urls_rewrites_the_sections_message() {
    let compiled = compile(
        "<policies><inbound><redirect-content-urls /></inbound><backend/><outbound><redirect-content-urls /></outbound></policies>",
    );
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    assert!(
        compiled.programs[0].clone().expect("inbound").ops.contains(&Op::RedirectContentUrls { side: Side::Request })
    );
    assert!(
        compiled.programs[2].clone().expect("outbound").ops.contains(&Op::RedirectContentUrls { side: Side::Response })
    );
    let error =
        first_error("<policies><inbound><redirect-content-urls><x/></redirect-content-urls></inbound></policies>");
    assert!(error.contains("redirect-content-urls"), "{error}");
}
