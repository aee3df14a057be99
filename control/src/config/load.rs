//! Reading a config directory: which files exist, and parsing each one into its `files` type.
//!
//! Every problem becomes a diagnostic and the walk goes on, so one load reports them all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use portcullis_contract::model::{REVISION_DIGITS_MAX, REVISION_MARKER, is_valid_revision};
use serde::de::DeserializeOwned;

use super::files::{
    ApiFile, BackendFile, GatewayFile, GroupFile, NamedValuesFile, OperationFile, ProductFile, SubscriptionFile,
    UserFile, VersionSetFile,
};
use super::{Diagnostic, Diagnostics, SourceFile};

/// A config file is written by hand; anything past 1 MiB is a mistake, not a config.
pub const FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Ids appear in paths, scopes and logs; 80 characters keeps them readable (APIM's own limit for names).
pub const ID_CHARS_MAX: usize = 80;

/// The gateway settings file.
pub const GATEWAY_FILE: &str = "gateway.toml";
/// The named values file.
pub const NAMED_VALUES_FILE: &str = "named-values.toml";
/// The directory of APIs, one sub-directory each.
pub const APIS_DIR: &str = "apis";
/// The file describing one API, inside its directory.
pub const API_FILE: &str = "api.toml";
/// The directory of subscriptions, one file each.
pub const SUBSCRIPTIONS_DIR: &str = "subscriptions";
/// The policy document of a scope: the config directory (global) or an API's directory.
pub const POLICY_FILE: &str = "policy.xml";
/// The directory of products, one sub-directory each (`product.toml`, optional `policy.xml`).
pub const PRODUCTS_DIR: &str = "products";
/// The file describing one product, inside its directory.
pub const PRODUCT_FILE: &str = "product.toml";
/// The directory of policy fragments, one `<fragment-id>.xml` each.
pub const FRAGMENTS_DIR: &str = "fragments";
/// The directory of named backends, one `<backend-id>.toml` each.
pub const BACKENDS_DIR: &str = "backends";
/// An API's operations: `<operation-id>.toml`, with an optional `<operation-id>.xml` policy.
pub const OPERATIONS_DIR: &str = "operations";
/// The directory of users, one `<user-id>.toml` each.
pub const USERS_DIR: &str = "users";
/// The directory of custom groups, one `<group-id>.toml` each.
pub const GROUPS_DIR: &str = "groups";
/// The directory of version sets, one `<version-set-id>.toml` each.
pub const VERSION_SETS_DIR: &str = "version-sets";

/// One parsed file and the id its name gives it.
#[derive(Debug, Clone)]
pub(crate) struct Item<T> {
    pub(crate) id: String,
    pub(crate) source: SourceFile,
    pub(crate) file: T,
}

/// Everything read from a config directory, before any cross-file check.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) gateway: Option<Item<GatewayFile>>,
    pub(crate) named_values: Option<Item<NamedValuesFile>>,
    pub(crate) apis: Vec<Item<ApiFile>>,
    pub(crate) subscriptions: Vec<Item<SubscriptionFile>>,
    /// APIs whose directory exists but whose file did not parse: scopes naming them are not
    /// reported as unknown (the real error is already reported).
    pub(crate) broken_api_ids: BTreeSet<String>,
    /// `policy.xml` at the top of the config directory (global scope).
    pub(crate) global_policy: Option<SourceFile>,
    /// `fragments/<id>.xml`.
    pub(crate) fragments: Vec<(String, SourceFile)>,
    /// Per API id: its policy and operations.
    pub(crate) api_parts: std::collections::BTreeMap<String, ApiParts>,
    /// `products/<id>/product.toml` with its optional `policy.xml`.
    pub(crate) products: Vec<(Item<ProductFile>, Option<SourceFile>)>,
    /// Products whose directory exists but whose file did not parse.
    pub(crate) broken_product_ids: BTreeSet<String>,
    /// `backends/<id>.toml`.
    pub(crate) backends: Vec<Item<BackendFile>>,
    /// Backends whose file exists but did not parse: references to them are not reported again.
    pub(crate) broken_backend_ids: BTreeSet<String>,
    /// `users/<id>.toml`.
    pub(crate) users: Vec<Item<UserFile>>,
    /// `groups/<id>.toml`.
    pub(crate) groups: Vec<Item<GroupFile>>,
    /// Users and groups whose file exists but did not parse: references to them are not
    /// reported again.
    pub(crate) broken_user_ids: BTreeSet<String>,
    pub(crate) broken_group_ids: BTreeSet<String>,
    /// `version-sets/<id>.toml`.
    pub(crate) version_sets: Vec<Item<VersionSetFile>>,
    /// Version sets whose file exists but did not parse.
    pub(crate) broken_version_set_ids: BTreeSet<String>,
}

