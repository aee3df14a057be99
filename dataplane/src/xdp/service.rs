//! The XDP threads: `xdp-sync` follows the published snapshot (a new generation's `[xdp]`
//! rules reach the maps within [`SYNC_INTERVAL_MS`]), installs the blocks workers asked for
//! (within the same interval) and does the housekeeping; `xdp-admin` serves `run/xdp.sock`, to
//! which control forwards `ctl xdp status`, `ctl block`, `ctl unblock`.
//!
//! Protocol on `xdp.sock`: one JSON object per line each way, as on the admin socket:
//! `{"command":"xdp-status"}`, `{"command":"block","prefix":"192.0.2.0/24","seconds":60}`
//! (`seconds` absent: until unblocked), `{"command":"unblock","prefix":"192.0.2.0/24"}`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_contract::xdp::{BLOCK_SECONDS_MAX, IpPrefix};
use serde_json::{Value, json};

use super::XdpPlane;
use super::blocks::BlockOrigin;
use crate::snapshot::SnapshotCell;

/// How often the sync thread looks for a new snapshot generation.
pub const SYNC_INTERVAL_MS: u64 = 50;
/// How often expired blocks are removed and the block table saved.
pub const HOUSEKEEPING_INTERVAL_MS: u64 = 1_000;
/// Longest request line on `xdp.sock`.
pub const REQUEST_BYTES_MAX: usize = 4_096;
/// A silent client is dropped after this long.
pub const CLIENT_TIMEOUT_MS: u64 = 5_000;

/// Starts both threads.
pub fn spawn(plane: Arc<XdpPlane>, cell: Arc<SnapshotCell>, socket: PathBuf) -> std::io::Result<()> {
    let sync_plane = Arc::clone(&plane);
    std::thread::Builder::new().name("xdp-sync".into()).spawn(move || sync(&sync_plane, &cell))?;
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new().name("xdp-admin".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            serve(&plane, stream);
        }
    })?;
    Ok(())
}

fn sync(plane: &XdpPlane, cell: &SnapshotCell) {
    let mut applied = u64::MAX;
    let mut housekeeping = Instant::now();
    loop {
        let generation = cell.generation();
        if generation != applied {
            if let Some(snapshot) = cell.load() {
                plane.apply(snapshot.generation, &snapshot.config.xdp);
                tracing::debug!(generation = snapshot.generation, "XDP rules applied");
                applied = snapshot.generation;
            }
        }
        plane.apply_pending_blocks();
        if housekeeping.elapsed() >= Duration::from_millis(HOUSEKEEPING_INTERVAL_MS) {
            plane.tick();
            housekeeping = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(SYNC_INTERVAL_MS));
    }
}

fn serve(plane: &XdpPlane, stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(CLIENT_TIMEOUT_MS)));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match std::io::Read::take(&mut reader, REQUEST_BYTES_MAX as u64 + 1).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) if n > REQUEST_BYTES_MAX => {
                let _ = writeln!(writer, "{}", json!({"ok": false, "error": "request line too long"}));
                return;
            }
            Ok(_) => {}
        }
        let response = answer(plane, line.trim());
        if writeln!(writer, "{response}").is_err() {
            return;
        }
    }
}

/// One request line → one response object.
pub fn answer(plane: &XdpPlane, line: &str) -> Value {
    let request: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(error) => return json!({"ok": false, "error": format!("bad request: {error}")}),
    };
    let prefix = || -> Result<IpPrefix, String> {
        let text = request.get("prefix").and_then(Value::as_str).ok_or("bad request: missing \"prefix\"")?;
        IpPrefix::parse(text).map_err(|error| error.to_string())
    };
    match request.get("command").and_then(Value::as_str) {
        Some("xdp-status") => json!({"ok": true, "xdp": plane.status()}),
        Some("block") => {
            let prefix = match prefix() {
                Ok(prefix) => prefix,
                Err(error) => return json!({"ok": false, "error": error}),
            };
            let seconds = match request.get("seconds") {
                None | Some(Value::Null) => None,
                Some(value) => match value.as_u64().filter(|s| (1..=u64::from(BLOCK_SECONDS_MAX)).contains(s)) {
                    Some(seconds) => Some(Duration::from_secs(seconds)),
                    None => {
                        return json!({"ok": false, "error": format!("\"seconds\" must be 1 to {BLOCK_SECONDS_MAX}")});
                    }
                },
            };
            match plane.block(prefix, seconds, BlockOrigin::Operator) {
                Ok(()) => {
                    plane.save_blocks();
                    json!({"ok": true, "prefix": prefix.to_string(), "seconds": seconds.map(|d| d.as_secs())})
                }
                Err(error) => json!({"ok": false, "error": error.to_string()}),
            }
        }
        Some("unblock") => match prefix().map(|prefix| (prefix, plane.unblock(prefix))) {
            Ok((prefix, Ok(removed))) => {
                plane.save_blocks();
                json!({"ok": true, "prefix": prefix.to_string(), "removed": removed})
            }
            Ok((_, Err(error))) => json!({"ok": false, "error": error.to_string()}),
            Err(error) => json!({"ok": false, "error": error}),
        },
        _ => json!({"ok": false, "error": "bad request: unknown command"}),
    }
}
