//! The Portcullis data plane: thread-per-core workers that route, check subscription keys and
//! proxy HTTP/1.1 to backends, configured by snapshots from control.
//!
//! Sans-IO cores (usable from benches and fuzzers): [`http`] (parsers, chunked scanner, URL
//! targets and percent-coding in [`http::url`], the heads we write), [`router`], [`subscription`],
//! [`counters`] (the limits' counter store). Around them: [`snapshot`] (the in-memory form and
//! its publication), [`channel`] (the thread that talks to control), [`worker`] and the
//! internal `io` seam (tokio-uring or epoll, and TLS over either), [`tls`] (the rustls server
//! configuration a snapshot carries), [`trace`] (W3C trace context, spans and their OTLP
//! exporter thread), the request lifecycle in `proxy`, and [`gateway`]
//! (start-up and draining).

pub mod cache;
pub mod channel;
pub mod counters;
pub mod drain;
pub mod gateway;
pub mod http;
pub mod identity;
mod io;
pub mod jwt;
pub mod last_good;
pub mod listener;
pub mod llm;
pub mod logging;
pub mod policy;
mod proxy;
pub mod quota_state;
pub mod router;
pub mod snapshot;
pub mod subscription;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod worker;
pub mod xdp;

pub use io::probe_uring;
