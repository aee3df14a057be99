//! The OpenAPI 3 document of the management API, generated from the route table and from the
//! model's serde types (through schemars), so it cannot list a route that does not exist or a
//! property the API would read differently.

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use super::filter::FILTER_FIELDS;
use super::list::{PAGE_ITEMS_MAX, SKIP_MAX};
use super::reports::ORDERBY_FIELDS;
use super::reports::query::REPORT_FILTER_FIELDS;
use super::routes::{Action, Endpoint, Listing, ROUTES, Report, Route, example_path};
use crate::model;
use crate::resource::{ID_CHARS_MAX, Kind, ResourcePath};

/// The document, built once.
pub(super) fn document() -> &'static Value {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// Checks the `properties` of a PUT (or, with `patch`, a PATCH) of a `kind` resource against the
/// document's schema for them.
pub(super) fn conform(kind: Kind, patch: bool, properties: &Value) -> Result<(), String> {
    let document = document();
    let empty = Map::new();
    let components = document["components"]["schemas"].as_object().unwrap_or(&empty);
    let name = if patch {
        format!("{}Patch", component(kind))
    } else {
        properties_ref(kind)["$ref"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_owned()
    };
    let schema = components.get(&name).cloned().unwrap_or(Value::Bool(true));
    super::conform::check(properties, &schema, components, "properties")
}

fn build() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds = Map::new();
    for kind in KINDS {
        kinds.insert(component(*kind).to_owned(), properties_schema(&mut generator, *kind));
    }
    let mut schemas = generator.take_definitions(true);
    add_envelopes(&mut schemas);
    let mut paths = Map::new();
    for route in ROUTES {
        let mut item = Map::new();
        for method in route.methods() {
            item.insert(method.to_ascii_lowercase(), operation(route, method));
        }
        paths.insert(route.template.to_owned(), Value::Object(item));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Portcullis management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "APIM's management resources relative to the service (docs/management-api.md).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"sharedAccessSignature": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "sharedAccessSignature": {
                    "type": "apiKey", "in": "header", "name": "Authorization",
                    "description": "SharedAccessSignature <token>",
                },
            },
        },
    })
}

/// Kinds with properties of their own (links have none).
const KINDS: &[Kind] = &[
    Kind::Api,
    Kind::Operation,
    Kind::ApiPolicy,
    Kind::Release,
    Kind::Schema,
    Kind::Product,
    Kind::Subscription,
    Kind::User,
    Kind::Group,
    Kind::VersionSet,
    Kind::NamedValue,
    Kind::PolicyFragment,
    Kind::Backend,
    Kind::Tag,
];

/// The component name of a kind's envelope (`Api`); `{name}Properties`, `{name}Patch` and
/// `{name}List` go with it.
fn component(kind: Kind) -> &'static str {
    match kind {
        Kind::Api => "Api",
        Kind::Operation => "Operation",
        Kind::ApiPolicy | Kind::OperationPolicy | Kind::ProductPolicy | Kind::GlobalPolicy => "Policy",
        Kind::Release => "Release",
        Kind::Schema => "Schema",
        Kind::Product => "Product",
        Kind::Subscription => "Subscription",
        Kind::User => "User",
        Kind::Group => "Group",
        Kind::VersionSet => "ApiVersionSet",
        Kind::NamedValue => "NamedValue",
        Kind::PolicyFragment => "PolicyFragment",
        Kind::Backend => "Backend",
        Kind::Tag | Kind::TagLink => "Tag",
        Kind::ProductApi => "Api",
        Kind::ProductGroup => "Group",
        Kind::GroupUser => "User",
    }
}

