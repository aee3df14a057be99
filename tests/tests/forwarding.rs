//! `forward-request` options and request bodies, through the running gateway against a scripted
//! backend: `follow-redirects` (relative and absolute `Location`, another origin, 303 to `GET`,
//! 307 with the body sent again, the hop limit, a streamed body not sent again),
//! `fail-on-error-status-code` (on-error instead of outbound, `LastError`), chunked request
//! bodies read by policies (and over the buffering limit), and `retry` sending a buffered body
//! again (and refusing to when it was streamed).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_tests::backend::{Reply, Request, ScriptedBackend};
use portcullis_tests::http::{self, Connection};
use portcullis_tests::{Gateway, GatewayOptions, TempDir};

/// The data plane's limits these tests cross (dataplane `REDIRECTS_FOLLOWED_MAX`,
/// `REQUEST_BODY_BUFFERED_BYTES_MAX`).
const REDIRECTS_FOLLOWED_MAX: usize = 10;
const BUFFERED_BYTES_MAX: usize = 4 * 1024 * 1024;

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn operation(root: &Path, id: &str, method: &str, template: &str, policy: &str) {
    write(
        root,
        &format!("apis/fwd/operations/{id}.toml"),
        &format!("method = \"{method}\"\nurl-template = \"{template}\"\n"),
    );
    write(root, &format!("apis/fwd/operations/{id}.xml"), policy);
}

const FOLLOW: &str = r#"<policies>
  <inbound><base /></inbound>
  <backend><forward-request follow-redirects="true" timeout="10" /></backend>
  <outbound><base /></outbound>
  <on-error><base /></on-error>
</policies>"#;

/// follow-redirects and the timeout computed per request (APIM allows expressions there).
const COMPUTED: &str = r#"<policies>
  <inbound><base /></inbound>
  <backend>
    <forward-request follow-redirects="@(context.Request.Headers.GetValueOrDefault("X-Follow", "") == "yes")" timeout-ms="@(2 * 2500)" />
  </backend>
  <outbound><base /></outbound>
  <on-error><base /></on-error>
</policies>"#;

const STRICT: &str = r#"<policies>
  <inbound><base /></inbound>
  <backend><forward-request fail-on-error-status-code="true" /></backend>
  <outbound>
    <base />
    <set-header name="X-Outbound" exists-action="override"><value>ran</value></set-header>
  </outbound>
  <on-error>
    <base />
    <set-header name="X-Last-Error" exists-action="override">
      <value>@(context.LastError.Source + "/" + context.LastError.Reason + "/" + context.LastError.Section + "/" + context.Response.StatusCode.ToString())</value>
    </set-header>
    <choose>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Custom", "") == "yes")">
        <return-response>
          <set-status code="503" reason="Down" />
          <set-body>@("custom: " + context.LastError.Message)</set-body>
        </return-response>
      </when>
    </choose>
  </on-error>
</policies>"#;

const UPLOAD: &str = r#"<policies>
  <inbound>
    <base />
    <set-header name="X-Body-Length" exists-action="override">
      <value>@(context.Request.Body.As<string>(preserveContent: true).Length.ToString())</value>
    </set-header>
    <find-and-replace from="cat" to="dog" />
  </inbound>
  <backend><base /></backend>
  <outbound><base /></outbound>
  <on-error>
    <return-response>
      <set-status code="500" reason="Failed" />
      <set-body>@(context.LastError.Reason + ": " + context.LastError.Message)</set-body>
    </return-response>
  </on-error>
</policies>"#;

/// Outbound reads the backend's body (buffered, a chunked one decoded) and replaces it.
const SHAPE: &str = r#"<policies>
  <inbound><base /></inbound>
  <backend><base /></backend>
  <outbound>
    <base />
    <set-body>@(context.Response.Body.As<string>().ToUpper())</set-body>
  </outbound>
  <on-error>
    <return-response>
      <set-status code="500" reason="Failed" />
      <set-body>@(context.LastError.Reason + ": " + context.LastError.Message)</set-body>
    </return-response>
  </on-error>
</policies>"#;

const RETRY: &str = r#"<policies>
  <inbound><base /></inbound>
  <backend>
    <retry condition="@(context.Response.StatusCode == 503)" count="3" interval="0" first-fast-retry="true">
      <forward-request />
    </retry>
  </backend>
  <outbound><base /></outbound>
  <on-error>
    <return-response>
      <set-status code="500" reason="Failed" />
      <set-body>@(context.LastError.Source + "/" + context.LastError.Reason + "/" + context.LastError.Section)</set-body>
    </return-response>
  </on-error>
