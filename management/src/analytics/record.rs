//! Recording one batch: rollups, histograms, request records and the batch's sequence, in one
//! transaction.

use std::collections::BTreeMap;

use portcullis_contract::telemetry::{
    Batch, CacheResult, CallBucket, RequestRecord, SeriesKey, SeriesValues, decode_histogram, encode_histogram,
    latency_histogram,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{MINUTE_MS, Recorded, bucket_of, sql_int};

/// What a rollup row is keyed by besides its bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Entities {
    pub api: String,
    pub operation: String,
    pub product: String,
    pub subscription: String,
    pub user: String,
}

impl Entities {
    fn of(key: &SeriesKey) -> Self {
        Entities {
            api: key.api_id.clone(),
            operation: key.operation_id.clone(),
            product: key.product_id.clone(),
            subscription: key.subscription_id.clone(),
            user: key.user_id.clone(),
        }
    }
}

/// The sums of one rollup row (times in microseconds; `None` minimum: no request had one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Rollup {
    pub success: u64,
    pub blocked: u64,
    pub failed: u64,
    pub other: u64,
    pub total: u64,
    pub bandwidth: u64,
    pub cache_hit: u64,
    pub cache_miss: u64,
    pub api_count: u64,
    pub api_sum_us: u64,
    pub api_min_us: Option<u64>,
    pub api_max_us: Option<u64>,
    pub service_count: u64,
    pub service_sum_us: u64,
    pub service_min_us: Option<u64>,
    pub service_max_us: Option<u64>,
}

impl Rollup {
    fn add(&mut self, key: &SeriesKey, values: &SeriesValues) {
        let count = values.count;
        match CallBucket::of(key.status) {
            CallBucket::Success => self.success += count,
            CallBucket::Blocked => self.blocked += count,
            CallBucket::Failed => self.failed += count,
            CallBucket::Other => self.other += count,
        }
        self.total += count;
        self.bandwidth += values.request_bytes + values.response_bytes;
        match key.cache {
            CacheResult::Hit => self.cache_hit += count,
            CacheResult::Miss => self.cache_miss += count,
            CacheResult::None => {}
        }
        self.api_count += count;
        self.api_sum_us += values.total_us_sum;
        self.api_min_us = Some(self.api_min_us.map_or(values.total_us_min, |min| min.min(values.total_us_min)));
        self.api_max_us = Some(self.api_max_us.map_or(values.total_us_max, |max| max.max(values.total_us_max)));
        if values.backend_count > 0 {
            self.service_count += values.backend_count;
            self.service_sum_us += values.backend_us_sum;
            self.service_min_us =
                Some(self.service_min_us.map_or(values.backend_us_min, |min| min.min(values.backend_us_min)));
            self.service_max_us =
                Some(self.service_max_us.map_or(values.backend_us_max, |max| max.max(values.backend_us_max)));
        }
    }
}

/// The columns of a rollup row, in the order of [`UPSERT_ROLLUP`]'s values.
pub(super) const ROLLUP_COLUMNS: &str =
    "bucket_ms, span_ms, api_id, operation_id, product_id, subscription_id, user_id,
    call_success, call_blocked, call_failed, call_other, call_total, bandwidth, cache_hit, cache_miss,
    api_time_count, api_time_sum_us, api_time_min_us, api_time_max_us,
    service_time_count, service_time_sum_us, service_time_min_us, service_time_max_us";

/// How a row that exists takes more in: sums add, minima and maxima combine (CASE rather than
/// SQLite's two-argument MIN/MAX, so PostgreSQL runs it too).
pub(super) const ON_CONFLICT_ADD: &str =
    "ON CONFLICT (bucket_ms, span_ms, api_id, operation_id, product_id, subscription_id, user_id) DO UPDATE SET
    call_success = analytics_rollups.call_success + excluded.call_success,
    call_blocked = analytics_rollups.call_blocked + excluded.call_blocked,
    call_failed = analytics_rollups.call_failed + excluded.call_failed,
    call_other = analytics_rollups.call_other + excluded.call_other,
    call_total = analytics_rollups.call_total + excluded.call_total,
    bandwidth = analytics_rollups.bandwidth + excluded.bandwidth,
    cache_hit = analytics_rollups.cache_hit + excluded.cache_hit,
    cache_miss = analytics_rollups.cache_miss + excluded.cache_miss,
    api_time_count = analytics_rollups.api_time_count + excluded.api_time_count,
    api_time_sum_us = analytics_rollups.api_time_sum_us + excluded.api_time_sum_us,
    api_time_min_us = CASE WHEN analytics_rollups.api_time_min_us IS NULL
        OR excluded.api_time_min_us < analytics_rollups.api_time_min_us
        THEN excluded.api_time_min_us ELSE analytics_rollups.api_time_min_us END,
    api_time_max_us = CASE WHEN analytics_rollups.api_time_max_us IS NULL
        OR excluded.api_time_max_us > analytics_rollups.api_time_max_us
        THEN excluded.api_time_max_us ELSE analytics_rollups.api_time_max_us END,
    service_time_count = analytics_rollups.service_time_count + excluded.service_time_count,
    service_time_sum_us = analytics_rollups.service_time_sum_us + excluded.service_time_sum_us,
    service_time_min_us = CASE WHEN analytics_rollups.service_time_min_us IS NULL
        OR excluded.service_time_min_us < analytics_rollups.service_time_min_us
        THEN excluded.service_time_min_us ELSE analytics_rollups.service_time_min_us END,
    service_time_max_us = CASE WHEN analytics_rollups.service_time_max_us IS NULL
        OR excluded.service_time_max_us > analytics_rollups.service_time_max_us
        THEN excluded.service_time_max_us ELSE analytics_rollups.service_time_max_us END";

