//! The Portcullis control plane: config loading and compiling, snapshot publishing, supervision
//! of the data plane and the echo backend, the admin socket and `portcullis ctl`.
//!
//! - [`config`]: the config directory → `contract::model::Config`, with file:line:col diagnostics.
//! - [`quickstart`]: the built-in demo config, materialised into the data directory.
//! - [`data_dir`]: which data directory a command uses.
//! - [`management`]: the management store's compiler and `apply` (the config directory into the store).
//! - [`echo`]: the echo backend (`portcullis echo-backend`), a real HTTP/1.1 server.
//! - [`publisher`]: the snapshot channel server: publishes generations, tracks the data plane's answers.
//! - [`admin`]: the admin socket protocol, server and status.
//! - [`metrics`]: the Prometheus families (telemetry batches folded in, scrape-time readings);
//!   [`ops`]: the ops listener serving them with `/healthz` and `/readyz`.
//! - [`up`]: `portcullis up`: starts, supervises and stops everything.
//! - [`ctl`]: `portcullis ctl`: the admin socket's client.
//! - [`policy`]: `portcullis policy check|explain`, over the `portcullis-policy` compiler.
//! - [`cli`]: the command line's verbs and options; [`stdout`]: printing results (a closed pipe
//!   ends a command quietly).
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod data_dir;
pub mod echo;
pub mod management;
pub mod metrics;
pub mod openid;
pub mod ops;
pub mod policy;
pub mod portal;
pub mod publisher;
pub mod quickstart;
pub mod stdout;
pub mod up;
