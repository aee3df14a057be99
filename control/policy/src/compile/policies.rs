//! The policies: which exist, where they may stand, and how each compiles.

use portcullis_contract::program::{
    ExistsAction, FORWARD_TIMEOUT_MS_DEFAULT, Op, RETRY_COUNT_MAX, Section, Severity, VALUES_PER_POLICY_MAX,
};

use super::{Place, SectionCompiler, access, cache, certificates};
use crate::expr::Expect;
use crate::xml::Element;

use Section::{Backend as B, Inbound as I, OnError as E, Outbound as O};

/// What the engine knows about a policy element.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// Implemented; allowed in these sections.
    Supported(&'static [Section]),
    /// An APIM policy this engine does not implement yet.
    Unsupported,
    /// Not an APIM policy at all.
    Unknown,
}

const ALL: &[Section] = &[I, B, O, E];

/// Every policy of API Management that this engine does not implement (apim-reference §1.3).
const UNSUPPORTED: &[&str] = &[
    "proxy",
    "get-authorization-context",
    "xsl-transform",
    "cross-domain",
    "log-to-eventhub",
    "send-service-bus-message",
    "validate-parameters",
    "validate-headers",
    "validate-status-code",
    "validate-odata-request",
    "validate-graphql-request",
    "llm-semantic-cache-lookup",
    "llm-semantic-cache-store",
    "azure-openai-semantic-cache-lookup",
    "azure-openai-semantic-cache-store",
    "publish-to-dapr",
    "invoke-dapr-binding",
    "sql-data-source",
    "cosmosdb-data-source",
    "http-data-source",
    "publish-event",
];

pub(super) fn kind(name: &str) -> Kind {
    let sections: &'static [Section] = match name {
        "choose" | "set-variable" | "retry" | "return-response" | "limit-concurrency" | "trace" => ALL,
        "emit-metric" => ALL,
        "send-request" | "send-one-way-request" => ALL,
        // APIM: not in on-error.
        "wait" => &[I, B, O],
        "set-header" | "set-body" | "set-status" | "find-and-replace" | "set-method" => ALL,
        "mock-response" => &[I, O, E],
        "set-query-parameter" => &[I, B],
        "rewrite-uri" | "check-header" | "ip-filter" | "cors" | "authentication-basic" => &[I],
        "validate-client-certificate" | "authentication-certificate" => &[I],
        "set-backend-service" => &[I, B],
        "forward-request" => &[B],
        "cache-lookup" => &[I],
        "cache-store" => &[O],
        "cache-lookup-value" | "cache-store-value" | "cache-remove-value" => ALL,
        "rate-limit" | "rate-limit-by-key" | "quota" | "quota-by-key" => &[I],
        "validate-jwt" | "validate-azure-ad-token" => &[I],
        "xml-to-json" | "json-to-xml" => &[I, O, E],
        "jsonp" => &[O],
        "validate-content" => &[I, O, E],
        "redirect-content-urls" => &[I, O],
        "authentication-managed-identity" => &[I, B],
        "llm-emit-token-metric" | "azure-openai-emit-token-metric" => &[I],
        "llm-token-limit" | "azure-openai-token-limit" => &[I],
        "llm-content-safety" => &[I],
        _ if UNSUPPORTED.contains(&name) => return Kind::Unsupported,
        _ => return Kind::Unknown,
    };
    Kind::Supported(sections)
}

/// Why a policy stays refused, where the reason is not "not implemented yet".
pub(super) fn refusal(name: &str) -> Option<&'static str> {
    match name {
        "get-authorization-context" => Some(
            "it reads tokens from APIM's credential manager (connections an Azure portal user consented to), \
             which has no counterpart outside Azure; use authentication-managed-identity or validate-jwt instead",
        ),
        _ => None,
    }
}

/// Policies allowed as children of `return-response` wherever it stands.
pub(super) fn in_return_response(name: &str) -> bool {
    matches!(name, "set-status" | "set-header" | "set-body")
}

