//! `rate-limit`, `rate-limit-by-key`, `quota` and `quota-by-key` through the running gateway, on
//! both I/O backends: APIM's 429 and 403 byte for byte (`Retry-After`, the remaining and total
//! calls headers), the remaining-calls header and variable on served requests, `<api>` limits of
//! a per-subscription policy, an increment condition that reads the response (counted after
//! it), a quota key counted once per request however many policies count it, lifetime and
//! day-long quota messages, and on-error routing with `context.LastError`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use portcullis_tests::http::{self, Connection, Response};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

/// One limit per `X-Case`; `X-Key` picks the counter, so each scenario counts on its own keys.
const API_POLICY: &str = r#"<policies>
  <inbound>
    <base />
    <choose>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "rate")">
        <rate-limit-by-key calls="2" renewal-period="60" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Key", ""))" remaining-calls-header-name="X-Remaining" remaining-calls-variable-name="remaining" total-calls-header-name="X-Total" retry-after-variable-name="retry" />
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "per-api")">
        <rate-limit calls="100" renewal-period="60" remaining-calls-header-name="X-Remaining">
          <api id="echo" calls="1" renewal-period="60" />
        </rate-limit>
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "after-response")">
        <rate-limit-by-key calls="1" renewal-period="60" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Key", ""))" increment-condition="@(context.Response.StatusCode == 200)" />
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "twice")">
        <quota-by-key calls="2" renewal-period="0" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Key", ""))" remaining-calls-header-name="X-Quota-Remaining" />
        <quota-by-key calls="2" renewal-period="0" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Key", ""))" />
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "quota-5min")">
        <quota-by-key calls="1" renewal-period="300" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Key", ""))" />
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "quota-days")">
        <quota calls="1" renewal-period="864000" />
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "routed")">
        <quota-by-key calls="1" renewal-period="0" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Key", ""))" remaining-calls-variable-name="left" />
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "bandwidth")">
        <quota-by-key bandwidth="1" renewal-period="0" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Key", ""))" remaining-bandwidth-header-name="X-Kb-Left" />
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "hammer")">
        <rate-limit-by-key calls="100" renewal-period="300" counter-key="hammer" />
      </when>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "hammer-quota")">
        <quota-by-key calls="100" renewal-period="0" counter-key="hammer" />
      </when>
    </choose>
  </inbound>
  <backend><base /></backend>
  <outbound>
    <base />
    <set-header name="X-Remaining-Variable" exists-action="override"><value>@(context.Variables.GetValueOrDefault<int>("remaining", -1).ToString())</value></set-header>
  </outbound>
  <on-error>
    <base />
    <choose>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Case", "") == "routed")">
        <return-response>
          <set-status code="402" reason="Pay Up" />
          <set-body>@(context.LastError.Source + "|" + context.LastError.Reason + "|" + context.LastError.Message + "|" + context.Variables.GetValueOrDefault<int>("left", -1))</set-body>
        </return-response>
      </when>
    </choose>
  </on-error>
</policies>"#;

fn config() -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    std::fs::write(dir.path().join("apis/echo/policy.xml"), API_POLICY).unwrap();
    dir
}

struct Client<'g> {
    gateway: &'g Gateway,
    key: String,
}

impl Client<'_> {
    fn get(&self, path: &str, case: &str, counter: &str) -> Response {
        let headers = [("Ocp-Apim-Subscription-Key", self.key.as_str()), ("X-Case", case), ("X-Key", counter)];
        http::get(self.gateway.addr, path, &headers).unwrap()
    }

    /// The whole response to a GET as bytes (the request asks the gateway to close after it).
    fn raw(&self, path: &str, case: &str, counter: &str) -> String {
        let mut connection = Connection::open(self.gateway.addr).unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: gw\r\nOcp-Apim-Subscription-Key: {}\r\nX-Case: {case}\r\nX-Key: {counter}\r\nConnection: close\r\n\r\n",
            self.key
        );
        connection.send_raw(request.as_bytes()).unwrap();
        String::from_utf8(connection.read_to_close().unwrap()).unwrap()
    }
}

/// The `Retry-After` value of a raw response.
fn retry_after(raw: &str) -> u64 {
    let line = raw.lines().find_map(|line| line.strip_prefix("Retry-After: ")).expect("Retry-After");
    line.parse().unwrap()
}

/// `.NET`'s `TimeSpan` constant format, whole seconds.
fn time_span(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let clock = format!("{:02}:{:02}:{:02}", rest / 3_600, rest % 3_600 / 60, rest % 60);
    if days > 0 { format!("{days}.{clock}") } else { clock }
}

portcullis_tests::on_both_io_backends!(limits_answer_as_apim);

fn limits_answer_as_apim(io: &str) {
    let config = config();
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let client = Client { gateway: &gateway, key: gateway.demo_key.clone().expect("demo key") };
    rate_limit_by_key(&client, io);
    per_api_rate_limit(&client, io);
    condition_after_response(&client, io);
    quota_counted_once_per_request(&client, io);
    quota_messages(&client, io);
    routed_to_on_error(&client, io);
    bandwidth_quota(&client, io);
}

