//! The management plane end to end: resources written through the management API over real
//! HTTP, into a real SQLite file, served by the gateway: products, users, subscriptions (state
//! changes, key regeneration), version sets by segment, query and header, revisions and a release;
//! If-Match races; and `kill -9` during a burst of writes loses no acknowledged write.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::time::Duration;

use portcullis_tests::http;
use portcullis_tests::management::Management;
use portcullis_tests::{Gateway, GatewayOptions, bins, eventually};
use serde_json::json;

fn call(gateway: &Gateway, path: &str, headers: &[(&str, &str)]) -> http::Response {
    http::get(gateway.addr, path, headers).unwrap()
}

/// A committed change reaches the data plane as the next snapshot, a moment after the API
/// answers: waits until `path` answers `status` (and, for 200, was forwarded to `backend_path`).
fn expect(gateway: &Gateway, path: &str, headers: &[(&str, &str)], status: u16, backend_path: Option<&str>) {
    let mut last = String::new();
    eventually(&format!("GET {path} to answer {status} via {backend_path:?} (last: {last})"), || {
        let response = call(gateway, path, headers);
        last = format!("{} {}", response.status, response.text());
        response.status == status
            && backend_path.is_none_or(|expected| {
                serde_json::from_slice::<serde_json::Value>(&response.body).is_ok_and(|body| body["path"] == expected)
            })
    });
}

/// The echo backend's base URL from the quickstart's named value.
const ECHO: &str = "{{echo-backend-url}}";

