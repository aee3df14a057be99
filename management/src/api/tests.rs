use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request as HttpRequest, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::resource::{Kind, ResourcePath};
use crate::service::{Authority, Compiled, Compiler, Problem, State};
use crate::store::{Actor, Origin, SqliteStore, Write};

/// Refuses an API whose path is "bad", with a problem at line 3, column 7 of its policy.
struct Fake;

impl Compiler for Fake {
    fn compile(&mut self, state: &State) -> Result<Compiled, Vec<Problem>> {
        for api in state.of_kind(Kind::Api) {
            if api.properties["path"] == "bad" {
                let target = format!("{}/policies/policy", api.path);
                return Err(vec![Problem {
                    target,
                    message: "unknown policy <nope>".into(),
                    line: Some(3),
                    column: Some(7),
                }]);
            }
        }
        Ok(Box::new(()))
    }

    fn publish(&mut self, _compiled: Compiled) {}
}

struct Harness {
    router: Router,
    service: Arc<Mutex<Service>>,
    admin: String,
    reader: String,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Harness {
    fn new() -> Self {
        let mut service = Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(Fake)).unwrap().0;
        crate::seed_builtins(&mut service).unwrap();
        let admin = crate::tokens::create(service.store_mut(), "alice", None, false).unwrap();
        let reader = crate::tokens::create(service.store_mut(), "auditor", None, true).unwrap();
        let service = Arc::new(Mutex::new(service));
        let settings = ApiSettings { gateway_url: "https://gw.example".into(), ..ApiSettings::default() };
        Self { router: router(service.clone(), settings), service, admin, reader }
    }

    async fn send(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut request = HttpRequest::builder().method(method).uri(uri).header("host", "mgmt.test");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Reply { status, headers, body }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.send(method, uri, Some(&self.admin), &[], body).await
    }

    async fn with(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: Option<Value>) -> Reply {
        self.send(method, uri, Some(&self.admin), headers, body).await
    }
}

