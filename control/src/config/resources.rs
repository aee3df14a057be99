//! The config directory as management resources, and back.
//!
//! - [`declared`]: what a loaded directory declares, as resources owned by their files (`apply`).
//! - [`parsed`]: the store's resources as the parsed files the compiler reads: each resource is
//!   rendered as the file that would declare it and parsed as that file, so a resource the API
//!   wrote is checked exactly as a file is, and its diagnostics name the resource.
//! - [`files`]: the store's resources as the files of a directory (`export`), which `apply`
//!   reads back unchanged.
//!
//! Each file's keys map to APIM property names ([`Field`]); APIM properties a file has no key for
//! are kept in the file's `[apim]` table, so nothing is lost on the way through a directory.

use std::collections::{BTreeMap, HashMap};

use portcullis_management::model::relative_to_service;
use portcullis_management::resource::{Kind, ResourcePath};
use portcullis_management::service::State;
use portcullis_management::store::Resource;
use serde_json::{Map, Value};

use super::load::{self, Item, OperationItem, Parsed};
use super::{Diagnostic, Diagnostics, SourceFile};

/// The table of a file that carries APIM properties Portcullis keeps but has no key for.
pub(crate) const APIM_TABLE: &str = "apim";

/// A file key (dotted for nested tables) and the APIM property (dotted likewise) it maps to.
#[derive(Debug, Clone, Copy)]
struct Field {
    file: &'static str,
    json: &'static str,
}

const fn field(file: &'static str, json: &'static str) -> Field {
    Field { file, json }
}

const API_FIELDS: &[Field] = &[
    field("name", "displayName"),
    field("path", "path"),
    field("description", "description"),
    field("version", "apiVersion"),
    field("revision", "apiRevision"),
    field("revision-description", "apiRevisionDescription"),
    field("online", "isOnline"),
    field("backend-url", "serviceUrl"),
    field("backend-id", "backendId"),
    field("preserve-host", "preserveHost"),
    field("subscription-required", "subscriptionRequired"),
    field("subscription-key.header", "subscriptionKeyParameterNames.header"),
    field("subscription-key.query", "subscriptionKeyParameterNames.query"),
];

const OPERATION_FIELDS: &[Field] =
    &[field("name", "displayName"), field("method", "method"), field("url-template", "urlTemplate")];

const PRODUCT_FIELDS: &[Field] = &[
    field("name", "displayName"),
    field("description", "description"),
    field("terms", "terms"),
    field("subscription-required", "subscriptionRequired"),
    field("approval-required", "approvalRequired"),
    field("subscriptions-limit", "subscriptionsLimit"),
];

const SUBSCRIPTION_FIELDS: &[Field] = &[
    field("name", "displayName"),
    field("scope", "scope"),
    field("primary-key", "primaryKey"),
    field("secondary-key", "secondaryKey"),
    field("created-date", "createdDate"),
    field("start-date", "startDate"),
    field("expiration-date", "expirationDate"),
    field("end-date", "endDate"),
    field("allow-tracing", "allowTracing"),
    field("state-comment", "stateComment"),
];

const USER_FIELDS: &[Field] = &[
    field("email", "email"),
    field("first-name", "firstName"),
    field("last-name", "lastName"),
    field("state", "state"),
    field("note", "note"),
    field("registration-date", "registrationDate"),
];

const GROUP_FIELDS: &[Field] = &[
    field("name", "displayName"),
    field("description", "description"),
    field("type", "type"),
    field("external-id", "externalId"),
];

const VERSION_SET_FIELDS: &[Field] = &[
    field("name", "displayName"),
    field("query-name", "versionQueryName"),
    field("header-name", "versionHeaderName"),
    field("description", "description"),
];

/// The prefix of an API's `apiVersionSetId`.
const VERSION_SETS_PREFIX: &str = "/apiVersionSets/";

/// The groups every installation has, as APIM's (ids `administrators`, `developers`, `guests`):
/// the store holds them, no file declares them.
pub const BUILT_IN_GROUPS: [&str; 3] = ["administrators", "developers", "guests"];
/// APIM's built-in administrator: the store holds it, no file declares it.
pub const BUILT_IN_ADMINISTRATOR: &str = "1";
/// The prefix of a subscription's `ownerId`.
const USERS_PREFIX: &str = "/users/";

/// One resource a config directory declares, and the file (relative to the directory) that does.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub path: ResourcePath,
    pub properties: Value,
    pub file: String,
}

