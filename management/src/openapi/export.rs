//! APIM → OpenAPI (management-reference §2.4): the API as the gateway serves it. The server is the
//! gateway's URL plus the API's path, the subscription key is a security scheme (header and query),
//! each operation's resource name is its `operationId` and its `displayName` its `summary`.
//!
//! What an import reads back: exporting and importing again gives the same operations and schemas.
//! Two operations with the same method and path (they differ by query) cannot share a `paths`
//! entry: the second goes under `x-ms-paths` with its whole template, as APIM does.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::mapping::Flavor;
use crate::model::{ApiProperties, OperationProperties, ParameterContract, ResponseContract, SchemaProperties};

/// The OpenAPI 3 version an export declares (APIM's exports are 3.0.1).
const OPENAPI_VERSION: &str = "3.0.1";
/// `info.version` when the API has no `apiVersion` (OpenAPI requires one).
const INFO_VERSION_DEFAULT: &str = "1.0";
/// APIM's subscription key names (management-reference §1.1).
const KEY_HEADER_DEFAULT: &str = "Ocp-Apim-Subscription-Key";
const KEY_QUERY_DEFAULT: &str = "subscription-key";

/// The document an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// OpenAPI 3.0.1 as JSON (`openapi+json-link`, `application/vnd.oai.openapi+json`).
    OpenApi3Json,
    /// OpenAPI 3.0.1 as YAML (`openapi-link`, `application/vnd.oai.openapi`).
    OpenApi3Yaml,
    /// Swagger 2.0 as JSON (`swagger-link`, `application/vnd.swagger.doc+json`).
    Swagger2Json,
}

/// Writes the API, its operations (`(id, properties)`) and schemas as an OpenAPI document served
/// at `gateway_url` (`https://gateway.example.com`).
pub fn export(
    api: &ApiProperties,
    operations: &[(String, OperationProperties)],
    schemas: &[(String, SchemaProperties)],
    gateway_url: &str,
    format: ExportFormat,
) -> String {
    let flavor = if format == ExportFormat::Swagger2Json { Flavor::Swagger2 } else { Flavor::OpenApi3 };
    let exporter = Exporter { flavor };
    let document = exporter.document(api, operations, schemas, gateway_url);
    match format {
        // Serialising a `Value` cannot fail; JSON is YAML too, should it ever.
        ExportFormat::OpenApi3Yaml => serde_yaml_ng::to_string(&document).unwrap_or_else(|_| document.to_string()),
        _ => serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string()),
    }
}

struct Exporter {
    flavor: Flavor,
}

impl Exporter {
    fn document(
        &self,
        api: &ApiProperties,
        operations: &[(String, OperationProperties)],
        schemas: &[(String, SchemaProperties)],
        gateway_url: &str,
    ) -> Value {
        let base = format!("{}/{}", gateway_url.trim_end_matches('/'), api.path.trim_matches('/'));
        let base = base.trim_end_matches('/');
        let mut document = Map::new();
        match self.flavor {
            Flavor::OpenApi3 => {
                document.insert("openapi".into(), json!(OPENAPI_VERSION));
                document.insert("info".into(), info(api));
                document.insert("servers".into(), json!([{ "url": base }]));
            }
            Flavor::Swagger2 => {
                document.insert("swagger".into(), json!("2.0"));
                document.insert("info".into(), info(api));
                let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
                let (host, base_path) = rest.split_once('/').map_or((rest, ""), |(host, path)| (host, path));
                document.insert("host".into(), json!(host));
                document.insert("basePath".into(), json!(format!("/{base_path}")));
                document.insert("schemes".into(), json!([scheme]));
            }
        }
        self.paths(operations, &mut document);
        self.security(api, &mut document);
        let schemas = self.schemas(schemas);
        if !schemas.is_empty() {
            match self.flavor {
                Flavor::OpenApi3 => components(&mut document).insert("schemas".into(), Value::Object(schemas)),
                Flavor::Swagger2 => document.insert("definitions".into(), Value::Object(schemas)),
            };
        }
        Value::Object(document)
    }

