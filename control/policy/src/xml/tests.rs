use super::*;

#[test]
fn parses_elements_attributes_and_text_with_spans() {
    let source = "<policies>\n  <inbound>\n    <set-header name=\"X-A\" exists-action='override'><value>v1</value></set-header>\n  </inbound>\n</policies>";
    let root = parse(source).unwrap();
    assert_eq!(root.name, "policies");
    let inbound = root.elements().next().unwrap();
    assert_eq!(inbound.name, "inbound");
    let set_header = inbound.elements().next().unwrap();
    assert_eq!(&source[set_header.name_span.clone()], "set-header");
    let name = set_header.attr("name").unwrap();
    assert_eq!(name.value, "X-A");
    assert_eq!(&source[name.value_span.clone()], "X-A");
    let action = set_header.attr("exists-action").unwrap();
    assert_eq!(&source[action.value_span.clone()], "override");
    let value = set_header.elements().next().unwrap();
    let (text, span) = value.text().unwrap();
    assert_eq!(text, "v1");
    assert_eq!(&source[span], "v1");
}

#[test]
fn spans_index_the_source_behind_a_byte_order_mark() {
    let source =
        "\u{feff}<policies>\n<inbound>\n<set-header name=\"X-A\"><value>v1</value></set-header>\n</inbound></policies>";
    let root = parse(source).unwrap();
    assert_eq!(&source[root.name_span.clone()], "policies");
    let set_header = root.elements().next().unwrap().elements().next().unwrap();
    assert_eq!(&source[set_header.name_span.clone()], "set-header");
    assert_eq!(&source[set_header.attr("name").unwrap().value_span.clone()], "X-A");
    let (_, span) = set_header.elements().next().unwrap().text().unwrap();
    assert_eq!(&source[span], "v1");
    let error = parse("\u{feff}<policies>\n<inbound>\n</outbound></policies>").unwrap_err();
    assert_eq!(&"\u{feff}<policies>\n<inbound>\n</outbound></policies>"[error.span], "<");
}

#[test]
fn expressions_need_no_escaping() {
    let source = r#"<when condition="@(context.Request.Headers.GetValueOrDefault("X","") == "a" && 1 < 2)" id="w"><set-body>@{ var s = "<b>"; return s + '&'; }</set-body></when>"#;
    let root = parse(source).unwrap();
    let condition = root.attr("condition").unwrap();
    assert_eq!(condition.value, r#"@(context.Request.Headers.GetValueOrDefault("X","") == "a" && 1 < 2)"#);
    assert_eq!(&source[condition.value_span.clone()], condition.value);
    assert_eq!(root.attr("id").unwrap().value, "w");
    let (body, span) = root.elements().next().unwrap().text().unwrap();
    assert_eq!(body, r#"@{ var s = "<b>"; return s + '&'; }"#);
    assert_eq!(&source[span], body);
}

#[test]
fn escaped_expressions_and_entities_still_work() {
    let source = r#"<a v="@(x &amp;&amp; y)" w="a &lt; b">t &amp; u</a>"#;
    let root = parse(source).unwrap();
    assert_eq!(root.attr("v").unwrap().value, "@(x && y)");
    assert_eq!(root.attr("w").unwrap().value, "a < b");
    assert_eq!(root.text().unwrap().0, "t & u");
}

#[test]
fn cdata_and_comments() {
    let source = "<a><!-- c \"@(x\" --><![CDATA[@(1 < 2)]]></a>";
    let root = parse(source).unwrap();
    let (text, span) = root.text().unwrap();
    assert_eq!(text, "@(1 < 2)");
    assert_eq!(&source[span], "@(1 < 2)");
}

#[test]
fn errors_point_at_the_original_text() {
    let source = "<policies>\n  <inbound>\n  </outbound>\n</policies>";
    let error = parse(source).unwrap_err();
    assert!(error.message.contains("malformed XML"), "{}", error.message);
    assert!(error.span.start >= source.find("</outbound>").unwrap(), "{error:?}");

    let error = parse("<a><b></a>").unwrap_err();
    assert!(error.message.contains("malformed XML"), "{}", error.message);
    assert!(parse("<a/><b/>").unwrap_err().message.contains("one root"));
    assert!(parse("<a x=\"1\" x=\"2\"/>").unwrap_err().message.contains("attribute"));
    assert!(parse("<a>").unwrap_err().message.contains("never closed"));
    assert!(parse("").unwrap_err().message.contains("no root"));
}

#[test]
fn offsets_map_back_across_escapes() {
    let source = r#"<a v="@("x" + "y")" w="z"/>"#;
    let escaped = escape_expressions(source);
    assert!(escaped.text.contains("&quot;x&quot;"));
    let root = parse(source).unwrap();
    assert_eq!(&source[root.attr("w").unwrap().value_span.clone()], "z");
}

#[test]
fn expression_end_skips_strings() {
    let text = r#"@(a(")") + ')' + @"x"")")) tail"#;
    assert_eq!(&text[..expression_end(text, 0)], r#"@(a(")") + ')' + @"x"")")"#);
    let block = "@{ if (x) { return \"}\"; } return \"\"; } tail";
    assert_eq!(&block[..expression_end(block, 0)], "@{ if (x) { return \"}\"; } return \"\"; }");
}