</policies>"#;

/// Backend A: redirects, error statuses and a flaky endpoint; `other` is backend B's address,
/// `named_port` the port of the backend that listens where `localhost` resolves.
fn backend_a(listener: TcpListener, other: std::net::SocketAddr, named_port: u16) -> ScriptedBackend {
    let flaky = Arc::new(AtomicUsize::new(0));
    ScriptedBackend::on(listener, move |request: &Request| {
        let path = request.target.split('?').next().unwrap_or("");
        match path {
            "/api/follow/relative" => Reply::new(302).header("Location", "../landing?from=relative"),
            "/api/follow/absolute" => Reply::new(307).header("Location", &format!("http://{other}/elsewhere?x=1")),
            "/api/follow/by-name" => {
                Reply::new(302).header("Location", &format!("http://LOCALHOST:{named_port}/named"))
            }
            "/api/follow/see-other" => Reply::new(303).header("Location", "/api/landing?from=303"),
            "/api/follow/chain" => Reply::new(303).header("Location", "/api/follow/temporary"),
            "/api/follow/temporary" => Reply::new(307).header("Location", "/api/landing?from=307"),
            "/api/follow/loop" => Reply::new(302).header("Location", "/api/follow/loop").body("again"),
            "/api/follow/ftp" => Reply::new(301).header("Location", "ftp://files.test/x"),
            "/api/landing" | "/api/plain/landing" => Reply::new(200)
                .header("X-Method", &request.method)
                .header("X-Target", &request.target)
                .header("X-Authorization", request.header("authorization").unwrap_or("none"))
                .body(request.body.clone()),
            "/api/plain/redirect" | "/api/computed/redirect" => {
                Reply::new(302).header("Location", "/api/plain/landing")
            }
            "/api/strict/ok" => Reply::new(200).body("fine"),
            "/api/strict/missing" => Reply::new(404).header("X-Backend", "a").body("no such thing"),
            "/api/strict/broken" => Reply::new(500).body("backend exploded"),
            "/api/retry/flaky" if flaky.fetch_add(1, Ordering::SeqCst) % 3 != 2 => Reply::new(503).body("busy"),
            "/api/retry/flaky" => Reply::new(200).body(request.body.clone()),
            "/api/retry/down" => Reply::new(503).body("down"),
            "/api/shape/chunked" => {
                Reply::new(200).chunked((0..20).map(|i| format!("part {i};").into_bytes()).collect())
            }
            "/api/shape/large" => Reply::new(200).chunked(vec![vec![b'z'; 512 * 1024]; 9]),
            "/api/upload" => Reply::new(200)
                .header("X-Chunked", if request.chunked { "yes" } else { "no" })
                .header("X-Body-Length", request.header("x-body-length").unwrap_or("none"))
                .body(request.body.clone()),
            _ => Reply::new(404).body("unscripted"),
        }
    })
}

fn config(a: std::net::SocketAddr) -> TempDir {
    let config = TempDir::new("config");
    let root = config.path();
    write(
        root,
        "apis/fwd/api.toml",
        &format!("name = \"fwd\"\npath = \"fwd\"\nbackend-url = \"http://{a}/api\"\nsubscription-required = false\n"),
    );
    operation(root, "follow", "*", "/follow/*", FOLLOW);
    operation(root, "strict", "*", "/strict/*", STRICT);
    operation(root, "upload", "POST", "/upload", UPLOAD);
    operation(root, "retry", "*", "/retry/*", RETRY);
    operation(root, "shape", "GET", "/shape/*", SHAPE);
    operation(root, "computed", "GET", "/computed/*", COMPUTED);
    operation(root, "other", "*", "/*", "<policies><inbound><base /></inbound></policies>");
    config
}