#[test]
fn a_product_user_and_subscription_made_through_the_api_serve_and_change_state() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let api = Management::of(&gateway);
    api.put("/apis/orders", json!({"displayName": "Orders", "path": "orders", "serviceUrl": format!("{ECHO}/orders")}));
    api.put("/products/basic", json!({"displayName": "Basic", "state": "published"}));
    api.put("/products/basic/apis/orders", json!({}));
    api.put("/users/ada", json!({"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}));
    let created = api.put(
        "/subscriptions/ada-basic",
        json!({"displayName": "Ada's", "scope": "/products/basic", "ownerId": "/users/ada", "state": "active"}),
    );
    assert!(
        created.json()["properties"].get("primaryKey").is_none_or(|k| k.is_null() || k == ""),
        "no secret in a PUT's answer"
    );
    let keys = api.post("/subscriptions/ada-basic/listSecrets").json();
    let primary = keys["primaryKey"].as_str().unwrap().to_owned();
    assert_eq!(primary.len(), 32);

    expect(&gateway, "/orders/1", &[("Ocp-Apim-Subscription-Key", &primary)], 200, Some("/orders/1"));

    let suspended = api.patch("/subscriptions/ada-basic", json!({"state": "suspended"}));
    assert_eq!(suspended.status, 200, "{}", suspended.text());
    expect(&gateway, "/orders/1", &[("Ocp-Apim-Subscription-Key", &primary)], 401, None);
    let refused = call(&gateway, "/orders/1", &[("Ocp-Apim-Subscription-Key", &primary)]);
    assert!(refused.text().contains("invalid subscription key"), "{}", refused.text());

    assert_eq!(api.patch("/subscriptions/ada-basic", json!({"state": "active"})).status, 200);
    assert_eq!(api.post("/subscriptions/ada-basic/regeneratePrimaryKey").status, 204);
    let new_primary =
        api.post("/subscriptions/ada-basic/listSecrets").json()["primaryKey"].as_str().unwrap().to_owned();
    assert_ne!(new_primary, primary);
    expect(&gateway, "/orders/1", &[("Ocp-Apim-Subscription-Key", &new_primary)], 200, None);
    assert_eq!(call(&gateway, "/orders/1", &[("Ocp-Apim-Subscription-Key", &primary)]).status, 401, "the old key");

    let audit = api.get("/changes").json();
    assert!(audit["value"].as_array().unwrap().iter().any(|change| change["actor"] == "portcullis-cli"), "{audit}");
}

#[test]
fn versions_by_segment_query_and_header_and_a_released_revision() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let api = Management::of(&gateway);
    let open = |path: &str, version_set: &str, version: Option<&str>, base: &str| {
        let mut properties = json!({"displayName": path, "path": path, "serviceUrl": format!("{ECHO}/{base}"),
                                    "subscriptionRequired": false, "apiVersionSetId": format!("/apiVersionSets/{version_set}")});
        if let Some(version) = version {
            properties["apiVersion"] = json!(version);
        }
        properties
    };
    api.put("/apiVersionSets/books", json!({"displayName": "Books", "versioningScheme": "Segment"}));
    api.put(
        "/apiVersionSets/maps",
        json!({"displayName": "Maps", "versioningScheme": "Query", "versionQueryName": "api-version"}),
    );
    api.put(
        "/apiVersionSets/cars",
        json!({"displayName": "Cars", "versioningScheme": "Header", "versionHeaderName": "Api-Version"}),
    );
    api.put("/apis/books", open("books", "books", None, "books-original"));
    api.put("/apis/books-v1", open("books", "books", Some("v1"), "books-v1"));
    api.put("/apis/maps-2024", open("maps", "maps", Some("2024"), "maps-2024"));
    api.put("/apis/cars-1", open("cars", "cars", Some("1"), "cars-1"));

    expect(&gateway, "/cars/x", &[("Api-Version", "1")], 200, Some("/cars-1/x"));
    expect(&gateway, "/books/x", &[], 200, Some("/books-original/x"));
    expect(&gateway, "/books/v1/x", &[], 200, Some("/books-v1/x"));
    // No such version: the Original's operations answer (APIM matches /books before /books/{version}).
    expect(&gateway, "/books/v9/x", &[], 200, Some("/books-original/v9/x"));
    expect(&gateway, "/maps/x?api-version=2024", &[], 200, Some("/maps-2024/x"));
    expect(&gateway, "/maps/x?api-version=1999", &[], 404, None);
    expect(&gateway, "/cars/x", &[], 404, None);

    // Revision 2 of v1 goes to another backend path; it answers with ;rev=2 only, until released.
    let mut revision = open("books", "books", Some("v1"), "books-v1-rev2");
    revision["apiRevision"] = json!("2");
    revision["isCurrent"] = json!(false);
    api.put("/apis/books-v1;rev=2", revision);
    expect(&gateway, "/books/v1;rev=2/x", &[], 200, Some("/books-v1-rev2/x"));
    expect(&gateway, "/books/v1/x", &[], 200, Some("/books-v1/x"));
    let revisions = api.get("/apis/books-v1/revisions").json();
    assert_eq!(revisions["count"], 2, "{revisions}");

    api.put("/apis/books-v1/releases/r2", json!({"apiId": "/apis/books-v1;rev=2", "notes": "faster"}));
    expect(&gateway, "/books/v1/x", &[], 200, Some("/books-v1-rev2/x"));
    expect(&gateway, "/books/v1;rev=1/x", &[], 200, Some("/books-v1/x"));
}

#[test]
fn if_match_lets_one_of_two_writers_win() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let api = Management::of(&gateway);
    api.put("/products/shared", json!({"displayName": "Shared"}));
    let etag = api.get("/products/shared").header("ETag").unwrap().to_owned();
    let first = api.request(
        "PATCH",
        "/products/shared",
        Some(&json!({"properties": {"displayName": "A"}})),
        &[("If-Match", &etag)],
    );
    let second = api.request(
        "PATCH",
        "/products/shared",
        Some(&json!({"properties": {"displayName": "B"}})),
        &[("If-Match", &etag)],
    );
    assert_eq!((first.status, second.status), (200, 412), "{} / {}", first.text(), second.text());
    assert_eq!(second.json()["error"]["code"], "PreconditionFailed");
    let missing = api.request("DELETE", "/products/shared", None, &[]);
    assert_eq!(missing.status, 400, "DELETE needs If-Match: {}", missing.text());
    let owned = api.request("DELETE", "/apis/echo", None, &[("If-Match", "*")]);
    assert_eq!(owned.status, 409, "the quickstart's API belongs to its config directory");
    assert!(owned.text().contains("apis/echo/api.toml"), "{}", owned.text());
}

