//! The management plane's CLI against a running gateway: `ctl token` (create, read-only, delete),
//! `api import|list|export`, `subscription create|keys`, `import apiops` and `export --format apiops`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::process::{Command, Output};

use portcullis_tests::http;
use portcullis_tests::management::Management;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins, eventually};
use serde_json::json;

fn portcullis(gateway: &Gateway, args: &[&str]) -> Output {
    Command::new(bins::portcullis()).args(args).arg("--data-dir").arg(gateway.data()).output().expect("run portcullis")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn tokens_are_created_read_only_listed_and_deleted() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let created: serde_json::Value =
        serde_json::from_str(&stdout(&gateway.ctl(&["token", "create", "--name", "auditor", "--read-only", "--json"])))
            .unwrap();
    let secret = created["token"].as_str().unwrap().to_owned();
    let reader = Management { token: secret.clone(), ..Management::of(&gateway) };
    assert_eq!(reader.get("/apis").status, 200);
    let write = reader.request("PUT", "/tags/t", Some(&json!({"properties": {"displayName": "t"}})), &[]);
    assert_eq!(write.status, 403, "{}", write.text());
    assert_eq!(reader.post("/subscriptions/demo/listSecrets").status, 403, "secrets are not for read-only tokens");
    let sas = reader.request("GET", "/apis", None, &[("Authorization", &format!("SharedAccessSignature {secret}"))]);
    assert_eq!(sas.status, 200, "APIM's SharedAccessSignature form");

    let list = stdout(&gateway.ctl(&["token", "list"]));
    assert!(list.contains("auditor\tread-only"), "{list}");
    assert!(!list.contains(&secret), "secrets are never listed");
    stdout(&gateway.ctl(&["token", "delete", "auditor"]));
    assert_eq!(reader.get("/apis").status, 401);
    let nobody = Management { token: "not-a-token".into(), ..Management::of(&gateway) };
    assert_eq!(nobody.get("/apis").status, 401);
    assert!(!gateway.log().contains(&secret), "a token never reaches the log");
}

#[test]
fn an_openapi_file_imports_gets_a_subscription_and_serves() {
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let file = bins::repo_root().join("management/tests/fixtures/openapi/petstore-3.0.yaml");
    let imported = stdout(&portcullis(
        &gateway,
        &[
            "api",
            "import",
            file.to_str().unwrap(),
            "--path",
            "pets",
            "--id",
            "pets",
            "--service-url",
            "{{echo-backend-url}}/v3",
        ],
    ));
    assert!(imported.starts_with("imported /apis/pets ("), "{imported}");
    assert!(stdout(&portcullis(&gateway, &["api", "list"])).contains("pets\t/pets\tSwagger Petstore"));
    let created = stdout(&portcullis(&gateway, &["subscription", "create", "--scope", "/apis/pets", "--id", "cli"]));
    assert!(created.contains("created /subscriptions/cli (active)"), "{created}");
    let keys: serde_json::Value =
        serde_json::from_str(&stdout(&portcullis(&gateway, &["subscription", "keys", "cli", "--json"]))).unwrap();
    let key = keys["primaryKey"].as_str().unwrap().to_owned();
    eventually("the new subscription serves", || {
        http::get(gateway.addr, "/pets/pet/findByStatus?status=sold", &[("Ocp-Apim-Subscription-Key", &key)])
            .unwrap()
            .status
            == 200
    });
    let exported: serde_json::Value =
        serde_json::from_str(&stdout(&portcullis(&gateway, &["api", "export", "pets"]))).unwrap();
    assert_eq!(exported["openapi"], "3.0.1");
    assert_eq!(exported["info"]["title"], "Swagger Petstore - OpenAPI 3.0");

    let missing = portcullis(&gateway, &["api", "import", "/nonexistent.yaml", "--path", "x"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent.yaml"));
}

#[test]
fn an_apiops_extract_imports_as_one_change_and_exports_again() {
    let config = TempDir::new("config");
    std::fs::write(config.path().join("gateway.toml"), "").unwrap();
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    let extract = bins::repo_root().join("management/tests/fixtures/apiops");
    let report = stdout(&portcullis(&gateway, &["import", "apiops", extract.to_str().unwrap()]));
    assert!(report.contains("imported"), "{report}");
    assert!(report.contains("loggers"), "what is not modelled is listed: {report}");
    assert!(report.contains("resources written in change"), "{report}");
    let api = Management::of(&gateway);
    let apis = api.get("/apis").json();
    assert!(apis["count"].as_u64().unwrap() >= 3, "{apis}");
    assert_eq!(api.get("/apis/echo;rev=2").status, 200, "the revision came along");

    let out = TempDir::new("apiops-out");
    let target = out.path().join("extract");
    stdout(&portcullis(&gateway, &["export", target.to_str().unwrap(), "--format", "apiops"]));
    assert!(target.join("apis/orders-v1/apiInformation.json").is_file());
    assert!(target.join("products").is_dir());
}
