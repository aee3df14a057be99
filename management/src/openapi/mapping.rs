//! OpenAPI (3.x shape) → APIM: the API's properties, its operations and its schema resource
//! (management-reference §2.2).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::document::{self, Document, MediaType, Operation, Parameter, PathItem, RequestBody, Response, join, read};
use super::names::{self, OperationIds};
use super::{
    DISPLAY_NAME_CHARS_MAX, ImportError, ImportOptions, ImportedApi, OPENAPI_COMPONENTS_CONTENT_TYPE, OPERATIONS_MAX,
    QueryParameterTranslation, SCHEMA_ID, SWAGGER_DEFINITIONS_CONTENT_TYPE, Warnings,
};
use crate::model::{
    ApiProperties, OperationProperties, ParameterContract, RepresentationContract, RequestContract, ResponseContract,
    SchemaProperties,
};

/// Where the schemas live and how the schema resource is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    /// `components.schemas`, referenced as `#/components/schemas/{name}`.
    OpenApi3,
    /// `definitions`, referenced as `#/definitions/{name}`.
    Swagger2,
}

impl Flavor {
    pub(super) fn reference_prefix(self) -> &'static str {
        match self {
            Flavor::OpenApi3 => "#/components/schemas/",
            Flavor::Swagger2 => "#/definitions/",
        }
    }

    fn schema_resource(self, schemas: Map<String, Value>) -> SchemaProperties {
        match self {
            Flavor::OpenApi3 => SchemaProperties {
                content_type: OPENAPI_COMPONENTS_CONTENT_TYPE.to_owned(),
                document: json!({ "components": { "schemas": schemas } }),
            },
            Flavor::Swagger2 => SchemaProperties {
                content_type: SWAGGER_DEFINITIONS_CONTENT_TYPE.to_owned(),
                document: json!({ "definitions": schemas }),
            },
        }
    }
}

/// Top-level keys the mapping reads through other means: the version (and, for Swagger 2.0,
/// `definitions`, see [`Flavor::Swagger2`]).
const TOP_LEVEL_READ: [&str; 2] = ["openapi", "swagger"];
/// Methods whose request body APIM drops.
const BODILESS_METHODS: [&str; 3] = ["GET", "HEAD", "OPTIONS"];

/// Maps a 3.x-shaped document.
pub(super) fn map(
    value: &Value,
    flavor: Flavor,
    options: &ImportOptions,
    warnings: &mut Warnings,
) -> Result<ImportedApi, ImportError> {
    let mut parsed: Document = read(value, "")?;
    let schemas = match flavor {
        Flavor::OpenApi3 => std::mem::take(&mut parsed.components.schemas),
        Flavor::Swagger2 => value.get("definitions").and_then(Value::as_object).cloned().unwrap_or_default(),
    };
    let mut mapper = Mapper {
        document: value,
        flavor,
        options,
        warnings,
        schemas,
        hoisted: HashMap::new(),
        ids: OperationIds::default(),
    };
    let api = mapper.api(&parsed)?;
    mapper.warn_top_level(&parsed);
    let mut operations = Vec::new();
    for (key, path, item) in document::paths(value)? {
        mapper.path_item(key, path, item, &mut operations)?;
    }
    let schemas = if mapper.schemas.is_empty() {
        Vec::new()
    } else {
        vec![(SCHEMA_ID.to_owned(), flavor.schema_resource(std::mem::take(&mut mapper.schemas)))]
    };
    Ok(ImportedApi { api, operations, schemas, warnings: Vec::new() })
}

struct Mapper<'a> {
    document: &'a Value,
    flavor: Flavor,
    options: &'a ImportOptions,
    warnings: &'a mut Warnings,
    /// The schema resource's schemas: the definition's, then those hoisted out of operations.
    schemas: Map<String, Value>,
    /// Hoisted schemas by operation, status and JSON text: one schema serves every content type
    /// of a body.
    hoisted: HashMap<(String, String), String>,
    ids: OperationIds,
}

