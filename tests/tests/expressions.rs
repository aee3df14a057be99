//! Policy expressions that real-world APIM documents use, compiled by control and run by the
//! data plane's VM through a real `portcullis up`: try/catch/finally, throw, switch, anonymous
//! objects serialized as JSON, StringBuilder, Uri, new DateTime, LINQ Single and OrderBy with a key,
//! Split with a count, double.TryParse and a local function.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;

use portcullis_tests::http;
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

const OPERATION_POLICY: &str = r#"<policies>
  <inbound>
    <base />
    <return-response>
      <set-status code="200" reason="OK" />
      <set-header name="X-Kind" exists-action="override">
        <value>@{
          switch (context.Request.Headers.GetValueOrDefault("X-Verb", "")) {
            case "get": case "head": return "read";
            case "delete": return "remove";
            default: return "write";
          }
        }</value>
      </set-header>
      <set-header name="X-Number" exists-action="override">
        <value>@{
          var log = new StringBuilder();
          try {
            log.Append(int.Parse(context.Request.Headers.GetValueOrDefault("X-N", "x")));
          } catch (FormatException ex) {
            log.Append("bad");
          } finally {
            log.Append("!");
          }
          return log.ToString();
        }</value>
      </set-header>
      <set-header name="X-Thrown" exists-action="override">
        <value>@{
          try {
            var n = context.Request.Headers.GetValueOrDefault("X-N", "x");
            if (n == "0") { throw new InvalidOperationException("zero is not allowed"); }
            return "fine";
          } catch (Exception e) {
            return e.Message;
          }
        }</value>
      </set-header>
      <set-header name="X-Sorted" exists-action="override">
        <value>@{
          string Shout(string s) => s.ToUpper() + "!";
          var words = new [] { "ccc", "a", "bb" }.OrderBy(w => w.Length).Select(w => Shout(w));
          return string.Join(",", words) + (double.TryParse("x", out var d) ? "?" : ";" + d);
        }</value>
      </set-header>
      <set-body>@{
        var path = new StringBuilder();
        foreach (var segment in new Uri("https://API.example.com:8443/v1/a/b?q=1").Segments) { path.Append(segment); }
        var when = new DateTime(2024, 2, 29, 13, 4, 5, DateTimeKind.Utc);
        return JsonConvert.SerializeObject(new {
          path = path.ToString(),
          host = new Uri("https://API.example.com/x").Host,
          year = when.Year,
          single = new [] { 1, 2, 3 }.Single(x => x == 2),
          parts = "a,b,c".Split(',', 2).Length,
          isArray = JObject.Parse("{\"a\":[1]}")["a"].Type == JTokenType.Array
        });
      }</set-body>
    </return-response>
  </inbound>
</policies>"#;

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn real_world_expressions_compile_and_run() {
    let config = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), config.path()).unwrap();
    write(config.path(), "apis/echo/operations/expr.toml", "method = \"GET\"\nurl-template = \"/expr\"\n");
    write(config.path(), "apis/echo/operations/expr.xml", OPERATION_POLICY);
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let auth = ("Ocp-Apim-Subscription-Key", key.as_str());

    let response = http::get(gateway.addr, "/echo/expr", &[auth, ("X-Verb", "head"), ("X-N", "12")]).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-kind"), Some("read"));
    assert_eq!(response.header("x-number"), Some("12!"));
    assert_eq!(response.header("x-thrown"), Some("fine"));
    assert_eq!(response.header("x-sorted"), Some("A!,BB!,CCC!;0"));
    // Newtonsoft keeps the members' order; the VM's JSON objects order their keys.
    let body = response.json();
    assert_eq!(
        body,
        serde_json::json!({"path": "/v1/a/b", "host": "api.example.com", "year": 2024, "single": 2, "parts": 2, "isArray": true}),
        "{}",
        response.text()
    );

    let response = http::get(gateway.addr, "/echo/expr", &[auth, ("X-Verb", "post"), ("X-N", "0")]).unwrap();
    assert_eq!(response.header("x-kind"), Some("write"));
    assert_eq!(response.header("x-number"), Some("0!"));
    assert_eq!(response.header("x-thrown"), Some("zero is not allowed"));
    let response = http::get(gateway.addr, "/echo/expr", &[auth, ("X-Verb", "delete"), ("X-N", "many")]).unwrap();
    assert_eq!(response.header("x-kind"), Some("remove"));
    assert_eq!(response.header("x-number"), Some("bad!"));
}
