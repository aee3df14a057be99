//! Releasing a revision makes it current (management-reference §1.8): `PUT
//! /apis/echo/releases/r1` with `apiId: /apis/echo;rev=2` moves what `/apis/echo` held to
//! `/apis/echo;rev=1` and revision 2 to `/apis/echo`, children included, in the same change as the
//! release. `/apis/{id}` always holds the current revision; releases and the API's links stay.

use serde_json::Value;

use crate::model::relative_to_service;
use crate::resource::{ResourcePath, split_revision};
use crate::service::State;
use crate::store::Write;

/// The writes that make the revision `properties.apiId` names current, before the release's own
/// put; none when it is current already or does not exist as a separate revision.
pub(crate) fn promotion(state: &State, release: &ResourcePath, properties: &Value) -> Vec<Write> {
    let Some((api, _)) = release.api() else { return Vec::new() };
    let released = properties.get("apiId").and_then(Value::as_str).map(relative_to_service).unwrap_or_default();
    let Some(revision) = released.strip_prefix("/apis/").and_then(|id| split_revision(id).1) else {
        return Vec::new();
    };
    crate::revisions::release(state, api, revision).unwrap_or_default()
}