impl Mapper<'_> {
    fn api(&mut self, parsed: &Document) -> Result<ApiProperties, ImportError> {
        // Through serde, so that the defaults are APIM's (protocols, subscriptionRequired).
        let mut api: ApiProperties = read(&json!({ "path": self.options.path }), "")?;
        let info = &parsed.info;
        api.display_name = names::truncate_chars(info.title.trim(), DISPLAY_NAME_CHARS_MAX);
        api.description = info.description.clone().filter(|text| !text.is_empty());
        api.terms_of_service_url = info.terms_of_service.clone();
        api.contact = self.optional(info.contact.as_ref(), "info.contact");
        api.license = self.optional(info.license.as_ref(), "info.license");
        self.warn_other(&info.other, "info", &["version"]);
        api.service_url = match &self.options.service_url {
            Some(url) => Some(url.clone()),
            None => self.service_url(parsed),
        };
        Ok(api)
    }

    /// `value` as `T`, or a warning (a malformed contact is not worth refusing the import).
    fn optional<T: serde::de::DeserializeOwned>(&mut self, value: Option<&Value>, at: &str) -> Option<T> {
        let value = value?;
        match T::deserialize(value) {
            Ok(read) => Some(read),
            Err(error) => {
                self.warnings.push(at, format!("not kept: {error}"));
                None
            }
        }
    }

    /// The first HTTPS server, its variables set to their defaults.
    fn service_url(&mut self, parsed: &Document) -> Option<String> {
        for (index, server) in parsed.servers.iter().enumerate() {
            self.warn_other(&server.other, &format!("servers.{index}"), &[]);
        }
        let urls = parsed.servers.iter().map(|server| {
            server.variables.iter().fold(server.url.clone(), |url, (name, variable)| {
                let default = variable.get("default").and_then(Value::as_str).unwrap_or_default();
                url.replace(&format!("{{{name}}}"), default)
            })
        });
        let mut urls = urls.collect::<Vec<_>>().into_iter();
        let https = urls.find(|url| url.len() > 8 && url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")));
        if https.is_none() && !parsed.servers.is_empty() {
            self.warnings.push("servers", "no absolute HTTPS server: the API's serviceUrl is left empty");
        }
        https
    }

    fn warn_top_level(&mut self, parsed: &Document) {
        let read: &[&str] = match self.flavor {
            Flavor::OpenApi3 => &TOP_LEVEL_READ,
            Flavor::Swagger2 => &["openapi", "swagger", "definitions"],
        };
        self.warn_other(&parsed.other, "", read);
        for key in parsed.components.other.keys() {
            let message = match key.as_str() {
                "parameters" | "requestBodies" | "responses" | "headers" | "examples" => {
                    "resolved where referenced; not kept as a component"
                }
                _ => dropped_reason(key),
            };
            self.warnings.push(join("components", key), message);
        }
    }

    /// Warns about every key of `other` not in `read`.
    fn warn_other(&mut self, other: &Map<String, Value>, at: &str, read: &[&str]) {
        for key in other.keys().filter(|key| !read.contains(&key.as_str())) {
            self.warnings.push(join(at, key), dropped_reason(key));
        }
    }

    fn path_item(
        &mut self,
        key: &str,
        path: &str,
        item: &Value,
        operations: &mut Vec<(String, OperationProperties)>,
    ) -> Result<(), ImportError> {
        let at = join(key, path);
        if !path.starts_with('/') {
            return Err(ImportError::Invalid { at, message: "a path must start with '/'".to_owned() });
        }
        if let Err(message) = names::check_template(path) {
            return Err(ImportError::Invalid { at, message: message.to_owned() });
        }
        let item: PathItem = read(document::resolve(self.document, item, &at)?, &at)?;
        self.warn_other(&item.other, &at, &[]);
        for (method, operation) in item.operations() {
            let Some(operation) = operation else { continue };
            if operations.len() == OPERATIONS_MAX {
                return Err(ImportError::TooManyOperations);
            }
            let at = join(&at, &method.to_ascii_lowercase());
            operations.push(self.operation(path, method, operation, &item.parameters, &at)?);
        }
        Ok(())
    }

    fn operation(
        &mut self,
        path: &str,
        method: &str,
        value: &Value,
        shared: &[Value],
        at: &str,
    ) -> Result<(String, OperationProperties), ImportError> {
        let operation: Operation = read(document::resolve(self.document, value, at)?, at)?;
        self.warn_other(&operation.other, at, &[]);
        let id = self.operation_id(operation.operation_id.as_deref(), method, path, at)?;
        let parameters = self.parameters(shared, &operation.parameters, at)?;
        let mut properties = OperationProperties {
            display_name: display_name(&operation, &id),
            method: method.to_owned(),
            description: operation.description.clone().filter(|text| !text.is_empty()),
            ..OperationProperties::default()
        };
        let mut request = RequestContract::default();
        self.template(path, parameters, &mut properties, &mut request, at);
        if let Some(body) = &operation.request_body {
            self.request_body(body, method, &id, &mut request, &join(at, "requestBody"))?;
        }
        if request != RequestContract::default() {
            properties.request = Some(request);
        }
        for (status, response) in &operation.responses {
            let at = join(&join(at, "responses"), status);
            if let Some(response) = self.response(status, response, &id, &at)? {
                properties.responses.push(response);
            }
        }
        Ok((id, properties))
    }

    fn operation_id(&mut self, given: Option<&str>, method: &str, path: &str, at: &str) -> Result<String, ImportError> {
        let normalized = given.map(names::normalize_operation_id).filter(|id| !id.is_empty());
        let base = normalized.unwrap_or_else(|| names::generated_operation_id(method, path));
        // A path of only punctuation (`/`) still names its method.
        let base = if base.is_empty() { method.to_ascii_lowercase() } else { base };
        self.ids.claim(&base).ok_or_else(|| ImportError::DuplicateOperationIds { at: at.to_owned(), id: base })
    }

    /// The path item's and the operation's parameters, the operation's replacing the path's
    /// of the same name and location.
    fn parameters(&mut self, shared: &[Value], own: &[Value], at: &str) -> Result<Vec<Parameter>, ImportError> {
        let mut merged: Vec<Parameter> = Vec::new();
        for (index, value) in shared.iter().chain(own).enumerate() {
            let at = join(&join(at, "parameters"), &index.to_string());
            let parameter: Parameter = read(document::resolve(self.document, value, &at)?, &at)?;
            if parameter.name.is_empty() {
                return Err(ImportError::Invalid { at, message: "a parameter needs a name".to_owned() });
            }
            merged.retain(|p| p.name != parameter.name || p.location != parameter.location);
            merged.push(parameter);
        }
        Ok(merged)
    }

    /// The URL template, its parameters, and the request's query parameters and headers.
    fn template(
        &mut self,
        path: &str,
        parameters: Vec<Parameter>,
        properties: &mut OperationProperties,
        request: &mut RequestContract,
        at: &str,
    ) {
        let (path_part, query_part) = path.split_once('?').unwrap_or((path, ""));
        let in_path: Vec<String> = names::template_names(path_part).into_iter().map(str::to_owned).collect();
        let in_query: Vec<String> = names::template_names(query_part).into_iter().map(str::to_owned).collect();
        let mut template = path.to_owned();
        let mut appended = Vec::new();
        for parameter in parameters {
            let at = join(&join(at, "parameters"), &parameter.name);
            let contract = self.parameter(&parameter, &at);
            match parameter.location.as_str() {
                "path" if in_path.contains(&parameter.name) => properties.template_parameters.push(contract),
                "path" => self.warnings.push(at, "a path parameter not in the path: dropped"),
                "query" if in_query.contains(&parameter.name) => properties.template_parameters.push(contract),
                "query" if parameter.required && self.translate_required() => {
                    if in_path.contains(&parameter.name) {
                        let message = "has the name of a path parameter: kept as a query parameter";
                        self.warnings.push(at, message);
                        request.query_parameters.push(contract);
                    } else if !names::is_template_name(&parameter.name) {
                        let message = "a name that cannot stand in a URL template: kept as a query parameter";
                        self.warnings.push(at, message);
                        request.query_parameters.push(contract);
                    } else {
                        appended.push(parameter.name.clone());
                        properties.template_parameters.push(contract);
                    }
                }
                "query" => request.query_parameters.push(contract),
                "header" => request.headers.push(contract),
                "cookie" => self.warnings.push(at, "cookie parameters are not supported: dropped"),
                other => self.warnings.push(at, format!("unknown parameter location {other:?}: dropped")),
            }
        }
        for name in &appended {
            let separator = if template.contains('?') { '&' } else { '?' };
            template.push_str(&format!("{separator}{name}={{{name}}}"));
        }
        self.undeclared(&in_path.iter().chain(&in_query).cloned().collect::<Vec<_>>(), properties, at);
        properties.url_template = template;
    }

    fn translate_required(&self) -> bool {
        self.options.required_query_parameters == QueryParameterTranslation::Template
    }

    /// Template names no parameter declares become required strings (APIM's templateParameters
    /// cover every `{name}`).
    fn undeclared(&mut self, names: &[String], properties: &mut OperationProperties, at: &str) {
        for name in names {
            if !properties.template_parameters.iter().any(|p| &p.name == name) {
                self.warnings.push(join(at, name), "a template parameter nothing declares: a required string");
                let contract = ParameterContract {
                    name: name.clone(),
                    parameter_type: "string".to_owned(),
                    required: true,
                    ..ParameterContract::default()
                };
                properties.template_parameters.push(contract);
            }
        }
    }

    fn parameter(&mut self, parameter: &Parameter, at: &str) -> ParameterContract {
        self.warn_other(&parameter.other, at, &[]);
        let mut contract = ParameterContract {
            name: parameter.name.clone(),
            description: parameter.description.clone().filter(|text| !text.is_empty()),
            required: parameter.required,
            examples: self.examples(parameter.example.as_ref(), parameter.examples.as_ref()),
            ..ParameterContract::default()
        };
        self.describe_type(parameter.schema.as_ref(), &mut contract);
        contract
    }

    /// `type`, `values`, `defaultValue` and (for a reference) `typeName` from a parameter's schema.
    fn describe_type(&mut self, schema: Option<&Value>, contract: &mut ParameterContract) {
        contract.parameter_type = "string".to_owned();
        let Some(schema) = schema else { return };
        let target = match self.component_name(schema) {
            Some(name) => {
                contract.schema_id = Some(SCHEMA_ID.to_owned());
                contract.type_name = Some(name.clone());
                self.schemas.get(&name).cloned().unwrap_or(Value::Null)
            }
            None => schema.clone(),
        };
        if let Some(kind) = schema_type(&target) {
            contract.parameter_type = kind;
        }
        if let Some(values) = target.get("enum").and_then(Value::as_array) {
            contract.values = values.iter().map(value_text).collect();
        }
        contract.default_value = target.get("default").map(value_text);
    }

    /// The component a schema is exactly a reference to (`{$ref: "#/components/schemas/Pet"}`).
    fn component_name(&self, schema: &Value) -> Option<String> {
        let map = schema.as_object()?;
        let reference = map.get("$ref")?.as_str()?;
        let name = reference.strip_prefix(self.flavor.reference_prefix())?;
        let segment = document::percent_decode(name);
        // One pointer segment: a reference into a schema (`Pet/properties/id`) is not a component.
        if segment.contains('/') {
            return None;
        }
        let name = segment.replace("~1", "/").replace("~0", "~");
        (map.len() == 1 && self.schemas.contains_key(&name)).then_some(name)
    }

    /// APIM's examples: the `examples` map (references resolved), or `example` as `default`.
    fn examples(&mut self, example: Option<&Value>, examples: Option<&Map<String, Value>>) -> Option<Value> {
        if let Some(examples) = examples {
            let resolved = examples.iter().map(|(name, value)| {
                let value = document::resolve(self.document, value, "examples").unwrap_or(value);
                (name.clone(), value.clone())
            });
            return Some(Value::Object(resolved.collect()));
        }
        example.map(|value| json!({ "default": { "value": value } }))
    }

    fn request_body(
        &mut self,
        value: &Value,
        method: &str,
        id: &str,
        request: &mut RequestContract,
        at: &str,
    ) -> Result<(), ImportError> {
        if BODILESS_METHODS.contains(&method) {
            self.warnings.push(at, format!("a body on {method}: dropped (APIM)"));
            return Ok(());
        }
        let body: RequestBody = read(document::resolve(self.document, value, at)?, at)?;
        self.warn_other(&body.other, at, &["required"]);
        request.description = body.description.filter(|text| !text.is_empty());
        for (content_type, media) in &body.content {
            let at = join(&join(at, "content"), content_type);
            let parts = [id, content_type, "Request"];
            request.representations.push(self.representation(content_type, media, &parts, &at)?);
        }
        Ok(())
    }

    fn response(
        &mut self,
        status: &str,
        value: &Value,
        id: &str,
        at: &str,
    ) -> Result<Option<ResponseContract>, ImportError> {
        let Some(status_code) = status.parse::<u16>().ok().filter(|code| (100..=599).contains(code)) else {
            self.warnings.push(at, "not a status code (default and ranges are not imported): dropped");
            return Ok(None);
        };
        let response: Response = read(document::resolve(self.document, value, at)?, at)?;
        self.warn_other(&response.other, at, &[]);
        let mut contract = ResponseContract {
            status_code,
            description: response.description.filter(|text| !text.is_empty()),
            ..ResponseContract::default()
        };
        for (name, header) in &response.headers {
            let at = join(&join(at, "headers"), name);
            let mut header: Parameter = read(document::resolve(self.document, header, &at)?, &at)?;
            header.name = name.clone();
            contract.headers.push(self.parameter(&header, &at));
        }
        for (content_type, media) in &response.content {
            let at = join(&join(at, "content"), content_type);
            let parts = [id, status, content_type, "Response"];
            contract.representations.push(self.representation(content_type, media, &parts, &at)?);
        }
        Ok(Some(contract))
    }

    fn representation(
        &mut self,
        content_type: &str,
        media: &Value,
        parts: &[&str],
        at: &str,
    ) -> Result<RepresentationContract, ImportError> {
        let media: MediaType = read(document::resolve(self.document, media, at)?, at)?;
        self.warn_other(&media.other, at, &[]);
        let mut representation = RepresentationContract {
            content_type: content_type.to_owned(),
            examples: self.examples(media.example.as_ref(), media.examples.as_ref()),
            ..RepresentationContract::default()
        };
        if let Some(schema) = &media.schema {
            representation.schema_id = Some(SCHEMA_ID.to_owned());
            representation.type_name = Some(self.schema_name(schema, parts, at)?);
        }
        Ok(representation)
    }

    /// The schema's name in the schema resource: the component it references, or a new one
    /// holding it (APIM keeps no inline schema on an operation).
    fn schema_name(&mut self, schema: &Value, parts: &[&str], at: &str) -> Result<String, ImportError> {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if document::pointer(self.document, reference).is_none() {
                let reference = reference.to_owned();
                return Err(ImportError::BrokenReference { at: join(at, "schema"), reference });
            }
        }
        if let Some(name) = self.component_name(schema) {
            return Ok(name);
        }
        // The parts without the content type (always second to last): the operation and status.
        let content_type_at = parts.len().saturating_sub(2);
        let owner: Vec<&str> =
            parts.iter().enumerate().filter(|(index, _)| *index != content_type_at).map(|(_, part)| *part).collect();
        let owner = owner.join("/");
        let key = (owner, schema.to_string());
        if let Some(name) = self.hoisted.get(&key) {
            return Ok(name.clone());
        }
        let base = names::hoisted_schema_name(parts);
        let mut name = base.clone();
        let mut suffix = 1;
        while self.schemas.contains_key(&name) {
            suffix += 1;
            name = format!("{base}{suffix}");
        }
        self.schemas.insert(name.clone(), schema.clone());
        self.hoisted.insert(key, name.clone());
        Ok(name)
    }
}

