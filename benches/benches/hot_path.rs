//! Micro-benchmarks of the per-request cores, on byte slices (no sockets): request-head and
//! response-head parse, route match (500 plain APIs; 1,000 with versions and revisions), header rewrite (the forwarded request head and the relayed
//! response head), subscription-key lookup, chunked-body scanning, and snapshot decode (the reload
//! path). Run with `cargo xtask bench-micro`; figures are in docs/benchmarks.md.

#![allow(clippy::expect_used, reason = "benchmark fixtures are built from constants; a failure is a bug in the bench")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_contract::key_index::{KeyEntry, KeyIndex, KeySlot};
use portcullis_contract::model::{
    Api, BackendUrl, Config, DEFAULT_SUBSCRIPTION_KEY_HEADER, DEFAULT_SUBSCRIPTION_KEY_QUERY, DEFAULT_VERSION_HEADER,
    DEFAULT_VERSION_QUERY, Scheme, Subscription, SubscriptionScope, SubscriptionState, VersionSet, VersioningScheme,
};
use portcullis_contract::snapshot;
use portcullis_dataplane::http::chunked::ChunkedScanner;
use portcullis_dataplane::http::forward::{self, ClientConnection, Forwarding};
use portcullis_dataplane::http::{request, response};
use portcullis_dataplane::router::Router;

/// A typical API client request: 8 headers, a subscription key, a query string.
const REQUEST: &[u8] = b"GET /orders/v2/customers/42/orders?status=open&page=3 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Ocp-Apim-Subscription-Key: 0123456789abcdef0123456789abcdef\r\n\
X-Request-Id: 8d7f0a4e-3b8c-4c55-a1de-5f3a2b9c7e10\r\n\
Connection: keep-alive\r\n\
Cookie: session=abc123; theme=dark\r\n\r\n";

/// A typical backend response: 6 headers (nginx's, plus a hop-by-hop `Keep-Alive`).
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Fri, 27 Nov 2026 12:00:00 GMT\r\n\
Content-Type: application/json\r\n\
Content-Length: 1024\r\n\
Connection: keep-alive\r\n\
Keep-Alive: timeout=60\r\n\r\n";

/// Where `REQUEST`'s path continues after the API prefix `/orders/v2`.
const REMAINDER_START: usize = "/orders/v2".len();

/// APIs and keys in the benchmark config: a large estate.
const APIS: usize = 500;
const KEYS: usize = 10_000;

fn config() -> Config {
    let apis = (0..APIS)
        .map(|i| Api {
            id: format!("api-{i}"),
            name: format!("API {i}"),
            path: if i == 0 { "orders/v2".to_owned() } else { format!("service-{i}/v{}", i % 3) },
            backend_id: None,
            backend: BackendUrl {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: 9000,
                base_path: "/api".into(),
                authority: "127.0.0.1:9000".into(),
            },
            subscription_required: true,
            subscription_key_header: DEFAULT_SUBSCRIPTION_KEY_HEADER.into(),
            subscription_key_query: DEFAULT_SUBSCRIPTION_KEY_QUERY.into(),
            preserve_host: false,
            version_set: None,
            version: String::new(),
            revision: "1".into(),
            revision_of: None,
            online: true,
            description: String::new(),
            revision_description: String::new(),
            operations: vec![portcullis_contract::model::Operation::catch_all(
                portcullis_contract::model::Policies::all(0),
            )],
        })
        .collect();
    let subscriptions = (0..KEYS)
        .map(|i| {
            Subscription::new(
                format!("sub-{i}"),
                format!("Subscription {i}"),
                SubscriptionScope::AllApis,
                SubscriptionState::Active,
            )
        })
        .collect();
    let entries = (0..KEYS)
        .map(|i| KeyEntry { key: format!("{i:032x}"), subscription: i as u32, slot: KeySlot::Primary })
        .collect();
    let key_index = KeyIndex::build([0x5eed, 0xfeed], entries).expect("unique keys");
    Config { apis, subscriptions, key_index, ..Config::empty("bench") }
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_head");
    group.throughput(Throughput::Bytes(REQUEST.len() as u64));
    group.bench_function("parse_8_headers", |b| b.iter(|| request::parse(black_box(REQUEST))));
    group.finish();
}

fn parse_response(c: &mut Criterion) {
    let mut group = c.benchmark_group("response_head");
    group.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    group.bench_function("parse_6_headers", |b| b.iter(|| response::parse(black_box(RESPONSE))));
    group.finish();
}

/// Writing the heads the gateway sends on: the request to the backend (hop-by-hop headers
/// dropped, `Host` and `X-Forwarded-*` set, target rewritten) and the response to the client.
fn header_rewrite(c: &mut Criterion) {
    let request = request::parse(REQUEST).expect("valid request").expect("complete request");
    let response = response::parse(RESPONSE).expect("valid response").expect("complete response");
    let forwarding = Forwarding {
        base_path: "/api",
        authority: "127.0.0.1:9000",
        remainder_start: REMAINDER_START,
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        tls: false,
        traceparent: None,
    };
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("header_rewrite");
    group.bench_function("forward_request_head_8_headers", |b| {
        b.iter(|| {
            forward::write_request_head(&mut out, &request, REQUEST, black_box(&forwarding));
            out.len()
        })
    });
    group.bench_function("relay_response_head_6_headers", |b| {
        b.iter(|| {
            forward::write_response_head(&mut out, &response, RESPONSE, black_box(ClientConnection::KeepAlive));
            out.len()
        })
    });
    group.finish();
}

