//! The definition as a JSON value: parsing (JSON or YAML), the version, references, and the serde
//! structs of the parts the mapping reads. Every struct keeps its unread keys in `other`, so the
//! mapping can say what it dropped.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::ImportError;

/// Most `$ref` hops followed to resolve one reference (a cycle of references ends here).
const REFERENCE_HOPS_MAX: usize = 32;

/// The versions the import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    Swagger2,
    /// 3.0.x and 3.1.x: the mapping reads what the two share.
    OpenApi3,
}

/// Parses `text` as JSON when it starts with `{`, as YAML otherwise.
pub(super) fn parse(text: &str) -> Result<Value, ImportError> {
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if trimmed.starts_with('{') {
        serde_json::from_str(trimmed).map_err(|error| ImportError::Json(error.to_string()))
    } else {
        serde_yaml_ng::from_str(trimmed).map_err(|error| ImportError::Yaml(error.to_string()))
    }
}

/// The document's version, from `swagger` or `openapi` (YAML may have read `3.0` as a number).
pub(super) fn version(document: &Value) -> Result<Version, ImportError> {
    let text = |key: &str| match document.get(key)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    if let Some(swagger) = text("swagger") {
        return if swagger == "2.0" || swagger == "2" { Ok(Version::Swagger2) } else { unsupported(swagger) };
    }
    match text("openapi") {
        Some(openapi) if openapi.starts_with("3.0") || openapi.starts_with("3.1") => Ok(Version::OpenApi3),
        Some(openapi) => unsupported(openapi),
        None => Err(ImportError::NotOpenApi),
    }
}

fn unsupported(version: String) -> Result<Version, ImportError> {
    Err(ImportError::UnsupportedVersion(version))
}

/// `paths` and `x-ms-paths` of the document, in that order: `(key, path, item)`.
pub(super) fn paths(document: &Value) -> Result<Vec<(&'static str, &String, &Value)>, ImportError> {
    let mut paths = Vec::new();
    for key in ["paths", "x-ms-paths"] {
        match document.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => paths.extend(map.iter().map(|(path, item)| (key, path, item))),
            Some(_) => return Err(ImportError::Invalid { at: key.to_owned(), message: "expected a map".to_owned() }),
        }
    }
    Ok(paths)
}

/// Refuses external references (`other.yaml#/Pet`, `https://...`): nothing is fetched.
pub(super) fn check_references(document: &Value) -> Result<(), ImportError> {
    // Most documents have none: look first without building the places' names.
    if !has_external_reference(document) {
        return Ok(());
    }
    let mut pending = vec![(String::new(), document)];
    while let Some((at, value)) = pending.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    if !reference.starts_with('#') {
                        let reference = reference.clone();
                        return Err(ImportError::ExternalReference { at: location(&at), reference });
                    }
                }
                pending.extend(map.iter().map(|(key, value)| (join(&at, key), value)));
            }
            Value::Array(items) => {
                pending.extend(items.iter().enumerate().map(|(index, value)| (join(&at, &index.to_string()), value)));
            }
            _ => {}
        }
    }
    Ok(())
}

fn has_external_reference(document: &Value) -> bool {
    let mut pending = vec![document];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                if map.get("$ref").and_then(Value::as_str).is_some_and(|reference| !reference.starts_with('#')) {
                    return true;
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    false
}

/// `at.key`, the way warnings and errors name a place in the document.
pub(super) fn join(at: &str, key: &str) -> String {
    if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") }
}

fn location(at: &str) -> String {
    if at.is_empty() { "(document)".to_owned() } else { at.to_owned() }
}

/// Follows `value`'s `$ref` chain within `document` (for parameters, bodies, responses, headers,
/// examples: schemas are kept as references).
pub(super) fn resolve<'a>(document: &'a Value, value: &'a Value, at: &str) -> Result<&'a Value, ImportError> {
    let mut current = value;
    for _ in 0..REFERENCE_HOPS_MAX {
        let Some(reference) = current.get("$ref").and_then(Value::as_str) else { return Ok(current) };
        current = pointer(document, reference)
            .ok_or_else(|| ImportError::BrokenReference { at: location(at), reference: reference.to_owned() })?;
    }
    Err(ImportError::Invalid { at: location(at), message: format!("more than {REFERENCE_HOPS_MAX} $ref hops") })
}

/// The value a local reference (`#/components/schemas/Pet`) names.
pub(super) fn pointer<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    let path = reference.strip_prefix('#')?;
    // A pointer's segments are percent-encoded in a URI fragment (`#/paths/~1pets`).
    let decoded = percent_decode(path);
    document.pointer(&decoded)
}

pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes.get(index + 1..index + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[index], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Deserialises `value` (at `at`) into `T`, naming the place on error.
pub(super) fn read<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, ImportError> {
    T::deserialize(value).map_err(|error| ImportError::Invalid { at: location(at), message: error.to_string() })
}

/// The document's top level (3.x shape; Swagger 2.0 is upgraded first).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Document {
    pub(super) info: Info,
    pub(super) servers: Vec<Server>,
    /// Read from the value itself (see [`paths`]): not copied here.
    pub(super) paths: serde::de::IgnoredAny,
    #[serde(rename = "x-ms-paths")]
    pub(super) ms_paths: serde::de::IgnoredAny,
    pub(super) components: Components,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Info {
    pub(super) title: String,
    pub(super) description: Option<String>,
    pub(super) terms_of_service: Option<String>,
    pub(super) contact: Option<Value>,
    pub(super) license: Option<Value>,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Server {
    pub(super) url: String,
    pub(super) variables: Map<String, Value>,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Components {
    pub(super) schemas: Map<String, Value>,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

/// A path item: its operations by method, and parameters shared by them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PathItem {
    pub(super) parameters: Vec<Value>,
    pub(super) get: Option<Value>,
    pub(super) put: Option<Value>,
    pub(super) post: Option<Value>,
    pub(super) delete: Option<Value>,
    pub(super) options: Option<Value>,
    pub(super) head: Option<Value>,
    pub(super) patch: Option<Value>,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

impl PathItem {
    /// `(method, operation)`, in APIM's order.
    pub(super) fn operations(&self) -> [(&'static str, Option<&Value>); 7] {
        [
            ("GET", self.get.as_ref()),
            ("PUT", self.put.as_ref()),
            ("POST", self.post.as_ref()),
            ("DELETE", self.delete.as_ref()),
            ("OPTIONS", self.options.as_ref()),
            ("HEAD", self.head.as_ref()),
            ("PATCH", self.patch.as_ref()),
        ]
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Operation {
    pub(super) operation_id: Option<String>,
    pub(super) summary: Option<String>,
    pub(super) description: Option<String>,
    pub(super) parameters: Vec<Value>,
    pub(super) request_body: Option<Value>,
    pub(super) responses: Map<String, Value>,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

/// A parameter, or (without `name` and `in`) a response header.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Parameter {
    pub(super) name: String,
    #[serde(rename = "in")]
    pub(super) location: String,
    pub(super) description: Option<String>,
    pub(super) required: bool,
    pub(super) schema: Option<Value>,
    pub(super) example: Option<Value>,
    pub(super) examples: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RequestBody {
    pub(super) description: Option<String>,
    pub(super) content: Map<String, Value>,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Response {
    pub(super) description: Option<String>,
    pub(super) headers: Map<String, Value>,
    pub(super) content: Map<String, Value>,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct MediaType {
    pub(super) schema: Option<Value>,
    pub(super) example: Option<Value>,
    pub(super) examples: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}
