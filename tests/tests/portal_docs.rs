//! The developer portal's documentation, console and profile over real HTTP against
//! `portcullis up`: an API imported from OpenAPI, its reference and definition downloads, the
//! try-it console sending through the gateway with the member's key, the profile and closing an
//! account; and a matrix of every portal route against each kind of visitor.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed step fails the test")]

use portcullis_tests::backend::{ScriptedBackend, echo};
use portcullis_tests::management::Management;
use portcullis_tests::portal::{Page, Visitor, attribute_after, publish_pet_store, quickstart_with_portal};
use portcullis_tests::{Gateway, GatewayOptions, eventually, http};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

fn developer(management: &Management, id: &str, email: &str) {
    management.put(
        &format!("/users/{id}"),
        json!({"email": email, "firstName": id, "lastName": "Test", "state": "active", "password": PASSWORD}),
    );
    management.put(&format!("/groups/developers/users/{id}"), json!({}));
}

/// The answer shown on a try-it result page: the status cell's text.
fn try_status(page: &Page) -> String {
    let marker = "class=\"try-status\">";
    page.body.find(marker).map_or(String::new(), |at| {
        let rest = &page.body[at + marker.len()..];
        rest[..rest.find('<').unwrap_or(0)].to_owned()
    })
}

#[test]
fn an_imported_api_is_documented_downloadable_and_tried_through_the_gateway() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let management = Management::of(&gateway);
    let backend = ScriptedBackend::start(echo);
    publish_pet_store(&management, &format!("http://{}/api", backend.addr));
    developer(&management, "alice", "alice@example.com");
    developer(&management, "bob", "bob@example.com");
    let gateway_url = format!("http://{}", gateway.addr);

    // A guest reads the operations, code samples (a placeholder, never a key) and no console.
    let mut guest = Visitor::new(&gateway.portal_url);
    let page = guest.get("/apis/pets");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-operation=\"get-pet\"") && page.body.contains("data-operation=\"add-pet\""));
    assert!(page.body.contains(&format!("curl -X GET &#39;{gateway_url}/pets/pets/{{petId}}&#39;")), "{}", page.body);
    assert!(page.body.contains("requests.request(") && page.body.contains("await fetch("));
    assert!(page.body.contains("&lt;your key&gt;") && !page.body.contains("data-try"));

    // Downloads: OpenAPI 3 JSON and YAML, Swagger 2.0, each naming the gateway.
    let json_doc = guest.get("/apis/pets/openapi.json");
    let document: Value = serde_json::from_str(&json_doc.body).expect("the OpenAPI document parses");
    assert_eq!(document["openapi"], "3.0.1");
    assert_eq!(document["servers"][0]["url"], format!("{gateway_url}/pets"));
    assert_eq!(document["paths"]["/pets/{petId}"]["get"]["operationId"], "get-pet");
    assert_eq!(document["components"]["schemas"]["Pet"]["example"]["name"], "Rex");
    let yaml = guest.get("/apis/pets/openapi.yaml");
    assert!(yaml.body.contains("openapi: 3.0.1") && yaml.body.contains(&format!("url: {gateway_url}/pets")));
    let swagger: Value = serde_json::from_str(&guest.get("/apis/pets/swagger.json").body).unwrap();
    assert_eq!((swagger["swagger"].as_str(), swagger["basePath"].as_str()), (Some("2.0"), Some("/pets")));
    assert_eq!(guest.get("/apis/pets/wsdl.xml").status, 404);
    let raw = http::get(
        gateway.portal_url.trim_start_matches("http://").parse().unwrap(),
        "/developer/apis/pets?export=true",
        &[("Accept", "application/vnd.oai.openapi")],
    )
    .unwrap();
    assert_eq!(raw.status, 200);
    assert!(raw.text().contains("openapi: 3.0.1"), "the data API's export answers the Accept's format");
    assert!(raw.header("content-disposition").is_some_and(|v| v.contains("pets.openapi.yaml")));

    // The reference page loads the vendored viewer from the portal itself, and its licence.
    let reference = guest.get("/apis/pets/reference");
    assert!(reference.body.contains("/assets/vendor/swagger-ui/swagger-ui-bundle.js"), "{}", reference.body);
    assert_eq!(guest.get("/assets/vendor/swagger-ui/swagger-ui-bundle.js").status, 200);
    assert!(guest.get("/assets/vendor/swagger-ui/LICENSE").body.contains("Apache License"));

    // Signed in without a subscription: no console yet. Subscribed: the console offers the key.
    let mut alice = Visitor::new(&gateway.portal_url);
    alice.sign_in("alice@example.com", PASSWORD);
    assert!(!alice.get("/apis/pets").body.contains("data-try"));
    alice.get("/products/pets");
    assert_eq!(alice.post("/products/pets/subscribe", &[("name", "pets app")]).status, 303);
    let console = alice.get("/apis/pets");
    let choice = attribute_after(&console.body, "<option value=\"").expect("a key to choose");
    assert!(choice.ends_with(":primary"), "{choice}");
    let sid = choice.trim_end_matches(":primary").to_owned();
    let key =
        management.post(&format!("/subscriptions/{sid}/listSecrets")).json()["primaryKey"].as_str().unwrap().to_owned();
    assert!(!console.body.contains(&key), "the page never holds the key");

    // Try it: the portal sends through the gateway with the key in the API's header.
    let fields = [("key", choice.as_str()), ("path:petId", "rex 1"), ("query:verbose", "true")];
    let mut answer = None;
    eventually("the console's call gets 200 from the backend", || {
        alice.get("/apis/pets");
        let page = alice.post("/apis/pets/operations/get-pet/try", &fields);
        let ok = try_status(&page) == "200 OK";
        answer = Some(page);
        ok
    });
    let answer = answer.unwrap();
    assert!(answer.body.contains("target=/api/pets/rex%201?verbose=true"), "{}", answer.body);
    assert!(answer.body.contains(&format!("key={key}")), "the backend got the key: {}", answer.body);
    assert!(answer.body.contains(" ms</dd>") && answer.body.contains("<caption>Response headers</caption>"));
    alice.get("/apis/pets");
    let posted = alice.post("/apis/pets/operations/add-pet/try", &[("key", &choice), ("body", "{\"name\":\"Rex\"}")]);
    assert_eq!(try_status(&posted), "200 OK", "{}", posted.body);
    assert!(posted.body.contains("body={&quot;name&quot;:&quot;Rex&quot;}"), "{}", posted.body);

    // Refused: a missing path parameter; a key that is not the member's; a guest.
    alice.get("/apis/pets");
    let missing = alice.post("/apis/pets/operations/get-pet/try", &[("key", &choice)]);
    assert_eq!(missing.status, 400, "{}", missing.body);
    let mut bob = Visitor::new(&gateway.portal_url);
    bob.sign_in("bob@example.com", PASSWORD);
    bob.get("/apis/pets");
    let stolen = bob.post("/apis/pets/operations/get-pet/try", &[("key", &choice), ("path:petId", "1")]);
    assert_eq!(stolen.status, 400, "another member's subscription is not usable: {}", stolen.body);
    assert!(!stolen.body.contains(&key));
    guest.get("/signin");
    assert_eq!(guest.post("/apis/pets/operations/get-pet/try", &[("key", &choice), ("path:petId", "1")]).status, 400);
    assert_eq!(alice.post("/apis/pets/operations/nope/try", &[("key", &choice)]).status, 404);

    // Keys never reach the logs.
    assert!(!gateway.log().contains(&key), "the key is not logged");
}

