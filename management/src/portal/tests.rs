//! The portal's router without a socket: templates, CSRF, sign-up and confirmation.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::json;
use tower::ServiceExt as _;

use super::*;
use crate::service::AcceptAll;
use crate::store::SqliteStore;

struct Harness {
    router: Router,
    service: Arc<Mutex<Service>>,
    outbox: PathBuf,
}

fn harness(name: &str) -> Harness {
    let (mut service, _) = Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(AcceptAll)).unwrap();
    crate::seed_builtins(&mut service).unwrap();
    let service = Arc::new(Mutex::new(service));
    let outbox = std::env::temp_dir().join(format!("portcullis-portal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&outbox);
    let settings = PortalSettings::new("http://portal.test", "http://gateway.test", outbox.clone());
    let router = router(Arc::clone(&service), Sessions::in_memory().unwrap(), settings).unwrap();
    Harness { router, service, outbox }
}

struct Answer {
    status: StatusCode,
    cookies: Vec<String>,
    body: String,
}

async fn send(router: &Router, method: &str, uri: &str, cookie: Option<&str>, form: Option<&str>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let body = match form {
        Some(form) => {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(form.to_owned())
        }
        None => Body::empty(),
    };
    let response = router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let cookies =
        response.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, cookies, body: String::from_utf8_lossy(&bytes).into_owned() }
}

