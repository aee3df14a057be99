//! Harness for the end-to-end tests: builds and starts the real binaries, speaks HTTP/1.1 to
//! them over real sockets, and cleans up every process and temporary directory it made.
//!
//! Tests live in `tests/tests/`; each starts its own gateway on an ephemeral port with its own
//! data directory, so they run in parallel without sharing anything.

pub mod bins;
pub mod gateway;
pub mod http;
pub mod tempdir;

pub use gateway::{Gateway, GatewayOptions};
pub use tempdir::TempDir;

/// The I/O backends every end-to-end scenario runs on.
pub const IO_BACKENDS: [&str; 2] = ["uring", "epoll"];
