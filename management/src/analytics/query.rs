//! Reading reports: rollups grouped by a dimension, latency percentiles, request records.

use portcullis_contract::telemetry::{RequestRecord, latency_histogram};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};

use super::record::add_encoded;

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Api,
    /// API and operation.
    Operation,
    Product,
    /// Subscription, with its product and user.
    Subscription,
    User,
    /// Intervals of `interval_ms` aligned to the Unix epoch.
    Time {
        interval_ms: i64,
    },
}

impl Dimension {
    /// The rollup columns the report groups by. Rows whose first column is empty are left out (a
    /// 404 that matched no API is in no API's row); the others may be empty (a subscription to
    /// one API has no product, one without an owner no user).
    fn columns(self) -> &'static [&'static str] {
        match self {
            Dimension::Api => &["api_id"],
            Dimension::Operation => &["api_id", "operation_id"],
            Dimension::Product => &["product_id"],
            Dimension::Subscription => &["subscription_id", "product_id", "user_id"],
            Dimension::User => &["user_id"],
            Dimension::Time { .. } => &[],
        }
    }
}

/// The time range (inclusive, Unix ms) and the `eq` filters of a report; ids are bare (`echo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub api_id: Option<String>,
    pub operation_id: Option<String>,
    pub product_id: Option<String>,
    pub subscription_id: Option<String>,
    pub user_id: Option<String>,
}

impl ReportQuery {
    /// Whether the query names anything that latency histograms (kept per operation) cannot tell.
    pub fn narrower_than_operations(&self) -> bool {
        self.product_id.is_some() || self.subscription_id.is_some() || self.user_id.is_some()
    }

    /// ` AND column = ?` for each filter, with their values after `values`.
    fn conditions(&self, time_column: &str, values: &mut Vec<Sql>) -> String {
        let mut sql = format!("{time_column} >= ? AND {time_column} <= ?");
        values.push(Sql::Integer(self.from_ms));
        values.push(Sql::Integer(self.to_ms));
        for (column, value) in [
            ("api_id", &self.api_id),
            ("operation_id", &self.operation_id),
            ("product_id", &self.product_id),
            ("subscription_id", &self.subscription_id),
            ("user_id", &self.user_id),
        ] {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                values.push(Sql::Text(value.clone()));
            }
        }
        sql
    }
}

/// Sums of a report row (times in microseconds; `None`: no request had one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    pub call_count_success: u64,
    pub call_count_blocked: u64,
    pub call_count_failed: u64,
    pub call_count_other: u64,
    pub call_count_total: u64,
    pub bandwidth: u64,
    pub cache_hit_count: u64,
    pub cache_miss_count: u64,
    pub api_time_count: u64,
    pub api_time_sum_us: u64,
    pub api_time_min_us: Option<u64>,
    pub api_time_max_us: Option<u64>,
    pub service_time_count: u64,
    pub service_time_sum_us: u64,
    pub service_time_min_us: Option<u64>,
    pub service_time_max_us: Option<u64>,
}

/// Latency percentiles in microseconds: total time (`api`) and backend time (`service`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub api_p50_us: u64,
    pub api_p95_us: u64,
    pub api_p99_us: u64,
    /// `None`: no request of the range reached the backend.
    pub service: Option<[u64; 3]>,
}

/// One row of a report: the dimension's values (empty when not grouped by them) and the sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportRow {
    pub api_id: String,
    pub operation_id: String,
    pub product_id: String,
    pub subscription_id: String,
    pub user_id: String,
    /// For [`Dimension::Time`]: the interval's start, Unix ms.
    pub interval_start_ms: Option<i64>,
    pub metrics: Metrics,
}

const SUMS: &str = "SUM(call_success), SUM(call_blocked), SUM(call_failed), SUM(call_other), SUM(call_total),
    SUM(bandwidth), SUM(cache_hit), SUM(cache_miss),
    SUM(api_time_count), SUM(api_time_sum_us), MIN(api_time_min_us), MAX(api_time_max_us),
    SUM(service_time_count), SUM(service_time_sum_us), MIN(service_time_min_us), MAX(service_time_max_us)";

