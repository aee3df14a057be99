//! Micro-benchmarks of the counter store (`portcullis_dataplane::counters`): one increment and
//! check, as a rate limit (sliding window), a quota (fixed window), a per-IP limit (token bucket)
//! and `limit-concurrency` (gauge acquire + release) do it per request, by 1 and 2 threads at once, on one key (every
//! thread on the same slot) and on 10k keys. With 2 threads the figure is the time per operation
//! of each thread while the other runs too.

#![allow(clippy::expect_used, reason = "benchmark fixtures are built from constants; a failure is a bug in the bench")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_dataplane::counters::{
    Charge, CounterKey, CounterStore as _, FixedWindow, KeyHasher, LocalCounters, NS_PER_SECOND, Namespace,
    SlidingWindow, TokenBucket,
};

/// Keys of the many-keys runs: a large estate of subscriptions or client addresses.
const KEYS: usize = 10_000;
/// Slots of the benchmark's store: a quarter full with 10k sliding windows (two slots each).
const SLOTS: usize = 1 << 17;

/// A window no benchmark fills: every hit is admitted and counted.
const WINDOW: SlidingWindow = SlidingWindow { limit: u32::MAX, period_seconds: 60, origin_ns: 0 };
/// A quota window no benchmark fills (a day, from the epoch).
const QUOTA: FixedWindow = FixedWindow { limit: u32::MAX, period_seconds: 86_400, origin_ns: 0 };
/// A bucket no benchmark empties.
const BUCKET: TokenBucket = TokenBucket { rate_per_second: 100_000_000, burst: u32::MAX, penalty_ns: 0 };

#[derive(Clone, Copy)]
enum Operation {
    Sliding,
    Fixed,
    Bucket,
    Gauge,
}

/// Runs `iterations` operations on each of `threads` threads at once; the wall time of the slowest.
fn run(
    store: &Arc<LocalCounters>,
    keys: &Arc<Vec<CounterKey>>,
    operation: Operation,
    threads: usize,
    iterations: u64,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (store, keys) = (Arc::clone(store), Arc::clone(keys));
            scope.spawn(move || {
                for i in 0..iterations {
                    let key = keys[(thread * 7_919 + i as usize) % keys.len()];
                    // Time moves on slowly, as it does between requests.
                    let now = NS_PER_SECOND + i;
                    match operation {
                        Operation::Sliding => {
                            black_box(store.hit_sliding(key, WINDOW, 1, Charge::IfAdmitted, now));
                        }
                        Operation::Fixed => {
                            black_box(store.hit_fixed(key, QUOTA, 1, Charge::IfAdmitted, now));
                        }
                        Operation::Bucket => {
                            black_box(store.take(key, BUCKET, now));
                        }
                        Operation::Gauge => {
                            let lease = store.acquire(key, u32::MAX).expect("room");
                            store.release(black_box(lease));
                        }
                    }
                }
            });
        }
    });
    start.elapsed()
}

fn counters(c: &mut Criterion) {
    let hasher = KeyHasher::default();
    let many: Arc<Vec<CounterKey>> =
        Arc::new((0..KEYS).map(|i| hasher.key(Namespace::RateLimit, format!("subscription-{i}").as_bytes())).collect());
    let one: Arc<Vec<CounterKey>> = Arc::new(vec![many[0]]);
    let mut group = c.benchmark_group("counters");
    for (name, operation) in [
        ("sliding", Operation::Sliding),
        ("fixed", Operation::Fixed),
        ("bucket", Operation::Bucket),
        ("gauge", Operation::Gauge),
    ] {
        for (keys_name, keys) in [("1 key", &one), ("10k keys", &many)] {
            for threads in [1, 2] {
                let store = Arc::new(LocalCounters::new(SLOTS));
                group.bench_function(format!("{name} increment+check, {keys_name}, {threads} thread(s)"), |b| {
                    b.iter_custom(|iterations| run(&store, keys, operation, threads, iterations));
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, counters);
criterion_main!(benches);
