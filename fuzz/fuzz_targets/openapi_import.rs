//! OpenAPI import (management/src/openapi.rs) on arbitrary definitions, as `PUT /apis/{id}` with
//! `format` + `value` runs it on what a publisher uploads: nothing panics; an import is
//! deterministic; every operation id is a valid, unique resource id and every `{name}` of a URL
//! template has its template parameter; every export format writes without panicking, and the
//! OpenAPI 3 export imports again with no more operations than it holds.
//!
//! The first byte picks the options (odd: required query parameters stay query parameters); the
//! rest is the document's text (lossy UTF-8).

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use portcullis_management::openapi::{self, ExportFormat, ImportOptions, QueryParameterTranslation};
use portcullis_management::resource::is_valid_id;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(text);
    let required_query_parameters =
        if selector % 2 == 1 { QueryParameterTranslation::Query } else { QueryParameterTranslation::Template };
    let options = ImportOptions { path: "fuzz".into(), service_url: None, required_query_parameters };
    let imported = openapi::import(&text, &options);
    assert_eq!(imported, openapi::import(&text, &options), "the same text imports the same");
    let Ok(imported) = imported else { return };
    let mut ids = HashSet::new();
    for (id, operation) in &imported.operations {
        assert!(is_valid_id(id), "{id:?} is not a valid id");
        assert!(ids.insert(id.as_str()), "{id:?} twice");
        let mut rest = operation.url_template.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else { break };
            let name = &rest[open + 1..open + close];
            assert!(operation.template_parameters.iter().any(|p| p.name == name), "{{{name}}} has no parameter");
            rest = &rest[open + close + 1..];
        }
    }
    for format in [ExportFormat::OpenApi3Json, ExportFormat::OpenApi3Yaml, ExportFormat::Swagger2Json] {
        let exported = openapi::export(&imported.api, &imported.operations, &imported.schemas, "https://gw", format);
        if format == ExportFormat::OpenApi3Json && exported.len() <= openapi::DOCUMENT_BYTES_MAX {
            let again = openapi::import(&exported, &options).unwrap_or_else(|error| panic!("{error}\n{exported}"));
            assert!(again.operations.len() <= imported.operations.len());
        }
    }
});