/// The resources `parsed` declares (the directory `dir` loaded and checked).
pub(crate) fn declared(parsed: &Parsed, dir: &std::path::Path) -> Result<Vec<Declared>, Diagnostics> {
    let mut out = Declarations { dir, items: Vec::new(), diagnostics: Diagnostics::default() };
    for item in &parsed.apis {
        out.table(&format!("/apis/{}", item.id), &item.source, API_FIELDS, |table, json| {
            if let Some(set) = table.get("version-set").and_then(toml::Value::as_str) {
                json.insert("apiVersionSetId".into(), Value::from(format!("{VERSION_SETS_PREFIX}{set}")));
            }
        });
        let parts = parsed.api_parts.get(&item.id);
        if let Some(policy) = parts.and_then(|parts| parts.policy.as_ref()) {
            out.policy(&format!("/apis/{}/policies/policy", item.id), policy);
        }
        for operation in parts.map(|parts| parts.operations.as_slice()).unwrap_or_default() {
            out.operation(&item.id, operation);
        }
    }
    for (item, policy) in &parsed.products {
        out.product(item, policy.as_ref());
    }
    for item in &parsed.subscriptions {
        out.table(&format!("/subscriptions/{}", item.id), &item.source, SUBSCRIPTION_FIELDS, |table, json| {
            let state = table.get("state").and_then(toml::Value::as_str).unwrap_or("active");
            json.insert("state".into(), Value::from(state));
            if let Some(owner) = table.get("owner").and_then(toml::Value::as_str) {
                json.insert("ownerId".into(), Value::from(format!("{USERS_PREFIX}{owner}")));
            }
        });
    }
    for item in &parsed.version_sets {
        out.table(&format!("/apiVersionSets/{}", item.id), &item.source, VERSION_SET_FIELDS, |table, json| {
            let scheme = match table.get("scheme").and_then(toml::Value::as_str) {
                Some("query") => "Query",
                Some("header") => "Header",
                _ => "Segment",
            };
            json.insert("versioningScheme".into(), Value::from(scheme));
        });
    }
    for item in &parsed.groups {
        out.table(&format!("/groups/{}", item.id), &item.source, GROUP_FIELDS, |_, _| {});
    }
    for item in &parsed.users {
        let id = &item.id;
        out.table(&format!("/users/{id}"), &item.source, USER_FIELDS, |_, _| {});
        for group in &item.file.groups {
            let link = format!("/groups/{}/users/{id}", group.get_ref());
            out.push(&link, Value::Object(Map::new()), &item.source);
        }
    }
    if let Some(item) = &parsed.named_values {
        out.named_values(item);
    }
    if let Some(policy) = &parsed.global_policy {
        out.policy("/policies/policy", policy);
    }
    for (id, source) in &parsed.fragments {
        let properties = serde_json::json!({"value": source.text, "format": "rawxml"});
        out.push(&format!("/policyFragments/{id}"), properties, source);
    }
    for item in &parsed.backends {
        out.backend(item);
    }
    if out.diagnostics.is_empty() { Ok(out.items) } else { Err(out.diagnostics) }
}

struct Declarations<'a> {
    dir: &'a std::path::Path,
    items: Vec<Declared>,
    diagnostics: Diagnostics,
}