fn route(c: &mut Criterion) {
    let config = config();
    let router = Router::new(&config);
    c.bench_function("route/500_apis_deep_path", |b| {
        b.iter(|| router.route(black_box(b"/orders/v2/customers/42/orders?status=open&page=3")))
    });
    c.bench_function("route/500_apis_miss", |b| b.iter(|| router.route(black_box(b"/nothing/here/at/all"))));
}

/// Version sets in the versioned estate: a third each by segment, query and header.
const VERSION_SETS: usize = 250;
/// Versions per set: v1, v2 and v3.
const VERSIONS_PER_SET: usize = 3;

/// 1,000 APIs: 250 version sets of three versions each (750 APIs), and a second revision of
/// each set's v2 (250 more).
fn versioned_config() -> Config {
    let template = config().apis.remove(0);
    let schemes = [
        VersioningScheme::Segment,
        VersioningScheme::Query(DEFAULT_VERSION_QUERY.into()),
        VersioningScheme::Header(DEFAULT_VERSION_HEADER.into()),
    ];
    let version_sets: Vec<VersionSet> = (0..VERSION_SETS)
        .map(|set| VersionSet {
            id: format!("set-{set}"),
            name: format!("Set {set}"),
            scheme: schemes[set % schemes.len()].clone(),
            description: String::new(),
        })
        .collect();
    let mut apis = Vec::with_capacity(VERSION_SETS * (VERSIONS_PER_SET + 1));
    for set in 0..VERSION_SETS {
        for version in 1..=VERSIONS_PER_SET {
            apis.push(Api {
                id: format!("api-{set}-v{version}"),
                path: format!("service-{set}/orders"),
                version_set: Some(set as u32),
                version: format!("v{version}"),
                ..template.clone()
            });
        }
    }
    for set in 0..VERSION_SETS {
        let current = (set * VERSIONS_PER_SET + 1) as u32;
        let api = apis[current as usize].clone();
        apis.push(Api { revision: "2".into(), revision_of: Some(current), ..api });
    }
    let config = Config { apis, version_sets, ..Config::empty("bench") };
    assert_eq!(config.validate(), Ok(()), "the versioned estate is a valid config");
    config
}

/// Route lookups among 1,000 APIs with versions and revisions: a version by path segment, by
/// query parameter and by header, and a non-current revision (`;rev=2`).
fn route_versioned(c: &mut Criterion) {
    let config = versioned_config();
    let router = Router::new(&config);
    let header = |name: &[u8]| name.eq_ignore_ascii_case(b"api-version").then_some(&b"v2"[..]);
    let none = |_: &[u8]| None;
    let mut group = c.benchmark_group("route/1000_apis_versions_revisions");
    // Set 120 is by segment, 121 by query, 122 by header (120 % 3 == 0).
    let segment: &[u8] = b"/service-120/orders/v2/customers/42/orders?status=open&page=3";
    let query: &[u8] = b"/service-121/orders/customers/42/orders?status=open&page=3&api-version=v2";
    let by_header: &[u8] = b"/service-122/orders/customers/42/orders?status=open&page=3";
    let revision: &[u8] = b"/service-120/orders/v2;rev=2/customers/42/orders?status=open&page=3";
    for (name, target) in [("segment", segment), ("query", query), ("revision", revision)] {
        assert!(router.route_with(target, none).is_some(), "{name} routes");
        group.bench_function(name, |b| b.iter(|| router.route_with(black_box(target), none)));
    }
    assert!(router.route_with(by_header, header).is_some(), "header routes");
    group.bench_function("header", |b| b.iter(|| router.route_with(black_box(by_header), header)));
    group.bench_function("miss", |b| b.iter(|| router.route_with(black_box(b"/nothing/here/at/all"), none)));
    group.finish();
}

fn key_lookup(c: &mut Criterion) {
    let config = config();
    let hit = format!("{:032x}", KEYS / 2);
    c.bench_function("key_index/10k_hit", |b| b.iter(|| config.key_index.lookup(black_box(hit.as_bytes()))));
    c.bench_function("key_index/10k_miss", |b| {
        b.iter(|| config.key_index.lookup(black_box(b"ffffffffffffffffffffffffffffffff")))
    });
}

fn snapshot_decode(c: &mut Criterion) {
    let bytes = snapshot::encode(1, &config()).expect("encode");
    let mut group = c.benchmark_group("snapshot");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(20);
    group.bench_function("decode_validate_500_apis_10k_keys", |b| b.iter(|| snapshot::decode(black_box(&bytes))));
    group.finish();
}

fn chunked_scan(c: &mut Criterion) {
    // 64 KiB of body in 1 KiB chunks: finding the end of a streamed chunked body.
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b'x'; 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut group = c.benchmark_group("chunked");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("scan_64KiB_in_1KiB_chunks", |b| b.iter(|| ChunkedScanner::new().scan(black_box(&body))));
    group.finish();
}

/// W3C Trace Context per request: the client's `traceparent` parsed, ids drawn, the backend's
/// formatted (docs/observability.md "Traces").
fn trace_context(c: &mut Criterion) {
    use portcullis_dataplane::trace::context;
    let header = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut group = c.benchmark_group("trace_context");
    group.bench_function("parse_traceparent", |b| b.iter(|| context::parse(black_box(header))));
    group.bench_function("new_ids_and_format", |b| {
        b.iter(|| {
            let trace_id = context::new_trace_id();
            let span_id = context::new_span_id();
            context::format(black_box(&trace_id), &span_id, context::FLAG_SAMPLED)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    trace_context,
    parse,
    parse_response,
    header_rewrite,
    route,
    route_versioned,
    key_lookup,
    snapshot_decode,
    chunked_scan
);
criterion_main!(benches);
