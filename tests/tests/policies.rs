//! APIM policy documents in a config directory, run by the real gateway: scopes with `<base/>`,
//! operations and their templates, inbound/backend/outbound/on-error sections, APIM's error
//! bodies, and a reload with a broken policy that is refused while the old one keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;

use portcullis_tests::http::{self, Connection};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

const GLOBAL: &str = r#"<policies>
  <inbound>
    <set-header name="X-Global" exists-action="override"><value>g</value></set-header>
  </inbound>
  <backend><base /></backend>
  <outbound>
    <set-header name="X-Served-By" exists-action="override"><value>@(context.Deployment.GatewayId)</value></set-header>
  </outbound>
  <on-error>
    <set-header name="X-Error-Reason" exists-action="override"><value>@(context.LastError.Reason)</value></set-header>
  </on-error>
</policies>"#;

const API: &str = r#"<policies>
  <inbound>
    <base />
    <set-header name="X-Api" exists-action="override"><value>@(context.Api.Id + "/" + context.Operation.Id)</value></set-header>
    <set-header name="X-Drop-Me" exists-action="delete" />
    <trace source="e2e" severity="information"><message>@("traced " + context.Request.Method + " " + context.Operation.Id)</message></trace>
    <choose>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Mode", "") == "mock")">
        <return-response>
          <set-status code="418" reason="I'm a teapot" />
          <set-header name="X-Mocked" exists-action="override"><value>yes</value></set-header>
          <set-body>@($"mocked {context.Request.Method} for {context.Subscription?.Name}")</set-body>
        </return-response>
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Mode", "") == "fail")">
        <set-variable name="boom" value="@(int.Parse("not a number"))" />
      </when>
    </choose>
    <check-header name="X-Client" failed-check-httpcode="403" failed-check-error-message="X-Client must be web or app" ignore-case="true">
      <value>web</value>
      <value>app</value>
    </check-header>
  </inbound>
  <outbound>
    <base />
    <set-status code="201" reason="Made" />
  </outbound>
  <on-error>
    <base />
    <choose>
      <when condition="@(context.LastError.Reason == "ExpressionValueEvaluationFailure")">
        <return-response>
          <set-status code="500" reason="Internal Server Error" />
          <set-body>@("caught: " + context.LastError.Source + " at " + context.LastError.Path + ": " + context.LastError.Message)</set-body>
        </return-response>
      </when>
    </choose>
  </on-error>
</policies>"#;

const USER_OPERATION: &str = r#"method = "GET"
url-template = "/users/{id}"
"#;

const USER_POLICY: &str = r#"<policies>
  <inbound>
    <base />
    <rewrite-uri template="/people/{id}/profile" copy-unmatched-params="true" />
    <set-query-parameter name="source" exists-action="override"><value>gateway</value></set-query-parameter>
  </inbound>
  <outbound>
    <base />
    <set-body>@{
        var body = context.Response.Body.As<JObject>();
        return new JObject(new JProperty("user", context.Request.MatchedParameters["id"]), new JProperty("backendPath", body["path"])).ToString();
    }</set-body>
  </outbound>
</policies>"#;

fn config() -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    write(dir.path(), "policy.xml", GLOBAL);
    write(dir.path(), "apis/echo/policy.xml", API);
    write(dir.path(), "apis/echo/operations/user.toml", USER_OPERATION);
    write(dir.path(), "apis/echo/operations/user.xml", USER_POLICY);
    write(dir.path(), "apis/echo/operations/other.toml", "method = \"*\"\nurl-template = \"/*\"\n");
    // A product with policies of its own, a subscription to it, and an open product.
    write(dir.path(), "products/gold/product.toml", "name = \"Gold\"\napis = [\"echo\"]\n");
    write(
        dir.path(),
        "products/gold/policy.xml",
        r#"<policies><inbound><base /><set-header name="X-Product" exists-action="override"><value>@(context.Product.Name)</value></set-header></inbound></policies>"#,
    );
    write(
        dir.path(),
        "subscriptions/gold.toml",
        "name = \"Gold customer\"\nscope = \"/products/gold\"\nprimary-key = \"gold-primary-key\"\nsecondary-key = \"gold-secondary-key\"\n",
    );
    write(dir.path(), "apis/echo/operations/upload.toml", "method = \"POST\"\nurl-template = \"/upload\"\n");
    write(
        dir.path(),
        "apis/echo/operations/upload.xml",
        "<policies><inbound><base /><find-and-replace from=\"cat\" to=\"dog\" /></inbound></policies>",
    );
    // Outbound reads a request header after the request body was streamed to the backend.
    write(dir.path(), "apis/echo/operations/stream.toml", "method = \"POST\"\nurl-template = \"/stream\"\n");
    write(
        dir.path(),
        "apis/echo/operations/stream.xml",
        r#"<policies><outbound><base /><set-header name="X-Seen-Tag" exists-action="override"><value>@(context.Request.Headers.GetValueOrDefault("X-Tag", "none") + " " + context.Request.Url.Path)</value></set-header></outbound></policies>"#,
    );
    // An operation with documented responses: mock-response returns their examples.
    write(dir.path(), "apis/echo/operations/catalog.toml", CATALOG_OPERATION);
    write(dir.path(), "apis/echo/operations/catalog.xml", CATALOG_POLICY);
    dir
}

