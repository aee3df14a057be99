//! `portcullis apply DIR` and `portcullis export DIR` against a running gateway: the plan per
//! resource, a dry run that changes nothing, an apply that serves at once, and an export that
//! `apply` reads back without a change.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;
use std::process::{Command, Output};

use portcullis_tests::http;
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

fn portcullis(gateway: &Gateway, args: &[&str]) -> Output {
    Command::new(bins::portcullis()).args(args).arg("--data-dir").arg(gateway.data()).output().expect("run portcullis")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn status_of(gateway: &Gateway, path: &str, key: &str) -> u16 {
    http::get(gateway.addr, path, &[("Ocp-Apim-Subscription-Key", key)]).unwrap().status
}

fn add_second_api(config: &Path) {
    std::fs::create_dir_all(config.join("apis/second")).unwrap();
    std::fs::write(
        config.join("apis/second/api.toml"),
        "name = \"Second\"\npath = \"second\"\nbackend-url = \"{{echo-backend-url}}/v2\"\nsubscription-required = false\n",
    )
    .unwrap();
}

#[test]
fn apply_plans_applies_and_export_round_trips() {
    let config = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), config.path()).unwrap();
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let dir = config.path().to_str().unwrap();

    add_second_api(config.path());
    let dry = stdout(&portcullis(&gateway, &["apply", dir, "--dry-run"]));
    assert!(dry.contains("+ create /apis/second (apis/second/api.toml)"), "{dry}");
    assert!(dry.contains("1 to create, 0 to update, 0 to delete"), "{dry}");
    assert_eq!(status_of(&gateway, "/second/x", &key), 404, "a dry run changes nothing");

    let applied = stdout(&portcullis(&gateway, &["apply", dir, "--json"]));
    let plan: serde_json::Value = serde_json::from_str(&applied).unwrap();
    assert_eq!(plan["create"][0]["resource"], "/apis/second", "{applied}");
    assert_eq!(status_of(&gateway, "/second/x", &key), 200, "apply answers once the data plane has it");
    assert_eq!(status_of(&gateway, "/echo/x", &key), 200);

    std::fs::remove_dir_all(config.path().join("apis/second")).unwrap();
    let removed = stdout(&portcullis(&gateway, &["apply", dir]));
    assert!(removed.contains("- delete /apis/second (apis/second/api.toml)"), "{removed}");
    assert_eq!(status_of(&gateway, "/second/x", &key), 404);

    let exported = TempDir::new("exported");
    let out = exported.path().join("out");
    let summary = stdout(&portcullis(&gateway, &["export", out.to_str().unwrap()]));
    assert!(summary.contains("exported"), "{summary}");
    assert!(out.join("apis/echo/api.toml").is_file());
    let again = stdout(&portcullis(&gateway, &["apply", out.to_str().unwrap(), "--dry-run"]));
    assert!(again.contains("0 to create, 0 to update, 0 to delete"), "export then apply changes nothing: {again}");

    let refused = portcullis(&gateway, &["export", out.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not empty"));
}

#[test]
fn a_broken_directory_is_refused_with_its_position_and_nothing_changes() {
    let config = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), config.path()).unwrap();
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    std::fs::write(
        config.path().join("subscriptions/demo.toml"),
        "name = \"Demo\"\nscope = \"/apis/nope\"\nprimary-key = \"k1\"\nsecondary-key = \"k2\"\n",
    )
    .unwrap();
    let output = portcullis(&gateway, &["apply", config.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown API \"nope\"") && stderr.contains("demo.toml:2:9"), "{stderr}");
    assert_eq!(status_of(&gateway, "/echo/x", &key), 200, "the running config keeps serving");
}
