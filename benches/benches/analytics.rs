//! What control spends on one busy telemetry batch (one second of traffic over 200 operations:
//! 1,000 series, 200 latency histograms, 1,000 request records), folded into the analytics rollups
//! in the store file and into the Prometheus families. It must stay well under the batch interval
//! (one second), since batches are recorded one after another.
#![allow(clippy::expect_used, reason = "benchmark fixtures are built from constants; a failure is a bug in the bench")]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use portcullis_contract::telemetry::{
    Batch, CacheResult, Latencies, RequestRecord, Series, SeriesKey, SeriesValues, encode_histogram, latency_histogram,
};
use portcullis_management::analytics::{Analytics, record_batch};

const OPERATIONS: usize = 200;
const STATUSES: [u16; 5] = [200, 201, 404, 429, 500];

fn busy(sequence: u64) -> Batch {
    let mut histogram = latency_histogram();
    for us in [900, 2_000, 3_000, 45_000] {
        let _ = histogram.record(us);
    }
    let encoded = encode_histogram(&histogram);
    let series = (0..OPERATIONS * STATUSES.len())
        .map(|i| Series {
            key: SeriesKey {
                api_id: "api".into(),
                api_revision: 1,
                operation_id: format!("op{}", i / STATUSES.len()),
                subscription_id: format!("sub{}", i % 17),
                status: STATUSES[i % STATUSES.len()],
                cache: CacheResult::None,
                ..SeriesKey::default()
            },
            values: SeriesValues::one(300, 1_200, 2_000, Some(1_500)),
        })
        .collect();
    let latencies = (0..OPERATIONS)
        .map(|i| Latencies {
            api_id: "api".into(),
            operation_id: format!("op{i}"),
            total: encoded.clone(),
            backend: encoded.clone(),
        })
        .collect();
    let requests = (0..1_000)
        .map(|i| RequestRecord {
            time_generated: "2026-12-07T20:00:00.000Z".into(),
            correlation_id: format!("{i:08}-0000-0000-0000-000000000000"),
            api_id: "api".into(),
            operation_id: format!("op{}", i % OPERATIONS),
            response_code: 200,
            ..RequestRecord::default()
        })
        .collect();
    let start = 1_796_000_000_000 + sequence * 1_000;
    Batch {
        sequence,
        data_plane_pid: 1,
        start_unix_ms: start,
        end_unix_ms: start + 1_000,
        series,
        latencies,
        requests,
        ..Batch::default()
    }
}

fn analytics(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("portcullis-bench-analytics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let shared = Analytics::open(&dir.join("management.db")).expect("store").shared();
    let mut sequence = 0;
    c.bench_function("analytics/record_busy_batch_into_the_store_file", |b| {
        b.iter_batched(
            || {
                sequence += 1;
                busy(sequence)
            },
            |batch| black_box(record_batch(&shared, &batch).expect("recorded")),
            BatchSize::LargeInput,
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = analytics
}
criterion_main!(benches);
