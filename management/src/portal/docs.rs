//! An API's documentation beyond its page: the reference rendered by the vendored OpenAPI viewer
//! (Swagger UI, `assets/vendor/swagger-ui/`), and its definition for download as OpenAPI 3 (JSON,
//! YAML) or Swagger 2.0, with the gateway's URL as the server.
//!
//! The definition is the management store's export (`openapi::export`): the imported OpenAPI's
//! operations and schemas, or, for an API made without one, its operations alone.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::App;
use super::catalogue::{VisibleApi, display, not_found_page, visible_api};
use super::pages::page;
use super::visitor::Visitor;
use crate::model::SchemaProperties;
use crate::openapi::{self, ExportFormat};
use crate::service::State as Resources;

/// A definition format: its file suffix, media type and the export it is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Format {
    pub(super) file: &'static str,
    pub(super) media_type: &'static str,
    pub(super) export: ExportFormat,
    pub(super) label: &'static str,
}

/// The downloads an API page offers (APIM's export formats, management-reference §2.4).
pub(super) const FORMATS: [Format; 3] = [
    Format {
        file: "openapi.json",
        media_type: "application/vnd.oai.openapi+json",
        export: ExportFormat::OpenApi3Json,
        label: "OpenAPI 3 (JSON)",
    },
    Format {
        file: "openapi.yaml",
        media_type: "application/vnd.oai.openapi",
        export: ExportFormat::OpenApi3Yaml,
        label: "OpenAPI 3 (YAML)",
    },
    Format {
        file: "swagger.json",
        media_type: "application/vnd.swagger.doc+json",
        export: ExportFormat::Swagger2Json,
        label: "Swagger 2.0 (JSON)",
    },
];

/// The API as a definition served by the gateway at `gateway_url`.
pub(super) fn definition(state: &Resources, shown: &VisibleApi, gateway_url: &str, format: ExportFormat) -> String {
    let operations = shown.operations(state);
    let schemas: Vec<(String, SchemaProperties)> = state
        .under(&format!("/apis/{}/schemas/", shown.id))
        .filter_map(|r| Some((r.path.name().to_owned(), serde_json::from_value(r.properties.clone()).ok()?)))
        .collect();
    openapi::export(&shown.api, &operations, &schemas, gateway_url, format)
}

/// `GET /apis/{api}/{file}` with `file` one of [`FORMATS`]: the definition as a download.
pub(super) async fn download(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let Some(format) = FORMATS.iter().find(|format| format.file == file) else {
        return not_found_page(&app, &visitor);
    };
    let document = {
        let service = app.service.lock().await;
        let state = service.state();
        visible_api(state, &visitor, &id)
            .map(|shown| definition(state, &shown, &app.settings.gateway_url, format.export))
    };
    match document {
        Some(document) => attachment(document, format.media_type, &format!("{id}.{}", format.file)),
        None => not_found_page(&app, &visitor),
    }
}

/// A document to save as `filename` (the id is a resource name: `[A-Za-z0-9._-]`, safe to quote).
pub(super) fn attachment(document: String, media_type: &'static str, filename: &str) -> Response {
    let mut response = document.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    let disposition = format!("attachment; filename=\"{}\"", filename.replace(['"', '\\'], "_"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// `GET /apis/{api}/reference`: the OpenAPI viewer over `openapi.json` (schemas, examples).
pub(super) async fn reference(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let name = {
        let service = app.service.lock().await;
        visible_api(service.state(), &visitor, &id).map(|shown| display(&shown.api.display_name, &id).to_owned())
    };
    let Some(name) = name else { return not_found_page(&app, &visitor) };
    let context = json!({
        "title": format!("{name}: reference"),
        "api": {"id": id, "name": name},
        "formats": FORMATS.iter().map(|f| json!({"file": f.file, "label": f.label})).collect::<Vec<_>>(),
    });
    page(&app, &visitor, StatusCode::OK, "reference.html", context)
}

#[derive(serde::Deserialize)]
pub(super) struct ExportQuery {
    #[serde(default)]
    export: bool,
}

/// `GET /developer/apis/{api}?export=true` with `Accept` naming the format, as APIM's data API
/// (management-reference §2.4): `application/vnd.oai.openapi+json`, `application/vnd.oai.openapi`
/// or `application/vnd.swagger.doc+json`. Without `export=true`: the API as `{id, name, properties}`.
pub(super) async fn data_api(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Response {
    let visitor = Visitor::of(&app, &headers).await;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let service = app.service.lock().await;
    let state = service.state();
    let Some(shown) = visible_api(state, &visitor, &id) else {
        return super::data::not_found(&format!("/apis/{id}"));
    };
    if !query.export {
        return super::data::api(&shown, &app.settings.gateway_url).into_response();
    }
    let format = FORMATS
        .iter()
        .find(|format| {
            accept.split(',').any(|part| part.split(';').next().is_some_and(|m| m.trim() == format.media_type))
        })
        .unwrap_or(&FORMATS[0]);
    attachment(
        definition(state, &shown, &app.settings.gateway_url, format.export),
        format.media_type,
        &format!("{id}.{}", format.file),
    )
}
