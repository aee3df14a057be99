//! The management plane at scale (issue 14's target): 1,000 APIs × 10 operations, each with a
//! small policy, and 100,000 subscriptions in the store. Measures the compile of the whole store,
//! the snapshot's encode and decode, and its size (printed once).
//!
//! `cargo bench -p portcullis-benches --bench management`
#![allow(clippy::expect_used, reason = "benchmark fixtures are built from constants; a failure is a bug in the bench")]

use std::hint::black_box;
use std::path::Path;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_contract::snapshot;
use portcullis_control::config::{NamedValues, StoreCache, compile_change, compile_state};
use portcullis_management::resource::ResourcePath;
use portcullis_management::service::{AcceptAll, Authority, Service, put};
use portcullis_management::store::{Actor, SqliteStore};
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const APIS: usize = 1_000;
const OPERATIONS_PER_API: usize = 10;
const SUBSCRIPTIONS: usize = 100_000;

fn path(text: &str) -> ResourcePath {
    ResourcePath::parse(text).expect("a valid path")
}

/// The store of the target scale.
pub fn store() -> Service {
    let store = SqliteStore::in_memory().expect("an in-memory store");
    let (mut service, _) = Service::open(Box::new(store), Box::new(AcceptAll)).expect("open");
    let mut writes = Vec::new();
    for api in 0..APIS {
        writes.push(put(
            path(&format!("/apis/api{api}")),
            json!({"displayName": format!("API {api}"), "path": format!("api{api}"), "serviceUrl": "http://127.0.0.1:9000"}),
        ));
        for operation in 0..OPERATIONS_PER_API {
            let operation_path = format!("/apis/api{api}/operations/op{operation}");
            writes.push(put(
                path(&operation_path),
                json!({"displayName": format!("Op {operation}"), "method": "GET", "urlTemplate": format!("/items{operation}/{{id}}")}),
            ));
            let policy = format!(
                "<policies><inbound><base /><set-header name=\"x-op\" exists-action=\"override\"><value>{api}-{operation}</value></set-header></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
            );
            writes.push(put(
                path(&format!("{operation_path}/policies/policy")),
                json!({"value": policy, "format": "rawxml"}),
            ));
        }
    }
    for subscription in 0..SUBSCRIPTIONS {
        writes.push(put(
            path(&format!("/subscriptions/s{subscription}")),
            json!({"displayName": format!("S {subscription}"), "scope": format!("/apis/api{}", subscription % APIS), "state": "active",
                   "primaryKey": format!("{subscription:032x}"), "secondaryKey": format!("{:032x}", subscription + SUBSCRIPTIONS)}),
        ));
    }
    let actor = Actor { name: "bench".into(), action: "seed".into() };
    service.write(writes, &[], Authority::Store, &actor).expect("seed");
    service
}

/// One committed change: a new active subscription (`n` keeps keys unique).
fn new_subscription(service: &mut Service, n: u64) -> Vec<ResourcePath> {
    let properties = json!({"displayName": "New", "scope": "/apis", "state": "active",
                            "primaryKey": format!("new-{n}-1"), "secondaryKey": format!("new-{n}-2")});
    let write = put(path(&format!("/subscriptions/new{n}")), properties);
    let changed = vec![write.path().clone()];
    let actor = Actor { name: "bench".into(), action: "change".into() };
    service.write(vec![write], &[], Authority::Store, &actor).expect("a new subscription");
    changed
}

/// One committed change: operation 0 of API 0 gets a new policy.
fn changed_policy(service: &mut Service, n: u64) -> Vec<ResourcePath> {
    let policy = format!(
        "<policies><inbound><base /><set-header name=\"x-change\" exists-action=\"override\"><value>{n}</value></set-header></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
    );
    let write = put(path("/apis/api0/operations/op0/policies/policy"), json!({"value": policy, "format": "rawxml"}));
    let changed = vec![write.path().clone()];
    let actor = Actor { name: "bench".into(), action: "change".into() };
    service.write(vec![write], &[], Authority::Store, &actor).expect("a changed policy");
    changed
}

/// How the compile after a change is made.
#[derive(Clone, Copy)]
enum Way {
    /// `compile_state`: the whole store, from the parse and program caches.
    Whole,
    /// `compile_change` and a commit, as the management service compiles: a change to
    /// subscriptions only is patched into the last compile.
    Change,
}

/// The compile after each change, with the cache earlier compiles left.
fn incremental(
    c: &mut Criterion,
    name: &str,
    service: &mut Service,
    change: fn(&mut Service, u64) -> Vec<ResourcePath>,
    way: Way,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let values = NamedValues::default();
    let mut cache = StoreCache::default();
    compile_state(service.state(), dir, &values, [1, 2], &mut cache).expect("the store compiles");
    cache.commit();
    // Distinct from earlier runs' changes (each run of this function starts from the same store).
    let mut n = match way {
        Way::Whole => 0,
        Way::Change => 1_000_000,
    };
    c.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                n += 1;
                let changed = change(service, n);
                let started = Instant::now();
                match way {
                    Way::Whole => {
                        black_box(compile_state(service.state(), dir, &values, [1, 2], &mut cache).expect("compiles"));
                    }
                    Way::Change => {
                        let config = compile_change(service.state(), &changed, dir, &values, [1, 2], &mut cache);
                        black_box(config.expect("compiles"));
                        cache.commit();
                    }
                }
                total += started.elapsed();
            }
            total
        })
    });
}

fn management(c: &mut Criterion) {
    let mut service = store();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let values = NamedValues::default();
    let config =
        compile_state(service.state(), dir, &values, [1, 2], &mut StoreCache::default()).expect("the store compiles");
    let bytes = snapshot::encode(1, &config).expect("encode");
    println!("snapshot at 1,000 APIs x 10 operations, 100,000 subscriptions: {} bytes", bytes.len());
    // For measuring a data plane that serves it: it starts from a last-good snapshot file.
    if let Some(path) = std::env::var_os("PORTCULLIS_SNAPSHOT_OUT") {
        std::fs::write(&path, &bytes).expect("write the snapshot");
    }
    // What holding the decoded config costs a process (the data plane holds one, two during a swap).
    let before = resident_kib();
    let decoded = snapshot::decode(&bytes).expect("decode");
    let after = resident_kib();
    println!("decoded config resident: {} KiB (VmRSS {before} -> {after} KiB)", after.saturating_sub(before));
    drop(decoded);
    let mut group = c.benchmark_group("management_1k_apis_10k_ops_100k_subs");
    group.sample_size(10);
    group.bench_function("compile_store", |b| {
        b.iter(|| compile_state(black_box(service.state()), dir, &values, [1, 2], &mut StoreCache::default()))
    });
    group.bench_function("snapshot_encode", |b| b.iter(|| snapshot::encode(1, black_box(&config))));
    group.bench_function("snapshot_decode", |b| b.iter(|| snapshot::decode(black_box(&bytes))));
    group.finish();
    let group = "management_1k_apis_10k_ops_100k_subs";
    incremental(c, &format!("{group}/compile_after_new_subscription"), &mut service, new_subscription, Way::Whole);
    incremental(c, &format!("{group}/compile_after_changed_policy"), &mut service, changed_policy, Way::Whole);
    incremental(c, &format!("{group}/compile_change_new_subscription"), &mut service, new_subscription, Way::Change);
    incremental(c, &format!("{group}/compile_change_changed_policy"), &mut service, changed_policy, Way::Change);
}

/// VmRSS of this process, KiB (Linux).
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

criterion_group!(benches, management);
criterion_main!(benches);