    fn paths(&self, operations: &[(String, OperationProperties)], document: &mut Map<String, Value>) {
        let mut paths = Map::new();
        let mut ms_paths = Map::new();
        let mut taken = HashSet::new();
        for (id, operation) in operations {
            let template = operation.url_template.as_str();
            let path = template.split_once('?').map_or(template, |(path, _)| path);
            let method = operation.method.to_ascii_lowercase();
            let (target, key) = if taken.insert((path.to_owned(), method.clone())) {
                (&mut paths, path)
            } else {
                (&mut ms_paths, template)
            };
            let item = target.entry(key.to_owned()).or_insert_with(|| json!({}));
            if let Value::Object(item) = item {
                item.insert(method, self.operation(id, operation));
            }
        }
        document.insert("paths".into(), Value::Object(paths));
        if !ms_paths.is_empty() {
            document.insert("x-ms-paths".into(), Value::Object(ms_paths));
        }
    }

    fn operation(&self, id: &str, operation: &OperationProperties) -> Value {
        let mut out = Map::new();
        out.insert("summary".into(), json!(operation.display_name));
        if let Some(description) = &operation.description {
            out.insert("description".into(), json!(description));
        }
        out.insert("operationId".into(), json!(id));
        let query = operation.url_template.split_once('?').map_or("", |(_, query)| query);
        let mut parameters = Vec::new();
        for parameter in &operation.template_parameters {
            let in_query = query.contains(&format!("{{{}}}", parameter.name));
            let location = if in_query { "query" } else { "path" };
            parameters.push(self.parameter(parameter, location, true));
        }
        let request = operation.request.clone().unwrap_or_default();
        parameters.extend(request.query_parameters.iter().map(|p| self.parameter(p, "query", p.required)));
        parameters.extend(request.headers.iter().map(|p| self.parameter(p, "header", p.required)));
        match self.flavor {
            Flavor::OpenApi3 => self.request_body(&request, &mut out),
            Flavor::Swagger2 => self.body_parameter(&request, &mut parameters, &mut out),
        }
        if !parameters.is_empty() {
            out.insert("parameters".into(), Value::Array(parameters));
        }
        if self.flavor == Flavor::Swagger2 {
            let produces = content_types(operation.responses.iter().flat_map(|r| &r.representations));
            if !produces.is_empty() {
                out.insert("produces".into(), json!(produces));
            }
        }
        let responses = operation.responses.iter().map(|r| (r.status_code.to_string(), self.response(r)));
        out.insert("responses".into(), Value::Object(responses.collect()));
        Value::Object(out)
    }

    fn parameter(&self, parameter: &ParameterContract, location: &str, required: bool) -> Value {
        let mut out = Map::new();
        if !location.is_empty() {
            out.insert("name".into(), json!(parameter.name));
            out.insert("in".into(), json!(location));
        }
        if let Some(description) = &parameter.description {
            out.insert("description".into(), json!(description));
        }
        if required {
            out.insert("required".into(), json!(true));
        }
        let schema = self.parameter_schema(parameter);
        match self.flavor {
            Flavor::OpenApi3 => {
                out.insert("schema".into(), schema);
                if let Some(examples) = &parameter.examples {
                    out.insert("examples".into(), examples.clone());
                }
            }
            Flavor::Swagger2 => {
                if let Value::Object(schema) = schema {
                    out.extend(schema);
                }
                if let Some(example) = default_example(parameter.examples.as_ref()) {
                    out.insert("x-example".into(), example.clone());
                }
            }
        }
        Value::Object(out)
    }

