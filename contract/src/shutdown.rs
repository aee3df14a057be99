//! Shutting the data plane down, as both planes assume it: on SIGTERM it stops accepting and
//! drains in-flight requests for at most the drain timeout (`--drain-timeout-ms` of
//! `portcullis-dataplane`, and of `portcullis up`, which passes it on and waits that long plus a
//! grace period before SIGKILL).

/// The drain timeout when neither command line sets one.
pub const DRAIN_TIMEOUT_MS_DEFAULT: u64 = 10_000;
