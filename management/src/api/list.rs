//! Lists: `{value, count, nextLink}` with `$filter`, `$top` and `$skip`.

use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::envelope::{envelope, revision};
use super::error::ApiError;
use super::filter::Filter;
use super::routes::Listing;
use super::{App, Request};
use crate::resource::{Kind, split_revision};
use crate::service::{Service, State};
use crate::store::Resource;

/// Items per page when `$top` is absent (APIM's page size).
pub(crate) const PAGE_ITEMS_DEFAULT: u64 = 100;
/// Most items one page returns.
pub(crate) const PAGE_ITEMS_MAX: u64 = 1_000;
/// Largest `$skip` (the document's int32 range).
pub(crate) const SKIP_MAX: u64 = i32::MAX as u64;

/// `GET` of a list route.
pub(super) fn answer(app: &App, service: &Service, request: &Request, listing: Listing) -> Result<Response, ApiError> {
    let (top, skip) = paging(request)?;
    if listing == Listing::Changes {
        return changes(service, request, top, skip);
    }
    let filter = match request.query("$filter") {
        Some(text) if !text.trim().is_empty() => {
            Some(Filter::parse(text).map_err(|m| ApiError::validation("$filter", m))?)
        }
        _ => None,
    };
    let path = request.matched.path.as_str();
    let owner = path.rsplit_once('/').map_or("", |(owner, _)| owner);
    let state = service.state();
    if !owner.is_empty() && state.get(owner).is_none() {
        return Err(ApiError::not_found(owner));
    }
    let mut items = items(state, listing, path, owner, &app.settings.gateway_url);
    if let Some(filter) = &filter {
        items.retain(|item| filter.accepts(item));
    }
    let count = items.len() as u64;
    let page: Vec<Value> = items.into_iter().skip(skip as usize).take(top as usize).collect();
    let next = (skip + top < count).then(|| next_link(request, top, skip + top));
    Ok(super::json(StatusCode::OK, json!({"value": page, "count": count, "nextLink": next}), None))
}

pub(super) fn paging(request: &Request) -> Result<(u64, u64), ApiError> {
    let number = |name: &str, low: u64, high: u64, default: u64| match request.query(name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| ApiError::validation(name, format!("{name} must be an integer from {low} to {high}"))),
    };
    Ok((number("$top", 1, PAGE_ITEMS_MAX, PAGE_ITEMS_DEFAULT)?, number("$skip", 0, SKIP_MAX, 0)?))
}

/// The items of a list, in path order, before filtering.
fn items(state: &State, listing: Listing, path: &str, owner: &str, gateway_url: &str) -> Vec<Value> {
    let below = format!("{path}/");
    match listing {
        Listing::Top(Kind::Api) => {
            state.of_kind(Kind::Api).filter(|api| split_revision(api.path.name()).1.is_none()).map(envelope).collect()
        }
        Listing::Top(kind) => state.of_kind(kind).map(envelope).collect(),
        Listing::Children(kind) => state.under(&below).filter(|r| r.path.kind() == kind).map(envelope).collect(),
        Listing::Targets(kind) => state
            .under(&below)
            .filter(|r| r.path.kind() == kind && r.path.parent() == Some(owner_of(&below)))
            .filter_map(|link| state.get(link.path.target()?))
            .map(envelope)
            .collect(),
        Listing::Revisions => revisions(state, owner).map(|api| revision(api, gateway_url)).collect(),
        Listing::ApiProducts => {
            let api = format!("/apis/{}", split_revision(owner.rsplit('/').next().unwrap_or_default()).0);
            state
                .of_kind(Kind::ProductApi)
                .filter(|link| link.path.target() == Some(api.as_str()))
                .filter_map(|link| state.get(link.path.parent()?))
                .map(envelope)
                .collect()
        }
        Listing::ProductSubscriptions => subscriptions(state, |s| scope_of(s) == Some(owner)),
        Listing::UserSubscriptions => {
            let user = owner.trim_start_matches("/users/");
            subscriptions(state, |s| s.properties.get("ownerId").and_then(Value::as_str).map(owner_id) == Some(user))
        }
        Listing::UserGroups => state
            .of_kind(Kind::GroupUser)
            .filter(|link| link.path.target() == Some(owner))
            .filter_map(|link| state.get(link.path.parent()?))
            .map(envelope)
            .collect(),
        Listing::VersionSetApis => {
            let set = owner.rsplit('/').next().unwrap_or_default();
            state
                .of_kind(Kind::Api)
                .filter(|api| {
                    let id = api.properties.get("apiVersionSetId").and_then(Value::as_str).unwrap_or_default();
                    !id.is_empty() && id.rsplit('/').next() == Some(set)
                })
                .map(envelope)
                .collect()
        }
        Listing::Changes => Vec::new(),
    }
}

/// `/products/p/tags/` → `/products/p`.
fn owner_of(below: &str) -> &str {
    below.trim_end_matches('/').rsplit_once('/').map_or("", |(owner, _)| owner)
}

/// `/apis/{id}` and its `;rev=N` siblings.
fn revisions<'a>(state: &'a State, api: &str) -> impl Iterator<Item = &'a Resource> + 'a {
    let base = split_revision(api.trim_start_matches("/apis/")).0.to_owned();
    let current = format!("/apis/{base}");
    let siblings = format!("/apis/{base};rev=");
    state.of_kind(Kind::Api).filter(move |r| r.path.as_str() == current || r.path.as_str().starts_with(&siblings))
}

fn subscriptions(state: &State, keep: impl Fn(&Resource) -> bool) -> Vec<Value> {
    state.of_kind(Kind::Subscription).filter(|s| keep(s)).map(envelope).collect()
}

fn scope_of(subscription: &Resource) -> Option<&str> {
    subscription.properties.get("scope").and_then(Value::as_str).map(crate::model::relative_to_service)
}

fn owner_id(id: &str) -> &str {
    crate::model::relative_to_service(id).trim_start_matches("/users/")
}

/// `GET /changes`: the audit log, newest first.
fn changes(service: &Service, request: &Request, top: u64, skip: u64) -> Result<Response, ApiError> {
    // One more than a page tells whether there is a next one.
    let mut value = service.store().changes(skip, top + 1).map_err(|error| ApiError::internal(&error))?;
    let more = value.len() as u64 > top;
    value.truncate(top as usize);
    let count = skip + value.len() as u64;
    let next = more.then(|| next_link(request, top, skip + top));
    let body = json!({"value": value, "count": count, "nextLink": next});
    Ok(super::json(StatusCode::OK, body, None))
}

/// The request's URL with `$top` and `$skip` set for the next page.
pub(super) fn next_link(request: &Request, top: u64, skip: u64) -> String {
    let mut query: Vec<(String, String)> =
        request.query.iter().filter(|(key, _)| key != "$top" && key != "$skip").cloned().collect();
    query.push(("$top".to_owned(), top.to_string()));
    query.push(("$skip".to_owned(), skip.to_string()));
    let encoded: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    let host = request.header(header::HOST).map(|host| format!("http://{host}")).unwrap_or_default();
    format!("{host}{}?{}", request.matched.path, encoded.join("&"))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'$' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
