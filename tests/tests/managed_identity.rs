//! `authentication-managed-identity` against real token sources on loopback: a fake instance
//! metadata service, a fake OAuth 2.0 issuer and a fake Entra token endpoint for workload
//! identity. The backend receives the bearer token; the source is asked once per resource
//! however many requests come (and again to refresh); a source that fails gives APIM's 500, or a
//! continue with `ignore-error`; and no token appears in the gateway's log, status or metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_tests::backend::{Reply, Request, ScriptedBackend};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins, eventually, http};

const COGNITIVE: &str = "https://cognitiveservices.azure.com";

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The quickstart, plus `[managed-identity]` and one API per (name, inbound policies).
fn config(identity_table: &str, backend: &ScriptedBackend, apis: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new("config");
    let root = dir.path();
    copy_tree(&bins::repo_root().join("examples/quickstart"), root).unwrap();
    let gateway_toml = std::fs::read_to_string(root.join("gateway.toml")).unwrap();
    write(root, "gateway.toml", &format!("{gateway_toml}\n{identity_table}\n"));
    for (name, inbound) in apis {
        write(
            root,
            &format!("apis/{name}/api.toml"),
            &format!(
                "name = \"{name}\"\npath = \"{name}\"\nbackend-url = \"http://{}/{name}\"\nsubscription-required = false\n",
                backend.addr
            ),
        );
        write(
            root,
            &format!("apis/{name}/policy.xml"),
            &format!(
                "<policies><inbound><base />{inbound}</inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
            ),
        );
    }
    dir
}

/// A backend that answers 200 and tells what `Authorization` and `X-Token` it received.
fn backend() -> ScriptedBackend {
    ScriptedBackend::start(|request: &Request| {
        Reply::new(200)
            .header("X-Seen-Authorization", request.header("authorization").unwrap_or("none"))
            .header("X-Seen-Token", request.header("x-token").unwrap_or("none"))
            .body("ok")
    })
}

fn json(status: u16, body: &serde_json::Value) -> Reply {
    Reply::new(status).header("Content-Type", "application/json").body(body.to_string())
}

/// The query parameter `name` of a request target (not decoded).
fn query<'t>(target: &'t str, name: &str) -> Option<&'t str> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// Nothing the gateway reports outside the requests holds `secret`.
fn assert_never_reported(gateway: &Gateway, secrets: &[&str]) {
    let metrics = http::get(gateway.ops_addr(), "/metrics", &[]).unwrap().text();
    let status = gateway.status().to_string();
    let log = gateway.log();
    for secret in secrets {
        assert!(!log.contains(secret), "the gateway's log holds a token: {log}");
        assert!(!metrics.contains(secret), "the metrics hold a token");
        assert!(!status.contains(secret), "the status holds a token");
    }
}

portcullis_tests::on_both_io_backends!(imds_tokens_reach_the_backend_fetched_once_per_resource);

