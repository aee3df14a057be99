//! A report's query parameters as APIM takes them: `$filter` (`timestamp ge X and timestamp le Y`
//! required, `eq` on the entity ids), `interval` (an ISO 8601 duration, a non-zero multiple of
//! 15 minutes) and `$orderby`.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use super::super::filter::{FILTER_BYTES_MAX, Token, tokenize};
use crate::analytics::{MINUTE_MS, ReportQuery};

/// `interval` must be a multiple of this (APIM's rule).
pub(crate) const INTERVAL_STEP_MS: i64 = 15 * MINUTE_MS;
/// The longest `interval`: a year of days.
pub(crate) const INTERVAL_MS_MAX: i64 = 366 * 24 * 60 * MINUTE_MS;
/// The fields a report's `$filter` may name.
pub(crate) const REPORT_FILTER_FIELDS: &[&str] =
    &["timestamp", "apiId", "operationId", "productId", "subscriptionId", "userId", "apiRegion"];
/// What the error says a filter must hold.
const REQUIRED: &str = "$filter must hold timestamp ge <start> and timestamp le <end>, e.g. \
    timestamp ge datetime'2026-12-01T00:00:00Z' and timestamp le datetime'2026-12-02T00:00:00Z'";

/// Parses a report's `$filter`; the error says what is wrong (public for its fuzz target).
pub fn parse_filter(text: Option<&str>) -> Result<ReportQuery, String> {
    let text = text.map(str::trim).filter(|text| !text.is_empty()).ok_or_else(|| REQUIRED.to_owned())?;
    if text.len() > FILTER_BYTES_MAX {
        return Err(format!("$filter is longer than {FILTER_BYTES_MAX} bytes"));
    }
    let tokens = tokenize(text)?;
    let mut query = ReportQuery { from_ms: i64::MIN, to_ms: i64::MAX, ..ReportQuery::default() };
    let (mut from, mut to) = (false, false);
    let mut clauses = tokens.split(|token| matches!(token, Token::Word(word) if word.eq_ignore_ascii_case("and")));
    clauses.try_for_each(|clause| {
        let (field, operator, value) = clause_parts(clause)?;
        if field == "timestamp" {
            let at = timestamp(&value)?;
            match operator.as_str() {
                "ge" => (query.from_ms, from) = (query.from_ms.max(at), true),
                "gt" => (query.from_ms, from) = (query.from_ms.max(at.saturating_add(1)), true),
                "le" => (query.to_ms, to) = (query.to_ms.min(at), true),
                "lt" => (query.to_ms, to) = (query.to_ms.min(at.saturating_sub(1)), true),
                _ => return Err(format!("timestamp takes ge, gt, le or lt, not {operator}")),
            }
            return Ok(());
        }
        if operator != "eq" {
            return Err(format!("{field} takes eq, not {operator}"));
        }
        set_entity(&mut query, field, &value);
        Ok(())
    })?;
    if !(from && to) {
        return Err(REQUIRED.to_owned());
    }
    if query.from_ms > query.to_ms {
        return Err("$filter's timestamp range is empty (its start is after its end)".to_owned());
    }
    Ok(query)
}

/// `field op value` of one clause; `value` unquoted (`datetime'...'` as its text).
fn clause_parts(clause: &[Token]) -> Result<(&'static str, String, String), String> {
    let word = |token: Option<&Token>| match token {
        Some(Token::Word(word)) => Some(word.clone()),
        _ => None,
    };
    let field =
        word(clause.first()).ok_or_else(|| format!("expected a field in $filter, found {:?}", clause.first()))?;
    let name = field.strip_prefix("properties/").unwrap_or(&field);
    let field = REPORT_FILTER_FIELDS.iter().find(|known| known.eq_ignore_ascii_case(name)).ok_or_else(|| {
        format!("{field} cannot be filtered on in a report (fields: {})", REPORT_FILTER_FIELDS.join(", "))
    })?;
    let operator = word(clause.get(1)).ok_or_else(|| format!("expected an operator after {field} in $filter"))?;
    let value = match &clause[2.min(clause.len())..] {
        [Token::Text(text)] => text.clone(),
        [Token::Word(kind), Token::Text(text)] if kind.eq_ignore_ascii_case("datetime") => text.clone(),
        [Token::Word(word)] => word.clone(),
        [] => return Err(format!("expected a value after {field} {operator} in $filter")),
        other => {
            return Err(format!(
                "unexpected {other:?} in $filter: a report's filter joins field-operator-value clauses with and \
                 (timestamp ge ..., timestamp le ..., apiId eq ...)"
            ));
        }
    };
    Ok((field, operator.to_ascii_lowercase(), value))
}

