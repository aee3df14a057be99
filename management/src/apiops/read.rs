//! Reading an extract: every file walked, classified, turned into writes or report lines.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::layout::{self, Entry};
use super::{ApiOpsError, ApiOpsImport, DEPTH_MAX, FILE_BYTES_MAX, FILES_MAX, ReportKind, ReportLine};
use crate::model::Properties;
use crate::openapi::{self, ImportOptions};
use crate::resource::{Kind, ResourcePath};
use crate::store::{Origin, Write};

/// APIM's system groups: links to them import even when the extract leaves them out.
const BUILT_IN_GROUPS: [(&str, &str); 3] =
    [("administrators", "Administrators"), ("developers", "Developers"), ("guests", "Guests")];
/// The `format` of policies read from `.xml` files.
const RAW_XML: &str = "rawxml";

pub(super) fn import(dir: &Path) -> Result<ApiOpsImport, ApiOpsError> {
    let mut reader = Reader { dir, writes: BTreeMap::new(), report: Vec::new(), fragments: BTreeMap::new() };
    for file in walk(dir, &mut reader.report)? {
        reader.file(&file)?;
    }
    reader.fragments()?;
    reader.check_references();
    let mut writes: Vec<(ResourcePath, Value)> =
        reader.writes.into_values().map(|(path, properties, _)| (path, properties)).collect();
    // Parents have fewer segments than their children, link targets than their links: the store's
    // foreign keys are satisfied in this order.
    writes.sort_by(|(a, _), (b, _)| (a.segments().count(), a.as_str()).cmp(&(b.segments().count(), b.as_str())));
    let writes = writes.into_iter().map(|(path, properties)| Write::Put { path, properties, origin: Origin::Store });
    Ok(ApiOpsImport { writes: writes.collect(), report: reader.report })
}