fn display_name(operation: &Operation, id: &str) -> String {
    let summary = operation.summary.as_deref().map(str::trim).filter(|text| !text.is_empty());
    let given = operation.operation_id.as_deref().map(str::trim).filter(|text| !text.is_empty());
    names::truncate_chars(summary.or(given).unwrap_or(id), DISPLAY_NAME_CHARS_MAX)
}

/// A schema's `type`; of a 3.1 type list, the first that is not `null`.
fn schema_type(schema: &Value) -> Option<String> {
    match schema.get("type")? {
        Value::String(kind) => Some(kind.clone()),
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).find(|kind| *kind != "null").map(str::to_owned),
        _ => None,
    }
}

/// A JSON value as APIM's string fields hold it (`"10"`, `"true"`, `"available"`).
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Why a key the mapping does not read is dropped.
fn dropped_reason(key: &str) -> &'static str {
    match key {
        _ if key.starts_with("x-") => "extension: not kept (only x-ms-paths is read)",
        "security" | "securitySchemes" | "securityDefinitions" => {
            "not kept: authentication is written as policy (validate-jwt, subscription keys)"
        }
        "externalDocs" => "not kept: external documentation",
        "tags" => "not kept: tags are resources of their own (/tags, /apis/{id}/tags)",
        "callbacks" => "not supported: callbacks are dropped",
        "webhooks" => "not supported: webhooks are dropped",
        "links" => "not supported: links are dropped",
        "servers" => "not kept: an API has one backend URL (the document's first HTTPS server)",
        "trace" => "not imported: TRACE operations are dropped (APIM)",
        "style" | "explode" | "allowEmptyValue" | "allowReserved" | "collectionFormat" => {
            "not kept: query arrays are read as form with explode=true (APIM)"
        }
        "encoding" => "not kept: multipart encoding",
        "deprecated" => "not kept: deprecation",
        _ => "not kept",
    }
}
