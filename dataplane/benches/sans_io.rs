//! Micro-benchmarks of the data plane's sans-IO cores: request parsing, routing, chunked scanning.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // reason: fixtures are known-good

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_contract::key_index::KeyIndex;
use portcullis_contract::model::{Api, BackendUrl, Config, Limits, Scheme};
use portcullis_dataplane::http::chunked::ChunkedScanner;
use portcullis_dataplane::http::request;
use portcullis_dataplane::router::Router;

const REQUEST: &[u8] = b"GET /orders/v1/items/42?expand=lines HTTP/1.1\r\nHost: api.example.com\r\n\
User-Agent: bench/1.0\r\nAccept: application/json\r\nOcp-Apim-Subscription-Key: 0123456789abcdef0123456789abcdef\r\n\
X-Request-Id: 5d1c6a1e-8a43-4c1e-9d0b-6e7f1b2c3d4e\r\n\r\n";

fn config(apis: usize) -> Config {
    let apis = (0..apis)
        .map(|i| Api {
            id: format!("api{i}"),
            name: format!("api{i}"),
            path: if i == 0 { "orders/v1".into() } else { format!("service{i}/v{}", i % 3) },
            backend: BackendUrl {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: 80,
                base_path: String::new(),
                authority: "127.0.0.1".into(),
            },
            subscription_required: true,
            subscription_key_header: "Ocp-Apim-Subscription-Key".into(),
            subscription_key_query: "subscription-key".into(),
        })
        .collect();
    Config {
        source: "bench".into(),
        apis,
        subscriptions: Vec::new(),
        key_index: KeyIndex::default(),
        limits: Limits::default(),
    }
}

fn benches(c: &mut Criterion) {
    c.bench_function("request::parse (6 headers)", |b| b.iter(|| request::parse(black_box(REQUEST)).unwrap()));
    let router = Router::new(&config(1000));
    c.bench_function("router::route (1000 APIs, 4 segments)", |b| {
        b.iter(|| router.route(black_box(b"/orders/v1/items/42?expand=lines")).unwrap())
    });
    c.bench_function("router::route miss", |b| b.iter(|| router.route(black_box(b"/nothing/here/at/all"))));
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b'x'; 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    c.bench_function("chunked scan (64 KiB in 1 KiB chunks)", |b| {
        b.iter(|| ChunkedScanner::new().scan(black_box(&body)).unwrap())
    });
}

criterion_group!(sans_io, benches);
criterion_main!(sans_io);
