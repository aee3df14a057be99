//! Where diagnostics point (entities in attribute values, named values), what
//! `allow_unknown_references` substitutes, and the messages found by running real documents.

use super::{compile, compile_with, first_error};
use crate::compile::Options;
use crate::named_values::{NamedValue, NamedValues};
use crate::scope::Fragments;

fn location_of(text: &str, options: Options) -> (usize, usize, String) {
    let compiled = compile_with(text, &NamedValues::default(), &Fragments::default(), options);
    let error = compiled.report.errors.first().expect("an error");
    let location = error.location.expect("a location");
    (location.line, location.column, error.message.clone())
}

#[test]
fn an_error_inside_a_value_written_with_entities_points_at_its_own_line_and_column() {
    let text = "<policies><inbound>\n<set-variable name=\"x\" value=\"@(&quot;a&quot; + &#10;context.Request.Hedaers)\" />\n</inbound></policies>";
    let (line, column, message) = location_of(text, Options::default());
    assert!(message.contains("Hedaers"), "{message}");
    let expected = text.lines().nth(1).unwrap().find("Hedaers").unwrap() + 1;
    assert_eq!((line, column), (2, expected));
    // `&lt;` and `&amp;` too.
    let text = "<policies><inbound><set-variable name=\"x\" value=\"@(1 &lt; 2 &amp;&amp; context.Reqest.Method == &quot;GET&quot;)\" /></inbound></policies>";
    let (_, column, _) = location_of(text, Options::default());
    assert_eq!(column, text.find("Reqest").unwrap() + 1);
}

#[test]
fn an_unknown_named_value_in_code_becomes_a_placeholder_and_real_errors_still_show() {
    let options = Options { allow_unknown_references: true, ..Options::default() };
    // Alone: the expression compiles, with a warning.
    let text = "<policies><inbound><set-variable name=\"x\" value=\"@(context.Request.Url.Port > {{port}} ? 1 : 2)\" /><set-header name=\"X-A\" exists-action=\"override\"><value>@(&quot;Bearer {{token}}&quot;)</value></set-header></inbound></policies>";
    let compiled = compile_with(text, &NamedValues::default(), &Fragments::default(), options);
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let warnings: Vec<&str> = compiled.report.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("\"port\"") && warnings[0].contains("placeholder"), "{warnings:?}");
    assert!(warnings[1].contains("\"token\"") && warnings[1].contains("left as written"), "{warnings:?}");
    // With a real error after it: that error, at its own column (after the placeholder).
    let text = "<policies><inbound><set-variable name=\"x\" value=\"@({{a}} + context.Request.Hedaers)\" /></inbound></policies>";
    let (_, column, message) = location_of(text, options);
    assert!(message.contains("Hedaers"), "{message}");
    assert_eq!(column, text.find("Hedaers").unwrap() + 1);
    // Known values still substitute, and positions after them still hold.
    let mut values = NamedValues::default();
    values.insert("n", NamedValue { value: "12345".into(), secret: false });
    let text = "<policies><inbound><set-variable name=\"x\" value=\"@({{n}} + context.Request.Hedaers)\" /></inbound></policies>";
    let compiled = compile_with(text, &values, &Fragments::default(), Options::default());
    let error = &compiled.report.errors[0];
    assert_eq!(error.location.unwrap().column, text.find("Hedaers").unwrap() + 1, "{error}");
}

#[test]
fn a_failed_expression_is_not_also_an_internal_compiler_error() {
    // The repro, with a type that stays unsupported: one error, at the type.
    let text = "<policies><inbound><set-variable name=\"x\" value='@(\"a\" + new Foo(\"x\").Host)' /><set-header name=\"X-A\"><value>1</value></set-header></inbound></policies>";
    let compiled = compile(text);
    let messages: Vec<&str> = compiled.report.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(!messages[0].contains("internal compiler error"), "{messages:?}");
}

#[test]
fn rewrite_uri_says_the_template_must_start_with_a_slash() {
    let error = first_error("<policies><inbound><rewrite-uri template=\"v2/x\" /></inbound></policies>");
    assert!(error.contains("must start with '/'"), "{error}");
}

#[test]
fn unknown_named_values_in_numbers_and_urls_are_checked_where_they_are_defined() {
    let allow = Options { allow_unknown_references: true, ..Options::default() };
    let text = "<policies><inbound><send-request mode=\"new\" response-variable-name=\"r\" timeout=\"{{bff-timeout}}\"><set-url>https://a.example/</set-url></send-request><validate-jwt header-name=\"Authorization\"><openid-config url=\"{{metadata-url}}\" /></validate-jwt></inbound></policies>";
    let compiled = compile_with(text, &NamedValues::default(), &Fragments::default(), allow);
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    assert_eq!(compiled.report.warnings.len(), 2, "{:?}", compiled.report.warnings);
    // Defined, the value is checked as if written in place.
    let mut values = NamedValues::default();
    values.insert("bff-timeout", NamedValue { value: "soon".into(), secret: false });
    values.insert("metadata-url", NamedValue { value: "ftp://x".into(), secret: false });
    let compiled = compile_with(text, &values, &Fragments::default(), allow);
    let messages: Vec<&str> = compiled.report.errors.iter().map(|e| e.message.as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("timeout: \"soon\" is not a number of seconds")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("openid-config url \"ftp://x\" is not an http(s) URL")), "{messages:?}");
    // Unknown and not allowed: the unknown name is the error.
    let compiled = compile_with(text, &NamedValues::default(), &Fragments::default(), Options::default());
    assert!(compiled.report.errors.iter().any(|e| e.message.contains("unknown named value \"bff-timeout\"")));
    // A value that is not a named value at all is still checked.
    let text = "<policies><inbound><send-request mode=\"new\" response-variable-name=\"r\" timeout=\"{{}}\"><set-url>https://a.example/</set-url></send-request></inbound></policies>";
    let compiled = compile_with(text, &NamedValues::default(), &Fragments::default(), allow);
    assert!(!compiled.report.errors.is_empty());
}