impl Declarations<'_> {
    fn push(&mut self, path: &str, properties: Value, source: &SourceFile) {
        let file = source.path.strip_prefix(self.dir).unwrap_or(&source.path).display().to_string();
        match ResourcePath::parse(path) {
            Ok(path) => self.items.push(Declared { path, properties, file }),
            Err(error) => self.diagnostics.push(source.error_at_start(error.to_string())),
        }
    }

    /// A TOML file mapped through `fields`, its `[apim]` table merged in; `special` adds what
    /// the field table cannot say.
    fn table(
        &mut self,
        path: &str,
        source: &SourceFile,
        fields: &[Field],
        special: impl FnOnce(&toml::Table, &mut Map<String, Value>),
    ) {
        let table: toml::Table = match toml::from_str(&source.text) {
            Ok(table) => table,
            Err(error) => return self.diagnostics.push(source.error_at_start(error.message().to_owned())),
        };
        let mut json = apim_properties(&table);
        for field in fields {
            if let Some(value) = lookup(&table, field.file) {
                set(&mut json, field.json, toml_to_json(value));
            }
        }
        special(&table, &mut json);
        self.push(path, Value::Object(json), source);
    }

    fn policy(&mut self, path: &str, source: &SourceFile) {
        self.push(path, serde_json::json!({"value": source.text, "format": "rawxml"}), source);
    }

    fn operation(&mut self, api: &str, operation: &OperationItem) {
        let id = &operation.item.id;
        let path = format!("/apis/{api}/operations/{id}");
        self.table(&path, &operation.item.source, OPERATION_FIELDS, |table, json| {
            if let Some(responses) = table.get("response").and_then(toml::Value::as_array) {
                json.insert("responses".into(), Value::Array(responses.iter().map(response_to_json).collect()));
            }
        });
        if let Some(policy) = &operation.policy {
            self.policy(&format!("{path}/policies/policy"), policy);
        }
    }

    fn product(&mut self, item: &Item<super::files::ProductFile>, policy: Option<&SourceFile>) {
        let id = &item.id;
        self.table(&format!("/products/{id}"), &item.source, PRODUCT_FIELDS, |table, json| {
            let state = table.get("state").and_then(toml::Value::as_str).unwrap_or("published");
            let state = if state == "not-published" { "notPublished" } else { "published" };
            json.insert("state".into(), Value::from(state));
        });
        for api in &item.file.apis {
            self.push(&format!("/products/{id}/apis/{}", api.get_ref()), Value::Object(Map::new()), &item.source);
        }
        for group in &item.file.groups {
            self.push(&format!("/products/{id}/groups/{}", group.get_ref()), Value::Object(Map::new()), &item.source);
        }
        if let Some(policy) = policy {
            self.policy(&format!("/products/{id}/policies/policy"), policy);
        }
    }

    fn named_values(&mut self, item: &Item<super::files::NamedValuesFile>) {
        for entry in &item.file.named_value {
            let name = entry.name.get_ref();
            let properties = serde_json::json!({
                "displayName": name, "value": entry.value.get_ref(), "secret": entry.secret,
            });
            if !portcullis_management::resource::is_valid_id(name) {
                let message = "this name cannot be a resource id (1 to 80 letters, digits, '-', '_' or '.')";
                self.diagnostics.push(item.source.error(entry.name.span(), message));
                continue;
            }
            self.push(&format!("/namedValues/{name}"), properties, &item.source);
        }
    }

    fn backend(&mut self, item: &Item<super::files::BackendFile>) {
        let table: toml::Table = toml::from_str(&item.source.text).unwrap_or_default();
        let url = item.file.endpoint.first().map(|endpoint| endpoint.address.get_ref().clone()).unwrap_or_default();
        let protocol = table.get("protocol").and_then(toml::Value::as_str).unwrap_or("http");
        let properties = serde_json::json!({
            "url": format!("{protocol}://{url}"), "protocol": "http", "portcullis": toml_to_json(&toml::Value::Table(table)),
        });
        self.push(&format!("/backends/{}", item.id), properties, &item.source);
    }
}

/// What [`parsed`] keeps between compiles: each file's parse, by the versions of the resources
/// it was rendered from. A change re-renders and re-parses only the files it touches.
#[derive(Debug, Default)]
pub struct RenderCache {
    pieces: HashMap<String, (u64, Piece)>,
}

