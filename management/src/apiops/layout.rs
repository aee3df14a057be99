//! The APIOps layout: which file is which resource (module docs of [`super`] have the table).

/// The policy file of every scope.
pub(super) const POLICY_FILE: &str = "policy.xml";
pub(super) const API_INFORMATION: &str = "apiInformation.json";
/// The specification an export writes (an import reads `.yaml`, `.yml` and `.json`).
pub(super) const SPECIFICATION_YAML: &str = "specification.yaml";
/// The specification an export writes for an API imported from Swagger 2.0.
pub(super) const SPECIFICATION_JSON: &str = "specification.json";
pub(super) const PRODUCT_API_INFORMATION: &str = "productApiInformation.json";
pub(super) const PRODUCT_GROUP_INFORMATION: &str = "productGroupInformation.json";
pub(super) const API_TAG_INFORMATION: &str = "apiTagInformation.json";
pub(super) const TAGS_LIST: &str = "tags.json";
pub(super) const GROUP_USERS_LIST: &str = "users.json";

/// A top-level collection whose folders each hold one information file: `(folder, file, the
/// store's collection)`. The first file name is the one an export writes.
pub(super) const SIMPLE: [(&str, &[&str], &str); 9] = [
    ("products", &["productInformation.json"], "products"),
    ("version sets", &["versionSetInformation.json", "apiVersionSetInformation.json"], "apiVersionSets"),
    ("named values", &["namedValueInformation.json"], "namedValues"),
    ("backends", &["backendInformation.json"], "backends"),
    ("policy fragments", &["policyFragmentInformation.json"], "policyFragments"),
    ("subscriptions", &["subscriptionInformation.json"], "subscriptions"),
    ("tags", &["tagInformation.json"], "tags"),
    ("groups", &["groupInformation.json"], "groups"),
    ("users", &["userInformation.json"], "users"),
];

/// Top-level folders of what Portcullis does not model, and why.
const NOT_MODELLED: [(&str, &str); 12] = [
    ("diagnostics", "diagnostics are not modelled (Portcullis logs through its own telemetry settings)"),
    ("loggers", "loggers are not modelled (Portcullis logs through its own telemetry settings)"),
    ("gateways", "gateway registrations are not modelled (each Portcullis host is its own gateway)"),
    ("workspaces", "workspaces are not modelled"),
    ("certificates", "certificates are not modelled here (the config directory holds TLS material)"),
    ("caches", "external caches are not modelled here (the config directory's cache settings)"),
    ("identity providers", "developer-portal identity providers are not modelled"),
    ("authorization servers", "authorization servers are not modelled (validate-jwt holds its own settings)"),
    ("openid providers", "OpenID providers are not modelled (validate-jwt holds its own settings)"),
    ("schemas", "global schemas are not modelled"),
    ("portal", "developer-portal content is not modelled"),
    ("api diagnostics", "diagnostics are not modelled"),
];

/// What one file of an extract is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry<'a> {
    GlobalPolicy,
    Api {
        api: &'a str,
    },
    /// An OpenAPI definition (`yaml`, `yml`, `json`).
    Specification {
        api: &'a str,
    },
    ApiPolicy {
        api: &'a str,
    },
    OperationPolicy {
        api: &'a str,
        operation: &'a str,
    },
    ApiTags {
        api: &'a str,
    },
    ApiTag {
        api: &'a str,
        tag: &'a str,
    },
    ProductPolicy {
        product: &'a str,
    },
    ProductApis {
        product: &'a str,
    },
    ProductApi {
        product: &'a str,
        api: &'a str,
    },
    ProductGroups {
        product: &'a str,
    },
    ProductGroup {
        product: &'a str,
        group: &'a str,
    },
    ProductTags {
        product: &'a str,
    },
    FragmentPolicy {
        fragment: &'a str,
    },
    GroupUsers {
        group: &'a str,
    },
    /// An information file of a [`SIMPLE`] collection: the store's collection and the id.
    Simple {
        collection: &'static str,
        id: &'a str,
    },
    NotModelled(String),
}

/// What the file at `segments` (relative to the extract) is.
pub(super) fn classify<'a>(segments: &[&'a str]) -> Entry<'a> {
    match *segments {
        [POLICY_FILE] => Entry::GlobalPolicy,
        ["apis", api, API_INFORMATION] => Entry::Api { api },
        ["apis", api, file] if file.starts_with("specification.") => specification(api, file),
        ["apis", api, POLICY_FILE] => Entry::ApiPolicy { api },
        ["apis", api, "operations", operation, POLICY_FILE] => Entry::OperationPolicy { api, operation },
        ["apis", api, TAGS_LIST] => Entry::ApiTags { api },
        ["apis", api, "tags", tag, API_TAG_INFORMATION] => Entry::ApiTag { api, tag },
        ["apis", _, "diagnostics", ..] => Entry::NotModelled("API diagnostics are not modelled".into()),
        ["apis", _, "schemas", ..] => {
            Entry::NotModelled("API schemas come from the specification; separate schema files are not read".into())
        }
        ["products", product, POLICY_FILE] => Entry::ProductPolicy { product },
        ["products", product, "apis.json"] => Entry::ProductApis { product },
        ["products", product, "apis", api, PRODUCT_API_INFORMATION] => Entry::ProductApi { product, api },
        ["products", product, "groups.json"] => Entry::ProductGroups { product },
        ["products", product, "groups", group, PRODUCT_GROUP_INFORMATION] => Entry::ProductGroup { product, group },
        ["products", product, TAGS_LIST] => Entry::ProductTags { product },
        ["policy fragments", fragment, POLICY_FILE] => Entry::FragmentPolicy { fragment },
        ["groups", group, GROUP_USERS_LIST] => Entry::GroupUsers { group },
        [folder, id, file] => simple(folder, id, file),
        [folder, ..] => not_modelled(folder),
        [] => Entry::NotModelled("not a file of the APIOps layout".into()),
    }
}

fn specification<'a>(api: &'a str, file: &str) -> Entry<'a> {
    match file.rsplit_once('.').map(|(_, extension)| extension) {
        Some("yaml" | "yml" | "json") => Entry::Specification { api },
        Some(other) => Entry::NotModelled(format!(
            "{} specifications are not imported (only OpenAPI): the API keeps no operations from it",
            other.to_ascii_uppercase()
        )),
        None => Entry::NotModelled("a specification without an extension is not read".into()),
    }
}

fn simple<'a>(folder: &str, id: &'a str, file: &str) -> Entry<'a> {
    match SIMPLE.iter().find(|(name, files, _)| *name == folder && files.contains(&file)) {
        Some((_, _, collection)) => Entry::Simple { collection, id },
        None => not_modelled(folder),
    }
}

fn not_modelled(folder: &str) -> Entry<'static> {
    let reason = NOT_MODELLED.iter().find(|(name, _)| *name == folder).map(|(_, reason)| *reason);
    Entry::NotModelled(reason.unwrap_or("not a file of the APIOps layout").to_owned())
}

/// The folder and information file an export writes for a resource of `collection`.
pub(super) fn simple_files(collection: &str) -> Option<(&'static str, &'static str)> {
    SIMPLE.iter().find(|(_, _, name)| *name == collection).map(|(folder, files, _)| (*folder, files[0]))
}
