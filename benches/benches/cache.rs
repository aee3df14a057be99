//! Micro-benchmarks of the response cache (`portcullis_dataplane::cache`): a `cache-lookup`'s key
//! composition plus the internal cache's get, as a hit (a 1 KB response) and as a miss, on one key
//! and on 10k keys, by 1 and 2 threads at once (the cache is shared by every worker of a host);
//! and writing a hit's response for the client.

#![allow(clippy::expect_used, reason = "benchmark fixtures are built from constants; a failure is a bug in the bench")]

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_dataplane::cache::entry::Downstream;
use portcullis_dataplane::cache::key::{KeyInput, response_key};
use portcullis_dataplane::cache::{CachedResponse, Entry, InternalCache};
use portcullis_dataplane::http::forward::ClientConnection;
use portcullis_dataplane::policy::DownstreamCaching;

/// Keys of the many-keys runs.
const KEYS: usize = 10_000;

fn path(index: usize) -> String {
    format!("/catalog/items/{index}")
}

/// The key of request `index`, as `cache-lookup` composes it (one vary-by header and parameter).
fn key_of(path: &str) -> String {
    let input = KeyInput {
        api: "catalog",
        operation: "get-item",
        path: path.as_bytes(),
        query: b"version=2&x=1",
        developer: None,
        groups: None,
    };
    response_key(&input, &["version"], &["accept"], |_| Some(Cow::Borrowed(&b"application/json"[..])))
        .expect("a short key")
}

fn filled(keys: usize) -> Arc<InternalCache> {
    let cache = Arc::new(InternalCache::new(256 * 1024 * 1024));
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n";
    for index in 0..keys {
        let response = CachedResponse::of_relayed(head, vec![b'x'; 1024], Duration::from_secs(3600)).expect("a head");
        cache.insert(&key_of(&path(index)), Entry::Response(Arc::new(response)), Duration::from_secs(3600));
    }
    cache.weighted_size();
    cache
}

/// `iterations` lookups on each of `threads` threads; the wall time of the slowest.
fn run(cache: &Arc<InternalCache>, paths: &Arc<Vec<String>>, threads: usize, iterations: u64, miss: bool) -> Duration {
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let (cache, paths) = (cache.clone(), paths.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                for i in 0..iterations as usize {
                    let path = &paths[(i * 7 + thread * 13) % paths.len()];
                    let key = if miss { key_of(&format!("{path}/absent")) } else { key_of(path) };
                    black_box(cache.get(&key));
                }
                start.elapsed()
            })
        })
        .collect();
    workers.into_iter().map(|worker| worker.join().expect("bench thread")).max().unwrap_or_default()
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache lookup");
    for keys in [1, KEYS] {
        let cache = filled(keys);
        let paths = Arc::new((0..keys).map(path).collect::<Vec<_>>());
        for threads in [1, 2] {
            for (name, miss) in [("hit", false), ("miss", true)] {
                group.bench_function(format!("{name}, {keys} keys, {threads} threads"), |b| {
                    b.iter_custom(|iterations| run(&cache, &paths, threads, iterations, miss));
                });
            }
        }
    }
    group.finish();
}

fn serve_hit(c: &mut Criterion) {
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n";
    let response = CachedResponse::of_relayed(head, vec![b'x'; 1024], Duration::from_secs(3600)).expect("a head");
    let downstream = Downstream { caching: DownstreamCaching::Public, must_revalidate: true, max_age_s: 60 };
    let mut out = Vec::with_capacity(4096);
    c.bench_function("cache hit: write the 1 KB response", |b| {
        b.iter(|| {
            response.write_to(&mut out, ClientConnection::KeepAlive, &downstream, false);
            black_box(out.len())
        });
    });
}

criterion_group!(benches, lookups, serve_hit);
criterion_main!(benches);
