//! The route table: every path of the management API, what answers it and what it returns.
//!
//! The dispatcher matches requests against it and the OpenAPI document is generated from it, so
//! the document lists exactly the routes that exist.

use crate::resource::Kind;

/// How a list is made from the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    /// Every resource of a top-level kind (`/products`); for APIs, the current revisions only.
    Top(Kind),
    /// The resources of a kind below the request path (`/apis/{id}/operations/...`).
    Children(Kind),
    /// The links below the request path, shown as the resources they point at.
    Targets(Kind),
    /// `/apis/{id}/revisions`: APIM's revision view.
    Revisions,
    /// `/apis/{id}/products`: the products that hold the API.
    ApiProducts,
    /// `/products/{pid}/subscriptions`: subscriptions scoped to the product.
    ProductSubscriptions,
    /// `/users/{uid}/subscriptions`: subscriptions the user owns.
    UserSubscriptions,
    /// `/users/{uid}/groups`: the groups the user is in.
    UserGroups,
    /// `/apiVersionSets/{id}/apis`: the APIs of the version set.
    VersionSetApis,
    /// `/changes`: the audit log, newest first.
    Changes,
}

/// `POST` actions on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    ListSecrets,
    RegeneratePrimaryKey,
    RegenerateSecondaryKey,
    ListValue,
}

/// APIM's reports (`/reports/byApi` ...), from [`crate::analytics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    Api,
    Operation,
    Product,
    Subscription,
    User,
    Time,
    Request,
    /// No geography is recorded: always an empty list.
    Geo,
}

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `GET` a list.
    List(Listing),
    /// `GET`, `HEAD`, `PUT`, `DELETE` and, unless a link, `PATCH` one resource.
    Item,
    /// `POST` an action on the resource the path names without its last segment.
    Action(Action),
    /// `GET` a report; below `/users/{userId}` for that user's calls only.
    Report(Report),
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    /// The path, with `{name}` for each id (OpenAPI's template syntax).
    pub template: &'static str,
    pub endpoint: Endpoint,
    /// The kind of the resources the route returns (a link's target kind for links).
    pub shows: Kind,
    /// The OpenAPI tag that groups the route.
    pub tag: &'static str,
}

impl Route {
    /// The methods the route answers.
    pub(crate) fn methods(&self) -> &'static [&'static str] {
        match self.endpoint {
            Endpoint::List(_) | Endpoint::Report(_) => &["GET", "HEAD"],
            Endpoint::Item if self.is_link() => &["GET", "HEAD", "PUT", "DELETE"],
            Endpoint::Item => &["GET", "HEAD", "PUT", "PATCH", "DELETE"],
            Endpoint::Action(_) => &["POST"],
        }
    }

    /// Whether the route's items are links (no properties of their own).
    pub(crate) fn is_link(&self) -> bool {
        self.endpoint == Endpoint::Item
            && crate::resource::ResourcePath::parse(&example_path(self.template)).is_ok_and(|p| p.kind().is_link())
    }

    /// The `{name}`s of the template, in order.
    pub(crate) fn parameters(&self) -> impl Iterator<Item = &'static str> {
        self.template.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
    }
}

/// The template with each `{name}` replaced by `x` (to learn its kind from the resource parser).
pub(crate) fn example_path(template: &str) -> String {
    template.split('/').map(|s| if s.starts_with('{') { "x" } else { s }).collect::<Vec<_>>().join("/")
}

const fn list(template: &'static str, listing: Listing, shows: Kind, tag: &'static str) -> Route {
    Route { template, endpoint: Endpoint::List(listing), shows, tag }
}

const fn item(template: &'static str, shows: Kind, tag: &'static str) -> Route {
    Route { template, endpoint: Endpoint::Item, shows, tag }
}

const fn action(template: &'static str, action: Action, shows: Kind, tag: &'static str) -> Route {
    Route { template, endpoint: Endpoint::Action(action), shows, tag }
}

const fn report(template: &'static str, report: Report) -> Route {
    Route { template, endpoint: Endpoint::Report(report), shows: Kind::Api, tag: "reports" }
}

use Listing::*;