impl RenderCache {
    /// Files held.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

/// One file of the directory a store renders to, parsed.
#[derive(Debug, Clone)]
enum Piece {
    Api(Item<super::files::ApiFile>),
    ApiPolicy(String, SourceFile),
    Operation(String, Item<super::files::OperationFile>),
    OperationPolicy(String, String, SourceFile),
    Product(Item<super::files::ProductFile>),
    ProductPolicy(String, SourceFile),
    Subscription(Item<super::files::SubscriptionFile>),
    VersionSet(Item<super::files::VersionSetFile>),
    Fragment(String, SourceFile),
    Backend(Item<super::files::BackendFile>),
    GlobalPolicy(SourceFile),
    NamedValues(Item<super::files::NamedValuesFile>),
    User(Item<super::files::UserFile>),
    Group(Item<super::files::GroupFile>),
}

/// The resources of `state` as the parsed files of a directory, for the compiler. `gateway`
/// (gateway-wide settings) comes from the config directory, not the store.
/// Where subscription files go (`subscriptions/<id>.toml`).
const SUBSCRIPTION_FILES: &str = "subscriptions/";

/// With `without_subscriptions`, subscriptions are left out (the caller has them already) and
/// their parses stay in the cache.
pub(crate) fn parsed(
    state: &State,
    gateway: Option<Item<super::files::GatewayFile>>,
    cache: &mut RenderCache,
    without_subscriptions: bool,
) -> (Parsed, Diagnostics) {
    let mut diagnostics = Diagnostics::default();
    let mut parsed = Parsed { gateway, ..Parsed::default() };
    let memberships = memberships(state);
    let mut pieces = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (file, contributors) in grouped(state, without_subscriptions) {
        let stamp = stamp(&contributors);
        let cached = stamp.and_then(|stamp| cache.pieces.get(&file).filter(|(at, _)| *at == stamp));
        let piece = match cached {
            Some((_, piece)) => Some(piece.clone()),
            None => {
                let rendered = render(state, &file, &contributors, &memberships);
                let piece = parse_piece(&file, rendered, &mut parsed, &mut diagnostics);
                if let (Some(stamp), Some(piece)) = (stamp, &piece) {
                    cache.pieces.insert(file.clone(), (stamp, piece.clone()));
                }
                piece
            }
        };
        seen.insert(file);
        pieces.extend(piece);
    }
    cache
        .pieces
        .retain(|file, _| seen.contains(file) || (without_subscriptions && file.starts_with(SUBSCRIPTION_FILES)));
    // A product's policy.xml sorts before its product.toml: add policies once products are in.
    let (product_policies, others): (Vec<_>, Vec<_>) =
        pieces.into_iter().partition(|piece| matches!(piece, Piece::ProductPolicy(..)));
    for piece in others.into_iter().chain(product_policies) {
        add_piece(&mut parsed, piece);
    }
    in_directory_order(&mut parsed);
    (parsed, diagnostics)
}

/// One subscription resource as the file it renders to, parsed (for [`super::compile_change`]).
pub(crate) fn subscription(
    state: &State,
    resource: &Resource,
    diagnostics: &mut Diagnostics,
) -> Option<Item<super::files::SubscriptionFile>> {
    let file = file_of(&resource.path)?;
    let rendered = render(state, &file, &[resource], &HashMap::new());
    match parse_piece(&file, rendered, &mut Parsed::default(), diagnostics)? {
        Piece::Subscription(item) => Some(item),
        _ => None,
    }
}

/// One rendered file: its text and the resource path diagnostics name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub resource: String,
    pub text: String,
}

/// The files (path relative to the directory → text) that declare `state`'s resources.
pub fn files(state: &State) -> BTreeMap<String, Rendered> {
    let memberships = memberships(state);
    grouped(state, false)
        .into_iter()
        .map(|(file, contributors)| {
            let rendered = render(state, &file, &contributors, &memberships);
            (file, rendered)
        })
        .collect()
}

/// The resources of `state` by the file that declares them (links and named values go to the
/// file of what they belong to).
fn grouped(state: &State, without_subscriptions: bool) -> BTreeMap<String, Vec<&Resource>> {
    let mut files: BTreeMap<String, Vec<&Resource>> = BTreeMap::new();
    let wanted = |resource: &&Resource| !(without_subscriptions && resource.path.kind() == Kind::Subscription);
    for resource in state.iter().filter(wanted) {
        if let Some(file) = file_of(&resource.path) {
            files.entry(file).or_default().push(resource);
        }
    }
    files
}

/// The file that declares `path`, if a directory can.
fn file_of(path: &ResourcePath) -> Option<String> {
    let name = path.name();
    let owner = || path.segments().nth(1).unwrap_or_default().to_owned();
    Some(match path.kind() {
        Kind::Api => format!("apis/{name}/api.toml"),
        Kind::VersionSet => format!("version-sets/{name}.toml"),
        Kind::Operation => operation_file(path),
        Kind::Product => format!("products/{name}/product.toml"),
        Kind::ProductApi | Kind::ProductGroup => format!("products/{}/product.toml", owner()),
        Kind::Subscription => format!("subscriptions/{name}.toml"),
        Kind::User if name != BUILT_IN_ADMINISTRATOR => format!("users/{name}.toml"),
        Kind::GroupUser if name != BUILT_IN_ADMINISTRATOR => format!("users/{name}.toml"),
        Kind::Group if !BUILT_IN_GROUPS.contains(&name) => format!("groups/{name}.toml"),
        Kind::ApiPolicy | Kind::ProductPolicy | Kind::GlobalPolicy | Kind::OperationPolicy => policy_file(path),
        Kind::PolicyFragment => format!("fragments/{name}.xml"),
        Kind::Backend => format!("backends/{name}.toml"),
        Kind::NamedValue => load::NAMED_VALUES_FILE.to_owned(),
        _ => return None,
    })
}