fn properties_schema(generator: &mut SchemaGenerator, kind: Kind) -> Value {
    fn of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
        generator.subschema_for::<T>().to_value()
    }
    match kind {
        Kind::Api => of::<model::ApiProperties>(generator),
        Kind::Operation => of::<model::OperationProperties>(generator),
        Kind::Release => of::<model::ReleaseProperties>(generator),
        Kind::Schema => of::<model::SchemaProperties>(generator),
        Kind::Product => of::<model::ProductProperties>(generator),
        Kind::Subscription => of::<model::SubscriptionProperties>(generator),
        Kind::User => of::<model::UserProperties>(generator),
        Kind::Group => of::<model::GroupProperties>(generator),
        Kind::VersionSet => of::<model::VersionSetProperties>(generator),
        Kind::NamedValue => of::<model::NamedValueProperties>(generator),
        Kind::PolicyFragment => of::<model::FragmentProperties>(generator),
        Kind::Backend => of::<model::BackendProperties>(generator),
        Kind::Tag => of::<model::TagProperties>(generator),
        _ => of::<model::PolicyProperties>(generator),
    }
}

/// Envelopes, lists, patches and the fixed shapes (errors, revisions, changes, secrets).
fn add_envelopes(schemas: &mut Map<String, Value>) {
    for kind in KINDS {
        let name = component(*kind);
        let properties_ref = properties_ref(*kind);
        schemas.insert(
            name.to_owned(),
            json!({
                "type": "object",
                "required": ["id", "type", "name", "properties"],
                "properties": {
                    "id": {"type": "string"}, "type": {"type": "string"}, "name": {"type": "string"},
                    "properties": properties_ref,
                },
            }),
        );
        schemas.insert(format!("{name}List"), list_of(json!({"$ref": format!("#/components/schemas/{name}")})));
        let properties_name =
            properties_ref["$ref"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default();
        if let Some(mut patch) = schemas.get(properties_name).cloned() {
            if let Some(object) = patch.as_object_mut() {
                object.remove("required");
            }
            schemas.insert(format!("{name}Patch"), patch);
        }
    }
    schemas.insert("ApiRevisionList".to_owned(), list_of(revision_schema()));
    schemas.insert("ChangeList".to_owned(), list_of(change_schema()));
    schemas.insert("Error".to_owned(), error_schema());
    schemas.insert("ReportList".to_owned(), list_of(report_schema()));
    schemas.insert("RequestReportList".to_owned(), list_of(request_report_schema()));
}

/// APIM's `ReportRecordContract` (the fields Portcullis fills), plus latency percentiles.
fn report_schema() -> Value {
    let mut properties = Map::new();
    for text in ["name", "timestamp", "interval", "apiId", "operationId", "productId", "subscriptionId", "userId"] {
        properties.insert(text.to_owned(), json!({"type": "string"}));
    }
    for count in [
        "callCountSuccess",
        "callCountBlocked",
        "callCountFailed",
        "callCountOther",
        "callCountTotal",
        "bandwidth",
        "cacheHitCount",
        "cacheMissCount",
    ] {
        properties.insert(count.to_owned(), json!({"type": "integer", "minimum": 0}));
    }
    for time in ["api", "service"] {
        for statistic in ["Avg", "Min", "Max", "P50", "P95", "P99"] {
            properties.insert(format!("{time}Time{statistic}"), json!({"type": "number", "minimum": 0}));
        }
    }
    json!({"type": "object", "required": ["callCountTotal", "bandwidth", "apiTimeAvg"], "properties": properties})
}

/// APIM's `RequestReportRecordContract`.
fn request_report_schema() -> Value {
    let nullable = json!({"type": "string", "nullable": true});
    let text = json!({"type": "string"});
    let integer = json!({"type": "integer", "minimum": 0});
    let number = json!({"type": "number"});
    json!({
        "type": "object",
        "required": ["method", "url", "responseCode", "timestamp", "requestId"],
        "properties": {
            "apiId": nullable, "operationId": nullable, "productId": nullable, "userId": nullable,
            "subscriptionId": nullable, "method": text, "url": text, "ipAddress": text,
            "backendResponseCode": text, "responseCode": integer, "responseSize": integer,
            "requestSize": integer, "timestamp": text, "cache": {"type": "string", "enum": ["none", "hit", "miss"]},
            "apiTime": number, "serviceTime": number, "apiRegion": text, "requestId": text,
        },
    })
}

fn properties_ref(kind: Kind) -> Value {
    let name = match kind {
        Kind::Api => "ApiProperties",
        Kind::Operation => "OperationProperties",
        Kind::Release => "ReleaseProperties",
        Kind::Schema => "SchemaProperties",
        Kind::Product => "ProductProperties",
        Kind::Subscription => "SubscriptionProperties",
        Kind::User => "UserProperties",
        Kind::Group => "GroupProperties",
        Kind::VersionSet => "VersionSetProperties",
        Kind::NamedValue => "NamedValueProperties",
        Kind::PolicyFragment => "FragmentProperties",
        Kind::Backend => "BackendProperties",
        Kind::Tag => "TagProperties",
        _ => "PolicyProperties",
    };
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn list_of(item: Value) -> Value {
    json!({
        "type": "object",
        "required": ["value", "count"],
        "properties": {
            "value": {"type": "array", "items": item},
            "count": {"type": "integer", "minimum": 0},
            "nextLink": {"type": "string", "nullable": true},
        },
    })
}

fn revision_schema() -> Value {
    let text = json!({"type": "string"});
    let nullable = json!({"type": "string", "nullable": true});
    json!({
        "type": "object",
        "required": ["apiId", "apiRevision", "createdDateTime", "updatedDateTime", "privateUrl", "isOnline", "isCurrent"],
        "properties": {
            "apiId": text, "apiRevision": text, "createdDateTime": text, "updatedDateTime": text,
            "description": nullable, "privateUrl": text,
            "isOnline": {"type": "boolean"}, "isCurrent": {"type": "boolean"},
        },
    })
}

fn change_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "at", "actor", "action", "writes"],
        "properties": {
            "id": {"type": "integer", "minimum": 0},
            "at": {"type": "string"},
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "writes": {"type": "array", "items": {"type": "string"}},
        },
    })
}