/// Attributes each supported policy accepts (besides `id`, which every policy accepts).
pub(super) fn attributes(name: &str) -> &'static [&'static str] {
    match name {
        "set-header" | "set-query-parameter" => &["name", "exists-action"],
        "set-variable" => &["name", "value"],
        "rewrite-uri" => &["template", "copy-unmatched-params"],
        "set-backend-service" => &["base-url", "backend-id"],
        "forward-request" => &[
            "timeout",
            "timeout-ms",
            "continue-timeout",
            "http-version",
            "follow-redirects",
            "buffer-request-body",
            "buffer-response",
            "fail-on-error-status-code",
        ],
        "set-body" => &["template", "xsi-nil", "parse-date"],
        "set-status" => &["code", "reason"],
        "find-and-replace" => &["from", "to"],
        "check-header" => &["name", "failed-check-httpcode", "failed-check-error-message", "ignore-case"],
        "ip-filter" => &["action"],
        "cors" => &["allow-credentials", "terminate-unmatched-request"],
        "authentication-basic" => &["username", "password"],
        "validate-client-certificate" => {
            &["validate-revocation", "validate-trust", "validate-not-before", "validate-not-after", "ignore-error"]
        }
        "authentication-certificate" => &["thumbprint", "certificate-id", "body", "password"],
        "trace" => &["source", "severity"],
        "emit-metric" => &["name", "namespace", "value"],
        "llm-emit-token-metric" | "azure-openai-emit-token-metric" => &["namespace"],
        "llm-token-limit" | "azure-openai-token-limit" => super::token_limit::ATTRIBUTES,
        "llm-content-safety" => super::content_safety::ATTRIBUTES,
        "authentication-managed-identity" => &["resource", "client-id", "output-token-variable-name", "ignore-error"],
        "return-response" => &["response-variable-name"],
        "send-request" => &["mode", "response-variable-name", "timeout", "ignore-error"],
        "send-one-way-request" => &["mode", "timeout"],
        "wait" => &["for"],
        "mock-response" => &["status-code", "content-type", "index"],
        "retry" => &["condition", "count", "interval", "max-interval", "delta", "first-fast-retry"],
        "limit-concurrency" => &["key", "max-count"],
        "cache-lookup" => &[
            "vary-by-developer",
            "vary-by-developer-groups",
            "caching-type",
            "downstream-caching-type",
            "must-revalidate",
            "allow-private-response-caching",
        ],
        "cache-store" => &["duration", "cache-response"],
        "cache-lookup-value" => &["key", "default-value", "variable-name", "caching-type"],
        "cache-store-value" => &["key", "value", "duration", "caching-type"],
        "cache-remove-value" => &["key", "caching-type"],
        "rate-limit" | "rate-limit-by-key" | "quota" | "quota-by-key" => super::limits::attributes(name),
        "validate-jwt" => &[
            "header-name",
            "query-parameter-name",
            "token-value",
            "failed-validation-httpcode",
            "failed-validation-error-message",
            "require-expiration-time",
            "require-scheme",
            "require-signed-tokens",
            "clock-skew",
            "output-token-variable-name",
        ],
        "xml-to-json" => super::transform::XML_TO_JSON_ATTRIBUTES,
        "json-to-xml" => super::transform::JSON_TO_XML_ATTRIBUTES,
        "jsonp" => &["callback-parameter-name"],
        "validate-content" => super::validation::VALIDATE_CONTENT_ATTRIBUTES,
        "validate-azure-ad-token" => &[
            "tenant-id",
            "header-name",
            "query-parameter-name",
            "token-value",
            "failed-validation-httpcode",
            "failed-validation-error-message",
            "output-token-variable-name",
        ],
        _ => &[],
    }
}

