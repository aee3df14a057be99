//! OpenAPI definitions through the API, as APIM takes them: `PUT /apis/{id}` with `format` and
//! `value` imports (or re-imports) a definition; `GET /apis/{id}?export=true&format=...` returns
//! the API as one. Link formats (`openapi-link` ...) are refused: the store fetches nothing.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{Request, json};
use crate::model::{ApiProperties, OperationProperties, SchemaProperties};
use crate::openapi::{self, ExportFormat, ImportOptions, QueryParameterTranslation};
use crate::resource::{Kind, ResourcePath};
use crate::service::{Authority, Service};

/// The `format` values an import takes inline (management-reference §2.1).
pub(super) const IMPORT_FORMATS: [&str; 3] = ["openapi", "openapi+json", "swagger-json"];

/// Whether a PUT body asks for an import.
pub(super) fn is_import(path: &ResourcePath, properties: &Value) -> bool {
    path.kind() == Kind::Api && properties.get("format").is_some() && properties.get("value").is_some()
}

/// Imports the definition in `properties` (`format`, `value`, `path`, optional `serviceUrl` and
/// `translateRequiredQueryParameters`) into the API at `path`; answers with the API.
pub(super) fn import(
    service: &mut Service,
    request: &Request,
    path: &ResourcePath,
    properties: &Value,
) -> Result<Response, ApiError> {
    let text = |name: &str| properties.get(name).and_then(Value::as_str);
    let format = text("format").unwrap_or_default();
    if format.ends_with("-link") {
        return Err(ApiError::validation("format", "link formats are not supported: send the definition as `value`"));
    }
    if !IMPORT_FORMATS.contains(&format) {
        return Err(ApiError::validation("format", format!("format must be one of {}", IMPORT_FORMATS.join(", "))));
    }
    let value = text("value").ok_or_else(|| ApiError::validation("value", "value must be the definition's text"))?;
    let api_path = text("path").ok_or_else(|| ApiError::validation("path", "an import needs the API's path"))?;
    let options = ImportOptions {
        path: api_path.to_owned(),
        service_url: text("serviceUrl").map(str::to_owned),
        required_query_parameters: match text("translateRequiredQueryParameters") {
            Some("query") => QueryParameterTranslation::Query,
            _ => QueryParameterTranslation::Template,
        },
    };
    let imported =
        openapi::import(value, &options).map_err(|error| ApiError::validation("value", error.to_string()))?;
    let created = service.state().get(path.as_str()).is_none();
    let writes = openapi::reimport_writes(service.state(), path.name(), &imported)
        .map_err(|error| ApiError::validation("path", error.to_string()))?;
    service.write(writes, &[], Authority::Store, &request.actor())?;
    let resource = service.state().get(path.as_str()).ok_or_else(|| ApiError::not_found(path.as_str()))?;
    let mut body = super::envelope::envelope(resource);
    body["properties"]["importWarnings"] = json!(imported.warnings.iter().map(ToString::to_string).collect::<Vec<_>>());
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, body, Some(resource.etag())))
}

/// `GET /apis/{id}?export=true&format=...`: the API as a definition, with the gateway's URL.
pub(super) fn export(
    service: &Service,
    path: &ResourcePath,
    format: &str,
    gateway_url: &str,
) -> Result<Response, ApiError> {
    let format = match format {
        "openapi+json" | "openapi+json-link" => ExportFormat::OpenApi3Json,
        "openapi" | "openapi-link" => ExportFormat::OpenApi3Yaml,
        "swagger" | "swagger-json" | "swagger-link" => ExportFormat::Swagger2Json,
        other => {
            return Err(ApiError::validation(
                "format",
                format!("cannot export as {other:?}: use openapi, openapi+json or swagger"),
            ));
        }
    };
    let resource = service.state().get(path.as_str()).ok_or_else(|| ApiError::not_found(path.as_str()))?;
    let api: ApiProperties = serde_json::from_value(resource.properties.clone()).map_err(|e| ApiError::internal(&e))?;
    let children = |collection: &str| service.state().under(&format!("{path}/{collection}/")).collect::<Vec<_>>();
    let operations: Vec<(String, OperationProperties)> = children("operations")
        .into_iter()
        .filter(|r| r.path.kind() == Kind::Operation)
        .filter_map(|r| Some((r.path.name().to_owned(), serde_json::from_value(r.properties.clone()).ok()?)))
        .collect();
    let schemas: Vec<(String, SchemaProperties)> = children("schemas")
        .into_iter()
        .filter_map(|r| Some((r.path.name().to_owned(), serde_json::from_value(r.properties.clone()).ok()?)))
        .collect();
    let document = openapi::export(&api, &operations, &schemas, gateway_url, format);
    let value = match format {
        ExportFormat::OpenApi3Yaml => Value::String(document),
        _ => serde_json::from_str(&document).unwrap_or(Value::String(document)),
    };
    Ok(json(StatusCode::OK, json!({"id": path.as_str(), "format": format_name(format), "value": value}), None))
}

fn format_name(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::OpenApi3Json => "openapi+json",
        ExportFormat::OpenApi3Yaml => "openapi",
        ExportFormat::Swagger2Json => "swagger-json",
    }
}
