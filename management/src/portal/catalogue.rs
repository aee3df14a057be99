//! The catalogue: published products the visitor's groups may see, the APIs in them, an API's
//! operations, and subscribing to a product.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::accounts::{actor, forged};
use super::pages::page;
use super::sessions::random_hex;
use super::visitor::{Member, Visitor};
use super::{App, see_other};
use crate::api::ApiError;
use crate::model::{
    ApiProperties, OperationProperties, ProductProperties, ProductState, SubscriptionProperties, SubscriptionState,
};
use crate::resource::{Kind, ResourcePath, split_revision};
use crate::service::{Authority, Service, State as Resources};

/// A product the visitor may see.
pub(super) struct Shown {
    pub(super) id: String,
    pub(super) product: ProductProperties,
}

/// The published products `visitor` may see, in id order: those linked to one of their groups
/// (administrators see every published product).
pub(super) fn visible_products(state: &Resources, visitor: &Visitor) -> Vec<Shown> {
    state
        .of_kind(Kind::Product)
        .filter_map(|resource| {
            let product: ProductProperties = serde_json::from_value(resource.properties.clone()).ok()?;
            let id = resource.path.name().to_owned();
            let granted = visitor.sees_everything()
                || visitor.groups.iter().any(|group| state.get(&format!("/products/{id}/groups/{group}")).is_some());
            (product.state == ProductState::Published && granted).then_some(Shown { id, product })
        })
        .collect()
}

/// The current revisions of the APIs in product `id`.
fn product_apis(state: &Resources, id: &str) -> Vec<(String, ApiProperties)> {
    state
        .under(&format!("/products/{id}/apis/"))
        .filter(|link| link.path.kind() == Kind::ProductApi)
        .filter_map(|link| {
            let api_id = link.path.name();
            let api = state.get(&format!("/apis/{api_id}"))?;
            Some((api_id.to_owned(), serde_json::from_value(api.properties.clone()).ok()?))
        })
        .collect()
}

fn product_view(state: &Resources, shown: &Shown) -> Value {
    let apis: Vec<Value> = product_apis(state, &shown.id)
        .into_iter()
        .map(|(id, api)| json!({"id": id, "name": display(&api.display_name, &id), "description": api.description}))
        .collect();
    json!({
        "id": shown.id,
        "name": display(&shown.product.display_name, &shown.id),
        "description": shown.product.description,
        "terms": shown.product.terms,
        "subscriptionRequired": shown.product.subscription_required,
        "approvalRequired": shown.product.approval_required,
        "subscriptionsLimit": shown.product.subscriptions_limit,
        "apis": apis,
    })
}

pub(super) fn display<'a>(name: &'a str, id: &'a str) -> &'a str {
    if name.trim().is_empty() { id } else { name }
}

/// `GET /?search=&tag=`: the catalogue, and the APIs that match a search.
pub(super) async fn home(
    State(app): State<App>,
    headers: HeaderMap,
    Query(search): Query<super::search::Search>,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let (products, found) = {
        let service = app.service.lock().await;
        let state = service.state();
        let products: Vec<Value> =
            visible_products(state, &visitor).iter().map(|shown| product_view(state, shown)).collect();
        (products, super::search::results(state, &visitor, &search))
    };
    let context = json!({"title": "APIs and products", "products": products, "found": found});
    page(&app, &visitor, StatusCode::OK, "home.html", context)
}

/// `GET /products/{product}`.
pub(super) async fn product(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let view = {
        let service = app.service.lock().await;
        let state = service.state();
        visible_products(state, &visitor).into_iter().find(|shown| shown.id == id).map(|shown| {
            let mut view = product_view(state, &shown);
            if let Some(member) = &visitor.member {
                view["mine"] = json!(count_subscriptions(state, &member.id, &id));
            }
            view
        })
    };
    match view {
        Some(view) => {
            let title = view["name"].as_str().unwrap_or_default().to_owned();
            page(&app, &visitor, StatusCode::OK, "product.html", json!({"title": title, "product": view}))
        }
        None => not_found_page(&app, &visitor),
    }
}

