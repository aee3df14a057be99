//! The portal's JSON endpoints under `/developer`, shaped after APIM's developer data API
//! (management-reference §3.2) where that costs nothing: ARM-like items `{id, type, name,
//! properties}` and lists `{value, count, nextLink}`; errors `{error: {code, message}}`. The
//! caller is the session of the cookie (no SAS tokens): what a visitor sees here is what the
//! pages show them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::App;
use super::catalogue::{VisibleApi, visible_api, visible_products};
use super::visitor::Visitor;
use crate::model::{ApiProperties, SubscriptionProperties};
use crate::resource::Kind;

/// A list in APIM's shape.
fn list(items: Vec<Value>) -> Response {
    let count = items.len();
    Json(json!({"value": items, "count": count, "nextLink": null})).into_response()
}

/// 404 in APIM's error shape.
pub(super) fn not_found(what: &str) -> Response {
    let body = json!({"error": {"code": "ResourceNotFound", "message": format!("{what} is not found.")}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

fn unauthorized() -> Response {
    let body = json!({"error": {"code": "Unauthorized", "message": "Sign in first."}});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// An API as an item: its public properties (no backend URL: that is the publisher's).
pub(super) fn api(shown: &VisibleApi, gateway_url: &str) -> Json<Value> {
    Json(api_item(&shown.id, &shown.api, &shown.base_url(gateway_url)))
}

fn api_item(id: &str, api: &ApiProperties, base_url: &str) -> Value {
    json!({
        "id": format!("/apis/{id}"),
        "type": "Microsoft.ApiManagement/service/apis",
        "name": id,
        "properties": {
            "displayName": api.display_name,
            "description": api.description,
            "path": api.path,
            "protocols": api.protocols,
            "subscriptionRequired": api.subscription_required,
            "subscriptionKeyParameterNames": api.subscription_key_parameter_names,
            "apiVersion": api.api_version,
            "apiVersionSetId": api.api_version_set_id,
            "apiRevision": api.api_revision,
            "isCurrent": true,
            "gatewayUrl": base_url,
        },
    })
}

#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    #[serde(rename = "$filter", default)]
    filter: String,
    #[serde(rename = "tags[0]", default)]
    tag: String,
}

/// `GET /developer/apis[?$filter=contains(name,'x')][&tags[0]=t]`: the APIs of the products the
/// visitor sees, as the catalogue's search finds them.
pub(super) async fn apis(
    State(app): State<App>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let service = app.service.lock().await;
    let state = service.state();
    let search = super::search::Search {
        search: super::search::contains_filter(&query.filter).unwrap_or_default(),
        tag: query.tag,
    };
    let found = super::search::results(state, &visitor, &search);
    let ids: Vec<String> = match found["results"].as_array() {
        Some(results) => results.iter().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect(),
        None => super::search::visible_api_ids(state, &visitor),
    };
    let items = ids
        .iter()
        .filter_map(|id| visible_api(state, &visitor, id))
        .map(|shown| api_item(&shown.id, &shown.api, &shown.base_url(&app.settings.gateway_url)))
        .collect();
    list(items)
}

/// `GET /developer/apis/{api}/operations`.
pub(super) async fn operations(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let service = app.service.lock().await;
    let state = service.state();
    let Some(shown) = visible_api(state, &visitor, &id) else { return not_found(&format!("/apis/{id}")) };
    let items = shown
        .operations(state)
        .into_iter()
        .map(|(op, properties)| {
            json!({"id": format!("/apis/{id}/operations/{op}"), "type": "Microsoft.ApiManagement/service/apis/operations", "name": op, "properties": properties})
        })
        .collect();
    list(items)
}

/// `GET /developer/products`: the published products the visitor's groups see.
pub(super) async fn products(State(app): State<App>, headers: HeaderMap) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let service = app.service.lock().await;
    let items = visible_products(service.state(), &visitor)
        .into_iter()
        .map(|shown| {
            let p = &shown.product;
            json!({"id": format!("/products/{}", shown.id), "type": "Microsoft.ApiManagement/service/products", "name": shown.id,
                "properties": {"displayName": p.display_name, "description": p.description, "terms": p.terms,
                    "subscriptionRequired": p.subscription_required, "approvalRequired": p.approval_required,
                    "subscriptionsLimit": p.subscriptions_limit, "state": "published"}})
        })
        .collect();
    list(items)
}

/// `GET /developer/users/{user}/subscriptions`: the signed-in user's own subscriptions, with
/// their keys (APIM shows the owner their keys); anyone else's is 404.
pub(super) async fn subscriptions(State(app): State<App>, headers: HeaderMap, Path(user): Path<String>) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let Some(member) = &visitor.member else { return unauthorized() };
    if member.id != user {
        return not_found(&format!("/users/{user}"));
    }
    let service = app.service.lock().await;
    let items = service
        .state()
        .of_kind(Kind::Subscription)
        .filter_map(|resource| {
            let s: SubscriptionProperties = serde_json::from_value(resource.properties.clone()).ok()?;
            (s.owner() == Some(member.id.as_str())).then(|| {
                let id = resource.path.name();
                json!({"id": format!("/users/{user}/subscriptions/{id}"), "type": "Microsoft.ApiManagement/service/users/subscriptions",
                    "name": id, "properties": {"displayName": s.display_name, "scope": s.relative_scope(), "ownerId": format!("/users/{user}"),
                    "state": s.state.as_str(), "createdDate": s.created_date, "primaryKey": s.primary_key, "secondaryKey": s.secondary_key}})
            })
        })
        .collect();
    list(items)
}
