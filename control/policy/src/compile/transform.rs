//! Body conversions: `xml-to-json`, `json-to-xml` and `jsonp` (the data plane converts, see
//! `dataplane/src/policy/transform.rs`; docs/policies.md "Transformations").
//!
//! ```xml
//! <xml-to-json kind="direct" apply="content-type-xml" consider-accept-header="false" />
//! <json-to-xml apply="always" consider-accept-header="false" namespace-separator=":"
//!              namespace-prefix="xmlns" attribute-block-name="#attrs" parse-date="false" />
//! <jsonp callback-parameter-name="cb" />
//! ```

use portcullis_contract::program::Op;

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