/// `GET /apis/{api}`: an API in a product the visitor sees, with its operations.
pub(super) async fn api(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let view = {
        let service = app.service.lock().await;
        api_view(service.state(), &visitor, &id, &app.settings.gateway_url)
    };
    match view {
        Some(view) => {
            let title = view["name"].as_str().unwrap_or_default().to_owned();
            page(&app, &visitor, StatusCode::OK, "api.html", json!({"title": title, "api": view}))
        }
        None => not_found_page(&app, &visitor),
    }
}

/// An API the visitor may see (the current revision, in a product they see).
pub(super) struct VisibleApi {
    pub(super) id: String,
    pub(super) api: ApiProperties,
    /// The products the visitor sees that contain it: `{id, name}`.
    pub(super) products: Vec<Value>,
}

impl VisibleApi {
    /// The API's base URL on the gateway at `gateway_url`.
    pub(super) fn base_url(&self, gateway_url: &str) -> String {
        let prefix = self.api.path.trim_matches('/');
        if prefix.is_empty() { gateway_url.to_owned() } else { format!("{gateway_url}/{prefix}") }
    }

    /// The header that carries the subscription key.
    pub(super) fn key_header(&self) -> String {
        let names = self.api.subscription_key_parameter_names.clone().unwrap_or_default();
        names.header.unwrap_or_else(|| KEY_HEADER_DEFAULT.to_owned())
    }

    /// Its operations, `(id, properties)`, by URL template and method.
    pub(super) fn operations(&self, state: &Resources) -> Vec<(String, OperationProperties)> {
        let mut operations: Vec<(String, OperationProperties)> = state
            .under(&format!("/apis/{}/operations/", self.id))
            .filter(|resource| resource.path.kind() == Kind::Operation)
            .filter_map(|resource| {
                Some((resource.path.name().to_owned(), serde_json::from_value(resource.properties.clone()).ok()?))
            })
            .collect();
        operations.sort_by(|(_, a), (_, b)| (&a.url_template, &a.method).cmp(&(&b.url_template, &b.method)));
        operations
    }
}

/// APIM's default key header and query parameter (management-reference §1.1).
pub(super) const KEY_HEADER_DEFAULT: &str = "Ocp-Apim-Subscription-Key";
const KEY_QUERY_DEFAULT: &str = "subscription-key";

/// API `id` if the visitor may see it: a current revision in a product they see.
pub(super) fn visible_api(state: &Resources, visitor: &Visitor, id: &str) -> Option<VisibleApi> {
    if split_revision(id).1.is_some() {
        return None;
    }
    let products: Vec<Value> = visible_products(state, visitor)
        .into_iter()
        .filter(|shown| state.get(&format!("/products/{}/apis/{id}", shown.id)).is_some())
        .map(|shown| json!({"id": shown.id, "name": display(&shown.product.display_name, &shown.id)}))
        .collect();
    if products.is_empty() {
        return None;
    }
    let api: ApiProperties = serde_json::from_value(state.get(&format!("/apis/{id}"))?.properties.clone()).ok()?;
    Some(VisibleApi { id: id.to_owned(), api, products })
}

fn api_view(state: &Resources, visitor: &Visitor, id: &str, gateway_url: &str) -> Option<Value> {
    let shown = visible_api(state, visitor, id)?;
    let base = shown.base_url(gateway_url);
    let key_header = shown.key_header();
    let consoles = super::try_it::keys_for(state, visitor, &shown);
    let operations: Vec<Value> = shown
        .operations(state)
        .iter()
        .map(|(op_id, operation)| {
            let mut view = operation_view(op_id, operation);
            view["samples"] = super::try_it::samples(
                &base,
                operation,
                shown.api.subscription_required.then_some(key_header.as_str()),
            );
            view
        })
        .collect();
    let api = &shown.api;
    let names = api.subscription_key_parameter_names.clone().unwrap_or_default();
    let versions = versions_of(state, visitor, &shown);
    let changes = change_log(state, id);
    Some(json!({
        "id": id,
        "name": display(&api.display_name, id),
        "description": api.description,
        "version": api.api_version,
        "url": base,
        "subscriptionRequired": api.subscription_required,
        "keyHeader": key_header,
        "keyQuery": names.query.unwrap_or_else(|| KEY_QUERY_DEFAULT.to_owned()),
        "products": shown.products,
        "keys": consoles,
        "operations": operations,
        "versions": versions,
        "changeLog": changes,
    }))
}

