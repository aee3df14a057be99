//! The try-it console: an operation's form on the API page, sent by the portal to the gateway on
//! the member's behalf (a portal-side proxy, as APIM's `useCorsProxy`), and code samples.
//!
//! Why a proxy and not CORS: the gateway is another origin, and answering CORS for the portal
//! there would change every API's behaviour (APIM leaves CORS to each API's own `cors` policy,
//! and most have none). Through the proxy the console works for every API as it is, and the key
//! never reaches the browser's script: the form names one of the member's own subscriptions and
//! the portal injects its key, after checking that the subscription is the member's, active, and
//! covers the API. The request goes only to the gateway, to the API's base URL. Nothing of it is
//! logged: neither the key nor the parameters.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::App;
use super::accounts::forged;
use super::catalogue::{VisibleApi, display, not_found_page, visible_api};
use super::pages::page;
use super::visitor::Visitor;
use crate::model::{OperationProperties, SubscriptionProperties, SubscriptionState};
use crate::resource::Kind;
use crate::service::State as Resources;

/// Largest try-it form (parameters and body), in bytes.
pub const TRY_FORM_BYTES_MAX: usize = 256 * 1024;
/// Most of a response the console shows, in bytes; the rest is cut (and said so).
pub const TRY_RESPONSE_BYTES_MAX: usize = 512 * 1024;
/// How long the console waits for the gateway's whole answer, in milliseconds.
pub const TRY_TIMEOUT_MS: u64 = 30_000;

/// Characters a path or query value keeps as they are (RFC 3986 unreserved).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// A `{*rest}` template parameter keeps its slashes.
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Headers the form may not set: the connection's own, and what the portal sets itself.
const HEADERS_REFUSED: [&str; 9] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

/// The member's keys that open API `shown`: `{value: "<subscription>:primary", label}` for each
/// of their active subscriptions whose scope covers it (all APIs, the API, or a product with it).
pub(super) fn keys_for(state: &Resources, visitor: &Visitor, shown: &VisibleApi) -> Vec<Value> {
    let Some(member) = &visitor.member else { return Vec::new() };
    let mut keys = Vec::new();
    for resource in state.of_kind(Kind::Subscription) {
        let Ok(subscription) = serde_json::from_value::<SubscriptionProperties>(resource.properties.clone()) else {
            continue;
        };
        if subscription.owner() != Some(member.id.as_str()) || !usable(state, &subscription, &shown.id) {
            continue;
        }
        let id = resource.path.name();
        let name = display(&subscription.display_name, id);
        for which in ["primary", "secondary"] {
            keys.push(json!({"value": format!("{id}:{which}"), "label": format!("{name} ({which} key)")}));
        }
    }
    keys
}

/// Whether `subscription` is active and its scope covers API `api`.
fn usable(state: &Resources, subscription: &SubscriptionProperties, api: &str) -> bool {
    if subscription.state != SubscriptionState::Active {
        return false;
    }
    let scope = subscription.relative_scope();
    scope == "/apis"
        || scope == format!("/apis/{api}")
        || scope.strip_prefix("/products/").is_some_and(|p| state.get(&format!("/products/{p}/apis/{api}")).is_some())
}

/// The key behind `choice` (`<subscription>:primary|secondary`) if it is the member's and opens `api`.
fn key_of(state: &Resources, member: &str, api: &str, choice: &str) -> Option<String> {
    let (id, which) = choice.split_once(':')?;
    let resource = state.get(&format!("/subscriptions/{id}"))?;
    let subscription: SubscriptionProperties = serde_json::from_value(resource.properties.clone()).ok()?;
    if subscription.owner() != Some(member) || !usable(state, &subscription, api) {
        return None;
    }
    match which {
        "primary" => subscription.primary_key,
        "secondary" => subscription.secondary_key,
        _ => None,
    }
}

