//! The store's schema, as versioned migrations (SQLite's `user_version` counts them).
//!
//! Append migrations; never edit one that has shipped. Statements stay within what PostgreSQL
//! also runs (TEXT, INTEGER, foreign keys, plain indexes).

use rusqlite_migration::{M, Migrations};

/// Version 1: resources, the audit log, tokens. References are checked when a change commits
/// (deferred), so one change may write a link before the resource it points at.
const V1: &str = "
CREATE TABLE resources (
    path TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    parent TEXT REFERENCES resources(path) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    target TEXT REFERENCES resources(path) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    properties TEXT NOT NULL,
    origin_file TEXT,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX resources_by_kind ON resources(kind, path);
CREATE INDEX resources_by_parent ON resources(parent);
CREATE INDEX resources_by_target ON resources(target);
CREATE TABLE changes (
    id INTEGER PRIMARY KEY NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    writes TEXT NOT NULL
);
CREATE TABLE tokens (
    name TEXT PRIMARY KEY NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    read_only INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT
);
";

/// Version 2: analytics (`crate::analytics`). Rollups per bucket (`span_ms` 60,000 for minutes,
/// 3,600,000 for hours) and entity, times in microseconds (`NULL` minimum and maximum: no request
/// of the row had one); latency histograms per bucket and operation (HdrHistogram V2 encodings);
/// recent requests as their JSON record; the last batch committed per data-plane process.
/// Milliseconds and sums are BIGINT (SQLite gives it INTEGER affinity; PostgreSQL's INTEGER is 32
/// bits); histograms are BLOB (BYTEA in PostgreSQL).
const V2: &str = "
CREATE TABLE analytics_rollups (
    bucket_ms BIGINT NOT NULL,
    span_ms BIGINT NOT NULL,
    api_id TEXT NOT NULL,
    operation_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    call_success BIGINT NOT NULL,
    call_blocked BIGINT NOT NULL,
    call_failed BIGINT NOT NULL,
    call_other BIGINT NOT NULL,
    call_total BIGINT NOT NULL,
    bandwidth BIGINT NOT NULL,
    cache_hit BIGINT NOT NULL,
    cache_miss BIGINT NOT NULL,
    api_time_count BIGINT NOT NULL,
    api_time_sum_us BIGINT NOT NULL,
    api_time_min_us BIGINT,
    api_time_max_us BIGINT,
    service_time_count BIGINT NOT NULL,
    service_time_sum_us BIGINT NOT NULL,
    service_time_min_us BIGINT,
    service_time_max_us BIGINT,
    PRIMARY KEY (bucket_ms, span_ms, api_id, operation_id, product_id, subscription_id, user_id)
);
CREATE INDEX analytics_rollups_by_span ON analytics_rollups(span_ms, bucket_ms);
CREATE TABLE analytics_latencies (
    bucket_ms BIGINT NOT NULL,
    span_ms BIGINT NOT NULL,
    api_id TEXT NOT NULL,
    operation_id TEXT NOT NULL,
    total BLOB NOT NULL,
    backend BLOB NOT NULL,
    PRIMARY KEY (bucket_ms, span_ms, api_id, operation_id)
);
CREATE INDEX analytics_latencies_by_span ON analytics_latencies(span_ms, bucket_ms);
CREATE TABLE analytics_requests (
    time_ms BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    api_id TEXT NOT NULL,
    operation_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (time_ms, request_id)
);
CREATE TABLE analytics_batches (
    data_plane_pid INTEGER PRIMARY KEY NOT NULL,
    sequence BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    recorded_ms BIGINT NOT NULL
);
";

/// Version 3: the developer portal (`crate::portal`). Sessions by the SHA-256 of their cookie's
/// secret (the secret itself is never stored), and the portal's signing key (tickets, CSRF tokens),
/// made once per store.
const V3: &str = "
CREATE TABLE portal_sessions (
    hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX portal_sessions_by_user ON portal_sessions(user_id);
CREATE TABLE portal_secrets (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
";

/// Every migration, oldest first.
pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(V1), M::up(V2), M::up(V3)])
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
