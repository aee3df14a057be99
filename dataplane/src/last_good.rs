//! The last-good snapshot on disk: read at start, replaced atomically after each applied snapshot.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use portcullis_contract::model::Config;
use portcullis_contract::snapshot::{self, Header, SnapshotError};

/// Why the last-good copy could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LastGoodError {
    #[error("last-good snapshot {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("last-good snapshot {path} is invalid: {source}")]
    Invalid { path: String, source: SnapshotError },
}

/// Reads and checks the last-good snapshot; `Ok(None)` when there is none.
pub fn load(path: &Path) -> Result<Option<(Header, Config)>, LastGoodError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LastGoodError::Io { path: path.display().to_string(), source }),
    };
    snapshot::decode(&bytes)
        .map(Some)
        .map_err(|source| LastGoodError::Invalid { path: path.display().to_string(), source })
}

/// Replaces the last-good snapshot with `bytes`: write aside, fsync, rename, fsync the directory,
/// so a crash leaves either the old or the new file, never a torn one. The file is 0600 whatever
/// a leftover staging file had: snapshots hold subscription keys and TLS private keys.
pub fn store(path: &Path, bytes: &[u8]) -> Result<(), LastGoodError> {
    let io_error = |source| LastGoodError::Io { path: path.display().to_string(), source };
    let staging = path.with_extension("snap.tmp");
    let mut file =
        OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&staging).map_err(io_error)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    drop(file);
    std::fs::rename(&staging, path).map_err(io_error)?;
    if let Some(directory) = path.parent() {
        File::open(directory).and_then(|dir| dir.sync_all()).map_err(io_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_invalid() {
        let dir = std::env::temp_dir().join(format!("portcullis-last-good-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("last-good.snap");
        assert!(load(&path).unwrap().is_none());
        let config = Config::empty("t");
        store(&path, &snapshot::encode(9, &config).unwrap()).unwrap();
        let (header, loaded) = load(&path).unwrap().unwrap();
        assert_eq!(header.generation, 9);
        assert_eq!(loaded, config);
        // Private, even when a leftover staging file was not.
        let staging = path.with_extension("snap.tmp");
        std::fs::write(&staging, b"").unwrap();
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o644)).unwrap();
        store(&path, &snapshot::encode(10, &config).unwrap()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(load(&path), Err(LastGoodError::Invalid { .. })));
        assert!(matches!(store(&dir.join("missing/x.snap"), b"x"), Err(LastGoodError::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
