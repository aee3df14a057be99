//! `llm-content-safety`: the request's prompt is sent to the Azure AI Content Safety resource
//! behind a named backend (`text:analyze`, and `text:shieldPrompt` with `shield-prompt="true"`)
//! before the request goes on; a verdict over a category's threshold, a blocklist match or a
//! detected attack refuses it with 403 (docs/policies.md "Content safety").
//!
//! Compiles to, per call: [`Op::ContentSafetyCall`] (builds the call; jumps past everything when
//! the request has no prompt), the call's timeout, [`Op::SendRequest`] into a variable no
//! expression can name, and [`Op::ContentSafetyVerdict`].

use portcullis_contract::program::{ContentSafety, Op};

use super::{Place, SectionCompiler};
use crate::xml::Element;

/// The attributes of `llm-content-safety` (besides `id`).
pub(super) const ATTRIBUTES: &[&str] = &["backend-id", "shield-prompt"];
/// The harm categories of Azure AI Content Safety, as APIM spells them.
const CATEGORIES: &[&str] = &["Hate", "SelfHarm", "Sexual", "Violence"];
/// Each call must answer within this (the service answers in tens of milliseconds).
const CALL_TIMEOUT_MS: i64 = 30_000;
/// Where a call's response is kept: a variable name no expression can produce.
const RESPONSE_VARIABLE: &str = "\0llm-content-safety";

/// Compiles one `llm-content-safety`.
pub(super) fn content_safety(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let Some(backend_id) = c.required_literal(element, "backend-id", place) else { return };
    let backend_id = backend_id.trim().to_owned();
    if !c.env.backends.contains(&backend_id) {
        let message = format!("unknown backend {backend_id:?} (add backends/{backend_id}.toml)");
        let span = element.attr("backend-id").map_or(element.name_span.clone(), |attr| attr.value_span.clone());
        if c.env.options.allow_unknown_references {
            c.warning(place, span, message);
        } else {
            c.error(place, span, message);
            return;
        }
    }
    let shield_prompt = c.literal_bool(element, "shield-prompt", false, place);
    let mut rule = ContentSafety {
        backend_id,
        shield_prompt,
        eight_levels: false,
        categories: Vec::new(),
        blocklists: Vec::new(),
    };
    for child in element.elements() {
        match child.name.as_str() {
            "categories" => categories(c, child, place, &mut rule),
            "blocklists" => blocklists(c, child, place, &mut rule),
            other => {
                let message = format!("<llm-content-safety> holds <categories> and <blocklists>, not <{other}>");
                c.error(place, child.name_span.clone(), message);
            }
        }
    }
    let rule = c.code.content_safety(rule);
    let variable = c.code.str_const(RESPONSE_VARIABLE);
    let skip = c.code.label();
    let calls: &[bool] = if shield_prompt { &[false, true] } else { &[false] };
    for &shield in calls {
        c.code.emit_jump(Op::ContentSafetyCall { rule, shield, skip: 0 }, skip);
        c.code.push_int(CALL_TIMEOUT_MS);
        c.code.emit(Op::SendRequest { variable: Some(variable), ignore_error: true, one_way: false, deferred: false });
        c.code.emit(Op::ContentSafetyVerdict { rule, shield, variable });
    }
    c.code.place(skip);
}

/// `<categories output-type>` and its `<category name threshold>`s.
fn categories(c: &mut SectionCompiler<'_>, element: &Element, place: &Place, rule: &mut ContentSafety) {
    for attr in &element.attrs {
        if attr.name != "output-type" {
            c.error(
                place,
                attr.name_span.clone(),
                format!("<categories> has no attribute {:?} (known: output-type)", attr.name),
            );
        }
    }
    if let Some(attr) = element.attr("output-type") {
        match c.literal(attr, place).as_deref().map(str::trim) {
            Some("FourSeverityLevels") => rule.eight_levels = false,
            Some("EightSeverityLevels") => rule.eight_levels = true,
            Some(other) => {
                let message = format!("output-type {other:?}: expected FourSeverityLevels or EightSeverityLevels");
                c.error(place, attr.value_span.clone(), message);
            }
            None => {}
        }
    }
    let levels_max = if rule.eight_levels { 7 } else { 6 };
    for category in element.elements() {
        if category.name != "category" {
            c.error(
                place,
                category.name_span.clone(),
                format!("<categories> holds <category>, not <{}>", category.name),
            );
            continue;
        }
        let Some(name) = c.required_literal(category, "name", place) else { continue };
        let Some(known) = CATEGORIES.iter().find(|known| known.eq_ignore_ascii_case(name.trim())) else {
            let span = category.attr("name").map_or(category.name_span.clone(), |attr| attr.value_span.clone());
            c.error(place, span, format!("category {name:?}: expected one of {}", CATEGORIES.join(", ")));
            continue;
        };
        let threshold = match c.literal_parsed::<u8>(category, "threshold", "a severity", place) {
            Some(Some(threshold)) if threshold <= levels_max => threshold,
            Some(Some(_)) => {
                let span =
                    category.attr("threshold").map_or(category.name_span.clone(), |attr| attr.value_span.clone());
                c.error(place, span, format!("threshold is a severity from 0 to {levels_max}"));
                continue;
            }
            Some(None) => {
                c.error(place, category.name_span.clone(), "<category> needs threshold=\"...\"");
                continue;
            }
            None => continue,
        };
        rule.categories.push(((*known).to_owned(), threshold));
    }
}

/// `<blocklists>` and its `<id>`s.
fn blocklists(c: &mut SectionCompiler<'_>, element: &Element, place: &Place, rule: &mut ContentSafety) {
    for id in element.elements() {
        if id.name != "id" {
            c.error(place, id.name_span.clone(), format!("<blocklists> holds <id>, not <{}>", id.name));
            continue;
        }
        match id.text() {
            Some((text, _)) if !text.trim().is_empty() && !crate::expr::is_expression(text.trim()) => {
                rule.blocklists.push(text.trim().to_owned());
            }
            _ => c.error(place, id.name_span.clone(), "<id> holds a blocklist's name (a literal)"),
        }
    }
}

#[cfg(test)]
mod tests;
