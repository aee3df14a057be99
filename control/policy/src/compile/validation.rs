//! The validation family: `validate-content` (the data plane checks, see
//! `dataplane/src/policy/vm/validation.rs`; docs/policies.md "Validation").
//!
//! ```xml
//! <validate-content unspecified-content-type-action="prevent" max-size="102400"
//!                   size-exceeded-action="prevent" errors-variable-name="errors">
//!     <content type="application/json" validate-as="json" action="prevent" />
//! </validate-content>
//! ```
//!
//! APIM validates bodies against the schemas of the API's imported definition. Portcullis'
//! configuration does not carry those schemas to the gateway yet, so a `<content>` rule checks
//! that the body is well-formed for its `validate-as` (and against a schema when the snapshot
//! has one); `schema-id`/`schema-ref` (APIM's schema resources) are refused by name.

use portcullis_contract::program::{
    CONTENT_RULES_MAX, ContentRule, ContentValidation, Op, Side, ValidateAs, ValidationAction,
};

use super::{Place, SectionCompiler};
use crate::xml::Element;

pub(super) const VALIDATE_CONTENT_ATTRIBUTES: &[&str] =
    &["unspecified-content-type-action", "max-size", "size-exceeded-action", "errors-variable-name"];
const CONTENT_ATTRIBUTES: &[&str] = &[
    "type",
    "validate-as",
    "action",
    "schema-id",
    "schema-ref",
    "allow-additional-properties",
    "case-insensitive-property-names",
];

pub(super) fn validate_content(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let side = match c.side(place) {
        side @ (Side::Request | Side::Response) => side,
        _ => {
            let message = "<validate-content> checks the request or the response, not one being built";
            c.error(place, element.name_span.clone(), message);
            return;
        }
    };
    let unspecified_content_type = required_action(c, element, "unspecified-content-type-action", place);
    let max_size_bytes = c.literal_parsed::<u64>(element, "max-size", "a size in bytes", place).flatten();
    let size_exceeded = match element.attr("size-exceeded-action") {
        Some(_) => required_action(c, element, "size-exceeded-action", place),
        None => {
            if max_size_bytes.is_some() {
                c.error(place, element.name_span.clone(), "max-size needs size-exceeded-action=\"...\"");
            }
            ValidationAction::Ignore
        }
    };
    let errors_variable = element.attr("errors-variable-name").and_then(|attr| c.literal(attr, place));
    let mut contents = Vec::new();
    for child in element.elements() {
        match child.name.as_str() {
            "content" => {
                if let Some(rule) = content_rule(c, child, place) {
                    contents.push(rule);
                }
            }
            "content-type-map" => c.error(
                place,
                child.name_span.clone(),
                "<content-type-map> is not supported yet (list each content type in a <content> instead)",
            ),
            other => {
                c.error(place, child.name_span.clone(), format!("<validate-content> holds <content>, not <{other}>"))
            }
        }
    }
    if contents.len() > CONTENT_RULES_MAX {
        c.error(place, element.name_span.clone(), format!("more than {CONTENT_RULES_MAX} <content> rules"));
        return;
    }
    let rule =
        ContentValidation { side, unspecified_content_type, max_size_bytes, size_exceeded, errors_variable, contents };
    let index = c.code.content_validation(rule);
    c.code.emit(Op::ValidateContent(index));
}

fn content_rule(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) -> Option<ContentRule> {
    for attr in &element.attrs {
        if !CONTENT_ATTRIBUTES.contains(&attr.name.as_str()) {
            c.error(place, attr.name_span.clone(), format!("<content> has no attribute {:?}", attr.name));
        }
    }
    for name in ["schema-id", "schema-ref"] {
        if let Some(attr) = element.attr(name) {
            c.error(
                place,
                attr.name_span.clone(),
                format!(
                    "{name}: APIM's schema resources are not in Portcullis' configuration yet; without it the body is \
                     checked for being well-formed {}",
                    element.attr("validate-as").map_or("JSON", |a| a.value.as_str())
                ),
            );
        }
    }
    let content_type = c.required_literal(element, "type", place)?;
    let validate_as = match c.required_literal(element, "validate-as", place)?.trim().to_ascii_lowercase().as_str() {
        "json" => ValidateAs::Json,
        "xml" => ValidateAs::Xml,
        "soap" => ValidateAs::Soap,
        other => {
            let span = element.attr("validate-as").map_or(element.name_span.clone(), |a| a.value_span.clone());
            c.error(place, span, format!("validate-as: {other:?} is not json, xml or soap"));
            return None;
        }
    };
    let action = required_action(c, element, "action", place);
    let allow_additional_properties = element
        .attr("allow-additional-properties")
        .map(|_| c.literal_bool(element, "allow-additional-properties", true, place));
    Some(ContentRule {
        content_type: super::media_type(&content_type),
        validate_as,
        action,
        schema: None,
        allow_additional_properties,
    })
}

/// A required `ignore | prevent | detect` attribute (literal: Portcullis fixes the action when
/// it compiles; APIM's expressions here are refused by name).
fn required_action(c: &mut SectionCompiler<'_>, element: &Element, name: &str, place: &Place) -> ValidationAction {
    let Some(text) = c.required_literal(element, name, place) else { return ValidationAction::Ignore };
    match text.trim().to_ascii_lowercase().as_str() {
        "ignore" => ValidationAction::Ignore,
        "detect" => ValidationAction::Detect,
        "prevent" => ValidationAction::Prevent,
        _ => {
            let span = element.attr(name).map_or(element.name_span.clone(), |a| a.value_span.clone());
            c.error(place, span, format!("{name}: {text:?} is not ignore, prevent or detect"));
            ValidationAction::Ignore
        }
    }
}
