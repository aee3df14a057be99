//! APIM's JSON envelope `{id, type, name, properties}`, without secrets, and the revision view.

use serde_json::{Value, json};

use crate::model::ApiProperties;
use crate::resource::{Kind, split_revision};
use crate::store::Resource;

/// The resource as a GET returns it: secrets removed (ARM's `x-ms-secret` properties never come
/// back; `listSecrets` and `listValue` read them).
pub(crate) fn envelope(resource: &Resource) -> Value {
    let kind = resource.path.kind();
    json!({
        "id": resource.path.as_str(),
        "type": kind.arm_type(),
        "name": resource.path.name(),
        "properties": without_secrets(kind, &resource.properties),
    })
}

/// `properties` with the secret ones removed.
pub(crate) fn without_secrets(kind: Kind, properties: &Value) -> Value {
    let mut properties = properties.clone();
    let Some(object) = properties.as_object_mut() else { return properties };
    match kind {
        Kind::Subscription => {
            object.remove("primaryKey");
            object.remove("secondaryKey");
        }
        Kind::User => {
            object.remove("password");
        }
        Kind::NamedValue if object.get("secret") == Some(&Value::Bool(true)) => {
            object.insert("value".to_owned(), Value::Null);
        }
        Kind::Backend => {
            if let Some(proxy) = object.get_mut("proxy").and_then(Value::as_object_mut) {
                proxy.remove("password");
            }
        }
        _ => {}
    }
    properties
}

/// One item of `/apis/{id}/revisions` (APIM's `ApiRevisionContract`).
pub(crate) fn revision(resource: &Resource, gateway_url: &str) -> Value {
    let api: ApiProperties = serde_json::from_value(resource.properties.clone()).unwrap_or_default();
    let (id, path_revision) = split_revision(resource.path.name());
    let revision = path_revision.unwrap_or_else(|| api.revision());
    let gateway = gateway_url.trim_end_matches('/');
    let prefix = if api.path.is_empty() { String::new() } else { format!("/{}", api.path.trim_matches('/')) };
    json!({
        "apiId": format!("/apis/{id};rev={revision}"),
        "apiRevision": revision.to_string(),
        "createdDateTime": resource.created_at,
        "updatedDateTime": resource.updated_at,
        "description": api.api_revision_description,
        "privateUrl": format!("{gateway}{prefix};rev={revision}"),
        "isOnline": api.is_online.unwrap_or(true),
        "isCurrent": api.is_current.unwrap_or(path_revision.is_none()),
    })
}
