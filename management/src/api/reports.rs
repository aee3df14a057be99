//! APIM's reports: `GET /reports/byApi|byOperation|byProduct|bySubscription|byUser|byTime|
//! byRequest|byGeo` (and a user's own below `/users/{userId}`), from [`crate::analytics`].
//!
//! Rows carry APIM's field names (`callCountSuccess` ... `serviceTimeMax`, times in ms) and ids as
//! APIM's paths (`/apis/echo`); byApi, byOperation and byTime add `apiTimeP50/P95/P99` and
//! `serviceTimeP50/P95/P99` when the filter names nothing finer than an operation (histograms are
//! kept per operation). byGeo is an empty list: no geography is recorded.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::list::{next_link, paging};
use super::routes::Report;
use super::{App, Request};
use crate::analytics::{Analytics, Dimension, Metrics, Percentiles, ReportQuery, ReportRow};
use crate::service::{Service, State};

pub(crate) mod query;

use query::{format_interval, parse_filter, parse_interval, parse_orderby};

/// The fields `$orderby` may name in aggregate reports.
pub(crate) const ORDERBY_FIELDS: &[&str] = &[
    "name",
    "timestamp",
    "apiId",
    "operationId",
    "productId",
    "subscriptionId",
    "userId",
    "callCountSuccess",
    "callCountBlocked",
    "callCountFailed",
    "callCountOther",
    "callCountTotal",
    "bandwidth",
    "cacheHitCount",
    "cacheMissCount",
    "apiTimeAvg",
    "apiTimeMin",
    "apiTimeMax",
    "serviceTimeAvg",
    "serviceTimeMin",
    "serviceTimeMax",
];

/// `GET` of a report route.
pub(super) fn answer(app: &App, service: &Service, request: &Request, report: Report) -> Result<Response, ApiError> {
    let (top, skip) = paging(request)?;
    let mut query = parse_filter(request.query("$filter")).map_err(|m| ApiError::validation("$filter", m))?;
    if let Some(user) = own_user(request) {
        if service.state().get(&format!("/users/{user}")).is_none() {
            return Err(ApiError::not_found(&format!("/users/{user}")));
        }
        if query.user_id.as_ref().is_some_and(|asked| *asked != user) {
            return Ok(page(request, Vec::new(), 0, top, skip));
        }
        query.user_id = Some(user);
    }
    let orderby = request.query("$orderby").filter(|text| !text.trim().is_empty());
    let dimension = match report {
        Report::Request => {
            if orderby.is_some() {
                return Err(ApiError::validation("$orderby", "byRequest lists calls in time order: no $orderby"));
            }
            return by_request(app, request, &query, top, skip);
        }
        Report::Geo => return Ok(page(request, Vec::new(), 0, top, skip)),
        Report::Api => Dimension::Api,
        Report::Operation => Dimension::Operation,
        Report::Product => Dimension::Product,
        Report::Subscription => Dimension::Subscription,
        Report::User => Dimension::User,
        Report::Time => {
            let interval_ms =
                parse_interval(request.query("interval")).map_err(|m| ApiError::validation("interval", m))?;
            Dimension::Time { interval_ms }
        }
    };
    let order = match orderby {
        Some(text) => parse_orderby(text, ORDERBY_FIELDS).map_err(|m| ApiError::validation("$orderby", m))?,
        None if report == Report::Time => vec![("timestamp", false)],
        None => vec![("callCountTotal", true), ("name", false)],
    };
    with_analytics(app, |analytics| {
        let rows = match analytics {
            Some(analytics) => analytics.report(dimension, &query).map_err(|error| ApiError::internal(&error))?,
            None => Vec::new(),
        };
        let mut items: Vec<(Value, ReportRow)> =
            rows.into_iter().map(|row| (aggregate(service.state(), dimension, &row), row)).collect();
        items.sort_by(|(a, _), (b, _)| compare(a, b, &order));
        let count = items.len() as u64;
        let mut value = Vec::new();
        for (mut item, row) in items.into_iter().skip(skip as usize).take(top as usize) {
            if let Some(analytics) = analytics {
                add_percentiles(analytics, dimension, &query, &row, &mut item)?;
            }
            value.push(item);
        }
        Ok(page(request, value, count, top, skip))
    })
}

/// The user of `/users/{userId}/reports/...`.
fn own_user(request: &Request) -> Option<String> {
    let rest = request.matched.path.strip_prefix("/users/")?;
    rest.split_once('/').map(|(user, _)| user.to_owned())
}

