//! Accounts: sign-up with email confirmation, sign-in (throttled), sign-out, password reset.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::mail::Mail;
use super::pages::page;
use super::sessions::{hex, random_hex};
use super::ticket::{self, Purpose};
use super::visitor::{DEVELOPERS, SESSION_COOKIE, Visitor, set_cookie};
use super::{App, CONFIRM_TICKET_MS, RESET_TICKET_MS, password, see_other};
use crate::api::ApiError;
use crate::model::{UserProperties, UserState};
use crate::resource::{Kind, ResourcePath};
use crate::service::{Authority, Service};
use crate::store::Actor;

/// Longest name, in characters (APIM's `firstName` and `lastName`).
pub(super) const NAME_CHARS_MAX: usize = 100;
/// Longest email, in characters (APIM's `email`).
const EMAIL_CHARS_MAX: usize = 254;

pub(super) type Fields = Form<HashMap<String, String>>;

pub(super) fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map_or("", |value| value.trim())
}

/// The page of a refused form: a forged or stale CSRF token.
pub(super) fn forged(app: &App, visitor: &Visitor) -> Response {
    let context = json!({"title": "Form expired", "message": "This form has expired or did not come from this portal. Go back, reload the page and try again."});
    page(app, visitor, StatusCode::FORBIDDEN, "message.html", context)
}

pub(super) fn message(app: &App, visitor: &Visitor, status: StatusCode, title: &str, text: &str) -> Response {
    page(app, visitor, status, "message.html", json!({"title": title, "message": text}))
}

/// `GET /signup`.
pub(super) async fn signup_form(State(app): State<App>, headers: HeaderMap) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    page(&app, &visitor, StatusCode::OK, "signup.html", json!({"title": "Sign up", "form": {}, "errors": {}}))
}

/// `POST /signup`: a pending user in the developers group, and a confirmation mail.
pub(super) async fn signup(State(app): State<App>, headers: HeaderMap, Form(form): Fields) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if !visitor.csrf_ok(app.sessions.signing_key(), form.get("csrf").map(String::as_str)) {
        return forged(&app, &visitor);
    }
    let (email, first, last, secret) =
        (field(&form, "email"), field(&form, "firstName"), field(&form, "lastName"), form.get("password"));
    let secret = secret.map_or("", String::as_str);
    let mut errors = serde_json::Map::new();
    if email.len() > EMAIL_CHARS_MAX || email.parse::<lettre::Address>().is_err() {
        errors.insert("email".into(), "Enter an email address, like name@example.com.".into());
    }
    for (name, value) in [("firstName", first), ("lastName", last)] {
        if value.is_empty() || value.chars().count() > NAME_CHARS_MAX {
            errors.insert(name.into(), format!("Enter 1 to {NAME_CHARS_MAX} characters.").into());
        }
    }
    if let Some(weakness) = password::weakness(secret) {
        errors.insert("password".into(), weakness.into());
    }
    let form_view = json!({"email": email, "firstName": first, "lastName": last});
    if !errors.is_empty() {
        let context = json!({"title": "Sign up", "form": form_view, "errors": errors});
        return page(&app, &visitor, StatusCode::BAD_REQUEST, "signup.html", context);
    }
    let hashed = match hash_off_runtime(secret.to_owned()).await {
        Ok(hashed) => hashed,
        Err(response) => return response(&app, &visitor),
    };
    let created = {
        let mut service = app.service.lock().await;
        create_pending_user(&mut service, email, first, last, hashed)
    };
    let done = "We sent a confirmation link to the address you gave. Follow it to activate your account, then sign in.";
    match created {
        // The same answer when the address is taken: the form does not tell who has an account.
        Ok(None) => message(&app, &visitor, StatusCode::OK, "Check your mailbox", done),
        Ok(Some(id)) => {
            let ticket = ticket::issue(
                app.sessions.signing_key(),
                Purpose::Confirm,
                &id,
                "",
                super::now_ms() + CONFIRM_TICKET_MS,
            );
            let link = format!("{}/confirm?ticket={ticket}", app.settings.public_url);
            let body = format!(
                "Hello {first},\n\nconfirm your account on {} by opening this link within 48 hours:\n\n{link}\n\nIf you did not sign up, ignore this message.\n",
                app.settings.title
            );
            let mail = Mail { to: email.to_owned(), subject: "Confirm your account".to_owned(), body, link };
            if !send(&app, mail).await {
                return message(
                    &app,
                    &visitor,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Mail could not be sent",
                    "Your account was created but the confirmation mail could not be sent. Try the password reset later, or ask the portal's administrator.",
                );
            }
            message(&app, &visitor, StatusCode::OK, "Check your mailbox", done)
        }
        Err(error) => {
            let context = json!({"title": "Sign up", "form": form_view, "errors": {"form": error.message}});
            page(&app, &visitor, error.status, "signup.html", context)
        }
    }
}

