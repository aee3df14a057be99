//! The portal's own rows in the management store: sessions and the signing key.
//!
//! The portal opens its own connection to the store's file (as analytics does; WAL lets both
//! write). A session row holds the SHA-256 of its cookie's secret, never the secret, so a copy
//! of the store opens no session.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// How long a session lasts from sign-in, in milliseconds (then the visitor signs in again).
pub const SESSION_LIFETIME_MS: u64 = 12 * 60 * 60 * 1000;
/// Random bytes in a session's secret (256 bits).
const SECRET_BYTES: usize = 32;
/// How long a writer waits for another connection's transaction.
const BUSY_TIMEOUT_MS: u64 = 5_000;
/// The signing key's name in `portal_secrets`.
const SIGNING_KEY: &str = "signing-key";

/// What can go wrong with the portal's rows.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the management store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the management store's schema cannot be migrated: {0}")]
    Migrate(#[from] rusqlite_migration::Error),
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
}

/// A signed-in session, as found by its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie's secret (hex): the row's key, and what CSRF tokens are bound to.
    pub hash: String,
    pub user: String,
}

/// Sessions and the signing key.
#[derive(Debug)]
pub struct Sessions {
    connection: Mutex<Connection>,
    key: Vec<u8>,
}

impl Sessions {
    /// Opens the store's file at `path` (migrating it as needed) and reads or makes the signing key.
    pub fn open(path: &Path) -> Result<Self, SessionError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
        connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        Self::with(connection)
    }

    /// A store of its own in memory (unit tests).
    pub fn in_memory() -> Result<Self, SessionError> {
        Self::with(Connection::open_in_memory()?)
    }

    fn with(mut connection: Connection) -> Result<Self, SessionError> {
        crate::store::schema::migrations().to_latest(&mut connection)?;
        let fresh = random_hex(SECRET_BYTES)?;
        // First writer wins: two processes opening a new store agree on one key.
        connection.execute(
            "INSERT INTO portal_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![SIGNING_KEY, fresh],
        )?;
        let key: String =
            connection.query_row("SELECT value FROM portal_secrets WHERE name = ?1", params![SIGNING_KEY], |row| {
                row.get(0)
            })?;
        Ok(Self { connection: Mutex::new(connection), key: key.into_bytes() })
    }

    /// The key tickets and CSRF tokens are signed with.
    pub fn signing_key(&self) -> &[u8] {
        &self.key
    }

    /// Starts a session for `user`; returns the cookie's secret (shown to the browser only).
    pub fn create(&self, user: &str, now_ms: u64) -> Result<String, SessionError> {
        let secret = random_hex(SECRET_BYTES)?;
        let connection = self.lock();
        connection.execute("DELETE FROM portal_sessions WHERE expires_ms <= ?1", params![now_ms as i64])?;
        connection.execute(
            "INSERT INTO portal_sessions (hash, user_id, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            params![hash(&secret), user, now_ms as i64, (now_ms + SESSION_LIFETIME_MS) as i64],
        )?;
        Ok(secret)
    }

    /// The unexpired session of a cookie's `secret`.
    pub fn find(&self, secret: &str, now_ms: u64) -> Result<Option<Session>, SessionError> {
        let hash = hash(secret);
        let user = self
            .lock()
            .query_row(
                "SELECT user_id FROM portal_sessions WHERE hash = ?1 AND expires_ms > ?2",
                params![hash, now_ms as i64],
                |row| row.get::<_, String>(0),
            )
            .optional()?;
        Ok(user.map(|user| Session { hash, user }))
    }

    /// Ends one session (sign-out).
    pub fn end(&self, hash: &str) -> Result<(), SessionError> {
        self.lock().execute("DELETE FROM portal_sessions WHERE hash = ?1", params![hash])?;
        Ok(())
    }

    /// Ends every session of `user` (password reset, blocked or deleted account).
    pub fn end_all(&self, user: &str) -> Result<(), SessionError> {
        self.lock().execute("DELETE FROM portal_sessions WHERE user_id = ?1", params![user])?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// SHA-256 of `secret`, hex.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, SessionError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(SessionError::Random)?;
    Ok(hex(&buffer))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_secret_until_they_expire_or_end() {
        let sessions = Sessions::in_memory().unwrap();
        let secret = sessions.create("u1", 1_000).unwrap();
        let found = sessions.find(&secret, 2_000).unwrap().unwrap();
        assert_eq!(found.user, "u1");
        assert_ne!(found.hash, secret, "the store keeps a hash, not the secret");
        assert_eq!(sessions.find("not the secret", 2_000).unwrap(), None);
        assert_eq!(sessions.find(&secret, 1_000 + SESSION_LIFETIME_MS).unwrap(), None);
        sessions.end(&found.hash).unwrap();
        assert_eq!(sessions.find(&secret, 2_000).unwrap(), None);
        let (a, b) = (sessions.create("u2", 0).unwrap(), sessions.create("u2", 0).unwrap());
        sessions.end_all("u2").unwrap();
        assert!(sessions.find(&a, 1).unwrap().is_none() && sessions.find(&b, 1).unwrap().is_none());
    }

    #[test]
    fn the_signing_key_is_made_once_per_store() {
        let dir = std::env::temp_dir().join(format!("portcullis-portal-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.db");
        let first = Sessions::open(&path).unwrap().signing_key().to_vec();
        assert_eq!(first.len(), SECRET_BYTES * 2);
        assert_eq!(Sessions::open(&path).unwrap().signing_key(), first.as_slice());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
