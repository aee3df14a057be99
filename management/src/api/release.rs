//! Releasing a revision makes it current (management-reference §1.8): `PUT
//! /apis/echo/releases/r1` with `apiId: /apis/echo;rev=2` moves what `/apis/echo` held to
//! `/apis/echo;rev=1` and revision 2 to `/apis/echo`, children included, in the same change as the
//! release. `/apis/{id}` always holds the current revision; releases and the API's links stay.

use serde_json::Value;

use crate::model::relative_to_service;
use crate::resource::{ResourcePath, split_revision};
use crate::service::{State, put};
use crate::store::{Resource, Write};

/// The writes that make the revision `properties.apiId` names current, before the release's own
/// put; none when it is current already or does not exist as a separate revision.
pub(crate) fn promotion(state: &State, release: &ResourcePath, properties: &Value) -> Vec<Write> {
    let Some((api, _)) = release.api() else { return Vec::new() };
    let released = properties.get("apiId").and_then(Value::as_str).map(relative_to_service).unwrap_or_default();
    let Some(revision) = released.strip_prefix("/apis/").and_then(|id| split_revision(id).1) else {
        return Vec::new();
    };
    let current_path = format!("/apis/{api}");
    let next_path = format!("/apis/{api};rev={revision}");
    let (Some(current), Some(next)) = (state.get(&current_path), state.get(&next_path)) else { return Vec::new() };
    let current_revision = revision_of(current);
    if current_revision == revision {
        return Vec::new();
    }
    let retired_path = format!("/apis/{api};rev={current_revision}");
    let mut writes = Vec::new();
    // The current revision, children and all, moves to its ;rev= path ...
    writes.extend(at(&retired_path, with_revision(current, current_revision, false)));
    writes.extend(moved_children(state, &current_path, &retired_path));
    writes.extend(direct_children(state, &current_path).into_iter().map(|path| Write::Delete { path }));
    // ... and the released one takes its place.
    writes.extend(at(&current_path, with_revision(next, revision, true)));
    writes.extend(moved_children(state, &next_path, &current_path));
    writes.extend(ResourcePath::parse(&next_path).ok().map(|path| Write::Delete { path }));
    writes
}

fn revision_of(api: &Resource) -> u32 {
    api.properties.get("apiRevision").and_then(Value::as_str).and_then(|r| r.parse().ok()).unwrap_or(1)
}

fn with_revision(api: &Resource, revision: u32, current: bool) -> Value {
    let mut properties = api.properties.clone();
    if let Some(object) = properties.as_object_mut() {
        object.insert("apiRevision".to_owned(), Value::String(revision.to_string()));
        object.insert("isCurrent".to_owned(), Value::Bool(current));
    }
    properties
}

fn at(path: &str, properties: Value) -> Option<Write> {
    ResourcePath::parse(path).ok().map(|path| put(path, properties))
}

/// What belongs to a revision (operations, policies, schemas, tags), not to the API (releases).
fn revision_children<'a>(state: &'a State, api: &str) -> Vec<&'a Resource> {
    let below = format!("{api}/");
    let releases = format!("{api}/releases/");
    state.iter().filter(|r| r.path.as_str().starts_with(&below) && !r.path.as_str().starts_with(&releases)).collect()
}

/// Puts of `from`'s children under `to`, parents first (the state iterates in path order).
fn moved_children(state: &State, from: &str, to: &str) -> Vec<Write> {
    let mut children = revision_children(state, from);
    children.sort_by_key(|r| r.path.as_str().len());
    children
        .into_iter()
        .filter_map(|child| {
            let rest = child.path.as_str().strip_prefix(from)?;
            Some(put(ResourcePath::parse(&format!("{to}{rest}")).ok()?, child.properties.clone()))
        })
        .collect()
}

/// The direct children of `api` that belong to the revision (a delete takes their subtrees).
fn direct_children(state: &State, api: &str) -> Vec<ResourcePath> {
    let depth = api.matches('/').count() + 2;
    let children = revision_children(state, api).into_iter();
    children.filter(|r| r.path.as_str().matches('/').count() == depth).map(|r| r.path.clone()).collect()
}
