//! Upgraded connections (`101 Switching Protocols`: WebSocket and others): after the 101, the
//! gateway copies bytes both ways until both sides are done, without looking at them.
//!
//! Each direction is its own loop (read, then write what was read), so backpressure holds per
//! direction; both run at once through the streams' shared operations. End of stream on one
//! side is passed on as a half-close; an error or [`TUNNEL_IDLE_TIMEOUT_MS`] without a byte in
//! a direction closes both sides.

use std::time::Duration;

use crate::io::Stream;

/// A direction that moves no byte for 5 minutes ends the tunnel (Envoy's default stream idle
/// timeout): long enough for WebSocket pings, short enough to free abandoned connections.
pub(crate) const TUNNEL_IDLE_TIMEOUT_MS: u64 = 300_000;
/// Bytes read per read in each direction.
pub(crate) const TUNNEL_READ_BYTES: usize = 16 * 1024;

/// Bytes moved by a tunnel, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Moved {
    pub(crate) client_to_backend: u64,
    pub(crate) backend_to_client: u64,
}

/// Runs the tunnel. `early_client` and `early_backend` are bytes each side sent after its head
/// that are already read (they go first). Returns when both directions have ended.
pub(crate) async fn tunnel<C: Stream, B: Stream>(
    client: &C,
    backend: &B,
    early_client: &[u8],
    early_backend: &[u8],
) -> Moved {
    let idle = Duration::from_millis(TUNNEL_IDLE_TIMEOUT_MS);
    let (client_to_backend, backend_to_client) =
        tokio::join!(copy(client, backend, early_client, idle), copy(backend, client, early_backend, idle));
    Moved { client_to_backend, backend_to_client }
}

/// Copies `from` → `to` until end of stream (then half-closes `to`) or a failure (then closes
/// both, which also ends the other direction). Returns the bytes copied.
async fn copy<F: Stream, T: Stream>(from: &F, to: &T, early: &[u8], idle: Duration) -> u64 {
    let mut buf = Vec::with_capacity(TUNNEL_READ_BYTES.max(early.len()));
    buf.extend_from_slice(early);
    let mut moved = 0u64;
    loop {
        if !buf.is_empty() {
            let len = buf.len();
            let (result, returned) = to.write_shared(buf, 0..len).await;
            buf = returned;
            if result.is_err() {
                break;
            }
            moved += len as u64;
            buf.clear();
        }
        buf.reserve(TUNNEL_READ_BYTES);
        match tokio::time::timeout(idle, from.read_shared(buf)).await {
            Ok((Ok(0), _)) => {
                to.shutdown_write().await;
                return moved;
            }
            Ok((Ok(_), returned)) => buf = returned,
            // A failed or idle direction ends the whole tunnel.
            Ok((Err(_), _)) | Err(_) => break,
        }
    }
    from.shutdown();
    to.shutdown();
    moved
}
