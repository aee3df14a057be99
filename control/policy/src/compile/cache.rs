//! The caching policies: `cache-lookup` and `cache-store` (responses), `cache-lookup-value`,
//! `cache-store-value` and `cache-remove-value` (values by key). docs/cache.md says what the
//! data plane does with the ops these compile to.

use portcullis_contract::program::{CACHE_VARY_BY_MAX, CachingType, Op};

use super::{Place, SectionCompiler};
use crate::expr::Expect;
use crate::xml::Element;

/// `caching-type` (a literal: APIM allows no expression here); APIM's default is `prefer-external`.
fn caching_type(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) -> CachingType {
    let Some(attr) = element.attr("caching-type") else { return CachingType::PreferExternal };
    match c.literal(attr, place).as_deref().map(str::trim) {
        Some("internal") => CachingType::Internal,
        Some("external") => CachingType::External,
        Some("prefer-external") | None => CachingType::PreferExternal,
        Some(other) => {
            let message = format!("caching-type {other:?}: expected internal, external or prefer-external");
            c.error(place, attr.value_span.clone(), message);
            CachingType::PreferExternal
        }
    }
}

/// Pushes a boolean attribute that may be an expression, or `default` when it is absent.
fn bool_attr(c: &mut SectionCompiler<'_>, element: &Element, name: &str, default: bool, place: &Place) {
    if c.attr_value(element, name, Expect::Bool, place).is_none() {
        c.code.emit(Op::Bool(default));
    }
}

/// A required attribute that may be an expression, pushed; an error at the element when absent.
fn required_value(c: &mut SectionCompiler<'_>, element: &Element, name: &str, expect: Expect, place: &Place) {
    if c.attr_value(element, name, expect, place).is_none() {
        c.error(place, element.name_span.clone(), format!("<{}> needs {name}=\"...\"", element.name));
        c.code.emit(Op::Null);
    }
}

/// APIM: "This policy can only be used once in a policy section" (cache-lookup, cache-store).
fn once_per_section(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) -> bool {
    if c.code.sites_of(&element.name) > 1 {
        c.error(place, element.name_span.clone(), format!("<{}> can be used only once in a section", element.name));
        return false;
    }
    true
}

pub(super) fn cache_lookup(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    if !once_per_section(c, element, place) {
        return;
    }
    // APIM requires both vary-by-developer attributes.
    for name in ["vary-by-developer", "vary-by-developer-groups"] {
        if element.attr(name).is_none() {
            c.error(place, element.name_span.clone(), format!("<cache-lookup> needs {name}=\"true|false\""));
        }
    }
    let caching = caching_type(c, element, place);
    let mut headers = Vec::new();
    let mut queries = Vec::new();
    for child in element.elements() {
        let list = match child.name.as_str() {
            "vary-by-header" => &mut headers,
            "vary-by-query-parameter" => &mut queries,
            other => {
                let message =
                    format!("<cache-lookup> holds <vary-by-header> and <vary-by-query-parameter>, not <{other}>");
                c.error(place, child.name_span.clone(), message);
                continue;
            }
        };
        let Some((text, span)) = child.text() else {
            c.error(place, child.name_span.clone(), format!("<{}> needs a name as its content", child.name));
            continue;
        };
        // APIM: "Enter a single or multiple parameters. Use semicolon as a separator."
        for name in text.split(';').map(str::trim).filter(|name| !name.is_empty()) {
            if crate::expr::is_expression(name) {
                c.error(place, span.clone(), format!("<{}> does not accept policy expressions", child.name));
            } else if child.name == "vary-by-header" && !super::policies::is_token(name) {
                c.error(place, span.clone(), format!("{name:?} is not a valid HTTP header name"));
            } else {
                list.push(if child.name == "vary-by-header" { name.to_ascii_lowercase() } else { name.to_owned() });
            }
        }
    }
    if headers.len() > usize::from(CACHE_VARY_BY_MAX) || queries.len() > usize::from(CACHE_VARY_BY_MAX) {
        c.error(
            place,
            element.name_span.clone(),
            format!("at most {CACHE_VARY_BY_MAX} vary-by headers and parameters"),
        );
        return;
    }
    bool_attr(c, element, "vary-by-developer", false, place);
    bool_attr(c, element, "vary-by-developer-groups", false, place);
    match element.attr("downstream-caching-type") {
        Some(attr) if !crate::expr::is_expression(attr.value.trim()) => {
            let value = attr.value.trim();
            if !matches!(value, "none" | "private" | "public") {
                let message = format!("downstream-caching-type {value:?}: expected none, private or public");
                c.error(place, attr.value_span.clone(), message);
            }
            c.code.push_str(value);
        }
        Some(attr) => {
            c.value(&attr.value, &attr.value_span, Expect::String, place);
        }
        None => c.code.push_str("none"),
    }
    bool_attr(c, element, "must-revalidate", true, place);
    bool_attr(c, element, "allow-private-response-caching", false, place);
    let headers_first = c.code.fresh_str_consts(&headers);
    let queries_first = c.code.fresh_str_consts(&queries);
    c.code.emit(Op::CacheLookup {
        caching,
        headers_first,
        headers: headers.len() as u16,
        queries_first,
        queries: queries.len() as u16,
    });
}

pub(super) fn cache_store(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    if !once_per_section(c, element, place) {
        return;
    }
    no_children(c, element, place);
    required_value(c, element, "duration", Expect::Int, place);
    if c.attr_value(element, "cache-response", Expect::Bool, place).is_none() {
        c.code.emit(Op::Null);
    }
    c.code.emit(Op::CacheStore);
}

pub(super) fn cache_lookup_value(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    let caching = caching_type(c, element, place);
    let Some(variable) = c.required_literal(element, "variable-name", place) else { return };
    required_value(c, element, "key", Expect::String, place);
    let has_default = c.attr_value(element, "default-value", Expect::Any, place).is_some();
    let variable = c.code.str_const(&variable);
    c.code.emit(Op::CacheLookupValue { caching, variable, has_default });
}

pub(super) fn cache_store_value(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    let caching = caching_type(c, element, place);
    required_value(c, element, "key", Expect::String, place);
    required_value(c, element, "value", Expect::Any, place);
    required_value(c, element, "duration", Expect::Int, place);
    c.code.emit(Op::CacheStoreValue { caching });
}

pub(super) fn cache_remove_value(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    let caching = caching_type(c, element, place);
    required_value(c, element, "key", Expect::String, place);
    c.code.emit(Op::CacheRemoveValue { caching });
}

fn no_children(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    for child in element.elements() {
        c.error(place, child.name_span.clone(), format!("<{}> cannot contain <{}>", element.name, child.name));
    }
}
