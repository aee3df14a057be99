//! The admin socket: a Unix stream socket (mode 0600) speaking newline-delimited JSON, one
//! request line → one response line. Documented in `docs/admin-socket.md`.
//!
//! - [`protocol`]: the request and response types and their parsing.
//! - [`status`]: the status object (publisher state + the shared stats region) and its table rendering.
//! - [`server`]: the server `portcullis up` runs.
//! - [`xdp`]: the XDP commands, forwarded to the data plane's `run/xdp.sock`.

pub mod protocol;
pub mod server;
pub mod status;
pub mod xdp;

pub use protocol::{Request, Response};
pub use status::Status;