fn error_schema() -> Value {
    let text = json!({"type": "string"});
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": text, "message": text,
                "details": {"type": "array", "items": {
                    "type": "object",
                    "required": ["code", "target", "message"],
                    "properties": {"code": text, "target": text, "message": text},
                }},
            },
        }},
    })
}

/// One operation of `route`.
fn operation(route: &Route, method: &str) -> Value {
    let mut parameters: Vec<Value> = route.parameters().map(|name| path_parameter(route, name)).collect();
    parameters.push(query("api-version", json!({"type": "string"}), "Accepted with any value (ARM clients send it)."));
    let mut responses = Map::new();
    let mut operation = Map::new();
    let shows = component(route.shows);
    match (route.endpoint, method) {
        (Endpoint::List(listing), _) => {
            parameters.extend(list_parameters(listing));
            let schema = match listing {
                Listing::Revisions => "ApiRevisionList".to_owned(),
                Listing::Changes => "ChangeList".to_owned(),
                _ => format!("{shows}List"),
            };
            responses.insert("200".into(), json_response("The list", &schema, false));
        }
        (Endpoint::Item, "GET" | "HEAD") => {
            if route.shows.is_policy() {
                parameters.push(query(
                    "format",
                    json!({"type": "string", "enum": model::POLICY_FORMATS}),
                    "Policy format of the reply.",
                ));
            }
            let body = method == "GET";
            responses.insert("200".into(), if body { json_response("The resource", shows, true) } else { etag_only() });
        }
        (Endpoint::Item, "PUT") => {
            parameters.push(if_match(false));
            if !route.is_link() {
                operation.insert("requestBody".into(), request_body(&format!("{}Properties", shows_properties(route))));
            }
            responses.insert("200".into(), json_response("Replaced", shows, true));
            let mut created = json_response("Created", shows, true);
            created["links"] = links_from(route);
            responses.insert("201".into(), created);
        }
        (Endpoint::Item, "PATCH") => {
            parameters.push(if_match(true));
            operation.insert("requestBody".into(), request_body(&format!("{shows}Patch")));
            responses.insert("200".into(), json_response("Updated", shows, true));
        }
        (Endpoint::Item, _) => {
            parameters.push(if_match(!route.is_link()));
            responses.insert("200".into(), json!({"description": "Deleted"}));
            responses.insert("204".into(), json!({"description": "There was nothing to delete"}));
        }
        (Endpoint::Action(action), _) => {
            let (status, response) = action_response(action);
            responses.insert(status.into(), response);
        }
        (Endpoint::Report(report), _) => {
            parameters.extend(report_parameters(report));
            let schema = if report == Report::Request { "RequestReportList" } else { "ReportList" };
            responses.insert("200".into(), json_response("The report", schema, false));
        }
    }
    for (status, description) in error_statuses(route, method) {
        responses.insert(status.into(), error_response(description));
    }
    operation.insert("operationId".into(), Value::String(operation_id(route, method)));
    operation.insert("tags".into(), json!([route.tag]));
    operation.insert("parameters".into(), Value::Array(parameters));
    operation.insert("responses".into(), Value::Object(responses));
    Value::Object(operation)
}