#[test]
fn a_public_gateway_url_is_shown_while_the_console_sends_to_the_listener() {
    let config = quickstart_with_portal("gateway-url = \"https://api.example.com/\"\n");
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    let management = Management::of(&gateway);
    let backend = ScriptedBackend::start(echo);
    publish_pet_store(&management, &format!("http://{}/api", backend.addr));
    developer(&management, "dora", "dora@example.com");
    let mut dora = Visitor::new(&gateway.portal_url);
    let document: Value = serde_json::from_str(&dora.get("/apis/pets/openapi.json").body).unwrap();
    assert_eq!(document["servers"][0]["url"], "https://api.example.com/pets");
    assert!(dora.get("/apis/pets").body.contains("<code>https://api.example.com/pets</code>"));
    dora.sign_in("dora@example.com", PASSWORD);
    dora.get("/products/pets");
    assert_eq!(dora.post("/products/pets/subscribe", &[]).status, 303);
    let choice = attribute_after(&dora.get("/apis/pets").body, "<option value=\"").unwrap();
    eventually("the console reaches the gateway's listener", || {
        dora.get("/apis/pets");
        try_status(&dora.post("/apis/pets/operations/get-pet/try", &[("key", &choice), ("path:petId", "7")]))
            == "200 OK"
    });
}

