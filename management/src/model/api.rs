//! APIs, their operations, schemas and releases, and version sets (management-reference §1.1, §1.2,
//! §1.7, §1.8).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Extra;

/// `properties` of `/apis/{apiId}` (and `/apis/{apiId};rev=N`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiProperties {
    #[serde(default)]
    pub display_name: String,
    /// The public path prefix (`""` mounts the API at the root).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The backend base URL; absent when `backendId` names a backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_url: Option<String>,
    /// Portcullis: the named backend that serves the API (APIM writes `set-backend-service` in policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
    /// Portcullis: send the client's `Host` to the backend.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preserve_host: bool,
    #[serde(default = "protocols_default")]
    pub protocols: Vec<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub api_type: Option<ApiType>,
    #[serde(default = "true_default")]
    pub subscription_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_key_parameter_names: Option<KeyParameterNames>,
    /// This resource's revision number ("1" when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_revision_description: Option<String>,
    /// Read-only in APIM: whether this revision is the current one (`/apis/{id}` is always current).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_current: Option<bool>,
    /// Whether the revision answers (an offline revision is 404 even with `;rev=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_online: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version_description: Option<String>,
    /// `/apiVersionSets/{id}` (APIM writes the full ARM id; the last segment counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version_set_id: Option<String>,
    /// The API this revision or clone was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_api_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<ApiContact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<ApiLicense>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ApiProperties {
    /// The revision number this resource holds.
    pub fn revision(&self) -> u32 {
        self.api_revision.as_deref().and_then(|text| text.parse().ok()).unwrap_or(1)
    }

    /// The id of the API's version set (the last segment of `apiVersionSetId`).
    pub fn version_set(&self) -> Option<&str> {
        self.api_version_set_id.as_deref().and_then(|id| id.rsplit('/').next()).filter(|id| !id.is_empty())
    }
}

/// `type` of an API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiType {
    Http,
    Soap,
    Websocket,
    Graphql,
    Odata,
    Grpc,
}

/// `subscriptionKeyParameterNames`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyParameterNames {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiContact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiLicense {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `properties` of `/apis/{apiId}/operations/{operationId}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationProperties {
    #[serde(default)]
    pub display_name: String,
    /// `GET`, `POST` ... (any token), or `*` (Portcullis: any method).
    pub method: String,
    /// `/customers/{cid}/orders?date={date}`.
    pub url_template: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_parameters: Vec<ParameterContract>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestContract>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<ResponseContract>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A parameter of a URL template, query or header.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParameterContract {
    pub name: String,
    #[serde(rename = "type", default)]
    pub parameter_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    /// `{name: {summary, description, value, externalValue}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `request` of an operation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestContract {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_parameters: Vec<ParameterContract>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ParameterContract>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub representations: Vec<RepresentationContract>,
}

/// One of an operation's `responses`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContract {
    pub status_code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ParameterContract>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub representations: Vec<RepresentationContract>,
}

/// A body's representation: its media type, schema and examples.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepresentationContract {
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub form_parameters: Vec<ParameterContract>,
    /// `{name: {summary, description, value, externalValue}}`; `default`'s value is what
    /// `mock-response` returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<Value>,
}

/// `properties` of `/apis/{apiId}/schemas/{schemaId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaProperties {
    /// `application/vnd.oai.openapi.components+json` (OpenAPI 3) or
    /// `application/vnd.ms-azure-apim.swagger.definitions+json` (Swagger 2).
    pub content_type: String,
    /// `{components}` or `{definitions}` (or `{value}` for a text schema).
    pub document: Value,
}

/// `properties` of `/apis/{apiId}/releases/{releaseId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseProperties {
    /// `/apis/{apiId};rev=N`: the revision this release made current.
    pub api_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_date_time: Option<String>,
}

/// `properties` of `/apiVersionSets/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionSetProperties {
    pub display_name: String,
    pub versioning_scheme: VersioningScheme,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_query_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Where a version set reads the version from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum VersioningScheme {
    Segment,
    Query,
    Header,
}

fn protocols_default() -> Vec<String> {
    vec!["https".to_owned()]
}

fn true_default() -> bool {
    true
}
