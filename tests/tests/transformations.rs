//! `xml-to-json`, `json-to-xml` and `jsonp` run by the real gateway on both I/O backends:
//! request bodies converted before the echo backend sees them, response bodies converted on the
//! way back (by `Content-Type` and the client's `Accept`), APIM's errors for malformed bodies and
//! callback names (docs/policies.md "Transformations").
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;

use portcullis_tests::http::{self, Connection, Response};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

/// A SOAP-shaped JSON request becomes the envelope a SOAP backend expects (APIM's example).
const TO_XML: &str = r##"<policies><inbound><base />
  <json-to-xml apply="content-type-json" consider-accept-header="false" parse-date="false"
               namespace-separator=":" namespace-prefix="xmlns" attribute-block-name="#attrs" />
</inbound></policies>"##;

const TO_JSON: &str = r#"<policies><inbound><base />
  <xml-to-json kind="direct" apply="content-type-xml" consider-accept-header="false" />
</inbound></policies>"#;

/// The response (JSON from the echo backend) is replaced by an XML document, then converted to
/// JSON only for clients that accept JSON.
const XML_BACKEND: &str = r#"<policies><inbound><base /></inbound><outbound><base />
  <set-body>&lt;quote symbol="ACME"&gt;&lt;price&gt;10.5&lt;/price&gt;&lt;price&gt;11&lt;/price&gt;&lt;/quote&gt;</set-body>
  <set-header name="Content-Type" exists-action="override"><value>text/xml; charset=utf-8</value></set-header>
  <xml-to-json kind="javascript-friendly" apply="content-type-xml" consider-accept-header="true" />
  <set-header name="@(&quot;X-Quote-&quot; + context.Request.Method)" exists-action="override"><value>yes</value></set-header>
  <set-header name="@(context.Request.Headers.GetValueOrDefault(&quot;X-Name&quot;, &quot;X-Default&quot;))" exists-action="append"><value>a</value><value>b</value></set-header>
</outbound></policies>"#;

const JSONP: &str = r#"<policies><inbound><base /></inbound><outbound><base />
  <set-body>{"ok":true}</set-body>
  <jsonp callback-parameter-name="cb" />
</outbound></policies>"#;

fn config() -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    for (name, method, policy) in
        [("toxml", "POST", TO_XML), ("tojson", "POST", TO_JSON), ("quote", "GET", XML_BACKEND), ("jsonp", "GET", JSONP)]
    {
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
        "POST {path} HTTP/1.1\r\nHost: gateway.test\r\nOcp-Apim-Subscription-Key: {key}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    connection.send_raw(head.as_bytes()).unwrap();
    connection.send_raw(body.as_bytes()).unwrap();
    connection.read_response(false).unwrap()
}

portcullis_tests::on_both_io_backends!(bodies_are_converted_both_ways);

fn bodies_are_converted_both_ways(io: &str) {
    let config = config();
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let auth = ("Ocp-Apim-Subscription-Key", key.as_str());

    // json-to-xml on the request: the backend gets the envelope, as application/xml.
    let json = r##"{"soapenv:Envelope":{"xmlns:soapenv":"http://schemas.xmlsoap.org/soap/envelope/","xmlns:v1":"urn:v1","soapenv:Body":{"v1:Query":{"#attrs":{"name":"q & a"},"v1:Item":["A","B"]}}}}"##;
    let echoed = post(&gateway, "/echo/toxml", "application/json", json);
    assert_eq!(echoed.status, 200, "{}", echoed.text());
    let echoed = echoed.json();
    assert_eq!(
        echoed["body"],
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:v1=\"urn:v1\"><soapenv:Body><v1:Query name=\"q &amp; a\"><v1:Item>A</v1:Item><v1:Item>B</v1:Item></v1:Query></soapenv:Body></soapenv:Envelope>"
    );
    assert_eq!(echoed["headers"]["content-type"][0], "application/xml");
    // apply="content-type-json": a body that is not JSON passes unchanged.
    let untouched = post(&gateway, "/echo/toxml", "text/plain", "{not json").json();
    assert_eq!(untouched["body"], "{not json");

    // xml-to-json on the request.
    let echoed = post(&gateway, "/echo/tojson", "text/xml", r#"<order id="7"><line>a</line><line>b</line></order>"#);
    assert_eq!(echoed.status, 200, "{}", echoed.text());
    let echoed = echoed.json();
    assert_eq!(echoed["body"], r#"{"order":{"@id":"7","line":["a","b"]}}"#);
    assert_eq!(echoed["headers"]["content-type"][0], "application/json");
    // Malformed XML: 500 in APIM's shape, LastError naming the conversion.
    let broken = post(&gateway, "/echo/tojson", "application/xml", "<order><line></order>");
    assert_eq!(broken.status, 500, "{}", broken.text());
    assert_eq!(broken.header("x-error-reason"), None);
    assert!(broken.text().contains("The body is not valid XML"), "{}", broken.text());

    // xml-to-json on the response, by Accept: a JSON client gets JSON, an XML client the XML.
    let as_json = http::get(gateway.addr, "/echo/quote", &[auth, ("Accept", "application/json")]).unwrap();
    assert_eq!((as_json.status, as_json.header("content-type")), (200, Some("application/json")), "{}", as_json.text());
    assert_eq!(as_json.text(), r#"{"quote":{"@symbol":"ACME","price":["10.5","11"]}}"#);
    // set-header with a computed name (APIM accepts an expression there), checked per request.
    assert_eq!(as_json.header("x-quote-get"), Some("yes"));
    let appended: Vec<&str> = as_json
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-default"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(appended == ["a", "b"] || appended == ["a, b"], "{appended:?}");
    let bad_name = http::get(gateway.addr, "/echo/quote", &[auth, ("X-Name", "not a token")]).unwrap();
    assert_eq!(bad_name.status, 500, "{}", bad_name.text());
    assert!(bad_name.text().contains("'not a token' is not a valid name"), "{}", bad_name.text());
    let as_xml = http::get(gateway.addr, "/echo/quote", &[auth, ("Accept", "text/xml")]).unwrap();
    assert_eq!(as_xml.header("content-type"), Some("text/xml; charset=utf-8"));
    assert_eq!(as_xml.text(), r#"<quote symbol="ACME"><price>10.5</price><price>11</price></quote>"#);

    // jsonp: wrapped when the request names a valid callback, refused when it is not one.
    let wrapped = http::get(gateway.addr, "/echo/jsonp?cb=app.done", &[auth]).unwrap();
    assert_eq!((wrapped.status, wrapped.header("content-type")), (200, Some("application/javascript")));
    assert_eq!(wrapped.text(), r#"app.done({"ok":true})"#);
    let plain = http::get(gateway.addr, "/echo/jsonp", &[auth]).unwrap();
    assert_eq!(plain.text(), r#"{"ok":true}"#);
    let refused = http::get(gateway.addr, "/echo/jsonp?cb=alert(1)", &[auth]).unwrap();
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("not a valid JavaScript function name"), "{}", refused.text());
}