/// A request with a chunked body whose chunks are written one by one, after the head has gone
/// out on its own (so the gateway cannot find the body with the head), then the response.
fn send_chunked(gateway: &Gateway, method: &str, path: &str, chunks: &[&[u8]]) -> http::Response {
    let mut connection = Connection::open(gateway.addr).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    connection.send_raw(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    for chunk in chunks {
        connection.send_raw(format!("{:x};n=1\r\n", chunk.len()).as_bytes()).unwrap();
        connection.send_raw(chunk).unwrap();
        connection.send_raw(b"\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    connection.send_raw(b"0\r\nTrailer-Field: t\r\n\r\n").unwrap();
    connection.read_response(false).unwrap()
}

/// A request with a large `Content-Length` body, written by another thread while this one reads
/// the response (the gateway may answer before it has read all of it).
fn send_large(gateway: &Gateway, path: &str, body: Vec<u8>) -> http::Response {
    let stream = std::net::TcpStream::connect(gateway.addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: {}\r\n\r\n", body.len());
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(&body));
    });
    let response = Connection::from_stream(stream).unwrap().read_response(false).unwrap();
    sender.join().unwrap();
    response
}

portcullis_tests::on_both_io_backends!(forward_request_options_and_bodies);

fn forward_request_options_and_bodies(io: &str) {
    let b = ScriptedBackend::start(|request: &Request| {
        Reply::new(200)
            .header("X-Served-By", "b")
            .header("X-Method", &request.method)
            .header("X-Target", &request.target)
            .header("X-Host", request.header("host").unwrap_or(""))
            .header("X-Authorization", request.header("authorization").unwrap_or("none"))
            .body(request.body.clone())
    });
    // Listens where the system resolver sends `localhost` first (127.0.0.1 or ::1 per gai.conf).
    let localhost = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0)).unwrap().next().unwrap();
    let named = ScriptedBackend::on(TcpListener::bind(localhost).unwrap(), |request: &Request| {
        Reply::new(200).header("X-Served-By", "named").header("X-Target", &request.target)
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = backend_a(listener, b.addr, named.addr.port());
    let config = config(a.addr);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));

    follow_redirects(&gateway, &a, &b);
    fail_on_error_status_code(&gateway);
    chunked_bodies_for_policies(&gateway, &a);
    retry_sends_a_buffered_body_again(&gateway, &a);
}

