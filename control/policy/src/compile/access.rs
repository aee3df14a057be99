//! Access policies: `check-header`, `ip-filter`, `cors`.

use std::net::IpAddr;

use portcullis_contract::program::{Cors, IpFilter, IpRange, Op, VALUES_PER_POLICY_MAX};

use super::{Place, SectionCompiler};
use crate::expr::Expect;
use crate::xml::Element;

/// APIM's default status for a failed `check-header`.
const CHECK_HEADER_STATUS_DEFAULT: i64 = 401;

pub(super) fn check_header(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let Some(name) = c.required_literal(element, "name", place) else { return };
    if !super::policies::is_token(&name) {
        if let Some(attr) = element.attr("name") {
            c.error(place, attr.value_span.clone(), format!("{name:?} is not a valid HTTP header name"));
        }
        return;
    }
    let ignore_case = c.literal_bool(element, "ignore-case", false, place);
    let mut values = Vec::new();
    for child in element.elements() {
        if child.name != "value" {
            c.error(
                place,
                child.name_span.clone(),
                format!("<check-header> holds <value> elements, not <{}>", child.name),
            );
            continue;
        }
        // Named values are substituted in the allowed values, as everywhere in a document.
        let text = match child.text() {
            Some((text, span)) => match c.substitute(&text, &span, place) {
                Some(text) => text,
                None => continue,
            },
            None => String::new(),
        };
        values.push(text);
    }
    if values.len() > usize::from(VALUES_PER_POLICY_MAX) {
        c.error(place, element.name_span.clone(), format!("at most {VALUES_PER_POLICY_MAX} values"));
        return;
    }
    // Status and message may be expressions; they are pushed for the op.
    if c.attr_value(element, "failed-check-httpcode", Expect::Int, place).is_none() {
        c.code.push_int(CHECK_HEADER_STATUS_DEFAULT);
    }
    if c.attr_value(element, "failed-check-error-message", Expect::String, place).is_none() {
        c.code.emit(Op::Null);
    }
    // The allowed values go into consecutive constants; dedup would break the run, so they are
    // appended as a block (a repeated value costs one constant).
    let name = c.code.str_const(&name);
    let values_first = c.code.fresh_str_consts(&values);
    c.code.emit(Op::CheckHeader { name, values_first, values: values.len() as u16, ignore_case });
}

pub(super) fn ip_filter(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let allow = match element.attr("action").map(|attr| (attr, attr.value.trim())) {
        Some((_, "allow")) => true,
        Some((_, "forbid")) => false,
        Some((attr, other)) => {
            c.error(place, attr.value_span.clone(), format!("action {other:?}: expected allow or forbid"));
            return;
        }
        None => {
            c.error(place, element.name_span.clone(), "<ip-filter> needs action=\"allow\" or action=\"forbid\"");
            return;
        }
    };
    let mut ranges = Vec::new();
    for child in element.elements() {
        match child.name.as_str() {
            "address" => {
                let Some((text, span)) = child.text() else {
                    c.error(place, child.name_span.clone(), "<address> needs an IP address as its content");
                    continue;
                };
                let Some(text) = c.substitute(&text, &span, place) else { continue };
                match text.trim().parse::<IpAddr>() {
                    Ok(ip) => ranges.push(IpRange { first: ip_bits(ip), last: ip_bits(ip) }),
                    Err(_) => c.error(place, span, format!("{:?} is not an IPv4 or IPv6 address", text.trim())),
                }
            }
            "address-range" => {
                let (Some(from), Some(to)) = (child.attr("from"), child.attr("to")) else {
                    c.error(place, child.name_span.clone(), "<address-range> needs from=\"...\" and to=\"...\"");
                    continue;
                };
                let (Some(from_text), Some(to_text)) = (c.literal(from, place), c.literal(to, place)) else { continue };
                let parsed = (from_text.trim().parse::<IpAddr>(), to_text.trim().parse::<IpAddr>());
                match parsed {
                    (Ok(first), Ok(last)) if first.is_ipv4() == last.is_ipv4() && ip_bits(first) <= ip_bits(last) => {
                        ranges.push(IpRange { first: ip_bits(first), last: ip_bits(last) });
                    }
                    (Ok(_), Ok(_)) => c.error(
                        place,
                        child.name_span.clone(),
                        "an address range runs from a lower to a higher address of the same family",
                    ),
                    (Err(_), _) => c.error(place, from.value_span.clone(), "not an IP address"),
                    (_, Err(_)) => c.error(place, to.value_span.clone(), "not an IP address"),
                }
            }
            other => c.error(
                place,
                child.name_span.clone(),
                format!("<ip-filter> holds <address> and <address-range>, not <{other}>"),
            ),
        }
    }
    let index = c.code.ip_filter(IpFilter { allow, ranges });
    c.code.emit(Op::IpFilter(index));
}