/// Records `batch` (see [`super::Analytics::record`]).
pub(super) fn record(connection: &mut Connection, batch: &Batch, now_ms: i64) -> rusqlite::Result<Recorded> {
    let transaction = connection.transaction()?;
    if already_recorded(&transaction, batch)? {
        return Ok(Recorded::AlreadyRecorded);
    }
    let bucket = bucket_of(sql_int(batch.start_unix_ms), MINUTE_MS);
    for (entities, rollup) in rollups(batch) {
        upsert_rollup(&transaction, bucket, MINUTE_MS, &entities, &rollup)?;
    }
    for latencies in &batch.latencies {
        let key = (bucket, MINUTE_MS, latencies.api_id.as_str(), latencies.operation_id.as_str());
        add_latencies(&transaction, key, &latencies.total, &latencies.backend)?;
    }
    for request in &batch.requests {
        insert_request(&transaction, request, sql_int(batch.start_unix_ms))?;
    }
    transaction.execute(
        "INSERT INTO analytics_batches (data_plane_pid, sequence, start_ms, recorded_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (data_plane_pid) DO UPDATE SET sequence = excluded.sequence, start_ms = excluded.start_ms,
             recorded_ms = excluded.recorded_ms",
        params![i64::from(batch.data_plane_pid), sql_int(batch.sequence), sql_int(batch.start_unix_ms), now_ms],
    )?;
    transaction.commit()?;
    Ok(Recorded::Committed)
}