fn csrf_of(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).unwrap() + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn sign_up_needs_the_csrf_token_and_leaves_a_pending_user_and_a_mail() {
    let h = harness("signup");
    let form = send(&h.router, "GET", "/signup", None, None).await;
    assert_eq!(form.status, StatusCode::OK);
    let cookie = form.cookies.iter().find(|c| c.starts_with("portcullis_csrf=")).unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && !cookie.contains("Secure"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let token = csrf_of(&form.body);
    let fields = "email=ann%40example.com&firstName=Ann&lastName=Lee&password=long+enough+pass";

    let forged = send(&h.router, "POST", "/signup", Some(&cookie), Some(&format!("{fields}&csrf=00"))).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let no_cookie = send(&h.router, "POST", "/signup", None, Some(&format!("{fields}&csrf={token}"))).await;
    assert_eq!(no_cookie.status, StatusCode::FORBIDDEN);
    assert!(h.service.lock().await.state().of_kind(crate::resource::Kind::User).count() == 1, "only the administrator");

    let weak = send(
        &h.router,
        "POST",
        "/signup",
        Some(&cookie),
        Some(&format!("email=x&firstName=&lastName=L&password=short&csrf={token}")),
    )
    .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    assert!(weak.body.contains("aria-invalid=\"true\"") && weak.body.contains("Use at least"), "{}", weak.body);

    let done = send(&h.router, "POST", "/signup", Some(&cookie), Some(&format!("{fields}&csrf={token}"))).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let (id, properties) = {
        let service = h.service.lock().await;
        let user = service.state().of_kind(crate::resource::Kind::User).find(|u| u.path.name() != "1").unwrap().clone();
        assert!(service.state().get(&format!("/groups/developers/users/{}", user.path.name())).is_some());
        (user.path.name().to_owned(), user.properties)
    };
    assert_eq!(properties["state"], "pending");
    assert!(properties["password"].as_str().unwrap().starts_with("$argon2id$"), "stored hashed");

    let again = send(&h.router, "POST", "/signup", Some(&cookie), Some(&format!("{fields}&csrf={token}"))).await;
    assert_eq!(again.status, StatusCode::OK, "a taken address gets the same page");
    let mails: Vec<_> = std::fs::read_dir(&h.outbox).unwrap().collect();
    assert_eq!(mails.len(), 1, "no second mail for a taken address");
    let mail = std::fs::read_to_string(mails[0].as_ref().unwrap().path()).unwrap();
    let link = mail.split_whitespace().find(|w| w.starts_with("http://portal.test/confirm?ticket=")).unwrap();
    let confirmed = send(&h.router, "GET", link.trim_start_matches("http://portal.test"), None, None).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert_eq!(h.service.lock().await.state().get(&format!("/users/{id}")).unwrap().properties["state"], "active");
    std::fs::remove_dir_all(&h.outbox).unwrap();
}

#[tokio::test]
async fn pages_are_accessible_html_with_security_headers() {
    let h = harness("pages");
    for path in ["/", "/signin", "/signup", "/reset", "/nowhere"] {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = h.router.clone().oneshot(request).await.unwrap();
        let headers = response.headers().clone();
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let body = String::from_utf8_lossy(&response.into_body().collect().await.unwrap().to_bytes()).into_owned();
        assert!(body.starts_with("<!doctype html>\n<html lang=\"en\">"), "{path}");
        for landmark in ["<header", "<nav aria-label=\"Main\">", "<main id=\"main\"", "<footer", "class=\"skip\""] {
            assert!(body.contains(landmark), "{path} lacks {landmark}");
        }
        // Every input but hidden ones and buttons has a label.
        for id in body.match_indices("<input id=\"").map(|(at, m)| &body[at + m.len()..]) {
            let id = &id[..id.find('"').unwrap()];
            assert!(body.contains(&format!("<label for=\"{id}\"")), "{path}: input {id} has no label");
        }
    }
    assert_eq!(send(&h.router, "GET", "/nowhere", None, None).await.status, StatusCode::NOT_FOUND);
    let css = send(&h.router, "GET", "/assets/portal.css", None, None).await;
    assert!(css.status == StatusCode::OK && css.body.contains(":root"));
    assert_eq!(send(&h.router, "GET", "/assets/missing.js", None, None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_guest_sees_only_published_products_granted_to_guests() {
    let h = harness("catalogue");
    {
        let mut service = h.service.lock().await;
        let put = |path: &str, properties: serde_json::Value| {
            crate::service::put(crate::resource::ResourcePath::parse(path).unwrap(), properties)
        };
        let writes = vec![
            put("/apis/echo", json!({"displayName": "Echo API", "path": "echo", "serviceUrl": "http://b"})),
            put(
                "/apis/echo/operations/get",
                json!({"displayName": "Get it", "method": "GET", "urlTemplate": "/items/{id}",
                "templateParameters": [{"name": "id", "type": "string", "required": true}]}),
            ),
            put("/products/open", json!({"displayName": "Shown", "state": "published"})),
            put("/products/open/apis/echo", json!({})),
            put("/products/open/groups/guests", json!({})),
            put("/products/draft", json!({"displayName": "Draft", "state": "notPublished"})),
            put("/products/draft/groups/guests", json!({})),
            put("/apis/hidden", json!({"displayName": "Hidden API", "path": "hidden", "serviceUrl": "http://b"})),
            put("/products/draft/apis/hidden", json!({})),
            put("/products/devs", json!({"displayName": "Developers only", "state": "published"})),
            put("/products/devs/groups/developers", json!({})),
            put(
                "/products/xss",
                json!({"displayName": "<script>alert(\"x\")</script>", "state": "published",
                "description": "a & b 'quoted'"}),
            ),
            put("/products/xss/groups/guests", json!({})),
        ];
        let actor = crate::store::Actor { name: "test".into(), action: "seed".into() };
        service.write(writes, &[], crate::service::Authority::Store, &actor).unwrap();
    }
    let home = send(&h.router, "GET", "/", None, None).await;
    assert!(
        home.body.contains("Shown") && !home.body.contains("Draft") && !home.body.contains("Developers only"),
        "{}",
        home.body
    );
    assert_eq!(send(&h.router, "GET", "/products/devs", None, None).await.status, StatusCode::NOT_FOUND);
    // Names and descriptions are escaped (what a publisher writes never runs in a developer's browser).
    assert!(!home.body.contains("<script>"), "{}", home.body);
    assert!(home.body.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"), "{}", home.body);
    assert!(home.body.contains("a &amp; b &#39;quoted&#39;"), "{}", home.body);
    let api = send(&h.router, "GET", "/apis/echo", None, None).await;
    assert_eq!(api.status, StatusCode::OK);
    assert!(api.body.contains("/items/{id}") && api.body.contains("http://gateway.test/echo"), "{}", api.body);
    assert_eq!(send(&h.router, "GET", "/apis/echo;rev=1", None, None).await.status, StatusCode::NOT_FOUND);

    // Its definition downloads and the data API follow the same visibility.
    let document = send(&h.router, "GET", "/apis/echo/openapi.json", None, None).await;
    assert_eq!(document.status, StatusCode::OK);
    let document: serde_json::Value = serde_json::from_str(&document.body).unwrap();
    assert_eq!(document["servers"][0]["url"], "http://gateway.test/echo");
    assert_eq!(document["paths"]["/items/{id}"]["get"]["operationId"], "get");
    for path in ["/apis/hidden", "/apis/hidden/openapi.json", "/apis/hidden/reference", "/apis/echo/other.txt"] {
        assert_eq!(send(&h.router, "GET", path, None, None).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let apis: serde_json::Value =
        serde_json::from_str(&send(&h.router, "GET", "/developer/apis", None, None).await.body).unwrap();
    assert_eq!((apis["count"].as_u64(), apis["value"][0]["id"].as_str()), (Some(1), Some("/apis/echo")), "{apis}");
    assert_eq!(apis["value"][0]["properties"]["gatewayUrl"], "http://gateway.test/echo");
    let hidden = send(&h.router, "GET", "/developer/apis/hidden", None, None).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert!(hidden.body.contains("\"ResourceNotFound\""), "{}", hidden.body);
    // Search by name and by tag; the data API's `$filter=contains(name,'x')` and `tags[0]`.
    {
        let mut service = h.service.lock().await;
        let put = |path: &str, properties: serde_json::Value| {
            crate::service::put(crate::resource::ResourcePath::parse(path).unwrap(), properties)
        };
        let writes = vec![put("/tags/beta", json!({"displayName": "Beta"})), put("/apis/echo/tags/beta", json!({}))];
        let actor = crate::store::Actor { name: "test".into(), action: "tag".into() };
        service.write(writes, &[], crate::service::Authority::Store, &actor).unwrap();
    }
    let found = send(&h.router, "GET", "/?search=ECHO", None, None).await;
    assert!(
        found.body.contains("data-api=\"echo\"") && found.body.contains("<span class=\"tag\">Beta</span>"),
        "{}",
        found.body
    );
    let none = send(&h.router, "GET", "/?search=hidden", None, None).await;
    assert!(none.body.contains("No API matches") && !none.body.contains("data-api=\"hidden\""), "{}", none.body);
    assert!(send(&h.router, "GET", "/?tag=beta", None, None).await.body.contains("data-api=\"echo\""));
    assert!(send(&h.router, "GET", "/?tag=gamma", None, None).await.body.contains("No API matches"));
    let filtered = send(&h.router, "GET", "/developer/apis?$filter=contains(name,'nothing')", None, None).await;
    assert!(filtered.body.contains("\"count\":0"), "{}", filtered.body);
    let tagged = send(&h.router, "GET", "/developer/apis?tags%5B0%5D=beta", None, None).await;
    assert!(tagged.body.contains("\"count\":1"), "{}", tagged.body);
    // A guest reads code samples but gets no console.
    assert!(api.body.contains("curl -X GET &#39;http://gateway.test/echo/items/{id}&#39;"), "{}", api.body);
    assert!(!api.body.contains("data-try"));
}

#[tokio::test]
async fn an_api_page_shows_its_versions_side_by_side_and_its_change_log() {
    let h = harness("versions");
    {
        let mut service = h.service.lock().await;
        let put = |path: &str, properties: serde_json::Value| {
            crate::service::put(crate::resource::ResourcePath::parse(path).unwrap(), properties)
        };
        let writes = vec![
            put("/apiVersionSets/orders", json!({"displayName": "Orders", "versioningScheme": "Segment"})),
            put(
                "/apis/orders-v1",
                json!({"displayName": "Orders", "path": "orders", "serviceUrl": "http://b",
                "apiVersion": "v1", "apiVersionSetId": "/apiVersionSets/orders"}),
            ),
            put(
                "/apis/orders-v2",
                json!({"displayName": "Orders", "path": "orders", "serviceUrl": "http://b",
                "apiVersion": "v2", "apiVersionSetId": "/apiVersionSets/orders"}),
            ),
            put(
                "/apis/orders-v1/releases/first",
                json!({"apiId": "/apis/orders-v1;rev=1", "notes": "Orders can be listed."}),
            ),
            put("/products/shop", json!({"displayName": "Shop", "state": "published"})),
            put("/products/shop/apis/orders-v1", json!({})),
            put("/products/shop/apis/orders-v2", json!({})),
            put("/products/shop/groups/guests", json!({})),
        ];
        let actor = crate::store::Actor { name: "test".into(), action: "seed".into() };
        service.write(writes, &[], crate::service::Authority::Store, &actor).unwrap();
    }
    let v1 = send(&h.router, "GET", "/apis/orders-v1", None, None).await;
    assert_eq!(v1.status, StatusCode::OK, "{}", v1.body);
    assert!(v1.body.contains("<strong aria-current=\"page\">v1</strong>"), "{}", v1.body);
    assert!(v1.body.contains("<a href=\"/apis/orders-v2\">v2</a>"), "{}", v1.body);
    assert!(v1.body.contains("<h2>Change log</h2>") && v1.body.contains("(revision 1): Orders can be listed."));
    let v2 = send(&h.router, "GET", "/apis/orders-v2", None, None).await;
    assert!(v2.body.contains("<a href=\"/apis/orders-v1\">v1</a>") && !v2.body.contains("Change log"));
}