/// An address as 128 bits; IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
pub(crate) fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub(super) fn cors(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let allow_credentials = c.literal_bool(element, "allow-credentials", false, place);
    let terminate_unmatched_request = c.literal_bool(element, "terminate-unmatched-request", true, place);
    let mut cors = Cors {
        allow_credentials,
        terminate_unmatched_request,
        allowed_origins: Vec::new(),
        allowed_methods: Vec::new(),
        preflight_max_age_s: None,
        allowed_headers: Vec::new(),
        expose_headers: Vec::new(),
    };
    for child in element.elements() {
        match child.name.as_str() {
            "allowed-origins" => cors.allowed_origins = list(c, child, "origin", place),
            "allowed-methods" => {
                cors.allowed_methods =
                    list(c, child, "method", place).into_iter().map(|m| m.to_ascii_uppercase()).collect();
                cors.preflight_max_age_s =
                    c.literal_parsed(child, "preflight-result-max-age", "a number of seconds", place).flatten();
            }
            "allowed-headers" => {
                cors.allowed_headers =
                    list(c, child, "header", place).into_iter().map(|h| h.to_ascii_lowercase()).collect();
            }
            "expose-headers" => cors.expose_headers = list(c, child, "header", place),
            other => c.error(
                place,
                child.name_span.clone(),
                format!(
                    "<cors> holds allowed-origins, allowed-methods, allowed-headers and expose-headers, not <{other}>"
                ),
            ),
        }
    }
    if cors.allowed_origins.is_empty() {
        c.error(place, element.name_span.clone(), "<cors> needs <allowed-origins> with at least one <origin>");
        return;
    }
    if cors.allowed_origins.iter().any(|o| o == "*") && cors.allowed_origins.len() > 1 {
        c.error(place, element.name_span.clone(), "<origin>*</origin> must be the only origin");
        return;
    }
    if cors.allow_credentials && cors.allowed_origins.iter().any(|o| o == "*") {
        c.error(
            place,
            element.name_span.clone(),
            "allow-credentials=\"true\" cannot be combined with the wildcard origin * (browsers refuse it)",
        );
        return;
    }
    if cors.allowed_methods.is_empty() {
        // APIM's default: GET and POST.
        cors.allowed_methods = vec!["GET".into(), "POST".into()];
    }
    let index = c.code.cors(cors);
    c.code.emit(Op::Cors(index));
}

/// The texts of `<item>` children.
fn list(c: &mut SectionCompiler<'_>, element: &Element, item: &str, place: &Place) -> Vec<String> {
    let mut items = Vec::new();
    for child in element.elements() {
        if child.name != item {
            c.error(
                place,
                child.name_span.clone(),
                format!("<{}> holds <{item}> elements, not <{}>", element.name, child.name),
            );
            continue;
        }
        match child.text() {
            Some((text, span)) if !text.trim().is_empty() => {
                // Named values are substituted (`<origin>https://{{portal-host}}</origin>`).
                if let Some(text) = c.substitute(&text, &span, place) {
                    items.push(text.trim().to_owned());
                }
            }
            _ => c.error(place, child.name_span.clone(), format!("<{item}> is empty")),
        }
    }
    items
}
