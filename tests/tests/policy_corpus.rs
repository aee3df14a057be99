//! The policy corpus of `tests/fixtures/policies/`: real-world-shaped API Management documents
//! (written for this project from APIM's documented patterns) that must keep compiling, each
//! checked by `portcullis policy check` against the corpus's own config directory (so an unknown
//! named value, backend or fragment is an error), and a few of them run by `portcullis up` to the
//! result their comment states.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_tests::http;
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

fn corpus() -> PathBuf {
    bins::repo_root().join("tests/fixtures/policies")
}

/// Every `.xml` under `dir`, sorted.
fn documents(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "xml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `portcullis policy check --config <corpus>/config FILE`: `Err` holds everything it printed.
fn check(file: &Path) -> Result<(), String> {
    let output = Command::new(bins::portcullis())
        .args(["policy", "check", "--config"])
        .arg(corpus().join("config"))
        .arg(file)
        .output()
        .expect("run portcullis policy check");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
    }
}

#[test]
fn every_document_of_the_corpus_compiles_and_says_what_it_does() {
    let files = documents(&corpus());
    assert!(files.len() >= 30, "the corpus has {} documents; it should have at least 30", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if !text.contains("<!--") {
            failures.push(format!("{}: no comment saying what the document does", file.display()));
        }
        if let Err(diagnostics) = check(file) {
            failures.push(format!("{}:\n{diagnostics}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus documents fail:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn the_corpus_check_reports_a_document_that_stops_compiling() {
    // The check above can fail: the same command on a corpus document with one unknown policy
    // and one unknown named value names the file, the policy and the name.
    let dir = TempDir::new("corpus");
    let broken = dir.path().join("broken.xml");
    let text = std::fs::read_to_string(corpus().join("partner-key-check.xml")).unwrap();
    let text = text.replace("<base />\n    <check-header", "<base />\n    <set-heder name=\"X\" />\n    <check-header");
    let text = text.replace("{{environment-name}}", "{{no-such-value}}");
    std::fs::write(&broken, text).unwrap();
    let diagnostics = check(&broken).expect_err("a broken document must fail the check");
    assert!(diagnostics.contains("broken.xml"), "{diagnostics}");
    assert!(diagnostics.contains("unknown policy <set-heder>"), "{diagnostics}");
    assert!(diagnostics.contains("no-such-value"), "{diagnostics}");
}

/// The quickstart configuration plus one open API per named corpus document (its path is the
/// document's name, its backend the built-in echo backend) and the corpus's named values.
fn config_with(names: &[&str]) -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    std::fs::copy(corpus().join("config/named-values.toml"), dir.path().join("named-values.toml")).unwrap();
    for name in names {
        let api = dir.path().join("apis").join(name);
        std::fs::create_dir_all(&api).unwrap();
        let toml = format!(
            "name = \"{name}\"\npath = \"{name}\"\nbackend-url = \"{{{{echo-backend-url}}}}/api\"\nsubscription-required = false\n"
        );
        std::fs::write(api.join("api.toml"), toml).unwrap();
        std::fs::copy(corpus().join(format!("{name}.xml")), api.join("policy.xml")).unwrap();
    }
    dir
}

portcullis_tests::on_both_io_backends!(corpus_documents_produce_the_result_their_comment_states);

fn corpus_documents_produce_the_result_their_comment_states(io: &str) {
    let config = config_with(&[
        "mock-while-building",
        "partner-key-check",
        "header-hygiene",
        "status-mapping",
        "strip-secrets-from-query",
        "priority-pick",
        "cidr-match",
    ]);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let addr = gateway.addr;

    // mock-while-building: the fixed JSON sample, the backend never called.
    let mocked = http::get(addr, "/mock-while-building/orders", &[]).unwrap();
    assert_eq!((mocked.status, mocked.header("x-mocked")), (200, Some("true")), "{}", mocked.text());
    assert_eq!(mocked.header("content-type"), Some("application/json"));
    let body = mocked.json();
    assert_eq!(body["orders"][0]["id"], "A-1001", "{body}");
    assert!(body.get("server").is_none(), "the echo backend answered: {body}");

    // partner-key-check: 401 without the key (APIM's body), forwarded without it with the key.
    let refused = http::get(addr, "/partner-key-check/x", &[]).unwrap();
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.text(), r#"{ "statusCode": 401, "message": "Missing or invalid partner key" }"#);
    let wrong = http::get(addr, "/partner-key-check/x", &[("X-Partner-Key", "guess")]).unwrap();
    assert_eq!(wrong.status, 401);
    let ok = http::get(addr, "/partner-key-check/x", &[("X-Partner-Key", "partner-key-for-tests")]).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let echoed = ok.json();
    assert!(echoed["headers"].get("x-partner-key").is_none(), "the key reached the backend: {echoed}");
    assert_eq!(echoed["headers"]["x-environment"][0], "test", "{echoed}");

    // header-hygiene: a correlation id is added, cookies and the subscription key are dropped,
    // and the response carries the correlation id the caller sent.
    let clean = http::get(
        addr,
        "/header-hygiene/x",
        &[("Cookie", "session=secret"), ("Ocp-Apim-Subscription-Key", "k"), ("X-Correlation-Id", "abc-123")],
    )
    .unwrap();
    assert_eq!(clean.status, 200, "{}", clean.text());
    let echoed = clean.json();
    assert!(echoed["headers"].get("cookie").is_none(), "{echoed}");
    assert!(echoed["headers"].get("ocp-apim-subscription-key").is_none(), "{echoed}");
    assert_eq!(echoed["headers"]["x-correlation-id"][0], "abc-123", "{echoed}");
    assert!(echoed["headers"].get("x-forwarded-client").is_some(), "{echoed}");
    assert_eq!(clean.header("x-correlation-id"), Some("abc-123"));
    let fresh = http::get(addr, "/header-hygiene/x", &[]).unwrap();
    let id = fresh.json()["headers"]["x-correlation-id"][0].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "the gateway adds a correlation id when the caller sends none");

    // status-mapping: the backend's 404 on a search becomes 200 with an empty list; its 418
    // becomes 503 with Retry-After; other statuses pass.
    let empty = http::get(addr, "/status-mapping/items/search?echo-status=404", &[]).unwrap();
    assert_eq!((empty.status, empty.text().as_str()), (200, "[]"));
    assert_eq!(empty.header("content-type"), Some("application/json"));
    let teapot = http::get(addr, "/status-mapping/items?echo-status=418", &[]).unwrap();
    assert_eq!((teapot.status, teapot.header("retry-after")), (503, Some("120")));
    let missing = http::get(addr, "/status-mapping/items/7?echo-status=404", &[]).unwrap();
    assert_eq!(missing.status, 404);

    // strip-secrets-from-query: the key moves from the query string to a header.
    let moved = http::get(addr, "/strip-secrets-from-query/items?apikey=abc&page=2", &[]).unwrap();
    assert_eq!(moved.status, 200, "{}", moved.text());
    let echoed = moved.json();
    assert_eq!(echoed["headers"]["x-api-key"][0], "abc", "{echoed}");
    let query = echoed["query"].as_str().unwrap_or_default();
    assert!(!query.contains("apikey") && query.contains("page=2"), "{echoed}");

    // priority-pick: the first of the two priority-1 regions, the path's third segment (none
    // when the path is short), the host the caller used, and a self-hosted gateway.
    let picked = http::get(addr, "/priority-pick/tenants/contoso/orders", &[]).unwrap();
    assert_eq!(picked.status, 200, "{}", picked.text());
    let echoed = picked.json();
    assert_eq!(echoed["headers"]["x-region"][0], "northeurope", "{echoed}");
    assert_eq!(echoed["headers"]["x-tenant"][0], "contoso", "{echoed}");
    assert_eq!(echoed["headers"]["x-caller-host"][0], "gateway.test", "{echoed}");
    assert_eq!(echoed["headers"]["x-managed-gateway"][0], "False", "{echoed}");
    let short = http::get(addr, "/priority-pick/x", &[]).unwrap().json();
    assert_eq!(short["headers"]["x-tenant"][0], "none", "{short}");

    // cidr-match: the test client is on 127.0.0.1; the masks as C#'s int arithmetic gives them.
    let matched = http::get(addr, "/cidr-match/x", &[]).unwrap();
    assert_eq!(matched.status, 200, "{}", matched.text());
    let echoed = matched.json();
    assert_eq!(echoed["headers"]["x-caller-network"][0], "loopback", "{echoed}");
    assert_eq!(echoed["headers"]["x-caller-mask"][0], "FF000000/-3841/-241", "{echoed}");
}
