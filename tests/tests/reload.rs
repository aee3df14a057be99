//! `portcullis ctl reload`: config edits take effect with zero failed requests, and a broken
//! config is refused with file and line while the old one keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_tests::http::{self, Connection};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

/// Reloads performed while the load runs.
const RELOADS_UNDER_LOAD: usize = 20;
/// Client threads sending requests during the reloads.
const LOAD_THREADS: usize = 4;
/// Requests a client sends on one connection before opening a new one.
const REQUESTS_PER_CONNECTION: usize = 25;

fn quickstart_copy() -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    dir
}

fn set_backend_base(config: &Path, base: &str) {
    let path = config.join("apis/echo/api.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut replaced = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("backend-url") {
            replaced.push_str(&format!("backend-url = \"{{{{echo-backend-url}}}}{base}\"\n"));
        } else {
            replaced.push_str(line);
            replaced.push('\n');
        }
    }
    assert_ne!(text, replaced, "api.toml has a backend-url line");
    std::fs::write(path, replaced).unwrap();
}

fn reload(gateway: &Gateway) -> std::process::Output {
    gateway.ctl(&["reload"])
}

#[test]
fn edits_apply_and_broken_config_is_refused() {
    let config = quickstart_copy();
    let gateway = Gateway::start(GatewayOptions::new("epoll").config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let generation_before = gateway.status()["generation"].as_u64().unwrap();

    // Change the backend URL, add an API and a subscription with a new key.
    set_backend_base(config.path(), "/changed");
    std::fs::create_dir_all(config.path().join("apis/second")).unwrap();
    std::fs::write(
        config.path().join("apis/second/api.toml"),
        "name = \"Second API\"\npath = \"second\"\nbackend-url = \"{{echo-backend-url}}/v2\"\n",
    )
    .unwrap();
    std::fs::write(
        config.path().join("subscriptions/second.toml"),
        "name = \"Second\"\nscope = \"/apis/second\"\nprimary-key = \"second-primary-key\"\nsecondary-key = \"second-secondary-key\"\n",
    )
    .unwrap();
    let output = reload(&gateway);
    assert!(
        output.status.success(),
        "reload: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("generation"));
    assert_eq!(gateway.status()["applied_generation"].as_u64().unwrap(), generation_before + 1);

    let changed = http::get(gateway.addr, "/echo/x", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap();
    assert_eq!(changed.json()["path"], "/changed/x");
    let second =
        http::get(gateway.addr, "/second/y", &[("Ocp-Apim-Subscription-Key", "second-secondary-key")]).unwrap();
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.json()["path"], "/v2/y");
    // A key scoped to one API does not open another.
    let wrong_scope =
        http::get(gateway.addr, "/echo/x", &[("Ocp-Apim-Subscription-Key", "second-primary-key")]).unwrap();
    assert_eq!(wrong_scope.status, 401);

    // A broken file: refused with file and line, non-zero exit, old config keeps serving.
    std::fs::write(
        config.path().join("apis/second/api.toml"),
        "name = \"Second API\"\npath = \"second\"\nbogus-key = 1\nbackend-url = \"{{echo-backend-url}}/v3\"\n",
    )
    .unwrap();
    let refused = reload(&gateway);
    assert!(!refused.status.success(), "a broken config must fail the reload");
    let message = format!("{}{}", String::from_utf8_lossy(&refused.stdout), String::from_utf8_lossy(&refused.stderr));
    assert!(message.contains("apis/second/api.toml:3"), "names file and line: {message}");
    assert!(message.contains("bogus-key"), "names the unknown key: {message}");
    let still = http::get(gateway.addr, "/second/y", &[("Ocp-Apim-Subscription-Key", "second-primary-key")]).unwrap();
    assert_eq!(still.json()["path"], "/v2/y", "the old config keeps serving");
    assert_eq!(gateway.status()["applied_generation"].as_u64().unwrap(), generation_before + 1);

    // Fixed again: reload succeeds.
    std::fs::write(
        config.path().join("apis/second/api.toml"),
        "name = \"Second API\"\npath = \"second\"\nbackend-url = \"{{echo-backend-url}}/v3\"\n",
    )
    .unwrap();
    assert!(reload(&gateway).status.success());
    let fixed = http::get(gateway.addr, "/second/y", &[("Ocp-Apim-Subscription-Key", "second-primary-key")]).unwrap();
    assert_eq!(fixed.json()["path"], "/v3/y");
}

portcullis_tests::on_both_io_backends!(reloads_under_load_fail_no_request);

fn reloads_under_load_fail_no_request(io: &str) {
    let config = quickstart_copy();
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let saw_a = Arc::new(AtomicBool::new(false));
    let saw_b = Arc::new(AtomicBool::new(false));

    let clients: Vec<_> = (0..LOAD_THREADS)
        .map(|_| {
            let (stop, ok, failures, saw_a, saw_b, key) =
                (stop.clone(), ok.clone(), failures.clone(), saw_a.clone(), saw_b.clone(), key.clone());
            let addr = gateway.addr;
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let mut connection = match Connection::open(addr) {
                        Ok(c) => c,
                        Err(e) => {
                            failures.lock().unwrap().push(format!("connect: {e}"));
                            continue;
                        }
                    };
                    for _ in 0..REQUESTS_PER_CONNECTION {
                        match connection.get("/echo/load", &[("Ocp-Apim-Subscription-Key", &key)]) {
                            Ok(response) if response.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                match response.json()["path"].as_str() {
                                    Some("/a/load") => saw_a.store(true, Ordering::Relaxed),
                                    Some("/b/load") => saw_b.store(true, Ordering::Relaxed),
                                    _ => {}
                                }
                            }
                            Ok(response) => {
                                failures.lock().unwrap().push(format!("{}: {}", response.status, response.text()))
                            }
                            Err(e) => {
                                failures.lock().unwrap().push(format!("request: {e}"));
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();

    for round in 0..RELOADS_UNDER_LOAD {
        set_backend_base(config.path(), if round % 2 == 0 { "/a" } else { "/b" });
        let output = reload(&gateway);
        assert!(output.status.success(), "reload {round}: {}", String::from_utf8_lossy(&output.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let served = ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{io}: {} failed requests (of {}), first: {:?}",
        failures.len(),
        served,
        &failures[..failures.len().min(5)]
    );
    assert!(served > 200, "{io}: only {served} requests went through");
    assert!(saw_a.load(Ordering::Relaxed) && saw_b.load(Ordering::Relaxed), "{io}: both configs served");
    let status = gateway.status();
    assert_eq!(status["applied_generation"], status["generation"]);
}