fn rate_limit_by_key(client: &Client<'_>, io: &str) {
    let counter = format!("rate-{io}");
    for remaining in ["1", "0"] {
        let served = client.get("/echo/a", "rate", &counter);
        assert_eq!(served.status, 200, "{}", served.text());
        assert_eq!(served.header("X-Remaining"), Some(remaining));
        assert_eq!(served.header("X-Total"), Some("2"));
        assert_eq!(served.header("X-Remaining-Variable"), Some(remaining));
    }
    let raw = client.raw("/echo/a", "rate", &counter);
    let seconds = retry_after(&raw);
    // The sliding window's estimate of when a call fits again: within two periods.
    assert!((1..=120).contains(&seconds), "{raw}");
    let body =
        format!(r#"{{ "statusCode": 429, "message": "Rate limit is exceeded. Try again in {seconds} seconds." }}"#);
    // APIM's capture: 84 bytes for a two-digit wait.
    assert_eq!(body.len(), 82 + seconds.to_string().len());
    let expected = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: {seconds}\r\nX-Remaining: 0\r\nX-Total: 2\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw, expected);
    // Another key has its own counter.
    let other = client.get("/echo/a", "rate", &format!("{counter}-other"));
    assert_eq!((other.status, other.header("X-Remaining")), (200, Some("1")));
}

fn per_api_rate_limit(client: &Client<'_>, io: &str) {
    // Per subscription: the key is the subscription, whatever X-Key says. The <api> limit (1 a
    // minute) refuses the second call; the policy's own (100) would not. Run once per backend:
    // the two backends' gateways are separate processes.
    let served = client.get("/echo/b", "per-api", io);
    assert_eq!((served.status, served.header("X-Remaining")), (200, Some("0")), "{}", served.text());
    let raw = client.raw("/echo/b", "per-api", io);
    let seconds = retry_after(&raw);
    assert!(
        raw.starts_with("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: "),
        "{raw}"
    );
    assert!(raw.contains("\r\nX-Remaining: 0\r\n"), "{raw}");
    assert!(raw.ends_with(&format!("Try again in {seconds} seconds.\" }}")), "{raw}");
}

fn condition_after_response(client: &Client<'_>, io: &str) {
    let counter = format!("after-{io}");
    // Failed responses do not count: the limit of 1 still lets the next request in.
    for _ in 0..3 {
        let failed = client.get("/echo/c?echo-status=500", "after-response", &counter);
        assert_eq!(failed.status, 500, "{}", failed.text());
    }
    let served = client.get("/echo/c", "after-response", &counter);
    assert_eq!(served.status, 200, "{}", served.text());
    // The 200 counted, after its response: now the limit is reached.
    let limited = client.get("/echo/c", "after-response", &counter);
    assert_eq!(limited.status, 429, "{}", limited.text());
}

fn quota_counted_once_per_request(client: &Client<'_>, io: &str) {
    let counter = format!("twice-{io}");
    // Two quota policies on one key: each request moves the counter once, so two are served.
    for remaining in ["1", "0"] {
        let served = client.get("/echo/d", "twice", &counter);
        assert_eq!(served.status, 200, "{}", served.text());
        assert_eq!(served.header("X-Quota-Remaining"), Some(remaining));
    }
    let raw = client.raw("/echo/d", "twice", &counter);
    let body = r#"{ "statusCode": 403, "message": "Out of call volume quota. Quota will be replenished in 10675199.02:48:05." }"#;
    let expected = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nRetry-After: 922337203685\r\nX-Quota-Remaining: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw, expected);
}