/// Compiles one supported policy (its `Site` is already emitted).
pub(super) fn compile(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    match element.name.as_str() {
        "choose" => choose(c, element, place),
        "set-variable" => set_variable(c, element, place),
        "set-header" => set_header(c, element, place, false),
        "set-query-parameter" => set_header(c, element, place, true),
        "set-method" => text_op(c, element, place, Op::SetMethod),
        "set-body" => set_body(c, element, place),
        "set-status" => set_status(c, element, place),
        "find-and-replace" => find_and_replace(c, element, place),
        "rewrite-uri" => rewrite_uri(c, element, place),
        "set-backend-service" => set_backend_service(c, element, place),
        "forward-request" => forward_request(c, element, place),
        "return-response" => return_response(c, element, place),
        "mock-response" => mock_response(c, element, place),
        "retry" => retry(c, element, place),
        "limit-concurrency" => limit_concurrency(c, element, place),
        "rate-limit" | "rate-limit-by-key" | "quota" | "quota-by-key" => super::limits::limit(c, element, place),
        "trace" => trace(c, element, place),
        "emit-metric" => super::metrics::emit_metric(c, element, place),
        "send-request" => super::outbound::send_request(c, element, place, false),
        "send-one-way-request" => super::outbound::send_request(c, element, place, true),
        "wait" => super::outbound::wait(c, element, place),
        "llm-emit-token-metric" | "azure-openai-emit-token-metric" => {
            super::metrics::emit_token_metric(c, element, place);
        }
        "llm-token-limit" | "azure-openai-token-limit" => super::token_limit::token_limit(c, element, place),
        "llm-content-safety" => super::content_safety::content_safety(c, element, place),
        "authentication-managed-identity" => super::identity::authentication_managed_identity(c, element, place),
        "check-header" => access::check_header(c, element, place),
        "ip-filter" => access::ip_filter(c, element, place),
        "cors" => access::cors(c, element, place),
        "authentication-basic" => authentication_basic(c, element, place),
        "validate-client-certificate" => certificates::validate_client_certificate(c, element, place),
        "authentication-certificate" => certificates::authentication_certificate(c, element, place),
        "cache-lookup" => cache::cache_lookup(c, element, place),
        "cache-store" => cache::cache_store(c, element, place),
        "cache-lookup-value" => cache::cache_lookup_value(c, element, place),
        "cache-store-value" => cache::cache_store_value(c, element, place),
        "cache-remove-value" => cache::cache_remove_value(c, element, place),
        "validate-jwt" => super::jwt::validate_jwt(c, element, place),
        "validate-azure-ad-token" => super::jwt::validate_azure_ad_token(c, element, place),
        "xml-to-json" => super::transform::xml_to_json(c, element, place),
        "json-to-xml" => super::transform::json_to_xml(c, element, place),
        "jsonp" => super::transform::jsonp(c, element, place),
        "validate-content" => super::validation::validate_content(c, element, place),
        "redirect-content-urls" => super::transform::redirect_content_urls(c, element, place),
        other => c.error(place, element.name_span.clone(), format!("internal: no compiler for <{other}>")),
    }
}

/// Refuses child elements in a policy that has none.
pub(super) fn no_children(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    for child in element.elements() {
        c.error(place, child.name_span.clone(), format!("<{}> cannot contain <{}>", element.name, child.name));
    }
}

fn choose(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let end = c.code.label();
    let mut seen_otherwise = false;
    let mut whens = 0usize;
    for branch in element.elements() {
        match branch.name.as_str() {
            "when" if !seen_otherwise => {
                whens += 1;
                let branch_place = Place { path: format!("{}/when[{whens}]", place.path), ..place.clone() };
                let next = c.code.label();
                match branch.attr("condition") {
                    Some(condition) => {
                        c.value(&condition.value, &condition.value_span, Expect::Bool, &branch_place);
                    }
                    None => {
                        c.error(place, branch.name_span.clone(), "<when> needs condition=\"@(...)\"");
                        c.code.emit(Op::Bool(false));
                    }
                }
                c.code.emit_jump(Op::JumpIfFalse(0), next);
                c.block(branch.elements(), &branch_place);
                c.code.emit_jump(Op::Jump(0), end);
                c.code.place(next);
            }
            "otherwise" if !seen_otherwise => {
                seen_otherwise = true;
                let branch_place = Place { path: format!("{}/otherwise[1]", place.path), ..place.clone() };
                c.block(branch.elements(), &branch_place);
            }
            "when" | "otherwise" => {
                c.error(
                    place,
                    branch.name_span.clone(),
                    "<otherwise> must be the last branch of <choose>, and appear once",
                );
            }
            other => c.error(
                place,
                branch.name_span.clone(),
                format!("<choose> holds <when> and <otherwise>, not <{other}>"),
            ),
        }
    }
    if whens == 0 {
        c.error(place, element.name_span.clone(), "<choose> needs at least one <when condition=\"...\">");
    }
    c.code.place(end);
}

fn set_variable(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    let Some(name) = c.required_literal(element, "name", place) else { return };
    if c.attr_value(element, "value", Expect::Any, place).is_none() {
        c.error(place, element.name_span.clone(), "<set-variable> needs value=\"...\"");
        return;
    }
    let name = c.code.str_const(&name);
    c.code.emit(Op::SetVariable { name });
}

