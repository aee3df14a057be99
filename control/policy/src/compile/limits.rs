//! `rate-limit`, `rate-limit-by-key`, `quota` and `quota-by-key` (apim-reference §1.4.2, §1.4.3).
//!
//! Each compiles to its operands (calls, renewal-period, counter-key, increment-condition,
//! increment-count: a value or null, in that order), an [`Op::Limit`] naming its entry in the
//! program's limit table, and, when the increment condition reads the response (or
//! `increment-after-response="true"`), the condition's code followed by [`Op::LimitCommit`], which
//! the limit op jumps over: the data plane runs that code after the response.

use portcullis_contract::program::{
    LIMIT_SCOPES_MAX, Limit, LimitKind, LimitScope, Op, QUOTA_PERIOD_SECONDS_MIN, RATE_LIMIT_PERIOD_SECONDS_MAX,
};

use super::{Place, SectionCompiler};
use crate::expr::{self, Expect};
use crate::xml::Element;

/// Attributes each of the four policies accepts (besides `id`).
pub(super) fn attributes(name: &str) -> &'static [&'static str] {
    match name {
        "rate-limit" => &[
            "calls",
            "renewal-period",
            "retry-after-header-name",
            "retry-after-variable-name",
            "remaining-calls-header-name",
            "remaining-calls-variable-name",
            "total-calls-header-name",
        ],
        "rate-limit-by-key" => &[
            "calls",
            "renewal-period",
            "counter-key",
            "increment-condition",
            "increment-count",
            "increment-after-response",
            "retry-after-header-name",
            "retry-after-variable-name",
            "remaining-calls-header-name",
            "remaining-calls-variable-name",
            "total-calls-header-name",
        ],
        "quota" => &[
            "calls",
            "bandwidth",
            "renewal-period",
            "remaining-calls-header-name",
            "remaining-calls-variable-name",
            "remaining-bandwidth-header-name",
            "remaining-bandwidth-variable-name",
        ],
        "quota-by-key" => &[
            "calls",
            "bandwidth",
            "renewal-period",
            "counter-key",
            "increment-condition",
            "increment-count",
            "first-period-start",
            "remaining-calls-header-name",
            "remaining-calls-variable-name",
            "remaining-bandwidth-header-name",
            "remaining-bandwidth-variable-name",
        ],
        _ => &[],
    }
}

/// Compiles one of the four policies.
pub(super) fn limit(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let kind = if element.name.starts_with("rate-limit") { LimitKind::RateLimit } else { LimitKind::Quota };
    let by_key = element.name.ends_with("-by-key");
    let Some(mut table) = table_entry(c, element, place, kind, by_key) else { return };
    let scopes = if by_key {
        for child in element.elements() {
            c.error(place, child.name_span.clone(), format!("<{}> cannot contain <{}>", element.name, child.name));
        }
        Vec::new()
    } else {
        scopes(c, element, place, kind)
    };
    table.scopes = scopes;
    // Operands, in the order Op::Limit pops them last to first.
    let computed_calls = kind == LimitKind::RateLimit && by_key && is_expression_attr(element, "calls");
    if computed_calls {
        c.attr_value(element, "calls", Expect::Int, place);
    } else {
        c.code.emit(Op::Null);
    }
    if kind == LimitKind::RateLimit && by_key && is_expression_attr(element, "renewal-period") {
        c.attr_value(element, "renewal-period", Expect::Int, place);
    } else {
        c.code.emit(Op::Null);
    }
    if by_key {
        if c.attr_value(element, "counter-key", Expect::String, place).is_none() {
            c.error(place, element.name_span.clone(), format!("<{}> needs counter-key=\"...\"", element.name));
            c.code.emit(Op::Null);
        }
    } else {
        c.code.emit(Op::Null);
    }
    let condition = element.attr("increment-condition");
    let after_response = c.literal_bool(element, "increment-after-response", false, place)
        || condition.is_some_and(|attr| reads_response(&attr.value));
    table.count_after_response = after_response;
    match condition {
        Some(attr) if !after_response => {
            c.value(&attr.value, &attr.value_span, Expect::Bool, place);
        }
        _ => {
            c.code.emit(Op::Null);
        }
    }
    increment_count(c, element, place);
    let index = c.code.limit(table);
    let resume = c.code.label();
    c.code.emit_jump(Op::Limit { limit: index, resume: 0 }, resume);
    if after_response {
        match condition {
            Some(attr) => {
                c.value(&attr.value, &attr.value_span, Expect::Bool, place);
            }
            None => {
                c.code.emit(Op::Bool(true));
            }
        }
        c.code.emit(Op::LimitCommit { limit: index });
    }
    c.code.place(resume);
}

fn is_expression_attr(element: &Element, name: &str) -> bool {
    element.attr(name).is_some_and(|attr| expr::is_expression(attr.value.trim()))
}

