//! A compiled program as text, for `portcullis policy explain`: ops with their constants
//! resolved and sites named, secret values redacted.

use std::fmt::Write as _;

use portcullis_contract::program::{Const, Op, Program, Section};

/// One program as text: ops with their constants resolved, sites named; secret values redacted.
pub fn render_program(section: Section, program: &Program, secrets: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} ops, {} constants, {} locals, stack {}):",
        section.as_str(),
        program.ops.len(),
        program.consts.len(),
        program.locals,
        program.max_stack
    );
    if program.ops.is_empty() {
        let _ = writeln!(out, "  (nothing)");
    }
    let constant = |index: u32| -> String {
        let text = match program.consts.get(index as usize) {
            Some(Const::Str(s)) => format!("{s:?}"),
            Some(Const::Int(i)) => i.to_string(),
            Some(Const::Double(d)) => d.to_string(),
            Some(Const::Regex { pattern, ignore_case }) => {
                format!("regex {pattern:?}{}", if *ignore_case { " (ignore case)" } else { "" })
            }
            Some(Const::Liquid(source)) => format!("liquid {source:?}"),
            None => format!("#{index}?"),
        };
        redact(&text, secrets)
    };
    for (at, op) in program.ops.iter().enumerate() {
        let detail = match *op {
            Op::Const(i) => format!("const {}", constant(i)),
            Op::Site(i) => match program.sites.get(i as usize) {
                Some(site) => format!(
                    "── {} ({}, {}{})",
                    site.path,
                    site.scope.as_str(),
                    site.location,
                    site.policy_id.as_ref().map_or(String::new(), |id| format!(", id {id:?}"))
                ),
                None => format!("site #{i}?"),
            },
            Op::SetHeader { side, action, name, values } => {
                format!("set-header {side:?} {action:?} {} ({values} values)", constant(name))
            }
            Op::SetHeaderConst { side, action, name, value } => {
                format!("set-header {side:?} {action:?} {} = {}", constant(name), constant(value))
            }
            Op::RewriteUriConst { template, copy_unmatched } => {
                format!("rewrite-uri {}{}", constant(template), if copy_unmatched { " copy-unmatched" } else { "" })
            }
            Op::RequestHeader { name, default } => match default {
                Some(default) => format!("request-header {} or {}", constant(name), constant(default)),
                None => format!("request-header {}", constant(name)),
            },
            Op::ForwardRequestComputed { buffer_response } => {
                format!(
                    "forward-request (timeout-ms, follow-redirects, fail-on-error-status-code from the stack) buffer-response={buffer_response}"
                )
            }
            Op::SetNamedComputed { side, query, action, values } => {
                let what = if query { "set-query-parameter".to_owned() } else { format!("set-header {side:?}") };
                format!("{what} {action:?} (name from the stack, {values} values)")
            }
            Op::SetQueryParameter { action, name, values } => {
                format!("set-query-parameter {action:?} {} ({values} values)", constant(name))
            }
            Op::SetVariable { name } => format!("set-variable {}", constant(name)),
            Op::CheckHeader { name, values_first, values, ignore_case } => {
                let allowed: Vec<String> = (values_first..values_first + u32::from(values)).map(constant).collect();
                format!(
                    "check-header {} allowed [{}]{}",
                    constant(name),
                    allowed.join(", "),
                    if ignore_case { " ignore-case" } else { "" }
                )
            }
            Op::CheckHeaderConst { name, values_first, values, ignore_case, status, message } => {
                let allowed: Vec<String> = (values_first..values_first + u32::from(values)).map(constant).collect();
                format!(
                    "check-header {} allowed [{}]{} else {status}{}",
                    constant(name),
                    allowed.join(", "),
                    if ignore_case { " ignore-case" } else { "" },
                    message.map_or(String::new(), |message| format!(" {}", constant(message)))
                )
            }
            Op::IpFilter(i) => match program.ip_filters.get(i as usize) {
                Some(filter) => format!(
                    "ip-filter {} ({} ranges)",
                    if filter.allow { "allow" } else { "forbid" },
                    filter.ranges.len()
                ),
                None => format!("ip-filter #{i}?"),
            },
            Op::Cors(i) => match program.cors.get(i as usize) {
                Some(cors) => format!("cors origins [{}]", cors.allowed_origins.join(", ")),
                None => format!("cors #{i}?"),
            },
            Op::Trace { source, severity } => format!("trace {} {severity:?}", constant(source)),
            Op::EmitMetric { name, namespace, dimensions, .. } => {
                format!("emit-metric {}/{} ({dimensions} dimensions)", constant(namespace), constant(name))
            }
            Op::EmitTokenMetric { namespace, dimensions, .. } => {
                format!("emit-token-metric {} ({dimensions} dimensions)", constant(namespace))
            }
            Op::TokenLimit { limit } => match program.token_limits.get(limit as usize) {
                Some(token_limit) => format!(
                    "token-limit per-minute {:?} quota {:?}{}",
                    token_limit.tokens_per_minute,
                    token_limit.quota,
                    if token_limit.estimate_prompt_tokens { " (estimates prompts)" } else { "" }
                ),
                None => format!("token-limit #{limit}?"),
            },
            Op::ContentSafetyCall { rule, shield, .. } => match program.content_safety.get(rule as usize) {
                Some(rule) => format!(
                    "content-safety {} via backend {}",
                    if shield { "shield-prompt" } else { "analyze" },
                    rule.backend_id
                ),
                None => format!("content-safety #{rule}?"),
            },
            Op::ContentSafetyVerdict { shield, .. } => {
                format!("content-safety verdict ({})", if shield { "shield-prompt" } else { "analyze" })
            }
            Op::ManagedIdentityToken { resource, client_id, .. } => match client_id {
                Some(client_id) => format!("managed-identity {} client {}", constant(resource), constant(client_id)),
                None => format!("managed-identity {}", constant(resource)),
            },
            Op::MockResponse { status, content_type, .. } => {
                format!("mock-response {status} {}", constant(content_type))
            }
            Op::BeginResponseFrom { name } => format!("begin-response from {}", constant(name)),
            Op::SendRequest { variable, ignore_error, one_way, deferred } => format!(
                "{}{}{}{}",
                if one_way { "send-one-way-request" } else { "send-request" },
                variable.map_or(String::new(), |name| format!(" into {}", constant(name))),
                if ignore_error { ", ignore-error" } else { "" },
                if deferred { ", in flight until the wait" } else { "" },
            ),
            Op::Limit { limit, resume } => match program.limits.get(limit as usize) {
                Some(entry) => format!(
                    "{:?}{} calls={} bandwidth={}KB period={}s{}{} (then {resume})",
                    entry.kind,
                    if entry.by_key { " by key" } else { " per subscription" },
                    entry.calls.map_or("(stack)".to_owned(), |calls| calls.to_string()),
                    entry.bandwidth_kb.map_or("-".to_owned(), |kb| kb.to_string()),
                    entry.period_seconds,
                    if entry.scopes.is_empty() {
                        String::new()
                    } else {
                        format!(" +{} api/operation limits", entry.scopes.len())
                    },
                    if entry.count_after_response { ", counted after the response" } else { "" },
                ),
                None => format!("limit #{limit}?"),
            },
            other => format!("{other:?}"),
        };
        let _ = writeln!(out, "  {at:4}  {detail}");
    }
    out
}

fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        text = text.replace(secret.as_str(), "***");
    }
    text
}