/// Every route of the API, relative to the service.
pub(crate) const ROUTES: &[Route] = &[
    list("/apis", Top(Kind::Api), Kind::Api, "apis"),
    item("/apis/{apiId}", Kind::Api, "apis"),
    list("/apis/{apiId}/revisions", Revisions, Kind::Api, "apis"),
    list("/apis/{apiId}/products", ApiProducts, Kind::Product, "apis"),
    list("/apis/{apiId}/operations", Children(Kind::Operation), Kind::Operation, "operations"),
    item("/apis/{apiId}/operations/{operationId}", Kind::Operation, "operations"),
    list("/apis/{apiId}/policies", Children(Kind::ApiPolicy), Kind::ApiPolicy, "policies"),
    item("/apis/{apiId}/policies/policy", Kind::ApiPolicy, "policies"),
    list(
        "/apis/{apiId}/operations/{operationId}/policies",
        Children(Kind::OperationPolicy),
        Kind::OperationPolicy,
        "policies",
    ),
    item("/apis/{apiId}/operations/{operationId}/policies/policy", Kind::OperationPolicy, "policies"),
    list("/apis/{apiId}/releases", Children(Kind::Release), Kind::Release, "apis"),
    item("/apis/{apiId}/releases/{releaseId}", Kind::Release, "apis"),
    list("/apis/{apiId}/schemas", Children(Kind::Schema), Kind::Schema, "apis"),
    item("/apis/{apiId}/schemas/{schemaId}", Kind::Schema, "apis"),
    list("/apis/{apiId}/tags", Targets(Kind::TagLink), Kind::Tag, "tags"),
    item("/apis/{apiId}/tags/{tagId}", Kind::Tag, "tags"),
    list("/apis/{apiId}/operations/{operationId}/tags", Targets(Kind::TagLink), Kind::Tag, "tags"),
    item("/apis/{apiId}/operations/{operationId}/tags/{tagId}", Kind::Tag, "tags"),
    list("/products", Top(Kind::Product), Kind::Product, "products"),
    item("/products/{productId}", Kind::Product, "products"),
    list("/products/{productId}/apis", Targets(Kind::ProductApi), Kind::Api, "products"),
    item("/products/{productId}/apis/{apiId}", Kind::Api, "products"),
    list("/products/{productId}/groups", Targets(Kind::ProductGroup), Kind::Group, "products"),
    item("/products/{productId}/groups/{groupId}", Kind::Group, "products"),
    list("/products/{productId}/subscriptions", ProductSubscriptions, Kind::Subscription, "products"),
    list("/products/{productId}/policies", Children(Kind::ProductPolicy), Kind::ProductPolicy, "policies"),
    item("/products/{productId}/policies/policy", Kind::ProductPolicy, "policies"),
    list("/products/{productId}/tags", Targets(Kind::TagLink), Kind::Tag, "tags"),
    item("/products/{productId}/tags/{tagId}", Kind::Tag, "tags"),
    list("/subscriptions", Top(Kind::Subscription), Kind::Subscription, "subscriptions"),
    item("/subscriptions/{subscriptionId}", Kind::Subscription, "subscriptions"),
    action("/subscriptions/{subscriptionId}/listSecrets", Action::ListSecrets, Kind::Subscription, "subscriptions"),
    action(
        "/subscriptions/{subscriptionId}/regeneratePrimaryKey",
        Action::RegeneratePrimaryKey,
        Kind::Subscription,
        "subscriptions",
    ),
    action(
        "/subscriptions/{subscriptionId}/regenerateSecondaryKey",
        Action::RegenerateSecondaryKey,
        Kind::Subscription,
        "subscriptions",
    ),
    list("/users", Top(Kind::User), Kind::User, "users"),
    item("/users/{userId}", Kind::User, "users"),
    list("/users/{userId}/subscriptions", UserSubscriptions, Kind::Subscription, "users"),
    list("/users/{userId}/groups", UserGroups, Kind::Group, "users"),
    list("/groups", Top(Kind::Group), Kind::Group, "groups"),
    item("/groups/{groupId}", Kind::Group, "groups"),
    list("/groups/{groupId}/users", Targets(Kind::GroupUser), Kind::User, "groups"),
    item("/groups/{groupId}/users/{userId}", Kind::User, "groups"),
    list("/apiVersionSets", Top(Kind::VersionSet), Kind::VersionSet, "apiVersionSets"),
    item("/apiVersionSets/{versionSetId}", Kind::VersionSet, "apiVersionSets"),
    list("/apiVersionSets/{versionSetId}/apis", VersionSetApis, Kind::Api, "apiVersionSets"),
    list("/namedValues", Top(Kind::NamedValue), Kind::NamedValue, "namedValues"),
    item("/namedValues/{namedValueId}", Kind::NamedValue, "namedValues"),
    action("/namedValues/{namedValueId}/listValue", Action::ListValue, Kind::NamedValue, "namedValues"),
    list("/policyFragments", Top(Kind::PolicyFragment), Kind::PolicyFragment, "policies"),
    item("/policyFragments/{fragmentId}", Kind::PolicyFragment, "policies"),
    list("/policies", Top(Kind::GlobalPolicy), Kind::GlobalPolicy, "policies"),
    item("/policies/policy", Kind::GlobalPolicy, "policies"),
    list("/backends", Top(Kind::Backend), Kind::Backend, "backends"),
    item("/backends/{backendId}", Kind::Backend, "backends"),
    list("/tags", Top(Kind::Tag), Kind::Tag, "tags"),
    item("/tags/{tagId}", Kind::Tag, "tags"),
    list("/changes", Changes, Kind::Api, "changes"),
    report("/reports/byApi", Report::Api),
    report("/reports/byOperation", Report::Operation),
    report("/reports/byProduct", Report::Product),
    report("/reports/bySubscription", Report::Subscription),
    report("/reports/byUser", Report::User),
    report("/reports/byTime", Report::Time),
    report("/reports/byRequest", Report::Request),
    report("/reports/byGeo", Report::Geo),
    report("/users/{userId}/reports/byApi", Report::Api),
    report("/users/{userId}/reports/byOperation", Report::Operation),
    report("/users/{userId}/reports/byProduct", Report::Product),
    report("/users/{userId}/reports/bySubscription", Report::Subscription),
    report("/users/{userId}/reports/byTime", Report::Time),
    report("/users/{userId}/reports/byRequest", Report::Request),
];

