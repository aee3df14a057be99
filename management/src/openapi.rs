//! OpenAPI import and export (management-reference §2.1–2.4): a definition becomes an API's
//! properties, its operations and one schema resource; an API's resources become a definition
//! that points at the gateway.
//!
//! Supported: OpenAPI 2.0 (Swagger), 3.0.x and 3.1, as JSON or YAML (told apart by the first
//! character: `{` is JSON). A Swagger 2.0 document is first rewritten into the 3.x shape
//! ([`swagger2`]), so one mapping ([`mapping`]) serves every version.
//!
//! Why no typed OpenAPI crate: no maintained crate reads all three versions. `oas3` models 3.1
//! only, `openapiv3` 3.0 only, and neither reads Swagger 2.0; both re-serialise schemas through
//! their own types, while APIM keeps `components.schemas` verbatim in the schema resource
//! (unknown keywords, examples and all). So the text is parsed with serde (`serde_json`,
//! `serde_yaml_ng`) into a `serde_json::Value` and the parts the mapping reads are deserialised
//! into small serde structs ([`document`]) whose leftover keys are reported as dropped.
//!
//! The module is pure: nothing is fetched (no external `$ref`, no link formats) and nothing is
//! written; [`reimport_writes`] turns an import into the store writes of APIM's re-import.

use crate::model::{ApiProperties, OperationProperties, SchemaProperties};

mod document;
mod export;
mod mapping;
mod names;
mod reimport;
mod swagger2;

pub use export::{ExportFormat, export};
pub use names::{OPERATION_ID_CHARS_MAX, normalize_operation_id};
pub use reimport::reimport_writes;

/// Largest inline definition APIM imports (management-reference §2.1), in bytes.
pub const DOCUMENT_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most operations one import creates: each is a resource and a route (a bound on memory and
/// on the change set, far above any real API; APIM's own service limit is lower).
pub const OPERATIONS_MAX: usize = 10_000;
/// Most warnings kept; past it one line says how many more there were.
pub const WARNINGS_MAX: usize = 1_000;
/// Longest `displayName` of an operation (APIM: 1–300 characters).
pub const DISPLAY_NAME_CHARS_MAX: usize = 300;
/// The id of the schema resource an import creates (one per API, holding every schema).
pub const SCHEMA_ID: &str = "openapi";
/// `contentType` of a schema resource from an OpenAPI 3 document.
pub const OPENAPI_COMPONENTS_CONTENT_TYPE: &str = "application/vnd.oai.openapi.components+json";
/// `contentType` of a schema resource from a Swagger 2.0 document.
pub const SWAGGER_DEFINITIONS_CONTENT_TYPE: &str = "application/vnd.ms-azure-apim.swagger.definitions+json";

/// How an import maps what it cannot take literally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The API's public path prefix (`path` of the API resource).
    pub path: String,
    /// Overrides the backend URL taken from the definition's servers.
    pub service_url: Option<String>,
    /// What becomes of required query parameters (`translateRequiredQueryParameters`).
    pub required_query_parameters: QueryParameterTranslation,
}

/// APIM's `translateRequiredQueryParameters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueryParameterTranslation {
    /// `template` (APIM's default): required query parameters join the URL template
    /// (`/pets?limit={limit}`), so a request without them matches no operation.
    #[default]
    Template,
    /// `query`: they stay query parameters of the request.
    Query,
}

/// What an import made of a definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedApi {
    /// The API's properties: title, description, backend URL, contact, license; `path` from the
    /// options; `apiVersion` and the rest left unset.
    pub api: ApiProperties,
    /// `(operation id, properties)`, in the definition's path order (paths sorted), methods in
    /// the order get, put, post, delete, options, head, patch.
    pub operations: Vec<(String, OperationProperties)>,
    /// `(schema id, properties)`: one resource holding every schema, or none.
    pub schemas: Vec<(String, SchemaProperties)>,
    /// Everything in the definition that the import did not keep, with where it was.
    pub warnings: Vec<Warning>,
}

/// One part of a definition the import dropped (or changed), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where in the definition: `paths./pets.get.security`, `components.securitySchemes`.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Why a definition cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the definition is {bytes} bytes; inline definitions are limited to {DOCUMENT_BYTES_MAX} bytes")]
    TooLarge { bytes: usize },
    #[error("the definition is not valid JSON: {0}")]
    Json(String),
    #[error("the definition is not valid YAML: {0}")]
    Yaml(String),
    #[error("the definition is not an object with an `openapi` or `swagger` version")]
    NotOpenApi,
    #[error("OpenAPI version {0:?} is not supported (2.0, 3.0.x and 3.1.x are)")]
    UnsupportedVersion(String),
    #[error("{at}: external reference {reference:?}: only references within the document (#/...) are supported")]
    ExternalReference { at: String, reference: String },
    #[error("{at}: reference {reference:?} points at nothing in the document")]
    BrokenReference { at: String, reference: String },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("{at}: more than {max} operations normalise to the id {id:?}", max = names::DUPLICATE_SUFFIX_MAX)]
    DuplicateOperationIds { at: String, id: String },
    #[error("the definition has more than {OPERATIONS_MAX} operations")]
    TooManyOperations,
}

/// Imports an OpenAPI 2.0, 3.0 or 3.1 definition (JSON or YAML).
pub fn import(text: &str, options: &ImportOptions) -> Result<ImportedApi, ImportError> {
    if text.len() > DOCUMENT_BYTES_MAX {
        return Err(ImportError::TooLarge { bytes: text.len() });
    }
    let value = document::parse(text)?;
    document::check_references(&value)?;
    let mut warnings = Warnings::default();
    let (value, flavor) = match document::version(&value)? {
        document::Version::Swagger2 => (swagger2::upgrade(value, &mut warnings)?, mapping::Flavor::Swagger2),
        document::Version::OpenApi3 => (value, mapping::Flavor::OpenApi3),
    };
    let mut imported = mapping::map(&value, flavor, options, &mut warnings)?;
    imported.warnings = warnings.finish();
    Ok(imported)
}

/// Warnings as they are collected, bounded by [`WARNINGS_MAX`].
#[derive(Debug, Default)]
struct Warnings {
    kept: Vec<Warning>,
    more: usize,
}

impl Warnings {
    fn push(&mut self, at: impl Into<String>, message: impl Into<String>) {
        if self.kept.len() < WARNINGS_MAX {
            self.kept.push(Warning { at: at.into(), message: message.into() });
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Vec<Warning> {
        if self.more > 0 {
            let message = format!("{} more warnings not listed", self.more);
            self.kept.push(Warning { at: "(document)".to_owned(), message });
        }
        self.kept
    }
}

#[cfg(test)]
mod tests;
