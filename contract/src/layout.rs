//! Where each file lives inside the data directory. Both planes use these names, nothing else.

use std::path::{Path, PathBuf};

/// Directory of the data plane's runtime files (stats region, pid, reports, XDP socket).
pub const RUN_DIR: &str = "run";
/// Directory of saved snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// The admin socket served by control (`portcullis ctl` connects here). Mode 0600.
pub const ADMIN_SOCKET: &str = "admin.sock";
/// The snapshot channel served by control; the data plane connects here. Mode 0600.
pub const SNAPSHOT_SOCKET: &str = "snapshot.sock";
/// The last snapshot the data plane accepted, for cold starts while control is down.
pub const LAST_GOOD_SNAPSHOT: &str = "snapshots/last-good.snap";
/// The shared-memory stats region written by the data plane and read by control.
pub const STATS_REGION: &str = "run/stats.shm";
/// The data plane's process id, written at start.
pub const DATAPLANE_PID: &str = "run/dataplane.pid";

/// Backend endpoint health, written by the data plane's health thread (write, rename) for `ctl status`.
pub const UPSTREAMS_REPORT: &str = "run/upstreams.json";
/// The data plane's XDP socket (status, block, unblock); control forwards `ctl xdp` to it. Mode 0600.
pub const XDP_SOCKET: &str = "run/xdp.sock";
/// Blocked sources (`ctl block` and per-IP limit offenders), kept across data-plane restarts.
pub const XDP_BLOCKS: &str = "xdp-blocks.json";
/// Quota counters and their key seeds, written by the data plane about once a second (write,
/// fsync, rename) and read at its start, so that quotas outlive restarts. Mode 0600.
pub const QUOTA_COUNTERS: &str = "quota-counters.bin";

// Every file under a directory is named after its directory's constant.
const _: () = assert!(is_inside(LAST_GOOD_SNAPSHOT, SNAPSHOTS_DIR));
const _: () = assert!(is_inside(STATS_REGION, RUN_DIR));
const _: () = assert!(is_inside(DATAPLANE_PID, RUN_DIR));
const _: () = assert!(is_inside(UPSTREAMS_REPORT, RUN_DIR));
const _: () = assert!(is_inside(XDP_SOCKET, RUN_DIR));

/// Whether `path` is `directory/` followed by a name.
const fn is_inside(path: &str, directory: &str) -> bool {
    let (path, directory) = (path.as_bytes(), directory.as_bytes());
    if path.len() <= directory.len() + 1 || path[directory.len()] != b'/' {
        return false;
    }
    let mut at = 0;
    while at < directory.len() {
        if path[at] != directory[at] {
            return false;
        }
        at += 1;
    }
    true
}

/// Paths inside one data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directories both planes create (mode 0700): the root, [`SNAPSHOTS_DIR`], [`RUN_DIR`].
    pub fn directories(&self) -> [PathBuf; 3] {
        [self.root.clone(), self.root.join(SNAPSHOTS_DIR), self.root.join(RUN_DIR)]
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.root.join(ADMIN_SOCKET)
    }

    pub fn snapshot_socket(&self) -> PathBuf {
        self.root.join(SNAPSHOT_SOCKET)
    }

    pub fn last_good_snapshot(&self) -> PathBuf {
        self.root.join(LAST_GOOD_SNAPSHOT)
    }

    pub fn stats_region(&self) -> PathBuf {
        self.root.join(STATS_REGION)
    }

    pub fn dataplane_pid(&self) -> PathBuf {
        self.root.join(DATAPLANE_PID)
    }

    pub fn upstreams_report(&self) -> PathBuf {
        self.root.join(UPSTREAMS_REPORT)
    }

    pub fn xdp_socket(&self) -> PathBuf {
        self.root.join(XDP_SOCKET)
    }

    pub fn xdp_blocks(&self) -> PathBuf {
        self.root.join(XDP_BLOCKS)
    }

    pub fn quota_counters(&self) -> PathBuf {
        self.root.join(QUOTA_COUNTERS)
    }
}
