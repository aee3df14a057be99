//! Body conversions: `xml-to-json`, `json-to-xml` and `jsonp` (the data plane converts, see
//! `dataplane/src/policy/transform.rs`; docs/policies.md "Transformations").
//!
//! ```xml
//! <xml-to-json kind="direct" apply="content-type-xml" consider-accept-header="false" />
//! <json-to-xml apply="always" consider-accept-header="false" namespace-separator=":"
//!              namespace-prefix="xmlns" attribute-block-name="#attrs" parse-date="false" />
//! <jsonp callback-parameter-name="cb" />
//! ```

use portcullis_contract::program::{Const, Op, Section, Side};

use super::policies::no_children;
use super::{Place, SectionCompiler};
use crate::expr::{self, Expect};
use crate::xml::Element;

pub(super) const XML_TO_JSON_ATTRIBUTES: &[&str] =
    &["kind", "apply", "consider-accept-header", "always-array-child-elements", "always-array-children"];
pub(super) const JSON_TO_XML_ATTRIBUTES: &[&str] = &[
    "apply",
    "consider-accept-header",
    "parse-date",
    "namespace-separator",
    "namespace-prefix",
    "attribute-block-name",
];

pub(super) fn xml_to_json(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    choice(c, element, "kind", &["javascript-friendly", "direct"], None, place);
    choice(c, element, "apply", &["always", "content-type-xml"], None, place);
    choice(c, element, "consider-accept-header", &["true", "false"], Some("true"), place);
    // The documentation names it both ways.
    let always = if element.attr("always-array-child-elements").is_some() {
        "always-array-child-elements"
    } else {
        "always-array-children"
    };
    choice(c, element, always, &["true", "false"], Some("false"), place);
    let side = c.side(place);
    c.code.emit(Op::XmlToJson { side });
}

pub(super) fn json_to_xml(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    choice(c, element, "apply", &["always", "content-type-json"], None, place);
    choice(c, element, "consider-accept-header", &["true", "false"], Some("true"), place);
    for name in ["namespace-separator", "namespace-prefix", "attribute-block-name"] {
        if c.attr_value(element, name, Expect::String, place).is_none() {
            c.code.emit(Op::Null);
        }
    }
    // APIM documents parse-date as the one attribute without expressions.
    let parse_date = c.literal_bool(element, "parse-date", true, place);
    let side = c.side(place);
    c.code.emit(Op::JsonToXml { side, parse_date });
}

pub(super) fn jsonp(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    if c.attr_value(element, "callback-parameter-name", Expect::String, place).is_none() {
        c.error(place, element.name_span.clone(), "<jsonp> needs callback-parameter-name=\"...\"");
        c.code.emit(Op::Null);
    }
    let side = c.side(place);
    c.code.emit(Op::Jsonp { side });
}

/// `redirect-content-urls`: no attributes, no children; rewrites the section's message body.
pub(super) fn redirect_content_urls(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    let side = c.side(place);
    if !matches!(side, Side::Request | Side::Response) {
        c.error(place, element.name_span.clone(), "<redirect-content-urls> rewrites the request or the response");
        return;
    }
    c.code.emit(Op::RedirectContentUrls { side });
}

/// Pushes attribute `name`: one of `allowed` when literal (checked here), any string when an
/// expression (checked by the data plane); `default` when absent, else it is required.
fn choice(
    c: &mut SectionCompiler<'_>,
    element: &Element,
    name: &str,
    allowed: &[&str],
    default: Option<&str>,
    place: &Place,
) {
    match element.attr(name) {
        Some(attr) => {
            let literal = !expr::is_expression(&attr.value) && !attr.value.contains("{{");
            if literal && !allowed.iter().any(|value| value.eq_ignore_ascii_case(attr.value.trim())) {
                c.error(
                    place,
                    attr.value_span.clone(),
                    format!("{name}: {:?} is not one of {}", attr.value, allowed.join(", ")),
                );
            }
            if literal {
                c.code.push_str(&attr.value.trim().to_ascii_lowercase());
            } else {
                c.value(&attr.value, &attr.value_span, Expect::String, place);
            }
        }
        None => match default {
            Some(default) => c.code.push_str(default),
            None => {
                c.error(place, element.name_span.clone(), format!("<{}> needs {name}=\"...\"", element.name));
                c.code.emit(Op::Null);
            }
        },
    }
}