/// Writes the pending user and their developers membership; `None` when the email is taken.
fn create_pending_user(
    service: &mut Service,
    email: &str,
    first: &str,
    last: &str,
    password_hash: String,
) -> Result<Option<String>, ApiError> {
    if user_by_email(service, email).is_some() {
        return Ok(None);
    }
    let id = random_hex(12).map_err(|error| ApiError::internal(&error))?;
    let path = path(&format!("/users/{id}"))?;
    let properties = json!({"email": email, "firstName": first, "lastName": last, "state": "pending",
        "password": password_hash, "identities": [{"provider": "Basic", "id": email}]});
    let properties = crate::api::rules::prepare(service.state(), &path, None, properties)?;
    let membership = path_of_membership(&id)?;
    let writes = vec![crate::service::put(path, properties), crate::service::put(membership, json!({}))];
    service.write(writes, &[], Authority::Store, &actor(&id, "sign up"))?;
    Ok(Some(id))
}

fn path_of_membership(id: &str) -> Result<ResourcePath, ApiError> {
    path(&format!("/groups/{DEVELOPERS}/users/{id}"))
}

pub(super) fn path(text: &str) -> Result<ResourcePath, ApiError> {
    ResourcePath::parse(text).map_err(|error| ApiError::internal(&error))
}

/// The audit log's actor for a portal change by user `id`.
pub(super) fn actor(id: &str, action: &str) -> Actor {
    Actor { name: format!("portal:{id}"), action: format!("portal: {action}") }
}

/// The user with `email` (any case): id and properties.
fn user_by_email(service: &Service, email: &str) -> Option<(String, UserProperties)> {
    service.state().of_kind(Kind::User).find_map(|user| {
        let properties: UserProperties = serde_json::from_value(user.properties.clone()).ok()?;
        properties.email.eq_ignore_ascii_case(email).then(|| (user.path.name().to_owned(), properties))
    })
}

#[derive(serde::Deserialize)]
pub(super) struct TicketQuery {
    #[serde(default)]
    ticket: String,
}

/// `GET /confirm?ticket=`: the pending user becomes active.
pub(super) async fn confirm(State(app): State<App>, headers: HeaderMap, Query(query): Query<TicketQuery>) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let invalid = || {
        message(
            &app,
            &visitor,
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "This confirmation link is not valid or has expired. Sign up again, or ask for a password reset if your account exists.",
        )
    };
    let Ok(ticket) = ticket::verify(app.sessions.signing_key(), Purpose::Confirm, &query.ticket, super::now_ms())
    else {
        return invalid();
    };
    let confirmed = {
        let mut service = app.service.lock().await;
        set_user(&mut service, &ticket.user, "confirm the email address", |user| {
            (user.get("state").and_then(Value::as_str) == Some(UserState::Pending.as_str()))
                .then(|| json!({"state": "active"}))
        })
    };
    match confirmed {
        Ok(true) => {
            message(&app, &visitor, StatusCode::OK, "Account confirmed", "Your account is active. You can sign in now.")
        }
        Ok(false) => invalid(),
        Err(error) => message(&app, &visitor, error.status, "Not confirmed", &error.message),
    }
}

/// Applies `change(properties)` (a merge patch) to user `id` through the management rules; false
/// when the user is absent or `change` declines.
pub(super) fn set_user(
    service: &mut Service,
    id: &str,
    action: &str,
    change: impl FnOnce(&Value) -> Option<Value>,
) -> Result<bool, ApiError> {
    let path = path(&format!("/users/{id}"))?;
    let Some(existing) = service.state().get(path.as_str()).cloned() else { return Ok(false) };
    let Some(patch) = change(&existing.properties) else { return Ok(false) };
    let mut properties = existing.properties.clone();
    crate::api::rules::merge(&mut properties, patch);
    let properties = crate::api::rules::prepare(service.state(), &path, Some(&existing), properties)?;
    service.write(vec![crate::service::put(path, properties)], &[], Authority::Store, &actor(id, action))?;
    Ok(true)
}

