//! One resource: `GET`, `HEAD`, `PUT`, `PATCH`, `DELETE`, and the `POST` actions on it
//! (`listSecrets`, `regeneratePrimaryKey`, `regenerateSecondaryKey`, `listValue`).

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::envelope::envelope;
use super::error::ApiError;
use super::routes::Action;
use super::rules::{self, BUILT_IN_USER};
use super::{Request, check_writable, json};
use crate::resource::{Kind, PathError, ResourcePath};
use crate::service::{Authority, Service};
use crate::store::{Resource, Write};

/// A resource route.
pub(super) fn answer(service: &mut Service, request: &Request, gateway_url: &str) -> Result<Response, ApiError> {
    let path = resource_path(&request.matched.path)?;
    match request.method {
        Method::GET | Method::HEAD => read(service, request, &path, gateway_url),
        Method::PUT => put(service, request, &path),
        Method::PATCH => patch(service, request, &path),
        Method::DELETE => delete(service, request, &path),
        _ => Err(ApiError::method_not_allowed(request.matched.route.methods())),
    }
}

/// A `POST` action on the resource the path names without its last segment.
pub(super) fn act(service: &mut Service, request: &Request, action: Action) -> Result<Response, ApiError> {
    let owner = request.matched.path.rsplit_once('/').map_or("", |(owner, _)| owner);
    let path = resource_path(owner)?;
    // Reading a secret is as sensitive as writing: read-only tokens do neither.
    check_writable(request)?;
    let resource = service.state().get(path.as_str()).ok_or_else(|| ApiError::not_found(path.as_str()))?;
    let field = |name: &str| resource.properties.get(name).cloned().unwrap_or(Value::Null);
    match action {
        Action::ListSecrets => {
            let body = json!({"primaryKey": field("primaryKey"), "secondaryKey": field("secondaryKey")});
            Ok(json(StatusCode::OK, body, Some(resource.etag())))
        }
        Action::ListValue => Ok(json(StatusCode::OK, json!({"value": field("value")}), Some(resource.etag()))),
        Action::RegeneratePrimaryKey | Action::RegenerateSecondaryKey => {
            let properties = rules::regenerated(resource, action == Action::RegeneratePrimaryKey)?;
            let write = crate::service::put(path, properties);
            service.write(vec![write], &[], Authority::Store, &request.actor())?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

fn resource_path(text: &str) -> Result<ResourcePath, ApiError> {
    ResourcePath::parse(text).map_err(|error| match error {
        PathError::Unknown(_) => ApiError::not_found(text),
        bad => ApiError::validation("path", bad.to_string()),
    })
}

fn read(service: &Service, request: &Request, path: &ResourcePath, gateway_url: &str) -> Result<Response, ApiError> {
    if path.kind() == Kind::Api && request.query("export") == Some("true") {
        return super::definition::export(
            service,
            path,
            request.query("format").unwrap_or("openapi+json"),
            gateway_url,
        );
    }
    let resource = service.state().get(path.as_str()).ok_or_else(|| ApiError::not_found(path.as_str()))?;
    let mut body = shown(service, resource);
    if path.kind().is_policy()
        && let Some(format) = request.query("format")
    {
        if !crate::model::POLICY_FORMATS.contains(&format) {
            return Err(ApiError::validation("format", "format must be xml or rawxml"));
        }
        if let Some(properties) = body.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert("format".to_owned(), Value::String(format.to_owned()));
        }
    }
    Ok(json(StatusCode::OK, body, Some(resource.etag())))
}

/// What a read shows of `resource`: its envelope, or for a link, its target's.
fn shown(service: &Service, resource: &Resource) -> Value {
    let target = resource.path.target().and_then(|target| service.state().get(target));
    envelope(target.unwrap_or(resource))
}

fn put(service: &mut Service, request: &Request, path: &ResourcePath) -> Result<Response, ApiError> {
    check_writable(request)?;
    let properties = body_properties(request, path.kind().is_link())?;
    if super::definition::is_import(path, &properties) {
        return super::definition::import(service, request, path, &properties);
    }
    conform(path.kind(), false, &properties)?;
    let existing = service.state().get(path.as_str()).cloned();
    let properties = rules::prepare(service.state(), path, existing.as_ref(), properties)?;
    let expected = if_match(request, path, false)?;
    let mut writes = super::release::promotion(service.state(), path, &properties);
    let (properties, copied) = revision_copy(service, path, existing.is_none(), properties)?;
    writes.extend(copied);
    writes.push(crate::service::put(path.clone(), properties));
    write(service, request, path, writes, expected, existing.is_none())
}

/// A new revision with `sourceApiId` starts as a copy of the current revision (its operations,
/// policies and schemas), as APIM makes revisions; the request's properties win over the copy's.
fn revision_copy(
    service: &Service,
    path: &ResourcePath,
    creating: bool,
    properties: Value,
) -> Result<(Value, Vec<Write>), ApiError> {
    let revision = path.api().and_then(|(api, revision)| Some((api, revision?)));
    let (Some((api, number)), true, true) = (revision, creating, properties.get("sourceApiId").is_some()) else {
        return Ok((properties, Vec::new()));
    };
    let description = properties.get("apiRevisionDescription").and_then(Value::as_str);
    let mut copy = crate::revisions::create(service.state(), api, number, description)
        .map_err(|error| ApiError::validation("sourceApiId", error.to_string()))?;
    let mut merged = match copy.first() {
        Some(Write::Put { path: first, properties: copied, .. }) if first == path => copied.clone(),
        _ => return Ok((properties, copy)),
    };
    copy.remove(0);
    rules::merge(&mut merged, properties);
    Ok((merged, copy))
}

fn patch(service: &mut Service, request: &Request, path: &ResourcePath) -> Result<Response, ApiError> {
    check_writable(request)?;
    let expected = if_match(request, path, true)?;
    let existing = service.state().get(path.as_str()).cloned().ok_or_else(|| ApiError::not_found(path.as_str()))?;
    let changes = body_properties(request, false)?;
    conform(path.kind(), true, &changes)?;
    let mut properties = existing.properties.clone();
    rules::merge(&mut properties, changes);
    let properties = rules::prepare(service.state(), path, Some(&existing), properties)?;
    let mut writes = super::release::promotion(service.state(), path, &properties);
    writes.push(crate::service::put(path.clone(), properties));
    write(service, request, path, writes, expected, false)
}

fn write(
    service: &mut Service,
    request: &Request,
    path: &ResourcePath,
    writes: Vec<Write>,
    expected: Vec<(String, String)>,
    created: bool,
) -> Result<Response, ApiError> {
    service.write(writes, &expected, Authority::Store, &request.actor())?;
    let resource = service.state().get(path.as_str()).ok_or_else(|| ApiError::not_found(path.as_str()))?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, shown(service, resource), Some(resource.etag())))
}

