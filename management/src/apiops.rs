//! APIOps extracts (the folder layout Azure's APIOps extractor writes) in and out of the store:
//! the migration path from an APIM instance.
//!
//! [`import`] reads every file under the folder and turns what the model holds into store writes
//! (origin [`Origin::Store`](crate::store::Origin::Store)), in an order the store accepts (parents
//! and link targets first). Every file read, and every file or property the model does not hold
//! (diagnostics, loggers, gateways, WADL/SOAP/GraphQL specifications, Azure-only properties), is a
//! [`ReportLine`]: nothing is dropped without a line saying so. Nothing is fetched: an API whose
//! backend is unreachable imports the same. ARM ids inside (`apiVersionSetId`, `scope`,
//! `ownerId`) are kept as written; the model reads their last segments.
//!
//! [`export`] writes the store's resources in the same layout, so an extract round-trips:
//! import, export, import again gives the same writes. Secrets (secret named values' values,
//! subscription keys, user passwords) are not written, as the extractor does not write them.
//!
//! The layout (folder names as the extractor writes them, with spaces):
//!
//! | file | resource |
//! |---|---|
//! | `policy.xml` | `/policies/policy` |
//! | `apis/{id}/apiInformation.json` (`{id}` may be `name;rev=N`) | `/apis/{id}` |
//! | `apis/{id}/specification.{yaml,yml,json}` | its operations and schema (OpenAPI import) |
//! | `apis/{id}/policy.xml`, `apis/{id}/operations/{op}/policy.xml` | API and operation policies |
//! | `apis/{id}/tags.json` or `apis/{id}/tags/{tag}/apiTagInformation.json` | `/apis/{id}/tags/{tag}` |
//! | `products/{id}/productInformation.json`, `policy.xml` | `/products/{id}`, its policy |
//! | `products/{id}/apis/{api}/productApiInformation.json` or `products/{id}/apis.json` | `/products/{id}/apis/{api}` |
//! | `products/{id}/groups/{g}/productGroupInformation.json` or `products/{id}/groups.json` | `/products/{id}/groups/{g}` |
//! | `products/{id}/tags.json` | `/products/{id}/tags/{tag}` |
//! | `version sets/{id}/versionSetInformation.json` (or `apiVersionSetInformation.json`) | `/apiVersionSets/{id}` |
//! | `named values/{id}/namedValueInformation.json` | `/namedValues/{id}` |
//! | `backends/{id}/backendInformation.json` | `/backends/{id}` |
//! | `policy fragments/{id}/policyFragmentInformation.json` + `policy.xml` | `/policyFragments/{id}` |
//! | `subscriptions/{id}/subscriptionInformation.json` | `/subscriptions/{id}` |
//! | `tags/{id}/tagInformation.json` | `/tags/{id}` |
//! | `groups/{id}/groupInformation.json`, `groups/{id}/users.json` | `/groups/{id}`, its members |
//! | `users/{id}/userInformation.json` | `/users/{id}` |
//!
//! An information file holds the ARM resource's `properties`, either bare or wrapped as
//! `{"properties": {...}}` (both are read; exports write the wrapped form).

use std::path::Path;

use crate::store::Write;

mod layout;
mod read;
mod write;

/// Largest file read from an extract, in bytes: an inline OpenAPI definition's limit (the largest
/// file an extract holds), so a stray binary cannot exhaust memory.
pub const FILE_BYTES_MAX: u64 = crate::openapi::DOCUMENT_BYTES_MAX as u64;
/// Most files read from one extract (a bound on the walk; far above a real service's).
pub const FILES_MAX: usize = 100_000;
/// Deepest folder nesting walked (the layout is at most five deep).
pub const DEPTH_MAX: usize = 8;

/// What an extract holds, as store writes, and the report of every file.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiOpsImport {
    /// Puts, parents and link targets before what needs them.
    pub writes: Vec<Write>,
    /// One line per file read, and per file or property not modelled.
    pub report: Vec<ReportLine>,
}

/// One line of an import's or export's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    /// The file, relative to the extract's folder (`apis/echo/apiInformation.json`).
    pub file: String,
    pub kind: ReportKind,
    pub message: String,
}

impl std::fmt::Display for ReportLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ReportKind::Imported => "imported",
            ReportKind::NotModelled => "not modelled",
            ReportKind::Warning => "warning",
        };
        write!(f, "{}: {kind}: {}", self.file, self.message)
    }
}

/// What a report line says about its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// The file became the resources the message names.
    Imported,
    /// The file, or a property in it, is not in Portcullis' model (the message says whether it
    /// was kept as written or dropped).
    NotModelled,
    /// The file was read with a loss the message names (an OpenAPI warning, a skipped link).
    Warning,
}

/// Why an extract cannot be imported or exported.
#[derive(Debug, thiserror::Error)]
pub enum ApiOpsError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("the extract has more than {FILES_MAX} files")]
    TooManyFiles,
}

/// Reads the APIOps extract in `dir`. Extracts hold no secrets: a subscription without keys gets
/// two generated ones (as APIM does for a subscription created without them).
pub fn import(dir: &Path) -> Result<ApiOpsImport, ApiOpsError> {
    let mut import = read::import(dir)?;
    for write in &mut import.writes {
        let Write::Put { path, properties, .. } = write else { continue };
        if path.kind() != crate::resource::Kind::Subscription {
            continue;
        }
        let Some(object) = properties.as_object_mut() else { continue };
        let mut generated = false;
        for name in ["primaryKey", "secondaryKey"] {
            if object.get(name).and_then(serde_json::Value::as_str).is_none_or(str::is_empty) {
                let key = crate::tokens::subscription_key().map_err(|error| ApiOpsError::File {
                    file: path.to_string(),
                    message: format!("cannot generate a key: {error}"),
                })?;
                object.insert(name.to_owned(), serde_json::Value::String(key));
                generated = true;
            }
        }
        if generated {
            import.report.push(ReportLine {
                file: format!("subscriptions/{}", path.name()),
                kind: ReportKind::Imported,
                message: "the extract holds no keys: new ones were generated (portcullis subscription keys ID)".into(),
            });
        }
    }
    Ok(import)
}

/// Writes `state`'s resources into `dir` in the APIOps layout (creating it); returns a line per
/// file written and per resource or secret that has no place in the layout.
pub fn export(state: &crate::service::State, dir: &Path) -> Result<Vec<ReportLine>, ApiOpsError> {
    write::export(state, dir)
}

#[cfg(test)]
mod tests;