fn exists_action(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) -> ExistsAction {
    let Some(attr) = element.attr("exists-action") else { return ExistsAction::Override };
    match c.literal(attr, place).as_deref().map(str::trim) {
        Some("override") => ExistsAction::Override,
        Some("skip") => ExistsAction::Skip,
        Some("append") => ExistsAction::Append,
        Some("delete") => ExistsAction::Delete,
        Some(other) => {
            let message = format!("exists-action {other:?}: expected override, skip, append or delete");
            c.error(place, attr.value_span.clone(), message);
            ExistsAction::Override
        }
        None => ExistsAction::Override,
    }
}

fn set_header(c: &mut SectionCompiler<'_>, element: &Element, place: &Place, query: bool) {
    // APIM accepts an expression for the name: it goes on the stack first, checked per request.
    let computed = element.attr("name").is_some_and(|attr| crate::expr::is_expression(&attr.value));
    if computed {
        c.attr_value(element, "name", Expect::String, place);
    }
    let name = if computed {
        String::new()
    } else {
        let Some(name) = c.required_literal(element, "name", place) else { return };
        name
    };
    let valid = computed || if query { !name.is_empty() } else { is_token(&name) };
    if !valid {
        let what = if query { "a query parameter name" } else { "a valid HTTP header name" };
        if let Some(attr) = element.attr("name") {
            c.error(place, attr.value_span.clone(), format!("{name:?} is not {what}"));
        }
        return;
    }
    let action = exists_action(c, element, place);
    let mut values: u16 = 0;
    for child in element.elements() {
        if child.name != "value" {
            c.error(
                place,
                child.name_span.clone(),
                format!("<{}> holds <value> elements, not <{}>", element.name, child.name),
            );
            continue;
        }
        if values == VALUES_PER_POLICY_MAX {
            c.error(place, child.name_span.clone(), format!("at most {VALUES_PER_POLICY_MAX} values"));
            break;
        }
        match child.text() {
            Some((text, span)) => {
                c.value(&text, &span, Expect::String, place);
            }
            None => c.code.push_str(""),
        }
        values += 1;
    }
    if action != ExistsAction::Delete && values == 0 {
        c.error(
            place,
            element.name_span.clone(),
            format!("<{}> needs at least one <value> (or exists-action=\"delete\")", element.name),
        );
        return;
    }
    if action == ExistsAction::Delete {
        // Values of a delete are ignored, as APIM ignores them.
        for _ in 0..values {
            c.code.emit(Op::Pop);
        }
        values = 0;
    }
    let side = c.side(place);
    if computed {
        c.code.emit(Op::SetNamedComputed { side, query, action, values });
        return;
    }
    let name = c.code.str_const(&name);
    if query {
        c.code.emit(Op::SetQueryParameter { action, name, values });
    } else {
        c.code.emit(Op::SetHeader { side, action, name, values });
    }
}

/// RFC 9110 token (header names, methods).
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A policy whose text content is its one value (`set-method`).
pub(super) fn text_op(c: &mut SectionCompiler<'_>, element: &Element, place: &Place, op: Op) {
    no_children(c, element, place);
    let Some((text, span)) = element.text() else {
        c.error(place, element.name_span.clone(), format!("<{}> needs a value as its content", element.name));
        return;
    };
    if !crate::expr::is_expression(text.trim()) && !is_token(text.trim()) {
        c.error(place, span, format!("{:?} is not a valid HTTP method", text.trim()));
        return;
    }
    c.value(text.trim(), &span, Expect::String, place);
    c.code.emit(op);
}

fn set_body(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    if let Some(attr) = element.attr("template") {
        if attr.value == "liquid" {
            return super::transform::liquid_body(c, element, place);
        }
        if attr.value != "none" {
            c.error(
                place,
                attr.value_span.clone(),
                format!("set-body template {:?} is not supported yet (only literal and expression bodies)", attr.value),
            );
            return;
        }
    }
    match element.text() {
        Some((text, span)) => {
            let trimmed = text.trim();
            if crate::expr::is_expression(trimmed) {
                c.value(trimmed, &span, Expect::Any, place);
            } else {
                c.value(&text, &span, Expect::String, place);
            }
        }
        None => c.code.push_str(""),
    }
    let side = c.side(place);
    c.code.emit(Op::SetBody { side });
}