/// RFC 3339, or a date and time without offset (UTC, as APIM's examples write), or a date.
fn timestamp(text: &str) -> Result<i64, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(at.and_utc().timestamp_millis());
        }
    }
    if let Some(at) = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)) {
        return Ok(at.and_utc().timestamp_millis());
    }
    Err(format!("{text:?} is not a timestamp (write it as RFC 3339: 2026-12-01T00:00:00Z)"))
}

/// Sets an `eq` filter; ids are taken bare or as APIM's paths (`/apis/echo`, full ARM ids too).
fn set_entity(query: &mut ReportQuery, field: &str, value: &str) {
    let path = crate::model::relative_to_service(value);
    let last = |prefix: &str| path.strip_prefix(prefix).unwrap_or(path).to_owned();
    match field {
        "apiId" => query.api_id = Some(last("/apis/")),
        "operationId" => {
            // `/apis/echo/operations/get` names the API too.
            if let Some((api, operation)) = path.strip_prefix("/apis/").and_then(|rest| rest.split_once("/operations/"))
            {
                query.api_id.get_or_insert_with(|| api.to_owned());
                query.operation_id = Some(operation.to_owned());
            } else {
                query.operation_id = Some(path.to_owned());
            }
        }
        "productId" => query.product_id = Some(last("/products/")),
        "subscriptionId" => query.subscription_id = Some(last("/subscriptions/")),
        "userId" => query.user_id = Some(last("/users/")),
        // One gateway is one region: every call is in it.
        _ => {}
    }
}

/// `interval`: `PT15M`, `PT1H`, `P1D`, `P1DT12H` ... in milliseconds (public for its fuzz target).
pub fn parse_interval(text: Option<&str>) -> Result<i64, String> {
    let text = text.map(str::trim).filter(|t| !t.is_empty()).ok_or("interval is required (PT15M, PT1H, P1D ...)")?;
    let invalid = || format!("interval {text:?} is not a non-zero multiple of 15 minutes (PT15M, PT1H, P1D ...)");
    let upper = text.to_ascii_uppercase();
    let rest = upper.strip_prefix('P').ok_or_else(invalid)?;
    let (days, time) = rest.split_once('T').unwrap_or((rest, ""));
    if rest.ends_with('T') {
        return Err(invalid());
    }
    let mut total: i64 = 0;
    for (part, units) in
        [(days, &[('W', 7 * 24 * 60), ('D', 24 * 60)][..]), (time, &[('H', 60), ('M', 1), ('S', 0)][..])]
    {
        let mut number = String::new();
        let mut allowed = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let (_, minutes) = allowed.by_ref().find(|(unit, _)| *unit == c).ok_or_else(invalid)?;
            let value: i64 = number.parse().map_err(|_| invalid())?;
            number.clear();
            if *minutes == 0 {
                // Seconds: whole minutes only.
                if value % 60 != 0 {
                    return Err(invalid());
                }
                total = total.checked_add(value / 60 * MINUTE_MS).ok_or_else(invalid)?;
            } else {
                total =
                    value.checked_mul(minutes * MINUTE_MS).and_then(|ms| total.checked_add(ms)).ok_or_else(invalid)?;
            }
        }
        if !number.is_empty() {
            return Err(invalid());
        }
    }
    if total <= 0 || total % INTERVAL_STEP_MS != 0 || total > INTERVAL_MS_MAX {
        return Err(invalid());
    }
    Ok(total)
}