    fn parameter_schema(&self, parameter: &ParameterContract) -> Value {
        if let (Some(name), Flavor::OpenApi3) = (&parameter.type_name, self.flavor) {
            return json!({ "$ref": self.reference(name) });
        }
        let kind = if parameter.parameter_type.is_empty() { "string" } else { parameter.parameter_type.as_str() };
        let mut schema = Map::new();
        schema.insert("type".into(), json!(kind));
        if !parameter.values.is_empty() {
            schema.insert("enum".into(), parameter.values.iter().map(|v| typed(kind, v)).collect());
        }
        if let Some(default) = &parameter.default_value {
            schema.insert("default".into(), typed(kind, default));
        }
        Value::Object(schema)
    }

    fn request_body(&self, request: &crate::model::RequestContract, out: &mut Map<String, Value>) {
        if request.representations.is_empty() && request.description.is_none() {
            return;
        }
        let mut body = Map::new();
        if let Some(description) = &request.description {
            body.insert("description".into(), json!(description));
        }
        body.insert("content".into(), self.content(&request.representations));
        out.insert("requestBody".into(), Value::Object(body));
    }

    /// Swagger's body parameter: the first representation's schema, `consumes` every type.
    fn body_parameter(
        &self,
        request: &crate::model::RequestContract,
        parameters: &mut Vec<Value>,
        out: &mut Map<String, Value>,
    ) {
        if request.representations.is_empty() {
            return;
        }
        out.insert("consumes".into(), json!(content_types(&request.representations)));
        let mut body = json!({ "name": "body", "in": "body" });
        if let Value::Object(body) = &mut body {
            if let Some(description) = &request.description {
                body.insert("description".into(), json!(description));
            }
            if let Some(name) = request.representations.iter().find_map(|r| r.type_name.as_ref()) {
                body.insert("schema".into(), json!({ "$ref": self.reference(name) }));
            }
        }
        parameters.push(body);
    }

    fn content(&self, representations: &[crate::model::RepresentationContract]) -> Value {
        let mut content = Map::new();
        for representation in representations {
            let mut media = Map::new();
            if let Some(name) = &representation.type_name {
                media.insert("schema".into(), json!({ "$ref": self.reference(name) }));
            }
            if let Some(examples) = &representation.examples {
                media.insert("examples".into(), examples.clone());
            }
            content.insert(representation.content_type.clone(), Value::Object(media));
        }
        Value::Object(content)
    }

    fn response(&self, response: &ResponseContract) -> Value {
        let mut out = Map::new();
        out.insert("description".into(), json!(response.description.clone().unwrap_or_default()));
        if !response.headers.is_empty() {
            let headers = response.headers.iter().map(|h| (h.name.clone(), self.parameter(h, "", h.required)));
            out.insert("headers".into(), Value::Object(headers.collect()));
        }
        match self.flavor {
            Flavor::OpenApi3 if !response.representations.is_empty() => {
                out.insert("content".into(), self.content(&response.representations));
            }
            Flavor::OpenApi3 => {}
            Flavor::Swagger2 => self.swagger_response_body(response, &mut out),
        }
        Value::Object(out)
    }

    fn swagger_response_body(&self, response: &ResponseContract, out: &mut Map<String, Value>) {
        if let Some(name) = response.representations.iter().find_map(|r| r.type_name.as_ref()) {
            out.insert("schema".into(), json!({ "$ref": self.reference(name) }));
        }
        let examples: Map<String, Value> = response
            .representations
            .iter()
            .filter_map(|r| default_example(r.examples.as_ref()).map(|e| (r.content_type.clone(), e.clone())))
            .collect();
        if !examples.is_empty() {
            out.insert("examples".into(), Value::Object(examples));
        }
    }

    /// The subscription key as a security scheme, in the header and in the query.
    fn security(&self, api: &ApiProperties, document: &mut Map<String, Value>) {
        if !api.subscription_required {
            return;
        }
        let names = api.subscription_key_parameter_names.clone().unwrap_or_default();
        let header = names.header.unwrap_or_else(|| KEY_HEADER_DEFAULT.to_owned());
        let query = names.query.unwrap_or_else(|| KEY_QUERY_DEFAULT.to_owned());
        let schemes = json!({
            "apiKeyHeader": { "type": "apiKey", "name": header, "in": "header" },
            "apiKeyQuery": { "type": "apiKey", "name": query, "in": "query" },
        });
        match self.flavor {
            Flavor::OpenApi3 => {
                components(document).insert("securitySchemes".into(), schemes);
            }
            Flavor::Swagger2 => {
                document.insert("securityDefinitions".into(), schemes);
            }
        }
        document.insert("security".into(), json!([{ "apiKeyHeader": [] }, { "apiKeyQuery": [] }]));
    }

