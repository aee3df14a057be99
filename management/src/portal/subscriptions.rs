//! "My subscriptions": the member's own subscriptions, their keys, regenerate and cancel.
//! Another member's subscription is 404, as if it did not exist.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::accounts::{actor, forged};
use super::catalogue::not_found_page;
use super::pages::page;
use super::visitor::Visitor;
use super::{App, see_other};
use crate::api::ApiError;
use crate::model::{SubscriptionProperties, SubscriptionState};
use crate::resource::{Kind, ResourcePath};
use crate::service::{Authority, Service};
use crate::store::Resource;

#[derive(serde::Deserialize)]
pub(super) struct Notice {
    #[serde(default)]
    notice: String,
}

/// The sentence for a `?notice=` (fixed texts: nothing from the URL is shown).
fn notice_text(notice: &str) -> Option<&'static str> {
    Some(match notice {
        "active" => "You are subscribed: your keys are below.",
        "submitted" => "Your subscription waits for an administrator's approval; its keys work once it is active.",
        "regenerated" => "The key is regenerated: the old one no longer works.",
        "cancelled" => "The subscription is cancelled: its keys no longer work.",
        _ => return None,
    })
}

/// `GET /subscriptions`.
pub(super) async fn list(State(app): State<App>, headers: HeaderMap, Query(query): Query<Notice>) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let Some(member) = &visitor.member else { return see_other("/signin") };
    let subscriptions: Vec<Value> = {
        let service = app.service.lock().await;
        let state = service.state();
        let mut mine: Vec<(String, Value)> = state
            .of_kind(Kind::Subscription)
            .filter_map(|resource| {
                let subscription: SubscriptionProperties = serde_json::from_value(resource.properties.clone()).ok()?;
                (subscription.owner() == Some(member.id.as_str()))
                    .then(|| (resource.created_at.clone(), view(state, resource, &subscription)))
            })
            .collect();
        mine.sort_by(|a, b| b.0.cmp(&a.0));
        mine.into_iter().map(|(_, view)| view).collect()
    };
    let context =
        json!({"title": "My subscriptions", "subscriptions": subscriptions, "notice": notice_text(&query.notice)});
    page(&app, &visitor, StatusCode::OK, "subscriptions.html", context)
}

fn view(state: &crate::service::State, resource: &Resource, subscription: &SubscriptionProperties) -> Value {
    let scope = subscription.relative_scope();
    let product = scope.strip_prefix("/products/").map(|id| {
        let name = state
            .get(scope)
            .and_then(|p| p.properties.get("displayName").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| id.to_owned());
        json!({"id": id, "name": name})
    });
    let active = subscription.state == SubscriptionState::Active;
    json!({
        "id": resource.path.name(),
        "name": subscription.display_name,
        "state": subscription.state.as_str(),
        "scope": scope,
        "product": product,
        "createdDate": subscription.created_date,
        "primaryKey": if active { subscription.primary_key.clone() } else { None },
        "secondaryKey": if active { subscription.secondary_key.clone() } else { None },
        "cancellable": subscription.state.can_become(SubscriptionState::Cancelled) && subscription.state != SubscriptionState::Cancelled,
        "regenerable": active,
    })
}

/// The member's own subscription `id`, or `None` (absent or someone else's).
fn own(service: &Service, member: &str, id: &str) -> Option<Resource> {
    let resource = service.state().get(&format!("/subscriptions/{id}"))?;
    let subscription: SubscriptionProperties = serde_json::from_value(resource.properties.clone()).ok()?;
    (subscription.owner() == Some(member)).then(|| resource.clone())
}

/// `POST /subscriptions/{id}/regenerate` with `key=primary|secondary`.
pub(super) async fn regenerate(
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
    let primary = match form.get("key").map(String::as_str) {
        Some("primary") => true,
        Some("secondary") => false,
        _ => return refused(&app, &visitor, ApiError::validation("key", "Say which key: primary or secondary.")),
    };
    let outcome = {
        let mut service = app.service.lock().await;
        match own(&service, &member.id, &id) {
            None => Ok(false),
            Some(resource) => crate::api::rules::regenerated(&resource, primary).and_then(|properties| {
                let which = if primary { "primary" } else { "secondary" };
                let write = crate::service::put(resource.path.clone(), properties);
                service.write(
                    vec![write],
                    &[],
                    Authority::Store,
                    &actor(&member.id, &format!("regenerate the {which} key of {id}")),
                )?;
                Ok(true)
            }),
        }
    };
    match outcome {
        Ok(true) => see_other("/subscriptions?notice=regenerated"),
        Ok(false) => not_found_page(&app, &visitor),
        Err(error) => refused(&app, &visitor, error),
    }
}

/// `POST /subscriptions/{id}/cancel`: the state becomes `cancelled` where the rules allow it.
pub(super) async fn cancel(
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
    let outcome = {
        let mut service = app.service.lock().await;
        match own(&service, &member.id, &id) {
            None => Ok(false),
            Some(resource) => cancelled(&mut service, &resource, &member.id).map(|()| true),
        }
    };
    match outcome {
        Ok(true) => see_other("/subscriptions?notice=cancelled"),
        Ok(false) => not_found_page(&app, &visitor),
        Err(error) => refused(&app, &visitor, error),
    }
}

fn cancelled(service: &mut Service, resource: &Resource, member: &str) -> Result<(), ApiError> {
    let mut properties = resource.properties.clone();
    crate::api::rules::merge(&mut properties, json!({"state": "cancelled"}));
    let path: ResourcePath = resource.path.clone();
    let properties = crate::api::rules::prepare(service.state(), &path, Some(resource), properties)?;
    let action = format!("cancel {}", path.name());
    service.write(vec![crate::service::put(path, properties)], &[], Authority::Store, &actor(member, &action))?;
    Ok(())
}

fn refused(app: &App, visitor: &Visitor, error: ApiError) -> Response {
    let context = json!({"title": "Not done", "message": error.message});
    page(app, visitor, error.status, "message.html", context)
}