/// The version set's tail (`/apiVersionSets/{id}` or a full ARM id → `id`).
fn version_set(id: &str) -> &str {
    id.rsplit_once("apiVersionSets/").map_or(id, |(_, tail)| tail).trim_matches('/')
}

/// The visible versions of `shown`'s version set, side by side: `{id, name, version, current}`
/// by version; empty when the API is in no set or alone in it.
fn versions_of(state: &Resources, visitor: &Visitor, shown: &VisibleApi) -> Vec<Value> {
    let Some(set) = shown.api.api_version_set_id.as_deref().map(version_set) else { return Vec::new() };
    let mut versions: Vec<(String, Value)> = super::search::visible_api_ids(state, visitor)
        .into_iter()
        .filter_map(|id| visible_api(state, visitor, &id))
        .filter(|other| other.api.api_version_set_id.as_deref().map(version_set) == Some(set))
        .map(|other| {
            let version = other.api.api_version.clone().unwrap_or_else(|| "Original".to_owned());
            let view = json!({"id": other.id, "name": display(&other.api.display_name, &other.id), "version": version, "current": other.id == shown.id});
            (version, view)
        })
        .collect();
    versions.sort_by(|a, b| a.0.cmp(&b.0));
    if versions.len() < 2 { Vec::new() } else { versions.into_iter().map(|(_, view)| view).collect() }
}

/// The API's releases, newest first: `{notes, date}` (APIM's change log).
fn change_log(state: &Resources, id: &str) -> Vec<Value> {
    let mut releases: Vec<(String, Value)> = state
        .under(&format!("/apis/{id}/releases/"))
        .filter(|r| r.path.kind() == Kind::Release)
        .filter_map(|r| {
            let release: crate::model::ReleaseProperties = serde_json::from_value(r.properties.clone()).ok()?;
            let date = release.created_date_time.clone().unwrap_or_else(|| r.created_at.clone());
            let revision = release.api_id.rsplit_once(";rev=").map(|(_, rev)| rev.to_owned());
            Some((date.clone(), json!({"notes": release.notes, "date": date, "revision": revision})))
        })
        .collect();
    releases.sort_by(|a, b| b.0.cmp(&a.0));
    releases.into_iter().map(|(_, view)| view).collect()
}

fn operation_view(id: &str, operation: &OperationProperties) -> Value {
    let parameter = |p: &crate::model::ParameterContract| json!({"name": p.name, "type": p.parameter_type, "required": p.required, "description": p.description, "default": p.default_value, "values": p.values});
    let request = operation.request.clone().unwrap_or_default();
    let body =
        !matches!(operation.method.to_ascii_uppercase().as_str(), "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE");
    json!({
        "id": id,
        "name": display(&operation.display_name, id),
        "method": operation.method,
        "urlTemplate": operation.url_template,
        "description": operation.description,
        "templateParameters": operation.template_parameters.iter().map(parameter).collect::<Vec<_>>(),
        "queryParameters": request.query_parameters.iter().map(parameter).collect::<Vec<_>>(),
        "headers": request.headers.iter().map(parameter).collect::<Vec<_>>(),
        "requestTypes": request.representations.iter().map(|r| r.content_type.clone()).collect::<Vec<_>>(),
        "hasBody": body,
        "responses": operation.responses.iter().map(|r| json!({"status": r.status_code, "description": r.description})).collect::<Vec<_>>(),
    })
}