#[test]
fn a_member_changes_name_and_password_and_closes_the_account() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let management = Management::of(&gateway);
    developer(&management, "carol", "carol@example.com");
    let mut carol = Visitor::new(&gateway.portal_url);
    carol.sign_in("carol@example.com", PASSWORD);
    let mut elsewhere = Visitor::new(&gateway.portal_url);
    elsewhere.sign_in("carol@example.com", PASSWORD);

    // Name.
    let profile = carol.get("/profile");
    assert_eq!(profile.status, 200);
    assert!(profile.body.contains("carol@example.com") && profile.body.contains("<label for=\"firstName\">"));
    assert_eq!(carol.post("/profile", &[("firstName", ""), ("lastName", "Test")]).status, 400);
    carol.get("/profile");
    assert_eq!(carol.post("/profile", &[("firstName", "Caroline"), ("lastName", "Herschel")]).status, 303);
    let user = management.get("/users/carol").json();
    assert_eq!(
        (user["properties"]["firstName"].as_str(), user["properties"]["lastName"].as_str()),
        (Some("Caroline"), Some("Herschel"))
    );

    // Password: the current one first; then every other session ends and this one goes on.
    let new_password = "another long passphrase";
    carol.get("/profile");
    let wrong = carol.post("/profile/password", &[("current", "not it at all"), ("password", new_password)]);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let changed = carol.post("/profile/password", &[("current", PASSWORD), ("password", new_password)]);
    assert_eq!((changed.status, changed.location.as_deref()), (303, Some("/profile?notice=password")));
    assert_eq!(carol.get("/profile").status, 200, "this browser stays signed in");
    assert_eq!(elsewhere.get("/profile").location.as_deref(), Some("/signin"), "the other session ended");

    // Close: the user and their subscriptions deleted (the key stops working), signed out.
    carol.get("/products/starter");
    assert_eq!(carol.post("/products/starter/subscribe", &[]).status, 303);
    let sid = attribute_after(&carol.get("/subscriptions").body, "data-subscription=\"").unwrap();
    let key =
        management.post(&format!("/subscriptions/{sid}/listSecrets")).json()["primaryKey"].as_str().unwrap().to_owned();
    let echo_status = || http::get(gateway.addr, "/echo/hello", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap().status;
    eventually("the key works", || echo_status() == 200);
    carol.get("/profile");
    assert_eq!(carol.post("/profile/close", &[("current", new_password)]).status, 400, "the box must be ticked");
    carol.get("/profile");
    let wrong = carol.post("/profile/close", &[("current", PASSWORD), ("confirm", "on")]);
    assert_eq!(wrong.status, 401, "the old password does not close it");
    let closed = carol.post("/profile/close", &[("current", new_password), ("confirm", "on")]);
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert!(closed.set_cookies.iter().any(|c| c.starts_with("portcullis_session=;")), "{:?}", closed.set_cookies);
    assert_eq!(management.get("/users/carol").status, 404);
    assert_eq!(management.get(&format!("/subscriptions/{sid}")).status, 404, "the subscription went with it");
    eventually("the closed account's key is refused", || echo_status() == 401);
    assert_eq!(carol.get("/subscriptions").location.as_deref(), Some("/signin"));
    carol.get("/signin");
    assert_eq!(carol.post("/signin", &[("email", "carol@example.com"), ("password", new_password)]).status, 401);
}

/// Who asks, in the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Owner,
    Other,
    /// A member of `administrators`: sees every published product, but another developer's
    /// subscriptions no more than anyone (the publisher console, not the portal, manages them).
    Administrator,
}

