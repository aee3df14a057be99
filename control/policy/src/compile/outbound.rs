//! The outbound calls: `send-request`, `send-one-way-request` and `wait`. A call compiles to
//! `BeginOutgoing`, its children editing the request being built ([`Side::Outgoing`]), then the
//! timeout and `SendRequest`, where the VM suspends while the proxy makes the call.
//!
//! [`Side::Outgoing`]: portcullis_contract::program::Side::Outgoing

use portcullis_contract::program::Op;

use super::{Place, SectionCompiler, certificates, identity, numbered, policies};
use crate::expr::Expect;
use crate::xml::Element;

/// APIM's `send-request` timeout when none is given: 60 seconds.
pub(super) const SEND_TIMEOUT_SECONDS_DEFAULT: u32 = 60;

/// Children of `send-request` this engine leaves to later work, with why.
const NOT_YET: &[&str] = &["proxy"];

/// `send-request` (`one_way` false) and `send-one-way-request`.
pub(super) fn send_request(c: &mut SectionCompiler<'_>, element: &Element, place: &Place, one_way: bool) {
    if place.in_send_request {
        c.error(place, element.name_span.clone(), format!("<{}> cannot stand inside another call", element.name));
        return;
    }
    let Some(site) = c.code.last_site() else {
        c.error(place, element.name_span.clone(), format!("internal: <{}> has no site", element.name));
        return;
    };
    let copy = match element.attr("mode") {
        None => false,
        Some(attr) => match c.literal(attr, place).as_deref().map(str::trim) {
            Some("new") => false,
            Some("copy") => true,
            Some(other) => {
                c.error(place, attr.value_span.clone(), format!("mode {other:?}: expected new or copy"));
                return;
            }
            None => return,
        },
    };
    let variable = if one_way {
        None
    } else {
        match c.required_literal(element, "response-variable-name", place) {
            Some(name) if !name.trim().is_empty() => Some(c.code.str_const(name.trim())),
            Some(_) => {
                c.error(place, element.name_span.clone(), "response-variable-name cannot be empty");
                return;
            }
            None => return,
        }
    };
    let ignore_error = !one_way && c.literal_bool(element, "ignore-error", false, place);
    c.code.emit(Op::BeginOutgoing { copy });
    let inner = Place { in_send_request: true, ..place.clone() };
    let mut has_url = false;
    for (child, index) in numbered(element.elements()) {
        match child.name.as_str() {
            "set-url" => {
                has_url = true;
                let child_place = c.site(child, index, &inner);
                c.check_attributes(child, &child_place);
                set_url(c, child, &child_place);
            }
            "set-method" => {
                let child_place = c.site(child, index, &inner);
                c.check_attributes(child, &child_place);
                policies::text_op(c, child, &child_place, Op::OutgoingMethod);
            }
            "set-header" | "set-body" => c.statement(child, index, &inner),
            name if NOT_YET.contains(&name) => c.error(
                place,
                child.name_span.clone(),
                format!("<{name}> inside <{}> is not supported yet (see docs/policies.md)", element.name),
            ),
            "authentication-certificate" => {
                let child_place = c.site(child, index, &inner);
                c.check_attributes(child, &child_place);
                certificates::authentication_certificate(c, child, &child_place);
            }
            "authentication-managed-identity" => {
                // The token goes on the request being built (or into a variable).
                let child_place = c.site(child, index, &inner);
                c.check_attributes(child, &child_place);
                identity::authentication_managed_identity(c, child, &child_place);
            }
            other => c.error(
                place,
                child.name_span.clone(),
                format!(
                    "<{}> holds set-url, set-method, set-header, set-body and authentication policies, not <{other}>",
                    element.name
                ),
            ),
        }
    }
    if !has_url && !copy {
        c.error(place, element.name_span.clone(), format!("<{}> needs <set-url> (or mode=\"copy\")", element.name));
        return;
    }
    // Errors and traces of the call itself name the call, not its last child.
    c.code.emit(Op::Site(site));
    timeout_ms(c, element, place);
    c.code.emit(Op::SendRequest { variable, ignore_error, one_way, deferred: place.in_wait && !one_way });
}

/// Pushes the call's timeout in milliseconds: `timeout` seconds, a literal or an expression.
fn timeout_ms(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let computed = element.attr("timeout").is_some_and(|attr| crate::expr::is_expression(attr.value.trim()));
    if computed {
        c.attr_value(element, "timeout", Expect::Int, place);
        c.code.push_int(1000);
        c.code.emit(Op::Mul);
        return;
    }
    let seconds: Option<u32> = c.literal_parsed(element, "timeout", "a number of seconds", place).flatten();
    let seconds = seconds.unwrap_or(SEND_TIMEOUT_SECONDS_DEFAULT);
    if seconds == 0 {
        if let Some(attr) = element.attr("timeout") {
            c.error(place, attr.value_span.clone(), "a send-request timeout is at least 1 second");
        }
    }
    c.code.push_int(i64::from(seconds) * 1000);
}

/// `<set-url>`: an absolute `http://` or `https://` URL, literal or computed.
fn set_url(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    policies::no_children(c, element, place);
    let Some((text, span)) = element.text() else {
        c.error(place, element.name_span.clone(), "<set-url> needs a URL as its content");
        c.code.push_str("");
        c.code.emit(Op::OutgoingUrl);
        return;
    };
    let trimmed = text.trim();
    if !crate::expr::is_expression(trimmed) && !trimmed.contains("{{") {
        let lower = trimmed.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            c.error(place, span.clone(), format!("{trimmed:?} is not an http:// or https:// URL"));
        }
    }
    c.value(trimmed, &span, Expect::String, place);
    c.code.emit(Op::OutgoingUrl);
}

/// `wait for="all|any"`: its `send-request`s start together; the section goes on when all of
/// them (or the first) completed.
pub(super) fn wait(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    if place.in_wait {
        c.error(place, element.name_span.clone(), "<wait> cannot stand inside another <wait>");
        return;
    }
    let any = match element.attr("for") {
        None => false,
        Some(attr) => match c.literal(attr, place).as_deref().map(str::trim) {
            Some("all") => false,
            Some("any") => true,
            Some(other) => {
                c.error(place, attr.value_span.clone(), format!("for {other:?}: expected all or any"));
                return;
            }
            None => return,
        },
    };
    let Some(site) = c.code.last_site() else { return };
    let inner = Place { in_wait: true, ..place.clone() };
    for (child, index) in numbered(element.elements()) {
        match child.name.as_str() {
            "send-request" | "cache-lookup-value" | "choose" => c.statement(child, index, &inner),
            other => c.error(
                place,
                child.name_span.clone(),
                format!("<wait> holds send-request, cache-lookup-value and choose, not <{other}>"),
            ),
        }
    }
    c.code.emit(Op::Site(site));
    c.code.emit(Op::Wait { any });
}