/// Every file under `dir`, relative, `/`-separated, sorted; hidden entries and symbolic links
/// are reported and not followed.
fn walk(dir: &Path, report: &mut Vec<ReportLine>) -> Result<Vec<String>, ApiOpsError> {
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new(), 0)];
    while let Some((path, relative, depth)) = pending.pop() {
        let entries = std::fs::read_dir(&path).map_err(|source| io(&path, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| io(&path, source))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if relative.is_empty() { name.clone() } else { format!("{relative}/{name}") };
            let kind = entry.file_type().map_err(|source| io(&entry.path(), source))?;
            if name.starts_with('.') || kind.is_symlink() {
                report.push(line(&child, ReportKind::NotModelled, "hidden files and symbolic links are not read"));
            } else if kind.is_dir() && depth < DEPTH_MAX {
                pending.push((entry.path(), child, depth + 1));
            } else if kind.is_dir() {
                report.push(line(&child, ReportKind::NotModelled, "nested deeper than the layout: not read"));
            } else {
                files.push(child);
            }
            if files.len() > FILES_MAX {
                return Err(ApiOpsError::TooManyFiles);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn io(path: &Path, source: std::io::Error) -> ApiOpsError {
    ApiOpsError::Io { path: path.display().to_string(), source }
}

fn line(file: &str, kind: ReportKind, message: impl Into<String>) -> ReportLine {
    ReportLine { file: file.to_owned(), kind, message: message.into() }
}

/// A fragment's information file (file, properties) and policy document (file, text).
type FragmentFiles = (Option<(String, Value)>, Option<(String, String)>);

struct Reader<'a> {
    dir: &'a Path,
    /// By path: a resource named twice (`tags.json` and a tag folder) is written once.
    writes: BTreeMap<String, (ResourcePath, Value, String)>,
    report: Vec<ReportLine>,
    /// Fragments by id: the information file's properties and `policy.xml`, joined at the end.
    fragments: BTreeMap<String, FragmentFiles>,
}

impl Reader<'_> {
    fn file(&mut self, file: &str) -> Result<(), ApiOpsError> {
        let segments: Vec<&str> = file.split('/').collect();
        match layout::classify(&segments) {
            Entry::GlobalPolicy => self.policy(file, "/policies/policy"),
            Entry::Api { api } => self.information(file, &format!("/apis/{api}")),
            Entry::Specification { api } => self.specification(file, api),
            Entry::ApiPolicy { api } => self.policy(file, &format!("/apis/{api}/policies/policy")),
            Entry::OperationPolicy { api, operation } => {
                self.policy(file, &format!("/apis/{api}/operations/{operation}/policies/policy"))
            }
            Entry::ApiTags { api } => self.links(file, &format!("/apis/{api}/tags")),
            Entry::ApiTag { api, tag } => self.link(file, &format!("/apis/{api}/tags/{tag}")),
            Entry::ProductPolicy { product } => self.policy(file, &format!("/products/{product}/policies/policy")),
            Entry::ProductApis { product } => self.links(file, &format!("/products/{product}/apis")),
            Entry::ProductApi { product, api } => self.link(file, &format!("/products/{product}/apis/{api}")),
            Entry::ProductGroups { product } => self.links(file, &format!("/products/{product}/groups")),
            Entry::ProductGroup { product, group } => self.link(file, &format!("/products/{product}/groups/{group}")),
            Entry::ProductTags { product } => self.links(file, &format!("/products/{product}/tags")),
            Entry::GroupUsers { group } => self.links(file, &format!("/groups/{group}/users")),
            Entry::FragmentPolicy { fragment } => {
                let text = self.text(file)?;
                self.fragments.entry(fragment.to_owned()).or_default().1 = Some((file.to_owned(), text));
                Ok(())
            }
            Entry::Simple { collection: "policyFragments", id } => {
                let properties = properties_of(&self.text(file)?, file)?;
                self.fragments.entry(id.to_owned()).or_default().0 = Some((file.to_owned(), properties));
                Ok(())
            }
            Entry::Simple { collection, id } => self.information(file, &format!("/{collection}/{id}")),
            Entry::NotModelled(reason) => {
                self.report.push(line(file, ReportKind::NotModelled, reason));
                Ok(())
            }
        }
    }

    fn text(&self, file: &str) -> Result<String, ApiOpsError> {
        let path = self.dir.join(file);
        let size = std::fs::metadata(&path).map_err(|source| io(&path, source))?.len();
        if size > FILE_BYTES_MAX {
            let message = format!("{size} bytes: files are limited to {FILE_BYTES_MAX} bytes");
            return Err(ApiOpsError::File { file: file.to_owned(), message });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| io(&path, source))?;
        Ok(text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text))
    }

    /// The resource path, or a report line when a folder name is not a valid Portcullis id.
    fn path(&mut self, file: &str, text: &str) -> Option<ResourcePath> {
        match ResourcePath::parse(text) {
            Ok(path) => Some(path),
            Err(error) => {
                self.report.push(line(file, ReportKind::Warning, format!("skipped: {error}")));
                None
            }
        }
    }

    fn put(&mut self, file: &str, path: ResourcePath, properties: Value) {
        self.report.push(line(file, ReportKind::Imported, path.to_string()));
        self.writes.insert(path.to_string(), (path, properties, file.to_owned()));
    }

    /// An information file: its properties, checked against the model and reported.
    fn information(&mut self, file: &str, path: &str) -> Result<(), ApiOpsError> {
        let Some(path) = self.path(file, path) else { return Ok(()) };
        let properties = properties_of(&self.text(file)?, file)?;
        let properties = self.checked(file, path.kind(), properties)?;
        self.put(file, path, properties);
        Ok(())
    }

    /// `properties` read as `kind`'s model, in the store's form; what the model does not name is
    /// reported (kept as written where the model keeps extra properties, else dropped).
    fn checked(&mut self, file: &str, kind: Kind, properties: Value) -> Result<Value, ApiOpsError> {
        let input = properties.as_object().cloned().unwrap_or_default();
        let typed = Properties::from_json(kind, properties)
            .map_err(|error| ApiOpsError::File { file: file.to_owned(), message: error.to_string() })?;
        let output = typed.to_json();
        let kept = extra_keys(&typed);
        for (key, value) in &input {
            if kept.contains(key) {
                let message = format!("property {key}: not modelled, kept as written (nothing acts on it)");
                self.report.push(line(file, ReportKind::NotModelled, message));
            } else if output.get(key).is_none() && !value.is_null() {
                self.report.push(line(file, ReportKind::NotModelled, format!("property {key}: not modelled, dropped")));
            }
        }
        Ok(output)
    }

    fn policy(&mut self, file: &str, path: &str) -> Result<(), ApiOpsError> {
        let Some(path) = self.path(file, path) else { return Ok(()) };
        let value = json!({ "value": self.text(file)?, "format": RAW_XML });
        self.put(file, path, value);
        Ok(())
    }

    fn link(&mut self, file: &str, path: &str) -> Result<(), ApiOpsError> {
        if let Some(path) = self.path(file, path) {
            self.put(file, path, json!({}));
        }
        Ok(())
    }

    /// A list file (`apis.json`, `groups.json`, `tags.json`, `users.json`): names, as strings or
    /// as `{"name": ...}` objects, each a link under `prefix`.
    fn links(&mut self, file: &str, prefix: &str) -> Result<(), ApiOpsError> {
        let value: Value = serde_json::from_str(&self.text(file)?).map_err(|error| json_error(file, &error))?;
        let invalid = || ApiOpsError::File { file: file.to_owned(), message: "expected a list of names".to_owned() };
        let Value::Array(items) = value else { return Err(invalid()) };
        for item in items {
            let name = match &item {
                Value::String(name) => name.as_str(),
                Value::Object(map) => map.get("name").and_then(Value::as_str).ok_or_else(invalid)?,
                _ => return Err(invalid()),
            };
            self.link(file, &format!("{prefix}/{}", name.rsplit('/').next().unwrap_or(name)))?;
        }
        Ok(())
    }

    /// An OpenAPI specification: the API's operations and schema.
    fn specification(&mut self, file: &str, api: &str) -> Result<(), ApiOpsError> {
        let text = self.text(file)?;
        let imported = openapi::import(&text, &ImportOptions::default())
            .map_err(|error| ApiOpsError::File { file: file.to_owned(), message: error.to_string() })?;
        for warning in &imported.warnings {
            self.report.push(line(file, ReportKind::Warning, warning.to_string()));
        }
        let operations = imported.operations.iter().map(|(id, p)| ("operations", id, serde_json::to_value(p)));
        let schemas = imported.schemas.iter().map(|(id, p)| ("schemas", id, serde_json::to_value(p)));
        for (collection, id, properties) in operations.chain(schemas) {
            let Some(path) = self.path(file, &format!("/apis/{api}/{collection}/{id}")) else { continue };
            // The model's plain structs always serialise.
            let properties = properties.unwrap_or(Value::Null);
            self.put(file, path, properties);
        }
        Ok(())
    }

    /// Joins each fragment's information file and policy document.
    fn fragments(&mut self) -> Result<(), ApiOpsError> {
        for (id, (information, policy)) in std::mem::take(&mut self.fragments) {
            let Some((file, text)) = policy else {
                if let Some((file, _)) = information {
                    self.report.push(line(&file, ReportKind::Warning, "a fragment without policy.xml: skipped"));
                }
                continue;
            };
            let (information_file, properties) = information.unzip();
            let mut properties = properties.unwrap_or_else(|| json!({}));
            if let Value::Object(map) = &mut properties {
                map.insert("value".to_owned(), Value::String(text));
                map.entry("format").or_insert_with(|| json!(RAW_XML));
            }
            let Some(path) = self.path(&file, &format!("/policyFragments/{id}")) else { continue };
            let properties = self.checked(&file, Kind::PolicyFragment, properties)?;
            if let Some(information_file) = information_file {
                self.report.push(line(&information_file, ReportKind::Imported, path.to_string()));
            }
            self.put(&file, path, properties);
        }
        Ok(())
    }

    /// Drops (with a report line) what belongs to or links to a resource the extract does not
    /// hold; APIM's system groups are added when linked to.
    fn check_references(&mut self) {
        for (id, name) in BUILT_IN_GROUPS {
            let path = format!("/groups/{id}");
            let linked = self.writes.values().any(|(p, _, _)| p.target() == Some(path.as_str()));
            if linked && !self.writes.contains_key(&path) {
                if let Ok(group) = ResourcePath::parse(&path) {
                    let properties = json!({ "displayName": name, "builtIn": true, "type": "system" });
                    self.report.push(line("groups", ReportKind::Warning, format!("{path}: a system group, added")));
                    self.writes.insert(path, (group, properties, "groups".to_owned()));
                }
            }
        }
        // A skipped resource can leave its own children without a parent: repeat until none is.
        loop {
            let missing: Vec<(String, String)> = self
                .writes
                .values()
                .flat_map(|(path, _, _)| path.parent().into_iter().chain(path.target()).map(move |need| (path, need)))
                .filter(|(_, needed)| !self.writes.contains_key(*needed))
                .map(|(path, needed)| (path.to_string(), needed.to_owned()))
                .collect();
            if missing.is_empty() {
                return;
            }
            for (path, needed) in missing {
                if let Some((_, _, file)) = self.writes.remove(&path) {
                    let message = format!("{path} needs {needed}, which the extract does not hold: skipped");
                    self.report.push(line(&file, ReportKind::Warning, message));
                }
            }
        }
    }
}

