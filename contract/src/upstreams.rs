//! The backend health report the data plane writes (`run/upstreams.json`, replaced atomically
//! about once a second by its health thread) and `portcullis ctl status` reads.

use serde::{Deserialize, Serialize};

/// Every named backend of the generation the data plane serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamsReport {
    /// The snapshot generation the report describes.
    pub generation: u64,
    pub backends: Vec<BackendHealth>,
}

/// One named backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendHealth {
    pub id: String,
    /// `round-robin`, `weighted` or `least-requests`.
    pub load_balancing: String,
    pub endpoints: Vec<EndpointHealth>,
}

/// One endpoint of a named backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHealth {
    /// As configured (`host:port`).
    pub address: String,
    /// The host resolved when the snapshot was loaded (`false`: it gets no requests).
    pub resolved: bool,
    /// The active checks' verdict (`None`: the backend has no active checks).
    pub active_healthy: Option<bool>,
    /// Workers whose circuit breaker has ejected it (open or half-open).
    pub ejected_on_workers: u32,
}
