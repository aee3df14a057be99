//! Resource paths as APIM names them, relative to the service: `/apis/{apiId}`,
//! `/apis/{apiId};rev=2/operations/{operationId}`, `/products/{pid}/apis/{apiId}`, `/policies/policy`.
//!
//! A path is a resource's identity in the store and in the management API. Parsing one tells its
//! [`Kind`], the resource it belongs to (deleted with it) and, for links, the resource it points
//! at (deleted with it too).

use std::fmt;

/// Longest identifier: the config directory uses identifiers as file names, which keeps them
/// short and portable (APIM allows 256; its generated ids are 24 hex digits).
pub const ID_CHARS_MAX: usize = 80;
/// Highest revision number (APIM: `apiRevision` is 1 to 100 characters; we keep the number small).
pub const REVISION_MAX: u32 = 9999;
/// The only id a policy document has at any scope.
pub const POLICY_ID: &str = "policy";

/// What a resource path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Api,
    Operation,
    /// An API's policy document (`/apis/{id}/policies/policy`).
    ApiPolicy,
    /// An operation's policy document.
    OperationPolicy,
    /// A release of an API (`/apis/{id}/releases/{rid}`).
    Release,
    /// A schema of an API (`/apis/{id}/schemas/{sid}`), from an imported definition.
    Schema,
    Product,
    /// An API in a product (`/products/{pid}/apis/{apiId}`).
    ProductApi,
    /// A group that sees a product (`/products/{pid}/groups/{gid}`).
    ProductGroup,
    ProductPolicy,
    Subscription,
    User,
    Group,
    /// A user in a group (`/groups/{gid}/users/{uid}`).
    GroupUser,
    VersionSet,
    NamedValue,
    PolicyFragment,
    /// The global policy document (`/policies/policy`).
    GlobalPolicy,
    Backend,
    Tag,
    /// A tag on an API, an operation or a product (`/apis/{id}/tags/{tag}` ...).
    TagLink,
}

impl Kind {
    /// The `type` of the resource in APIM's envelope (`Microsoft.ApiManagement/service/apis`).
    pub fn arm_type(self) -> &'static str {
        match self {
            Kind::Api => "Microsoft.ApiManagement/service/apis",
            Kind::Operation => "Microsoft.ApiManagement/service/apis/operations",
            Kind::ApiPolicy => "Microsoft.ApiManagement/service/apis/policies",
            Kind::OperationPolicy => "Microsoft.ApiManagement/service/apis/operations/policies",
            Kind::Release => "Microsoft.ApiManagement/service/apis/releases",
            Kind::Schema => "Microsoft.ApiManagement/service/apis/schemas",
            Kind::Product => "Microsoft.ApiManagement/service/products",
            Kind::ProductApi => "Microsoft.ApiManagement/service/products/apis",
            Kind::ProductGroup => "Microsoft.ApiManagement/service/products/groups",
            Kind::ProductPolicy => "Microsoft.ApiManagement/service/products/policies",
            Kind::Subscription => "Microsoft.ApiManagement/service/subscriptions",
            Kind::User => "Microsoft.ApiManagement/service/users",
            Kind::Group => "Microsoft.ApiManagement/service/groups",
            Kind::GroupUser => "Microsoft.ApiManagement/service/groups/users",
            Kind::VersionSet => "Microsoft.ApiManagement/service/apiVersionSets",
            Kind::NamedValue => "Microsoft.ApiManagement/service/namedValues",
            Kind::PolicyFragment => "Microsoft.ApiManagement/service/policyFragments",
            Kind::GlobalPolicy => "Microsoft.ApiManagement/service/policies",
            Kind::Backend => "Microsoft.ApiManagement/service/backends",
            Kind::Tag => "Microsoft.ApiManagement/service/tags",
            Kind::TagLink => "Microsoft.ApiManagement/service/tags/resources",
        }
    }

    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Operation => "operation",
            Kind::ApiPolicy => "apiPolicy",
            Kind::OperationPolicy => "operationPolicy",
            Kind::Release => "release",
            Kind::Schema => "schema",
            Kind::Product => "product",
            Kind::ProductApi => "productApi",
            Kind::ProductGroup => "productGroup",
            Kind::ProductPolicy => "productPolicy",
            Kind::Subscription => "subscription",
            Kind::User => "user",
            Kind::Group => "group",
            Kind::GroupUser => "groupUser",
            Kind::VersionSet => "apiVersionSet",
            Kind::NamedValue => "namedValue",
            Kind::PolicyFragment => "policyFragment",
            Kind::GlobalPolicy => "globalPolicy",
            Kind::Backend => "backend",
            Kind::Tag => "tag",
            Kind::TagLink => "tagLink",
        }
    }

    /// Whether resources of this kind are policy documents (`{value, format}`).
    pub fn is_policy(self) -> bool {
        matches!(self, Kind::ApiPolicy | Kind::OperationPolicy | Kind::ProductPolicy | Kind::GlobalPolicy)
    }

    /// Whether resources of this kind only link two others (no properties of their own).
    pub fn is_link(self) -> bool {
        matches!(self, Kind::ProductApi | Kind::ProductGroup | Kind::GroupUser | Kind::TagLink)
    }
}

