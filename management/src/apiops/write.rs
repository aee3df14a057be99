//! Writing an extract: the store's resources in the APIOps layout.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::layout::{
    self, API_INFORMATION, GROUP_USERS_LIST, POLICY_FILE, SPECIFICATION_JSON, SPECIFICATION_YAML, TAGS_LIST,
};
use super::{ApiOpsError, ReportKind, ReportLine};
use crate::model::{ApiProperties, OperationProperties, SchemaProperties};
use crate::openapi::{self, ExportFormat};
use crate::resource::{Kind, ResourcePath};
use crate::service::State;
use crate::store::Resource;

/// Properties an export leaves out, by collection: secrets, as the extractor leaves them out.
const SECRETS: [(&str, &[&str]); 3] =
    [("subscriptions", &["primaryKey", "secondaryKey"]), ("users", &["password"]), ("namedValues", &["value"])];

pub(super) fn export(state: &State, dir: &Path) -> Result<Vec<ReportLine>, ApiOpsError> {
    let mut writer = Writer { dir, report: Vec::new(), lists: BTreeMap::new(), apis: BTreeMap::new() };
    for resource in state.iter() {
        writer.resource(resource)?;
    }
    for (api, content) in std::mem::take(&mut writer.apis) {
        writer.specification(&api, content)?;
    }
    for (file, names) in std::mem::take(&mut writer.lists) {
        let text = serde_json::to_string_pretty(&names).unwrap_or_default();
        writer.write(&file, &text)?;
    }
    Ok(writer.report)
}

/// An API's operations and schemas, gathered for its specification.
#[derive(Default)]
struct ApiContent {
    api: Option<ApiProperties>,
    operations: Vec<(String, OperationProperties)>,
    schemas: Vec<(String, SchemaProperties)>,
}

struct Writer<'a> {
    dir: &'a Path,
    report: Vec<ReportLine>,
    /// List files (`tags.json`, `users.json`) by file, their names gathered.
    lists: BTreeMap<String, Vec<String>>,
    /// By API folder name (`echo`, `echo;rev=2`).
    apis: BTreeMap<String, ApiContent>,
}