fn set_status(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    match c.attr_value(element, "code", Expect::Int, place) {
        Some(_) => {}
        None => {
            c.error(place, element.name_span.clone(), "<set-status> needs code=\"...\"");
            return;
        }
    }
    if let Some(attr) = element.attr("code") {
        if let Ok(code) = attr.value.trim().parse::<u16>() {
            if !(100..=599).contains(&code) {
                c.error(place, attr.value_span.clone(), "a status code is between 100 and 599");
            }
        }
    }
    if c.attr_value(element, "reason", Expect::String, place).is_none() {
        c.code.emit(Op::Null);
    }
    let side = c.side(place);
    c.code.emit(Op::SetStatus { side });
}

fn find_and_replace(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    for name in ["from", "to"] {
        if c.attr_value(element, name, Expect::String, place).is_none() {
            c.error(place, element.name_span.clone(), format!("<find-and-replace> needs {name}=\"...\""));
            c.code.emit(Op::Null);
        }
    }
    let side = c.side(place);
    c.code.emit(Op::FindAndReplace { side });
}

fn rewrite_uri(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    let copy_unmatched = c.literal_bool(element, "copy-unmatched-params", true, place);
    match element.attr("template") {
        Some(attr) => {
            let literal = !crate::expr::is_expression(attr.value.trim());
            if literal && !attr.value.starts_with('/') && !attr.value.contains("{{") {
                c.error(place, attr.value_span.clone(), "a rewrite-uri template must start with '/'");
            }
            c.value(&attr.value, &attr.value_span, Expect::String, place);
        }
        None => {
            c.error(place, element.name_span.clone(), "<rewrite-uri> needs template=\"...\"");
            return;
        }
    }
    c.code.emit(Op::RewriteUri { copy_unmatched });
}

fn set_backend_service(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    if let Some(attr) = element.attr("backend-id") {
        if let Some(other) = element.attr("base-url") {
            c.error(place, other.name_span.clone(), "give base-url or backend-id, not both");
            return;
        }
        let literal = !crate::expr::is_expression(attr.value.trim()) && !attr.value.contains("{{");
        if literal && !c.env.backends.contains(attr.value.trim()) {
            let message = format!("unknown backend {:?} (add backends/{}.toml)", attr.value.trim(), attr.value.trim());
            if c.env.options.allow_unknown_references {
                c.warning(place, attr.value_span.clone(), message);
            } else {
                c.error(place, attr.value_span.clone(), message);
                return;
            }
        }
        if literal {
            c.code.push_str(attr.value.trim());
        } else {
            c.value(&attr.value, &attr.value_span, Expect::String, place);
        }
        c.code.emit(Op::SetBackendId);
        return;
    }
    let Some(attr) = element.attr("base-url") else {
        c.error(place, element.name_span.clone(), "<set-backend-service> needs base-url=\"...\" or backend-id=\"...\"");
        return;
    };
    if !crate::expr::is_expression(attr.value.trim()) && !attr.value.contains("{{") {
        let url = attr.value.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            c.error(place, attr.value_span.clone(), format!("base-url {url:?} is not an http:// or https:// URL"));
            return;
        }
    }
    c.value(&attr.value, &attr.value_span, Expect::String, place);
    c.code.emit(Op::SetBackendUrl);
}