fn delete(service: &mut Service, request: &Request, path: &ResourcePath) -> Result<Response, ApiError> {
    check_writable(request)?;
    // ARM requires If-Match to delete an entity; links (`/products/{p}/apis/{a}` ...) take none.
    let expected = if_match(request, path, !path.kind().is_link())?;
    if service.state().get(path.as_str()).is_none() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if is_built_in(service, path) {
        return Err(ApiError::conflict(format!("{path} is built in and cannot be deleted")));
    }
    service.write(vec![Write::Delete { path: path.clone() }], &expected, Authority::Store, &request.actor())?;
    Ok(StatusCode::OK.into_response())
}

fn is_built_in(service: &Service, path: &ResourcePath) -> bool {
    let group = path.kind() == Kind::Group
        && service.state().get(path.as_str()).is_some_and(|g| g.properties.get("builtIn") == Some(&Value::Bool(true)));
    group || path.as_str() == BUILT_IN_USER
}

/// `If-Match` as the service's precondition list; `required` makes its absence a 400.
fn if_match(request: &Request, path: &ResourcePath, required: bool) -> Result<Vec<(String, String)>, ApiError> {
    let blank = || ApiError::validation("If-Match", "If-Match is blank: send the ETag of the version you read, or *");
    match request.headers.get(header::IF_MATCH) {
        Some(value) => match value.to_str() {
            Ok(etag) if !etag.trim().is_empty() => Ok(vec![(path.to_string(), quoted(etag))]),
            _ => Err(blank()),
        },
        None if required => Err(ApiError::validation(
            "If-Match",
            "If-Match is required: send the ETag of the version you read, or * to match any",
        )),
        None => Ok(Vec::new()),
    }
}

/// 400 unless `properties` fit the document's schema for `kind` (links take any body).
fn conform(kind: Kind, patch: bool, properties: &Value) -> Result<(), ApiError> {
    if kind.is_link() {
        return Ok(());
    }
    super::openapi::conform(kind, patch, properties).map_err(|message| {
        let target = message.split(':').next().unwrap_or("properties").to_owned();
        ApiError::validation(&target, message)
    })
}

/// An ETag as the service writes it: `"3"` for `3`, `"3"` or `W/"3"`; `*` as is.
fn quoted(etag: &str) -> String {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    if etag == "*" || (etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"')) {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

/// The body's `properties` (`{}` for links, whose body is optional).
fn body_properties(request: &Request, link: bool) -> Result<Value, ApiError> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        if link {
            return Ok(json!({}));
        }
        return Err(ApiError::validation("body", "a body {\"properties\": {...}} is required"));
    }
    let body: Value = serde_json::from_slice(&request.body)
        .map_err(|error| ApiError::validation("body", format!("the body is not JSON: {error}")))?;
    match body {
        Value::Object(mut object) => match object.remove("properties") {
            Some(properties @ Value::Object(_)) => Ok(properties),
            None if link => Ok(json!({})),
            _ => Err(ApiError::validation("properties", "the body needs an object \"properties\"")),
        },
        _ => Err(ApiError::validation("body", "the body must be a JSON object {\"properties\": {...}}")),
    }
}