/// Code samples for `operation` at `base`: curl, Python (requests) and JavaScript (fetch), with
/// the template's parameters as `{name}` and the key as a placeholder (never a real key).
pub(super) fn samples(base: &str, operation: &OperationProperties, key_header: Option<&str>) -> Value {
    let method = operation.method.to_ascii_uppercase();
    let url = format!("{base}{}", operation.url_template);
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(header) = key_header {
        headers.push((header.to_owned(), "<your key>".to_owned()));
    }
    let request = operation.request.clone().unwrap_or_default();
    for parameter in request.headers.iter().filter(|p| p.required) {
        headers.push((parameter.name.clone(), format!("{{{}}}", parameter.name)));
    }
    let content_type = request.representations.first().map(|r| r.content_type.clone());
    let body = content_type.as_ref().filter(|_| has_body(&method));
    if let Some(content_type) = body {
        headers.push(("Content-Type".to_owned(), content_type.clone()));
    }
    let js = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let mut curl = format!("curl -X {method} {}", shell(&url));
    for (name, value) in &headers {
        curl.push_str(&format!(" \\\n  -H {}", shell(&format!("{name}: {value}"))));
    }
    if body.is_some() {
        curl.push_str(" \\\n  --data-binary @request-body");
    }
    let header_lines =
        |indent: &str| headers.iter().map(|(n, v)| format!("{indent}{}: {},\n", js(n), js(v))).collect::<String>();
    let python = format!(
        "import requests\n\nresponse = requests.request(\n    {},\n    {},\n    headers={{\n{}    }},{}\n)\nprint(response.status_code, response.text)\n",
        js(&method),
        js(&url),
        header_lines("        "),
        if body.is_some() { "\n    data=open(\"request-body\", \"rb\")," } else { "" },
    );
    let javascript = format!(
        "const response = await fetch({}, {{\n  method: {},\n  headers: {{\n{}  }},{}\n}});\nconsole.log(response.status, await response.text());\n",
        js(&url),
        js(&method),
        header_lines("    "),
        if body.is_some() { "\n  body: requestBody," } else { "" },
    );
    json!([
        {"language": "curl", "label": "curl", "code": curl},
        {"language": "python", "label": "Python (requests)", "code": python},
        {"language": "javascript", "label": "JavaScript (fetch)", "code": javascript},
    ])
}

fn has_body(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE")
}

/// `text` quoted for a POSIX shell.
fn shell(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Why a try-it request was not sent, for the member.
#[derive(Debug, thiserror::Error)]
enum TryError {
    #[error("{0}")]
    Form(String),
    #[error("the gateway did not answer in time ({TRY_TIMEOUT_MS} ms)")]
    Timeout,
    #[error("the gateway cannot be reached: {0}")]
    Gateway(String),
}

/// What the console sends: method, path and query, headers (the key among them).
struct Outgoing {
    method: Method,
    path_and_query: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    /// The name of the key header, to mask its value in what the member is shown.
    key_header: Option<HeaderName>,
}

/// `POST /apis/{api}/operations/{operation}/try`: sends the form through the gateway and shows
/// the answer (JSON for the page's script, `Accept: application/json`; a page otherwise).
pub(super) async fn send(
    State(app): State<App>,
    headers: HeaderMap,
    Path((api_id, operation_id)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    if !visitor.csrf_ok(app.sessions.signing_key(), form.get("csrf").map(String::as_str)) {
        return forged(&app, &visitor);
    }
    let wants_json =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"));
    let prepared = {
        let service = app.service.lock().await;
        let state = service.state();
        visible_api(state, &visitor, &api_id).and_then(|shown| {
            let operation: OperationProperties = serde_json::from_value(
                state.get(&format!("/apis/{api_id}/operations/{operation_id}"))?.properties.clone(),
            )
            .ok()?;
            Some(prepare(state, &visitor, &shown, &operation, &form, &app.settings.gateway_listener_url))
        })
    };
    let Some(prepared) = prepared else { return not_found_page(&app, &visitor) };
    let outcome = match prepared {
        Ok(outgoing) => exchange(&app.settings.gateway_listener_url, outgoing).await,
        Err(error) => Err(error),
    };
    let (status, view) = match outcome {
        Ok(view) => (StatusCode::OK, view),
        Err(error @ TryError::Form(_)) => (StatusCode::BAD_REQUEST, json!({"error": error.to_string()})),
        Err(error) => (StatusCode::BAD_GATEWAY, json!({"error": error.to_string()})),
    };
    if wants_json {
        return (status, axum::Json(view)).into_response();
    }
    let context = json!({"title": "Try it: the answer", "result": view, "api": {"id": api_id}});
    page(&app, &visitor, status, "try_result.html", context)
}

/// The request the form asks for, with the member's key injected; refused when a parameter is
/// missing or not valid, or when the API needs a key the member does not have.
fn prepare(
    state: &Resources,
    visitor: &Visitor,
    shown: &VisibleApi,
    operation: &OperationProperties,
    form: &HashMap<String, String>,
    gateway_url: &str,
) -> Result<Outgoing, TryError> {
    let method = Method::from_bytes(operation.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| TryError::Form(format!("the operation's method {:?} is not valid", operation.method)))?;
    let value = |kind: &str, name: &str| form.get(&format!("{kind}:{name}")).map_or("", |v| v.as_str());
    let (path_template, query_template) =
        operation.url_template.split_once('?').unwrap_or((&operation.url_template, ""));
    let mut path = String::new();
    expand(path_template, &mut path, |name| {
        let raw = value("path", name.trim_start_matches('*'));
        if raw.is_empty() {
            return Err(TryError::Form(format!("enter the path parameter {name}")));
        }
        let set = if name.starts_with('*') { UNRESERVED_AND_SLASH } else { UNRESERVED };
        Ok(utf8_percent_encode(raw, set).to_string())
    })?;
    let mut query: Vec<String> = Vec::new();
    if !query_template.is_empty() {
        let mut fixed = String::new();
        expand(query_template, &mut fixed, |name| {
            let raw = value("path", name);
            if raw.is_empty() {
                return Err(TryError::Form(format!("enter the parameter {name}")));
            }
            Ok(utf8_percent_encode(raw, UNRESERVED).to_string())
        })?;
        query.push(fixed);
    }
    let request = operation.request.clone().unwrap_or_default();
    for parameter in &request.query_parameters {
        let raw = value("query", &parameter.name);
        if raw.is_empty() {
            if parameter.required {
                return Err(TryError::Form(format!("enter the query parameter {}", parameter.name)));
            }
            continue;
        }
        let name = utf8_percent_encode(&parameter.name, UNRESERVED);
        query.push(format!("{name}={}", utf8_percent_encode(raw, UNRESERVED)));
    }
    let base_url = shown.base_url(gateway_url);
    let mut path_and_query = format!("{}{path}", base_path(&base_url));
    if path_and_query.is_empty() {
        path_and_query.push('/');
    }
    if !query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&query.join("&"));
    }
    let mut headers = Vec::new();
    for parameter in &request.headers {
        let raw = value("header", &parameter.name);
        if raw.is_empty() {
            if parameter.required {
                return Err(TryError::Form(format!("enter the header {}", parameter.name)));
            }
            continue;
        }
        headers.push(header_pair(&parameter.name, raw)?);
    }
    let body = Bytes::from(form.get("body").cloned().unwrap_or_default());
    if has_body(method.as_str()) && !body.is_empty() {
        let content_type = form.get("contentType").map_or("application/json", |v| v.trim());
        headers.push(header_pair(
            "Content-Type",
            if content_type.is_empty() { "application/json" } else { content_type },
        )?);
    }
    let mut key_header = None;
    if shown.api.subscription_required {
        let member =
            visitor.member.as_ref().ok_or_else(|| TryError::Form("sign in to try an API that needs a key".into()))?;
        let choice = form.get("key").map_or("", String::as_str);
        let key = key_of(state, &member.id, &shown.id, choice)
            .ok_or_else(|| TryError::Form("choose one of your active subscriptions to this API".into()))?;
        let (name, value) = header_pair(&shown.key_header(), &key)?;
        headers.retain(|(other, _)| *other != name);
        key_header = Some(name.clone());
        headers.push((name, value));
    }
    Ok(Outgoing { method, path_and_query, headers, body, key_header })
}

