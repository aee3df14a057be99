//! The per-IP request limit (`[xdp] per-ip-requests-per-second`) in user space, with no XDP
//! interface: its 429 is a gateway answer like the others, so a matched operation's on-error
//! section runs for it (as APIM runs on-error for `rate-limit-by-key`) and may answer instead,
//! and a request that matched no operation gets the plain APIM 429 with `Retry-After`. The
//! limit counts every request, 404s included. (With the kernel plane: `xdp_netns.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::time::{Duration, Instant};

use portcullis_tests::http::{self, Response};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

/// Two requests at once, then one a second; an offender is blocked for one second.
const LIMIT: &str = "\n[xdp]\nper-ip-requests-per-second = 1\nper-ip-burst = 2\nblock-seconds = 1\n";

/// The echo API's on-error answers a rate limit itself, from `context.LastError`.
const API_POLICY: &str = r#"<policies>
  <inbound><base /></inbound>
  <backend><base /></backend>
  <outbound><base /></outbound>
  <on-error>
    <base />
    <choose>
      <when condition="@(context.LastError.Reason == "RateLimitExceeded")">
        <return-response>
          <set-status code="429" reason="Slow Down" />
          <set-header name="X-Limit-Source" exists-action="override"><value>@(context.LastError.Source)</value></set-header>
          <set-body>@("on-error: " + context.LastError.Message)</set-body>
        </return-response>
      </when>
    </choose>
  </on-error>
</policies>"#;

/// How long the block and the bucket's refill may take to let the client in again.
const UNBLOCK_TIMEOUT: Duration = Duration::from_secs(10);

fn config() -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    let gateway_toml = dir.path().join("gateway.toml");
    let mut text = std::fs::read_to_string(&gateway_toml).unwrap();
    text.push_str(LIMIT);
    std::fs::write(&gateway_toml, text).unwrap();
    std::fs::write(dir.path().join("apis/echo/policy.xml"), API_POLICY).unwrap();
    dir
}

/// Waits until the block has expired and the bucket holds both tokens again: a connection is
/// accepted (a blocked source's connections are closed at accept), then a full refill.
fn wait_until_served(gateway: &Gateway) {
    let deadline = Instant::now() + UNBLOCK_TIMEOUT;
    while http::get(gateway.addr, "/nowhere", &[]).is_err() {
        assert!(Instant::now() < deadline, "the client stayed blocked");
        std::thread::sleep(Duration::from_millis(200));
    }
    // That request took a token (or was the over-limit one again): let the bucket refill.
    std::thread::sleep(Duration::from_millis(2_500));
}

portcullis_tests::on_both_io_backends!(ip_limit_runs_on_error);

fn ip_limit_runs_on_error(io: &str) {
    let config = config();
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let auth = [("Ocp-Apim-Subscription-Key", key.as_str())];

    // A matched operation: the burst is served, the next request goes through on-error, whose
    // return-response wins (LastError: the limit's source, reason and APIM message).
    for _ in 0..2 {
        let served = http::get(gateway.addr, "/echo/hello", &auth).unwrap();
        assert_eq!(served.status, 200, "{}", served.text());
    }
    let limited = http::get(gateway.addr, "/echo/hello", &auth).unwrap();
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(limited.header("X-Limit-Source"), Some("rate-limit-by-key"));
    assert_eq!(limited.text(), "on-error: Rate limit is exceeded. Try again in 1 seconds.");

    // No operation matched (404s count against the limit too): the plain APIM 429.
    wait_until_served(&gateway);
    for _ in 0..2 {
        assert_eq!(http::get(gateway.addr, "/nowhere", &[]).unwrap().status, 404);
    }
    let plain = http::get(gateway.addr, "/nowhere", &[]).unwrap();
    assert_plain_429(&plain);

    // A bad key on a matched operation: the limit still wins over the 401, and on-error runs.
    wait_until_served(&gateway);
    let bad_key = [("Ocp-Apim-Subscription-Key", "not-a-key")];
    for _ in 0..2 {
        assert_eq!(http::get(gateway.addr, "/echo/hello", &bad_key).unwrap().status, 401);
    }
    let limited = http::get(gateway.addr, "/echo/hello", &bad_key).unwrap();
    assert_eq!((limited.status, limited.header("X-Limit-Source")), (429, Some("rate-limit-by-key")));
}

fn assert_plain_429(response: &Response) {
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.header("Retry-After"), Some("1"));
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let body = r#"{ "statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds." }"#;
    assert_eq!(response.text(), body);
    assert_eq!(response.header("Content-Length"), Some(body.len().to_string().as_str()));
}
