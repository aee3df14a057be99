//! The Portcullis management plane: APIM's resource model in a real store.
//!
//! - [`resource`]: resource paths as APIM names them (`/apis/{id}`, `/apis/{id};rev=2/operations/{op}`,
//!   `/products/{pid}/apis/{aid}` ...), the kind of each, and which resource it belongs to.
//! - [`model`]: the typed `properties` of each kind, in APIM's JSON shape.
//! - [`revisions`]: making a revision (a copy of the current one) and releasing one (a swap).
//! - [`store`]: the store interface and its SQLite implementation (WAL, foreign keys, versioned
//!   migrations); every change is one transaction.
//! - [`apiops`]: APIOps extracts (the layout Azure's extractor writes) imported and exported.
//! - [`openapi`]: OpenAPI 2.0/3.0/3.1 import (APIM's mapping and re-import) and export.
//! - [`service`]: the resources in memory and the one path every change takes (ownership,
//!   would-be compile, commit, publish).
//! - [`analytics`]: APIM's usage reports: per-minute and hourly rollups of the data plane's
//!   telemetry, latency histograms, recent requests, and the live window of `ctl top`.
//! - [`portal`]: the developer portal (catalogue, accounts, subscriptions) over the same service.
//! - [`api`]: the management REST API (axum) over the service; [`tokens`]: its access tokens;
//!   [`seed_builtins`]: the administrator and the system groups every service has.
#![forbid(unsafe_code)]

pub mod analytics;
pub mod api;
pub mod apiops;
pub mod builtins;
pub mod model;
pub mod openapi;
pub mod portal;
pub mod resource;
pub mod revisions;
pub mod service;
pub mod store;
pub mod tokens;

pub use builtins::seed_builtins;