/// What a file's parse depends on: its resources' paths and versions; `None` while one of them
/// is not committed yet (version 0), so a refused change never enters the cache.
fn stamp(contributors: &[&Resource]) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for resource in contributors {
        if resource.version == 0 {
            return None;
        }
        resource.path.as_str().hash(&mut hasher);
        resource.version.hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// The text of `file`, from the resources that declare it.
fn render(
    state: &State,
    file: &str,
    contributors: &[&Resource],
    memberships: &HashMap<String, Vec<String>>,
) -> Rendered {
    let primary = contributors.iter().find(|r| !r.path.kind().is_link()).copied();
    let Some(primary) = primary else {
        return Rendered { resource: file.to_owned(), text: String::new() };
    };
    let path = &primary.path;
    let properties = primary.properties.as_object().cloned().unwrap_or_default();
    let text = match path.kind() {
        Kind::Api => api_text(&properties),
        Kind::VersionSet => version_set_text(&properties),
        Kind::Operation => operation_text(&properties),
        Kind::Product => product_text(state, path, &properties),
        Kind::Subscription => subscription_text(&properties),
        Kind::User => {
            let groups = memberships.get(path.name()).cloned().unwrap_or_default();
            let groups = toml::Value::Array(groups.into_iter().map(toml::Value::String).collect());
            table_text(&properties, USER_FIELDS, &[("groups", groups)])
        }
        Kind::Group => {
            let mut rest = properties;
            rest.remove("builtIn");
            table_text(&rest, GROUP_FIELDS, &[])
        }
        Kind::Backend => backend_text(&properties),
        Kind::NamedValue => {
            let entries = contributors
                .iter()
                .filter_map(|r| r.properties.as_object())
                .map(|properties| toml::Value::Table(named_value_entry(properties)))
                .collect();
            let mut table = toml::Table::new();
            table.insert("named-value".into(), toml::Value::Array(entries));
            return Rendered { resource: "/namedValues".into(), text: toml::to_string(&table).unwrap_or_default() };
        }
        _ => string(&properties, "value"),
    };
    Rendered { resource: path.to_string(), text }
}

/// Per user id, the groups its links name (in path order).
fn memberships(state: &State) -> HashMap<String, Vec<String>> {
    let mut memberships: HashMap<String, Vec<String>> = HashMap::new();
    for link in state.under("/groups/").filter(|r| r.path.kind() == Kind::GroupUser) {
        let group = link.path.segments().nth(1).unwrap_or_default().to_owned();
        memberships.entry(link.path.name().to_owned()).or_default().push(group);
    }
    memberships
}

/// Parses one rendered file; a file that does not parse is reported (and its id marked broken,
/// so references to it are not reported again).
fn parse_piece(file: &str, rendered: Rendered, parsed: &mut Parsed, diagnostics: &mut Diagnostics) -> Option<Piece> {
    let source = SourceFile::new(&rendered.resource, rendered.text);
    let parts: Vec<&str> = file.split('/').collect();
    let toml_id = |name: &str| name.trim_end_matches(".toml").to_owned();
    let piece = match parts.as_slice() {
        ["apis", id, "api.toml"] => {
            let item = load::parse_source(id, source, diagnostics);
            if item.is_none() {
                parsed.broken_api_ids.insert((*id).to_owned());
            }
            Piece::Api(item?)
        }
        ["apis", id, "policy.xml"] => Piece::ApiPolicy((*id).to_owned(), source),
        ["apis", api, "operations", name] => match name.strip_suffix(".xml") {
            Some(id) => Piece::OperationPolicy((*api).to_owned(), id.to_owned(), source),
            None => Piece::Operation((*api).to_owned(), load::parse_source(&toml_id(name), source, diagnostics)?),
        },
        ["products", id, "product.toml"] => {
            let item = load::parse_source(id, source, diagnostics);
            if item.is_none() {
                parsed.broken_product_ids.insert((*id).to_owned());
            }
            Piece::Product(item?)
        }
        ["products", id, "policy.xml"] => Piece::ProductPolicy((*id).to_owned(), source),
        ["subscriptions", name] => Piece::Subscription(load::parse_source(&toml_id(name), source, diagnostics)?),
        ["version-sets", name] => {
            let item = load::parse_source(&toml_id(name), source, diagnostics);
            if item.is_none() {
                parsed.broken_version_set_ids.insert(toml_id(name));
            }
            Piece::VersionSet(item?)
        }
        ["fragments", name] => Piece::Fragment(name.trim_end_matches(".xml").to_owned(), source),
        ["backends", name] => {
            let item = load::parse_source(&toml_id(name), source, diagnostics);
            if item.is_none() {
                parsed.broken_backend_ids.insert(toml_id(name));
            }
            Piece::Backend(item?)
        }
        ["policy.xml"] => Piece::GlobalPolicy(source),
        ["users", name] => Piece::User(load::parse_source(&toml_id(name), source, diagnostics)?),
        ["groups", name] => Piece::Group(load::parse_source(&toml_id(name), source, diagnostics)?),
        ["named-values.toml"] => Piece::NamedValues(load::parse_source("named-values", source, diagnostics)?),
        _ => {
            let message = "internal: a resource rendered to an unknown file";
            diagnostics.push(Diagnostic::at_path(std::path::Path::new(file), message));
            return None;
        }
    };
    Some(piece)
}

fn add_piece(parsed: &mut Parsed, piece: Piece) {
    match piece {
        Piece::Api(item) => parsed.apis.push(item),
        Piece::ApiPolicy(api, source) => parsed.api_parts.entry(api).or_default().policy = Some(source),
        Piece::Operation(api, item) => {
            parsed.api_parts.entry(api).or_default().operations.push(OperationItem { item, policy: None });
        }
        Piece::OperationPolicy(api, id, source) => {
            // Files come in path order: `<id>.toml` before `<id>.xml`.
            let parts = parsed.api_parts.entry(api).or_default();
            if let Some(operation) = parts.operations.iter_mut().find(|operation| operation.item.id == id) {
                operation.policy = Some(source);
            }
        }
        Piece::Product(item) => parsed.products.push((item, None)),
        Piece::ProductPolicy(id, source) => {
            if let Some((_, policy)) = parsed.products.iter_mut().find(|(item, _)| item.id == id) {
                *policy = Some(source);
            }
        }
        Piece::Subscription(item) => parsed.subscriptions.push(item),
        Piece::VersionSet(item) => parsed.version_sets.push(item),
        Piece::Fragment(id, source) => parsed.fragments.push((id, source)),
        Piece::Backend(item) => parsed.backends.push(item),
        Piece::GlobalPolicy(source) => parsed.global_policy = Some(source),
        Piece::NamedValues(item) => parsed.named_values = Some(item),
        Piece::User(item) => parsed.users.push(item),
        Piece::Group(item) => parsed.groups.push(item),
    }
}

/// Orders what `parsed` holds as a directory read lists it (entries sorted by file name), so
/// the store compiles to the same indices as the directory it came from.
fn in_directory_order(parsed: &mut Parsed) {
    let toml = |id: &str| format!("{id}.toml");
    parsed.apis.sort_by(|a, b| a.id.cmp(&b.id));
    parsed.products.sort_by(|(a, _), (b, _)| a.id.cmp(&b.id));
    parsed.subscriptions.sort_by_cached_key(|item| toml(&item.id));
    parsed.backends.sort_by_cached_key(|item| toml(&item.id));
    parsed.users.sort_by_cached_key(|item| toml(&item.id));
    parsed.groups.sort_by_cached_key(|item| toml(&item.id));
    parsed.version_sets.sort_by_cached_key(|item| toml(&item.id));
    parsed.fragments.sort_by_cached_key(|(id, _)| format!("{id}.xml"));
    for parts in parsed.api_parts.values_mut() {
        parts.operations.sort_by_cached_key(|operation| toml(&operation.item.id));
    }
}

fn operation_file(path: &ResourcePath) -> String {
    format!("apis/{}/operations/{}.toml", api_segment(path), path.name())
}

/// The API segment of a path under an API, revision included (`echo;rev=2`).
fn api_segment(path: &ResourcePath) -> &str {
    path.segments().nth(1).unwrap_or_default()
}

fn policy_file(path: &ResourcePath) -> String {
    match path.parent().map(ResourcePath::parse) {
        Some(Ok(parent)) if parent.kind() == Kind::Operation => {
            format!("apis/{}/operations/{}.xml", api_segment(&parent), parent.name())
        }
        Some(Ok(parent)) if parent.kind() == Kind::Api => format!("apis/{}/policy.xml", parent.name()),
        Some(Ok(parent)) => format!("products/{}/policy.xml", parent.name()),
        _ => load::POLICY_FILE.to_owned(),
    }
}

/// A file's text: `fields` as keys, `specials` as given, every other property in `[apim]`.
fn table_text(properties: &Map<String, Value>, fields: &[Field], specials: &[(&str, toml::Value)]) -> String {
    let mut rest = properties.clone();
    let mut table = toml::Table::new();
    for field in fields {
        if let Some(value) = take(&mut rest, field.json).and_then(|value| json_to_toml(&value)) {
            insert(&mut table, field.file, value);
        }
    }
    for (key, value) in specials {
        table.insert((*key).to_owned(), value.clone());
    }
    let apim: toml::Table = rest.iter().filter_map(|(k, v)| Some((k.clone(), json_to_toml(v)?))).collect();
    if !apim.is_empty() {
        table.insert(APIM_TABLE.into(), toml::Value::Table(apim));
    }
    toml::to_string(&table).unwrap_or_default()
}

fn api_text(properties: &Map<String, Value>) -> String {
    let mut rest = properties.clone();
    let mut specials = Vec::new();
    let set =
        rest.get("apiVersionSetId").and_then(Value::as_str).and_then(|id| id.rsplit('/').next()).map(str::to_owned);
    if let Some(set) = set {
        rest.remove("apiVersionSetId");
        specials.push(("version-set", toml::Value::from(set)));
    }
    table_text(&rest, API_FIELDS, &specials)
}

fn version_set_text(properties: &Map<String, Value>) -> String {
    let mut rest = properties.clone();
    let scheme = match rest.remove("versioningScheme").as_ref().and_then(Value::as_str) {
        Some("Query") => "query",
        Some("Header") => "header",
        _ => "segment",
    };
    table_text(&rest, VERSION_SET_FIELDS, &[("scheme", scheme.into())])
}

fn operation_text(properties: &Map<String, Value>) -> String {
    let mut rest = properties.clone();
    let responses = rest.get("responses").and_then(Value::as_array).and_then(|list| simple_responses(list));
    let mut specials = Vec::new();
    if let Some(responses) = responses {
        rest.remove("responses");
        specials.push(("response", toml::Value::Array(responses)));
    }
    table_text(&rest, OPERATION_FIELDS, &specials)
}

fn product_text(state: &State, path: &ResourcePath, properties: &Map<String, Value>) -> String {
    let mut rest = properties.clone();
    let state_name = match rest.remove("state").as_ref().and_then(Value::as_str) {
        Some("published") => "published",
        _ => "not-published",
    };
    let linked = |collection: &str| {
        let links = format!("{path}/{collection}/");
        toml::Value::Array(state.under(&links).map(|link| toml::Value::String(link.path.name().to_owned())).collect())
    };
    let specials = [("apis", linked("apis")), ("groups", linked("groups")), ("state", state_name.into())];
    table_text(&rest, PRODUCT_FIELDS, &specials)
}

fn subscription_text(properties: &Map<String, Value>) -> String {
    let mut rest = properties.clone();
    let state = rest.remove("state").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "submitted".into());
    let mut specials = vec![("state", toml::Value::from(state))];
    // APIM (and APIOps extracts) write full ARM ids; a directory names resources relative to the service.
    if let Some(scope) = rest.get("scope").and_then(Value::as_str).map(|scope| relative_to_service(scope).to_owned()) {
        rest.insert("scope".into(), Value::String(scope));
    }
    let owner = rest
        .get("ownerId")
        .and_then(Value::as_str)
        .map(relative_to_service)
        .and_then(|id| id.strip_prefix(USERS_PREFIX))
        .map(str::to_owned);
    if let Some(owner) = owner {
        rest.remove("ownerId");
        specials.push(("owner", owner.into()));
    }
    table_text(&rest, SUBSCRIPTION_FIELDS, &specials)
}