/// The files of an API directory besides `api.toml`.
#[derive(Debug, Default)]
pub(crate) struct ApiParts {
    pub(crate) policy: Option<SourceFile>,
    pub(crate) operations: Vec<OperationItem>,
}

/// One `operations/<id>.toml` and its optional `operations/<id>.xml`.
#[derive(Debug)]
pub(crate) struct OperationItem {
    pub(crate) item: Item<OperationFile>,
    pub(crate) policy: Option<SourceFile>,
}

struct Entry {
    name: String,
    path: PathBuf,
    is_dir: bool,
}

/// Reads `dir`, adding every problem to `diagnostics`.
pub(crate) fn read(dir: &Path, diagnostics: &mut Diagnostics) -> Parsed {
    let mut parsed = Parsed::default();
    if !dir.is_dir() {
        diagnostics.push(Diagnostic::at_path(dir, "the config directory does not exist (pass --config DIR)"));
        return parsed;
    }
    for entry in entries(dir, diagnostics) {
        match (entry.name.as_str(), entry.is_dir) {
            (GATEWAY_FILE, false) => parsed.gateway = parse_file("gateway", &entry.path, diagnostics),
            (NAMED_VALUES_FILE, false) => {
                parsed.named_values = parse_file("named-values", &entry.path, diagnostics);
            }
            (APIS_DIR, true) => read_apis(&entry.path, &mut parsed, diagnostics),
            (SUBSCRIPTIONS_DIR, true) => read_subscriptions(&entry.path, &mut parsed, diagnostics),
            (POLICY_FILE, false) => parsed.global_policy = read_text(&entry.path, diagnostics),
            (FRAGMENTS_DIR, true) => read_fragments(&entry.path, &mut parsed, diagnostics),
            (PRODUCTS_DIR, true) => read_products(&entry.path, &mut parsed, diagnostics),
            (BACKENDS_DIR, true) => read_backends(&entry.path, &mut parsed, diagnostics),
            (USERS_DIR, true) => read_users(&entry.path, &mut parsed, diagnostics),
            (GROUPS_DIR, true) => read_groups(&entry.path, &mut parsed, diagnostics),
            (VERSION_SETS_DIR, true) => read_version_sets(&entry.path, &mut parsed, diagnostics),
            // Certificates and keys, read where `[tls]` names them.
            (super::tls::CERTS_DIR, true) => {}
            (name, _) if is_ignored(name) => {}
            (name, is_dir) => diagnostics.push(Diagnostic::at_path(
                &entry.path,
                format!(
                    "unexpected {} {name:?} in the config directory: expected {GATEWAY_FILE}, {NAMED_VALUES_FILE}, \
                     {POLICY_FILE}, {APIS_DIR}/, {BACKENDS_DIR}/, {PRODUCTS_DIR}/, {SUBSCRIPTIONS_DIR}/, {USERS_DIR}/, \
                     {GROUPS_DIR}/, {VERSION_SETS_DIR}/, {FRAGMENTS_DIR}/ or {certs}/ \
                     (names starting with '.' and *.md files are ignored)",
                    if is_dir { "directory" } else { "file" },
                    certs = super::tls::CERTS_DIR,
                ),
            )),
        }
    }
    parsed
}

/// Only `gateway.toml` of `dir`, if present.
pub(crate) fn read_gateway(dir: &Path, diagnostics: &mut Diagnostics) -> Option<Item<GatewayFile>> {
    let path = dir.join(GATEWAY_FILE);
    path.is_file().then(|| parse_file("gateway", &path, diagnostics)).flatten()
}

/// Only `named-values.toml` of `dir`, if present.
pub(crate) fn read_named_values(dir: &Path, diagnostics: &mut Diagnostics) -> Option<Item<NamedValuesFile>> {
    let path = dir.join(NAMED_VALUES_FILE);
    path.is_file().then(|| parse_file("named-values", &path, diagnostics)).flatten()
}

