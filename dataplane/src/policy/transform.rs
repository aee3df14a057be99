//! Body conversions of `xml-to-json`, `json-to-xml` and `jsonp`: pure functions from bytes to
//! bytes, run by the VM on a buffered body (docs/policies.md "Transformations").
//!
//! XML to JSON follows JSON.NET's `SerializeXmlNode`, which APIM's converter is built on:
//! attributes become `"@name"` properties, text beside attributes or elements `"#text"`, CDATA
//! `"#cdata-section"`, comments `"#comment"`, same-named siblings one array (in the order the
//! first of them appears), an element holding only text a string, `<a/>` null and `<a></a>` an
//! empty string, the XML declaration `"?xml"`. Every value is a string. `javascript-friendly`
//! leaves out what a script has no use for: the declaration, comments and `xmlns` attributes.
//!
//! JSON to XML: a single-property object names the root element, anything else is wrapped in
//! `<Document>`; arrays repeat their element; `"@name"` properties (and those of the
//! `attribute-block-name` object) become attributes, `"#text"` text, properties starting with
//! `namespace-prefix` namespace declarations; `namespace-separator` in a name becomes `:` when what
//! precedes it is a declared prefix. Names that are not XML names are encoded as .NET's
//! `XmlConvert.EncodeName` does (`_x0020_` for a space).

use std::fmt::Write as _;

use quick_xml::events::{BytesStart, Event};

/// Deepest nesting either converter follows: deeper documents are refused, not recursed into.
pub const DEPTH_MAX: usize = 256;

/// The two forms of `xml-to-json`'s `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlToJsonKind {
    Direct,
    JavascriptFriendly,
}

/// A conversion that failed: the message `context.LastError.Message` carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
    CData(String),
    Comment(String),
}

/// Names and values, in document order.
type Attributes = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Element {
    name: String,
    attributes: Attributes,
    children: Vec<Node>,
    /// Written `<a/>` (JSON.NET: null) rather than `<a></a>` (an empty string).
    self_closing: bool,
}

/// `xml-to-json`: the JSON text of the XML document `xml`.
pub fn xml_to_json(xml: &[u8], kind: XmlToJsonKind, always_array: bool) -> Result<String, ConvertError> {
    let text = std::str::from_utf8(xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml))
        .map_err(|_| ConvertError("The body is not UTF-8 text.".into()))?;
    let (declaration, top) = parse_xml(text)?;
    let friendly = kind == XmlToJsonKind::JavascriptFriendly;
    let mut out = String::with_capacity(text.len());
    out.push('{');
    let mut first = true;
    if let (Some(attributes), false) = (declaration, friendly) {
        key(&mut out, "?xml", &mut first);
        out.push('{');
        let mut inner_first = true;
        for (name, value) in attributes {
            key(&mut out, &format!("@{name}"), &mut inner_first);
            string(&mut out, &value);
        }
        out.push('}');
    }
    let writer = JsonWriter { friendly, always_array };
    writer.members(&mut out, &top, &mut first, 0)?;
    out.push('}');
    Ok(out)
}

/// The declaration's attributes and the top-level nodes (exactly one element among them).
fn parse_xml(text: &str) -> Result<(Option<Attributes>, Vec<Node>), ConvertError> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let invalid = |error: &dyn std::fmt::Display| ConvertError(format!("The body is not valid XML: {error}."));
    let mut declaration = None;
    let mut stack: Vec<Element> = Vec::new();
    let mut top: Vec<Node> = Vec::new();
    let mut elements_at_top = 0;
    loop {
        let event = reader.read_event().map_err(|e| invalid(&e))?;
        let node = match event {
            Event::Decl(decl) => {
                let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                let mut attributes = vec![("version".to_owned(), text(&decl.version().map_err(|e| invalid(&e))?))];
                if let Some(encoding) = decl.encoding() {
                    attributes.push(("encoding".to_owned(), text(&encoding.map_err(|e| invalid(&e))?)));
                }
                if let Some(standalone) = decl.standalone() {
                    attributes.push(("standalone".to_owned(), text(&standalone.map_err(|e| invalid(&e))?)));
                }
                declaration = Some(attributes);
                continue;
            }
            Event::Start(start) => {
                if stack.len() >= DEPTH_MAX {
                    return Err(ConvertError(format!("The XML body nests deeper than {DEPTH_MAX} elements.")));
                }
                stack.push(element(&start, false).map_err(|e| invalid(&e))?);
                continue;
            }
            Event::End(_) => Node::Element(stack.pop().ok_or_else(|| invalid(&"an end tag without a start"))?),
            Event::Empty(start) => Node::Element(element(&start, true).map_err(|e| invalid(&e))?),
            Event::Text(text) => {
                let text = text.unescape().map_err(|e| invalid(&e))?;
                if text.trim().is_empty() {
                    continue;
                }
                Node::Text(text.into_owned())
            }
            Event::CData(data) => Node::CData(String::from_utf8_lossy(&data).into_owned()),
            Event::Comment(comment) => Node::Comment(String::from_utf8_lossy(&comment).into_owned()),
            Event::PI(_) | Event::DocType(_) => continue,
            Event::Eof => break,
        };
        match stack.last_mut() {
            Some(parent) => parent.children.push(node),
            None => {
                match node {
                    Node::Element(_) => elements_at_top += 1,
                    Node::Text(_) | Node::CData(_) => return Err(invalid(&"text outside the root element")),
                    Node::Comment(_) => {}
                }
                top.push(node);
            }
        }
    }
    if !stack.is_empty() {
        return Err(invalid(&"the document ends inside an element"));
    }
    if elements_at_top != 1 {
        return Err(invalid(&"a document has exactly one root element"));
    }
    Ok((declaration, top))
}