/// Whether an increment condition reads the response, so that it can only be decided after it
/// (APIM's documented `@(context.Response.StatusCode == 200)` on an inbound rate limit).
fn reads_response(condition: &str) -> bool {
    condition.contains("context.Response")
}

/// `increment-count`: an expression, or a literal count ≥ 0 (default 1, pushed as null).
fn increment_count(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let Some(attr) = element.attr("increment-count") else {
        c.code.emit(Op::Null);
        return;
    };
    if !expr::is_expression(attr.value.trim()) && attr.value.trim().parse::<u32>().is_err() {
        c.error(place, attr.value_span.clone(), format!("increment-count: {:?} is not a count ≥ 0", attr.value));
        c.code.emit(Op::Null);
        return;
    }
    c.value(&attr.value, &attr.value_span, Expect::Int, place);
}

/// The policy's table entry: its literal limits, window and names.
fn table_entry(
    c: &mut SectionCompiler<'_>,
    element: &Element,
    place: &Place,
    kind: LimitKind,
    by_key: bool,
) -> Option<Limit> {
    let computed = kind == LimitKind::RateLimit && by_key;
    let calls = if computed && is_expression_attr(element, "calls") {
        Some(0)
    } else {
        c.literal_parsed::<u32>(element, "calls", "a number of calls", place)?
    };
    let bandwidth_kb = match kind {
        LimitKind::Quota => c.literal_parsed::<u32>(element, "bandwidth", "a number of kilobytes", place)?,
        LimitKind::RateLimit => None,
    };
    match kind {
        LimitKind::RateLimit if calls.is_none() => {
            c.error(place, element.name_span.clone(), format!("<{}> needs calls=\"...\"", element.name));
            return None;
        }
        LimitKind::Quota if calls.is_none() && bandwidth_kb.is_none() => {
            c.error(
                place,
                element.name_span.clone(),
                format!("<{}> needs calls=\"...\", bandwidth=\"...\" or both", element.name),
            );
            return None;
        }
        _ => {}
    }
    let period_seconds = if computed && is_expression_attr(element, "renewal-period") {
        RATE_LIMIT_PERIOD_SECONDS_MAX
    } else {
        period(c, element, place, kind, by_key)?
    };
    let first_period_start = match element.attr("first-period-start") {
        None => FIRST_PERIOD_START_DEFAULT,
        Some(attr) => {
            let text = c.literal(attr, place)?;
            match parse_utc(text.trim()) {
                Some(seconds) => seconds,
                None => {
                    let message = format!("first-period-start: {text:?} is not yyyy-MM-ddTHH:mm:ssZ");
                    c.error(place, attr.value_span.clone(), message);
                    return None;
                }
            }
        }
    };
    let count_after_response = false;
    Some(Limit {
        kind,
        by_key,
        calls: if computed && is_expression_attr(element, "calls") { None } else { calls },
        bandwidth_kb,
        period_seconds,
        first_period_start,
        count_after_response,
        retry_after_header: Some(
            header_name(c, element, "retry-after-header-name", place)
                .unwrap_or_else(|| c.code.str_const("Retry-After")),
        ),
        retry_after_variable: variable_name(c, element, "retry-after-variable-name", place),
        remaining_calls_header: header_name(c, element, "remaining-calls-header-name", place),
        remaining_calls_variable: variable_name(c, element, "remaining-calls-variable-name", place),
        total_calls_header: header_name(c, element, "total-calls-header-name", place),
        remaining_bandwidth_header: header_name(c, element, "remaining-bandwidth-header-name", place),
        remaining_bandwidth_variable: variable_name(c, element, "remaining-bandwidth-variable-name", place),
        scopes: Vec::new(),
    })
}

/// `0001-01-01T00:00:00Z`, APIM's default `first-period-start`, in seconds since the Unix epoch.
const FIRST_PERIOD_START_DEFAULT: i64 = -62_135_596_800;

/// A literal `renewal-period` in APIM's bounds.
fn period(c: &mut SectionCompiler<'_>, element: &Element, place: &Place, kind: LimitKind, by_key: bool) -> Option<u32> {
    let Some(seconds) = c.literal_parsed::<u32>(element, "renewal-period", "a number of seconds", place)? else {
        c.error(place, element.name_span.clone(), format!("<{}> needs renewal-period=\"...\"", element.name));
        return None;
    };
    let span = element.attr("renewal-period").map_or(element.name_span.clone(), |attr| attr.value_span.clone());
    match kind {
        LimitKind::RateLimit if !(1..=RATE_LIMIT_PERIOD_SECONDS_MAX).contains(&seconds) => {
            c.error(
                place,
                span,
                format!("renewal-period of a rate limit is 1 to {RATE_LIMIT_PERIOD_SECONDS_MAX} seconds"),
            );
            None
        }
        LimitKind::Quota if by_key && seconds != 0 && seconds < QUOTA_PERIOD_SECONDS_MIN => {
            c.error(
                place,
                span,
                format!(
                    "renewal-period of quota-by-key is 0 (no renewal) or at least {QUOTA_PERIOD_SECONDS_MIN} seconds"
                ),
            );
            None
        }
        _ => Some(seconds),
    }
}