/// Whether `entry` of `dir` is a resource directory to read (`apis/<id>/`, `apis/<id>;rev=<n>/`,
/// `products/<id>/`): ignored names are skipped, a stray file or a bad id reported.
fn is_resource_dir(
    entry: &Entry,
    dir: &Path,
    what: &str,
    id: &str,
    main_file: &str,
    diagnostics: &mut Diagnostics,
) -> bool {
    if is_ignored(&entry.name) {
        return false;
    }
    if !entry.is_dir {
        let folder = dir.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        diagnostics.push(Diagnostic::at_path(
            &entry.path,
            format!(
                "unexpected file {:?}: each {what} is a directory {folder}/<{id}-id>/ holding {main_file}",
                entry.name
            ),
        ));
        return false;
    }
    match split_revision(&entry.name) {
        // Only API directories have revisions: elsewhere the name is checked as a whole.
        (id, Some(revision)) if main_file == API_FILE => check_revision_dir(id, revision, &entry.path, diagnostics),
        _ => check_id(&entry.name, &entry.path, diagnostics),
    }
}

fn read_apis(dir: &Path, parsed: &mut Parsed, diagnostics: &mut Diagnostics) {
    for entry in entries(dir, diagnostics) {
        if !is_resource_dir(&entry, dir, "API", "api", API_FILE, diagnostics) {
            continue;
        }
        let mut has_api_file = false;
        let mut parts = ApiParts::default();
        for inner in entries(&entry.path, diagnostics) {
            match (inner.name.as_str(), inner.is_dir) {
                (API_FILE, false) => has_api_file = true,
                (POLICY_FILE, false) => parts.policy = read_text(&inner.path, diagnostics),
                (OPERATIONS_DIR, true) => parts.operations = read_operations(&inner.path, diagnostics),
                (name, _) if is_ignored(name) => {}
                _ => diagnostics.push(Diagnostic::at_path(
                    &inner.path,
                    format!(
                        "unexpected {:?} in an API directory: expected {API_FILE}, {POLICY_FILE} or {OPERATIONS_DIR}/",
                        inner.name
                    ),
                )),
            }
        }
        parsed.api_parts.insert(entry.name.clone(), parts);
        if !has_api_file {
            diagnostics.push(Diagnostic::at_path(&entry.path, format!("the API directory has no {API_FILE}")));
            parsed.broken_api_ids.insert(entry.name);
            continue;
        }
        match parse_file(&entry.name, &entry.path.join(API_FILE), diagnostics) {
            Some(item) => parsed.apis.push(item),
            None => {
                parsed.broken_api_ids.insert(entry.name);
            }
        }
    }
}

fn read_products(dir: &Path, parsed: &mut Parsed, diagnostics: &mut Diagnostics) {
    for entry in entries(dir, diagnostics) {
        if !is_resource_dir(&entry, dir, "product", "product", PRODUCT_FILE, diagnostics) {
            continue;
        }
        let mut policy = None;
        let mut has_file = false;
        for inner in entries(&entry.path, diagnostics) {
            match (inner.name.as_str(), inner.is_dir) {
                (PRODUCT_FILE, false) => has_file = true,
                (POLICY_FILE, false) => policy = read_text(&inner.path, diagnostics),
                (name, _) if is_ignored(name) => {}
                _ => diagnostics.push(Diagnostic::at_path(
                    &inner.path,
                    format!(
                        "unexpected {:?} in a product directory: expected {PRODUCT_FILE} or {POLICY_FILE}",
                        inner.name
                    ),
                )),
            }
        }
        let item = if has_file {
            parse_file(&entry.name, &entry.path.join(PRODUCT_FILE), diagnostics)
        } else {
            diagnostics.push(Diagnostic::at_path(&entry.path, format!("the product directory has no {PRODUCT_FILE}")));
            None
        };
        match item {
            Some(item) => parsed.products.push((item, policy)),
            None => {
                parsed.broken_product_ids.insert(entry.name);
            }
        }
    }
}

fn read_operations(dir: &Path, diagnostics: &mut Diagnostics) -> Vec<OperationItem> {
    let entries = entries(dir, diagnostics);
    let mut operations = Vec::new();
    for entry in &entries {
        if is_ignored(&entry.name) {
            continue;
        }
        if let Some(id) = entry.name.strip_suffix(".toml").filter(|_| !entry.is_dir) {
            if check_id(id, &entry.path, diagnostics) {
                let policy_path = dir.join(format!("{id}.xml"));
                let policy = policy_path.is_file().then(|| read_text(&policy_path, diagnostics)).flatten();
                if let Some(item) = parse_file(id, &entry.path, diagnostics) {
                    operations.push(OperationItem { item, policy });
                }
            }
        } else if let Some(id) = entry.name.strip_suffix(".xml").filter(|_| !entry.is_dir) {
            if !dir.join(format!("{id}.toml")).is_file() {
                diagnostics.push(Diagnostic::at_path(
                    &entry.path,
                    format!("policy of an unknown operation: add {OPERATIONS_DIR}/{id}.toml beside it"),
                ));
            }
        } else {
            diagnostics.push(Diagnostic::at_path(
                &entry.path,
                format!(
                    "unexpected {:?}: each operation is {OPERATIONS_DIR}/<operation-id>.toml with an optional <operation-id>.xml policy",
                    entry.name
                ),
            ));
        }
    }
    operations
}