fn element(start: &BytesStart<'_>, self_closing: bool) -> Result<Element, quick_xml::Error> {
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(quick_xml::Error::from)?;
        attributes.push(attribute_pair(&attribute)?);
    }
    Ok(Element {
        name: String::from_utf8_lossy(start.name().as_ref()).into_owned(),
        attributes,
        children: Vec::new(),
        self_closing,
    })
}

fn attribute_pair(
    attribute: &quick_xml::events::attributes::Attribute<'_>,
) -> Result<(String, String), quick_xml::Error> {
    let value = attribute.unescape_value()?.into_owned();
    Ok((String::from_utf8_lossy(attribute.key.as_ref()).into_owned(), value))
}

struct JsonWriter {
    friendly: bool,
    always_array: bool,
}

impl JsonWriter {
    /// Writes `nodes` as the members of an object: grouped by name in order of first appearance,
    /// a group of several (or of elements, with always-array) as an array.
    fn members(&self, out: &mut String, nodes: &[Node], first: &mut bool, depth: usize) -> Result<(), ConvertError> {
        let mut groups: Vec<(&str, Vec<&Node>)> = Vec::new();
        for node in nodes {
            let name = match node {
                Node::Element(element) => element.name.as_str(),
                Node::Text(_) => "#text",
                Node::CData(_) => "#cdata-section",
                Node::Comment(_) if self.friendly => continue,
                Node::Comment(_) => "#comment",
            };
            match groups.iter_mut().find(|(group, _)| *group == name) {
                Some((_, members)) => members.push(node),
                None => groups.push((name, vec![node])),
            }
        }
        for (name, members) in groups {
            key(out, name, first);
            let array = members.len() > 1 || (self.always_array && depth > 0 && matches!(members[0], Node::Element(_)));
            if array {
                out.push('[');
            }
            for (index, node) in members.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                self.value(out, node, depth)?;
            }
            if array {
                out.push(']');
            }
        }
        Ok(())
    }

    fn value(&self, out: &mut String, node: &Node, depth: usize) -> Result<(), ConvertError> {
        match node {
            Node::Text(text) | Node::CData(text) | Node::Comment(text) => string(out, text),
            Node::Element(element) => {
                let attributes: Vec<_> = element
                    .attributes
                    .iter()
                    .filter(|(name, _)| !(self.friendly && (name == "xmlns" || name.starts_with("xmlns:"))))
                    .collect();
                match (attributes.is_empty(), element.children.as_slice()) {
                    (true, []) if element.self_closing => out.push_str("null"),
                    (true, []) => out.push_str("\"\""),
                    (true, [Node::Text(text)]) => string(out, text),
                    _ => {
                        out.push('{');
                        let mut first = true;
                        for (name, value) in attributes {
                            key(out, &format!("@{name}"), &mut first);
                            string(out, value);
                        }
                        self.members(out, &element.children, &mut first, depth + 1)?;
                        out.push('}');
                    }
                }
            }
        }
        Ok(())
    }
}

fn key(out: &mut String, name: &str, first: &mut bool) {
    if !*first {
        out.push(',');
    }
    *first = false;
    string(out, name);
    out.push(':');
}