pub(super) fn report(
    connection: &Connection,
    dimension: Dimension,
    query: &ReportQuery,
) -> rusqlite::Result<Vec<ReportRow>> {
    let mut values = Vec::new();
    let mut group: Vec<String> = dimension.columns().iter().map(|c| (*c).to_owned()).collect();
    if let Dimension::Time { interval_ms } = dimension {
        group.push(format!("bucket_ms - (bucket_ms % {})", interval_ms.max(1)));
    }
    let conditions = query.conditions("bucket_ms", &mut values);
    let non_empty: String = dimension.columns().first().map(|c| format!(" AND {c} <> ''")).unwrap_or_default();
    let sql = format!(
        "SELECT {group}, {SUMS} FROM analytics_rollups WHERE {conditions}{non_empty} GROUP BY {group}",
        group = group.join(", ")
    );
    let mut statement = connection.prepare(&sql)?;
    let columns = dimension.columns();
    let rows = statement.query_map(params_from_iter(values), |row| {
        let mut report = ReportRow::default();
        for (index, column) in columns.iter().enumerate() {
            let value: String = row.get(index)?;
            match *column {
                "api_id" => report.api_id = value,
                "operation_id" => report.operation_id = value,
                "product_id" => report.product_id = value,
                "subscription_id" => report.subscription_id = value,
                _ => report.user_id = value,
            }
        }
        let mut at = columns.len();
        if matches!(dimension, Dimension::Time { .. }) {
            report.interval_start_ms = Some(row.get(at)?);
            at += 1;
        }
        report.metrics = metrics(row, at)?;
        Ok(report)
    })?;
    rows.collect()
}

fn metrics(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Metrics> {
    let count =
        |index: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, Option<i64>>(at + index)?.unwrap_or(0) as u64) };
    let optional = |index: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row.get::<_, Option<i64>>(at + index)?.map(|value| value as u64))
    };
    Ok(Metrics {
        call_count_success: count(0)?,
        call_count_blocked: count(1)?,
        call_count_failed: count(2)?,
        call_count_other: count(3)?,
        call_count_total: count(4)?,
        bandwidth: count(5)?,
        cache_hit_count: count(6)?,
        cache_miss_count: count(7)?,
        api_time_count: count(8)?,
        api_time_sum_us: count(9)?,
        api_time_min_us: optional(10)?,
        api_time_max_us: optional(11)?,
        service_time_count: count(12)?,
        service_time_sum_us: count(13)?,
        service_time_min_us: optional(14)?,
        service_time_max_us: optional(15)?,
    })
}

/// Merges the histograms of the range one row at a time (see [`super::Analytics::percentiles`]).
pub(super) fn percentiles(
    connection: &Connection,
    api_id: Option<&str>,
    operation_id: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> rusqlite::Result<Option<Percentiles>> {
    let query = ReportQuery {
        from_ms,
        to_ms,
        api_id: api_id.map(str::to_owned),
        operation_id: operation_id.map(str::to_owned),
        ..ReportQuery::default()
    };
    let mut values = Vec::new();
    let conditions = query.conditions("bucket_ms", &mut values);
    let mut statement =
        connection.prepare(&format!("SELECT total, backend FROM analytics_latencies WHERE {conditions}"))?;
    let rows = statement
        .query_map(params_from_iter(values), |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?)))?;
    let (mut total, mut backend) = (latency_histogram(), latency_histogram());
    for row in rows {
        let (row_total, row_backend) = row?;
        add_encoded(&mut total, &row_total);
        add_encoded(&mut backend, &row_backend);
    }
    if total.is_empty() {
        return Ok(None);
    }
    let at = |histogram: &hdrhistogram::Histogram<u64>, quantile: f64| histogram.value_at_quantile(quantile);
    Ok(Some(Percentiles {
        api_p50_us: at(&total, 0.50),
        api_p95_us: at(&total, 0.95),
        api_p99_us: at(&total, 0.99),
        service: (!backend.is_empty()).then(|| [at(&backend, 0.50), at(&backend, 0.95), at(&backend, 0.99)]),
    }))
}

pub(super) fn requests(
    connection: &Connection,
    query: &ReportQuery,
    top: u64,
    skip: u64,
) -> rusqlite::Result<(Vec<RequestRecord>, u64)> {
    let mut values = Vec::new();
    let conditions = query.conditions("time_ms", &mut values);
    let count: i64 = connection.query_row(
        &format!("SELECT COUNT(*) FROM analytics_requests WHERE {conditions}"),
        params_from_iter(values.iter()),
        |row| row.get(0),
    )?;
    values.push(Sql::Integer(super::sql_int(top)));
    values.push(Sql::Integer(super::sql_int(skip)));
    let mut statement = connection.prepare(&format!(
        "SELECT record FROM analytics_requests WHERE {conditions} ORDER BY time_ms, request_id LIMIT ? OFFSET ?"
    ))?;
    let rows = statement.query_map(params_from_iter(values), |row| row.get::<_, String>(0))?;
    let mut records = Vec::new();
    for row in rows {
        // Records were written by this module from the same type; one that does not read is skipped.
        if let Ok(record) = serde_json::from_str(&row?) {
            records.push(record);
        }
    }
    Ok((records, count as u64))
}
