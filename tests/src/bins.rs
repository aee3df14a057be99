//! Finds the real binaries, building them first so the tests never run stale ones.
//!
//! `cargo test` builds a package's own binaries for its integration tests, but these tests
//! live in their own package; so the first call runs `cargo build` for the two binaries with
//! the profile this test was built with. `PORTCULLIS_BIN_DIR` points at prebuilt binaries instead.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding `portcullis` and `portcullis-dataplane`.
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PORTCULLIS_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // The test executable lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("current exe");
        // Tests live in <target>/<profile>/deps/, binaries of this package (xdp-bench) in <profile>/.
        let parent = exe.parent().expect("the executable's directory");
        let profile_dir = if parent.file_name().is_some_and(|name| name == "deps") {
            parent.parent().expect("target/<profile>/deps layout").to_path_buf()
        } else {
            parent.to_path_buf()
        };
        let release = profile_dir.file_name().is_some_and(|name| name == "release");
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "--bins", "-p", "portcullis-control", "-p", "portcullis-dataplane"])
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build for the binaries under test");
        assert!(status.success(), "cargo build of the binaries under test failed");
        profile_dir
    })
    .clone()
}

pub fn portcullis() -> PathBuf {
    bin_dir().join("portcullis")
}

pub fn dataplane() -> PathBuf {
    bin_dir().join("portcullis-dataplane")
}

/// The repository root (for `examples/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}
