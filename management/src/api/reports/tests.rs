use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tower::ServiceExt;

use crate::analytics::tests::{T0, batch};
use crate::analytics::{Analytics, MINUTE_MS};
use crate::api::{ApiSettings, router};
use crate::service::{AcceptAll, Authority, Service, put};
use crate::store::{Actor, SqliteStore};

/// 2026-12-07T09:00:00Z to 12:00:00Z, around every batch below.
const RANGE: &str = "timestamp%20ge%20datetime'2026-12-07T09:00:00'%20and%20timestamp%20le%20'2026-12-07T12:00:00Z'";

struct Harness {
    router: axum::Router,
    token: String,
}

impl Harness {
    /// Three batches in two minutes, and an API, operation, product and user to name.
    fn new() -> Self {
        let mut service = Service::open(Box::new(SqliteStore::in_memory().unwrap()), Box::new(AcceptAll)).unwrap().0;
        crate::seed_builtins(&mut service).unwrap();
        let writes = vec![
            put(
                crate::resource::ResourcePath::parse("/apis/echo").unwrap(),
                json!({"displayName": "Echo API", "path": "echo"}),
            ),
            put(
                crate::resource::ResourcePath::parse("/apis/echo/operations/get").unwrap(),
                json!({"displayName": "Get", "method": "GET", "urlTemplate": "/"}),
            ),
            put(crate::resource::ResourcePath::parse("/products/starter").unwrap(), json!({"displayName": "Starter"})),
            put(
                crate::resource::ResourcePath::parse("/users/1").unwrap(),
                json!({"email": "ada@example.com", "firstName": "Ada", "lastName": "L"}),
            ),
        ];
        let actor = Actor { name: "test".into(), action: "seed".into() };
        service.write(writes, &[], Authority::Store, &actor).unwrap();
        let token = crate::tokens::create(service.store_mut(), "reader", None, true).unwrap();
        let mut analytics = Analytics::in_memory().unwrap();
        analytics.record(&batch(1, T0)).unwrap();
        analytics.record(&batch(2, T0 + 1_000)).unwrap();
        analytics.record(&batch(3, T0 + 20 * MINUTE_MS)).unwrap();
        let settings = ApiSettings { analytics: Some(analytics.shared()), ..ApiSettings::default() };
        Self { router: router(Arc::new(Mutex::new(service)), settings), token }
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let request = HttpRequest::builder()
            .uri(uri)
            .header("host", "mgmt.test")
            .header("authorization", format!("Bearer {}", self.token))
            .body(Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn by_api_sums_with_apims_field_names_and_percentiles() {
    let harness = Harness::new();
    let (status, body) = harness.get(&format!("/reports/byApi?$filter={RANGE}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 1);
    let echo = &body["value"][0];
    assert_eq!(echo["name"], "Echo API");
    assert_eq!(echo["apiId"], "/apis/echo");
    assert_eq!(echo["callCountTotal"], 15);
    assert_eq!(
        (&echo["callCountSuccess"], &echo["callCountBlocked"], &echo["callCountFailed"], &echo["callCountOther"]),
        (&json!(9), &json!(3), &json!(3), &json!(0))
    );
    assert_eq!((&echo["cacheHitCount"], &echo["cacheMissCount"]), (&json!(3), &json!(6)));
    assert_eq!(echo["bandwidth"], 3 * (2 * 1_100 + 1_100 + 250 + 30));
    assert_eq!((&echo["apiTimeMin"], &echo["apiTimeMax"]), (&json!(0.3), &json!(9.0)));
    assert_eq!(echo["apiTimeAvg"], json!(3.16));
    assert_eq!(echo["serviceTimeMin"], json!(1.5));
    assert!(echo["apiTimeP50"].as_f64().is_some_and(|p50| (0.49..0.51).contains(&p50)), "{echo}");
    assert!(echo["apiTimeP99"].as_f64().is_some(), "{echo}");
}

#[tokio::test]
async fn reports_filter_by_entity_and_time() {
    let harness = Harness::new();
    let early = "timestamp%20ge%20'2026-12-07T10:00:00Z'%20and%20timestamp%20le%20'2026-12-07T10:05:00Z'";
    let (_, body) = harness.get(&format!("/reports/byApi?$filter={early}")).await;
    assert_eq!(body["value"][0]["callCountTotal"], 10, "the third batch is out of range: {body}");
    let post = format!("{RANGE}%20and%20operationId%20eq%20'%2Fapis%2Fecho%2Foperations%2Fpost'");
    let (_, body) = harness.get(&format!("/reports/byOperation?$filter={post}")).await;
    assert_eq!(body["count"], 1);
    assert_eq!(body["value"][0]["operationId"], "/apis/echo/operations/post");
    assert_eq!(body["value"][0]["name"], "post", "no such operation resource: its id names it");
    let (_, body) = harness.get(&format!("/reports/byProduct?$filter={RANGE}%20and%20userId%20eq%20'2'")).await;
    assert_eq!(body["count"], 0);
    let (_, body) = harness.get(&format!("/reports/byUser?$filter={RANGE}")).await;
    assert_eq!((&body["value"][0]["name"], &body["value"][0]["userId"]), (&json!("Ada L"), &json!("/users/1")));
    assert!(body["value"][0].get("apiTimeP50").is_none(), "no percentiles per user: {body}");
    let (_, body) = harness.get(&format!("/reports/bySubscription?$filter={RANGE}")).await;
    let row = &body["value"][0];
    assert_eq!(
        (&row["subscriptionId"], &row["productId"]),
        (&json!("/subscriptions/sub1"), &json!("/products/starter"))
    );
}

#[tokio::test]
async fn by_time_groups_by_interval_and_validates_it() {
    let harness = Harness::new();
    let (status, body) = harness.get(&format!("/reports/byTime?$filter={RANGE}&interval=PT15M")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Vec<(&str, u64)> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["timestamp"].as_str().unwrap(), row["callCountTotal"].as_u64().unwrap()))
        .collect();
    assert_eq!(rows, [("2026-12-07T10:00:00Z", 12), ("2026-12-07T10:15:00Z", 6)]);
    assert_eq!(body["value"][0]["interval"], "PT15M");
    assert!(body["value"][0]["apiTimeP95"].is_number());
    let (_, body) = harness.get(&format!("/reports/byTime?$filter={RANGE}&interval=PT1H")).await;
    assert_eq!(body["value"][0]["callCountTotal"], 18);
    for bad in ["", "&interval=PT10M", "&interval=PT0M", "&interval=1h"] {
        let (status, body) = harness.get(&format!("/reports/byTime?$filter={RANGE}{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["code"], "ValidationError");
        assert_eq!(body["error"]["details"][0]["target"], "interval");
    }
}

#[tokio::test]
async fn reports_need_a_time_range() {
    let harness = Harness::new();
    for uri in [
        "/reports/byApi".to_owned(),
        "/reports/byApi?$filter=apiId%20eq%20'echo'".to_owned(),
        "/reports/byRequest?$filter=timestamp%20ge%20'2026-12-07T00:00:00Z'".to_owned(),
        format!("/reports/byApi?$filter={RANGE}%20or%20apiId%20eq%20'echo'"),
        format!("/reports/byGeo?$filter={RANGE}%20and%20name%20eq%20'x'"),
    ] {
        let (status, body) = harness.get(&uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["details"][0]["target"], "$filter", "{uri}");
        assert!(body["error"]["message"].as_str().unwrap().contains("timestamp"), "{uri}: {body}");
    }
}

#[tokio::test]
async fn reports_order_and_page() {
    let harness = Harness::new();
    let uri = format!("/reports/byOperation?$filter={RANGE}&$orderby=callCountTotal%20asc&$top=1");
    let (_, body) = harness.get(&uri).await;
    assert_eq!(body["count"], 2);
    assert_eq!(body["value"].as_array().unwrap().len(), 1);
    assert_eq!(body["value"][0]["operationId"], "/apis/echo/operations/post");
    assert!(body["nextLink"].as_str().unwrap().contains("$skip=1"), "{body}");
    let (_, body) = harness.get(&format!("/reports/byOperation?$filter={RANGE}&$top=1&$skip=1")).await;
    assert_eq!(body["value"][0]["operationId"], "/apis/echo/operations/post", "default: callCountTotal desc");
    assert!(body["nextLink"].is_null());
    let (status, _) = harness.get(&format!("/reports/byApi?$filter={RANGE}&$orderby=latency")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = harness.get(&format!("/reports/byRequest?$filter={RANGE}&$orderby=timestamp")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "byRequest takes no $orderby");
}

#[tokio::test]
async fn by_request_lists_recent_calls() {
    let harness = Harness::new();
    let (status, body) = harness.get(&format!("/reports/byRequest?$filter={RANGE}&$top=2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 3);
    let first = &body["value"][0];
    assert_eq!(first["requestId"], "req-1");
    assert_eq!(first["apiId"], "/apis/echo");
    assert_eq!(first["operationId"], "/apis/echo/operations/get");
    assert_eq!(first["subscriptionId"], "/subscriptions/sub1");
    assert_eq!((&first["responseCode"], &first["backendResponseCode"]), (&json!(200), &json!("200")));
    assert_eq!((&first["apiTime"], &first["serviceTime"], &first["cache"]), (&json!(2.0), &json!(1.5), &json!("none")));
    assert_eq!(first["url"], "/echo?subscription-key=***");
}

#[tokio::test]
async fn by_geo_is_empty_and_users_see_their_own_calls() {
    let harness = Harness::new();
    let (status, body) = harness.get(&format!("/reports/byGeo?$filter={RANGE}")).await;
    assert_eq!((status, &body["value"], &body["count"]), (StatusCode::OK, &json!([]), &json!(0)));
    let (_, body) = harness.get(&format!("/users/1/reports/byApi?$filter={RANGE}")).await;
    assert_eq!(body["value"][0]["callCountTotal"], 15);
    let (_, body) = harness.get(&format!("/users/1/reports/byApi?$filter={RANGE}%20and%20userId%20eq%20'2'")).await;
    assert_eq!(body["count"], 0, "a user's report never shows another user's calls");
    let (status, _) = harness.get(&format!("/users/nobody/reports/byTime?$filter={RANGE}&interval=PT15M")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reports_are_in_the_openapi_document() {
    let document = crate::api::openapi();
    let by_time = &document["paths"]["/reports/byTime"]["get"];
    let names: Vec<&str> =
        by_time["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"$filter") && names.contains(&"interval") && names.contains(&"$orderby"), "{names:?}");
    assert!(document["paths"]["/users/{userId}/reports/byRequest"]["get"].is_object());
    assert!(document["components"]["schemas"]["ReportList"].is_object());
}