/// The `{x}Properties` component a PUT body carries (`Policy` → `PolicyProperties`...).
fn shows_properties(route: &Route) -> String {
    let path = ResourcePath::parse(&example_path(route.template));
    let kind = path.map(|p| p.kind()).unwrap_or(route.shows);
    properties_ref(kind)["$ref"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches("Properties")
        .to_owned()
}

/// OpenAPI links from a created resource to what can be done with it and below it (schemathesis
/// follows them in its stateful phase): the same ids, and the ETag as `If-Match`.
fn links_from(route: &Route) -> Value {
    let mut links = Map::new();
    let ids: Vec<&str> = route.parameters().collect();
    let below = format!("{}/", route.template);
    for target in ROUTES.iter().filter(|r| r.template == route.template || r.template.starts_with(&below)) {
        for method in
            target.methods().iter().filter(|m| **m != "HEAD" && !(target.template == route.template && **m == "PUT"))
        {
            let mut parameters = Map::new();
            for id in target.parameters().filter(|id| ids.contains(id)) {
                parameters.insert(format!("path.{id}"), Value::String(format!("$request.path.{id}")));
            }
            if target.template == route.template && matches!(*method, "PATCH" | "DELETE") {
                parameters.insert("header.If-Match".to_owned(), Value::String("$response.header.ETag".to_owned()));
            }
            let name = operation_id(target, method);
            links.insert(name.clone(), json!({"operationId": name, "parameters": parameters}));
        }
    }
    Value::Object(links)
}

fn list_parameters(listing: Listing) -> Vec<Value> {
    let mut parameters = vec![
        query(
            "$top",
            json!({"type": "integer", "minimum": 1, "maximum": PAGE_ITEMS_MAX}),
            "Items per page (default 100).",
        ),
        query("$skip", json!({"type": "integer", "minimum": 0, "maximum": SKIP_MAX}), "Items to skip."),
    ];
    if listing != Listing::Changes {
        let description = format!(
            "OData: eq, ne, contains(), startswith(), endswith(), and/or/not, on {}.",
            FILTER_FIELDS.join(", ")
        );
        parameters.push(query("$filter", json!({"type": "string"}), &description));
    }
    parameters
}

fn report_parameters(report: Report) -> Vec<Value> {
    let mut filter = query(
        "$filter",
        json!({"type": "string", "minLength": 1}),
        &format!(
            "Required: timestamp ge <start> and timestamp le <end> (RFC 3339), and eq on {}.",
            REPORT_FILTER_FIELDS[1..].join(", ")
        ),
    );
    filter["required"] = Value::Bool(true);
    let mut parameters = vec![
        filter,
        query(
            "$top",
            json!({"type": "integer", "minimum": 1, "maximum": PAGE_ITEMS_MAX}),
            "Rows per page (default 100).",
        ),
        query("$skip", json!({"type": "integer", "minimum": 0, "maximum": SKIP_MAX}), "Rows to skip."),
    ];
    if !matches!(report, Report::Request | Report::Geo) {
        let description = format!("field [asc|desc], comma-separated, on {}.", ORDERBY_FIELDS.join(", "));
        parameters.push(query("$orderby", json!({"type": "string"}), &description));
    }
    if report == Report::Time {
        let mut interval = query(
            "interval",
            json!({"type": "string", "pattern": "^[Pp]"}),
            "ISO 8601 duration, a non-zero multiple of 15 minutes (PT15M, PT1H, P1D).",
        );
        interval["required"] = Value::Bool(true);
        parameters.push(interval);
    }
    parameters
}

fn action_response(action: Action) -> (&'static str, Value) {
    let secret = json!({"type": "string", "nullable": true});
    match action {
        Action::ListSecrets => (
            "200",
            inline_response(
                "The keys",
                json!({"type": "object", "required": ["primaryKey", "secondaryKey"], "properties": {"primaryKey": secret, "secondaryKey": secret}}),
            ),
        ),
        Action::ListValue => (
            "200",
            inline_response(
                "The value",
                json!({"type": "object", "required": ["value"], "properties": {"value": secret}}),
            ),
        ),
        Action::RegeneratePrimaryKey | Action::RegenerateSecondaryKey => ("204", json!({"description": "Regenerated"})),
    }
}

fn error_statuses(route: &Route, method: &str) -> Vec<(&'static str, &'static str)> {
    let mut statuses = vec![("401", "No valid token"), ("404", "Not found")];
    let writes = matches!(method, "PUT" | "PATCH" | "DELETE" | "POST");
    if writes {
        statuses.push(("403", "The token is read-only"));
    }
    if writes && !matches!(route.endpoint, Endpoint::Action(Action::ListSecrets | Action::ListValue)) {
        statuses.push(("409", "The resource is owned by the config directory, built in, or conflicts"));
        statuses.push(("412", "If-Match names another version"));
    }
    statuses.push(("400", "Invalid request"));
    if matches!(method, "PUT" | "PATCH") {
        statuses.push(("413", "The body is too large"));
    }
    statuses
}

fn path_parameter(route: &Route, name: &str) -> Value {
    let id = format!("[A-Za-z0-9][A-Za-z0-9._-]{{0,{}}}", ID_CHARS_MAX - 1);
    let pattern =
        if accepts_revision(route, name) { format!("^{id}(;rev=[1-9][0-9]{{0,3}})?$") } else { format!("^{id}$") };
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "pattern": pattern}})
}

