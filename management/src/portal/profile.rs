//! The member's profile: change the name, change the password (the current one first; every
//! other session ends), and close the account (the user and their subscriptions are deleted, so
//! the keys stop working; every session ends), as APIM's `PATCH` and `DELETE /users/{uid}` from the portal.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::accounts::{Fields, NAME_CHARS_MAX, actor, field, forged, hash_off_runtime, message, path, set_user};
use super::pages::page;
use super::visitor::{Member, SESSION_COOKIE, Visitor, set_cookie};
use super::{App, password, see_other};
use crate::api::ApiError;
use crate::model::{SubscriptionProperties, UserProperties};
use crate::resource::Kind;
use crate::service::{Authority, Service};
use crate::store::Write;

/// The profile page, with `errors` and a `notice`.
async fn profile_page(
    app: &App,
    visitor: &Visitor,
    status: StatusCode,
    errors: Value,
    notice: Option<&str>,
) -> Response {
    let user = visitor.member.as_ref().map(|member| member.id.clone()).unwrap_or_default();
    // The visitor holds the first name and email only.
    let last_name = {
        let service = app.service.lock().await;
        service
            .state()
            .get(&format!("/users/{user}"))
            .and_then(|resource| serde_json::from_value::<UserProperties>(resource.properties.clone()).ok())
            .map(|user| user.last_name)
            .unwrap_or_default()
    };
    let context = json!({"title": "Your profile", "errors": errors, "notice": notice, "lastName": last_name});
    page(app, visitor, status, "profile.html", context)
}

#[derive(serde::Deserialize)]
pub(super) struct Notice {
    #[serde(default)]
    notice: String,
}

/// `GET /profile`.
pub(super) async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<Notice>,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if visitor.member.is_none() {
        return see_other("/signin");
    }
    let notice = match query.notice.as_str() {
        "name" => Some("Your name is changed."),
        "password" => Some("Your password is changed; your other sessions are signed out."),
        _ => None,
    };
    profile_page(&app, &visitor, StatusCode::OK, json!({}), notice).await
}

/// `POST /profile`: `firstName`, `lastName`.
pub(super) async fn rename(State(app): State<App>, headers: HeaderMap, Form(form): Fields) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if !visitor.csrf_ok(app.sessions.signing_key(), form.get("csrf").map(String::as_str)) {
        return forged(&app, &visitor);
    }
    let Some(member) = visitor.member.clone() else { return see_other("/signin") };
    let (first, last) = (field(&form, "firstName"), field(&form, "lastName"));
    let mut errors = serde_json::Map::new();
    for (name, value) in [("firstName", first), ("lastName", last)] {
        if value.is_empty() || value.chars().count() > NAME_CHARS_MAX {
            errors.insert(name.into(), format!("Enter 1 to {NAME_CHARS_MAX} characters.").into());
        }
    }
    if !errors.is_empty() {
        return profile_page(&app, &visitor, StatusCode::BAD_REQUEST, Value::Object(errors), None).await;
    }
    let changed = {
        let mut service = app.service.lock().await;
        set_user(&mut service, &member.id, "change the name", |_| Some(json!({"firstName": first, "lastName": last})))
    };
    match changed {
        Ok(_) => see_other("/profile?notice=name"),
        Err(error) => message(&app, &visitor, error.status, "Not changed", &error.message),
    }
}

/// Whether `secret` is `member`'s password, throttled like sign-in (per account and address):
/// refused with 401, or 429 past the throttle.
async fn password_checked(app: &App, member: &Member, secret: &str, peer: &SocketAddr) -> Result<(), StatusCode> {
    let (account, address, now) = (format!("profile:{}", member.id), peer.ip().to_string(), super::now_ms());
    if app.throttle.check(&account, &address, now).is_some() {
        return Err(StatusCode::TOO_MANY_REQUESTS);
    }
    let stored = {
        let service = app.service.lock().await;
        service
            .state()
            .get(&format!("/users/{}", member.id))
            .and_then(|user| user.properties.get("password").and_then(Value::as_str).map(str::to_owned))
    };
    let stored = stored.unwrap_or_else(|| password::decoy().to_owned());
    let secret = secret.to_owned();
    let matches = tokio::task::spawn_blocking(move || password::verify(&secret, &stored)).await.unwrap_or(false);
    if matches {
        app.throttle.succeed(&account);
        Ok(())
    } else {
        app.throttle.fail(&account, &address, now);
        Err(StatusCode::UNAUTHORIZED)
    }
}