fn string(out: &mut String, text: &str) {
    // serde_json escapes as JSON requires; writing a &str cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// A JSON value with its object members in document order (serde_json's map sorts them).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, value: bool) -> Result<Json, E> {
        Ok(Json::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Json, E> {
        Ok(Json::Number(value.to_string()))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Json, E> {
        Ok(Json::Number(value.to_string()))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Json, E> {
        Ok(Json::Number(value.to_string()))
    }
    fn visit_str<E>(self, value: &str) -> Result<Json, E> {
        Ok(Json::String(value.to_owned()))
    }
    fn visit_string<E>(self, value: String) -> Result<Json, E> {
        Ok(Json::String(value))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Json>()? {
            members.push((name, value));
        }
        Ok(Json::Object(members))
    }
}

/// `json-to-xml`'s settings.
#[derive(Debug, Clone, Default)]
pub struct JsonToXml<'s> {
    /// Strings that are ISO 8601 date-times are written in their round-trip form.
    pub parse_date: bool,
    /// Stands for `:` between a declared prefix and a local name (APIM's default `_`).
    pub namespace_separator: Option<char>,
    /// Properties whose names start with it are namespace declarations (usually `xmlns`).
    pub namespace_prefix: Option<&'s str>,
    /// The object whose properties become the element's attributes.
    pub attribute_block_name: Option<&'s str>,
}

/// `json-to-xml`: the XML text of the JSON document `json`.
pub fn json_to_xml(json: &[u8], settings: &JsonToXml<'_>) -> Result<String, ConvertError> {
    // serde_json's own recursion limit (128) bounds the parse.
    let document: Json = serde_json::from_slice(json.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(json))
        .map_err(|error| ConvertError(format!("The body is not valid JSON: {error}.")))?;
    let mut out = String::with_capacity(json.len() * 2);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
    let writer = XmlWriter { settings };
    match &document {
        Json::Object(members) if members.len() == 1 && matches!(members[0].1, Json::Object(_)) => {
            writer.element(&mut out, &members[0].0, &members[0].1, &mut Vec::new())?;
        }
        Json::Array(_) => writer.element(
            &mut out,
            "Document",
            &Json::Object(vec![("Array".into(), document.clone())]),
            &mut Vec::new(),
        )?,
        Json::Object(_) => writer.element(&mut out, "Document", &document, &mut Vec::new())?,
        scalar => writer.element(&mut out, "Document", scalar, &mut Vec::new())?,
    }
    Ok(out)
}

struct XmlWriter<'w, 's> {
    settings: &'w JsonToXml<'s>,
}

impl XmlWriter<'_, '_> {
    /// Writes `value` as element(s) named `name`; `prefixes` are the namespace prefixes declared
    /// by the enclosing elements.
    fn element(
        &self,
        out: &mut String,
        name: &str,
        value: &Json,
        prefixes: &mut Vec<String>,
    ) -> Result<(), ConvertError> {
        if prefixes.len() >= DEPTH_MAX {
            return Err(ConvertError(format!("The JSON body nests deeper than {DEPTH_MAX} levels.")));
        }
        match value {
            Json::Array(items) => {
                for item in items {
                    self.element(out, name, item, prefixes)?;
                }
                return Ok(());
            }
            Json::Object(members) => {
                let declared = prefixes.len();
                let mut attributes = Vec::new();
                let mut children = Vec::new();
                let mut text = None;
                for (member, member_value) in members {
                    if let Some(attribute) = member.strip_prefix('@') {
                        attributes.push((attribute.to_owned(), scalar_text(member_value, self.settings.parse_date)));
                    } else if member == "#text" {
                        text = Some(scalar_text(member_value, self.settings.parse_date));
                    } else if Some(member.as_str()) == self.settings.attribute_block_name {
                        if let Json::Object(block) = member_value {
                            for (attribute, attribute_value) in block {
                                attributes
                                    .push((attribute.clone(), scalar_text(attribute_value, self.settings.parse_date)));
                            }
                        }
                    } else if self
                        .settings
                        .namespace_prefix
                        .is_some_and(|prefix| !prefix.is_empty() && member.starts_with(prefix))
                    {
                        if let Some((_, declared_prefix)) = member.split_once(':') {
                            prefixes.push(declared_prefix.to_owned());
                        }
                        attributes.push((member.clone(), scalar_text(member_value, false)));
                    } else {
                        children.push((member, member_value));
                    }
                }
                // A name given twice (`@a` and `a` in the attribute block, a block repeated): the
                // last value wins, as the last of duplicate JSON members does; XML allows one.
                let mut unique: Vec<(String, String)> = Vec::with_capacity(attributes.len());
                for (attribute, value) in attributes {
                    let written = self.element_name(&attribute, prefixes);
                    match unique.iter_mut().find(|(existing, _)| *existing == written) {
                        Some(slot) => slot.1 = value,
                        None => unique.push((written, value)),
                    }
                }
                let attributes = unique;
                let name = self.element_name(name, prefixes);
                out.push('<');
                out.push_str(&name);
                for (attribute, value) in &attributes {
                    let _ = write!(out, " {attribute}=\"");
                    escape(out, value, true);
                    out.push('"');
                }
                if children.is_empty() && text.is_none() {
                    out.push_str(" />");
                } else {
                    out.push('>');
                    if let Some(text) = &text {
                        escape(out, text, false);
                    }
                    for (child, child_value) in children {
                        self.element(out, child, child_value, prefixes)?;
                    }
                    let _ = write!(out, "</{name}>");
                }
                prefixes.truncate(declared);
            }
            Json::Null => {
                let _ = write!(out, "<{} />", self.element_name(name, prefixes));
            }
            scalar => {
                let name = self.element_name(name, prefixes);
                let _ = write!(out, "<{name}>");
                escape(out, &scalar_text(scalar, self.settings.parse_date), false);
                let _ = write!(out, "</{name}>");
            }
        }
        Ok(())
    }

    /// `name` as an XML name: the separator after a declared prefix becomes `:`, and characters
    /// an XML name cannot hold are encoded.
    fn element_name(&self, name: &str, prefixes: &[String]) -> String {
        if let Some(separator) = self.settings.namespace_separator.filter(|separator| *separator != ':') {
            if let Some((prefix, local)) = name.split_once(separator) {
                if prefixes.iter().any(|declared| declared == prefix) {
                    return format!("{}:{}", encode_name(prefix), encode_name(local));
                }
            }
        }
        match name.split_once(':') {
            Some((prefix, local)) if !prefix.is_empty() && !local.is_empty() && !local.contains(':') => {
                format!("{}:{}", encode_name(prefix), encode_name(local))
            }
            _ => encode_name(name),
        }
    }
}

/// .NET's `XmlConvert.EncodeName`: a character an XML name cannot hold (at its position) becomes
/// `_xHHHH_`, as does an `_` that would otherwise read as the start of such an escape.
fn encode_name(name: &str) -> String {
    if name.is_empty() {
        return "_x0000_".into();
    }
    let mut out = String::with_capacity(name.len());
    let chars: Vec<char> = name.chars().collect();
    for (index, &c) in chars.iter().enumerate() {
        let valid = if index == 0 { is_name_start(c) } else { is_name_char(c) };
        let looks_escaped = c == '_'
            && chars.get(index + 1) == Some(&'x')
            && chars.len() >= index + 7
            && chars[index + 2..index + 6].iter().all(char::is_ascii_hexdigit)
            && chars[index + 6] == '_';
        if valid && !looks_escaped {
            out.push(c);
        } else if (c as u32) > 0xFFFF {
            let _ = write!(out, "_x{:08X}_", c as u32);
        } else {
            let _ = write!(out, "_x{:04X}_", c as u32);
        }
    }
    out
}

fn is_name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '\u{B7}')
}