fn imds_tokens_reach_the_backend_fetched_once_per_resource(io: &str) {
    let imds = ScriptedBackend::start(|request: &Request| {
        if request.header("metadata") != Some("true") {
            return json(400, &serde_json::json!({"error": "invalid_request", "error_description": "Metadata header"}));
        }
        let resource = query(&request.target, "resource").unwrap_or_default();
        let client = query(&request.target, "client_id");
        match (resource, client) {
            ("https%3A%2F%2Fcognitiveservices.azure.com", None) => json(
                200,
                &serde_json::json!({"access_token": "imds-token-cognitive", "expires_in": "3599", "token_type": "Bearer", "resource": COGNITIVE}),
            ),
            ("api%3A%2F%2Fvar-backend", Some("uami-1")) => {
                json(200, &serde_json::json!({"access_token": "imds-token-uami", "expires_in": 3599}))
            }
            _ => json(400, &serde_json::json!({"error": "invalid_resource"})),
        }
    });
    let backend = backend();
    let identity = format!("[managed-identity]\nendpoint = \"http://{}/metadata/identity/oauth2/token\"\n", imds.addr);
    let apis = [
        ("ai", format!(r#"<authentication-managed-identity resource="{COGNITIVE}" />"#)),
        (
            "var",
            r#"<authentication-managed-identity resource="api://var-backend" client-id="uami-1" output-token-variable-name="tok" />
               <set-header name="X-Token" exists-action="override"><value>@((string)context.Variables["tok"])</value></set-header>"#
                .to_owned(),
        ),
        ("missing", r#"<authentication-managed-identity resource="https://nothing.example" />"#.to_owned()),
        (
            "optional",
            r#"<authentication-managed-identity resource="https://nothing.example" ignore-error="true" />"#.to_owned(),
        ),
    ];
    let apis: Vec<(&str, &str)> = apis.iter().map(|(name, policy)| (*name, policy.as_str())).collect();
    let dir = config(&identity, &backend, &apis);
    let gateway = Gateway::start(GatewayOptions::new(io).config(dir.path()));

    // The token is fetched when the snapshot arrives, before any request asks for it.
    eventually("the token for the cognitive services resource is held", || {
        http::get(gateway.addr, "/ai/chat", &[]).unwrap().status == 200
    });
    let mut client = http::Connection::open(gateway.addr).unwrap();
    for _ in 0..20 {
        let response = client.get("/ai/chat", &[]).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("X-Seen-Authorization"), Some("Bearer imds-token-cognitive"));
    }
    let fetched =
        imds.requests_to("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fcognitive");
    assert_eq!(fetched.len(), 1, "one fetch for every request: {fetched:?}");
    assert!(query(&fetched[0].target, "client_id").is_none(), "the system-assigned identity");

    // A user-assigned identity, into a variable: no Authorization header is set.
    eventually("the user-assigned identity's token is held", || {
        http::get(gateway.addr, "/var/x", &[]).unwrap().status == 200
    });
    let response = client.get("/var/x", &[]).unwrap();
    assert_eq!(response.header("X-Seen-Token"), Some("imds-token-uami"));
    assert_eq!(response.header("X-Seen-Authorization"), Some("none"));

    // A resource the source refuses: APIM's 500, or a continue without a token.
    let response = client.get("/missing/x", &[]).unwrap();
    assert_eq!(response.status, 500);
    let body = response.json();
    assert_eq!(body["statusCode"], 500);
    assert_eq!(body["message"], "Internal server error", "{body}");
    let response = client.get("/optional/x", &[]).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("X-Seen-Authorization"), Some("none"));
    eventually("the failing resource is retried, with a growing delay", || {
        imds.requests_to("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fnothing").len()
            >= 2
    });
    assert!(gateway.log().contains("managed identity token not acquired"), "the failure is logged");
    assert_never_reported(&gateway, &["imds-token-cognitive", "imds-token-uami"]);
}

#[test]
fn client_credentials_tokens_are_refreshed_before_they_expire() {
    let issued = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&issued);
    let issuer = ScriptedBackend::start(move |request: &Request| {
        let form = request.text();
        let wanted = [
            "grant_type=client_credentials",
            "client_id=gateway-app",
            "client_secret=issuer-secret-5e1f",
            "scope=api%3A%2F%2Fbackend%2F.default",
        ];
        if request.method != "POST" || !wanted.iter().all(|pair| form.split('&').any(|p| p == *pair)) {
            return json(401, &serde_json::json!({"error": "invalid_client"}));
        }
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        // Two seconds: refreshed at half its life, so about every second.
        json(
            200,
            &serde_json::json!({"access_token": format!("cc-token-{n}"), "expires_in": 2, "token_type": "Bearer"}),
        )
    });
    let backend = backend();
    let identity = format!(
        "[managed-identity]\nsource = \"client-credentials\"\ntoken-url = \"http://{}/oauth2/token\"\nclient-id = \"gateway-app\"\nclient-secret = \"issuer-secret-5e1f\"\n",
        issuer.addr
    );
    let dir =
        config(&identity, &backend, &[("api", r#"<authentication-managed-identity resource="api://backend/" />"#)]);
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(dir.path()));
    eventually("a token is held", || http::get(gateway.addr, "/api/x", &[]).unwrap().status == 200);

    let mut seen = std::collections::BTreeSet::new();
    let mut requests = 0;
    let started = Instant::now();
    let mut client = http::Connection::open(gateway.addr).unwrap();
    while started.elapsed() < Duration::from_millis(4500) {
        let response = client.get("/api/x", &[]).unwrap();
        assert_eq!(response.status, 200, "a refresh never leaves a gap");
        seen.insert(response.header("X-Seen-Authorization").unwrap().to_owned());
        requests += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let fetches = issued.load(Ordering::SeqCst);
    assert!(seen.len() >= 3, "the token was refreshed: {seen:?}");
    assert!(seen.iter().all(|token| token.starts_with("Bearer cc-token-")), "{seen:?}");
    assert!(fetches <= 10 && requests > 3 * fetches, "{fetches} fetches for {requests} requests");

    // A reload that names another resource: its token is fetched with the new snapshot.
    write(
        dir.path(),
        "apis/api/policy.xml",
        r#"<policies><inbound><base /><authentication-managed-identity resource="api://other" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"#,
    );
    assert!(gateway.ctl(&["reload"]).status.success());
    eventually("the new resource's token is fetched after the reload", || {
        issuer.requests().iter().any(|request| request.text().contains("scope=api%3A%2F%2Fother%2F.default"))
    });
    assert_never_reported(&gateway, &["cc-token-", "issuer-secret-5e1f"]);
}

#[test]
fn workload_identity_exchanges_the_federated_token() {
    let files = TempDir::new("federated");
    let token_file = files.path().join("azure-identity-token");
    std::fs::write(&token_file, "federated-assertion-7c2d\n").unwrap();
    let entra = ScriptedBackend::start(|request: &Request| {
        let form = request.text();
        let wanted = [
            "grant_type=client_credentials",
            "client_id=wi-client",
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
            "client_assertion=federated-assertion-7c2d",
            "scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default",
        ];
        if request.target != "/tenant-1/oauth2/v2.0/token"
            || !wanted.iter().all(|pair| form.split('&').any(|p| p == *pair))
        {
            return json(400, &serde_json::json!({"error": "invalid_request"}));
        }
        json(200, &serde_json::json!({"access_token": "wi-token-1", "expires_in": 3599, "token_type": "Bearer"}))
    });
    let backend = backend();
    let identity = format!(
        "[managed-identity]\nsource = \"workload-identity\"\nauthority = \"http://{}\"\ntenant-id = \"tenant-1\"\nclient-id = \"wi-client\"\ntoken-file = \"{}\"\n",
        entra.addr,
        token_file.display()
    );
    let dir = config(
        &identity,
        &backend,
        &[("ai", &format!(r#"<authentication-managed-identity resource="{COGNITIVE}" />"#))],
    );
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(dir.path()));
    eventually("the exchanged token is held", || http::get(gateway.addr, "/ai/x", &[]).unwrap().status == 200);
    let response = http::get(gateway.addr, "/ai/x", &[]).unwrap();
    assert_eq!(response.header("X-Seen-Authorization"), Some("Bearer wi-token-1"));
    assert_eq!(entra.requests().len(), 1);
    assert_never_reported(&gateway, &["wi-token-1", "federated-assertion-7c2d"]);
}

portcullis_tests::on_both_io_backends!(send_request_carries_the_managed_identity_token);

/// `authentication-managed-identity` inside `send-request` (the Key Vault lookup of APIM's
/// samples): the call carries `Authorization: Bearer <token>` for its resource, the backend
/// request does not, and a token the source cannot issue fails the call with APIM's 500.
fn send_request_carries_the_managed_identity_token(io: &str) {
    const VAULT: &str = "https://vault.azure.net";
    let imds = ScriptedBackend::start(|request: &Request| match query(&request.target, "resource") {
        Some("https%3A%2F%2Fvault.azure.net") => {
            json(200, &serde_json::json!({"access_token": "imds-token-vault", "expires_in": 3599}))
        }
        _ => json(400, &serde_json::json!({"error": "invalid_resource"})),
    });
    // A fake Key Vault: the secret's value is the Authorization it was asked with.
    let vault = ScriptedBackend::start(|request: &Request| {
        let seen = request.header("authorization").unwrap_or("none");
        json(200, &serde_json::json!({"value": seen, "id": request.target}))
    });
    let backend = backend();
    let identity = format!("[managed-identity]\nendpoint = \"http://{}/metadata/identity/oauth2/token\"\n", imds.addr);
    let call = |resource: &str, then: &str| {
        format!(
            r#"<send-request mode="new" response-variable-name="secret" timeout="5">
                 <set-url>http://{}/secrets/db-password?api-version=7.4</set-url>
                 <set-method>GET</set-method>
                 <authentication-managed-identity resource="{resource}" />
               </send-request>{then}"#,
            vault.addr
        )
    };
    let answer = r#"<return-response><set-status code="200" reason="OK" /><set-body>@((string)((IResponse)context.Variables["secret"]).Body.As<JObject>()["value"])</set-body></return-response>"#;
    let apis = [
        ("vault", call(VAULT, answer)),
        // The call's token does not leak onto the backend request.
        ("forward", call(VAULT, "")),
        ("refused", call("https://nothing.example", answer)),
    ];
    let apis: Vec<(&str, &str)> = apis.iter().map(|(name, policy)| (*name, policy.as_str())).collect();
    let dir = config(&identity, &backend, &apis);
    let gateway = Gateway::start(GatewayOptions::new(io).config(dir.path()));

    eventually("the vault token is held", || http::get(gateway.addr, "/vault/x", &[]).unwrap().status == 200);
    let response = http::get(gateway.addr, "/vault/x", &[]).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Bearer imds-token-vault");
    let calls = vault.requests_to("/secrets/db-password");
    assert!(calls.iter().all(|call| call.header("authorization") == Some("Bearer imds-token-vault")), "{calls:?}");
    assert!(backend.requests().is_empty(), "return-response answered: the backend is never called");

    let response = http::get(gateway.addr, "/forward/x", &[]).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("X-Seen-Authorization"), Some("none"));

    let response = http::get(gateway.addr, "/refused/x", &[]).unwrap();
    assert_eq!(response.status, 500);
    assert_eq!(response.json()["message"], "Internal server error");
    assert!(
        vault.requests().iter().all(|call| call.header("authorization").is_some()),
        "a call without its token is never made"
    );
    assert_never_reported(&gateway, &["imds-token-vault"]);
}