fn forward_request(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    if let Some(attr) = element.attr("http-version") {
        if attr.value.trim() != "1" {
            c.error(
                place,
                attr.value_span.clone(),
                "only http-version=\"1\" is supported (HTTP/2 to backends is not implemented yet)",
            );
        }
    }
    if element.attr("timeout").is_some() && element.attr("timeout-ms").is_some() {
        c.error(place, element.name_span.clone(), "give timeout or timeout-ms, not both");
    }
    let buffer_response = c.literal_bool(element, "buffer-response", true, place);
    // Checked, and otherwise implied: the data plane buffers the request body (up to its limit)
    // whenever the backend section may send it twice (a retry around forward-request, or
    // follow-redirects), whatever this says.
    let _ = c.literal_bool(element, "buffer-request-body", false, place);
    // Checked, then moot: the gateway answers `Expect: 100-continue` itself and never sends
    // `Expect` to the backend, so there is no `100 Continue` to wait for (docs/policies.md).
    let continue_timeout =
        element.attr("continue-timeout").is_some_and(|attr| crate::expr::is_expression(attr.value.trim()));
    if continue_timeout {
        c.attr_value(element, "continue-timeout", Expect::Int, place);
        c.code.emit(Op::Pop);
    } else {
        let _ = c.literal_parsed::<u32>(element, "continue-timeout", "a number of seconds", place);
    }
    // As APIM, the timeouts and both flags may be policy expressions: then they are computed per
    // request and the op takes them from the stack.
    let computed = ["timeout", "timeout-ms", "follow-redirects", "fail-on-error-status-code"]
        .iter()
        .any(|name| element.attr(name).is_some_and(|attr| crate::expr::is_expression(attr.value.trim())));
    if computed {
        if c.attr_value(element, "timeout", Expect::Int, place).is_some() {
            c.code.push_int(1000);
            c.code.emit(Op::Mul);
        } else if c.attr_value(element, "timeout-ms", Expect::Int, place).is_none() {
            c.code.push_int(i64::from(FORWARD_TIMEOUT_MS_DEFAULT));
        }
        for name in ["follow-redirects", "fail-on-error-status-code"] {
            if c.attr_value(element, name, Expect::Bool, place).is_none() {
                c.code.emit(Op::Bool(false));
            }
        }
        c.code.emit(Op::ForwardRequestComputed { buffer_response });
        return;
    }
    let seconds: Option<u32> = c.literal_parsed(element, "timeout", "a number of seconds", place).flatten();
    let millis: Option<u32> = c.literal_parsed(element, "timeout-ms", "a number of milliseconds", place).flatten();
    let timeout_ms = match (seconds, millis) {
        (Some(s), _) => s.saturating_mul(1000),
        (None, Some(ms)) => ms,
        (None, None) => FORWARD_TIMEOUT_MS_DEFAULT,
    };
    let follow_redirects = c.literal_bool(element, "follow-redirects", false, place);
    let fail_on_error_status = c.literal_bool(element, "fail-on-error-status-code", false, place);
    c.code.emit(Op::ForwardRequest { timeout_ms, follow_redirects, buffer_response, fail_on_error_status });
}

fn return_response(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    match element.attr("response-variable-name") {
        Some(attr) => {
            let Some(name) = c.literal(attr, place) else { return };
            let name = c.code.str_const(&name);
            c.code.emit(Op::BeginResponseFrom { name });
        }
        None => {
            c.code.emit(Op::BeginResponse);
        }
    }
    let inner = Place { in_return_response: true, ..place.clone() };
    for (child, index) in super::numbered(element.elements()) {
        if !in_return_response(&child.name) {
            c.error(
                place,
                child.name_span.clone(),
                format!("<return-response> holds set-status, set-header and set-body, not <{}>", child.name),
            );
            continue;
        }
        c.statement(child, index, &inner);
    }
    c.code.emit(Op::Respond);
}

fn mock_response(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    let status: u16 = c.literal_parsed(element, "status-code", "a status code", place).flatten().unwrap_or(200);
    if !(100..=599).contains(&status) {
        if let Some(attr) = element.attr("status-code") {
            c.error(place, attr.value_span.clone(), "a status code is between 100 and 599");
        }
        return;
    }
    let content_type = element.attr("content-type").map(|attr| c.literal(attr, place).unwrap_or_default());
    // As APIM: the operation's response for the status (and the media type, when given; else
    // the first one documented) supplies the example; without one the content is empty.
    let documented = c.env.responses.iter().find(|response| {
        response.status == status
            && content_type.as_deref().is_none_or(|wanted| super::media_type(wanted) == response.content_type)
    });
    let content_type = content_type
        .or_else(|| documented.map(|response| response.content_type.clone()))
        .unwrap_or_else(|| "application/json".to_owned());
    let example = documented.and_then(|response| response.example.as_deref()).map(|example| c.code.str_const(example));
    let content_type = c.code.str_const(&content_type);
    c.code.emit(Op::MockResponse { status, content_type, example });
}

/// APIM's retry interval bounds are seconds; we keep milliseconds internally.
fn seconds_attr(c: &mut SectionCompiler<'_>, element: &Element, name: &str, place: &Place) -> u32 {
    let seconds: Option<u32> = c.literal_parsed(element, name, "a number of seconds", place).flatten();
    seconds.unwrap_or(0).saturating_mul(1000)
}

