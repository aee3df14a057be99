//! Analytics end to end: a known mix of requests through a real `portcullis up` (the quickstart)
//! comes back in the management API's reports and in `ctl top --json`, on both I/O backends.
//!
//! `a_known_mix_comes_back_in_the_reports_and_top` needs the telemetry transport (the data plane's
//! batches reaching control, which calls `analytics::record_batch` for each): until that is merged
//! the reports stay empty and it fails. `reports_read_the_batches_in_the_store` writes batches into
//! the running gateway's store file itself, so it checks the store and the API without it.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use portcullis_contract::telemetry::{Batch, Latencies, Series, SeriesKey, SeriesValues, encode_histogram};
use portcullis_management::analytics::{Analytics, Recorded};
use portcullis_tests::http;
use portcullis_tests::management::Management;
use portcullis_tests::{Gateway, GatewayOptions, eventually};
use serde_json::Value;

portcullis_tests::on_both_io_backends!(
    a_known_mix_comes_back_in_the_reports_and_top,
    reports_read_the_batches_in_the_store
);

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
        let listed = api.get(&format!("/reports/byRequest?$filter={range}")).json();
        listed["count"].as_u64() == Some(OK_CALLS + MISSING_KEY_CALLS + NOT_FOUND_CALLS)
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

/// A batch of the data plane `pid` for the interval starting `start_ms`: `calls` 200s of
/// echo/get by the demo subscription at 2 ms each.
fn batch(pid: u32, sequence: u64, start_ms: u64, calls: u64) -> Batch {
    let key = SeriesKey {
        api_id: "echo".into(),
        api_revision: 1,
        operation_id: "all".into(),
        product_id: "starter".into(),
        subscription_id: "demo".into(),
        user_id: "1".into(),
        status: 200,
        ..SeriesKey::default()
    };
    let mut values = SeriesValues::default();
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
    for _ in 0..calls {
        values.merge(&SeriesValues::one(100, 400, 2_000, Some(1_000)));
        histogram.record(2_000).unwrap();
    }
    Batch {
        sequence,
        data_plane_pid: pid,
        start_unix_ms: start_ms,
        end_unix_ms: start_ms + 1_000,
        series: vec![Series { key, values }],
        latencies: vec![Latencies {
            api_id: "echo".into(),
            operation_id: "all".into(),
            total: encode_histogram(&histogram),
            backend: encode_histogram(&histogram),
        }],
        ..Batch::default()
    }
}

fn reports_read_the_batches_in_the_store(io: &str) {
    let gateway = Gateway::start(GatewayOptions::new(io));
    let now = chrono::Utc::now();
    let start_ms = now.timestamp_millis() as u64;
    // A second writer on the file, as control's telemetry handler is one: WAL lets both in.
    let mut analytics = Analytics::open(&gateway.data().join("management.db")).unwrap();
    assert_eq!(analytics.record(&batch(4242, 1, start_ms, 7)).unwrap(), Recorded::Committed);
    assert_eq!(analytics.record(&batch(4242, 2, start_ms + 1_000, 3)).unwrap(), Recorded::Committed);
    assert_eq!(analytics.record(&batch(4242, 2, start_ms + 1_000, 3)).unwrap(), Recorded::AlreadyRecorded);
    let range = format!(
        "timestamp%20ge%20'{}'%20and%20timestamp%20le%20'{}'",
        (now - chrono::Duration::minutes(2)).format("%Y-%m-%dT%H:%M:%SZ"),
        (now + chrono::Duration::minutes(2)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    let api = Management::of(&gateway);
    let by_api = api.get(&format!("/reports/byApi?$filter={range}"));
    assert_eq!(by_api.status, 200, "{}", by_api.text());
    let echo = &by_api.json()["value"][0];
    assert_eq!((&echo["apiId"], &echo["name"]), (&"/apis/echo".into(), &"Echo API".into()), "{echo}");
    assert_eq!((&echo["callCountTotal"], &echo["callCountSuccess"]), (&10.into(), &10.into()), "{echo}");
    assert_eq!(echo["bandwidth"], 5_000);
    assert_eq!((&echo["apiTimeAvg"], &echo["serviceTimeAvg"]), (&2.0.into(), &1.0.into()));
    assert!(echo["apiTimeP50"].as_f64().is_some_and(|p50| (1.99..2.01).contains(&p50)), "{echo}");
    let mine = api.get(&format!("/users/1/reports/bySubscription?$filter={range}")).json();
    assert_eq!(mine["value"][0]["subscriptionId"], "/subscriptions/demo", "{mine}");
    let by_time = api.get(&format!("/reports/byTime?$filter={range}&interval=PT15M")).json();
    let total: u64 =
        by_time["value"].as_array().unwrap().iter().map(|row| row["callCountTotal"].as_u64().unwrap()).sum();
    assert_eq!(total, 10, "{by_time}");
    let refused = api.get(&format!("/reports/byTime?$filter={range}&interval=PT20M"));
    assert_eq!(refused.status, 400, "{}", refused.text());
}
