//! Analytics: APIM's usage reports, kept in the management store from the data plane's telemetry.
//!
//! Control hands every telemetry [`Batch`] to [`Analytics::record`] (through [`record_batch`]): in one SQLite transaction it
//! adds the batch's series into per-minute rollups keyed by (bucket, API, operation, product,
//! subscription, user), merges its latency histograms into per-minute histograms per operation,
//! keeps its request records for `/reports/byRequest`, and remembers the batch's sequence for its
//! data-plane process, so a batch sent again after a lost acknowledgement is not counted twice.
//! The same call feeds the [`Live`] window `ctl top` shows.
//!
//! [`Analytics::compact`] (every [`COMPACTION_INTERVAL_MS`]) folds minute rows older than
//! `hourly_after_days` into hour rows and deletes what is older than `retention_days`.
//! [`Analytics::report`] and [`Analytics::requests`] answer the management API's reports.
//!
//! Analytics opens its own connection to the store's file (SQLite in WAL mode lets it write next
//! to the service's connection); the tables are created by the store's migrations (version 2).
//! Times are kept in microseconds and reported in milliseconds.

use std::path::Path;
use std::sync::{Arc, Mutex};

use portcullis_contract::telemetry::{AnalyticsSettings, Batch};
use rusqlite::Connection;

mod compact;
pub mod live;
mod query;
mod record;

pub use compact::Compaction;
pub use live::{ApiSample, Live, TopSample};
pub use query::{Dimension, Metrics, Percentiles, ReportQuery, ReportRow};

/// Rollup bucket lengths: minutes, then hours past `hourly_after_days`.
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;
/// Request records are kept at most 7 days (and never longer than the retention) ...
pub const REQUESTS_AGE_MS_MAX: i64 = 7 * DAY_MS;
/// ... and at most this many (the newest): about 100 MB of records at 1 KB each.
pub const REQUESTS_ROWS_MAX: i64 = 100_000;
/// How often control runs [`Analytics::compact`].
pub const COMPACTION_INTERVAL_MS: u64 = 10 * 60 * 1000;
/// How long a writer waits for the service's transaction on the same file.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Analytics as control shares it: the telemetry handler records, the management API reads,
/// the admin socket samples the live window, a timer compacts.
pub type SharedAnalytics = Arc<Mutex<Analytics>>;

/// What can go wrong in analytics.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("the analytics store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("the analytics store's schema cannot be migrated: {0}")]
    Migrate(#[from] rusqlite_migration::Error),
    #[error("the analytics store: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// Whether [`Analytics::record`] counted a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Committed (acknowledge it).
    Committed,
    /// Its data plane's batch of this sequence was committed before: nothing counted (acknowledge
    /// it too, the ack was lost).
    AlreadyRecorded,
}

/// The rollups, histograms and request records, and the live window.
#[derive(Debug)]
pub struct Analytics {
    connection: Connection,
    live: Live,
}

impl Analytics {
    /// Opens the management store's file at `path` (creating and migrating it as needed).
    pub fn open(path: &Path) -> Result<Self, AnalyticsError> {
        let open_error = |source| AnalyticsError::Open { path: path.display().to_string(), source };
        let mut connection = Connection::open(path).map_err(open_error)?;
        connection.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(open_error)?;
        connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(open_error)?;
        crate::store::schema::migrations().to_latest(&mut connection)?;
        Ok(Self { connection, live: Live::default() })
    }

    /// An in-memory store of its own (tests, and a management API run without control).
    pub fn in_memory() -> Result<Self, AnalyticsError> {
        let open_error = |source| AnalyticsError::Open { path: ":memory:".to_owned(), source };
        let mut connection = Connection::open_in_memory().map_err(open_error)?;
        crate::store::schema::migrations().to_latest(&mut connection)?;
        Ok(Self { connection, live: Live::default() })
    }

    /// Wrapped for sharing.
    pub fn shared(self) -> SharedAnalytics {
        Arc::new(Mutex::new(self))
    }

    /// Adds `batch` to the rollups in one transaction, unless its data plane's batch of the same
    /// sequence is there already; then to the live window.
    pub fn record(&mut self, batch: &Batch) -> Result<Recorded, AnalyticsError> {
        let recorded = record::record(&mut self.connection, batch, now_ms())?;
        if recorded == Recorded::Committed {
            self.live.push(batch);
        }
        Ok(recorded)
    }

    /// Folds minute rows older than `hourly_after_days` into hours, deletes rows older than
    /// `retention_days`, and bounds the request records; one transaction.
    pub fn compact(&mut self, now_ms: i64, settings: &AnalyticsSettings) -> Result<Compaction, AnalyticsError> {
        Ok(compact::compact(&mut self.connection, now_ms, settings)?)
    }

    /// The rollups of `query` grouped by `dimension`, unsorted (the API sorts and pages).
    pub fn report(&self, dimension: Dimension, query: &ReportQuery) -> Result<Vec<ReportRow>, AnalyticsError> {
        Ok(query::report(&self.connection, dimension, query)?)
    }

    /// Latency percentiles of one API (or operation) over `[from_ms, to_ms]`; `None` without data.
    pub fn percentiles(
        &self,
        api_id: Option<&str>,
        operation_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<Percentiles>, AnalyticsError> {
        Ok(query::percentiles(&self.connection, api_id, operation_id, from_ms, to_ms)?)
    }

    /// The request records of `query`, oldest first, `skip` then at most `top`; and how many match.
    pub fn requests(
        &self,
        query: &ReportQuery,
        top: u64,
        skip: u64,
    ) -> Result<(Vec<portcullis_contract::telemetry::RequestRecord>, u64), AnalyticsError> {
        Ok(query::requests(&self.connection, query, top, skip)?)
    }

    /// One sample of the live window (`ctl top`): per API over the last `window_ms`.
    pub fn top(&self, now_ms: i64, window_ms: i64) -> TopSample {
        self.live.sample(now_ms, window_ms)
    }
}

/// [`Analytics::record`] on the shared analytics: what control calls for every telemetry batch,
/// acknowledging the batch when it returns `Ok` (either variant). A poisoned lock is still
/// consistent (a transaction commits or rolls back as a whole), so it is used.
pub fn record_batch(analytics: &SharedAnalytics, batch: &Batch) -> Result<Recorded, AnalyticsError> {
    analytics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).record(batch)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The start of the `span_ms` bucket holding `unix_ms`.
pub(crate) fn bucket_of(unix_ms: i64, span_ms: i64) -> i64 {
    unix_ms - unix_ms.rem_euclid(span_ms)
}

/// `u64` as SQLite's INTEGER (saturating: sums of a day never come near it).
pub(crate) fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod tests;
