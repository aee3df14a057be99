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

/// Every migration, oldest first.
pub(super) fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(V1)])
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
