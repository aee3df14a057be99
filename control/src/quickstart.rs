//! The built-in demo config (`examples/quickstart/`, embedded in the binary), materialised into
//! `<data-dir>/quickstart/` with fresh random keys the first time `portcullis up` runs without --config.

use std::path::{Path, PathBuf};

/// Directory under the data directory that holds the materialised demo config.
pub const QUICKSTART_DIR: &str = "quickstart";
/// Subscription id of the demo subscription (its key is printed at start-up).
pub const DEMO_SUBSCRIPTION: &str = "demo";
/// The keys written in `examples/quickstart/subscriptions/demo.toml`, replaced when materialised.
const EXAMPLE_KEYS: [&str; 2] = ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"];

/// The embedded files, by path relative to the config directory.
pub const FILES: [(&str, &str); 5] = [
    ("gateway.toml", include_str!("../../examples/quickstart/gateway.toml")),
    ("apis/echo/api.toml", include_str!("../../examples/quickstart/apis/echo/api.toml")),
    ("subscriptions/demo.toml", include_str!("../../examples/quickstart/subscriptions/demo.toml")),
    ("apis/echo/policy.xml", include_str!("../../examples/quickstart/apis/echo/policy.xml")),
    ("products/starter/product.toml", include_str!("../../examples/quickstart/products/starter/product.toml")),
];

/// Why the demo config could not be written.
#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error("cannot write the demo config into {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no randomness for the demo keys: {0}")]
    Random(getrandom::Error),
}

/// `<data_dir>/quickstart/`, written first if it does not exist. Returns the path and whether it was new.
pub fn materialise(data_dir: &Path) -> Result<(PathBuf, bool), QuickstartError> {
    let target = data_dir.join(QUICKSTART_DIR);
    if target.exists() {
        return Ok((target, false));
    }
    // Written aside and renamed, so a crash never leaves a half-written config that later loads.
    let staging = data_dir.join(format!(".{QUICKSTART_DIR}.{}.tmp", std::process::id()));
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| QuickstartError::Write { path, source }
    };
    let _ = std::fs::remove_dir_all(&staging);
    for (relative, text) in FILES {
        let path = staging.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_error(parent))?;
        }
        let mut text = text.to_owned();
        for example in EXAMPLE_KEYS {
            text = text.replace(example, &random_key()?);
        }
        std::fs::write(&path, text).map_err(write_error(&path))?;
    }
    std::fs::rename(&staging, &target).map_err(write_error(&target))?;
    Ok((target, true))
}

/// A fresh key in APIM's format: 32 hex digits (128 random bits).
pub fn random_key() -> Result<String, QuickstartError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(QuickstartError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn materialises_once_with_fresh_keys() {
        let root = std::env::temp_dir().join(format!("portcullis-quickstart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let (dir, created) = materialise(&root).unwrap();
        assert!(created);
        let demo = std::fs::read_to_string(dir.join("subscriptions/demo.toml")).unwrap();
        for key in EXAMPLE_KEYS {
            assert!(!demo.contains(key), "the example key survived: {demo}");
        }
        std::fs::write(dir.join("gateway.toml"), "# edited").unwrap();
        let (again, created) = materialise(&root).unwrap();
        assert!(!created);
        assert_eq!(std::fs::read_to_string(again.join("gateway.toml")).unwrap(), "# edited");
        std::fs::write(root.join("file"), "").unwrap();
        assert!(matches!(materialise(&root.join("file")), Err(QuickstartError::Write { .. })));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn keys_are_32_hex_digits_and_differ() {
        let (a, b) = (random_key().unwrap(), random_key().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_example_keys_are_the_ones_in_the_example() {
        assert!(EXAMPLE_KEYS.iter().all(|key| FILES[2].1.contains(key)));
    }
}