/// Whether the `{name}` of `route` may carry `;rev=N` (only an API's own id, not a link's or a release's).
fn accepts_revision(route: &Route, name: &str) -> bool {
    if name != "apiId" {
        return false;
    }
    let with_revision = route.template.replacen("{apiId}", "x;rev=2", 1);
    let resource = match route.endpoint {
        Endpoint::Item => example_path(&with_revision),
        _ => example_path(with_revision.rsplit_once('/').map_or("", |(owner, _)| owner)),
    };
    let parsed = ResourcePath::parse(&resource);
    // A list of children needs its owner to be a resource, and the children to take the revision too.
    match route.endpoint {
        Endpoint::List(Listing::Children(_) | Listing::Targets(_)) => {
            parsed.is_ok() && ResourcePath::parse(&example_path(&format!("{with_revision}/x"))).is_ok()
        }
        _ => parsed.is_ok(),
    }
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

fn if_match(required: bool) -> Value {
    json!({
        "name": "If-Match", "in": "header", "required": required,
        "schema": {"type": "string", "minLength": 1, "pattern": "\\S"},
        "description": "The ETag of the version read, or * for any.",
    })
}

fn request_body(component: &str) -> Value {
    json!({
        "required": true,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["properties"],
            "properties": {"properties": {"$ref": format!("#/components/schemas/{component}")}},
        }}},
    })
}

fn json_response(description: &str, component: &str, etag: bool) -> Value {
    let mut response = inline_response(description, json!({"$ref": format!("#/components/schemas/{component}")}));
    if etag {
        response["headers"] = json!({"ETag": {"schema": {"type": "string"}, "description": "The version"}});
    }
    response
}

fn etag_only() -> Value {
    json!({"description": "The resource exists", "headers": {"ETag": {"schema": {"type": "string"}}}})
}

fn inline_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn error_response(description: &str) -> Value {
    inline_response(description, json!({"$ref": "#/components/schemas/Error"}))
}

/// `GET /apis/{apiId}/operations` → `get_apis_apiId_operations`.
fn operation_id(route: &Route, method: &str) -> String {
    let path: String = route.template.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let path = path.split('_').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("_");
    format!("{}_{path}", method.to_ascii_lowercase())
}