#[test]
fn every_portal_route_answers_each_kind_of_visitor_as_expected() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let management = Management::of(&gateway);
    developer(&management, "alice", "alice@example.com");
    developer(&management, "bob", "bob@example.com");
    let mut alice = Visitor::new(&gateway.portal_url);
    alice.sign_in("alice@example.com", PASSWORD);
    alice.get("/products/starter");
    alice.post("/products/starter/subscribe", &[("name", "alice app")]);
    let sid = attribute_after(&alice.get("/subscriptions").body, "data-subscription=\"").unwrap();
    let mut bob = Visitor::new(&gateway.portal_url);
    bob.sign_in("bob@example.com", PASSWORD);
    let mut anonymous = Visitor::new(&gateway.portal_url);
    developer(&management, "root", "root@example.com");
    management.put("/groups/administrators/users/root", json!({}));
    let mut root = Visitor::new(&gateway.portal_url);
    root.sign_in("root@example.com", PASSWORD);

    // (method, path, [anonymous, owner (alice), other developer (bob), administrator]); POSTs carry the
    // visitor's own valid CSRF token: what is tested is who may, not forgery (tests/portal.rs).
    let regenerate = format!("/subscriptions/{sid}/regenerate");
    let cancel = format!("/subscriptions/{sid}/cancel");
    let matrix: Vec<(&str, &str, [u16; 4])> = vec![
        ("GET", "/", [200, 200, 200, 200]),
        ("GET", "/products/starter", [200, 200, 200, 200]),
        ("GET", "/products/nope", [404, 404, 404, 404]),
        ("GET", "/apis/echo", [200, 200, 200, 200]),
        ("GET", "/apis/echo/reference", [200, 200, 200, 200]),
        ("GET", "/apis/echo/openapi.json", [200, 200, 200, 200]),
        ("GET", "/apis/echo/openapi.yaml", [200, 200, 200, 200]),
        ("GET", "/apis/echo/swagger.json", [200, 200, 200, 200]),
        ("GET", "/apis/nope", [404, 404, 404, 404]),
        ("GET", "/apis/nope/openapi.json", [404, 404, 404, 404]),
        ("GET", "/signup", [200, 200, 200, 200]),
        ("GET", "/signin", [200, 200, 200, 200]),
        ("GET", "/reset", [200, 200, 200, 200]),
        ("GET", "/reset/password?ticket=forged", [400, 400, 400, 400]),
        ("GET", "/confirm?ticket=forged", [400, 400, 400, 400]),
        ("GET", "/subscriptions", [303, 200, 200, 200]),
        ("GET", "/profile", [303, 200, 200, 200]),
        ("GET", "/developer/apis", [200, 200, 200, 200]),
        ("GET", "/developer/apis/echo", [200, 200, 200, 200]),
        ("GET", "/developer/apis/nope", [404, 404, 404, 404]),
        ("GET", "/developer/apis/echo/operations", [200, 200, 200, 200]),
        ("GET", "/developer/products", [200, 200, 200, 200]),
        ("GET", "/developer/users/alice/subscriptions", [401, 200, 404, 404]),
        ("GET", "/assets/portal.css", [200, 200, 200, 200]),
        ("GET", "/assets/nope.js", [404, 404, 404, 404]),
        ("GET", "/nowhere", [404, 404, 404, 404]),
        ("POST", "/products/nope/subscribe", [303, 404, 404, 404]),
        ("POST", "/apis/echo/operations/nope/try", [404, 404, 404, 404]),
        ("POST", &regenerate, [303, 303, 404, 404]),
        ("POST", "/profile", [303, 400, 400, 400]),
        ("POST", "/profile/password", [303, 400, 400, 400]),
        ("POST", "/profile/close", [303, 400, 400, 400]),
        ("POST", &cancel, [303, 303, 404, 404]),
        ("POST", "/signout", [303, 303, 303, 303]),
    ];
    let mut failures = Vec::new();
    for (method, path, expected) in &matrix {
        for (who, expected) in [Who::Anonymous, Who::Owner, Who::Other, Who::Administrator].into_iter().zip(expected) {
            let visitor = match who {
                Who::Anonymous => &mut anonymous,
                Who::Owner => &mut alice,
                Who::Other => &mut bob,
                Who::Administrator => &mut root,
            };
            let page = if *method == "GET" {
                visitor.get(path)
            } else {
                // Signing out ends the session: it is the last row.
                visitor.get("/signin");
                let fields: &[(&str, &str)] = if path.ends_with("/regenerate") { &[("key", "primary")] } else { &[] };
                visitor.post(path, fields)
            };
            if page.status != *expected {
                failures.push(format!("{method} {path} as {who:?}: {} (expected {expected})", page.status));
            }
            if matches!(who, Who::Other | Who::Administrator) {
                assert!(!page.body.contains(&sid) || path.contains(&sid), "{path} shows {who:?} alice's subscription");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let state = management.get(&format!("/subscriptions/{sid}")).json();
    assert_eq!(state["properties"]["state"], "cancelled", "only the owner's cancel went through");
}