#[test]
fn kill_9_during_a_burst_of_writes_loses_no_acknowledged_write() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let api = Management::of(&gateway);
    let writer = {
        let api = api.clone();
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            for n in 0..10_000 {
                let body = json!({"properties": {"displayName": format!("S{n}"), "scope": "/apis", "state": "active"}});
                let path = format!("/subscriptions/burst-{n}");
                let Ok(mut connection) = http::Connection::open(api.addr) else { break };
                let text = body.to_string();
                let request = format!(
                    "PUT {path} HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    api.token,
                    text.len()
                );
                match connection.round_trip(request.as_bytes()) {
                    Ok(response) if response.status == 201 => acknowledged.push(n),
                    _ => break,
                }
            }
            acknowledged
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    gateway.signal_control(libc::SIGKILL);
    let acknowledged = writer.join().unwrap();
    assert!(acknowledged.len() > 5, "the burst wrote something before the kill ({})", acknowledged.len());

    let out = portcullis_tests::TempDir::new("export");
    let exported = std::process::Command::new(bins::portcullis())
        .args(["export"])
        .arg(out.path().join("store"))
        .arg("--data-dir")
        .arg(gateway.data())
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    for n in &acknowledged {
        let file = out.path().join(format!("store/subscriptions/burst-{n}.toml"));
        assert!(file.is_file(), "acknowledged write {n} of {} is missing after kill -9", acknowledged.len());
    }
}

#[test]
fn an_imported_openapi_definition_serves_and_round_trips_through_export() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let api = Management::of(&gateway);
    let definition =
        std::fs::read_to_string(bins::repo_root().join("management/tests/fixtures/openapi/petstore-3.0.yaml")).unwrap();
    let imported = api.put(
        "/apis/petstore",
        json!({"format": "openapi", "value": definition, "path": "petstore", "serviceUrl": format!("{ECHO}/v3")}),
    );
    assert_eq!(imported.status, 201, "{}", imported.text());
    let operations = api.get("/apis/petstore/operations").json();
    assert!(operations["count"].as_u64().unwrap() >= 3, "{operations}");
    let ids: Vec<String> =
        operations["value"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_owned()).collect();
    assert!(ids.contains(&"updatepet".to_owned()), "APIM's operation ids: {ids:?}");

    api.put("/products/pets", json!({"displayName": "Pets", "state": "published"}));
    api.put("/products/pets/apis/petstore", json!({}));
    api.put("/subscriptions/pets", json!({"displayName": "Pets", "scope": "/products/pets", "state": "active"}));
    let key = api.post("/subscriptions/pets/listSecrets").json()["primaryKey"].as_str().unwrap().to_owned();
    expect(
        &gateway,
        "/petstore/pet/findByStatus?status=sold",
        &[("Ocp-Apim-Subscription-Key", &key)],
        200,
        Some("/v3/pet/findByStatus"),
    );
    // A path no operation of the definition matches.
    expect(&gateway, "/petstore/nothing-here", &[("Ocp-Apim-Subscription-Key", &key)], 404, None);

    let exported = api.get("/apis/petstore?export=true&format=openapi%2Bjson");
    assert_eq!(exported.status, 200, "{}", exported.text());
    let document = exported.json()["value"].clone();
    assert_eq!(document["servers"][0]["url"].as_str().unwrap(), format!("http://{}/petstore", gateway.addr));
    let again = api.put(
        "/apis/petstore-copy",
        json!({"format": "openapi+json", "value": document.to_string(), "path": "petstore-copy", "serviceUrl": format!("{ECHO}/v3")}),
    );
    assert_eq!(again.status, 201, "{}", again.text());
    let strip = |value: serde_json::Value| -> Vec<(String, serde_json::Value)> {
        value["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["name"].as_str().unwrap().to_owned(), o["properties"].clone()))
            .collect()
    };
    assert_eq!(
        strip(api.get("/apis/petstore-copy/operations").json()),
        strip(operations),
        "export then import: the same operations"
    );
}
