//! The policy VM: runs the bytecode control compiled from APIM policy documents. Sans-IO.
//!
//! - [`load`]: a snapshot's programs, verified again and with their regular expressions
//!   compiled, once per snapshot on the snapshot thread ([`Programs`]).
//! - [`view`]: what the proxy lends one run: the request (and response) heads in their
//!   buffers, the route's API and operation, the peer address ([`View`]).
//! - [`state`]: what persists across sections and suspensions of one request, owned:
//!   variables, request and response edits, the response being built ([`RequestState`]).
//! - [`value`]: the runtime values (C# semantics) and their operators.
//! - [`vm`]: the interpreter: [`run`] a section, [`resume`] it after `forward-request` or a
//!   retry wait; both end in an [`Exit`].
//! - [`apply`]: writes the heads the edits describe (forwarded request, relayed response,
//!   built response).
//! - [`concurrency`]: the `limit-concurrency` counters shared by every worker.
//! - [`limits`]: the `rate-limit` / `quota` counters shared by every worker; [`after_response`]
//!   moves the counters a section left for after the response.
//!
//! Per request the proxy calls: `run(Inbound)` → on `Continue`, write the forwarded head with
//! [`apply::write_request_head`] → `run(Backend)` (which suspends with [`Exit::Forward`]; call
//! the backend, then [`resume`]) → `run(Outbound)` → [`apply::write_response_head`]; on any
//! [`Exit::Error`] `run(OnError)`; on [`Exit::Respond`] [`apply::write_built_response`].

#![forbid(unsafe_code)]

pub mod apply;
mod builtins;
pub mod cache_call;
pub mod concurrency;
mod error;
pub mod limits;
pub mod load;
#[doc(hidden)]
pub mod sample;
pub mod send_call;
pub mod state;
pub mod transform;
pub mod value;
pub mod view;
pub mod vm;

pub use cache_call::{CacheCall, CachedValue, DownstreamCaching, ResponseLookup, StoreMark};
pub use concurrency::{ConcurrencyGuard, ConcurrencyLimits};
pub use error::{Fault, LastError, PolicyError};
pub use limits::RateLimits;
pub use load::{LoadError, LoadedProgram, Programs};
pub use send_call::{CallFailure, CallMode, OutgoingRequest, SENT_RESPONSE_BYTES_MAX, SendCall, SentResponse};
pub use state::RequestState;
pub use view::{Caller, MatchedParam, ResponseView, View};
pub use vm::limits::{after_response, count_bandwidth};
pub(crate) use vm::statements::parse_backend_url;
pub use vm::token_limit::charge_tokens;
pub use vm::{Exit, Forward, resume, run};

#[cfg(test)]
mod tests;