fn retry(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let count: Option<u32> = c.literal_parsed(element, "count", "a number of retries", place).flatten();
    let Some(count) = count else {
        c.error(place, element.name_span.clone(), "<retry> needs count=\"1..50\"");
        return;
    };
    if count == 0 || count > RETRY_COUNT_MAX {
        if let Some(attr) = element.attr("count") {
            c.error(place, attr.value_span.clone(), format!("retry count is 1 to {RETRY_COUNT_MAX}"));
        }
        return;
    }
    let interval_ms = seconds_attr(c, element, "interval", place);
    let max_interval_ms = seconds_attr(c, element, "max-interval", place);
    let delta_ms = seconds_attr(c, element, "delta", place);
    let first_fast_retry = c.literal_bool(element, "first-fast-retry", false, place);
    if element.attr("condition").is_none() {
        c.error(place, element.name_span.clone(), "<retry> needs condition=\"@(...)\"");
        return;
    }
    let local = c.code.local();
    c.code.emit(Op::RetryInit(local));
    let top = c.code.label();
    let end = c.code.label();
    c.code.place(top);
    c.block(element.elements(), place);
    if let Some(condition) = element.attr("condition") {
        c.value(&condition.value, &condition.value_span, Expect::Bool, place);
    }
    c.code.emit_jump(Op::JumpIfFalse(0), end);
    c.code.emit_jump(
        Op::RetryNext { local, count, interval_ms, max_interval_ms, delta_ms, first_fast_retry, target: 0 },
        top,
    );
    c.code.place(end);
}

fn limit_concurrency(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let max: Option<u32> = c.literal_parsed(element, "max-count", "a count", place).flatten();
    let Some(max) = max.filter(|&max| max > 0) else {
        c.error(place, element.name_span.clone(), "<limit-concurrency> needs max-count=\"N\" with N ≥ 1");
        return;
    };
    if c.attr_value(element, "key", Expect::String, place).is_none() {
        c.error(place, element.name_span.clone(), "<limit-concurrency> needs key=\"...\"");
        return;
    }
    c.code.emit(Op::LimitConcurrencyEnter { max });
    c.block(element.elements(), place);
    c.code.emit(Op::LimitConcurrencyExit);
}

fn trace(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let Some(source) = c.required_literal(element, "source", place) else { return };
    let severity = match element.attr("severity").map(|attr| attr.value.trim().to_ascii_lowercase()) {
        None => Severity::Verbose,
        Some(s) if s == "verbose" => Severity::Verbose,
        Some(s) if s == "information" => Severity::Information,
        Some(s) if s == "error" => Severity::Error,
        Some(other) => {
            if let Some(attr) = element.attr("severity") {
                c.error(
                    place,
                    attr.value_span.clone(),
                    format!("severity {other:?}: expected verbose, information or error"),
                );
            }
            Severity::Verbose
        }
    };
    let mut parts: u16 = 0;
    for child in element.elements() {
        match child.name.as_str() {
            "message" => {
                match child.text() {
                    Some((text, span)) => {
                        c.value(text.trim(), &span, Expect::String, place);
                    }
                    None => c.code.push_str(""),
                }
                parts += 1;
            }
            "metadata" => {
                let (Some(name), Some(value)) = (child.attr("name"), child.attr("value")) else {
                    c.error(place, child.name_span.clone(), "<metadata> needs name and value");
                    continue;
                };
                let name = format!(" {}=", name.value);
                c.code.push_str(&name);
                c.value(&value.value, &value.value_span, Expect::String, place);
                parts += 2;
            }
            other => c.error(
                place,
                child.name_span.clone(),
                format!("<trace> holds <message> and <metadata>, not <{other}>"),
            ),
        }
    }
    match parts {
        0 => c.code.push_str(""),
        1 => {}
        n => {
            c.code.emit(Op::Concat(n));
        }
    }
    let source = c.code.str_const(&source);
    c.code.emit(Op::Trace { source, severity });
}

fn authentication_basic(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    no_children(c, element, place);
    for name in ["username", "password"] {
        if c.attr_value(element, name, Expect::String, place).is_none() {
            c.error(place, element.name_span.clone(), format!("<authentication-basic> needs {name}=\"...\""));
            c.code.emit(Op::Null);
        }
    }
    c.code.emit(Op::AuthenticationBasic);
}
