//! Content policies run by the real gateway on both I/O backends: `set-body template="liquid"`
//! (request and response bodies rendered from APIM's `body` and `context`) and
//! `validate-content` (APIM's error bodies, `detect` into a variable) (docs/policies.md).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;

use portcullis_tests::http::{self, Connection, Response};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

/// The backend gets a body rendered from the client's JSON and the request's context.
const LIQUID_REQUEST: &str = r#"<policies><inbound><base />
  <set-body template="liquid">{"customer": "{{ body.name | Upcase }}", "items": {{ body.items | Size }}, "first": "{{ body.items[0].sku }}", "env": "{{ context.Request.Headers["X-Env"] | Default: "none" }}", "method": "{{ context.Request.Method }}", "missing": "{{ body.nope.deeper }}"}</set-body>
</inbound></policies>"#;

/// The echo backend's JSON answer becomes a smaller one (the corpus's OpenAI shape).
const LIQUID_RESPONSE: &str = r#"<policies><inbound><base /></inbound><outbound><base />
  <set-body template="liquid">{"method": "{{ body.method }}", "path": "{{ body.path }}"{% if body.headers["x-env"] %}, "env": "{{ body.headers["x-env"][0] }}"{% endif %}}</set-body>
</outbound></policies>"#;

/// A response built in inbound: request headers listed as the policy-snippets example does
/// (DotLiquid's `header.Key`/`header.Value`).
const LIQUID_RETURN: &str = r#"<policies><inbound><base />
  <return-response><set-status code="200" reason="OK" />
    <set-header name="Content-Type" exists-action="override"><value>text/plain</value></set-header>
    <set-body template="liquid">{% for header in context.Request.Headers %}{% if header.Key == "X-Env" %}{{- header.Key }}: {{ header.Value }}{% endif %}{% endfor %}</set-body>
  </return-response>
</inbound></policies>"#;

/// Links in the request body point at the backend; links in the answer at the gateway again.
const REDIRECT: &str = r#"<policies><inbound><base /><redirect-content-urls /></inbound>
<outbound><base />
  <set-variable name="seen" value="@(context.Response.Body.As<JObject>()["body"].ToString())" />
  <set-header name="X-Backend-Saw" exists-action="override"><value>@((string)context.Variables["seen"])</value></set-header>
  <set-body>@((string)context.Variables["seen"])</set-body>
  <redirect-content-urls />
</outbound></policies>"#;