/// The subscriptions of user `user` to product `product` that count against its limit (not
/// cancelled, rejected or expired).
fn count_subscriptions(state: &Resources, user: &str, product: &str) -> usize {
    let scope = format!("/products/{product}");
    state
        .of_kind(Kind::Subscription)
        .filter_map(|resource| serde_json::from_value::<SubscriptionProperties>(resource.properties.clone()).ok())
        .filter(|s| s.owner() == Some(user) && s.relative_scope() == scope)
        .filter(|s| {
            matches!(s.state, SubscriptionState::Active | SubscriptionState::Submitted | SubscriptionState::Suspended)
        })
        .count()
}

/// `POST /products/{product}/subscribe`: a subscription owned by the member, `active`, or
/// `submitted` when the product needs approval; refused past `subscriptionsLimit`.
pub(super) async fn subscribe(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if !visitor.csrf_ok(app.sessions.signing_key(), form.get("csrf").map(String::as_str)) {
        return forged(&app, &visitor);
    }
    let Some(member) = visitor.member.clone() else { return see_other("/signin") };
    let name = form.get("name").map_or("", |n| n.trim()).to_owned();
    let accepted = form.get("acceptTerms").is_some_and(|v| v == "on" || v == "true");
    let outcome = {
        let mut service = app.service.lock().await;
        create_subscription(&mut service, &visitor, &member, &id, &name, accepted)
    };
    match outcome {
        Ok(Some(state)) => see_other(&format!("/subscriptions?notice={}", state.as_str())),
        Ok(None) => not_found_page(&app, &visitor),
        Err(error) => {
            let context = json!({"title": "Not subscribed", "message": error.message});
            page(&app, &visitor, error.status, "message.html", context)
        }
    }
}

/// Writes the subscription; `None` when the member may not see the product.
fn create_subscription(
    service: &mut Service,
    visitor: &Visitor,
    member: &Member,
    product: &str,
    name: &str,
    accepted_terms: bool,
) -> Result<Option<SubscriptionState>, ApiError> {
    let state = service.state();
    let Some(shown) = visible_products(state, visitor).into_iter().find(|shown| shown.id == product) else {
        return Ok(None);
    };
    if !shown.product.subscription_required {
        return Err(ApiError::conflict("This product is open: its APIs need no key."));
    }
    if shown.product.terms.as_deref().is_some_and(|t| !t.trim().is_empty()) && !accepted_terms {
        return Err(ApiError::validation("acceptTerms", "Accept the terms of use to subscribe."));
    }
    if let Some(limit) = shown.product.subscriptions_limit
        && count_subscriptions(state, &member.id, product) >= limit as usize
    {
        return Err(ApiError::conflict(format!(
            "You have {limit} subscription(s) to this product already: its limit. Cancel one to subscribe again."
        )));
    }
    let initial =
        if shown.product.approval_required { SubscriptionState::Submitted } else { SubscriptionState::Active };
    let id = random_hex(12).map_err(|error| ApiError::internal(&error))?;
    let path = ResourcePath::parse(&format!("/subscriptions/{id}")).map_err(|error| ApiError::internal(&error))?;
    let display_name = if name.is_empty() {
        display(&shown.product.display_name, product).to_owned()
    } else {
        name.chars().take(100).collect()
    };
    let properties = json!({
        "scope": format!("/products/{product}"),
        "ownerId": format!("/users/{}", member.id),
        "displayName": display_name,
        "state": initial.as_str(),
    });
    let properties = crate::api::rules::prepare(state, &path, None, properties)?;
    let write = crate::service::put(path, properties);
    service.write(vec![write], &[], Authority::Store, &actor(&member.id, &format!("subscribe to {product}")))?;
    Ok(Some(initial))
}

/// The fallback: 404.
pub(super) async fn not_found(State(app): State<App>, headers: HeaderMap) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    not_found_page(&app, &visitor)
}

pub(super) fn not_found_page(app: &App, visitor: &Visitor) -> Response {
    let context = json!({"title": "Not found", "message": "There is nothing here, or it is not shown to you."});
    page(app, visitor, StatusCode::NOT_FOUND, "message.html", context)
}