/// Appends `template` to `out`, each `{name}` replaced by `fill(name)`.
fn expand(
    template: &str,
    out: &mut String,
    mut fill: impl FnMut(&str) -> Result<String, TryError>,
) -> Result<(), TryError> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close =
            after.find('}').ok_or_else(|| TryError::Form(format!("the URL template {template:?} is not closed")))?;
        out.push_str(&fill(&after[..close])?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// A header from the form, refused when its name is one the connection owns or it is not valid.
fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), TryError> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| TryError::Form(format!("{name:?} is not a header name")))?;
    if HEADERS_REFUSED.contains(&parsed.as_str()) {
        return Err(TryError::Form(format!("the console sets {name} itself")));
    }
    let value =
        HeaderValue::from_str(value).map_err(|_| TryError::Form(format!("the value of {name} is not valid")))?;
    Ok((parsed, value))
}

/// The path of `url` (`http://host:port/echo` → `/echo`), without a trailing slash.
fn base_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("", |at| rest[at..].trim_end_matches('/'))
}

/// Where to connect for `gateway_url`: its authority, a wildcard address made loopback.
fn connect_address(gateway_url: &str) -> Result<String, TryError> {
    let rest = gateway_url.strip_prefix("http://").ok_or_else(|| {
        TryError::Gateway(format!("the console speaks plain HTTP to the gateway, not to {gateway_url}"))
    })?;
    let authority = rest.split('/').next().unwrap_or(rest);
    Ok(authority.replacen("0.0.0.0", "127.0.0.1", 1).replacen("[::]", "[::1]", 1))
}