impl Reply {
    fn etag(&self) -> &str {
        self.headers.get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

fn api(path: &str) -> Option<Value> {
    Some(json!({"properties": {"displayName": path, "path": path, "serviceUrl": "http://backend"}}))
}

#[tokio::test]
async fn resources_come_back_in_apims_envelope_with_an_etag() {
    let h = Harness::new();
    let created = h.call("PUT", "/apis/echo?api-version=2024-05-01", api("echo")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["id"], "/apis/echo");
    assert_eq!(created.body["type"], "Microsoft.ApiManagement/service/apis");
    assert_eq!(created.body["name"], "echo");
    assert_eq!(created.body["properties"]["serviceUrl"], "http://backend");
    assert!(!created.etag().is_empty());
    let read = h.call("GET", "/apis/echo", None).await;
    assert_eq!((read.status, read.etag()), (StatusCode::OK, created.etag()));
    let head = h.call("HEAD", "/apis/echo", None).await;
    assert_eq!((head.status, head.etag(), &head.body), (StatusCode::OK, created.etag(), &Value::Null));
    let replaced = h.call("PUT", "/apis/echo", api("echo2")).await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_ne!(replaced.etag(), created.etag());
    let prefixed = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim/apis/echo";
    assert_eq!(h.call("GET", prefixed, None).await.body["properties"]["path"], "echo2");
    assert_eq!(h.call("GET", "/apis/nope", None).await.code(), "ResourceNotFound");
    assert_eq!(h.call("POST", "/apis/echo", None).await.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn lists_filter_and_page_with_a_next_link() {
    let h = Harness::new();
    for (id, name) in [("gold", "Gold"), ("silver", "Silver"), ("starter", "Starter")] {
        let body = json!({"properties": {"displayName": name}});
        assert_eq!(h.call("PUT", &format!("/products/{id}"), Some(body)).await.status, StatusCode::CREATED);
    }
    let first = h.call("GET", "/products?$top=2", None).await;
    assert_eq!((first.body["count"].as_u64(), first.body["value"].as_array().map(Vec::len)), (Some(3), Some(2)));
    let next = first.body["nextLink"].as_str().unwrap();
    assert!(next.starts_with("http://mgmt.test/products?") && next.contains("$skip=2"), "{next}");
    let last = h.call("GET", &next.replace("http://mgmt.test", ""), None).await;
    assert_eq!(last.body["value"][0]["name"], "starter");
    assert_eq!(last.body["nextLink"], Value::Null);
    let filtered = h
        .call("GET", "/products?$filter=startswith(properties/displayName,'s')%20and%20name%20ne%20'starter'", None)
        .await;
    assert_eq!(filtered.body["value"].as_array().unwrap().len(), 1, "{}", filtered.body);
    assert_eq!(filtered.body["value"][0]["name"], "silver");
    let bad = h.call("GET", "/products?$filter=primaryKey%20eq%20'x'", None).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "ValidationError"));
    assert_eq!(bad.body["error"]["details"][0]["target"], "$filter");
    assert_eq!(h.call("GET", "/products?$top=0", None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.call("GET", "/apis/none/operations", None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn patch_and_delete_need_if_match_and_a_stale_one_is_412() {
    let h = Harness::new();
    let etag = h.call("PUT", "/tags/t", Some(json!({"properties": {"displayName": "T"}}))).await.etag().to_owned();
    let patch = Some(json!({"properties": {"displayName": "U"}}));
    let missing = h.call("PATCH", "/tags/t", patch.clone()).await;
    assert_eq!(
        (missing.status, missing.body["error"]["details"][0]["target"].as_str()),
        (StatusCode::BAD_REQUEST, Some("If-Match"))
    );
    let patched = h.with("PATCH", "/tags/t", &[("if-match", &etag)], patch.clone()).await;
    assert_eq!((patched.status, &patched.body["properties"]["displayName"]), (StatusCode::OK, &json!("U")));
    let stale = h.with("PATCH", "/tags/t", &[("if-match", &etag)], patch).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "PreconditionFailed"));
    assert_eq!(h.call("DELETE", "/tags/t", None).await.status, StatusCode::BAD_REQUEST);
    let blank = h.with("PUT", "/tags/t", &[("if-match", " ")], Some(json!({"properties": {"displayName": "T"}}))).await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST, "a blank If-Match is refused even where it is optional");
    assert_eq!(h.with("DELETE", "/tags/t", &[("if-match", &etag)], None).await.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(h.with("DELETE", "/tags/t", &[("if-match", "*")], None).await.status, StatusCode::OK);
    assert_eq!(h.with("DELETE", "/tags/t", &[("if-match", "*")], None).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn tokens_are_required_and_read_only_ones_cannot_write() {
    let h = Harness::new();
    for token in [None, Some("pcm_0000"), Some("")] {
        let reply = h.send("GET", "/apis", token, &[], None).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "Unauthorized"), "{token:?}");
    }
    let sas =
        h.send("GET", "/apis", None, &[("authorization", &format!("SharedAccessSignature {}", h.admin))], None).await;
    assert_eq!(sas.status, StatusCode::OK);
    assert_eq!(h.send("GET", "/apis", Some(&h.reader), &[], None).await.status, StatusCode::OK);
    let write = h.send("PUT", "/apis/echo", Some(&h.reader), &[], api("echo")).await;
    assert_eq!((write.status, write.code()), (StatusCode::FORBIDDEN, "Forbidden"));
    let document = h.send("GET", "/openapi.json", None, &[], None).await;
    assert_eq!((document.status, &document.body["openapi"]), (StatusCode::OK, &json!("3.0.3")));
}

#[tokio::test]
async fn subscriptions_get_keys_and_a_state_that_changes_as_apim_allows() {
    let h = Harness::new();
    h.call("PUT", "/products/starter", Some(json!({"properties": {"displayName": "Starter"}}))).await;
    let body = json!({"properties": {"scope": "/products/starter", "ownerId": "/users/1", "displayName": "Mine"}});
    let created = h.call("PUT", "/subscriptions/s1", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let properties = &created.body["properties"];
    assert_eq!(properties["state"], "submitted");
    assert!(properties["createdDate"].is_string());
    assert!(properties.get("primaryKey").is_none() && properties.get("secondaryKey").is_none(), "{properties}");
    let listed = h.call("GET", "/subscriptions", None).await;
    assert!(!listed.body.to_string().contains("Key\""), "{}", listed.body);
    let secrets = h.call("POST", "/subscriptions/s1/listSecrets", None).await.body;
    let primary = secrets["primaryKey"].as_str().unwrap().to_owned();
    assert!(primary.len() == 32 && primary.bytes().all(|b| b.is_ascii_hexdigit()), "{primary}");
    assert_ne!(secrets["primaryKey"], secrets["secondaryKey"]);
    assert_eq!(
        h.send("POST", "/subscriptions/s1/listSecrets", Some(&h.reader), &[], None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(h.call("POST", "/subscriptions/s1/regeneratePrimaryKey", None).await.status, StatusCode::NO_CONTENT);
    let again = h.call("POST", "/subscriptions/s1/listSecrets", None).await.body;
    assert_ne!(again["primaryKey"], json!(primary));
    assert_eq!(again["secondaryKey"], secrets["secondaryKey"]);
    let activate = Some(json!({"properties": {"state": "active"}}));
    assert_eq!(h.with("PATCH", "/subscriptions/s1", &[("if-match", "*")], activate).await.status, StatusCode::OK);
    let keys = h.call("POST", "/subscriptions/s1/listSecrets", None).await.body;
    assert_eq!(keys, again, "a PATCH keeps the keys");
    let back = h
        .with("PATCH", "/subscriptions/s1", &[("if-match", "*")], Some(json!({"properties": {"state": "submitted"}})))
        .await;
    assert_eq!(
        (back.status, back.body["error"]["details"][0]["target"].as_str()),
        (StatusCode::BAD_REQUEST, Some("properties.state"))
    );
    assert_eq!(h.call("GET", "/users/1/subscriptions", None).await.body["count"], 1);
    assert_eq!(h.call("GET", "/products/starter/subscriptions", None).await.body["count"], 1);
}

#[tokio::test]
async fn other_secrets_are_write_only_too() {
    let h = Harness::new();
    let secret = json!({"properties": {"displayName": "backend-key", "value": "s3cret", "secret": true}});
    let created = h.call("PUT", "/namedValues/key", Some(secret)).await;
    assert_eq!((created.status, &created.body["properties"]["value"]), (StatusCode::CREATED, &Value::Null));
    assert_eq!(h.call("GET", "/namedValues/key", None).await.body["properties"]["value"], Value::Null);
    assert_eq!(h.call("POST", "/namedValues/key/listValue", None).await.body["value"], "s3cret");
    let renamed = json!({"properties": {"displayName": "backend-key2", "secret": true}});
    h.call("PUT", "/namedValues/key", Some(renamed)).await;
    assert_eq!(
        h.call("POST", "/namedValues/key/listValue", None).await.body["value"],
        "s3cret",
        "a PUT without value keeps it"
    );
    let user =
        json!({"properties": {"email": "dev@example.com", "firstName": "D", "lastName": "V", "password": "hunter2"}});
    let created = h.call("PUT", "/users/dev", Some(user.clone())).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert!(!h.call("GET", "/users/dev", None).await.body.to_string().contains("hunter2"));
    let stored = |service: &Service| service.state().get("/users/dev").unwrap().properties["password"].clone();
    let hashed = stored(&*h.service.lock().await);
    let hashed = hashed.as_str().unwrap().to_owned();
    assert!(crate::portal::password::verify("hunter2", &hashed), "stored as its argon2id hash: {hashed}");
    let patched = h.with("PATCH", "/users/dev", &[("If-Match", "*")], Some(json!({"properties": {"note": "n"}}))).await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(stored(&*h.service.lock().await), hashed.as_str(), "a write without a password keeps the hash as is");
    let twin = h.call("PUT", "/users/twin", Some(json!({"properties": {"email": "DEV@example.com"}}))).await;
    assert_eq!((twin.status, twin.code()), (StatusCode::CONFLICT, "Conflict"));
}

#[tokio::test]
async fn builtins_exist_and_cannot_be_deleted() {
    let h = Harness::new();
    let groups = h.call("GET", "/groups", None).await.body;
    let names: Vec<&str> = groups["value"].as_array().unwrap().iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, ["administrators", "developers", "guests"]);
    assert_eq!(h.call("GET", "/users/1/groups", None).await.body["value"][0]["name"], "administrators");
    assert_eq!(h.call("GET", "/groups/administrators/users", None).await.body["value"][0]["id"], "/users/1");
    let deleted = h.with("DELETE", "/groups/guests", &[("if-match", "*")], None).await;
    assert_eq!(deleted.status, StatusCode::CONFLICT);
    let renamed = h.call("PUT", "/groups/guests", Some(json!({"properties": {"displayName": "Visitors"}}))).await;
    assert_eq!(renamed.body["properties"]["builtIn"], true);
    assert!(!crate::seed_builtins(&mut *h.service.lock().await).unwrap(), "seeding twice writes nothing");
}

#[tokio::test]
async fn config_owned_resources_are_409_naming_the_file() {
    let h = Harness::new();
    {
        let mut service = h.service.lock().await;
        let origin = Origin::Config { file: "apis/echo/api.toml".into() };
        let path = ResourcePath::parse("/apis/echo").unwrap();
        let write = Write::Put { path, properties: json!({"path": "echo"}), origin };
        let actor = Actor { name: "apply".into(), action: "apply".into() };
        service.write(vec![write], &[], Authority::ConfigDirectory, &actor).unwrap();
    }
    let reply = h
        .call("PUT", "/apis/echo/operations/get", Some(json!({"properties": {"method": "GET", "urlTemplate": "/"}})))
        .await;
    assert_eq!((reply.status, reply.code()), (StatusCode::CONFLICT, "Conflict"));
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("apis/echo/api.toml"), "{}", reply.body);
}

#[tokio::test]
async fn invalid_changes_are_400_with_details() {
    let h = Harness::new();
    let refused = h.call("PUT", "/apis/echo", api("bad")).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::BAD_REQUEST, "ValidationError"));
    let detail = &refused.body["error"]["details"][0];
    assert_eq!(detail["target"], "/apis/echo/policies/policy");
    assert_eq!(detail["message"], "3:7: unknown policy <nope>");
    assert_eq!(h.call("GET", "/apis/echo", None).await.status, StatusCode::NOT_FOUND);
    let missing = h.call("PUT", "/apis/echo", Some(json!({"properties": {"displayName": "x"}}))).await;
    assert_eq!(missing.body["error"]["details"][0]["target"], "properties.path", "{}", missing.body);
    let typed = h.call("PUT", "/products/p", Some(json!({"properties": {"displayName": 3}}))).await;
    assert_eq!(typed.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.call("PUT", "/apis/e%20cho", api("x")).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        h.call("PUT", "/apis/none/operations/get", Some(json!({"properties": {"method": "GET", "urlTemplate": "/"}})))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.call("PUT", "/products/none/apis/none", None).await.status, StatusCode::NOT_FOUND);
    let huge = json!({"properties": {"displayName": "x".repeat(BODY_BYTES_MAX)}});
    let refused = h.call("PUT", "/tags/big", Some(huge)).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLarge"));
    let array = h
        .call("PUT", "/apis/echo", Some(json!({"properties": {"path": "e", "subscriptionKeyParameterNames": ["h"]}})))
        .await;
    let detail = &array.body["error"]["details"][0];
    assert_eq!(detail["target"], "properties.subscriptionKeyParameterNames", "serde alone would read the array");
}

#[tokio::test]
async fn policies_revisions_and_links_work_as_apim() {
    let h = Harness::new();
    h.call("PUT", "/apis/echo", api("echo")).await;
    let policy =
        json!({"properties": {"value": "<policies><inbound><base /></inbound></policies>", "format": "rawxml"}});
    assert_eq!(h.call("PUT", "/apis/echo/policies/policy", Some(policy)).await.status, StatusCode::CREATED);
    let raw = h.call("GET", "/apis/echo/policies/policy?format=rawxml", None).await;
    assert_eq!(raw.body["properties"]["value"], "<policies><inbound><base /></inbound></policies>");
    let bad_format = json!({"properties": {"value": "<policies/>", "format": "xml-link"}});
    assert_eq!(h.call("PUT", "/policies/policy", Some(bad_format)).await.status, StatusCode::BAD_REQUEST);
    let revision = h.call("PUT", "/apis/echo;rev=2", api("echo")).await;
    assert_eq!((revision.status, &revision.body["properties"]["apiRevision"]), (StatusCode::CREATED, &json!("2")));
    let revisions = h.call("GET", "/apis/echo/revisions", None).await.body;
    assert_eq!(revisions["count"], 2);
    let second = &revisions["value"][1];
    assert_eq!(
        (&second["apiId"], &second["isCurrent"], &second["privateUrl"]),
        (&json!("/apis/echo;rev=2"), &json!(false), &json!("https://gw.example/echo;rev=2"))
    );
    assert_eq!(h.call("GET", "/apis", None).await.body["count"], 1, "lists show current revisions only");
    h.call("PUT", "/products/starter", Some(json!({"properties": {"displayName": "Starter"}}))).await;
    let linked = h.call("PUT", "/products/starter/apis/echo", None).await;
    assert_eq!((linked.status, &linked.body["id"]), (StatusCode::CREATED, &json!("/apis/echo")));
    assert_eq!(h.call("GET", "/products/starter/apis", None).await.body["value"][0]["name"], "echo");
    assert_eq!(h.call("GET", "/apis/echo/products", None).await.body["value"][0]["name"], "starter");
    assert_eq!(h.call("DELETE", "/products/starter/apis/echo", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn releasing_a_revision_makes_it_current_with_its_children() {
    let h = Harness::new();
    let operation =
        |name: &str| Some(json!({"properties": {"displayName": name, "method": "GET", "urlTemplate": "/"}}));
    h.call("PUT", "/apis/echo", api("echo")).await;
    h.call("PUT", "/apis/echo/operations/old", operation("old")).await;
    h.call("PUT", "/apis/echo;rev=2", Some(json!({"properties": {"path": "echo", "description": "two"}}))).await;
    h.call("PUT", "/apis/echo;rev=2/operations/new", operation("new")).await;
    h.call("PUT", "/products/p", Some(json!({"properties": {"displayName": "P"}}))).await;
    h.call("PUT", "/products/p/apis/echo", None).await;
    let release = json!({"properties": {"apiId": "/apis/echo;rev=2", "notes": "two is out"}});
    let released = h.call("PUT", "/apis/echo/releases/r2", Some(release)).await;
    assert_eq!(released.status, StatusCode::CREATED, "{}", released.body);
    let current = h.call("GET", "/apis/echo", None).await.body;
    assert_eq!(
        (&current["properties"]["apiRevision"], &current["properties"]["description"]),
        (&json!("2"), &json!("two"))
    );
    assert_eq!(h.call("GET", "/apis/echo/operations", None).await.body["value"][0]["name"], "new");
    assert_eq!(h.call("GET", "/apis/echo;rev=1/operations", None).await.body["value"][0]["name"], "old");
    assert_eq!(h.call("GET", "/apis/echo;rev=2", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.call("GET", "/products/p/apis", None).await.body["count"], 1, "links to the API stay");
    assert_eq!(h.call("GET", "/apis/echo/releases", None).await.body["count"], 1);
    let revisions = h.call("GET", "/apis/echo/revisions", None).await.body;
    let current: Vec<(&Value, &Value)> =
        revisions["value"].as_array().unwrap().iter().map(|r| (&r["apiRevision"], &r["isCurrent"])).collect();
    assert_eq!(current, [(&json!("2"), &json!(true)), (&json!("1"), &json!(false))]);
}

#[tokio::test]
async fn the_audit_log_names_the_token() {
    let h = Harness::new();
    h.call("PUT", "/tags/a", Some(json!({"properties": {"displayName": "a"}}))).await;
    h.call("PUT", "/tags/b", Some(json!({"properties": {"displayName": "b"}}))).await;
    let log = h.send("GET", "/changes?$top=2", Some(&h.reader), &[], None).await.body;
    assert_eq!(log["value"][0]["actor"], "alice");
    assert_eq!(log["value"][0]["action"], "PUT /tags/b");
    assert_eq!(log["value"][1]["writes"], json!(["PUT /tags/a"]));
    assert!(log["nextLink"].as_str().unwrap().contains("$skip=2"), "the seed is a third change");
}

#[test]
fn the_document_lists_every_route_and_only_those() {
    let document = openapi();
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(paths.len(), routes::ROUTES.len());
    for route in routes::ROUTES {
        let item = paths[route.template].as_object().unwrap();
        let mut methods: Vec<String> = item.keys().map(|m| m.to_ascii_uppercase()).collect();
        methods.sort();
        let mut expected: Vec<String> = route.methods().iter().map(|m| m.to_string()).collect();
        expected.sort();
        assert_eq!(methods, expected, "{}", route.template);
    }
    let text = document.to_string();
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
}

#[tokio::test]
async fn a_revision_made_from_its_source_starts_as_a_copy() {
    let h = Harness::new();
    let operation =
        |name: &str| Some(json!({"properties": {"displayName": name, "method": "GET", "urlTemplate": "/"}}));
    h.call("PUT", "/apis/echo", api("echo")).await;
    h.call("PUT", "/apis/echo/operations/get", operation("get")).await;
    let revision =
        json!({"properties": {"path": "echo", "sourceApiId": "/apis/echo", "apiRevisionDescription": "try"}});
    let made = h.call("PUT", "/apis/echo;rev=3", Some(revision)).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(
        (&made.body["properties"]["apiRevision"], &made.body["properties"]["serviceUrl"]),
        (&json!("3"), &json!("http://backend"))
    );
    assert_eq!(h.call("GET", "/apis/echo;rev=3/operations", None).await.body["value"][0]["name"], "get");
    let again = json!({"properties": {"path": "echo", "sourceApiId": "/apis/missing"}});
    assert_eq!(h.call("PUT", "/apis/other;rev=2", Some(again)).await.status, StatusCode::NOT_FOUND, "no API to copy");
}
