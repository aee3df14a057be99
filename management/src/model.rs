//! The `properties` of each resource kind, in APIM's JSON shape (ARM's camelCase names).
//!
//! The store keeps each resource's properties as JSON; these types are how the rest of the
//! management plane reads and checks them. Properties Portcullis does not model are kept in
//! `extra` (flattened), so a resource written through the API or imported from APIM round-trips
//! unchanged, and an import can report what it holds that nothing here acts on.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::resource::Kind;

mod api;
mod identity;
mod product;

pub use api::{
    ApiContact, ApiLicense, ApiProperties, ApiType, KeyParameterNames, OperationProperties, ParameterContract,
    ReleaseProperties, RepresentationContract, RequestContract, ResponseContract, SchemaProperties,
    VersionSetProperties, VersioningScheme,
};
pub use identity::{GroupProperties, GroupType, UserProperties, UserState};
pub use product::relative_to_service;
pub use product::{ProductProperties, ProductState, SubscriptionProperties, SubscriptionState};

/// The policy formats the store accepts (`xml-link` and `rawxml-link` would fetch a URL: not offered).
pub const POLICY_FORMATS: [&str; 2] = ["xml", "rawxml"];

/// Properties the model does not name, kept as written.
pub type Extra = Map<String, Value>;

/// A policy document at any scope (`/policies/policy`, `/apis/{id}/policies/policy` ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyProperties {
    /// The XML document.
    pub value: String,
    /// `xml` (XML escaped in JSON, the default) or `rawxml`; the store keeps the XML either way.
    #[serde(default = "policy_format_default")]
    #[schemars(extend("enum" = POLICY_FORMATS))]
    pub format: String,
}

/// A policy fragment (`/policyFragments/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FragmentProperties {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "policy_format_default")]
    #[schemars(extend("enum" = POLICY_FORMATS))]
    pub format: String,
}

/// A named value (`/namedValues/{id}`): `{{displayName}}` in policies and URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedValueProperties {
    pub display_name: String,
    /// Write-only when `secret`: never returned by a GET (read it with `listValue`).
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub secret: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A backend (`/backends/{id}`): APIM's single-URL form. Pools, health checks and the other
/// settings of the config directory's `backends/<id>.toml` are kept under `portcullis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendProperties {
    /// The backend's base URL; for a pool, the first endpoint's.
    #[serde(default)]
    pub url: String,
    #[serde(default = "backend_protocol_default")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The config directory's backend file as JSON (endpoints, load balancing, pool, health).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portcullis: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tag (`/tags/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagProperties {
    pub display_name: String,
}

/// The properties of a resource of any kind, checked against its kind's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Properties {
    Api(Box<ApiProperties>),
    Operation(Box<OperationProperties>),
    Policy(PolicyProperties),
    Release(ReleaseProperties),
    Schema(SchemaProperties),
    Product(ProductProperties),
    Subscription(Box<SubscriptionProperties>),
    User(UserProperties),
    Group(GroupProperties),
    VersionSet(VersionSetProperties),
    NamedValue(NamedValueProperties),
    Fragment(FragmentProperties),
    Backend(BackendProperties),
    Tag(TagProperties),
    /// Links carry nothing of their own.
    Link,
}

/// Why a resource's properties are not valid for its kind.
#[derive(Debug, thiserror::Error)]
#[error("invalid properties: {0}")]
pub struct PropertiesError(#[from] serde_json::Error);

impl Properties {
    /// Reads `value` as the properties of a resource of `kind`.
    pub fn from_json(kind: Kind, value: Value) -> Result<Self, PropertiesError> {
        use serde_json::from_value as from;
        Ok(match kind {
            Kind::Api => Properties::Api(Box::new(from(value)?)),
            Kind::Operation => Properties::Operation(Box::new(from(value)?)),
            Kind::ApiPolicy | Kind::OperationPolicy | Kind::ProductPolicy | Kind::GlobalPolicy => {
                Properties::Policy(from(value)?)
            }
            Kind::Release => Properties::Release(from(value)?),
            Kind::Schema => Properties::Schema(from(value)?),
            Kind::Product => Properties::Product(from(value)?),
            Kind::Subscription => Properties::Subscription(Box::new(from(value)?)),
            Kind::User => Properties::User(from(value)?),
            Kind::Group => Properties::Group(from(value)?),
            Kind::VersionSet => Properties::VersionSet(from(value)?),
            Kind::NamedValue => Properties::NamedValue(from(value)?),
            Kind::PolicyFragment => Properties::Fragment(from(value)?),
            Kind::Backend => Properties::Backend(from(value)?),
            Kind::Tag => Properties::Tag(from(value)?),
            Kind::ProductApi | Kind::ProductGroup | Kind::GroupUser | Kind::TagLink => Properties::Link,
        })
    }

    /// The properties as JSON (secrets included: the store's form, never a GET's).
    pub fn to_json(&self) -> Value {
        let value = match self {
            Properties::Api(p) => serde_json::to_value(p),
            Properties::Operation(p) => serde_json::to_value(p),
            Properties::Policy(p) => serde_json::to_value(p),
            Properties::Release(p) => serde_json::to_value(p),
            Properties::Schema(p) => serde_json::to_value(p),
            Properties::Product(p) => serde_json::to_value(p),
            Properties::Subscription(p) => serde_json::to_value(p),
            Properties::User(p) => serde_json::to_value(p),
            Properties::Group(p) => serde_json::to_value(p),
            Properties::VersionSet(p) => serde_json::to_value(p),
            Properties::NamedValue(p) => serde_json::to_value(p),
            Properties::Fragment(p) => serde_json::to_value(p),
            Properties::Backend(p) => serde_json::to_value(p),
            Properties::Tag(p) => serde_json::to_value(p),
            Properties::Link => Ok(Value::Object(Map::new())),
        };
        // Serialising these plain structs to a `Value` cannot fail (no maps with non-string keys).
        value.unwrap_or(Value::Null)
    }
}

fn policy_format_default() -> String {
    "xml".to_owned()
}

fn backend_protocol_default() -> String {
    "http".to_owned()
}

#[cfg(test)]
mod tests;