/// Sends `outgoing` to the gateway and reads the answer (at most [`TRY_RESPONSE_BYTES_MAX`]).
async fn exchange(gateway_url: &str, outgoing: Outgoing) -> Result<Value, TryError> {
    let authority = connect_address(gateway_url)?;
    let shown_url = format!("{}{}", gateway_url.trim_end_matches('/'), outgoing.path_and_query);
    let shown_headers: Vec<Value> = outgoing
        .headers
        .iter()
        .map(|(name, value)| {
            let masked = if outgoing.key_header.as_ref() == Some(name) {
                mask(value.to_str().unwrap_or_default())
            } else {
                value.to_str().unwrap_or("(binary)").to_owned()
            };
            json!([name.as_str(), masked])
        })
        .collect();
    let method = outgoing.method.to_string();
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_millis(TRY_TIMEOUT_MS), round_trip(&authority, outgoing))
        .await
        .map_err(|_| TryError::Timeout)??;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (parts, body, truncated) = answer;
    let headers: Vec<Value> =
        parts.headers.iter().map(|(n, v)| json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())])).collect();
    Ok(json!({
        "status": parts.status.as_u16(),
        "reason": parts.status.canonical_reason().unwrap_or(""),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "truncated": truncated,
        "timeMs": (elapsed_ms * 10.0).round() / 10.0,
        "request": {"method": method, "url": shown_url, "headers": shown_headers},
    }))
}

type Answer = (axum::http::response::Parts, Vec<u8>, bool);

async fn round_trip(authority: &str, outgoing: Outgoing) -> Result<Answer, TryError> {
    let gateway = |error: &dyn std::fmt::Display| TryError::Gateway(error.to_string());
    let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| gateway(&e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| gateway(&e))?;
    tokio::spawn(async move {
        // The connection ends with the exchange; its error (if any) is the request's.
        let _ = connection.await;
    });
    let mut request = axum::http::Request::builder().method(outgoing.method).uri(outgoing.path_and_query);
    if let Some(headers) = request.headers_mut() {
        for (name, value) in outgoing.headers {
            headers.append(name, value);
        }
        if let Ok(host) = HeaderValue::from_str(authority) {
            headers.insert(header::HOST, host);
        }
    }
    let request = request.body(Full::new(outgoing.body)).map_err(|e| gateway(&e))?;
    let response = sender.send_request(request).await.map_err(|e| gateway(&e))?;
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| gateway(&e))?;
        if let Ok(data) = frame.into_data() {
            let room = TRY_RESPONSE_BYTES_MAX - bytes.len();
            if data.len() > room {
                bytes.extend_from_slice(&data[..room]);
                truncated = true;
                break;
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok((parts, bytes, truncated))
}

/// A key as the member is shown it in the sent request: its last four characters.
fn mask(key: &str) -> String {
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn templates_expand_with_encoded_values_and_refuse_missing_ones() {
        let mut out = String::new();
        expand("/users/{id}/files/{*rest}", &mut out, |name| {
            Ok(match name {
                "id" => utf8_percent_encode("a b/c", UNRESERVED).to_string(),
                _ => utf8_percent_encode("x/y z", UNRESERVED_AND_SLASH).to_string(),
            })
        })
        .unwrap();
        assert_eq!(out, "/users/a%20b%2Fc/files/x/y%20z");
        let mut out = String::new();
        assert!(expand("/a/{id", &mut out, |_| Ok(String::new())).is_err());
    }

    #[test]
    fn the_console_sets_the_connection_headers_itself() {
        assert!(header_pair("Host", "evil.example").is_err());
        assert!(header_pair("Transfer-Encoding", "chunked").is_err());
        assert!(header_pair("X-Ok", "line\nbreak").is_err());
        assert!(header_pair("bad name", "v").is_err());
        assert!(header_pair("X-Ok", "fine").is_ok());
    }

    #[test]
    fn only_the_gateway_over_plain_http_is_a_target() {
        assert_eq!(connect_address("http://0.0.0.0:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(connect_address("http://[::]:8080").unwrap(), "[::1]:8080");
        assert!(connect_address("https://gateway.example").is_err());
        assert_eq!(base_path("http://127.0.0.1:8080/echo/"), "/echo");
        assert_eq!(base_path("http://127.0.0.1:8080"), "");
    }

    #[test]
    fn samples_carry_a_placeholder_never_a_key() {
        let operation: OperationProperties = serde_json::from_value(json!({
            "displayName": "Create", "method": "POST", "urlTemplate": "/items/{id}",
            "templateParameters": [{"name": "id", "type": "string", "required": true}],
            "request": {"representations": [{"contentType": "application/json"}]},
            "responses": []
        }))
        .unwrap();
        let samples = samples("http://gw:8080/shop", &operation, Some("Ocp-Apim-Subscription-Key"));
        let curl = samples[0]["code"].as_str().unwrap();
        assert!(curl.starts_with("curl -X POST 'http://gw:8080/shop/items/{id}'"), "{curl}");
        assert!(
            curl.contains("'Ocp-Apim-Subscription-Key: <your key>'") && curl.contains("Content-Type: application/json")
        );
        assert!(samples[1]["code"].as_str().unwrap().contains("requests.request(\n    \"POST\""));
        assert!(samples[2]["code"].as_str().unwrap().contains("fetch(\"http://gw:8080/shop/items/{id}\""));
        assert_eq!(mask("0123456789abcdef"), "…cdef");
    }
}
