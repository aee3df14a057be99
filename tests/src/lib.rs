//! Harness for the end-to-end tests: builds and starts the real binaries, speaks HTTP/1.1 to
//! them over real sockets, and cleans up every process and temporary directory it made.
//!
//! Tests live in `tests/tests/`; each starts its own gateway (or data plane alone) on an ephemeral
//! port with its own data directory, so they run in parallel without sharing anything. Scenarios
//! run on both I/O backends through [`on_both_io_backends!`].

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness: a failed setup step fails the test")]

pub mod backend;
pub mod bins;
pub mod dataplane;
pub mod gateway;
pub mod http;
pub mod io_backends;
pub mod jwt;
pub mod management;
pub mod netns;
pub mod otlp;
pub mod packet;
pub mod portal;
pub mod redis;
pub mod smtp;
pub mod snapshot;
pub mod tempdir;
pub mod wait;

pub use dataplane::DataPlane;
pub use gateway::{Gateway, GatewayOptions};
pub use tempdir::TempDir;
pub use wait::eventually;