/// Runs `read` with the analytics store locked (a poisoned lock is still consistent: every
/// transaction commits or rolls back as a whole).
fn with_analytics<T>(app: &App, read: impl FnOnce(Option<&Analytics>) -> T) -> T {
    match &app.settings.analytics {
        Some(shared) => {
            let analytics = shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            read(Some(&analytics))
        }
        None => read(None),
    }
}

fn page(request: &Request, value: Vec<Value>, count: u64, top: u64, skip: u64) -> Response {
    let next = (skip + top < count).then(|| next_link(request, top, skip + top));
    super::json(StatusCode::OK, json!({"value": value, "count": count, "nextLink": next}), None)
}

/// One aggregate row with APIM's field names.
fn aggregate(state: &State, dimension: Dimension, row: &ReportRow) -> Value {
    let mut item = Map::new();
    let api = path("/apis/", &row.api_id);
    let name = match dimension {
        Dimension::Api => display_name(state, &api),
        Dimension::Operation => display_name(state, &format!("{api}/operations/{}", row.operation_id)),
        Dimension::Product => display_name(state, &path("/products/", &row.product_id)),
        Dimension::Subscription => display_name(state, &path("/subscriptions/", &row.subscription_id)),
        Dimension::User => user_name(state, &path("/users/", &row.user_id)),
        Dimension::Time { .. } => None,
    };
    let fallback = [&row.operation_id, &row.api_id, &row.product_id, &row.subscription_id, &row.user_id]
        .into_iter()
        .find(|id| !id.is_empty())
        .cloned();
    if let Some(name) = name.or(fallback) {
        item.insert("name".into(), Value::String(name));
    }
    if let (Dimension::Time { interval_ms }, Some(start)) = (dimension, row.interval_start_ms) {
        item.insert("timestamp".into(), Value::String(rfc3339(start)));
        item.insert("interval".into(), Value::String(format_interval(interval_ms)));
    }
    for (field, prefix, id) in [
        ("apiId", "/apis/", &row.api_id),
        ("productId", "/products/", &row.product_id),
        ("subscriptionId", "/subscriptions/", &row.subscription_id),
        ("userId", "/users/", &row.user_id),
    ] {
        if !id.is_empty() {
            item.insert(field.into(), Value::String(path(prefix, id)));
        }
    }
    if !row.operation_id.is_empty() {
        item.insert("operationId".into(), Value::String(format!("{api}/operations/{}", row.operation_id)));
    }
    add_metrics(&mut item, &row.metrics);
    Value::Object(item)
}

fn add_metrics(item: &mut Map<String, Value>, metrics: &Metrics) {
    for (field, value) in [
        ("callCountSuccess", metrics.call_count_success),
        ("callCountBlocked", metrics.call_count_blocked),
        ("callCountFailed", metrics.call_count_failed),
        ("callCountOther", metrics.call_count_other),
        ("callCountTotal", metrics.call_count_total),
        ("bandwidth", metrics.bandwidth),
        ("cacheHitCount", metrics.cache_hit_count),
        ("cacheMissCount", metrics.cache_miss_count),
    ] {
        item.insert(field.into(), json!(value));
    }
    let average = |sum: u64, count: u64| if count == 0 { 0.0 } else { sum as f64 / count as f64 / 1_000.0 };
    let ms = |us: Option<u64>| us.map_or(0.0, |us| us as f64 / 1_000.0);
    item.insert("apiTimeAvg".into(), json!(average(metrics.api_time_sum_us, metrics.api_time_count)));
    item.insert("apiTimeMin".into(), json!(ms(metrics.api_time_min_us)));
    item.insert("apiTimeMax".into(), json!(ms(metrics.api_time_max_us)));
    item.insert("serviceTimeAvg".into(), json!(average(metrics.service_time_sum_us, metrics.service_time_count)));
    item.insert("serviceTimeMin".into(), json!(ms(metrics.service_time_min_us)));
    item.insert("serviceTimeMax".into(), json!(ms(metrics.service_time_max_us)));
}

/// Percentiles of the row's API, operation or interval, where the histograms can tell them.
fn add_percentiles(
    analytics: &Analytics,
    dimension: Dimension,
    query: &ReportQuery,
    row: &ReportRow,
    item: &mut Value,
) -> Result<(), ApiError> {
    if query.narrower_than_operations() {
        return Ok(());
    }
    let (api, operation, from, to) = match dimension {
        Dimension::Api => (Some(row.api_id.as_str()), query.operation_id.as_deref(), query.from_ms, query.to_ms),
        Dimension::Operation => {
            (Some(row.api_id.as_str()), Some(row.operation_id.as_str()), query.from_ms, query.to_ms)
        }
        Dimension::Time { interval_ms } => {
            let start = row.interval_start_ms.unwrap_or(query.from_ms);
            let end = start.saturating_add(interval_ms - 1);
            (query.api_id.as_deref(), query.operation_id.as_deref(), start.max(query.from_ms), end.min(query.to_ms))
        }
        _ => return Ok(()),
    };
    let percentiles = analytics.percentiles(api, operation, from, to).map_err(|error| ApiError::internal(&error))?;
    if let (Some(percentiles), Some(object)) = (percentiles, item.as_object_mut()) {
        insert_percentiles(object, &percentiles);
    }
    Ok(())
}

