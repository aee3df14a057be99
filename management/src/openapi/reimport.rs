//! An import over an existing API, as APIM does it (management-reference §2.3): operations the
//! definition names (by resource name) are replaced in place and keep their policies, new ones
//! are created (taking the policy of a dropped operation with the same method and template), and
//! operations nothing matches are deleted with their policies. The API keeps what the definition
//! does not say (`apiVersion`, its version set, subscription settings, revision ...).

use std::collections::BTreeSet;

use serde_json::Value;

use super::ImportedApi;
use crate::model::{ApiProperties, OperationProperties};
use crate::resource::{Kind, POLICY_ID, ResourcePath};
use crate::service::{State, put};
use crate::store::Write;

/// The writes that make `/apis/{api_id}` (which may carry `;rev=N`) what `imported` describes.
/// Fails only when `api_id` is not a valid API id.
pub fn reimport_writes(
    state: &State,
    api_id: &str,
    imported: &ImportedApi,
) -> Result<Vec<Write>, crate::resource::PathError> {
    let api_path = ResourcePath::of("apis", api_id)?;
    let mut writes = vec![put(api_path.clone(), api_properties(state.get(api_path.as_str()), imported))];
    let operations_prefix = format!("{api_path}/operations/");
    let existing: Vec<(String, OperationProperties)> = state
        .under(&operations_prefix)
        .filter(|resource| resource.path.kind() == Kind::Operation)
        .filter_map(|resource| {
            let properties = serde_json::from_value(resource.properties.clone()).ok()?;
            Some((resource.path.name().to_owned(), properties))
        })
        .collect();
    let incoming: BTreeSet<&str> = imported.operations.iter().map(|(id, _)| id.as_str()).collect();
    for (id, properties) in &imported.operations {
        let path = ResourcePath::parse(&format!("{operations_prefix}{id}"))?;
        writes.push(put(path.clone(), to_json(properties)));
        if existing.iter().any(|(existing_id, _)| existing_id == id) {
            continue;
        }
        // A new operation takes the policy of a dropped one that served the same requests.
        let same = existing.iter().find(|(existing_id, old)| {
            !incoming.contains(existing_id.as_str())
                && old.method.eq_ignore_ascii_case(&properties.method)
                && old.url_template == properties.url_template
        });
        let policy =
            same.and_then(|(old_id, _)| state.get(&format!("{operations_prefix}{old_id}/policies/{POLICY_ID}")));
        if let Some(policy) = policy {
            let path = ResourcePath::parse(&format!("{path}/policies/{POLICY_ID}"))?;
            writes.push(put(path, policy.properties.clone()));
        }
    }
    let schemas_prefix = format!("{api_path}/schemas/");
    for (id, schema) in &imported.schemas {
        writes.push(put(ResourcePath::parse(&format!("{schemas_prefix}{id}"))?, to_json(schema)));
    }
    for (id, _) in existing.iter().filter(|(id, _)| !incoming.contains(id.as_str())) {
        writes.push(Write::Delete { path: ResourcePath::parse(&format!("{operations_prefix}{id}"))? });
    }
    let kept_schemas: BTreeSet<&str> = imported.schemas.iter().map(|(id, _)| id.as_str()).collect();
    for schema in state.under(&schemas_prefix).filter(|r| r.path.kind() == Kind::Schema) {
        if !kept_schemas.contains(schema.path.name()) {
            writes.push(Write::Delete { path: schema.path.clone() });
        }
    }
    Ok(writes)
}

/// The existing API with what the definition says, or the imported API when there is none.
fn api_properties(existing: Option<&crate::store::Resource>, imported: &ImportedApi) -> Value {
    let Some(mut api) = existing.and_then(|r| serde_json::from_value::<ApiProperties>(r.properties.clone()).ok())
    else {
        return to_json(&imported.api);
    };
    let new = &imported.api;
    api.display_name = new.display_name.clone();
    api.description = new.description.clone();
    if new.service_url.is_some() {
        api.service_url = new.service_url.clone();
    }
    api.terms_of_service_url = new.terms_of_service_url.clone();
    api.contact = new.contact.clone();
    api.license = new.license.clone();
    if !new.path.is_empty() {
        api.path = new.path.clone();
    }
    to_json(&api)
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    // The model's plain structs always serialise (string keys only).
    serde_json::to_value(value).unwrap_or(Value::Null)
}