/// `GET /signin`.
pub(super) async fn signin_form(State(app): State<App>, headers: HeaderMap) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    page(&app, &visitor, StatusCode::OK, "signin.html", json!({"title": "Sign in", "form": {}}))
}

/// `POST /signin`: throttled per account and address; a session cookie for an active user.
pub(super) async fn signin(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if !visitor.csrf_ok(app.sessions.signing_key(), form.get("csrf").map(String::as_str)) {
        return forged(&app, &visitor);
    }
    let email = field(&form, "email").to_owned();
    let secret = form.get("password").cloned().unwrap_or_default();
    let address = peer.ip().to_string();
    let now = super::now_ms();
    let refused = |status, text: &str| {
        let context = json!({"title": "Sign in", "form": {"email": email}, "error": text});
        page(&app, &visitor, status, "signin.html", context)
    };
    if let Some(wait_s) = app.throttle.check(&email, &address, now) {
        let mut response =
            refused(StatusCode::TOO_MANY_REQUESTS, "Too many failed sign-ins. Wait a few minutes and try again.");
        if let Ok(value) = HeaderValue::from_str(&wait_s.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let found = user_by_email(&*app.service.lock().await, &email);
    let stored =
        found.as_ref().and_then(|(_, user)| user.password.clone()).unwrap_or_else(|| password::decoy().to_owned());
    let matches = tokio::task::spawn_blocking(move || password::verify(&secret, &stored)).await.unwrap_or(false);
    let Some((id, user)) = found.filter(|_| matches) else {
        app.throttle.fail(&email, &address, now);
        return refused(StatusCode::UNAUTHORIZED, "The email address or the password is not right.");
    };
    match user.state {
        UserState::Active => {}
        UserState::Pending => {
            return refused(StatusCode::FORBIDDEN, "Confirm your email address first: follow the link we sent you.");
        }
        UserState::Blocked | UserState::Deleted => {
            return refused(StatusCode::FORBIDDEN, "This account cannot sign in. Ask the portal's administrator.");
        }
    }
    app.throttle.succeed(&email);
    let secret = match app.sessions.create(&id, now) {
        Ok(secret) => secret,
        Err(error) => {
            tracing::error!("the portal cannot start a session: {error}");
            return message(
                &app,
                &visitor,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not signed in",
                "The portal cannot sign you in right now.",
            );
        }
    };
    let mut response = see_other("/subscriptions");
    let cookie = set_cookie(SESSION_COOKIE, &secret, app.settings.secure_cookies(), None);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `POST /signout`: ends the session.
pub(super) async fn signout(State(app): State<App>, headers: HeaderMap, Form(form): Fields) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if !visitor.csrf_ok(app.sessions.signing_key(), form.get("csrf").map(String::as_str)) {
        return forged(&app, &visitor);
    }
    if let Some(session) = &visitor.session {
        let _ = app.sessions.end(session);
    }
    let mut response = see_other("/");
    let cookie = set_cookie(SESSION_COOKIE, "", app.settings.secure_cookies(), Some(0));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /reset`.
pub(super) async fn reset_form(State(app): State<App>, headers: HeaderMap) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    page(&app, &visitor, StatusCode::OK, "reset.html", json!({"title": "Reset your password"}))
}

/// `POST /reset`: mails a reset link to an active account (the page is the same either way).
/// Requests count against the sign-in throttle's limits under a key of their own (per address
/// asked for and per client), so the form cannot be used to flood a mailbox.
pub(super) async fn reset(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if !visitor.csrf_ok(app.sessions.signing_key(), form.get("csrf").map(String::as_str)) {
        return forged(&app, &visitor);
    }
    let email = field(&form, "email");
    let (account, address, now) = (format!("reset:{email}"), format!("reset:{}", peer.ip()), super::now_ms());
    if let Some(wait_s) = app.throttle.check(&account, &address, now) {
        let mut response = message(
            &app,
            &visitor,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "Too many reset links were asked for. Wait a few minutes and try again.",
        );
        if let Ok(value) = HeaderValue::from_str(&wait_s.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    app.throttle.fail(&account, &address, now);
    let found = user_by_email(&*app.service.lock().await, email);
    if let Some((id, user)) = found.filter(|(_, user)| user.state == UserState::Active) {
        let stamp = password_stamp(user.password.as_deref());
        let ticket =
            ticket::issue(app.sessions.signing_key(), Purpose::Reset, &id, &stamp, super::now_ms() + RESET_TICKET_MS);
        let link = format!("{}/reset/password?ticket={ticket}", app.settings.public_url);
        let body = format!(
            "Hello {},\n\nchoose a new password for {} by opening this link within an hour:\n\n{link}\n\nIf you did not ask for it, ignore this message: your password stays as it is.\n",
            user.first_name, app.settings.title
        );
        send(&app, Mail { to: user.email, subject: "Reset your password".to_owned(), body, link }).await;
    }
    message(
        &app,
        &visitor,
        StatusCode::OK,
        "Check your mailbox",
        "If an active account has this address, we sent it a link to choose a new password.",
    )
}

/// `GET /reset/password?ticket=`.
pub(super) async fn new_password_form(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<TicketQuery>,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if ticket::verify(app.sessions.signing_key(), Purpose::Reset, &query.ticket, super::now_ms()).is_err() {
        return message(
            &app,
            &visitor,
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "This reset link is not valid or has expired. Ask for a new one.",
        );
    }
    page(
        &app,
        &visitor,
        StatusCode::OK,
        "new_password.html",
        json!({"title": "Choose a new password", "ticket": query.ticket}),
    )
}

/// `POST /reset/password`: sets the password once per ticket and ends every session of the user.
pub(super) async fn new_password(State(app): State<App>, headers: HeaderMap, Form(form): Fields) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if !visitor.csrf_ok(app.sessions.signing_key(), form.get("csrf").map(String::as_str)) {
        return forged(&app, &visitor);
    }
    let raw_ticket = field(&form, "ticket").to_owned();
    let invalid = || {
        message(
            &app,
            &visitor,
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "This reset link is not valid, has expired or was used already. Ask for a new one.",
        )
    };
    let Ok(ticket) = ticket::verify(app.sessions.signing_key(), Purpose::Reset, &raw_ticket, super::now_ms()) else {
        return invalid();
    };
    let secret = form.get("password").cloned().unwrap_or_default();
    if let Some(weakness) = password::weakness(&secret) {
        let context = json!({"title": "Choose a new password", "ticket": raw_ticket, "error": weakness});
        return page(&app, &visitor, StatusCode::BAD_REQUEST, "new_password.html", context);
    }
    let hashed = match hash_off_runtime(secret).await {
        Ok(hashed) => hashed,
        Err(response) => return response(&app, &visitor),
    };
    let changed = {
        let mut service = app.service.lock().await;
        set_user(&mut service, &ticket.user, "reset the password", |user| {
            let current = user.get("password").and_then(Value::as_str);
            let active = user.get("state").and_then(Value::as_str) == Some(UserState::Active.as_str());
            (active && password_stamp(current) == ticket.stamp).then(|| json!({"password": hashed}))
        })
    };
    match changed {
        Ok(true) => {
            let _ = app.sessions.end_all(&ticket.user);
            message(
                &app,
                &visitor,
                StatusCode::OK,
                "Password changed",
                "Your password is changed. Sign in with it now.",
            )
        }
        Ok(false) => invalid(),
        Err(error) => message(&app, &visitor, error.status, "Password not changed", &error.message),
    }
}

/// What a reset ticket is tied to: a digest of the password hash (so a used ticket stops working).
fn password_stamp(hash: Option<&str>) -> String {
    hex(&Sha256::digest(hash.unwrap_or("").as_bytes())[..8])
}

pub(super) type Failure = fn(&App, &Visitor) -> Response;

/// Argon2id on the blocking pool (tens of milliseconds of CPU: not on the portal's runtime).
pub(super) async fn hash_off_runtime(secret: String) -> Result<String, Failure> {
    match tokio::task::spawn_blocking(move || password::hash(&secret)).await {
        Ok(Ok(hashed)) => Ok(hashed),
        _ => Err(|app: &App, visitor: &Visitor| {
            message(
                app,
                visitor,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not saved",
                "The password could not be saved; try again.",
            )
        }),
    }
}

/// Sends `mail` off the runtime; false (and logged) when it could not be sent.
async fn send(app: &App, mail: Mail) -> bool {
    let mailer = app.mailer.clone();
    let to = mail.to.clone();
    match tokio::task::spawn_blocking(move || mailer.send(&mail)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::error!("the portal cannot send mail to {to}: {error}");
            false
        }
        Err(error) => {
            tracing::error!("the portal's mail task failed: {error}");
            false
        }
    }
}
