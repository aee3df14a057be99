//! The README's first command, as a user runs it: `portcullis up` on the embedded demo config,
//! then curl-like requests and `ctl status`, on both I/O backends.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use portcullis_tests::http::{self, Connection};
use portcullis_tests::{Gateway, GatewayOptions};

const MISSING_KEY: &str = r#"{ "statusCode": 401, "message": "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API." }"#;
const INVALID_KEY: &str = r#"{ "statusCode": 401, "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription." }"#;
const NOT_FOUND: &str = r#"{ "statusCode": 404, "message": "Resource not found" }"#;

portcullis_tests::on_both_io_backends!(quickstart_serves_checks_keys_and_reports_status);

fn quickstart_serves_checks_keys_and_reports_status(io: &str) {
    let mut gateway = Gateway::start(GatewayOptions::new(io));
    let key = gateway.demo_key.clone().expect("up prints the demo subscription key");
    assert_eq!(key.len(), 32, "demo key is 32 hex digits: {key}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(gateway.stdout_lines.iter().any(|l| l.starts_with("try: curl")), "{:?}", gateway.stdout_lines);

    // The key in the header: proxied to the echo backend with the path rewritten to its base URL.
    let ok = http::get(gateway.addr, "/echo/hello?x=1", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let echoed = ok.json();
    assert_eq!(echoed["server"], "portcullis-echo");
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path"], "/api/hello");
    assert_eq!(echoed["query"], "x=1");
    assert_eq!(echoed["headers"]["x-forwarded-for"][0], "127.0.0.1");
    assert_eq!(echoed["headers"]["x-forwarded-host"][0], "gateway.test");
    // The demo's policy.xml: inbound headers from expressions, an outbound request id.
    assert_eq!(echoed["headers"]["x-apim-operation"][0], "all");
    assert_eq!(echoed["headers"]["x-apim-subscription"][0], "Demo subscription");
    let request_id = ok.header("x-request-id").expect("outbound policy sets X-Request-Id");
    assert_eq!(request_id.len(), 36, "{request_id}");

    // The key as the query parameter, read only when the header is absent.
    let by_query = http::get(gateway.addr, &format!("/echo/q?subscription-key={key}"), &[]).unwrap();
    assert_eq!(by_query.status, 200, "{}", by_query.text());
    let header_wins =
        http::get(gateway.addr, &format!("/echo/q?subscription-key={key}"), &[("Ocp-Apim-Subscription-Key", "nope")])
            .unwrap();
    assert_eq!(header_wins.status, 401);
    assert_eq!(header_wins.text(), INVALID_KEY);

    // APIM's exact error bodies.
    let missing = http::get(gateway.addr, "/echo/hello", &[]).unwrap();
    assert_eq!((missing.status, missing.text().as_str()), (401, MISSING_KEY));
    assert_eq!(missing.header("content-type"), Some("application/json"));
    let invalid = http::get(gateway.addr, "/echo/hello", &[("Ocp-Apim-Subscription-Key", "0123")]).unwrap();
    assert_eq!((invalid.status, invalid.text().as_str()), (401, INVALID_KEY));
    let not_found = http::get(gateway.addr, "/nowhere", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
    assert_eq!((not_found.status, not_found.text().as_str()), (404, NOT_FOUND));
    assert_eq!(not_found.header("content-type"), Some("application/json"));
    let not_a_segment = http::get(gateway.addr, "/echoes", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
    assert_eq!(not_a_segment.status, 404);

    // Keep-alive: several requests, errors included, on one connection.
    let mut connection = Connection::open(gateway.addr).unwrap();
    for i in 0..5 {
        let response = connection.get(&format!("/echo/keepalive/{i}"), &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["path"], format!("/api/keepalive/{i}"));
        let rejected = connection.get("/echo/keepalive", &[]).unwrap();
        assert_eq!(rejected.status, 401);
    }

    // A large chunked response streamed through, and a chunked request body streamed to the backend.
    let big = http::get(gateway.addr, "/echo/big?echo-bytes=1000000", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
    assert_eq!(big.status, 200);
    assert_eq!(big.body.len(), 1_000_000);
    assert!(big.body.iter().all(|&b| b == b'x'));
    let mut upload = Connection::open(gateway.addr).unwrap();
    upload
        .send_raw(
            format!(
                "POST /echo/upload HTTP/1.1\r\nHost: gateway.test\r\nOcp-Apim-Subscription-Key: {key}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let uploaded = upload.read_response(false).unwrap();
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    assert_eq!(uploaded.json()["body"], "hello world");
    assert_eq!(uploaded.json()["method"], "POST");

    // ctl status: human and JSON, counters read from the shared stats region.
    let status_text = gateway.ctl(&["status"]);
    assert!(status_text.status.success(), "{}", String::from_utf8_lossy(&status_text.stderr));
    let text = String::from_utf8_lossy(&status_text.stdout);
    assert!(text.contains("generation") && text.contains(io), "status text:\n{text}");
    let status = gateway.status();
    assert_eq!(status["dataplane"]["io_backend"], io);
    assert_eq!(status["dataplane"]["workers"], 2);
    assert!(status["generation"].as_u64().unwrap() >= 1);
    assert_eq!(status["generation"], status["applied_generation"]);
    let workers = status["workers"].as_array().expect("workers array");
    assert_eq!(workers.len(), 2);
    let served: u64 = workers.iter().map(|w| w["requests"].as_u64().unwrap()).sum();
    // 19 requests were answered; the last counter update may trail its response by a moment.
    assert!(served >= 18, "served {served}: {status}");
    assert!(status["dataplane"]["uptime_seconds"].is_u64());

    let exit = gateway.terminate();
    assert!(exit.success(), "up exits 0 on SIGTERM, got {exit:?}");
}

#[test]
fn ctl_without_a_gateway_says_what_to_do() {
    let dir = portcullis_tests::TempDir::new("noctl");
    let output = std::process::Command::new(portcullis_tests::bins::portcullis())
        .args(["ctl", "--data-dir"])
        .arg(dir.path())
        .arg("status")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("portcullis up"), "the error says how to start one: {stderr}");
}