/// A scalar as element or attribute text (objects and arrays as their JSON).
fn scalar_text(value: &Json, parse_date: bool) -> String {
    match value {
        Json::Null => String::new(),
        Json::Bool(flag) => flag.to_string(),
        Json::Number(number) => number.clone(),
        Json::String(text) if parse_date => round_trip_date(text).unwrap_or_else(|| text.clone()),
        Json::String(text) => text.clone(),
        Json::Array(_) | Json::Object(_) => String::new(),
    }
}

/// An ISO 8601 date-time as JSON.NET reads it with date parsing on and `XmlConvert` writes it
/// back: `2024-05-01T10:00:00.000Z` → `2024-05-01T10:00:00Z` (trailing zero fractions dropped).
fn round_trip_date(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let looks_like = bytes.len() >= 19
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !looks_like {
        return None;
    }
    let (body, zone) = match text.find(['Z', '+']).or_else(|| text[19..].find('-').map(|at| at + 19)) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    chrono::NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    if !zone.is_empty() && zone != "Z" {
        chrono::DateTime::parse_from_rfc3339(text).ok()?;
    }
    let body = match body.split_once('.') {
        Some((seconds, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() { seconds.to_owned() } else { format!("{seconds}.{fraction}") }
        }
        None => body.to_owned(),
    };
    Some(format!("{body}{zone}"))
}

fn escape(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' if !attribute => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

/// `jsonp`'s callback names: a JavaScript identifier path (`cb`, `jQuery123_456`, `app.cb`).
pub fn is_callback_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
}

#[cfg(test)]
mod tests;