/// The form's error for a refused password check.
async fn refusal(app: &App, visitor: &Visitor, status: StatusCode) -> Response {
    let text = if status == StatusCode::TOO_MANY_REQUESTS {
        "Too many wrong passwords. Wait a few minutes and try again."
    } else {
        "This is not your current password."
    };
    profile_page(app, visitor, status, json!({"current": text}), None).await
}

/// `POST /profile/password`: `current`, `password`. Every session of the member ends; this
/// browser gets a new one.
pub(super) async fn change_password(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if !visitor.csrf_ok(app.sessions.signing_key(), form.get("csrf").map(String::as_str)) {
        return forged(&app, &visitor);
    }
    let Some(member) = visitor.member.clone() else { return see_other("/signin") };
    let secret = form.get("password").cloned().unwrap_or_default();
    if let Some(weakness) = password::weakness(&secret) {
        return profile_page(&app, &visitor, StatusCode::BAD_REQUEST, json!({"password": weakness}), None).await;
    }
    if let Err(refused) = password_checked(&app, &member, form.get("current").map_or("", String::as_str), &peer).await {
        return refusal(&app, &visitor, refused).await;
    }
    let hashed = match hash_off_runtime(secret).await {
        Ok(hashed) => hashed,
        Err(response) => return response(&app, &visitor),
    };
    let changed = {
        let mut service = app.service.lock().await;
        set_user(&mut service, &member.id, "change the password", |_| Some(json!({"password": hashed})))
    };
    if let Err(error) = changed {
        return message(&app, &visitor, error.status, "Password not changed", &error.message);
    }
    let _ = app.sessions.end_all(&member.id);
    let mut response = see_other("/profile?notice=password");
    if let Ok(secret) = app.sessions.create(&member.id, super::now_ms()) {
        let cookie = set_cookie(SESSION_COOKIE, &secret, app.settings.secure_cookies(), None);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// `POST /profile/close`: `current` (the password) and `confirm`. Deletes the member and their
/// subscriptions, ends every session.
pub(super) async fn close(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if !visitor.csrf_ok(app.sessions.signing_key(), form.get("csrf").map(String::as_str)) {
        return forged(&app, &visitor);
    }
    let Some(member) = visitor.member.clone() else { return see_other("/signin") };
    if form.get("confirm").is_none_or(|v| v != "on" && v != "true") {
        let errors = json!({"confirm": "Tick the box to say you mean it."});
        return profile_page(&app, &visitor, StatusCode::BAD_REQUEST, errors, None).await;
    }
    if let Err(refused) = password_checked(&app, &member, form.get("current").map_or("", String::as_str), &peer).await {
        return refusal(&app, &visitor, refused).await;
    }
    let closed = {
        let mut service = app.service.lock().await;
        close_account(&mut service, &member.id)
    };
    if let Err(error) = closed {
        return message(&app, &visitor, error.status, "Account not closed", &error.message);
    }
    let _ = app.sessions.end_all(&member.id);
    let mut response = message(
        &app,
        &Visitor::anonymous(),
        StatusCode::OK,
        "Account closed",
        "Your account is closed: its subscriptions and keys are gone and you are signed out.",
    );
    let cookie = set_cookie(SESSION_COOKIE, "", app.settings.secure_cookies(), Some(0));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// One change: the user, their group memberships and every subscription they own are deleted
/// (APIM's `DELETE /users/{uid}?deleteSubscriptions=true`): the keys stop working with the next
/// snapshot. A subscription cannot outlive its owner (the compiler refuses an unknown owner).
fn close_account(service: &mut Service, user: &str) -> Result<(), ApiError> {
    let mut writes = Vec::new();
    for resource in service.state().of_kind(Kind::Subscription) {
        let owned = serde_json::from_value::<SubscriptionProperties>(resource.properties.clone())
            .is_ok_and(|subscription| subscription.owner() == Some(user));
        if owned {
            writes.push(Write::Delete { path: resource.path.clone() });
        }
    }
    writes.push(Write::Delete { path: path(&format!("/users/{user}"))? });
    service.write(writes, &[], Authority::Store, &actor(user, "close the account"))?;
    Ok(())
}
