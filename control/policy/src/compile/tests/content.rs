//! Content policies: `set-body template="liquid"` (and, below, the validation family).

use portcullis_contract::program::{Const, Op, Side};

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
