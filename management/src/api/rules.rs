//! What a PUT or PATCH must satisfy before it reaches the service, and what the API fills in:
//! the parent and link target exist, the properties fit their kind, subscriptions get keys, a
//! state and a creation date, states change only as APIM allows, emails are unique, built-in
//! groups stay built in.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::model::{POLICY_FORMATS, Properties, SubscriptionState};
use crate::resource::{Kind, ResourcePath, split_revision};
use crate::service::State;
use crate::store::Resource;

/// Random bytes of a generated subscription key (APIM's keys are 32 hex digits, as quickstart's).
/// Ids of the built-in user and groups (they cannot be deleted).
pub(crate) const BUILT_IN_USER: &str = "/users/1";

/// The properties to store for a write of `path` (`existing` is its current version, if any).
pub(crate) fn prepare(
    state: &State,
    path: &ResourcePath,
    existing: Option<&Resource>,
    properties: Value,
) -> Result<Value, ApiError> {
    check_owners_exist(state, path)?;
    if path.kind().is_link() {
        return Ok(Value::Object(Map::new()));
    }
    let mut properties = match properties {
        Value::Object(object) => object,
        _ => return Err(ApiError::validation("properties", "properties must be an object")),
    };
    let now = crate::service::now();
    match path.kind() {
        Kind::Subscription => fill_subscription(&mut properties, existing, &now)?,
        Kind::User => fill_user(&mut properties, existing, &now)?,
        Kind::NamedValue => keep_secret_value(&mut properties, existing),
        Kind::Api => fill_api_revision(&mut properties, path)?,
        Kind::Release => fill_release(&mut properties, path, existing, &now)?,
        Kind::Group => fix_group_origin(&mut properties, existing),
        _ => {}
    }
    let typed = Properties::from_json(path.kind(), Value::Object(properties)).map_err(|error| {
        let message = error.to_string();
        ApiError::validation(&field_target(&message), message)
    })?;
    check(state, path, existing, &typed)?;
    Ok(typed.to_json())
}

/// The properties of `subscription` with a fresh `primaryKey` (`primary`) or `secondaryKey`: what
/// `regeneratePrimaryKey` and the portal's "Regenerate" write.
pub(crate) fn regenerated(subscription: &Resource, primary: bool) -> Result<Value, ApiError> {
    let name = if primary { "primaryKey" } else { "secondaryKey" };
    let mut properties = subscription.properties.clone();
    let object = properties.as_object_mut().ok_or_else(|| ApiError::internal(&"a subscription is not an object"))?;
    object.insert(name.to_owned(), Value::String(random_key()?));
    Ok(properties)
}

/// A fresh subscription key: 32 lowercase hex digits.
pub(crate) fn random_key() -> Result<String, ApiError> {
    crate::tokens::subscription_key().map_err(|error| ApiError::internal(&error))
}

/// A child needs its parent, a link its target, a revision its API.
fn check_owners_exist(state: &State, path: &ResourcePath) -> Result<(), ApiError> {
    let mut needed: Vec<String> = path.parent().into_iter().chain(path.target()).map(str::to_owned).collect();
    if path.kind() == Kind::Api
        && let (id, Some(_)) = split_revision(path.name())
    {
        needed.push(format!("/apis/{id}"));
    }
    match needed.into_iter().find(|owner| state.get(owner).is_none()) {
        Some(missing) => Err(ApiError::not_found(&missing)),
        None => Ok(()),
    }
}

/// `properties.path` for serde's "missing field `path`", else `properties`.
fn field_target(message: &str) -> String {
    match message.split('`').nth(1) {
        Some(field) if !field.is_empty() => format!("properties.{field}"),
        _ => "properties".to_owned(),
    }
}

fn fill_subscription(
    properties: &mut Map<String, Value>,
    existing: Option<&Resource>,
    now: &str,
) -> Result<(), ApiError> {
    for (name, field) in
        [("primaryKey", "primaryKey"), ("secondaryKey", "secondaryKey"), ("createdDate", "createdDate")]
    {
        if properties.get(name).is_none_or(Value::is_null) {
            let kept = existing.and_then(|r| r.properties.get(field)).filter(|v| !v.is_null()).cloned();
            let value = match (kept, name) {
                (Some(value), _) => value,
                (None, "createdDate") => Value::String(now.to_owned()),
                (None, _) => Value::String(random_key()?),
            };
            properties.insert(name.to_owned(), value);
        }
    }
    Ok(())
}