/// Why a path is not a resource path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{0:?} is not a resource path (expected e.g. /apis/{{apiId}}, /products/{{productId}}/apis/{{apiId}})")]
    Unknown(String),
    #[error(
        "{id:?} is not a valid id: 1 to {ID_CHARS_MAX} letters, digits, '-', '_' or '.', starting with a letter or digit"
    )]
    BadId { id: String },
    #[error("{0:?} is not a valid revision: use ;rev=N with N from 1 to {REVISION_MAX}")]
    BadRevision(String),
}

/// A parsed resource path. Its text is canonical: parsing it again gives the same path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePath {
    text: String,
    kind: Kind,
    /// Byte length of the parent's path within `text`, for child resources.
    parent_len: Option<usize>,
    /// The resource a link points at (`/apis/{id}` for `/products/{pid}/apis/{id}`).
    target: Option<String>,
}

impl ResourcePath {
    /// Parses `text` (no query string, no trailing slash).
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let segments: Vec<&str> = match text.strip_prefix('/') {
            Some(rest) if !rest.is_empty() => rest.split('/').collect(),
            _ => return Err(PathError::Unknown(text.to_owned())),
        };
        for (index, segment) in segments.iter().enumerate() {
            // Odd positions are ids (collection, id, collection, id ...); the API id may carry ;rev=N.
            if index % 2 == 1 {
                check_id(segment, index == 1 && segments[0] == "apis")?;
            }
        }
        let (kind, parent_segments, target) = classify(&segments).ok_or_else(|| PathError::Unknown(text.to_owned()))?;
        let parent_len = parent_segments.map(|count| segments[..count].iter().map(|s| s.len() + 1).sum());
        Ok(Self { text: text.to_owned(), kind, parent_len, target })
    }

    /// The path of the resource with `kind` and ids, e.g. `of(Kind::Api, &["echo"])`.
    pub fn of(collection: &str, id: &str) -> Result<Self, PathError> {
        Self::parse(&format!("/{collection}/{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The resource this one belongs to and is deleted with (`/apis/{id}` for its operations).
    pub fn parent(&self) -> Option<&str> {
        self.parent_len.map(|len| &self.text[..len])
    }

    /// The resource a link points at (and is deleted with).
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// The last segment: the resource's name in APIM's envelope (`echo;rev=2`, `policy`).
    pub fn name(&self) -> &str {
        self.text.rsplit('/').next().unwrap_or_default()
    }

    /// The segments of the path (`["apis", "echo", "operations", "get"]`).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.text[1..].split('/')
    }

    /// For a path under an API, the API's id without `;rev=N` and the revision it names, if any.
    pub fn api(&self) -> Option<(&str, Option<u32>)> {
        let mut segments = self.segments();
        if segments.next() != Some("apis") {
            return None;
        }
        let id = segments.next()?;
        Some(split_revision(id))
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits `echo;rev=3` into `("echo", Some(3))`; an id without `;rev=` is the current revision.
pub fn split_revision(id: &str) -> (&str, Option<u32>) {
    match id.split_once(";rev=") {
        Some((base, revision)) => (base, revision.parse().ok()),
        None => (id, None),
    }
}

/// Whether `id` is a valid resource id (the config directory's rule: it becomes a file name).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= ID_CHARS_MAX
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn check_id(segment: &str, may_have_revision: bool) -> Result<(), PathError> {
    let (id, revision) = match segment.split_once(";rev=") {
        Some((id, revision)) if may_have_revision => (id, Some(revision)),
        _ => (segment, None),
    };
    if !is_valid_id(id) {
        return Err(PathError::BadId { id: segment.to_owned() });
    }
    if let Some(revision) = revision {
        let valid = !revision.starts_with('0')
            && revision.bytes().all(|b| b.is_ascii_digit())
            && revision.parse::<u32>().is_ok_and(|n| (1..=REVISION_MAX).contains(&n));
        if !valid {
            return Err(PathError::BadRevision(segment.to_owned()));
        }
    }
    Ok(())
}

/// The kind of `segments`, how many leading segments are its parent, and its link target.
fn classify(segments: &[&str]) -> Option<(Kind, Option<usize>, Option<String>)> {
    let plain = |kind| Some((kind, None, None));
    let child = |kind, parent| Some((kind, Some(parent), None));
    let link = |kind, parent, target: String| Some((kind, Some(parent), Some(target)));
    let no_revision = |id: &str| !id.contains(";rev=");
    match segments {
        ["apis", _] => plain(Kind::Api),
        ["apis", _, "operations", _] => child(Kind::Operation, 2),
        ["apis", _, "policies", POLICY_ID] => child(Kind::ApiPolicy, 2),
        ["apis", _, "operations", _, "policies", POLICY_ID] => child(Kind::OperationPolicy, 4),
        ["apis", id, "releases", _] if no_revision(id) => child(Kind::Release, 2),
        ["apis", _, "schemas", _] => child(Kind::Schema, 2),
        ["apis", _, "tags", tag] => link(Kind::TagLink, 2, format!("/tags/{tag}")),
        ["apis", _, "operations", _, "tags", tag] => link(Kind::TagLink, 4, format!("/tags/{tag}")),
        ["products", _] => plain(Kind::Product),
        ["products", _, "apis", api] if no_revision(api) => link(Kind::ProductApi, 2, format!("/apis/{api}")),
        ["products", _, "groups", group] => link(Kind::ProductGroup, 2, format!("/groups/{group}")),
        ["products", _, "policies", POLICY_ID] => child(Kind::ProductPolicy, 2),
        ["products", _, "tags", tag] => link(Kind::TagLink, 2, format!("/tags/{tag}")),
        ["subscriptions", _] => plain(Kind::Subscription),
        ["users", _] => plain(Kind::User),
        ["groups", _] => plain(Kind::Group),
        ["groups", _, "users", user] => link(Kind::GroupUser, 2, format!("/users/{user}")),
        ["apiVersionSets", _] => plain(Kind::VersionSet),
        ["namedValues", _] => plain(Kind::NamedValue),
        ["policyFragments", _] => plain(Kind::PolicyFragment),
        ["policies", POLICY_ID] => plain(Kind::GlobalPolicy),
        ["backends", _] => plain(Kind::Backend),
        ["tags", _] => plain(Kind::Tag),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_to_their_kind_parent_and_target() {
        let cases = [
            ("/apis/echo", Kind::Api, None, None),
            ("/apis/echo;rev=2", Kind::Api, None, None),
            ("/apis/echo;rev=2/operations/get", Kind::Operation, Some("/apis/echo;rev=2"), None),
            ("/apis/echo/policies/policy", Kind::ApiPolicy, Some("/apis/echo"), None),
            (
                "/apis/echo/operations/get/policies/policy",
                Kind::OperationPolicy,
                Some("/apis/echo/operations/get"),
                None,
            ),
            ("/products/starter/apis/echo", Kind::ProductApi, Some("/products/starter"), Some("/apis/echo")),
            ("/groups/partners/users/u1", Kind::GroupUser, Some("/groups/partners"), Some("/users/u1")),
            ("/apis/echo/tags/public", Kind::TagLink, Some("/apis/echo"), Some("/tags/public")),
            ("/policies/policy", Kind::GlobalPolicy, None, None),
            ("/apiVersionSets/v", Kind::VersionSet, None, None),
        ];
        for (text, kind, parent, target) in cases {
            let path = ResourcePath::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!((path.kind(), path.parent(), path.target()), (kind, parent, target), "{text}");
            assert_eq!(path.as_str(), text);
        }
    }

    #[test]
    fn bad_paths_say_why() {
        assert!(matches!(ResourcePath::parse("/apis"), Err(PathError::Unknown(_))));
        assert!(matches!(ResourcePath::parse("/apis/echo/"), Err(PathError::Unknown(_))));
        assert!(matches!(ResourcePath::parse("/apis/e cho"), Err(PathError::BadId { .. })));
        assert!(matches!(ResourcePath::parse("/apis/echo;rev=0"), Err(PathError::BadRevision(_))));
        assert!(matches!(ResourcePath::parse("/apis/echo;rev=01"), Err(PathError::BadRevision(_))));
        assert!(matches!(ResourcePath::parse("/products/p;rev=1"), Err(PathError::BadId { .. })));
        assert!(matches!(ResourcePath::parse("/apis/echo/policies/other"), Err(PathError::Unknown(_))));
        assert!(matches!(ResourcePath::parse("/products/p/apis/echo;rev=2"), Err(PathError::BadId { .. })));
    }

    #[test]
    fn revisions_split_off_the_api_id() {
        assert_eq!(split_revision("echo;rev=3"), ("echo", Some(3)));
        assert_eq!(split_revision("echo"), ("echo", None));
        let path = ResourcePath::parse("/apis/echo;rev=3/operations/get").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path.api(), Some(("echo", Some(3))));
        assert_eq!(path.name(), "get");
    }
}
