use super::*;

fn direct(xml: &str) -> String {
    xml_to_json(xml.as_bytes(), XmlToJsonKind::Direct, false).unwrap()
}

#[test]
fn xml_to_json_follows_json_net() {
    assert_eq!(direct("<a>text</a>"), r#"{"a":"text"}"#);
    assert_eq!(direct("<a/>"), r#"{"a":null}"#);
    assert_eq!(direct("<a></a>"), r#"{"a":""}"#);
    assert_eq!(direct(r#"<a x="1">t</a>"#), r##"{"a":{"@x":"1","#text":"t"}}"##);
    // Same-named siblings are one array, in the order the first of them appears.
    assert_eq!(direct("<r><b>1</b><c>x</c><b>2</b></r>"), r#"{"r":{"b":["1","2"],"c":"x"}}"#,);
    assert_eq!(
        direct("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<r>\n  <v>&lt;&amp;&quot;</v>\n</r>"),
        r#"{"?xml":{"@version":"1.0","@encoding":"utf-8"},"r":{"v":"<&\""}}"#,
    );
    assert_eq!(direct("<r><![CDATA[<raw>]]></r>"), r##"{"r":{"#cdata-section":"<raw>"}}"##);
    assert_eq!(direct("<r><!-- note --><v>1</v></r>"), r##"{"r":{"#comment":" note ","v":"1"}}"##);
}

#[test]
fn soap_envelopes_keep_their_prefixes() {
    let soap = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:Price xmlns:m="urn:p"><m:Amount>3.50</m:Amount></m:Price></s:Body></s:Envelope>"#;
    assert_eq!(
        direct(soap),
        r#"{"s:Envelope":{"@xmlns:s":"http://schemas.xmlsoap.org/soap/envelope/","s:Body":{"m:Price":{"@xmlns:m":"urn:p","m:Amount":"3.50"}}}}"#,
    );
    let friendly = xml_to_json(soap.as_bytes(), XmlToJsonKind::JavascriptFriendly, false).unwrap();
    assert_eq!(friendly, r#"{"s:Envelope":{"s:Body":{"m:Price":{"m:Amount":"3.50"}}}}"#);
}

#[test]
fn always_array_makes_every_child_element_an_array() {
    let json = xml_to_json(b"<r><b>1</b><c><d>x</d></c></r>", XmlToJsonKind::Direct, true).unwrap();
    assert_eq!(json, r#"{"r":{"b":["1"],"c":[{"d":["x"]}]}}"#);
}

#[test]
fn malformed_xml_is_refused_with_a_reason() {
    for bad in ["<a>", "<a></b>", "text", "<a/><b/>", "", "<a>\u{0}</a"] {
        let error = xml_to_json(bad.as_bytes(), XmlToJsonKind::Direct, false).unwrap_err();
        assert!(error.0.starts_with("The body is not valid XML"), "{bad:?}: {error}");
    }
    assert!(xml_to_json(b"\xff<a/>", XmlToJsonKind::Direct, false).is_err());
    let deep = "<a>".repeat(DEPTH_MAX + 1) + &"</a>".repeat(DEPTH_MAX + 1);
    assert!(xml_to_json(deep.as_bytes(), XmlToJsonKind::Direct, false).unwrap_err().0.contains("deeper"));
}

fn to_xml(json: &str) -> String {
    json_to_xml(json.as_bytes(), &JsonToXml { parse_date: true, ..JsonToXml::default() }).unwrap()
}

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>";

#[test]
fn json_to_xml_roots_arrays_and_scalars() {
    assert_eq!(
        to_xml(r#"{"order":{"id":7,"ok":true,"note":null}}"#),
        format!("{DECLARATION}<order><id>7</id><ok>true</ok><note /></order>")
    );
    // More than one property (or a scalar root value): wrapped in <Document>.
    assert_eq!(to_xml(r#"{"a":1,"b":"x"}"#), format!("{DECLARATION}<Document><a>1</a><b>x</b></Document>"));
    assert_eq!(to_xml(r#"{"a":1}"#), format!("{DECLARATION}<Document><a>1</a></Document>"));
    assert_eq!(to_xml(r#"[1,2]"#), format!("{DECLARATION}<Document><Array>1</Array><Array>2</Array></Document>"));
    // Arrays repeat their element, in document order (members are not sorted).
    assert_eq!(
        to_xml(r#"{"r":{"z":"<&>","item":[{"n":1},{"n":2}],"a":""}}"#),
        format!("{DECLARATION}<r><z>&lt;&amp;&gt;</z><item><n>1</n></item><item><n>2</n></item><a></a></r>"),
    );
}

#[test]
fn attributes_text_and_names() {
    assert_eq!(
        to_xml(r##"{"r":{"@id":"1\"","#text":"t","first name":"x","2nd":"y"}}"##),
        format!("{DECLARATION}<r id=\"1&quot;\">t<first_x0020_name>x</first_x0020_name><_x0032_nd>y</_x0032_nd></r>"),
    );
}

#[test]
fn namespaces_and_attribute_blocks_as_apim_documents() {
    let settings = JsonToXml {
        parse_date: false,
        namespace_separator: Some(':'),
        namespace_prefix: Some("xmlns"),
        attribute_block_name: Some("#attrs"),
    };
    let json = r##"{"soapenv:Envelope":{"xmlns:soapenv":"http://schemas.xmlsoap.org/soap/envelope/","xmlns:v1":"http://localdomain.com/core/v1","soapenv:Header":{},"soapenv:Body":{"v1:QueryList":{"#attrs":{"queryName":"test"},"v1:QueryItem":"ABC"}}}}"##;
    assert_eq!(
        json_to_xml(json.as_bytes(), &settings).unwrap(),
        format!(
            "{DECLARATION}<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:v1=\"http://localdomain.com/core/v1\"><soapenv:Header /><soapenv:Body><v1:QueryList queryName=\"test\"><v1:QueryItem>ABC</v1:QueryItem></v1:QueryList></soapenv:Body></soapenv:Envelope>"
        ),
    );
    // The default separator `_` stands for `:` only after a declared prefix.
    let underscore =
        JsonToXml { namespace_separator: Some('_'), namespace_prefix: Some("xmlns"), ..JsonToXml::default() };
    let json = r#"{"s_Envelope":{"xmlns:s":"urn:s","s_Body":{"first_name":"x"}}}"#;
    assert_eq!(
        json_to_xml(json.as_bytes(), &underscore).unwrap(),
        format!("{DECLARATION}<s:Envelope xmlns:s=\"urn:s\"><s:Body><first_name>x</first_name></s:Body></s:Envelope>"),
    );
}

#[test]
fn dates_are_written_in_round_trip_form_unless_parse_date_is_off() {
    let json = r#"{"r":{"at":"2024-05-01T10:00:00.500Z","on":"2024-05-01T10:00:00.000+02:00","plain":"2024-05-01"}}"#;
    assert_eq!(
        to_xml(json),
        format!(
            "{DECLARATION}<r><at>2024-05-01T10:00:00.5Z</at><on>2024-05-01T10:00:00+02:00</on><plain>2024-05-01</plain></r>"
        ),
    );
    let copied = json_to_xml(json.as_bytes(), &JsonToXml::default()).unwrap();
    assert!(copied.contains("<at>2024-05-01T10:00:00.500Z</at>"), "{copied}");
}

#[test]
fn malformed_json_is_refused_with_a_reason() {
    for bad in ["{", "{\"a\":}", "", "[1,]"] {
        let error = json_to_xml(bad.as_bytes(), &JsonToXml::default()).unwrap_err();
        assert!(error.0.starts_with("The body is not valid JSON"), "{bad:?}: {error}");
    }
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert!(json_to_xml(deep.as_bytes(), &JsonToXml::default()).is_err());
}

#[test]
fn xml_round_trips_through_json() {
    let xml = r#"<order id="7"><line sku="a">2</line><line sku="b">1</line><note>fragile</note></order>"#;
    let json = direct(xml);
    let back = json_to_xml(json.as_bytes(), &JsonToXml::default()).unwrap();
    assert_eq!(back, format!("{DECLARATION}{xml}"));
}

#[test]
fn callback_names() {
    for good in ["cb", "jQuery1_2", "app.handlers.done", "$", "_x"] {
        assert!(is_callback_name(good), "{good}");
    }
    for bad in ["", "1cb", "a b", "alert(1)", "a..b", "a.", "<script>", &"a".repeat(129)] {
        assert!(!is_callback_name(bad), "{bad}");
    }
}

#[test]
fn an_attribute_named_twice_is_written_once_with_the_last_value() {
    // Found by the body_transform fuzz target: `@a`, the attribute block and a repeated block.
    let settings = JsonToXml { attribute_block_name: Some("#attrs"), ..JsonToXml::default() };
    let json = r##"{"r":{"@a":"1","#attrs":{"a":"2","b":"x"},"#attrs":{"a":"3"}}}"##;
    let xml = json_to_xml(json.as_bytes(), &settings).unwrap();
    assert_eq!(xml, format!("{DECLARATION}<r a=\"3\" b=\"x\" />"));
    xml_to_json(xml.as_bytes(), XmlToJsonKind::Direct, false).unwrap();
}
