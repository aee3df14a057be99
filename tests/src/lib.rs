//! Harness for the end-to-end tests: builds and starts the real binaries, speaks HTTP/1.1 to
//! them over real sockets, and cleans up every process and temporary directory it made.
//!
//! Tests live in `tests/tests/`; each starts its own gateway on an ephemeral port with its own
//! data directory, so they run in parallel without sharing anything.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness: a failed setup step fails the test")]

pub mod backend;
pub mod bins;
pub mod gateway;
pub mod http;
pub mod netns;
pub mod packet;
pub mod tempdir;

pub use gateway::{Gateway, GatewayOptions};
pub use tempdir::TempDir;

/// Declares one test per I/O backend for a scenario `fn(io: &str)`: `<name>::epoll` and
/// `<name>::uring`. The io_uring variant is reported as ignored, with the reason, where the
/// build machine refuses io_uring (see `build.rs`).
#[macro_export]
macro_rules! on_both_io_backends {
    ($name:ident, $scenario:path) => {
        mod $name {
            #[test]
            fn epoll() {
                $scenario("epoll");
            }

            #[test]
            #[cfg_attr(
                no_io_uring,
                ignore = "io_uring is unavailable on this machine (io_uring_setup failed at build time)"
            )]
            fn uring() {
                $scenario("uring");
            }
        }
    };
}