/// A literal header name attribute, as a constant.
pub(super) fn header_name(c: &mut SectionCompiler<'_>, element: &Element, name: &str, place: &Place) -> Option<u32> {
    let attr = element.attr(name)?;
    let text = c.literal(attr, place)?;
    if !super::policies::is_token(text.trim()) {
        c.error(place, attr.value_span.clone(), format!("{name}: {text:?} is not a valid HTTP header name"));
        return None;
    }
    Some(c.code.str_const(text.trim()))
}

/// A literal variable name attribute, as a constant.
pub(super) fn variable_name(c: &mut SectionCompiler<'_>, element: &Element, name: &str, place: &Place) -> Option<u32> {
    let attr = element.attr(name)?;
    let text = c.literal(attr, place)?;
    if text.trim().is_empty() {
        c.error(place, attr.value_span.clone(), format!("{name} is empty"));
        return None;
    }
    Some(c.code.str_const(text.trim()))
}

/// The `<api>` children (with their `<operation>` children) of `rate-limit` / `quota`.
fn scopes(c: &mut SectionCompiler<'_>, element: &Element, place: &Place, kind: LimitKind) -> Vec<LimitScope> {
    let mut scopes = Vec::new();
    for api in element.elements() {
        if api.name != "api" {
            c.error(
                place,
                api.name_span.clone(),
                format!("<{}> holds <api> elements, not <{}>", element.name, api.name),
            );
            continue;
        }
        let Some(api_ref) = scope_ref(c, api, place) else { continue };
        if let Some(scope) = scope_limit(c, api, place, kind, &api_ref, None) {
            scopes.push(scope);
        }
        for operation in api.elements() {
            if operation.name != "operation" {
                let message = format!("<api> holds <operation> elements, not <{}>", operation.name);
                c.error(place, operation.name_span.clone(), message);
                continue;
            }
            let Some(operation_ref) = scope_ref(c, operation, place) else { continue };
            match scope_limit(c, operation, place, kind, &api_ref, Some(operation_ref)) {
                Some(scope) => scopes.push(scope),
                None if operation.attr("calls").is_none() && operation.attr("bandwidth").is_none() => {
                    c.error(place, operation.name_span.clone(), "<operation> needs calls=\"...\"");
                }
                None => {}
            }
        }
    }
    if scopes.len() > LIMIT_SCOPES_MAX {
        c.error(place, element.name_span.clone(), format!("at most {LIMIT_SCOPES_MAX} <api>/<operation> limits"));
    }
    scopes
}

/// The `id` of an `<api>` / `<operation>`, else its `name` (APIM: id wins when both are given).
fn scope_ref(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) -> Option<String> {
    for attr in &element.attrs {
        if !["name", "id", "calls", "renewal-period", "bandwidth"].contains(&attr.name.as_str()) {
            let message = format!(
                "<{}> has no attribute {:?} (known: name, id, calls, renewal-period, bandwidth)",
                element.name, attr.name
            );
            c.error(place, attr.name_span.clone(), message);
        }
    }
    match element.attr("id").or_else(|| element.attr("name")) {
        Some(attr) => c.literal(attr, place).map(|text| text.trim().to_owned()),
        None => {
            c.error(place, element.name_span.clone(), format!("<{}> needs name=\"...\" or id=\"...\"", element.name));
            None
        }
    }
}

/// The limit an `<api>` / `<operation>` sets, if it sets one (an `<api>` may only hold operations).
fn scope_limit(
    c: &mut SectionCompiler<'_>,
    element: &Element,
    place: &Place,
    kind: LimitKind,
    api: &str,
    operation: Option<String>,
) -> Option<LimitScope> {
    let calls = c.literal_parsed::<u32>(element, "calls", "a number of calls", place)?;
    let bandwidth_kb = match kind {
        LimitKind::Quota => c.literal_parsed::<u32>(element, "bandwidth", "a number of kilobytes", place)?,
        LimitKind::RateLimit => {
            if let Some(attr) = element.attr("bandwidth") {
                c.error(place, attr.name_span.clone(), "a rate limit has no bandwidth");
            }
            None
        }
    };
    if calls.is_none() && bandwidth_kb.is_none() {
        return None;
    }
    let period_seconds = period(c, element, place, kind, false)?;
    Some(LimitScope { api: api.to_owned(), operation, calls, bandwidth_kb, period_seconds })
}

/// `yyyy-MM-ddTHH:mm:ssZ` in seconds since the Unix epoch (proleptic Gregorian, UTC).
pub(crate) fn parse_utc(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b'T' || bytes[13] != b':' {
        return None;
    }
    if bytes[16] != b':' || bytes[19] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let month_ok = (1..=12).contains(&month) && year >= 1;
    if !month_ok || day < 1 || day > days_in_month[(month - 1) as usize] || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests;
