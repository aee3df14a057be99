//! Which data directory a command uses, and creating it (mode 0700: it holds keys and sockets).

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use portcullis_contract::layout::DataDir;

/// Environment variable naming the data directory (wins over the XDG and HOME defaults).
pub const DATA_DIR_ENV: &str = "PORTCULLIS_DATA_DIR";
/// Owner-only: the directory holds subscription keys, snapshots and the admin socket.
pub const DATA_DIR_MODE: u32 = 0o700;

/// Why no data directory could be chosen or created.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("no data directory: set {DATA_DIR_ENV}, XDG_STATE_HOME or HOME, or pass --data-dir")]
    NoDefault,
    #[error("cannot create the data directory {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
}

/// The data directory: `explicit`, else `$PORTCULLIS_DATA_DIR`, else `$XDG_STATE_HOME/portcullis`,
/// else `$HOME/.local/state/portcullis`. Made absolute, not created.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf, DataDirError> {
    resolve_with(explicit, |name| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from))
}

fn resolve_with(explicit: Option<&Path>, env: impl Fn(&str) -> Option<PathBuf>) -> Result<PathBuf, DataDirError> {
    let chosen = match explicit {
        Some(path) => path.to_path_buf(),
        None => env(DATA_DIR_ENV)
            .or_else(|| env("XDG_STATE_HOME").map(|state| state.join("portcullis")))
            .or_else(|| env("HOME").map(|home| home.join(".local/state/portcullis")))
            .ok_or(DataDirError::NoDefault)?,
    };
    Ok(std::path::absolute(&chosen).unwrap_or(chosen))
}

/// Creates the data directory and its `snapshots/` and `run/` with mode 0700 where they are created.
pub fn prepare(root: &Path) -> Result<DataDir, DataDirError> {
    let data_dir = DataDir::new(root);
    for dir in data_dir.directories() {
        let created = !dir.exists();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DATA_DIR_MODE)
            .create(&dir)
            .map_err(|source| DataDirError::Create { path: dir.clone(), source })?;
        if created {
            // The umask may have narrowed the mode further; never widen an existing directory.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(DATA_DIR_MODE))
                .map_err(|source| DataDirError::Create { path: dir.clone(), source })?;
        }
    }
    Ok(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| PathBuf::from(v))
        };
        let all: &[(&str, &str)] = &[(DATA_DIR_ENV, "/d"), ("XDG_STATE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(resolve_with(Some(Path::new("/e")), env(all)).unwrap(), Path::new("/e"));
        assert_eq!(resolve_with(None, env(all)).unwrap(), Path::new("/d"));
        assert_eq!(resolve_with(None, env(&all[1..])).unwrap(), Path::new("/x/portcullis"));
        assert_eq!(resolve_with(None, env(&all[2..])).unwrap(), Path::new("/h/.local/state/portcullis"));
        assert!(matches!(resolve_with(None, env(&[])), Err(DataDirError::NoDefault)));
    }

    #[test]
    fn prepare_creates_private_directories_and_reports_failures() {
        let root = std::env::temp_dir().join(format!("portcullis-data-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data_dir = prepare(&root).unwrap();
        assert!(data_dir.stats_region().parent().unwrap().is_dir());
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, DATA_DIR_MODE);
        std::fs::write(root.join("file"), "").unwrap();
        assert!(matches!(prepare(&root.join("file")), Err(DataDirError::Create { .. })));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
