//! The management REST API: APIM's resource paths relative to the service, its JSON envelope,
//! list shape, `$filter`/`$top`/`$skip`, ETags and ARM's error shape, behind access tokens.
//!
//! [`router`] is what `portcullis up` serves on `--listen-management`. Every request but
//! `GET /openapi.json` needs `Authorization: Bearer <token>` (or `SharedAccessSignature <token>`,
//! see [`crate::tokens`]); every write goes through [`Service::write`] as the token's name, so the
//! audit log (`GET /changes`) says who changed what. The route table (`routes::ROUTES`) drives
//! both the dispatcher and the OpenAPI document, so the document lists exactly what exists.
//!
//! The service is behind one async mutex: requests are served one at a time. A write compiles the
//! would-be configuration and commits to SQLite while holding it (milliseconds); the management
//! plane is not a hot path.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as Extract;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Mutex;

use crate::service::Service;
use crate::store::Token;

mod conform;
mod definition;
mod envelope;
mod error;
mod filter;

pub use filter::Filter;
mod item;
mod list;
mod openapi;
mod release;
mod reports;
mod routes;
pub(crate) mod rules;

pub use error::{ApiError, Detail};
pub use reports::query::{parse_filter as parse_report_filter, parse_interval as parse_report_interval};

/// Longest request body accepted, in bytes (an API with a large OpenAPI schema fits; more is a 413).
pub const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// What the API needs to know beyond the service.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The gateway's public base URL (`https://gw.example.com`): the `privateUrl` of revisions.
    pub gateway_url: String,
    /// Where `/reports/*` read from (`None`: every report is empty).
    pub analytics: Option<crate::analytics::SharedAnalytics>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self { gateway_url: "http://127.0.0.1:8080".to_owned(), analytics: None }
    }
}

/// What every request handler sees.
#[derive(Debug, Clone)]
struct App {
    service: Arc<Mutex<Service>>,
    settings: Arc<ApiSettings>,
}

/// The management API over `service`. Serve it with `axum::serve` on its own listener.
pub fn router(service: Arc<Mutex<Service>>, settings: ApiSettings) -> Router {
    let app = App { service, settings: Arc::new(settings) };
    Router::new().route("/openapi.json", get(openapi_document)).fallback(dispatch).with_state(app)
}

/// The OpenAPI 3 document of this API (no token needed: it holds nothing secret).
pub fn openapi() -> &'static serde_json::Value {
    openapi::document()
}

async fn openapi_document() -> Response {
    axum::Json(openapi::document()).into_response()
}

/// One request, as the route table says.
struct Request {
    method: Method,
    matched: routes::Matched,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    token: Token,
}

impl Request {
    fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The audit log's actor: the token's name and what it asked.
    fn actor(&self) -> crate::store::Actor {
        crate::store::Actor { name: self.token.name.clone(), action: format!("{} {}", self.method, self.matched.path) }
    }
}

async fn dispatch(Extract(app): Extract<App>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let head = method == Method::HEAD;
    let Ok(body) = axum::body::to_bytes(body, BODY_BYTES_MAX).await else {
        return ApiError::too_large(BODY_BYTES_MAX).into_response();
    };
    let mut service = app.service.lock().await;
    let response = match answer(&app, &mut service, method, &uri, headers, body) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    if head { strip_body(response) } else { response }
}

fn answer(
    app: &App,
    service: &mut Service,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    let token = authorization.and_then(|value| crate::tokens::verify(service.store(), value));
    let token = token.ok_or_else(ApiError::unauthorized)?;
    let matched = routes::find(uri.path()).ok_or_else(|| ApiError::not_found(uri.path()))?;
    let route = matched.route;
    if !route.methods().contains(&method.as_str()) {
        return Err(ApiError::method_not_allowed(route.methods()));
    }
    let query = parse_query(uri)?;
    let request = Request { method, matched, query, headers, body, token };
    match route.endpoint {
        routes::Endpoint::List(listing) => list::answer(app, service, &request, listing),
        routes::Endpoint::Item => item::answer(service, &request, &app.settings.gateway_url),
        routes::Endpoint::Action(action) => item::act(service, &request, action),
        routes::Endpoint::Report(report) => reports::answer(app, service, &request, report),
    }
}

fn parse_query(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    let query = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|error| ApiError::validation("query", format!("the query string cannot be read: {error}")))?;
    Ok(query.0)
}

/// A HEAD answer: the GET's status and headers, no body.
fn strip_body(response: Response) -> Response {
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Body::empty())
}

/// 403 unless the token may write.
fn check_writable(request: &Request) -> Result<(), ApiError> {
    if request.token.read_only {
        return Err(ApiError::forbidden(format!("the token {:?} is read-only", request.token.name)));
    }
    Ok(())
}

/// A JSON response with `status` and, when given, an ETag.
fn json(status: StatusCode, body: serde_json::Value, etag: Option<String>) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(etag) = etag.and_then(|etag| header::HeaderValue::from_str(&etag).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

#[cfg(test)]
mod tests;
