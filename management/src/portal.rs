//! The developer portal: the third URL (`up --listen-portal`), where developers browse the
//! catalogue, read an API's operations, sign up, and subscribe to get keys.
//!
//! Server-rendered HTML (minijinja templates and assets embedded from `management/portal/`) with
//! small, optional JavaScript. Every page works without it.
//!
//! - `visitor`: who is asking (session cookie, CSRF token); `sessions` the server-side sessions
//!   and signing key in the store; `password` argon2id; `ticket` the signed, expiring links of
//!   confirmation and reset mails; `throttle` sign-in throttling; `mail` SMTP or the outbox.
//! - `accounts`: sign-up, confirmation, sign-in, sign-out, password reset.
//! - `catalogue`: products and APIs the visitor's groups may see, subscribing;
//!   `subscriptions`: "My subscriptions" (keys, regenerate, cancel); `profile`: name, password,
//!   closing the account.
//! - `docs`: the OpenAPI viewer's page and definition downloads; `try_it`: the console that
//!   sends an operation through the gateway with the member's key, and code samples; `data`: JSON
//!   endpoints shaped after APIM's developer data API.
//!
//! Every change goes through [`Service::write`] with the management API's rules
//! (`api::rules::prepare`): the portal adds who may do what, never its own idea of a valid resource.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Mutex;

use crate::service::Service;

mod accounts;
mod catalogue;
mod data;
mod docs;
pub mod mail;
mod pages;
pub mod password;
mod profile;
mod search;
pub mod sessions;
mod subscriptions;
pub mod throttle;
pub mod ticket;
pub mod try_it;
mod visitor;

pub use mail::{MailSettings, Mailer};
pub use sessions::Sessions;

/// Default address of the portal listener.
pub const LISTEN_PORTAL_DEFAULT: &str = "127.0.0.1:8083";
/// Longest form body accepted, in bytes (sign-up is the largest form).
pub const FORM_BYTES_MAX: usize = 16 * 1024;
/// How long a confirmation link works, in milliseconds (two days).
pub const CONFIRM_TICKET_MS: u64 = 48 * 60 * 60 * 1000;
/// How long a password-reset link works, in milliseconds (one hour).
pub const RESET_TICKET_MS: u64 = 60 * 60 * 1000;

/// What the portal needs beyond the service.
#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// The portal's public base URL (`https://developer.example.com`): links in mails; an
    /// `https` URL makes cookies `Secure`.
    pub public_url: String,
    /// The gateway's base URL as developers reach it: shown on API pages, the server of the
    /// definitions. Default: the gateway's own listener.
    pub gateway_url: String,
    /// Where the try-it console sends requests: the gateway's own plain-HTTP listener.
    pub gateway_listener_url: String,
    pub mail: MailSettings,
    /// The sender of the portal's mail.
    pub mail_from: String,
    /// The portal's title (header, page titles).
    pub title: String,
}

impl PortalSettings {
    /// Settings for a portal at `public_url` over the gateway at `gateway_url` (its listener, and
    /// the URL shown until `gateway_url` is set otherwise) that writes its mail to `outbox`.
    pub fn new(public_url: &str, gateway_url: &str, outbox: PathBuf) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            gateway_url: gateway_url.trim_end_matches('/').to_owned(),
            gateway_listener_url: gateway_url.trim_end_matches('/').to_owned(),
            mail: MailSettings::Outbox { dir: outbox },
            mail_from: "Portcullis developer portal <portal@portcullis.invalid>".to_owned(),
            title: "Portcullis developer portal".to_owned(),
        }
    }

    fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// Why the portal cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error(transparent)]
    Sessions(#[from] sessions::SessionError),
    #[error("the portal's mail settings: {0}")]
    Mail(#[from] mail::MailError),
    #[error("the portal's templates: {0}")]
    Templates(#[from] minijinja::Error),
}

/// What every handler sees.
#[derive(Debug, Clone)]
struct App {
    service: Arc<Mutex<Service>>,
    settings: Arc<PortalSettings>,
    sessions: Arc<Sessions>,
    throttle: Arc<throttle::Throttle>,
    mailer: Mailer,
    pages: Arc<pages::Pages>,
}

/// The portal over `service`, its sessions in `sessions`. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` (sign-in throttling reads the address).
pub fn router(
    service: Arc<Mutex<Service>>,
    sessions: Sessions,
    settings: PortalSettings,
) -> Result<Router, PortalError> {
    let mailer = Mailer::new(&settings.mail, &settings.mail_from)?;
    let app = App {
        service,
        settings: Arc::new(settings),
        sessions: Arc::new(sessions),
        throttle: Arc::default(),
        mailer,
        pages: Arc::new(pages::Pages::new()?),
    };
    let router = Router::new()
        .route("/", get(catalogue::home))
        .route("/products/{product}", get(catalogue::product))
        .route("/products/{product}/subscribe", post(catalogue::subscribe))
        .route("/apis/{api}", get(catalogue::api))
        .route("/apis/{api}/reference", get(docs::reference))
        .route("/apis/{api}/{file}", get(docs::download))
        .route(
            "/apis/{api}/operations/{operation}/try",
            post(try_it::send).layer(axum::extract::DefaultBodyLimit::max(try_it::TRY_FORM_BYTES_MAX)),
        )
        .route("/profile", get(profile::show).post(profile::rename))
        .route("/profile/password", post(profile::change_password))
        .route("/profile/close", post(profile::close))
        .route("/developer/apis", get(data::apis))
        .route("/developer/apis/{api}", get(docs::data_api))
        .route("/developer/apis/{api}/operations", get(data::operations))
        .route("/developer/products", get(data::products))
        .route("/developer/users/{user}/subscriptions", get(data::subscriptions))
        .route("/signup", get(accounts::signup_form).post(accounts::signup))
        .route("/confirm", get(accounts::confirm))
        .route("/signin", get(accounts::signin_form).post(accounts::signin))
        .route("/signout", post(accounts::signout))
        .route("/reset", get(accounts::reset_form).post(accounts::reset))
        .route("/reset/password", get(accounts::new_password_form).post(accounts::new_password))
        .route("/subscriptions", get(subscriptions::list))
        .route("/subscriptions/{subscription}/regenerate", post(subscriptions::regenerate))
        .route("/subscriptions/{subscription}/cancel", post(subscriptions::cancel))
        .route("/assets/{*file}", get(pages::asset))
        .fallback(catalogue::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(FORM_BYTES_MAX))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app);
    Ok(router)
}

/// Headers every answer carries: no framing, no sniffing, no referrer (links carry tickets), a
/// content security policy that allows only the portal's own assets.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A 303 to `location` (after a form: the browser GETs it).
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Unix milliseconds now.
fn now_ms() -> u64 {
    u64::try_from(crate::analytics::now_ms()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