fn follow_redirects(gateway: &Gateway, a: &ScriptedBackend, b: &ScriptedBackend) {
    // A relative Location, resolved against the request's URL, on the same backend.
    let relative = http::get(gateway.addr, "/fwd/follow/relative", &[]).unwrap();
    assert_eq!(relative.status, 200, "{}", relative.text());
    assert_eq!(relative.header("x-target"), Some("/api/landing?from=relative"));

    // An absolute Location on another origin: 307 keeps method and body (here all buffered with
    // the head), and Authorization is not sent on (as .NET's HttpClient, which APIM uses).
    let mut connection = Connection::open(gateway.addr).unwrap();
    connection
        .send_raw(b"POST /fwd/follow/absolute HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Basic c2VjcmV0\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let absolute = connection.read_response(false).unwrap();
    assert_eq!((absolute.status, absolute.header("x-served-by")), (200, Some("b")), "{}", absolute.text());
    assert_eq!(absolute.header("x-method"), Some("POST"));
    assert_eq!(absolute.header("x-target"), Some("/elsewhere?x=1"));
    assert_eq!(absolute.header("x-host"), Some(b.addr.to_string().as_str()));
    assert_eq!(absolute.header("x-authorization"), Some("none"));
    assert_eq!(absolute.text(), "hello");
    // The client connection carries on.
    assert_eq!(connection.get("/fwd/follow/relative", &[]).unwrap().status, 200);

    // Another origin named by a host name the config never mentions: resolved by the worker.
    let by_name = http::get(gateway.addr, "/fwd/follow/by-name", &[]).unwrap();
    assert_eq!((by_name.status, by_name.header("x-served-by")), (200, Some("named")), "{}", by_name.text());
    assert_eq!(by_name.header("x-target"), Some("/named"));

    // 303: the request becomes a GET without a body (and without its framing headers).
    let see_other = send_chunked(gateway, "POST", "/fwd/follow/see-other", &[b"some ", b"body"]);
    assert_eq!(see_other.status, 200, "{}", see_other.text());
    assert_eq!(see_other.header("x-method"), Some("GET"));
    assert_eq!(see_other.body, b"");
    let landed = a.requests_to("/api/landing?from=303");
    assert!(landed.iter().all(|r| r.body.is_empty() && r.header("transfer-encoding").is_none()), "{landed:?}");

    // 307 with a chunked body that arrived after the head: buffered (follow-redirects may send
    // it twice), then sent again to the Location.
    let temporary = send_chunked(gateway, "PUT", "/fwd/follow/temporary", &[b"first ", b"second"]);
    assert_eq!(temporary.status, 200, "{}", temporary.text());
    assert_eq!((temporary.header("x-method"), temporary.text().as_str()), (Some("PUT"), "first second"));

    // A redirect loop: followed REDIRECTS_FOLLOWED_MAX times, then the last redirect is relayed.
    let before = a.requests_to("/api/follow/loop").len();
    let looped = http::get(gateway.addr, "/fwd/follow/loop", &[]).unwrap();
    assert_eq!((looped.status, looped.header("location")), (302, Some("/api/follow/loop")));
    assert_eq!(looped.text(), "again");
    assert_eq!(a.requests_to("/api/follow/loop").len() - before, REDIRECTS_FOLLOWED_MAX + 1);

    // A Location that is not http(s) is relayed as it is.
    let ftp = http::get(gateway.addr, "/fwd/follow/ftp", &[]).unwrap();
    assert_eq!((ftp.status, ftp.header("location")), (301, Some("ftp://files.test/x")));

    // 307 with a body over the buffering limit: streamed to the backend, so it cannot be sent
    // again; the redirect is relayed as it is.
    let large = send_large(gateway, "/fwd/follow/temporary", vec![b'x'; BUFFERED_BYTES_MAX + 1]);
    assert_eq!((large.status, large.header("location")), (307, Some("/api/landing?from=307")));

    // A 303 drops even a streamed body for good: the 307 after it is followed (as a GET).
    let chain = send_large(gateway, "/fwd/follow/chain", vec![b'z'; BUFFERED_BYTES_MAX + 1]);
    assert_eq!((chain.status, chain.header("x-method")), (200, Some("GET")), "{}", chain.text());
    assert_eq!(chain.header("x-target"), Some("/api/landing?from=307"));
    assert_eq!(chain.body, b"");

    // Without follow-redirects (the default), a redirect reaches the client.
    let plain = http::get(gateway.addr, "/fwd/plain/redirect", &[]).unwrap();
    assert_eq!((plain.status, plain.header("location")), (302, Some("/api/plain/landing")));
    // follow-redirects from an expression, decided per request.
    let followed = http::get(gateway.addr, "/fwd/computed/redirect", &[("X-Follow", "yes")]).unwrap();
    assert_eq!((followed.status, followed.header("x-target")), (200, Some("/api/plain/landing")));
    let relayed = http::get(gateway.addr, "/fwd/computed/redirect", &[("X-Follow", "no")]).unwrap();
    assert_eq!((relayed.status, relayed.header("location")), (302, Some("/api/plain/landing")));
    let _ = b.requests();
}

fn fail_on_error_status_code(gateway: &Gateway) {
    // A success runs outbound as usual.
    let ok = http::get(gateway.addr, "/fwd/strict/ok", &[]).unwrap();
    assert_eq!((ok.status, ok.header("x-outbound")), (200, Some("ran")));
    assert_eq!(ok.header("x-last-error"), None);

    // A 404: on-error instead of outbound, LastError names forward-request, and the client gets
    // the backend's response with on-error's edits.
    let missing = http::get(gateway.addr, "/fwd/strict/missing", &[]).unwrap();
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(missing.text(), "no such thing");
    assert_eq!(missing.header("x-backend"), Some("a"));
    assert_eq!(missing.header("x-outbound"), None, "outbound does not run");
    assert_eq!(missing.header("x-last-error"), Some("forward-request/BackendErrorStatusCode/backend/404"));

    // on-error's return-response wins, with LastError's message.
    let custom = http::get(gateway.addr, "/fwd/strict/broken", &[("X-Custom", "yes")]).unwrap();
    assert_eq!(custom.status, 503, "{}", custom.text());
    assert_eq!(custom.text(), "custom: Backend service responded with status code 500.");

    // Keep-alive survives all of it.
    let mut connection = Connection::open(gateway.addr).unwrap();
    for _ in 0..2 {
        assert_eq!(connection.get("/fwd/strict/missing", &[]).unwrap().status, 404);
        assert_eq!(connection.get("/fwd/strict/broken", &[("X-Custom", "yes")]).unwrap().status, 503);
        assert_eq!(connection.get("/fwd/strict/ok", &[]).unwrap().status, 200);
    }
}

fn chunked_bodies_for_policies(gateway: &Gateway, a: &ScriptedBackend) {
    // A chunked body the policies read and rewrite: buffered whole (its data decoded), and the
    // backend gets the replacement with its own length.
    let pieces: Vec<Vec<u8>> = (0..40).map(|_| b"cat ".repeat(1000)).collect();
    let chunks: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let uploaded = send_chunked(gateway, "POST", "/fwd/upload", &chunks);
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    assert_eq!(uploaded.header("x-body-length"), Some("160000"), "the policy read the whole decoded body");
    assert_eq!(uploaded.header("x-chunked"), Some("no"), "the replacement has a Content-Length");
    assert_eq!(uploaded.body.len(), 160_000);
    assert!(uploaded.text().starts_with("dog dog "), "{}", &uploaded.text()[..20]);
    assert!(!uploaded.text().contains("cat"));

    // Over the buffering limit, as for Content-Length: the policies see no body, and reading it
    // is APIM's ExpressionValueEvaluationFailure (on-error answers here).
    let before = a.requests_to("/api/upload").len();
    let piece = vec![b'c'; 256 * 1024];
    let over: Vec<&[u8]> = (0..(BUFFERED_BYTES_MAX / piece.len() + 1)).map(|_| piece.as_slice()).collect();
    let stream = std::net::TcpStream::connect(gateway.addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let chunks: Vec<Vec<u8>> = over.iter().map(|chunk| chunk.to_vec()).collect();
    let sender = std::thread::spawn(move || {
        let _ =
            writer.write_all(b"POST /fwd/upload HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n");
        for chunk in chunks {
            let framed = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk, b"\r\n".to_vec()].concat();
            if writer.write_all(&framed).is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let refused = Connection::from_stream(stream).unwrap().read_response(false).unwrap();
    let _ = sender.join();
    assert_eq!(refused.status, 500, "{}", refused.text());
    assert_eq!(
        refused.text(),
        "ExpressionValueEvaluationFailure: Expression evaluation failed. The message body was not buffered."
    );
    assert_eq!(a.requests_to("/api/upload").len(), before, "nothing reached the backend");

    // A chunked response the outbound section reads and replaces: buffered whole (decoded), and
    // the client gets the replacement with a Content-Length; the connection carries on.
    let mut connection = Connection::open(gateway.addr).unwrap();
    for _ in 0..2 {
        let shaped = connection.get("/fwd/shape/chunked", &[]).unwrap();
        assert_eq!(shaped.status, 200, "{}", shaped.text());
        let expected: String = (0..20).map(|i| format!("PART {i};")).collect();
        assert_eq!(shaped.text(), expected);
        assert_eq!(shaped.header("content-length"), Some(expected.len().to_string().as_str()));
    }
    // Past the buffering limit the response streams past the policies, and reading it fails.
    let large = connection.get("/fwd/shape/large", &[]).unwrap();
    assert_eq!(large.status, 500, "{}", large.text());
    assert_eq!(
        large.text(),
        "ExpressionValueEvaluationFailure: Expression evaluation failed. The message body was not buffered."
    );
}

fn retry_sends_a_buffered_body_again(gateway: &Gateway, a: &ScriptedBackend) {
    // Two 503s, then a 200: the chunked body (not read by any policy, arriving after the head)
    // is buffered because the retry may send it again, and each attempt carries all of it.
    let before = a.requests_to("/api/retry/flaky").len();
    let flaky = send_chunked(gateway, "POST", "/fwd/retry/flaky", &[b"one ", b"two ", b"three"]);
    assert_eq!(flaky.status, 200, "{}", flaky.text());
    assert_eq!(flaky.text(), "one two three");
    let attempts = a.requests_to("/api/retry/flaky");
    assert_eq!(attempts.len() - before, 3);
    assert!(attempts[before..].iter().all(|r| r.body == b"one two three"), "{attempts:?}");

    // A body over the buffering limit streams to the backend once; the retry cannot send it
    // again, so the request fails (500) with LastError forward-request/RequestBodyNotBuffered.
    let before = a.requests_to("/api/retry/down").len();
    let streamed = send_large(gateway, "/fwd/retry/down", vec![b'y'; BUFFERED_BYTES_MAX + 1]);
    assert_eq!(streamed.status, 500, "{}", streamed.text());
    assert_eq!(streamed.text(), "forward-request/RequestBodyNotBuffered/backend");
    assert_eq!(a.requests_to("/api/retry/down").len() - before, 1);
    assert_eq!(a.requests_to("/api/retry/down").last().unwrap().body.len(), BUFFERED_BYTES_MAX + 1);
}