fn backend_text(properties: &Map<String, Value>) -> String {
    let table = properties.get("portcullis").and_then(json_to_toml);
    match table {
        Some(toml::Value::Table(table)) => toml::to_string(&table).unwrap_or_default(),
        // A backend written through the API with only APIM's `url`: one endpoint.
        _ => {
            let url = string(properties, "url");
            let (protocol, address) = url.split_once("://").unwrap_or(("http", url.as_str()));
            let address = address.trim_end_matches('/');
            format!("protocol = {protocol:?}\n[[endpoint]]\naddress = {address:?}\n")
        }
    }
}

fn named_value_entry(properties: &Map<String, Value>) -> toml::Table {
    let mut entry = toml::Table::new();
    entry.insert("name".into(), string(properties, "displayName").into());
    entry.insert("value".into(), string(properties, "value").into());
    if properties.get("secret").and_then(Value::as_bool) == Some(true) {
        entry.insert("secret".into(), true.into());
    }
    entry
}

/// `[[response]]` entries when `responses` say no more than they can (status, one
/// representation's content type, its default example); `None` keeps them in `[apim]`.
fn simple_responses(responses: &[Value]) -> Option<Vec<toml::Value>> {
    responses
        .iter()
        .map(|response| {
            let object = response.as_object()?;
            if object.keys().any(|key| !matches!(key.as_str(), "statusCode" | "representations")) {
                return None;
            }
            let mut entry = toml::Table::new();
            entry.insert("status".into(), toml::Value::Integer(object.get("statusCode")?.as_i64()?));
            let representations = object.get("representations").and_then(Value::as_array);
            match representations.map(Vec::as_slice) {
                None | Some([]) => {}
                Some([representation]) => {
                    let representation = representation.as_object()?;
                    if representation.keys().any(|key| !matches!(key.as_str(), "contentType" | "examples")) {
                        return None;
                    }
                    entry.insert("content-type".into(), representation.get("contentType")?.as_str()?.into());
                    if let Some(examples) = representation.get("examples") {
                        let examples = examples.as_object()?;
                        let value = examples.get("default")?.as_object()?;
                        if examples.len() != 1 || value.len() != 1 {
                            return None;
                        }
                        entry.insert("example".into(), value.get("value")?.as_str()?.into());
                    }
                }
                Some(_) => return None,
            }
            Some(toml::Value::Table(entry))
        })
        .collect()
}