/// The ARM prefix a request may carry before the service-relative path.
const SERVICE_PREFIX: [&str; 7] =
    ["subscriptions", "*", "resourceGroups", "*", "providers", "Microsoft.ApiManagement", "service"];

/// A matched request: its route and its resource path (ids percent-decoded).
#[derive(Debug)]
pub(crate) struct Matched {
    pub route: &'static Route,
    /// `/apis/echo;rev=2/operations/get`: the request path relative to the service.
    pub path: String,
}

/// Finds the route of `uri_path` (with or without the ARM service prefix).
pub(crate) fn find(uri_path: &str) -> Option<Matched> {
    let raw: Vec<&str> = uri_path.strip_prefix('/')?.split('/').collect();
    let segments = strip_service_prefix(&raw);
    let decoded: Vec<String> = segments.iter().map(|s| percent_decode(s)).collect::<Option<_>>()?;
    let route = ROUTES.iter().find(|route| matches(route.template, &decoded))?;
    Some(Matched { route, path: format!("/{}", decoded.join("/")) })
}

fn strip_service_prefix<'a, 'b>(segments: &'b [&'a str]) -> &'b [&'a str] {
    // `subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}/...`
    let prefixed = segments.len() > SERVICE_PREFIX.len() + 1
        && SERVICE_PREFIX.iter().zip(segments).all(|(want, got)| *want == "*" || want.eq_ignore_ascii_case(got));
    if prefixed { &segments[SERVICE_PREFIX.len() + 1..] } else { segments }
}

fn matches(template: &str, segments: &[String]) -> bool {
    let wanted: Vec<&str> = template[1..].split('/').collect();
    wanted.len() == segments.len()
        && wanted
            .iter()
            .zip(segments)
            .all(|(want, got)| if want.starts_with('{') { !got.is_empty() && !got.contains('/') } else { *want == got })
}

/// `%XX`-decodes one path segment; `None` when it is not valid UTF-8 or a `%` is malformed.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = segment.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourcePath;

    #[test]
    fn every_item_template_is_a_resource_path_of_its_kind_family() {
        for route in ROUTES.iter().filter(|r| r.endpoint == Endpoint::Item) {
            let path = ResourcePath::parse(&example_path(route.template));
            assert!(path.is_ok(), "{}", route.template);
        }
    }

    #[test]
    fn every_route_is_found_at_its_own_template() {
        for route in ROUTES {
            let found = find(&example_path(route.template)).unwrap_or_else(|| panic!("{}", route.template));
            assert_eq!(found.route.template, route.template);
        }
    }

    #[test]
    fn requests_match_with_and_without_the_service_prefix() {
        let found = find("/apis/echo%3Brev%3D2/operations/get").unwrap();
        assert_eq!(
            (found.route.template, found.path.as_str()),
            ("/apis/{apiId}/operations/{operationId}", "/apis/echo;rev=2/operations/get")
        );
        let prefixed =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim/subscriptions/k1";
        let found = find(prefixed).unwrap();
        assert_eq!(
            (found.route.template, found.path.as_str()),
            ("/subscriptions/{subscriptionId}", "/subscriptions/k1")
        );
        assert_eq!(find("/subscriptions/k1").unwrap().path, "/subscriptions/k1");
        assert!(find("/apis/echo/unknown").is_none());
        assert!(find("/apis/%zz").is_none());
        assert!(find("/apis/").is_none());
    }
}
