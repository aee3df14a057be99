//! The body conversions of `xml-to-json`, `json-to-xml` and `jsonp`'s callback check
//! (dataplane/src/policy/transform.rs) on arbitrary bytes, the bodies clients and backends send:
//! nothing panics or recurses without bound; what `xml-to-json` produces is valid JSON, and what
//! `json-to-xml` produces parses as XML again (so neither can smuggle markup through).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_dataplane::policy::transform::{JsonToXml, XmlToJsonKind, is_callback_name, json_to_xml, xml_to_json};

fuzz_target!(|data: &[u8]| {
    for (kind, always_array) in [(XmlToJsonKind::Direct, false), (XmlToJsonKind::JavascriptFriendly, true)] {
        if let Ok(json) = xml_to_json(data, kind, always_array) {
            // Syntax only: a `serde_json::Value` would read serde_json's own magic member names
            // (an element called `$serde_json::private::RawValue`) as something else.
            serde_json::from_str::<serde::de::IgnoredAny>(&json).expect("xml-to-json wrote invalid JSON");
        }
    }
    let settings = JsonToXml {
        parse_date: true,
        namespace_separator: Some('_'),
        namespace_prefix: Some("xmlns"),
        attribute_block_name: Some("#attrs"),
    };
    if let Ok(xml) = json_to_xml(data, &settings) {
        // Back through the XML reader: well-formed, exactly one root.
        xml_to_json(xml.as_bytes(), XmlToJsonKind::Direct, false).expect("json-to-xml wrote malformed XML");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if is_callback_name(text) {
            assert!(!text.contains(['(', ')', '<', '>', '"', '\'', ';', ' ']), "{text:?} accepted as a callback");
        }
    }
});