/// Whether the batch's process committed this sequence (or a later one) already. A process that
/// reuses a pid starts again at sequence 1 with a later interval: that is a new batch.
fn already_recorded(transaction: &Transaction<'_>, batch: &Batch) -> rusqlite::Result<bool> {
    let last: Option<(i64, i64)> = transaction
        .query_row(
            "SELECT sequence, start_ms FROM analytics_batches WHERE data_plane_pid = ?1",
            params![i64::from(batch.data_plane_pid)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(last.is_some_and(|(sequence, start_ms)| {
        sql_int(batch.sequence) <= sequence && sql_int(batch.start_unix_ms) <= start_ms
    }))
}

/// The batch's series summed by entities (status, cache and error fields fold into the sums).
pub(super) fn rollups(batch: &Batch) -> BTreeMap<Entities, Rollup> {
    let mut rollups: BTreeMap<Entities, Rollup> = BTreeMap::new();
    for series in batch.series.iter().filter(|series| series.values.count > 0) {
        rollups.entry(Entities::of(&series.key)).or_default().add(&series.key, &series.values);
    }
    rollups
}

pub(super) fn upsert_rollup(
    transaction: &Transaction<'_>,
    bucket_ms: i64,
    span_ms: i64,
    entities: &Entities,
    rollup: &Rollup,
) -> rusqlite::Result<()> {
    let sql = format!(
        "INSERT INTO analytics_rollups ({ROLLUP_COLUMNS}) VALUES
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)
         {ON_CONFLICT_ADD}"
    );
    let option = |value: Option<u64>| value.map(sql_int);
    transaction.execute(
        &sql,
        params![
            bucket_ms,
            span_ms,
            entities.api,
            entities.operation,
            entities.product,
            entities.subscription,
            entities.user,
            sql_int(rollup.success),
            sql_int(rollup.blocked),
            sql_int(rollup.failed),
            sql_int(rollup.other),
            sql_int(rollup.total),
            sql_int(rollup.bandwidth),
            sql_int(rollup.cache_hit),
            sql_int(rollup.cache_miss),
            sql_int(rollup.api_count),
            sql_int(rollup.api_sum_us),
            option(rollup.api_min_us),
            option(rollup.api_max_us),
            sql_int(rollup.service_count),
            sql_int(rollup.service_sum_us),
            option(rollup.service_min_us),
            option(rollup.service_max_us),
        ],
    )?;
    Ok(())
}

/// (bucket, span, API, operation): what a latency row is keyed by.
pub(super) type LatencyKey<'a> = (i64, i64, &'a str, &'a str);

/// Adds two encoded histograms into the row of `key`: stored as they are when the row is new (the
/// first batch of a minute), else decoded into the row's (a decoded histogram is ~170 KiB, so the
/// fewer the better).
fn add_latencies(
    transaction: &Transaction<'_>,
    key: LatencyKey<'_>,
    total: &[u8],
    backend: &[u8],
) -> rusqlite::Result<()> {
    let (Some(total_histogram), Some(backend_histogram)) = (decode_histogram(total), decode_histogram(backend)) else {
        tracing::warn!("a telemetry batch carried a latency histogram that does not decode; skipped");
        return Ok(());
    };
    match existing_latencies(transaction, key)? {
        None => store_latencies(transaction, key, total, backend),
        Some((mut old_total, mut old_backend)) => {
            add(&mut old_total, &total_histogram);
            add(&mut old_backend, &backend_histogram);
            store_latencies(transaction, key, &encode_histogram(&old_total), &encode_histogram(&old_backend))
        }
    }
}

/// Adds two histograms into the row of `key` (creating it).
pub(super) fn merge_latencies(
    transaction: &Transaction<'_>,
    key: LatencyKey<'_>,
    total: &hdrhistogram::Histogram<u64>,
    backend: &hdrhistogram::Histogram<u64>,
) -> rusqlite::Result<()> {
    let (merged_total, merged_backend) = match existing_latencies(transaction, key)? {
        Some((mut old_total, mut old_backend)) => {
            add(&mut old_total, total);
            add(&mut old_backend, backend);
            (old_total, old_backend)
        }
        None => (total.clone(), backend.clone()),
    };
    store_latencies(transaction, key, &encode_histogram(&merged_total), &encode_histogram(&merged_backend))
}

/// The row's histograms, decoded (an undecodable one reads as empty).
fn existing_latencies(
    transaction: &Transaction<'_>,
    key: LatencyKey<'_>,
) -> rusqlite::Result<Option<(hdrhistogram::Histogram<u64>, hdrhistogram::Histogram<u64>)>> {
    let (bucket_ms, span_ms, api, operation) = key;
    let existing: Option<(Vec<u8>, Vec<u8>)> = transaction
        .query_row(
            "SELECT total, backend FROM analytics_latencies
             WHERE bucket_ms = ?1 AND span_ms = ?2 AND api_id = ?3 AND operation_id = ?4",
            params![bucket_ms, span_ms, api, operation],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(existing.map(|(total, backend)| {
        let decode = |bytes: &[u8]| decode_histogram(bytes).unwrap_or_else(latency_histogram);
        (decode(&total), decode(&backend))
    }))
}

fn store_latencies(
    transaction: &Transaction<'_>,
    key: LatencyKey<'_>,
    total: &[u8],
    backend: &[u8],
) -> rusqlite::Result<()> {
    let (bucket_ms, span_ms, api, operation) = key;
    transaction.execute(
        "INSERT INTO analytics_latencies (bucket_ms, span_ms, api_id, operation_id, total, backend)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (bucket_ms, span_ms, api_id, operation_id) DO UPDATE SET
             total = excluded.total, backend = excluded.backend",
        params![bucket_ms, span_ms, api, operation, total, backend],
    )?;
    Ok(())
}

/// Adds `source` into `target`; values past the latency bounds are clamped by recording them at
/// the bound (a histogram from the data plane never has any).
pub(super) fn add(target: &mut hdrhistogram::Histogram<u64>, source: &hdrhistogram::Histogram<u64>) {
    if target.add(source).is_err() {
        for value in source.iter_recorded() {
            let _ = target.record_n(value.value_iterated_to().min(target.high()), value.count_at_value());
        }
    }
}

/// Adds the histogram `bytes` encode into `target` (nothing when they do not decode).
pub(super) fn add_encoded(target: &mut hdrhistogram::Histogram<u64>, bytes: &[u8]) {
    if let Some(histogram) = decode_histogram(bytes) {
        add(target, &histogram);
    }
}

fn insert_request(transaction: &Transaction<'_>, request: &RequestRecord, batch_start_ms: i64) -> rusqlite::Result<()> {
    let time_ms = chrono::DateTime::parse_from_rfc3339(&request.time_generated)
        .map_or(batch_start_ms, |time| time.timestamp_millis());
    // A record always serializes (plain strings and numbers); an empty one would be skipped below.
    let record = serde_json::to_string(request).unwrap_or_default();
    if record.is_empty() {
        return Ok(());
    }
    transaction.execute(
        "INSERT INTO analytics_requests
             (time_ms, request_id, api_id, operation_id, product_id, subscription_id, user_id, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (time_ms, request_id) DO NOTHING",
        params![
            time_ms,
            request.correlation_id,
            request.api_id,
            request.operation_id,
            request.product_id,
            request.apim_subscription_id,
            request.user_id,
            record
        ],
    )?;
    Ok(())
}