pub(crate) fn read_fragments(dir: &Path, parsed: &mut Parsed, diagnostics: &mut Diagnostics) {
    for (id, path) in files_by_id(dir, FRAGMENTS_DIR, "fragment", "xml", diagnostics) {
        if let Some(source) = read_text(&path, diagnostics) {
            parsed.fragments.push((id, source));
        }
    }
}

fn read_version_sets(dir: &Path, parsed: &mut Parsed, diagnostics: &mut Diagnostics) {
    for (id, path) in files_by_id(dir, VERSION_SETS_DIR, "version set", "toml", diagnostics) {
        match parse_file(&id, &path, diagnostics) {
            Some(item) => parsed.version_sets.push(item),
            None => {
                parsed.broken_version_set_ids.insert(id);
            }
        }
    }
}

fn read_backends(dir: &Path, parsed: &mut Parsed, diagnostics: &mut Diagnostics) {
    for (id, path) in files_by_id(dir, BACKENDS_DIR, "backend", "toml", diagnostics) {
        match parse_file(&id, &path, diagnostics) {
            Some(item) => parsed.backends.push(item),
            None => {
                parsed.broken_backend_ids.insert(id);
            }
        }
    }
}

fn read_users(dir: &Path, parsed: &mut Parsed, diagnostics: &mut Diagnostics) {
    for (id, path) in files_by_id(dir, USERS_DIR, "user", "toml", diagnostics) {
        match parse_file(&id, &path, diagnostics) {
            Some(item) => parsed.users.push(item),
            None => {
                parsed.broken_user_ids.insert(id);
            }
        }
    }
}

fn read_groups(dir: &Path, parsed: &mut Parsed, diagnostics: &mut Diagnostics) {
    for (id, path) in files_by_id(dir, GROUPS_DIR, "group", "toml", diagnostics) {
        match parse_file(&id, &path, diagnostics) {
            Some(item) => parsed.groups.push(item),
            None => {
                parsed.broken_group_ids.insert(id);
            }
        }
    }
}

/// The files `<kind>-id.<extension>` of `dir` (named `dir_name` in messages) with valid ids;
/// anything else there is reported.
fn files_by_id(
    dir: &Path,
    dir_name: &str,
    kind: &str,
    extension: &str,
    diagnostics: &mut Diagnostics,
) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for entry in entries(dir, diagnostics) {
        if is_ignored(&entry.name) {
            continue;
        }
        let id = entry.name.strip_suffix(extension).and_then(|stem| stem.strip_suffix('.'));
        let Some(id) = id.filter(|_| !entry.is_dir) else {
            diagnostics.push(Diagnostic::at_path(
                &entry.path,
                format!("unexpected {:?}: each {kind} is a file {dir_name}/<{kind}-id>.{extension}", entry.name),
            ));
            continue;
        };
        if check_id(id, &entry.path, diagnostics) {
            files.push((id.to_owned(), entry.path.clone()));
        }
    }
    files
}

/// The ids of `dir/backends/*.toml` (for policy checks outside a full load).
pub(crate) fn backend_ids(dir: &Path) -> BTreeSet<String> {
    let Ok(read) = std::fs::read_dir(dir.join(BACKENDS_DIR)) else { return BTreeSet::new() };
    read.filter_map(|entry| {
        let name = entry.ok()?.file_name().into_string().ok()?;
        let id = name.strip_suffix(".toml")?;
        is_valid_id(id).then(|| id.to_owned())
    })
    .collect()
}

/// `[tls]` of `dir`'s gateway.toml (for standalone policy checks: an unreadable file has none,
/// and `config check` reports it).
pub(crate) fn gateway_tls(dir: &Path) -> Option<super::tls::TlsTable> {
    let text = std::fs::read_to_string(dir.join(GATEWAY_FILE)).ok()?;
    Some(toml::from_str::<GatewayFile>(&text).ok()?.tls)
}

