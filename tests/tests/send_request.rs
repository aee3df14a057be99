//! `send-request`, `send-one-way-request` and `wait` through the running gateway, on both I/O
//! backends, against real loopback services: a JSON lookup whose answer later expressions read
//! (`IResponse` in `context.Variables`), its connection kept alive and reused, `mode="copy"`,
//! `return-response response-variable-name`, a slow service (timeout), a closed port (connection
//! failure, and `ignore-error`), several calls in flight at once under `wait` (all, any), and a
//! one-way call the request does not wait for.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use portcullis_tests::backend::{Reply, Request, ScriptedBackend, echo};
use portcullis_tests::http::Connection;
use portcullis_tests::{Gateway, GatewayOptions, TempDir};

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Requests to `/svc/pair` that met another one within this long answer `together`.
const PAIR_WAIT: Duration = Duration::from_secs(5);

/// The services the policies call: `/svc/user` (JSON), `/svc/echo` (what it got), `/svc/slow`
/// (answers after 3 s), `/svc/pair` (answers `together` only when two requests are in at once),
/// `/svc/hook` (answers after 1 s, then marks `hook_done`).
fn services(hook_done: Arc<AtomicBool>) -> ScriptedBackend {
    let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
    ScriptedBackend::start(move |request: &Request| {
        let path = request.target.split('?').next().unwrap_or_default().to_owned();
        match path.as_str() {
            "/svc/user" => Reply::new(200)
                .header("Content-Type", "application/json")
                .header("X-Svc", "user")
                .body(r#"{"name":"ada","id":7}"#),
            "/svc/echo" => Reply::new(201).header("X-Svc", "echo").body(format!(
                "{} {} x-in={} x-added={} body={}",
                request.method,
                request.target,
                request.header("x-in").unwrap_or("-"),
                request.header("x-added").unwrap_or("-"),
                request.text()
            )),
            "/svc/slow" => {
                std::thread::sleep(Duration::from_secs(3));
                Reply::new(200).body("late")
            }
            "/svc/pair" => {
                let (count, arrived) = &*pair;
                let mut count = count.lock().unwrap();
                *count += 1;
                arrived.notify_all();
                let deadline = Instant::now() + PAIR_WAIT;
                while *count < 2 && Instant::now() < deadline {
                    count = arrived.wait_timeout(count, deadline - Instant::now()).unwrap().0;
                }
                Reply::new(200).body(if *count >= 2 { "together" } else { "alone" })
            }
            "/svc/hook" => {
                std::thread::sleep(Duration::from_secs(1));
                hook_done.store(true, Ordering::SeqCst);
                Reply::new(202)
            }
            _ => Reply::new(404),
        }
    })
}

/// An API `id` at `/id` forwarding to `backend`, with `inbound` as its inbound section and
/// `on_error` as its on-error section.
fn api(dir: &Path, id: &str, backend: &ScriptedBackend, inbound: &str, on_error: &str) {
    write(
        dir,
        &format!("apis/{id}/api.toml"),
        &format!(
            "name = \"{id}\"\npath = \"{id}\"\nbackend-url = \"http://{}/b\"\nsubscription-required = false\n",
            backend.addr
        ),
    );
    write(dir, &format!("apis/{id}/operations/all.toml"), "method = \"*\"\nurl-template = \"/*\"\n");
    write(
        dir,
        &format!("apis/{id}/policy.xml"),
        &format!(
            "<policies>\n  <inbound><base />{inbound}</inbound>\n  <backend><base /></backend>\n  <outbound><base /></outbound>\n  <on-error><base />{on_error}</on-error>\n</policies>"
        ),
    );
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

const REPORT_ERROR: &str = r#"<return-response><set-status code="599" reason="Reported" /><set-body>@(context.LastError.Source + "/" + context.LastError.Reason + "/" + context.LastError.Path)</set-body></return-response>"#;

fn config(services: &ScriptedBackend, backend: &ScriptedBackend) -> TempDir {
    let dir = TempDir::new("config");
    let svc = services.addr;
    let closed = closed_port();
    write(dir.path(), "gateway.toml", "");
    api(
        dir.path(),
        "lookup",
        backend,
        &format!(
            r#"<send-request mode="new" response-variable-name="user" timeout="10" ignore-error="false">
      <set-url>http://{svc}/svc/user</set-url>
      <set-method>GET</set-method>
      <set-header name="X-Token" exists-action="override"><value>t1</value></set-header>
    </send-request>
    <set-header name="X-User" exists-action="override"><value>@(((IResponse)context.Variables["user"]).Body.As<JObject>()["name"].ToString())</value></set-header>
    <set-header name="X-Svc-Status" exists-action="override"><value>@(((IResponse)context.Variables["user"]).StatusCode + " " + ((IResponse)context.Variables["user"]).StatusReason)</value></set-header>
    <set-header name="X-Svc-Header" exists-action="override"><value>@(((IResponse)context.Variables["user"]).Headers.GetValueOrDefault("x-svc", "none"))</value></set-header>"#
        ),
        "",
    );
    api(
        dir.path(),
        "copy",
        backend,
        &format!(
            r#"<set-header name="X-Added" exists-action="override"><value>a1</value></set-header>
    <send-request mode="copy" response-variable-name="copied">
      <set-url>@("http://{svc}/svc/echo?from=" + context.Request.Method)</set-url>
    </send-request>
    <return-response response-variable-name="copied">
      <set-header name="X-Returned" exists-action="override"><value>yes</value></set-header>
    </return-response>"#
        ),
        "",
    );
    api(
        dir.path(),
        "slow",
        backend,
        &format!(
            r#"<send-request mode="new" response-variable-name="r" timeout="1"><set-url>http://{svc}/svc/slow</set-url></send-request>"#
        ),
        "",
    );
    api(
        dir.path(),
        "slowerr",
        backend,
        &format!(
            r#"<choose><when condition="@(true)"><send-request mode="new" response-variable-name="r" timeout="1"><set-url>http://{svc}/svc/slow</set-url></send-request></when></choose>"#
        ),
        REPORT_ERROR,
    );
    api(
        dir.path(),
        "refused",
        backend,
        &format!(
            r#"<send-request mode="new" response-variable-name="r"><set-url>http://127.0.0.1:{closed}/x</set-url><set-method>POST</set-method><set-body>secret-body</set-body></send-request>"#
        ),
        REPORT_ERROR,
    );
    api(
        dir.path(),
        "ignored",
        backend,
        &format!(
            r#"<send-request mode="new" response-variable-name="r" ignore-error="true"><set-url>http://127.0.0.1:{closed}/x</set-url></send-request>
    <return-response><set-body>@(context.Variables["r"] == null ? "null response" : "a response")</set-body></return-response>"#
        ),
        "",
    );
    api(
        dir.path(),
        "all",
        backend,
        &format!(
            r#"<wait for="all">
      <send-request mode="new" response-variable-name="a"><set-url>http://{svc}/svc/pair?n=a</set-url></send-request>
      <send-request mode="new" response-variable-name="b"><set-url>http://{svc}/svc/pair?n=b</set-url></send-request>
    </wait>
    <return-response><set-body>@(((IResponse)context.Variables["a"]).Body.As<string>() + "," + ((IResponse)context.Variables["b"]).Body.As<string>())</set-body></return-response>"#
        ),
        "",
    );
    api(
        dir.path(),
        "any",
        backend,
        &format!(
            r#"<wait for="any">
      <send-request mode="new" response-variable-name="slow"><set-url>http://{svc}/svc/slow</set-url></send-request>
      <send-request mode="new" response-variable-name="fast"><set-url>http://{svc}/svc/user</set-url></send-request>
    </wait>
    <return-response><set-body>@(context.Variables.ContainsKey("slow") + "," + ((IResponse)context.Variables["fast"]).Body.As<JObject>()["id"])</set-body></return-response>"#
        ),
        "",
    );
    api(
        dir.path(),
        "oneway",
        backend,
        &format!(
            r#"<send-one-way-request mode="new" timeout="10"><set-url>http://{svc}/svc/hook</set-url><set-method>POST</set-method><set-body>@("hook for " + context.Request.Url.Path)</set-body></send-one-way-request>
    <return-response><set-status code="200" reason="OK" /><set-body>sent</set-body></return-response>"#
        ),
        "",
    );
    dir
}

struct Setup {
    services: ScriptedBackend,
    backend: ScriptedBackend,
    hook_done: Arc<AtomicBool>,
    gateway: Gateway,
    _config: TempDir,
}

fn setup(io: &str) -> Setup {
    let hook_done = Arc::new(AtomicBool::new(false));
    let services = services(Arc::clone(&hook_done));
    let backend = ScriptedBackend::start(echo);
    let config = config(&services, &backend);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    Setup { services, backend, hook_done, gateway, _config: config }
}

portcullis_tests::on_both_io_backends!(
    a_lookup_answer_is_read_by_later_expressions,
    copy_and_return_response_from_a_variable,
    a_slow_service_times_out,
    a_closed_port_fails_or_is_ignored,
    wait_for_all_has_the_calls_in_flight_together,
    wait_for_any_goes_on_with_the_first,
    a_one_way_call_is_not_waited_for,
);

fn a_lookup_answer_is_read_by_later_expressions(io: &str) {
    let setup = setup(io);
    let mut connection = Connection::open(setup.gateway.addr).unwrap();
    for _ in 0..3 {
        let response = connection.get("/lookup/items", &[]).unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let forwarded = setup.backend.requests_to("/b/items");
    assert_eq!(forwarded.len(), 3);
    assert_eq!(forwarded[0].header("x-user"), Some("ada"));
    assert_eq!(forwarded[0].header("x-svc-status"), Some("200 Scripted"));
    assert_eq!(forwarded[0].header("x-svc-header"), Some("user"));
    let calls = setup.services.requests_to("/svc/user");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].method, "GET");
    assert_eq!(calls[0].header("x-token"), Some("t1"));
    assert_eq!(calls[0].header("host"), Some(setup.services.addr.to_string().as_str()));
    // One worker (the client's connection stays on it) kept the service's connection alive.
    assert!(calls.iter().all(|call| call.connection == calls[0].connection), "the pooled connection is reused");
}

fn copy_and_return_response_from_a_variable(io: &str) {
    let setup = setup(io);
    let mut connection = Connection::open(setup.gateway.addr).unwrap();
    let response = connection
        .round_trip(
            b"POST /copy/things?q=1 HTTP/1.1\r\nHost: gateway.test\r\nX-In: i1\r\nContent-Length: 5\r\n\r\nhello",
        )
        .unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(response.header("x-svc"), Some("echo"));
    assert_eq!(response.header("x-returned"), Some("yes"));
    assert_eq!(response.text(), "POST /svc/echo?from=POST x-in=i1 x-added=a1 body=hello");
    assert!(setup.backend.requests_to("/b").is_empty(), "return-response answers without the backend");
}

fn a_slow_service_times_out(io: &str) {
    let setup = setup(io);
    let mut connection = Connection::open(setup.gateway.addr).unwrap();
    let response = connection.get("/slow/x", &[]).unwrap();
    let body = r#"{ "statusCode": 500, "message": "Request to the send-request URL timed out after 1000 ms." }"#;
    assert_eq!((response.status, response.text()), (500, body.to_owned()));
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("content-length"), Some(body.len().to_string().as_str()));
    let reported = connection.get("/slowerr/x", &[]).unwrap();
    assert_eq!(
        (reported.status, reported.text()),
        (599, "send-request/Timeout/choose[1]/when[1]/send-request[1]".to_owned())
    );
    assert!(setup.backend.requests_to("/b").is_empty());
}

