//! The management store: every resource by its path, with its properties, origin and version,
//! an audit log of changes, and the management API's access tokens.
//!
//! [`Store`] is the interface the management API, the CLI, the config-directory sync and (later)
//! analytics and the portal share. [`SqliteStore`] implements it on one SQLite file in the data
//! directory (WAL, foreign keys on, `synchronous=FULL`: an acknowledged commit survives `kill -9`
//! and power loss). The schema is plain SQL with TEXT and INTEGER columns, so a PostgreSQL store
//! can run the same statements (the JSON lives in TEXT; no SQLite-only function is used).

use std::path::Path;

use serde_json::Value;

use crate::resource::{PathError, ResourcePath};

pub(crate) mod schema;
mod sqlite;

pub use sqlite::SqliteStore;

/// Who owns a resource: the config directory that declared it, or the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Created through the management API (or later the portal): `apply` never deletes it.
    Store,
    /// Declared in the config directory by `file` (relative to the directory): only an edit of
    /// that file changes it, and `apply` deletes it when the file goes.
    Config { file: String },
}

impl Origin {
    /// The config file that owns the resource, if any.
    pub fn file(&self) -> Option<&str> {
        match self {
            Origin::Store => None,
            Origin::Config { file } => Some(file),
        }
    }
}

/// One stored resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub path: ResourcePath,
    /// The properties as stored (secrets included).
    pub properties: Value,
    pub origin: Origin,
    /// The change that last wrote the resource: its ETag.
    pub version: u64,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

impl Resource {
    /// The ETag of this version, quoted as HTTP writes it.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// One write of a change set.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create or replace `path` with `properties`, owned by `origin`.
    Put { path: ResourcePath, properties: Value, origin: Origin },
    /// Delete `path` and everything that belongs to it or links to it.
    Delete { path: ResourcePath },
}

impl Write {
    pub fn path(&self) -> &ResourcePath {
        match self {
            Write::Put { path, .. } | Write::Delete { path } => path,
        }
    }
}

/// Who made a change and why: one audit-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The token's name, `apply`, `import`, or `cli`.
    pub name: String,
    /// What was asked: `PUT /apis/echo`, `apply /etc/portcullis/config` ...
    pub action: String,
}

/// A committed change, as the audit log shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Also the version (ETag) of every resource it wrote.
    pub id: u64,
    pub at: String,
    pub actor: String,
    pub action: String,
    /// `PUT /apis/echo`, `DELETE /subscriptions/s1` ... one per write.
    pub writes: Vec<String>,
}

/// A management API access token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    pub name: String,
    pub read_only: bool,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the management store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("the management store's schema cannot be migrated: {0}")]
    Migrate(#[from] rusqlite_migration::Error),
    #[error("the management store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the management store holds a bad resource path: {0}")]
    BadPath(#[from] PathError),
    #[error("the management store holds bad JSON at {path}: {source}")]
    BadJson { path: String, source: serde_json::Error },
    #[error("a token named {0:?} exists already")]
    TokenExists(String),
}

/// The store interface.
pub trait Store: Send {
    /// Every resource, in path order (control holds them in memory).
    fn resources(&self) -> Result<Vec<Resource>, StoreError>;
    /// Applies `writes` in one transaction and records them as one audit entry; returns the
    /// change (its id is the new version of every resource written).
    fn commit(&mut self, writes: &[Write], actor: &Actor, at: &str) -> Result<Change, StoreError>;
    /// The audit log, newest first.
    fn changes(&self, skip: u64, top: u64) -> Result<Vec<Change>, StoreError>;
    /// Records a token; `hash` is the SHA-256 of its secret.
    fn create_token(&mut self, token: &Token, hash: &str) -> Result<(), StoreError>;
    /// The token whose secret hashes to `hash`.
    fn token_by_hash(&self, hash: &str) -> Result<Option<Token>, StoreError>;
    fn tokens(&self) -> Result<Vec<Token>, StoreError>;
    /// Deletes a token; whether it existed.
    fn delete_token(&mut self, name: &str) -> Result<bool, StoreError>;
}

/// Opens (creating and migrating as needed) the SQLite store at `path`.
pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(path)
}

#[cfg(test)]
mod tests;
