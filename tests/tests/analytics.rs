//! Analytics end to end: a known mix of requests through a real `portcullis up` (the quickstart)
//! comes back in the management API's reports and in `ctl top --json`, on both I/O backends.
//!
//! It needs the telemetry transport (the data plane's batches reaching control, which calls
//! `Analytics::record` for each): until that is merged, the reports stay empty and this fails.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use portcullis_tests::http;
use portcullis_tests::management::Management;
use portcullis_tests::{Gateway, GatewayOptions, eventually};
use serde_json::Value;

portcullis_tests::on_both_io_backends!(a_known_mix_comes_back_in_the_reports_and_top);

/// Calls of each kind the mix sends.
const OK_CALLS: u64 = 5;
const MISSING_KEY_CALLS: u64 = 3;
const NOT_FOUND_CALLS: u64 = 2;

fn a_known_mix_comes_back_in_the_reports_and_top(io: &str) {
    let gateway = Gateway::start(GatewayOptions::new(io));
    let key = gateway.demo_key.clone().expect("up prints the demo subscription key");
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    for _ in 0..OK_CALLS {
        assert_eq!(http::get(gateway.addr, "/echo/hello", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap().status, 200);
    }
    for _ in 0..MISSING_KEY_CALLS {
        assert_eq!(http::get(gateway.addr, "/echo/hello", &[]).unwrap().status, 401);
    }
    for _ in 0..NOT_FOUND_CALLS {
        assert_eq!(http::get(gateway.addr, "/nowhere", &[("Ocp-Apim-Subscription-Key", &key)]).unwrap().status, 404);
    }
    let until = chrono::Utc::now() + chrono::Duration::minutes(5);
    let range = format!(
        "timestamp%20ge%20'{}'%20and%20timestamp%20le%20'{}'",
        since.format("%Y-%m-%dT%H:%M:%SZ"),
        until.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let api = Management::of(&gateway);
    // What works without the transport: the reports and `ctl top` answer.
    let first = api.get(&format!("/reports/byApi?$filter={range}"));
    assert_eq!(first.status, 200, "{}", first.text());
    let refused = api.get("/reports/byApi");
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(gateway.ctl(&["top", "--json"]).status.success());
    let mut last = Value::Null;
    eventually("byApi to count the mix", || {
        last = api.get(&format!("/reports/byApi?$filter={range}")).json();
        last["value"][0]["callCountTotal"] == OK_CALLS + MISSING_KEY_CALLS
    });
    let echo = &last["value"][0];
    assert_eq!(last["count"], 1, "the 404s matched no API: {last}");
    assert_eq!(echo["apiId"], "/apis/echo");
    assert_eq!((&echo["callCountSuccess"], &echo["callCountBlocked"]), (&OK_CALLS.into(), &MISSING_KEY_CALLS.into()));
    assert!(echo["bandwidth"].as_u64().unwrap() > 0, "{echo}");
    assert!(echo["apiTimeP99"].as_f64().is_some_and(|p99| p99 > 0.0), "{echo}");

    let by_time = api.get(&format!("/reports/byTime?$filter={range}&interval=PT15M")).json();
    let total: u64 =
        by_time["value"].as_array().unwrap().iter().map(|row| row["callCountTotal"].as_u64().unwrap()).sum();
    assert_eq!(total, OK_CALLS + MISSING_KEY_CALLS + NOT_FOUND_CALLS, "byTime counts every call: {by_time}");
    let by_subscription = api.get(&format!("/reports/bySubscription?$filter={range}")).json();
    assert_eq!(by_subscription["value"][0]["subscriptionId"], "/subscriptions/demo", "{by_subscription}");
    assert_eq!(by_subscription["value"][0]["callCountTotal"], OK_CALLS, "{by_subscription}");

    eventually("byRequest to list the calls", || {
        api.get(&format!("/reports/byRequest?$filter={range}")).json()["count"].as_u64()
            == Some(OK_CALLS + MISSING_KEY_CALLS + NOT_FOUND_CALLS)
    });
    let requests = api.get(&format!("/reports/byRequest?$filter={range}")).json();
    let text = requests.to_string();
    assert!(!text.contains(&key), "no subscription key in byRequest");

    let output = gateway.ctl(&["top", "--json", "--window", "60"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let top: Value = serde_json::from_slice(&output.stdout).unwrap();
    let echo = top["apis"].as_array().unwrap().iter().find(|row| row["apiId"] == "echo").cloned();
    assert_eq!(echo.map(|row| row["requests"].clone()), Some((OK_CALLS + MISSING_KEY_CALLS).into()), "{top}");
}