fn insert_percentiles(object: &mut Map<String, Value>, percentiles: &Percentiles) {
    let ms = |us: u64| json!(us as f64 / 1_000.0);
    object.insert("apiTimeP50".into(), ms(percentiles.api_p50_us));
    object.insert("apiTimeP95".into(), ms(percentiles.api_p95_us));
    object.insert("apiTimeP99".into(), ms(percentiles.api_p99_us));
    if let Some([p50, p95, p99]) = percentiles.service {
        object.insert("serviceTimeP50".into(), ms(p50));
        object.insert("serviceTimeP95".into(), ms(p95));
        object.insert("serviceTimeP99".into(), ms(p99));
    }
}

/// `byRequest`: the recent calls, oldest first.
fn by_request(app: &App, request: &Request, query: &ReportQuery, top: u64, skip: u64) -> Result<Response, ApiError> {
    let (records, count) = with_analytics(app, |analytics| match analytics {
        Some(analytics) => analytics.requests(query, top, skip).map_err(|error| ApiError::internal(&error)),
        None => Ok((Vec::new(), 0)),
    })?;
    let value = records.iter().map(request_row).collect();
    Ok(page(request, value, count, top, skip))
}

/// One call as APIM's `RequestReportRecordContract`.
fn request_row(record: &portcullis_contract::telemetry::RequestRecord) -> Value {
    let api = path("/apis/", &record.api_id);
    let optional = |prefix: &str, id: &str| if id.is_empty() { Value::Null } else { Value::String(path(prefix, id)) };
    let operation = if record.operation_id.is_empty() {
        Value::Null
    } else {
        Value::String(format!("{api}/operations/{}", record.operation_id))
    };
    json!({
        "apiId": optional("/apis/", &record.api_id),
        "operationId": operation,
        "productId": optional("/products/", &record.product_id),
        "userId": optional("/users/", &record.user_id),
        "subscriptionId": optional("/subscriptions/", &record.apim_subscription_id),
        "method": record.method,
        "url": record.url,
        "ipAddress": record.caller_ip_address,
        "backendResponseCode": if record.backend_response_code == 0 { String::new() } else { record.backend_response_code.to_string() },
        "responseCode": record.response_code,
        "responseSize": record.response_size,
        "requestSize": record.request_size,
        "timestamp": record.time_generated,
        "cache": record.cache.as_str(),
        "apiTime": record.total_time,
        "serviceTime": record.backend_time,
        "apiRegion": "",
        "requestId": record.correlation_id,
    })
}

/// An id as APIM's path (`echo` → `/apis/echo`); one that is a path already stays.
fn path(prefix: &str, id: &str) -> String {
    if id.starts_with('/') { id.to_owned() } else { format!("{prefix}{id}") }
}

fn display_name(state: &State, path: &str) -> Option<String> {
    let resource = state.get(path)?;
    resource.properties.get("displayName").and_then(Value::as_str).map(str::to_owned)
}

fn user_name(state: &State, path: &str) -> Option<String> {
    let properties = &state.get(path)?.properties;
    let part = |name: &str| properties.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let name = format!("{} {}", part("firstName"), part("lastName")).trim().to_owned();
    (!name.is_empty()).then_some(name)
}

fn rfc3339(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Orders two rows by `order` (numbers by value, text ignoring case, absent first).
fn compare(a: &Value, b: &Value, order: &[(&str, bool)]) -> std::cmp::Ordering {
    for (field, descending) in order {
        let ordering = match (&a[*field], &b[*field]) {
            (Value::Number(x), Value::Number(y)) => {
                x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(std::cmp::Ordering::Equal)
            }
            (Value::String(x), Value::String(y)) => x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()),
            (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
            (Value::Null, _) => std::cmp::Ordering::Less,
            (_, Value::Null) => std::cmp::Ordering::Greater,
            _ => std::cmp::Ordering::Equal,
        };
        let ordering = if *descending { ordering.reverse() } else { ordering };
        if ordering.is_ne() {
            return ordering;
        }
    }
    std::cmp::Ordering::Equal
}

#[cfg(test)]
mod tests;