fn read_subscriptions(dir: &Path, parsed: &mut Parsed, diagnostics: &mut Diagnostics) {
    for (id, path) in files_by_id(dir, SUBSCRIPTIONS_DIR, "subscription", "toml", diagnostics) {
        if let Some(item) = parse_file(&id, &path, diagnostics) {
            parsed.subscriptions.push(item);
        }
    }
}

/// Names that are never config: hidden files (editors, VCS) and documentation.
pub(crate) fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".md")
}

/// Ids come from file names: letters, digits, `-`, `_`, `.`, starting with a letter or digit.
pub(crate) fn is_valid_id(id: &str) -> bool {
    id.len() <= ID_CHARS_MAX
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An API directory's name split into the API id and, for `<api-id>;rev=<n>`, the revision
/// number as written (checked by [`check_revision_dir`]).
pub(crate) fn split_revision(name: &str) -> (&str, Option<&str>) {
    match name.split_once(REVISION_MARKER) {
        Some((id, revision)) => (id, Some(revision)),
        None => (name, None),
    }
}

/// `<api-id>;rev=<n>`: a valid API id and a revision number.
fn check_revision_dir(id: &str, revision: &str, path: &Path, diagnostics: &mut Diagnostics) -> bool {
    if !check_id(id, path, diagnostics) {
        return false;
    }
    let valid = is_valid_revision(revision);
    if !valid {
        diagnostics.push(Diagnostic::at_path(
            path,
            format!(
                "{revision:?} is not a revision number: a revision directory is <api-id>{REVISION_MARKER}<n>, n being 1 to \
                 {REVISION_DIGITS_MAX} digits without a leading zero"
            ),
        ));
    }
    valid
}

fn check_id(id: &str, path: &Path, diagnostics: &mut Diagnostics) -> bool {
    let valid = is_valid_id(id);
    if !valid {
        diagnostics.push(Diagnostic::at_path(
            path,
            format!(
                "{id:?} is not a valid id: use 1 to {ID_CHARS_MAX} letters, digits, '-', '_' or '.', \
                 starting with a letter or digit"
            ),
        ));
    }
    valid
}

/// The entries of `dir`, sorted by name so diagnostics come out in a stable order.
fn entries(dir: &Path, diagnostics: &mut Diagnostics) -> Vec<Entry> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(error) => {
            diagnostics.push(Diagnostic::at_path(dir, format!("cannot read the directory: {error}")));
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for entry in read {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                diagnostics.push(Diagnostic::at_path(dir, format!("cannot read the directory: {error}")));
                continue;
            }
        };
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            diagnostics.push(Diagnostic::at_path(&path, "the file name is not UTF-8"));
            continue;
        };
        // Follows symbolic links, so a linked file or directory counts as what it points to.
        let is_dir = path.is_dir();
        entries.push(Entry { name, path, is_dir });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

/// Reads and deserializes one TOML file; syntax errors and unknown keys point at their span.
fn parse_file<T: DeserializeOwned>(id: &str, path: &Path, diagnostics: &mut Diagnostics) -> Option<Item<T>> {
    let source = read_text(path, diagnostics)?;
    parse_source(id, source, diagnostics)
}

/// Deserializes one TOML text (a file, or a store resource rendered as its file).
pub(crate) fn parse_source<T: DeserializeOwned>(
    id: &str,
    source: SourceFile,
    diagnostics: &mut Diagnostics,
) -> Option<Item<T>> {
    match toml::from_str::<T>(&source.text) {
        Ok(file) => Some(Item { id: id.to_owned(), source, file }),
        Err(error) => {
            let message = error.message().trim_end().to_owned();
            diagnostics.push(match error.span() {
                Some(span) => source.error(span, message),
                None => source.error_at_start(message),
            });
            None
        }
    }
}

/// Reads one UTF-8 text file of at most [`FILE_BYTES_MAX`].
pub(crate) fn read_text(path: &Path, diagnostics: &mut Diagnostics) -> Option<SourceFile> {
    let text = match std::fs::metadata(path) {
        Ok(metadata) if metadata.len() > FILE_BYTES_MAX => {
            diagnostics.push(Diagnostic::at_path(path, format!("the file is larger than {FILE_BYTES_MAX} bytes")));
            return None;
        }
        Ok(_) => std::fs::read(path),
        Err(error) => Err(error),
    };
    let text = match text.map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            diagnostics.push(Diagnostic::at_path(path, "the file is not UTF-8 text"));
            return None;
        }
        Err(error) => {
            diagnostics.push(Diagnostic::at_path(path, format!("cannot read the file: {error}")));
            return None;
        }
    };
    Some(SourceFile::new(path, text))
}