fn quota_messages(client: &Client<'_>, io: &str) {
    let counter = format!("five-{io}");
    assert_eq!(client.get("/echo/e", "quota-5min", &counter).status, 200);
    let raw = client.raw("/echo/e", "quota-5min", &counter);
    let seconds = retry_after(&raw);
    // Windows of five minutes from 0001-01-01T00:00:00Z: the next starts within five minutes.
    assert!((1..=300).contains(&seconds), "{raw}");
    let message = format!("Out of call volume quota. Quota will be replenished in {}.", time_span(seconds));
    assert!(raw.ends_with(&format!(r#"{{ "statusCode": 403, "message": "{message}" }}"#)), "{raw}");
    assert!(time_span(seconds).starts_with("00:0"), "{raw}");

    // Per subscription, ten days: the days form.
    assert_eq!(client.get("/echo/f", "quota-days", io).status, 200);
    let raw = client.raw("/echo/f", "quota-days", io);
    let seconds = retry_after(&raw);
    assert!(seconds > 86_400 || raw.contains("replenished in 0"), "{raw}");
    assert!(raw.contains(&format!("Quota will be replenished in {}.", time_span(seconds))), "{raw}");
}

fn routed_to_on_error(client: &Client<'_>, io: &str) {
    let counter = format!("routed-{io}");
    assert_eq!(client.get("/echo/g", "routed", &counter).status, 200);
    let routed = client.get("/echo/g", "routed", &counter);
    assert_eq!(routed.status, 402, "{}", routed.text());
    assert_eq!(
        routed.text(),
        "quota-by-key|QuotaExceeded|Out of call volume quota. Quota will be replenished in 10675199.02:48:05.|0"
    );
}

/// Connections hammering one key at once, and requests on each.
const HAMMER_CONNECTIONS: usize = 64;
const HAMMER_REQUESTS_PER_CONNECTION: usize = 10;

portcullis_tests::on_both_io_backends!(limits_are_exact_across_workers);

/// Two workers, 64 connections on one key: exactly `calls` requests are admitted, however the
/// connections spread over the workers. (The rate limit's window is 300 s and the run takes a
/// few: the sliding estimate admits nothing more until the previous window's weight has faded
/// by one call, 3 s into the next window.)
fn limits_are_exact_across_workers(io: &str) {
    let config = config();
    let mut options = GatewayOptions::new(io).config(config.path());
    options.workers = 2;
    let gateway = Gateway::start(options);
    let key = gateway.demo_key.clone().expect("demo key");
    for case in ["hammer", "hammer-quota"] {
        let statuses = hammer(&gateway, &key, case);
        let admitted = statuses.iter().filter(|&&status| status == 200).count();
        let refused = statuses.iter().filter(|&&status| status == 429 || status == 403).count();
        assert_eq!(admitted, 100, "{case}: {statuses:?}");
        assert_eq!(refused, HAMMER_CONNECTIONS * HAMMER_REQUESTS_PER_CONNECTION - 100, "{case}");
    }
}

/// Every status of `HAMMER_CONNECTIONS` keep-alive connections sending at once.
fn hammer(gateway: &Gateway, key: &str, case: &str) -> Vec<u16> {
    let start = std::sync::Arc::new(std::sync::Barrier::new(HAMMER_CONNECTIONS));
    let threads: Vec<_> = (0..HAMMER_CONNECTIONS)
        .map(|_| {
            let (addr, key, case, start) = (gateway.addr, key.to_owned(), case.to_owned(), start.clone());
            std::thread::spawn(move || {
                let mut connection = Connection::open(addr).unwrap();
                start.wait();
                let headers = [("Ocp-Apim-Subscription-Key", key.as_str()), ("X-Case", case.as_str())];
                (0..HAMMER_REQUESTS_PER_CONNECTION)
                    .map(|_| connection.get("/echo/h", &headers).unwrap().status)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect()
}

fn bandwidth_quota(client: &Client<'_>, io: &str) {
    let counter = format!("bandwidth-{io}");
    // One kilobyte: the first exchange (request and response, over a hundred bytes) uses it up,
    // counted after its response.
    let served = client.get("/echo/kb", "bandwidth", &counter);
    assert_eq!((served.status, served.header("X-Kb-Left")), (200, Some("1")), "{}", served.text());
    let raw = client.raw("/echo/kb", "bandwidth", &counter);
    let body = r#"{ "statusCode": 403, "message": "Out of bandwidth quota. Quota will be replenished in 10675199.02:48:05." }"#;
    let expected = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nRetry-After: 922337203685\r\nX-Kb-Left: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw, expected);
}

portcullis_tests::on_both_io_backends!(bandwidth_counts_chunked_bodies_as_relayed);

/// A bandwidth quota counts the bytes that went both ways, also for a chunked response (its
/// length is known only once relayed): 6 KB chunked use up a 4 KB quota in one exchange, so the
/// next request is refused; counted as its head alone, three more would pass. The counter moves
/// after the response went out, so a request sent at once may still pass: they are 50 ms apart,
/// and one such is allowed.
fn bandwidth_counts_chunked_bodies_as_relayed(io: &str) {
    let backend = portcullis_tests::backend::ScriptedBackend::start(|_: &portcullis_tests::backend::Request| {
        portcullis_tests::backend::Reply::new(200).chunked(vec![vec![b'x'; 3000], vec![b'y'; 3000]])
    });
    let dir = TempDir::new("config");
    std::fs::create_dir_all(dir.path().join("apis/chunky")).unwrap();
    std::fs::write(
        dir.path().join("apis/chunky/api.toml"),
        format!(
            "name = \"chunky\"\npath = \"chunky\"\nbackend-url = \"http://{}/\"\nsubscription-required = false\n",
            backend.addr
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("apis/chunky/policy.xml"),
        r#"<policies><inbound><base /><quota-by-key bandwidth="4" renewal-period="0" counter-key="chunky" remaining-bandwidth-header-name="X-Kb-Left" /></inbound>
<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"#,
    )
    .unwrap();
    let gateway = Gateway::start(GatewayOptions::new(io).config(dir.path()));
    let mut served = 0;
    let refused = loop {
        let response = http::get(gateway.addr, "/chunky/big", &[]).unwrap();
        if response.status != 200 {
            break response;
        }
        assert_eq!(response.body.len(), 6000);
        served += 1;
        assert!(served <= 2, "6 KB relayed must use up 4 KB: {served} responses served");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("Out of bandwidth quota."), "{}", refused.text());
}