/// `interval` back as ISO 8601 (`PT15M`, `PT1H`, `P1D`, `P1DT1H30M`).
pub(crate) fn format_interval(interval_ms: i64) -> String {
    let minutes = interval_ms / MINUTE_MS;
    let (days, hours, minutes) = (minutes / (24 * 60), minutes / 60 % 24, minutes % 60);
    let mut text = String::from("P");
    if days > 0 {
        text.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 {
        text.push('T');
        if hours > 0 {
            text.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            text.push_str(&format!("{minutes}M"));
        }
    }
    text
}

/// `$orderby`: `field [asc|desc]`, comma-separated, on `fields`; `true` for descending.
pub(crate) fn parse_orderby(text: &str, fields: &[&'static str]) -> Result<Vec<(&'static str, bool)>, String> {
    let mut order = Vec::new();
    for part in text.split(',').map(str::trim) {
        let mut words = part.split_whitespace();
        let name = words.next().ok_or("$orderby names no field")?;
        let field = fields
            .iter()
            .find(|field| field.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("{name} cannot be ordered by (fields: {})", fields.join(", ")))?;
        let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => return Err(format!("$orderby takes asc or desc, not {other}")),
        };
        if words.next().is_some() {
            return Err(format!("unexpected text after {part:?} in $orderby"));
        }
        order.push((*field, descending));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: &str = "timestamp ge datetime'2026-12-07T00:00:00' and timestamp le '2026-12-08T00:00:00Z'";

    #[test]
    fn filters_take_a_time_range_and_entity_ids() {
        let query = parse_filter(Some(RANGE)).unwrap();
        assert_eq!(query.to_ms - query.from_ms, 24 * 60 * MINUTE_MS);
        let text = format!(
            "{RANGE} and apiId eq '/apis/echo' and operationId eq '/apis/echo/operations/get' and userId eq '1' and subscriptionId eq '/subscriptions/s' and productId eq 'p' and apiRegion eq 'West Europe'"
        );
        let query = parse_filter(Some(&text)).unwrap();
        assert_eq!(query.api_id.as_deref(), Some("echo"));
        assert_eq!(query.operation_id.as_deref(), Some("get"));
        assert_eq!(query.user_id.as_deref(), Some("1"));
        assert_eq!(query.subscription_id.as_deref(), Some("s"));
        assert_eq!(query.product_id.as_deref(), Some("p"));
        assert!(parse_filter(Some("timestamp ge 2026-12-07 and timestamp lt '2026-12-07T01:00'")).is_ok());
    }

    #[test]
    fn bad_filters_say_why() {
        for bad in [
            None,
            Some(""),
            Some("timestamp ge '2026-12-07T00:00:00Z'"),
            Some("apiId eq 'echo'"),
            Some("timestamp eq '2026-12-07T00:00:00Z' and timestamp le '2026-12-08T00:00:00Z'"),
            Some("timestamp ge 'yesterday' and timestamp le '2026-12-08T00:00:00Z'"),
            Some("timestamp ge '2026-12-09T00:00:00Z' and timestamp le '2026-12-08T00:00:00Z'"),
            Some(&format!("{RANGE} or apiId eq 'echo'")),
            Some(&format!("{RANGE} and apiId ne 'echo'")),
            Some(&format!("{RANGE} and name eq 'echo'")),
            Some(&format!("{RANGE} and apiId eq")),
            Some("timestamp ge"),
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn intervals_are_multiples_of_15_minutes() {
        for (text, minutes) in [
            ("PT15M", 15),
            ("PT1H", 60),
            ("pt45m", 45),
            ("P1D", 1440),
            ("P1DT1H30M", 1530),
            ("PT900S", 15),
            ("P1W", 10080),
        ] {
            assert_eq!(parse_interval(Some(text)), Ok(minutes * MINUTE_MS), "{text}");
        }
        for bad in [
            None,
            Some("PT0M"),
            Some("PT10M"),
            Some("15"),
            Some("P1M"),
            Some("PT"),
            Some("PT15"),
            Some("PT1H1H"),
            Some("P9999999999999D"),
        ] {
            assert!(parse_interval(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_interval(15 * MINUTE_MS), "PT15M");
        assert_eq!(format_interval(1530 * MINUTE_MS), "P1DT1H30M");
        assert_eq!(format_interval(1440 * MINUTE_MS), "P1D");
    }

    #[test]
    fn orderby_names_fields_and_directions() {
        let fields = &["name", "callCountTotal"];
        assert_eq!(
            parse_orderby("callCountTotal desc, name", fields),
            Ok(vec![("callCountTotal", true), ("name", false)])
        );
        assert!(parse_orderby("bandwidth", fields).is_err());
        assert!(parse_orderby("name sideways", fields).is_err());
        assert!(parse_orderby("", fields).is_err());
    }
}
