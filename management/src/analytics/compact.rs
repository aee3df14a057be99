//! Compaction: minute rows past `hourly_after_days` fold into hour rows; rows past
//! `retention_days` go; request records are bounded by age and count.

use portcullis_contract::telemetry::{AnalyticsSettings, latency_histogram};
use rusqlite::{Connection, Transaction, params};

use super::record::{ON_CONFLICT_ADD, ROLLUP_COLUMNS, add_encoded, merge_latencies};
use super::{DAY_MS, HOUR_MS, MINUTE_MS, REQUESTS_AGE_MS_MAX, REQUESTS_ROWS_MAX, bucket_of};

/// What one compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Minute rollup rows folded into hour rows.
    pub minutes_folded: u64,
    /// Rollup and histogram rows deleted for their age.
    pub rows_expired: u64,
    /// Request records deleted (age or count).
    pub requests_deleted: u64,
}

/// Runs one compaction at `now_ms` (see [`super::Analytics::compact`]).
pub(super) fn compact(
    connection: &mut Connection,
    now_ms: i64,
    settings: &AnalyticsSettings,
) -> rusqlite::Result<Compaction> {
    let transaction = connection.transaction()?;
    let hourly_before = bucket_of(now_ms - i64::from(settings.hourly_after_days) * DAY_MS, HOUR_MS);
    let retained_from = now_ms - i64::from(settings.retention_days) * DAY_MS;
    let minutes_folded = fold_rollups(&transaction, hourly_before)?;
    fold_latencies(&transaction, hourly_before)?;
    let mut rows_expired = 0;
    for table in ["analytics_rollups", "analytics_latencies"] {
        let sql = format!("DELETE FROM {table} WHERE bucket_ms < ?1");
        rows_expired += transaction.execute(&sql, params![retained_from])? as u64;
    }
    let requests_deleted = bound_requests(&transaction, now_ms - REQUESTS_AGE_MS_MAX.min(now_ms - retained_from))?;
    // A data plane silent for the whole retention will not send that batch again.
    transaction.execute("DELETE FROM analytics_batches WHERE recorded_ms < ?1", params![retained_from])?;
    transaction.commit()?;
    Ok(Compaction { minutes_folded, rows_expired, requests_deleted })
}

/// Adds the minute rows before `before` (hour-aligned) into their hour rows and deletes them.
fn fold_rollups(transaction: &Transaction<'_>, before: i64) -> rusqlite::Result<u64> {
    // `WHERE` before `ON CONFLICT` keeps SQLite's parser from reading ON as a join constraint.
    let sql = format!(
        "INSERT INTO analytics_rollups ({ROLLUP_COLUMNS})
         SELECT bucket_ms - (bucket_ms % {HOUR_MS}), {HOUR_MS},
             api_id, operation_id, product_id, subscription_id, user_id,
             SUM(call_success), SUM(call_blocked), SUM(call_failed), SUM(call_other), SUM(call_total),
             SUM(bandwidth), SUM(cache_hit), SUM(cache_miss),
             SUM(api_time_count), SUM(api_time_sum_us), MIN(api_time_min_us), MAX(api_time_max_us),
             SUM(service_time_count), SUM(service_time_sum_us), MIN(service_time_min_us), MAX(service_time_max_us)
         FROM analytics_rollups WHERE span_ms = {MINUTE_MS} AND bucket_ms < ?1
         GROUP BY bucket_ms - (bucket_ms % {HOUR_MS}), api_id, operation_id, product_id, subscription_id, user_id
         {ON_CONFLICT_ADD}"
    );
    transaction.execute(&sql, params![before])?;
    let folded = transaction
        .execute("DELETE FROM analytics_rollups WHERE span_ms = ?1 AND bucket_ms < ?2", params![MINUTE_MS, before])?;
    Ok(folded as u64)
}

/// Merges the minute histograms before `before` into hour histograms, one operation-hour at a time
/// (a decoded histogram is a few hundred KiB).
fn fold_latencies(transaction: &Transaction<'_>, before: i64) -> rusqlite::Result<()> {
    let mut keys = transaction.prepare(&format!(
        "SELECT DISTINCT bucket_ms - (bucket_ms % {HOUR_MS}), api_id, operation_id FROM analytics_latencies
         WHERE span_ms = ?1 AND bucket_ms < ?2"
    ))?;
    let keys: Vec<(i64, String, String)> = keys
        .query_map(params![MINUTE_MS, before], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut minutes = transaction.prepare(
        "SELECT total, backend FROM analytics_latencies
         WHERE span_ms = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3 AND api_id = ?4 AND operation_id = ?5",
    )?;
    for (hour, api, operation) in &keys {
        let (mut total, mut backend) = (latency_histogram(), latency_histogram());
        let end = (hour + HOUR_MS).min(before);
        let rows = minutes.query_map(params![MINUTE_MS, hour, end, api, operation], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (minute_total, minute_backend) = row?;
            add_encoded(&mut total, &minute_total);
            add_encoded(&mut backend, &minute_backend);
        }
        merge_latencies(transaction, (*hour, HOUR_MS, api, operation), &total, &backend)?;
    }
    transaction
        .execute("DELETE FROM analytics_latencies WHERE span_ms = ?1 AND bucket_ms < ?2", params![MINUTE_MS, before])?;
    Ok(())
}

/// Deletes request records older than `oldest_ms`, then all but the newest [`REQUESTS_ROWS_MAX`].
fn bound_requests(transaction: &Transaction<'_>, oldest_ms: i64) -> rusqlite::Result<u64> {
    let mut deleted = transaction.execute("DELETE FROM analytics_requests WHERE time_ms < ?1", params![oldest_ms])?;
    deleted += transaction.execute(
        "DELETE FROM analytics_requests WHERE time_ms < (
             SELECT time_ms FROM analytics_requests ORDER BY time_ms DESC LIMIT 1 OFFSET ?1)",
        params![REQUESTS_ROWS_MAX - 1],
    )?;
    Ok(deleted as u64)
}