    /// Every schema resource's schemas in one map, references rewritten for this format.
    fn schemas(&self, schemas: &[(String, SchemaProperties)]) -> Map<String, Value> {
        let mut merged = Map::new();
        for (_, schema) in schemas {
            let (found, from) = match schema.document.pointer("/components/schemas") {
                Some(found) => (found, Flavor::OpenApi3),
                None => match schema.document.get("definitions") {
                    Some(found) => (found, Flavor::Swagger2),
                    None => continue,
                },
            };
            let Some(found) = found.as_object() else { continue };
            for (name, value) in found {
                let mut value = value.clone();
                rewrite_references(&mut value, from.reference_prefix(), self.flavor.reference_prefix());
                merged.insert(name.clone(), value);
            }
        }
        merged
    }

    /// `#/components/schemas/{name}`: the name as a JSON pointer segment in a URI fragment.
    fn reference(&self, name: &str) -> String {
        let segment = name.replace('~', "~0").replace('/', "~1");
        let mut reference = self.flavor.reference_prefix().to_owned();
        for byte in segment.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
                reference.push(char::from(byte));
            } else {
                reference.push_str(&format!("%{byte:02X}"));
            }
        }
        reference
    }
}

fn info(api: &ApiProperties) -> Value {
    let mut info = Map::new();
    info.insert("title".into(), json!(api.display_name));
    if let Some(description) = &api.description {
        info.insert("description".into(), json!(description));
    }
    info.insert("version".into(), json!(api.api_version.as_deref().unwrap_or(INFO_VERSION_DEFAULT)));
    if let Some(terms) = &api.terms_of_service_url {
        info.insert("termsOfService".into(), json!(terms));
    }
    if let Some(contact) = &api.contact {
        info.insert("contact".into(), json!(contact));
    }
    if let Some(license) = &api.license {
        info.insert("license".into(), json!(license));
    }
    Value::Object(info)
}

fn components(document: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let entry = document.entry("components").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    match entry {
        Value::Object(map) => map,
        // Made an object just above.
        _ => unreachable!("components is an object"),
    }
}

/// The distinct content types of `representations`, in order.
fn content_types<'a>(
    representations: impl IntoIterator<Item = &'a crate::model::RepresentationContract>,
) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    for representation in representations {
        if !types.contains(&representation.content_type) {
            types.push(representation.content_type.clone());
        }
    }
    types
}

/// The `default` example's value (what an import made of a single `example`).
fn default_example(examples: Option<&Value>) -> Option<&Value> {
    examples?.get("default")?.get("value")
}

/// `text` as a JSON value of the parameter's `type`, when it reads as one.
fn typed(kind: &str, text: &str) -> Value {
    let parsed = match kind {
        "integer" | "number" => serde_json::from_str::<serde_json::Number>(text).ok().map(Value::Number),
        "boolean" => text.parse::<bool>().ok().map(Value::Bool),
        _ => None,
    };
    parsed.unwrap_or_else(|| json!(text))
}

/// Rewrites `$ref`s under `from` to `to` (Swagger's `#/definitions/` ↔ `#/components/schemas/`).
fn rewrite_references(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref") {
                if let Some(rest) = reference.strip_prefix(from) {
                    *reference = format!("{to}{rest}");
                }
            }
            map.values_mut().for_each(|value| rewrite_references(value, from, to));
        }
        Value::Array(items) => items.iter_mut().for_each(|value| rewrite_references(value, from, to)),
        _ => {}
    }
}
