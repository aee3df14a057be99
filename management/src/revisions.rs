//! Revisions and releases as changes of the store (management-reference §1.8).
//!
//! `/apis/{id}` is always the current revision; other revisions live at `/apis/{id};rev=N`
//! with their own operations and policies. A *revision* is made by copying the current one; a
//! *release* makes a revision current by swapping the two sets of resources in one change, so
//! the data plane moves from one to the other in one snapshot (requests in flight finish on the
//! snapshot they started on).

use serde_json::Value;

use crate::resource::{Kind, ResourcePath, split_revision};
use crate::service::State;
use crate::store::{Origin, Resource, Write};

/// Why a revision or release cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevisionError {
    #[error("API {0:?} does not exist")]
    NoApi(String),
    #[error("revision {revision} of API {api:?} does not exist")]
    NoRevision { api: String, revision: u32 },
    #[error("revision {revision} of API {api:?} exists already")]
    Exists { api: String, revision: u32 },
}

/// The writes that create revision `revision` of `api` as a copy of its current revision
/// (operations, policies, schemas and tags; releases stay with the API).
pub fn create(state: &State, api: &str, revision: u32, description: Option<&str>) -> Result<Vec<Write>, RevisionError> {
    let current = format!("/apis/{api}");
    let Some(current_api) = state.get(&current) else { return Err(RevisionError::NoApi(api.to_owned())) };
    let target = format!("/apis/{api};rev={revision}");
    if state.get(&target).is_some() || revision_number(current_api) == revision {
        return Err(RevisionError::Exists { api: api.to_owned(), revision });
    }
    let mut writes = Vec::new();
    for resource in family(state, &current) {
        let mut properties = resource.properties.clone();
        if resource.path.as_str() == current {
            set(&mut properties, "apiRevision", Value::from(revision.to_string()));
            set(&mut properties, "isCurrent", Value::Bool(false));
            set(&mut properties, "sourceApiId", Value::from(current.clone()));
            if let Some(description) = description {
                set(&mut properties, "apiRevisionDescription", Value::from(description));
            }
        }
        writes.extend(moved(resource, &current, &target, properties, Origin::Store));
    }
    Ok(writes)
}

/// The writes that make revision `revision` of `api` current: the current revision moves to
/// `/apis/{api};rev={its number}` and revision `revision` to `/apis/{api}`, children included.
/// Releasing the current revision changes nothing.
pub fn release(state: &State, api: &str, revision: u32) -> Result<Vec<Write>, RevisionError> {
    let current = format!("/apis/{api}");
    let Some(current_api) = state.get(&current) else { return Err(RevisionError::NoApi(api.to_owned())) };
    let old_number = revision_number(current_api);
    if old_number == revision {
        return Ok(Vec::new());
    }
    let released = format!("/apis/{api};rev={revision}");
    if state.get(&released).is_none() {
        return Err(RevisionError::NoRevision { api: api.to_owned(), revision });
    }
    let retired = format!("/apis/{api};rev={old_number}");
    let mut writes = Vec::new();
    let old_family: Vec<&Resource> = family(state, &current).collect();
    let new_family: Vec<&Resource> = family(state, &released).collect();
    for resource in &old_family {
        let mut properties = resource.properties.clone();
        if resource.path.as_str() == current {
            set(&mut properties, "isCurrent", Value::Bool(false));
        }
        writes.extend(moved(resource, &current, &retired, properties, Origin::Store));
    }
    for resource in &new_family {
        let mut properties = resource.properties.clone();
        if resource.path.as_str() == released {
            set(&mut properties, "isCurrent", Value::Bool(true));
            // The current revision is always online.
            if let Value::Object(map) = &mut properties {
                map.remove("isOnline");
            }
        }
        writes.extend(moved(resource, &released, &current, properties, Origin::Store));
    }
    // What the old current had and the released revision has not goes (it lives on under `retired`).
    let kept: std::collections::HashSet<String> =
        new_family.iter().map(|r| rebase(r.path.as_str(), &released, &current)).collect();
    for resource in old_family.iter().filter(|r| !kept.contains(r.path.as_str())) {
        writes.push(Write::Delete { path: resource.path.clone() });
    }
    for resource in new_family.iter().rev() {
        writes.push(Write::Delete { path: resource.path.clone() });
    }
    Ok(writes)
}

/// The number of the revision a resource of kind API holds ("1" when unset).
pub fn revision_number(api: &Resource) -> u32 {
    api.properties.get("apiRevision").and_then(Value::as_str).and_then(|text| text.parse().ok()).unwrap_or(1)
}

/// The revisions of `api` (current first), as `(number, path)`.
pub fn revisions<'a>(state: &'a State, api: &str) -> Vec<(u32, &'a Resource)> {
    let mut list = Vec::new();
    if let Some(current) = state.get(&format!("/apis/{api}")) {
        list.push((revision_number(current), current));
    }
    let prefix = format!("/apis/{api};rev=");
    for resource in state.under(&prefix).filter(|r| r.path.kind() == Kind::Api) {
        if let (_, Some(number)) = split_revision(resource.path.name()) {
            list.push((number, resource));
        }
    }
    list
}

/// An API resource and everything below it except its releases (which stay with the API id).
fn family<'a>(state: &'a State, api_path: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
    let below = format!("{api_path}/");
    let releases = format!("{api_path}/releases/");
    state.get(api_path).into_iter().chain(
        state.iter().filter(move |r| r.path.as_str().starts_with(&below) && !r.path.as_str().starts_with(&releases)),
    )
}

fn moved(resource: &Resource, from: &str, to: &str, properties: Value, origin: Origin) -> Option<Write> {
    let path = ResourcePath::parse(&rebase(resource.path.as_str(), from, to)).ok()?;
    Some(Write::Put { path, properties, origin })
}

fn rebase(path: &str, from: &str, to: &str) -> String {
    format!("{to}{}", &path[from.len()..])
}

fn set(properties: &mut Value, key: &str, value: Value) {
    if let Value::Object(map) = properties {
        map.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests;