fn a_closed_port_fails_or_is_ignored(io: &str) {
    let setup = setup(io);
    let mut connection = Connection::open(setup.gateway.addr).unwrap();
    let reported = connection.get("/refused/x", &[]).unwrap();
    assert_eq!(
        (reported.status, reported.text()),
        (599, "send-request/BackendConnectionFailure/send-request[1]".to_owned())
    );
    let ignored = connection.get("/ignored/x", &[]).unwrap();
    assert_eq!((ignored.status, ignored.text()), (200, "null response".to_owned()));
    // Without on-error: APIM's body, and nothing of the call (its URL, its body) in it.
    let config = TempDir::new("config");
    let closed = closed_port();
    write(config.path(), "gateway.toml", "");
    api(
        config.path(),
        "bare",
        &setup.backend,
        &format!(
            r#"<send-request mode="new" response-variable-name="r"><set-url>http://127.0.0.1:{closed}/x?key=secret-key</set-url></send-request>"#
        ),
        "",
    );
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let bare = Connection::open(gateway.addr).unwrap().get("/bare/x", &[]).unwrap();
    let body = r#"{ "statusCode": 500, "message": "The send-request URL could not be reached." }"#;
    assert_eq!((bare.status, bare.text()), (500, body.to_owned()));
}

fn wait_for_all_has_the_calls_in_flight_together(io: &str) {
    let setup = setup(io);
    let mut connection = Connection::open(setup.gateway.addr).unwrap();
    let response = connection.get("/all/x", &[]).unwrap();
    assert_eq!((response.status, response.text()), (200, "together,together".to_owned()));
    let calls = setup.services.requests_to("/svc/pair");
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0].connection, calls[1].connection, "two connections at once");
}

fn wait_for_any_goes_on_with_the_first(io: &str) {
    let setup = setup(io);
    let mut connection = Connection::open(setup.gateway.addr).unwrap();
    let started = Instant::now();
    let response = connection.get("/any/x", &[]).unwrap();
    assert_eq!((response.status, response.text()), (200, "False,7".to_owned()));
    // The slow call was abandoned: the answer did not wait for its 3 s.
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
}

fn a_one_way_call_is_not_waited_for(io: &str) {
    let setup = setup(io);
    let mut connection = Connection::open(setup.gateway.addr).unwrap();
    let response = connection.get("/oneway/x", &[]).unwrap();
    assert_eq!((response.status, response.text()), (200, "sent".to_owned()));
    assert!(!setup.hook_done.load(Ordering::SeqCst), "the client's answer came before the hook's");
    let deadline = Instant::now() + Duration::from_secs(10);
    while setup.services.requests_to("/svc/hook").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let hooks = setup.services.requests_to("/svc/hook");
    assert_eq!(hooks.len(), 1, "the one-way call was delivered");
    assert_eq!((hooks[0].method.as_str(), hooks[0].text()), ("POST", "hook for /b/x".to_owned()));
}
