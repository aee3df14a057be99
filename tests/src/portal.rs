//! A browser-like client of the developer portal of a gateway under test: a cookie jar, forms
//! sent with the CSRF token of the last page, no redirects followed (tests look at them), and
//! the mail the portal left in the data directory's outbox.

use std::path::Path;

/// One visitor (its own cookie jar).
#[derive(Debug)]
pub struct Visitor {
    agent: ureq::Agent,
    base: String,
    /// The CSRF token of the last page read.
    pub csrf: Option<String>,
}

/// A portal answer.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Visitor {
    pub fn new(portal_url: &str) -> Self {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        Self { agent, base: portal_url.trim_end_matches('/').to_owned(), csrf: None }
    }

    /// GET `path` (relative to the portal, or a full URL from a mail).
    pub fn get(&mut self, path: &str) -> Page {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) };
        let response = self.agent.get(&url).call().expect("a portal response");
        self.read(response)
    }

    /// POST `fields` to `path` as a form, with the last page's CSRF token.
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone().unwrap_or_default();
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", csrf.as_str()));
        self.post_raw(path, &form)
    }

    /// POST exactly `fields` (no token added).
    pub fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let url = format!("{}{path}", self.base);
        let response = self.agent.post(&url).send_form(fields.iter().copied()).expect("a portal response");
        self.read(response)
    }

    fn read(&mut self, response: ureq::http::Response<ureq::Body>) -> Page {
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let location = header("location");
        let set_cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        let body = response.into_body().read_to_string().expect("a text body");
        if let Some(token) = attribute_after(&body, "name=\"csrf\" value=\"") {
            self.csrf = Some(token);
        }
        Page { status, location, set_cookies, body }
    }

    /// Signs in; panics unless the portal answers 303.
    pub fn sign_in(&mut self, email: &str, password: &str) -> Page {
        self.get("/signin");
        let page = self.post("/signin", &[("email", email), ("password", password)]);
        assert_eq!(page.status, 303, "sign-in of {email}: {}", page.body);
        page
    }
}

/// The text after `marker` up to the next `"`.
pub fn attribute_after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_owned())
}

/// The mail in `<data>/portal/outbox` addressed to `to`, oldest first.
pub fn mails_to(data_dir: &Path, to: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("portal/outbox")) else { return Vec::new() };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter(|text| text.lines().any(|line| line.eq_ignore_ascii_case(&format!("To: {to}"))))
        .collect()
}

/// The first `http://` link in `mail` whose path contains `path`.
pub fn link_in(mail: &str, path: &str) -> Option<String> {
    mail.split_whitespace().find(|word| word.starts_with("http") && word.contains(path)).map(str::to_owned)
}

/// An OpenAPI 3 definition of a small pet store: `GET /pets/{petId}` (a path and a query
/// parameter, a `Pet` schema with an example) and `POST /pets` (a JSON body).
pub fn pet_store_definition() -> serde_json::Value {
    serde_json::json!({
        "openapi": "3.0.1",
        "info": {"title": "Pet store", "version": "1.0", "description": "Pets, for the portal's tests."},
        "paths": {
            "/pets/{petId}": {"get": {
                "operationId": "get-pet", "summary": "Get a pet",
                "parameters": [
                    {"name": "petId", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "verbose", "in": "query", "schema": {"type": "boolean"}}
                ],
                "responses": {"200": {"description": "The pet",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}}
            }},
            "/pets": {"post": {
                "operationId": "add-pet", "summary": "Add a pet",
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
                "responses": {"201": {"description": "Added"}}
            }}
        },
        "components": {"schemas": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}, "example": {"name": "Rex"}}}}
    })
}

/// Imports the pet store as API `pets` (path `pets`, backend `backend_url`) through the
/// management API, in a published product `pets` ("Pet plan", no approval) that guests and
/// developers see.
pub fn publish_pet_store(management: &crate::management::Management, backend_url: &str) {
    let definition = pet_store_definition().to_string();
    management.put(
        "/apis/pets",
        serde_json::json!({"format": "openapi+json", "value": definition, "path": "pets", "serviceUrl": backend_url}),
    );
    management.put(
        "/products/pets",
        serde_json::json!({"displayName": "Pet plan", "state": "published", "subscriptionRequired": true}),
    );
    for link in ["/products/pets/apis/pets", "/products/pets/groups/guests", "/products/pets/groups/developers"] {
        management.put(link, serde_json::json!({}));
    }
}

/// The quick start's files with `[portal]` sending mail to `smtp`.
pub fn quickstart_with_smtp(smtp: &crate::smtp::SmtpSink) -> crate::TempDir {
    quickstart_with_portal(&format!("smtp-url = \"smtp://{}\"\nmail-from = \"APIs <apis@example.com>\"\n", smtp.addr))
}

/// The quick start's files with `table` (TOML lines) as `gateway.toml`'s `[portal]`.
pub fn quickstart_with_portal(table: &str) -> crate::TempDir {
    let dir = crate::TempDir::new("portal-config");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    copy_dir(&source, dir.path());
    let gateway_toml = dir.path().join("gateway.toml");
    let mut text = std::fs::read_to_string(&gateway_toml).expect("the quick start's files");
    text.push_str(&format!("\n[portal]\n{table}"));
    std::fs::write(gateway_toml, text).expect("the quick start's files");
    dir
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("the quick start's files");
    for entry in std::fs::read_dir(from).expect("the quick start's files") {
        let entry = entry.expect("the quick start's files");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("the quick start's files").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("the quick start's files");
        }
    }
}
