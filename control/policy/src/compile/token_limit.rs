//! `llm-token-limit` and `azure-openai-token-limit` (one policy under two names): a token rate
//! per minute and/or a token quota per calendar period, per counter key.
//!
//! Compiles to the counter-key's value and an [`Op::TokenLimit`] naming its entry in the
//! program's token limit table; the data plane checks the key's windows before forwarding and
//! charges the response's `usage` after it (docs/policies.md "Token limits").

use portcullis_contract::program::{Op, TokenLimit, TokenQuotaPeriod};

use super::limits::{header_name, variable_name};
use super::{Place, SectionCompiler};
use crate::expr::Expect;
use crate::xml::Element;

/// The attributes both names accept (besides `id`).
pub(super) const ATTRIBUTES: &[&str] = &[
    "counter-key",
    "tokens-per-minute",
    "token-quota",
    "token-quota-period",
    "estimate-prompt-tokens",
    "retry-after-header-name",
    "retry-after-variable-name",
    "remaining-tokens-header-name",
    "remaining-tokens-variable-name",
    "remaining-quota-tokens-header-name",
    "remaining-quota-tokens-variable-name",
    "tokens-consumed-header-name",
    "tokens-consumed-variable-name",
];

/// Compiles one token limit.
pub(super) fn token_limit(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    for child in element.elements() {
        c.error(place, child.name_span.clone(), format!("<{}> cannot contain <{}>", element.name, child.name));
    }
    let Some(limit) = table_entry(c, element, place) else { return };
    if c.attr_value(element, "counter-key", Expect::String, place).is_none() {
        c.error(place, element.name_span.clone(), format!("<{}> needs counter-key=\"...\"", element.name));
        return;
    }
    let index = c.code.token_limit(limit);
    c.code.emit(Op::TokenLimit { limit: index });
}

/// The policy's table entry: its literal limits, period and names.
fn table_entry(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) -> Option<TokenLimit> {
    let tokens_per_minute = c.literal_parsed::<u32>(element, "tokens-per-minute", "a number of tokens", place)?;
    let quota = c.literal_parsed::<u32>(element, "token-quota", "a number of tokens", place)?;
    let period = match element.attr("token-quota-period") {
        None => None,
        Some(attr) => {
            let text = c.literal(attr, place)?;
            match quota_period(text.trim()) {
                Some(period) => Some(period),
                None => {
                    let message =
                        format!("token-quota-period: {text:?} is not one of Hourly, Daily, Weekly, Monthly, Yearly");
                    c.error(place, attr.value_span.clone(), message);
                    return None;
                }
            }
        }
    };
    let quota = match (quota, period) {
        (Some(tokens), Some(period)) => Some((tokens, period)),
        (None, None) => None,
        (Some(_), None) => {
            let message = format!("<{}> token-quota needs token-quota-period=\"...\"", element.name);
            c.error(place, element.name_span.clone(), message);
            return None;
        }
        (None, Some(_)) => {
            let message = format!("<{}> token-quota-period needs token-quota=\"...\"", element.name);
            c.error(place, element.name_span.clone(), message);
            return None;
        }
    };
    if tokens_per_minute.is_none() && quota.is_none() {
        let message = format!(
            "<{}> needs tokens-per-minute=\"...\", token-quota=\"...\" with token-quota-period=\"...\", or both",
            element.name
        );
        c.error(place, element.name_span.clone(), message);
        return None;
    }
    if element.attr("estimate-prompt-tokens").is_none() {
        let message = format!("<{}> needs estimate-prompt-tokens=\"true|false\"", element.name);
        c.error(place, element.name_span.clone(), message);
        return None;
    }
    let estimate_prompt_tokens = c.literal_bool(element, "estimate-prompt-tokens", false, place);
    Some(TokenLimit {
        tokens_per_minute,
        quota,
        estimate_prompt_tokens,
        retry_after_header: Some(
            header_name(c, element, "retry-after-header-name", place)
                .unwrap_or_else(|| c.code.str_const("Retry-After")),
        ),
        retry_after_variable: variable_name(c, element, "retry-after-variable-name", place),
        remaining_tokens_header: header_name(c, element, "remaining-tokens-header-name", place),
        remaining_tokens_variable: variable_name(c, element, "remaining-tokens-variable-name", place),
        remaining_quota_tokens_header: header_name(c, element, "remaining-quota-tokens-header-name", place),
        remaining_quota_tokens_variable: variable_name(c, element, "remaining-quota-tokens-variable-name", place),
        tokens_consumed_header: header_name(c, element, "tokens-consumed-header-name", place),
        tokens_consumed_variable: variable_name(c, element, "tokens-consumed-variable-name", place),
    })
}

/// APIM's period names (as documented; compared without case, as APIM's enum parsing does).
fn quota_period(text: &str) -> Option<TokenQuotaPeriod> {
    let periods = [
        ("Hourly", TokenQuotaPeriod::Hourly),
        ("Daily", TokenQuotaPeriod::Daily),
        ("Weekly", TokenQuotaPeriod::Weekly),
        ("Monthly", TokenQuotaPeriod::Monthly),
        ("Yearly", TokenQuotaPeriod::Yearly),
    ];
    periods.iter().find(|(name, _)| name.eq_ignore_ascii_case(text)).map(|(_, period)| *period)
}

#[cfg(test)]
mod tests;