impl Writer<'_> {
    fn resource(&mut self, resource: &Resource) -> Result<(), ApiOpsError> {
        let path = &resource.path;
        let segments: Vec<&str> = path.segments().collect();
        let properties = &resource.properties;
        match (path.kind(), segments.as_slice()) {
            (Kind::GlobalPolicy, _) => self.policy(POLICY_FILE, properties),
            (Kind::Api, ["apis", api]) => {
                self.apis.entry((*api).to_owned()).or_default().api = read(properties);
                self.information(&format!("apis/{api}/{API_INFORMATION}"), properties.clone())
            }
            (Kind::Operation, ["apis", api, _, operation]) => {
                let operation = read(properties).map(|p| ((*operation).to_owned(), p));
                self.apis.entry((*api).to_owned()).or_default().operations.extend(operation);
                Ok(())
            }
            (Kind::Schema, ["apis", api, _, schema]) => {
                let schema = read(properties).map(|p| ((*schema).to_owned(), p));
                self.apis.entry((*api).to_owned()).or_default().schemas.extend(schema);
                Ok(())
            }
            (Kind::ApiPolicy, ["apis", api, ..]) => self.policy(&format!("apis/{api}/{POLICY_FILE}"), properties),
            (Kind::OperationPolicy, ["apis", api, _, operation, ..]) => {
                self.policy(&format!("apis/{api}/operations/{operation}/{POLICY_FILE}"), properties)
            }
            (Kind::TagLink, ["apis" | "products", owner, "tags", tag]) => {
                self.list(&format!("{}/{owner}/{TAGS_LIST}", segments[0]), tag);
                Ok(())
            }
            (Kind::ProductPolicy, ["products", product, ..]) => {
                self.policy(&format!("products/{product}/{POLICY_FILE}"), properties)
            }
            (Kind::ProductApi, ["products", product, _, api]) => {
                self.write(&format!("products/{product}/apis/{api}/{}", layout::PRODUCT_API_INFORMATION), "{}")
            }
            (Kind::ProductGroup, ["products", product, _, group]) => {
                self.write(&format!("products/{product}/groups/{group}/{}", layout::PRODUCT_GROUP_INFORMATION), "{}")
            }
            (Kind::GroupUser, ["groups", group, _, user]) => {
                self.list(&format!("groups/{group}/{GROUP_USERS_LIST}"), user);
                Ok(())
            }
            (Kind::PolicyFragment, ["policyFragments", id]) => self.fragment(id, properties),
            (_, [collection, id]) => self.simple(path, collection, id, properties),
            _ => {
                let message = format!("{path}: has no place in the APIOps layout, not exported");
                self.report.push(ReportLine { file: String::new(), kind: ReportKind::NotModelled, message });
                Ok(())
            }
        }
    }

    fn write(&mut self, file: &str, text: &str) -> Result<(), ApiOpsError> {
        let path = self.dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| io(parent, source))?;
        }
        std::fs::write(&path, text).map_err(|source| io(&path, source))?;
        self.report.push(ReportLine { file: file.to_owned(), kind: ReportKind::Imported, message: "written".into() });
        Ok(())
    }

    /// An information file: the properties wrapped as ARM does.
    fn information(&mut self, file: &str, properties: Value) -> Result<(), ApiOpsError> {
        let text = serde_json::to_string_pretty(&json!({ "properties": properties })).unwrap_or_default();
        self.write(file, &text)
    }

    fn policy(&mut self, file: &str, properties: &Value) -> Result<(), ApiOpsError> {
        let value = properties.get("value").and_then(Value::as_str).unwrap_or_default().to_owned();
        self.write(file, &value)
    }

    fn list(&mut self, file: &str, name: &str) {
        self.lists.entry(file.to_owned()).or_default().push(name.to_owned());
    }

    fn fragment(&mut self, id: &str, properties: &Value) -> Result<(), ApiOpsError> {
        self.policy(&format!("policy fragments/{id}/{POLICY_FILE}"), properties)?;
        let mut information = properties.clone();
        if let Value::Object(map) = &mut information {
            map.remove("value");
        }
        self.information(&format!("policy fragments/{id}/policyFragmentInformation.json"), information)
    }

    fn simple(
        &mut self,
        path: &ResourcePath,
        collection: &str,
        id: &str,
        properties: &Value,
    ) -> Result<(), ApiOpsError> {
        let Some((folder, file)) = layout::simple_files(collection) else {
            let message = format!("{path}: has no place in the APIOps layout, not exported");
            self.report.push(ReportLine { file: String::new(), kind: ReportKind::NotModelled, message });
            return Ok(());
        };
        let file = format!("{folder}/{id}/{file}");
        let mut properties = properties.clone();
        let secret_value = collection != "namedValues" || properties.get("secret") == Some(&Value::Bool(true));
        let secrets = SECRETS.iter().find(|(name, _)| *name == collection).map(|(_, keys)| *keys).unwrap_or(&[]);
        if let (Value::Object(map), true) = (&mut properties, secret_value) {
            for key in secrets {
                if map.remove(*key).is_some() {
                    let message = format!("{key}: a secret, not written");
                    self.report.push(ReportLine { file: file.clone(), kind: ReportKind::Warning, message });
                }
            }
        }
        self.information(&file, properties)
    }

    /// `apis/{api}/specification.yaml`: the API's operations and schemas as OpenAPI 3; as
    /// Swagger 2.0 (`specification.json`) when its schemas came from Swagger, so that they read
    /// back as they are.
    fn specification(&mut self, api: &str, content: ApiContent) -> Result<(), ApiOpsError> {
        if content.operations.is_empty() && content.schemas.is_empty() {
            return Ok(());
        }
        let swagger = !content.schemas.is_empty()
            && content.schemas.iter().all(|(_, s)| s.content_type == openapi::SWAGGER_DEFINITIONS_CONTENT_TYPE);
        let (format, file) = if swagger {
            (ExportFormat::Swagger2Json, SPECIFICATION_JSON)
        } else {
            (ExportFormat::OpenApi3Yaml, SPECIFICATION_YAML)
        };
        let properties = content.api.unwrap_or_default();
        let server = properties.service_url.clone().unwrap_or_default();
        let text = openapi::export(&properties, &content.operations, &content.schemas, &server, format);
        self.write(&format!("apis/{api}/{file}"), &text)
    }
}

/// A resource's properties as its model type (a stored resource always reads: the service
/// checked it on the way in); `None` for one that does not.
fn read<T: serde::de::DeserializeOwned>(properties: &Value) -> Option<T> {
    serde_json::from_value(properties.clone()).ok()
}

fn io(path: &Path, source: std::io::Error) -> ApiOpsError {
    ApiOpsError::Io { path: path.display().to_string(), source }
}