pub(crate) fn config(operations: &[(&str, &str, &str)]) -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    for (name, method, policy) in operations {
        write(
            dir.path(),
            &format!("apis/echo/operations/{name}.toml"),
            &format!("method = \"{method}\"\nurl-template = \"/{name}\"\n"),
        );
        write(dir.path(), &format!("apis/echo/operations/{name}.xml"), policy);
    }
    dir
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn post(gateway: &Gateway, path: &str, content_type: &str, body: &str) -> Response {
    let key = gateway.demo_key.clone().expect("demo key");
    let mut connection = Connection::open(gateway.addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: gateway.test\r\nOcp-Apim-Subscription-Key: {key}\r\nX-Env: prod\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    connection.send_raw(head.as_bytes()).unwrap();
    connection.send_raw(body.as_bytes()).unwrap();
    connection.read_response(false).unwrap()
}

portcullis_tests::on_both_io_backends!(liquid_templates_render_bodies);

fn liquid_templates_render_bodies(io: &str) {
    let config = config(&[
        ("liquid-request", "POST", LIQUID_REQUEST),
        ("liquid-response", "GET", LIQUID_RESPONSE),
        ("liquid-return", "GET", LIQUID_RETURN),
        ("links", "POST", REDIRECT),
    ]);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");

    let echoed = post(
        &gateway,
        "/echo/liquid-request",
        "application/json",
        r#"{"name":"ada","items":[{"sku":"A1"},{"sku":"B2"}]}"#,
    );
    assert_eq!(echoed.status, 200, "{}", echoed.text());
    let body = echoed.json()["body"].as_str().expect("echoed body").to_owned();
    assert_eq!(
        body,
        r#"{"customer": "ADA", "items": 2, "first": "A1", "env": "prod", "method": "POST", "missing": ""}"#
    );

    let answer = http::get(
        gateway.addr,
        "/echo/liquid-response",
        &[("Ocp-Apim-Subscription-Key", key.as_str()), ("X-Env", "test")],
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    // The echo backend reports the path it was sent (the API's base path and the operation).
    assert_eq!(answer.text(), r#"{"method": "GET", "path": "/api/liquid-response", "env": "test"}"#);

    // redirect-content-urls: the backend saw its own URL (127.0.0.1, the /api base path); the
    // client gets the gateway's back.
    let link = r#"{"next":"http://gateway.test/echo/users?page=2"}"#;
    let echoed = post(&gateway, "/echo/links", "application/json", link);
    assert_eq!(echoed.status, 200, "{}", echoed.text());
    assert_eq!(echoed.text(), link);
    let saw = echoed.header("x-backend-saw").expect("what the backend saw").to_owned();
    assert!(saw.starts_with(r#"{"next":"http://127.0.0.1:"#) && saw.ends_with(r#"/api/users?page=2"}"#), "{saw}");

    let listed = http::get(
        gateway.addr,
        "/echo/liquid-return",
        &[("Ocp-Apim-Subscription-Key", key.as_str()), ("X-Env", "prod")],
    )
    .unwrap();
    assert_eq!((listed.status, listed.text().as_str()), (200, "X-Env: prod"));
}

/// The corpus's order API: JSON only, at most 64 bytes (APIM's error answers).
const VALIDATE: &str = r#"<policies><inbound><base />
  <validate-content unspecified-content-type-action="prevent" max-size="64" size-exceeded-action="prevent" errors-variable-name="validationErrors">
    <content type="application/json" validate-as="json" action="prevent" />
  </validate-content>
</inbound></policies>"#;

/// The same, with an on-error section that answers from `LastError` and the errors variable.
const VALIDATE_HANDLED: &str = r#"<policies><inbound><base />
  <validate-content unspecified-content-type-action="prevent" max-size="64" size-exceeded-action="prevent" errors-variable-name="validationErrors">
    <content type="application/json" validate-as="json" action="prevent" />
  </validate-content>
</inbound><on-error><base />
  <return-response><set-status code="422" reason="Invalid" />
    <set-header name="X-Validation" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason + "/" + ((JArray)context.Variables["validationErrors"]).Count)</value></set-header>
    <set-body>@((string)((JArray)context.Variables["validationErrors"])[0]["Details"])</set-body>
  </return-response>
</on-error></policies>"#;

/// Detection only: the request goes on; the finding is visible to later policies.
const DETECT: &str = r#"<policies><inbound><base />
  <validate-content unspecified-content-type-action="detect" errors-variable-name="found">
    <content type="application/json" validate-as="json" action="detect" />
  </validate-content>
  <set-header name="X-Found" exists-action="override"><value>@(((JArray)context.Variables["found"]).Count.ToString())</value></set-header>
</inbound></policies>"#;

portcullis_tests::on_both_io_backends!(validate_content_prevents_and_detects);

fn validate_content_prevents_and_detects(io: &str) {
    let config =
        config(&[("orders", "POST", VALIDATE), ("handled", "POST", VALIDATE_HANDLED), ("detect", "POST", DETECT)]);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));

    let ok = post(&gateway, "/echo/orders", "application/json", r#"{"id":1}"#);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["body"], r#"{"id":1}"#);

    let malformed = post(&gateway, "/echo/orders", "application/json", r#"{"id":"#);
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    let body = malformed.json();
    assert_eq!(body["statusCode"], 400);
    assert!(body["message"].as_str().unwrap().starts_with("Body of the request is not valid JSON"), "{body}");

    let plain = post(&gateway, "/echo/orders", "text/plain", "hello");
    assert_eq!(plain.status, 400, "{}", plain.text());
    assert_eq!(plain.json()["message"], "Unspecified content type text/plain is not allowed.");

    let big = format!("[{}1]", "1,".repeat(40));
    let large = post(&gateway, "/echo/orders", "application/json", &big);
    assert_eq!(large.status, 400, "{}", large.text());
    assert!(large.text().contains("exceeds the configured limit of 64 bytes"), "{}", large.text());

    // on-error sees LastError (source validate-content) and the findings.
    let handled = post(&gateway, "/echo/handled", "application/json", &big);
    assert_eq!(handled.status, 422, "{}", handled.text());
    assert_eq!(handled.header("x-validation"), Some("validate-content/SizeLimit/1"));
    assert_eq!(
        handled.text(),
        format!("Request's body is {} bytes long and it exceeds the configured limit of 64 bytes.", big.len())
    );

    let detected = post(&gateway, "/echo/detect", "text/plain", "not json");
    assert_eq!(detected.status, 200, "{}", detected.text());
    assert_eq!(detected.json()["headers"]["x-found"][0], "1");
}
