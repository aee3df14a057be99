//! Swagger 2.0 → the 3.x shape the mapping reads: `host`/`basePath`/`schemes` become `servers`,
//! a `body` parameter a `requestBody` (one content type per `consumes`), a response's `schema`
//! its `content` (per `produces`), and parameter types a `schema`. `definitions` stay where they
//! are (the schema resource keeps them as Swagger's). `formData` parameters are dropped (APIM).

use serde_json::{Map, Value, json};

use super::document::{self, join};
use super::{ImportError, Warnings};

/// Top-level keys consumed here; every other key goes on for the mapping to read or report.
const CONSUMED: [&str; 8] =
    ["swagger", "host", "basePath", "schemes", "consumes", "produces", "parameters", "responses"];
/// A parameter's keys that describe its value: they move into its `schema`.
const SCHEMA_KEYS: [&str; 16] = [
    "type",
    "format",
    "items",
    "enum",
    "default",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
];
/// The media type of a body when neither the operation nor the document says (`consumes`).
const MEDIA_TYPE_DEFAULT: &str = "application/json";
/// Operation methods of a path item.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Rewrites a Swagger 2.0 document into the 3.x shape.
pub(super) fn upgrade(source: Value, warnings: &mut Warnings) -> Result<Value, ImportError> {
    let Value::Object(top) = &source else { return Err(ImportError::NotOpenApi) };
    let mut out: Map<String, Value> =
        top.iter().filter(|(key, _)| !CONSUMED.contains(&key.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    out.insert("servers".to_owned(), Value::Array(servers(top)));
    for key in ["parameters", "responses"] {
        if top.contains_key(key) {
            warnings.push(key, "resolved where referenced; not kept as a component");
        }
    }
    let media = |key: &str| media_types(top.get(key));
    let upgrader = Upgrader { document: &source, consumes: media("consumes"), produces: media("produces") };
    for key in ["paths", "x-ms-paths"] {
        if let Some(Value::Object(paths)) = top.get(key) {
            let mut upgraded = Map::new();
            for (path, item) in paths {
                let at = join(key, path);
                upgraded.insert(path.clone(), upgrader.path_item(item, &at, warnings)?);
            }
            out.insert(key.to_owned(), Value::Object(upgraded));
        }
    }
    Ok(Value::Object(out))
}

/// `scheme://host/basePath` for each scheme, HTTPS first (no scheme listed: HTTPS).
fn servers(top: &Map<String, Value>) -> Vec<Value> {
    let Some(host) = top.get("host").and_then(Value::as_str) else { return Vec::new() };
    let base = top.get("basePath").and_then(Value::as_str).unwrap_or_default();
    let base = base.trim_end_matches('/');
    let mut schemes: Vec<&str> = top
        .get("schemes")
        .and_then(Value::as_array)
        .map(|schemes| schemes.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| vec!["https"]);
    schemes.sort_by_key(|scheme| !scheme.eq_ignore_ascii_case("https"));
    schemes.iter().map(|scheme| json!({ "url": format!("{scheme}://{host}{base}") })).collect()
}

fn media_types(value: Option<&Value>) -> Option<Vec<String>> {
    value?.as_array().map(|types| types.iter().filter_map(Value::as_str).map(str::to_owned).collect())
}

struct Upgrader<'a> {
    document: &'a Value,
    consumes: Option<Vec<String>>,
    produces: Option<Vec<String>>,
}

impl Upgrader<'_> {
    fn path_item(&self, item: &Value, at: &str, warnings: &mut Warnings) -> Result<Value, ImportError> {
        let item = document::resolve(self.document, item, at)?;
        let Value::Object(item) = item else { return Ok(item.clone()) };
        let shared = item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut out = Map::new();
        for (key, value) in item {
            if METHODS.contains(&key.as_str()) && key != "trace" {
                out.insert(key.clone(), self.operation(value, &shared, &join(at, key), warnings)?);
            } else if key != "parameters" {
                out.insert(key.clone(), value.clone());
            }
        }
        Ok(Value::Object(out))
    }

    fn operation(
        &self,
        value: &Value,
        shared: &[Value],
        at: &str,
        warnings: &mut Warnings,
    ) -> Result<Value, ImportError> {
        let Value::Object(operation) = document::resolve(self.document, value, at)? else {
            return Err(ImportError::Invalid { at: at.to_owned(), message: "an operation must be an object".into() });
        };
        let own = operation.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        let consumes = media_types(operation.get("consumes")).or_else(|| self.consumes.clone());
        let produces = media_types(operation.get("produces")).or_else(|| self.produces.clone());
        let mut out: Map<String, Value> = operation
            .iter()
            .filter(|(key, _)| !["parameters", "responses", "consumes", "produces"].contains(&key.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut parameters = Vec::new();
        for (index, parameter) in shared.iter().chain(&own).enumerate() {
            let at = join(&join(at, "parameters"), &index.to_string());
            let parameter = document::resolve(self.document, parameter, &at)?;
            match parameter.get("in").and_then(Value::as_str) {
                Some("body") => {
                    out.insert("requestBody".to_owned(), body(parameter, consumes.as_deref()));
                }
                Some("formData") => warnings.push(at, "formData parameters are not supported (APIM): dropped"),
                _ => parameters.push(with_schema(parameter)),
            }
        }
        out.insert("parameters".to_owned(), Value::Array(parameters));
        if let Some(Value::Object(responses)) = operation.get("responses") {
            let mut upgraded = Map::new();
            for (status, response) in responses {
                let at = join(&join(at, "responses"), status);
                let response = document::resolve(self.document, response, &at)?;
                upgraded.insert(status.clone(), self.response(response, produces.as_deref()));
            }
            out.insert("responses".to_owned(), Value::Object(upgraded));
        }
        Ok(Value::Object(out))
    }

    /// A response: its schema under each `produces` type, its examples by media type.
    fn response(&self, response: &Value, produces: Option<&[String]>) -> Value {
        let Value::Object(response) = response else { return response.clone() };
        let mut out: Map<String, Value> = response
            .iter()
            .filter(|(key, _)| !["schema", "examples", "headers"].contains(&key.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let examples = response.get("examples").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut content = Map::new();
        if let Some(schema) = response.get("schema") {
            for media in produces.unwrap_or(&[MEDIA_TYPE_DEFAULT.to_owned()]) {
                content.insert(media.clone(), json!({ "schema": schema }));
            }
        }
        for (media, example) in examples {
            let entry = content.entry(media).or_insert_with(|| json!({}));
            if let Value::Object(entry) = entry {
                entry.insert("example".to_owned(), example);
            }
        }
        if !content.is_empty() {
            out.insert("content".to_owned(), Value::Object(content));
        }
        if let Some(Value::Object(headers)) = response.get("headers") {
            let headers = headers.iter().map(|(name, header)| (name.clone(), with_schema(header)));
            out.insert("headers".to_owned(), Value::Object(headers.collect()));
        }
        Value::Object(out)
    }
}

/// A `body` parameter as a `requestBody` (without a schema when it has none).
fn body(parameter: &Value, consumes: Option<&[String]>) -> Value {
    let media = match parameter.get("schema") {
        Some(schema) => json!({ "schema": schema }),
        None => json!({}),
    };
    let content: Map<String, Value> = consumes
        .unwrap_or(&[MEDIA_TYPE_DEFAULT.to_owned()])
        .iter()
        .map(|media_type| (media_type.clone(), media.clone()))
        .collect();
    let mut out = Map::new();
    out.insert("content".to_owned(), Value::Object(content));
    if let Some(description) = parameter.get("description") {
        out.insert("description".to_owned(), description.clone());
    }
    Value::Object(out)
}

/// A parameter or header with its type keys moved into `schema`.
fn with_schema(parameter: &Value) -> Value {
    let Value::Object(parameter) = parameter else { return parameter.clone() };
    let mut schema = Map::new();
    let mut out = Map::new();
    for (key, value) in parameter {
        if SCHEMA_KEYS.contains(&key.as_str()) {
            schema.insert(key.clone(), value.clone());
        } else {
            out.insert(key.clone(), value.clone());
        }
    }
    if let Some(example) = out.remove("x-example") {
        out.insert("example".to_owned(), example);
    }
    if !schema.is_empty() {
        out.insert("schema".to_owned(), Value::Object(schema));
    }
    Value::Object(out)
}