/// `set-body template="liquid"`: the template is parsed here (a syntax error or an unknown
/// filter is reported at its position) and again when the data plane loads the snapshot.
/// `{{ name }}` is a named value only when one of that name exists; otherwise it is Liquid's.
pub(super) fn liquid_body(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let (text, span) = element.text().unwrap_or_else(|| (String::new(), element.name_span.clone()));
    let source = named_values_in_liquid(&text, c.env.named_values);
    if let Err(message) = portcullis_contract::liquid::parse(&source) {
        let unknown_filter = message
            .split("requested filter=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned);
        let offset = match (portcullis_contract::liquid::error_position(&message), &unknown_filter) {
            (Some((line, column)), _) => Some(offset_of(&source, line, column)),
            (None, Some(name)) => source.find(name.as_str()),
            (None, None) => None,
        };
        // Offsets are those of the template as written when no named value was replaced.
        let at = match offset {
            Some(offset) if source == text => super::inner_span(place, &span, &text, offset..offset + 1),
            _ => span.clone(),
        };
        let what = match unknown_filter {
            Some(name) => format!("unknown filter {name:?} (APIM's Pascal-case filters and Liquid's are known)"),
            None => one_line(message.split(" available ").next().unwrap_or(&message)),
        };
        c.error(place, at, format!("set-body liquid template: {what}"));
        return;
    }
    let body_side = match place.section {
        Section::Inbound | Section::Backend => Side::Request,
        Section::Outbound | Section::OnError => Side::Response,
    };
    let body = mentions_body(&source).then_some(body_side);
    let template = c.code.constant(Const::Liquid(dictionary_pairs(&source)));
    let side = c.side(place);
    c.code.emit(Op::SetBodyLiquid { side, template, body });
}

/// DotLiquid's dictionary entries in a `for` loop: `entry.Key` and `entry.Value` over
/// `Headers`, `Variables`, `MatchedParameters` or `Query` are the `liquid` crate's `[key, value]`
/// pairs, so they become `entry[0]` and `entry[1]` inside that loop.
fn dictionary_pairs(source: &str) -> String {
    static FOR: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(for_tag) = FOR
        .get_or_init(|| {
            regex::Regex::new(
                r"\{%-?\s*for\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\s+[A-Za-z0-9_.\[\]'\x22]*\b(Headers|Variables|MatchedParameters|Query)\b\s*[^%]*-?%\}",
            )
            .ok()
        })
        .as_ref()
    else {
        return source.to_owned();
    };
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(found) = for_tag.captures(rest) {
        let (Some(whole), Some(name)) = (found.get(0), found.get(1)) else { break };
        out.push_str(&rest[..whole.end()]);
        let after = &rest[whole.end()..];
        let end = after.find("endfor").unwrap_or(after.len());
        let body = &after[..end];
        let key = format!("{}.Key", name.as_str());
        let value = format!("{}.Value", name.as_str());
        let index = |text: &str, member: &str, replacement: &str| -> String {
            let mut result = String::with_capacity(text.len());
            let mut tail = text;
            while let Some(at) = tail.find(member) {
                let next = tail[at + member.len()..].chars().next();
                let before = tail[..at].chars().next_back();
                let whole_word = !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                result.push_str(&tail[..at]);
                result.push_str(if whole_word { replacement } else { member });
                tail = &tail[at + member.len()..];
            }
            result.push_str(tail);
            result
        };
        let body =
            index(&index(body, &key, &format!("{}[0]", name.as_str())), &value, &format!("{}[1]", name.as_str()));
        out.push_str(&body);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `{{ name }}` replaced by the named value `name` where one exists; the rest as written.
fn named_values_in_liquid(text: &str, values: &crate::named_values::NamedValues) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}").map(|at| open + 2 + at) else { break };
        let name = rest[open + 2..close].trim().trim_start_matches('-').trim_end_matches('-').trim();
        out.push_str(&rest[..open]);
        match values.get(name) {
            Some(value) if crate::named_values::is_valid_name(name) => out.push_str(&value.value),
            _ => out.push_str(&rest[open..close + 2]),
        }
        rest = &rest[close + 2..];
    }
    out.push_str(rest);
    out
}

/// Whether the template may read `body` (a word `body` outside a longer identifier): the data
/// plane buffers and parses the message body only then.
fn mentions_body(source: &str) -> bool {
    let bytes = source.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    source.match_indices("body").any(|(at, _)| {
        let before = at.checked_sub(1).and_then(|i| bytes.get(i)).copied();
        let after = bytes.get(at + 4).copied();
        !before.is_some_and(|b| word(b) || b == b'.') && !after.is_some_and(word)
    })
}

/// The byte offset of 1-based `line` and `column` (in characters) in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize =
        text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum::<usize>().min(text.len());
    let rest = &text[line_start..];
    line_start + rest.char_indices().nth(column.saturating_sub(1)).map_or(rest.len(), |(at, _)| at)
}

/// A multi-line parser message on one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