fn response_to_json(response: &toml::Value) -> Value {
    let status = response.get("status").and_then(toml::Value::as_integer).unwrap_or(200);
    let mut representation = Map::new();
    let content_type = response.get("content-type").and_then(toml::Value::as_str).unwrap_or("application/json");
    representation.insert("contentType".into(), content_type.into());
    if let Some(example) = response.get("example").and_then(toml::Value::as_str) {
        representation.insert("examples".into(), serde_json::json!({"default": {"value": example}}));
    }
    serde_json::json!({"statusCode": status, "representations": [representation]})
}

fn apim_properties(table: &toml::Table) -> Map<String, Value> {
    match table.get(APIM_TABLE).map(toml_to_json) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn string(properties: &Map<String, Value>, key: &str) -> String {
    properties.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn lookup<'a>(table: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    let mut parts = dotted.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

fn insert(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    match dotted.split_once('.') {
        None => {
            table.insert(dotted.to_owned(), value);
        }
        Some((head, tail)) => {
            let inner = table.entry(head).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = inner {
                insert(inner, tail, value);
            }
        }
    }
}

fn set(map: &mut Map<String, Value>, dotted: &str, value: Value) {
    match dotted.split_once('.') {
        None => {
            map.insert(dotted.to_owned(), value);
        }
        Some((head, tail)) => {
            let inner = map.entry(head).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = inner {
                set(inner, tail, value);
            }
        }
    }
}

/// Removes the property at `dotted` (and a parent object it leaves empty).
fn take(map: &mut Map<String, Value>, dotted: &str) -> Option<Value> {
    match dotted.split_once('.') {
        None => map.remove(dotted),
        Some((head, tail)) => {
            let inner = map.get_mut(head)?.as_object_mut()?;
            let value = take(inner, tail);
            if inner.is_empty() {
                map.remove(head);
            }
            value
        }
    }
}

fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(text) => Value::String(text.clone()),
        toml::Value::Integer(number) => Value::from(*number),
        toml::Value::Float(number) => Value::from(*number),
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(table.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

/// JSON as TOML; `null` has no TOML form and is left out.
fn json_to_toml(value: &Value) -> Option<toml::Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(flag) => toml::Value::Boolean(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => toml::Value::Integer(integer),
            None => toml::Value::Float(number.as_f64()?),
        },
        Value::String(text) => toml::Value::String(text.clone()),
        Value::Array(items) => toml::Value::Array(items.iter().filter_map(json_to_toml).collect()),
        Value::Object(map) => {
            toml::Value::Table(map.iter().filter_map(|(k, v)| Some((k.clone(), json_to_toml(v)?))).collect())
        }
    })
}

#[cfg(test)]
mod tests;