const CATALOG_OPERATION: &str = r#"method = "GET"
url-template = "/catalog"

[[response]]
status = 200
content-type = "application/json"
example = '{ "items": ["tea", "coffee"] }'

[[response]]
status = 200
content-type = "text/plain"
example = "tea, coffee"

[[response]]
status = 404
content-type = "application/problem+json"
"#;

const CATALOG_POLICY: &str = r#"<policies>
  <inbound>
    <base />
    <choose>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Want", "") == "text")">
        <mock-response status-code="200" content-type="text/plain" />
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Want", "") == "missing")">
        <mock-response status-code="404" />
      </when>
    </choose>
    <mock-response />
  </inbound>
</policies>"#;

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

portcullis_tests::on_both_io_backends!(policies_run_in_every_section);

fn policies_run_in_every_section(io: &str) {
    let config = config();
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let auth = ("Ocp-Apim-Subscription-Key", key.as_str());

    // Inbound (global then API, in <base/> order) shapes the forwarded request; outbound sets
    // the status and a header from an expression.
    let ok = http::get(gateway.addr, "/echo/hello", &[auth, ("X-Client", "WEB"), ("X-Drop-Me", "1")]).unwrap();
    assert_eq!((ok.status, ok.header("x-served-by")), (201, Some("portcullis")), "{}", ok.text());
    let echoed = ok.json();
    assert_eq!(echoed["headers"]["x-global"][0], "g");
    assert_eq!(echoed["headers"]["x-api"][0], "echo/other");
    assert!(echoed["headers"].get("x-drop-me").is_none(), "{echoed}");
    // trace writes to the gateway's log.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gateway.log().contains("traced GET other") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(gateway.log().contains("traced GET other"), "{}", gateway.log());

    // check-header: 403 with the configured message in APIM's shape; on-error still runs.
    let refused = http::get(gateway.addr, "/echo/hello", &[auth, ("X-Client", "tv")]).unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.text(), r#"{ "statusCode": 403, "message": "X-Client must be web or app" }"#);

    // return-response from a choose: the backend is never called.
    let mocked = http::get(gateway.addr, "/echo/hello", &[auth, ("X-Mode", "mock")]).unwrap();
    assert_eq!((mocked.status, mocked.header("x-mocked")), (418, Some("yes")));
    assert_eq!(mocked.text(), "mocked GET for Demo subscription");

    // mock-response: the operation's documented example for the status (the first media type, or
    // the one asked for); a documented response without an example has an empty body.
    let client = ("X-Client", "web");
    let json = http::get(gateway.addr, "/echo/catalog", &[auth, client]).unwrap();
    assert_eq!((json.status, json.header("content-type")), (200, Some("application/json")), "{}", json.text());
    assert_eq!(json.text(), r#"{ "items": ["tea", "coffee"] }"#);
    let text = http::get(gateway.addr, "/echo/catalog", &[auth, client, ("X-Want", "text")]).unwrap();
    assert_eq!((text.status, text.header("content-type")), (200, Some("text/plain")));
    assert_eq!(text.text(), "tea, coffee");
    let missing = http::get(gateway.addr, "/echo/catalog", &[auth, client, ("X-Want", "missing")]).unwrap();
    assert_eq!((missing.status, missing.header("content-type")), (404, Some("application/problem+json")));
    assert_eq!(missing.text(), "");

    // An expression that throws goes to on-error, which answers with LastError's facts.
    let failed = http::get(gateway.addr, "/echo/hello", &[auth, ("X-Mode", "fail")]).unwrap();
    assert_eq!(failed.status, 500, "{}", failed.text());
    assert!(
        failed.text().starts_with("caught: set-variable at choose[1]/when[2]/set-variable[1]: "),
        "{}",
        failed.text()
    );

    // The operation's template: rewrite-uri with its parameter, a query parameter added, and an
    // outbound body built from the backend's JSON (buffered for the policy).
    let user = http::get(gateway.addr, "/echo/users/42?page=2", &[auth, ("X-Client", "app")]).unwrap();
    assert_eq!(user.status, 201, "{}", user.text());
    let body = user.json();
    assert_eq!(body["user"], "42");
    assert_eq!(body["backendPath"], "/api/people/42/profile");

    // A request body the policies rewrite is read in whole first (here 300 KB, many reads), and
    // the backend gets the replacement with its own length.
    let body = "cat ".repeat(75_000);
    let mut upload = Connection::open(gateway.addr).unwrap();
    let head = format!(
        "POST /echo/upload HTTP/1.1\r\nHost: gateway.test\r\nOcp-Apim-Subscription-Key: {key}\r\nX-Client: web\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    upload.send_raw(head.as_bytes()).unwrap();
    upload.send_raw(body.as_bytes()).unwrap();
    let uploaded = upload.read_response(false).unwrap();
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    let echoed = uploaded.json();
    assert_eq!(echoed["body_bytes"], body.len());
    assert!(echoed["body"].as_str().unwrap().starts_with("dog dog "), "{}", &echoed["body"].as_str().unwrap()[..40]);
    // The connection still serves the next request.
    assert_eq!(upload.get("/echo/x", &[auth, ("X-Client", "web")]).unwrap().status, 201);

    // A body streamed to the backend (2 MiB, written in pieces while the gateway relays it) leaves
    // the request head intact for the outbound section; the connection serves the next request.
    let stream = std::net::TcpStream::connect(gateway.addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = format!(
        "POST /echo/stream HTTP/1.1\r\nHost: gateway.test\r\nOcp-Apim-Subscription-Key: {key}\r\nX-Client: web\r\nX-Tag: tag-123\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    );
    let sender = std::thread::spawn(move || {
        use std::io::Write as _;
        writer.write_all(head.as_bytes()).unwrap();
        for _ in 0..32 {
            writer.write_all(&[b'x'; 64 << 10]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    });
    let mut streamed = Connection::from_stream(stream).unwrap();
    let response = streamed.read_response(false).unwrap();
    sender.join().unwrap();
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(response.json()["body_bytes"], 2 << 20);
    assert_eq!(response.header("x-seen-tag"), Some("tag-123 /api/stream"));
    assert_eq!(streamed.get("/echo/x", &[auth, ("X-Client", "web")]).unwrap().status, 201);

    // Product-scope policies run for requests through the product (its subscription's key), and
    // only for those.
    let gold = http::get(
        gateway.addr,
        "/echo/hello",
        &[("Ocp-Apim-Subscription-Key", "gold-primary-key"), ("X-Client", "web")],
    )
    .unwrap();
    assert_eq!(gold.status, 201, "{}", gold.text());
    assert_eq!(gold.json()["headers"]["x-product"][0], "Gold");
    assert_eq!(gold.json()["headers"]["x-global"][0], "g");
    let direct = http::get(gateway.addr, "/echo/hello", &[auth, ("X-Client", "web")]).unwrap();
    assert!(direct.json()["headers"].get("x-product").is_none(), "{}", direct.text());

    // The key check runs before policies; its 401 keeps APIM's body.
    let missing = http::get(gateway.addr, "/echo/hello", &[]).unwrap();
    assert_eq!(missing.status, 401);
    assert!(missing.text().contains("missing subscription key"));

    // Keep-alive survives policy answers and errors on one connection.
    let mut connection = Connection::open(gateway.addr).unwrap();
    for _ in 0..3 {
        assert_eq!(connection.get("/echo/x", &[auth, ("X-Mode", "mock")]).unwrap().status, 418);
        assert_eq!(connection.get("/echo/x", &[auth, ("X-Client", "no")]).unwrap().status, 403);
        assert_eq!(connection.get("/echo/x", &[auth, ("X-Client", "web")]).unwrap().status, 201);
    }
}

#[test]
fn a_broken_policy_is_refused_and_the_old_one_keeps_serving() {
    let config = config();
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let auth = ("Ocp-Apim-Subscription-Key", key.as_str());
    let generation = gateway.status()["generation"].as_u64().unwrap();

    let broken = API.replace("<check-header", "<check-heder").replace("</check-header>", "</check-heder>");
    write(config.path(), "apis/echo/policy.xml", &broken);
    let output = gateway.ctl(&["reload"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("unknown policy <check-heder>"), "{stderr}");
    assert!(stderr.contains("apis/echo/policy.xml:"), "{stderr}");
    assert_eq!(gateway.status()["generation"].as_u64().unwrap(), generation);
    // The old policies still run: the check-header is there.
    assert_eq!(http::get(gateway.addr, "/echo/hello", &[auth, ("X-Client", "tv")]).unwrap().status, 403);

    // Fixed: applied without a restart.
    write(config.path(), "apis/echo/policy.xml", &API.replace("<value>app</value>", "<value>tv</value>"));
    let output = gateway.ctl(&["reload"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(http::get(gateway.addr, "/echo/hello", &[auth, ("X-Client", "tv")]).unwrap().status, 201);
}
