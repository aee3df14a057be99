//! `emit-metric`: a custom metric with dimensions. APIM sends it to Application Insights; here it
//! becomes a Prometheus family on the ops listener (docs/observability.md).
//!
//! ```xml
//! <emit-metric name="Request" value="1" namespace="my-metrics">
//!     <dimension name="API ID" />
//!     <dimension name="Client IP" value="@(context.Request.IpAddress)" />
//! </emit-metric>
//! ```

use portcullis_contract::program::{EMIT_METRIC_DIMENSIONS_MAX as DIMENSIONS_MAX, Op};

use super::{Place, SectionCompiler};
use crate::expr::Expect;
use crate::xml::Element;

/// APIM's default namespace.
pub(super) const NAMESPACE_DEFAULT: &str = "API Management";

/// The dimensions APIM fills in when `value` is omitted, and the expression that computes each.
const DEFAULT_DIMENSIONS: &[(&str, &str)] = &[
    ("API ID", "@(context.Api.Id)"),
    ("Operation ID", "@(context.Operation.Id)"),
    ("Product ID", "@(context.Product?.Id ?? \"\")"),
    ("User ID", "@(context.User?.Id ?? \"\")"),
    ("Subscription ID", "@(context.Subscription?.Id ?? \"\")"),
    ("Location", "@(context.Deployment.Region)"),
    ("Gateway ID", "@(context.Deployment.GatewayId)"),
];

/// The token metrics' default dimensions: emit-metric's and the caller's address.
const TOKEN_DEFAULT_DIMENSIONS: &[(&str, &str)] = &[
    ("API ID", "@(context.Api.Id)"),
    ("Operation ID", "@(context.Operation.Id)"),
    ("Product ID", "@(context.Product?.Id ?? \"\")"),
    ("User ID", "@(context.User?.Id ?? \"\")"),
    ("Subscription ID", "@(context.Subscription?.Id ?? \"\")"),
    ("Location", "@(context.Deployment.Region)"),
    ("Gateway ID", "@(context.Deployment.GatewayId)"),
    ("Client IP", "@(context.Request.IpAddress)"),
];

/// The metrics a token metric policy emits, in the order `EmitTokenMetric` names them (APIM's).
const TOKEN_METRIC_NAMES: [&str; 3] = ["Prompt Tokens", "Completion Tokens", "Total Tokens"];

/// Compiles `emit-metric`: pushes the value, then each dimension's value, then `EmitMetric`
/// with the names as constants.
pub(super) fn emit_metric(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let Some(name) = c.required_literal(element, "name", place) else { return };
    if name.trim().is_empty() {
        c.error(place, element.name_span.clone(), "<emit-metric> needs a non-empty name");
        return;
    }
    let namespace = match element.attr("namespace") {
        Some(attr) => match c.literal(attr, place) {
            Some(namespace) => namespace,
            None => return,
        },
        None => NAMESPACE_DEFAULT.to_owned(),
    };
    match element.attr("value") {
        Some(attr) => {
            if !crate::expr::is_expression(&attr.value) && attr.value.trim().parse::<f64>().is_err() {
                c.error(place, attr.value_span.clone(), "value must be a number (a double) or a policy expression");
                c.code.push_int(1);
            } else {
                c.value(&attr.value, &attr.value_span, Expect::Any, place);
            }
        }
        None => c.code.push_int(1),
    }
    let mut names = Vec::new();
    for child in element.elements() {
        if child.name != "dimension" {
            c.error(place, child.name_span.clone(), format!("<emit-metric> holds <dimension>, not <{}>", child.name));
            continue;
        }
        if let Some(dimension) = dimension(c, child, DEFAULT_DIMENSIONS, place) {
            names.push(dimension);
        }
    }
    if names.len() > DIMENSIONS_MAX {
        c.error(
            place,
            element.name_span.clone(),
            format!("<emit-metric> has {} dimensions; at most {DIMENSIONS_MAX}", names.len()),
        );
        return;
    }
    let name = c.code.str_const(&name);
    let namespace = c.code.str_const(&namespace);
    let names_first = c.code.fresh_str_consts(&names);
    c.code.emit(Op::EmitMetric { name, namespace, names_first, dimensions: names.len() as u8 });
}

/// Compiles `llm-emit-token-metric` / `azure-openai-emit-token-metric`: pushes each dimension's
/// value (computed inbound, as APIM does), then `EmitTokenMetric`; the proxy adds the prompt,
/// completion and total tokens of the response's `usage` once it has relayed it.
pub(super) fn emit_token_metric(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let namespace = match element.attr("namespace") {
        Some(attr) => match c.literal(attr, place) {
            Some(namespace) => namespace,
            None => return,
        },
        None => NAMESPACE_DEFAULT.to_owned(),
    };
    let mut names: Vec<String> = TOKEN_METRIC_NAMES.iter().map(|name| (*name).to_owned()).collect();
    for child in element.elements() {
        if child.name != "dimension" {
            let message = format!("<{}> holds <dimension>, not <{}>", element.name, child.name);
            c.error(place, child.name_span.clone(), message);
            continue;
        }
        if let Some(dimension) = dimension(c, child, TOKEN_DEFAULT_DIMENSIONS, place) {
            names.push(dimension);
        }
    }
    let dimensions = names.len() - TOKEN_METRIC_NAMES.len();
    if dimensions > DIMENSIONS_MAX {
        let message = format!("<{}> has {dimensions} dimensions; at most {DIMENSIONS_MAX}", element.name);
        c.error(place, element.name_span.clone(), message);
        return;
    }
    let namespace = c.code.str_const(&namespace);
    let names_first = c.code.fresh_str_consts(&names);
    c.code.emit(Op::EmitTokenMetric { namespace, names_first, dimensions: dimensions as u8 });
}

/// Compiles one `<dimension>`: pushes its value and returns its name.
fn dimension(c: &mut SectionCompiler<'_>, child: &Element, defaults: &[(&str, &str)], place: &Place) -> Option<String> {
    let Some(name_attr) = child.attr("name") else {
        c.error(place, child.name_span.clone(), "<dimension> needs name=\"...\"");
        return None;
    };
    if crate::expr::is_expression(&name_attr.value) {
        c.error(
            place,
            name_attr.value_span.clone(),
            "a dimension name computed by an expression is not supported: metric labels need fixed names",
        );
        return None;
    }
    let name = name_attr.value.trim().to_owned();
    match child.attr("value") {
        Some(value) => {
            c.value(&value.value, &value.value_span, Expect::String, place);
        }
        None => match defaults.iter().find(|(default, _)| default.eq_ignore_ascii_case(&name)) {
            Some((_, expression)) => {
                c.value(expression, &name_attr.value_span, Expect::String, place);
            }
            None => {
                let known: Vec<&str> = defaults.iter().map(|(default, _)| *default).collect();
                c.error(
                    place,
                    child.name_span.clone(),
                    format!("<dimension name=\"{name}\"> needs a value (only {} may omit it)", known.join(", ")),
                );
                return None;
            }
        },
    }
    Some(name)
}
