//! The contract between the planes: everything control and data plane must agree on, byte for byte.
//!
//! - [`model`]: the configuration as the data plane sees it (APIs, subscriptions, limits).
//! - [`key_index`]: the subscription-key hash index built by control and probed by the data plane.
//! - [`snapshot`]: the sealed snapshot file: header (magic, version, generation, length, checksum) and payload.
//! - [`stats`]: the shared-memory stats region, one slot per worker, written only by that worker.
//! - [`channel`]: the messages on the snapshot channel (a `SOCK_SEQPACKET` Unix socket carrying memfds).
//! - [`jwt`]: compiled `validate-jwt` rules and the OpenID keys control fetched for them.
//! - [`layout`]: where each file lives inside the data directory.
//! - [`shutdown`]: the drain timeout's default, which both command lines show.
//! - [`tls`]: the TLS settings a snapshot carries (certificate chains and keys as DER, client auth).
//! - [`xdp`]: the kernel-plane rules a snapshot carries (prefix lists, buckets, per-IP limit).
//! - [`upstreams`]: the backend health report the data plane writes for `ctl status`.
//!
//! Neither process links the other's runtime: this crate has no threads, no async runtime and no
//! policy of its own. Its I/O is the few system calls both sides must make the same way:
//! creating, sealing and mapping the snapshot memfd (`snapshot`), creating and mapping the stats
//! region (`stats`), and the snapshot channel's socket (`channel`: bind, accept, connect,
//! blocking send and receive with a descriptor attached).

pub mod channel;
pub mod identity;
pub mod jwt;
pub mod key_index;
pub mod layout;
pub mod liquid;
pub mod model;
pub mod program;
pub mod shutdown;
pub mod snapshot;
pub mod stats;
pub mod telemetry;
pub mod tls;
pub mod upstreams;
pub mod xdp;
