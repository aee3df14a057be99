//! [`Store`] on one SQLite file.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{Actor, Change, Origin, Resource, Store, StoreError, Token, Write};
use crate::resource::ResourcePath;

/// How long a writer waits for another process's transaction (a `portcullis` CLI next to `up`).
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Connection,
}

impl SqliteStore {
    /// Opens `path`, creating it (mode 0600: it holds keys) and migrating its schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open { path: path.display().to_string(), source };
        let mut connection = Connection::open(path).map_err(open_error)?;
        restrict_permissions(path);
        connection.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(open_error)?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(open_error)?;
        super::schema::migrations().to_latest(&mut connection)?;
        Ok(Self { connection })
    }

    /// An in-memory store (tests and dry runs).
    pub fn in_memory() -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open { path: ":memory:".to_owned(), source };
        let mut connection = Connection::open_in_memory().map_err(open_error)?;
        connection.execute_batch("PRAGMA foreign_keys = ON;").map_err(open_error)?;
        super::schema::migrations().to_latest(&mut connection)?;
        Ok(Self { connection })
    }
}

fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // Best effort: a store on a file system without modes still works.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

impl Store for SqliteStore {
    fn resources(&self) -> Result<Vec<Resource>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT path, properties, origin_file, version, created_at, updated_at FROM resources ORDER BY path",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
            ))
        })?;
        let mut resources = Vec::new();
        for row in rows {
            let (path, properties, origin_file, version, created_at, updated_at) = row?;
            let properties = serde_json::from_str(&properties)
                .map_err(|source| StoreError::BadJson { path: path.clone(), source })?;
            resources.push(Resource {
                path: ResourcePath::parse(&path)?,
                properties,
                origin: origin_file.map_or(Origin::Store, |file| Origin::Config { file }),
                version: version as u64,
                created_at,
                updated_at,
            });
        }
        Ok(resources)
    }

    fn commit(&mut self, writes: &[Write], actor: &Actor, at: &str) -> Result<Change, StoreError> {
        let transaction = self.connection.transaction()?;
        let summary: Vec<String> = writes.iter().map(describe).collect();
        let summary_json = serde_json::to_string(&summary).unwrap_or_default();
        transaction.execute(
            "INSERT INTO changes (at, actor, action, writes) VALUES (?1, ?2, ?3, ?4)",
            params![at, actor.name, actor.action, summary_json],
        )?;
        let id = transaction.last_insert_rowid();
        for write in writes {
            apply(&transaction, write, id, at)?;
        }
        transaction.commit()?;
        Ok(Change {
            id: id as u64,
            at: at.to_owned(),
            actor: actor.name.clone(),
            action: actor.action.clone(),
            writes: summary,
        })
    }

    fn changes(&self, skip: u64, top: u64) -> Result<Vec<Change>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT id, at, actor, action, writes FROM changes ORDER BY id DESC LIMIT ?1 OFFSET ?2")?;
        let rows = statement.query_map(params![top as i64, skip as i64], |row| {
            let writes: String = row.get(4)?;
            Ok(Change {
                id: row.get::<_, i64>(0)? as u64,
                at: row.get(1)?,
                actor: row.get(2)?,
                action: row.get(3)?,
                writes: serde_json::from_str(&writes).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn create_token(&mut self, token: &Token, hash: &str) -> Result<(), StoreError> {
        let result = self.connection.execute(
            "INSERT INTO tokens (name, hash, read_only, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token.name, hash, token.read_only, token.created_at, token.expires_at],
        );
        match result {
            Err(rusqlite::Error::SqliteFailure(error, _)) if error.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::TokenExists(token.name.clone()))
            }
            other => other.map(drop).map_err(StoreError::from),
        }
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<Token>, StoreError> {
        let token = self
            .connection
            .query_row(
                "SELECT name, read_only, created_at, expires_at FROM tokens WHERE hash = ?1",
                params![hash],
                token_from_row,
            )
            .optional()?;
        Ok(token)
    }

    fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        let mut statement =
            self.connection.prepare("SELECT name, read_only, created_at, expires_at FROM tokens ORDER BY name")?;
        let rows = statement.query_map([], token_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_token(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self.connection.execute("DELETE FROM tokens WHERE name = ?1", params![name])? > 0)
    }
}

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Token> {
    Ok(Token { name: row.get(0)?, read_only: row.get(1)?, created_at: row.get(2)?, expires_at: row.get(3)? })
}

fn describe(write: &Write) -> String {
    match write {
        Write::Put { path, .. } => format!("PUT {path}"),
        Write::Delete { path } => format!("DELETE {path}"),
    }
}

fn apply(transaction: &Transaction<'_>, write: &Write, version: i64, at: &str) -> Result<(), StoreError> {
    match write {
        Write::Put { path, properties, origin } => {
            transaction.execute(
                "INSERT INTO resources (path, kind, parent, target, properties, origin_file, version, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                 ON CONFLICT (path) DO UPDATE SET properties = excluded.properties, origin_file = excluded.origin_file,
                     version = excluded.version, updated_at = excluded.updated_at",
                params![
                    path.as_str(),
                    path.kind().as_str(),
                    path.parent(),
                    path.target(),
                    properties.to_string(),
                    origin.file(),
                    version,
                    at
                ],
            )?;
        }
        Write::Delete { path } => {
            transaction.execute("DELETE FROM resources WHERE path = ?1", params![path.as_str()])?;
        }
    }
    Ok(())
}