fn fill_user(properties: &mut Map<String, Value>, existing: Option<&Resource>, now: &str) -> Result<(), ApiError> {
    // A password is stored as its argon2id hash only (the portal signs in with it); one written
    // in clear through the API is hashed here.
    if let Some(Value::String(given)) = properties.get("password")
        && !crate::portal::password::is_hash(given)
    {
        let hashed = crate::portal::password::hash(given).map_err(|error| ApiError::internal(&error))?;
        properties.insert("password".to_owned(), Value::String(hashed));
    }
    for (name, default) in [("password", None), ("registrationDate", Some(now))] {
        if properties.get(name).is_none_or(Value::is_null) {
            let kept = existing.and_then(|r| r.properties.get(name)).filter(|v| !v.is_null()).cloned();
            if let Some(value) = kept.or_else(|| default.map(|d| Value::String(d.to_owned()))) {
                properties.insert(name.to_owned(), value);
            }
        }
    }
    Ok(())
}

/// A secret value is write-only: a PUT that read it back as null keeps it.
fn keep_secret_value(properties: &mut Map<String, Value>, existing: Option<&Resource>) {
    if properties.get("value").is_none_or(Value::is_null)
        && let Some(value) = existing.and_then(|r| r.properties.get("value")).filter(|v| !v.is_null())
    {
        properties.insert("value".to_owned(), value.clone());
    }
}

/// `/apis/{id};rev=N` holds revision N: `apiRevision` says so, or is filled in.
fn fill_api_revision(properties: &mut Map<String, Value>, path: &ResourcePath) -> Result<(), ApiError> {
    let (_, Some(revision)) = split_revision(path.name()) else { return Ok(()) };
    match properties.get("apiRevision") {
        None | Some(Value::Null) => {
            properties.insert("apiRevision".to_owned(), Value::String(revision.to_string()));
            Ok(())
        }
        Some(Value::String(given)) if given == &revision.to_string() => Ok(()),
        Some(_) => Err(ApiError::validation(
            "properties.apiRevision",
            format!("apiRevision must be \"{revision}\" at {path} (or absent)"),
        )),
    }
}

/// A release names a revision of its own API; its dates are kept by the API.
fn fill_release(
    properties: &mut Map<String, Value>,
    path: &ResourcePath,
    existing: Option<&Resource>,
    now: &str,
) -> Result<(), ApiError> {
    let api = path.api().map(|(id, _)| id).unwrap_or_default();
    if let Some(api_id) = properties.get("apiId").and_then(Value::as_str) {
        let relative = crate::model::relative_to_service(api_id);
        let released = relative.strip_prefix("/apis/").map(|id| split_revision(id).0);
        if released != Some(api) {
            return Err(ApiError::validation(
                "properties.apiId",
                format!("a release of {api} must name /apis/{api};rev=N"),
            ));
        }
    }
    let created = existing.and_then(|r| r.properties.get("createdDateTime")).cloned();
    properties.insert("createdDateTime".to_owned(), created.unwrap_or_else(|| Value::String(now.to_owned())));
    properties.insert("updatedDateTime".to_owned(), Value::String(now.to_owned()));
    Ok(())
}

/// `builtIn` and `type: system` are read-only: a built-in group stays one, others never become one.
fn fix_group_origin(properties: &mut Map<String, Value>, existing: Option<&Resource>) {
    let built_in = existing.is_some_and(|r| r.properties.get("builtIn") == Some(&Value::Bool(true)));
    properties.insert("builtIn".to_owned(), Value::Bool(built_in));
    if built_in {
        properties.insert("type".to_owned(), Value::String("system".to_owned()));
    } else if properties.get("type").and_then(Value::as_str) == Some("system") {
        properties.insert("type".to_owned(), Value::String("custom".to_owned()));
    }
}

/// Checks across resources, once the properties are typed.
fn check(state: &State, path: &ResourcePath, existing: Option<&Resource>, typed: &Properties) -> Result<(), ApiError> {
    match typed {
        Properties::Policy(policy) => check_format(&policy.format),
        Properties::Fragment(fragment) => check_format(&fragment.format),
        Properties::Subscription(subscription) => {
            if let Some(previous) = existing.and_then(|r| r.properties.get("state")).cloned() {
                let previous: SubscriptionState = serde_json::from_value(previous).unwrap_or_default();
                if !previous.can_become(subscription.state) {
                    return Err(ApiError::validation(
                        "properties.state",
                        format!("a {} subscription cannot become {}", previous.as_str(), subscription.state.as_str()),
                    ));
                }
            }
            Ok(())
        }
        Properties::User(user) => {
            let taken = state.of_kind(Kind::User).any(|other| {
                other.path != *path
                    && other
                        .properties
                        .get("email")
                        .and_then(Value::as_str)
                        .is_some_and(|e| e.eq_ignore_ascii_case(&user.email))
            });
            if taken {
                return Err(ApiError::conflict(format!("another user has the email {}", user.email)));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_format(format: &str) -> Result<(), ApiError> {
    if POLICY_FORMATS.contains(&format) {
        Ok(())
    } else {
        Err(ApiError::validation("properties.format", format!("format must be one of {}", POLICY_FORMATS.join(", "))))
    }
}

/// Merges `patch` into `target` (RFC 7396: `null` removes, objects merge, the rest replaces).
pub(crate) fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge(target.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}