/// An information file's properties: bare, or wrapped as `{"properties": ...}` (ARM's envelope).
fn properties_of(text: &str, file: &str) -> Result<Value, ApiOpsError> {
    let value: Value = serde_json::from_str(text).map_err(|error| json_error(file, &error))?;
    match value {
        Value::Object(mut map) => match map.remove("properties") {
            Some(Value::Object(properties)) => Ok(Value::Object(properties)),
            Some(other) => {
                map.insert("properties".to_owned(), other);
                Ok(Value::Object(map))
            }
            None => Ok(Value::Object(map)),
        },
        _ => Err(ApiOpsError::File { file: file.to_owned(), message: "expected a JSON object".to_owned() }),
    }
}

fn json_error(file: &str, error: &serde_json::Error) -> ApiOpsError {
    ApiOpsError::File { file: file.to_owned(), message: format!("not valid JSON: {error}") }
}

/// The properties a model type keeps without acting on them (its `extra`).
fn extra_keys(properties: &Properties) -> Vec<String> {
    let extra: Option<&Map<String, Value>> = match properties {
        Properties::Api(p) => Some(&p.extra),
        Properties::Operation(p) => Some(&p.extra),
        Properties::Product(p) => Some(&p.extra),
        Properties::Subscription(p) => Some(&p.extra),
        Properties::User(p) => Some(&p.extra),
        Properties::Group(p) => Some(&p.extra),
        Properties::NamedValue(p) => Some(&p.extra),
        Properties::Backend(p) => Some(&p.extra),
        _ => None,
    };
    extra.map(|extra| extra.keys().cloned().collect()).unwrap_or_default()
}
