//! The per-IP request limit, the first of the built-in limits (phase 5a of the lifecycle): over it,
//! the client gets APIM's 429 with `Retry-After` (through on-error, like every gateway answer) and
//! is blocked (at the NIC when the XDP pre-filter is attached).
//!
//! A `rate-limit-by-key` whose key is the client's address (`@(context.Request.IpAddress)`) blocks
//! its offenders the same way, through [`crate::xdp::XdpPlane::block_offender`] after the inbound
//! section (`RequestState::take_offender`).

use crate::http::error_response;
use crate::io::Stream;
use crate::proxy::{Connection, RequestCtx, Verdict};
use crate::worker::ctx::WorkerCtx;

impl<S: Stream> Connection<S> {
    /// `Respond` with a 429 when the client is over the per-IP limit (which counts this request).
    pub(crate) fn ip_limit(&self, worker: &WorkerCtx<S>, ctx: &RequestCtx) -> Verdict {
        let Some(snapshot) = ctx.snapshot.as_deref() else { return Verdict::Continue(()) };
        match worker.xdp.limit_request(self.peer.ip(), &snapshot.config.xdp) {
            None => Verdict::Continue(()),
            Some(retry_after_seconds) => Verdict::Respond(error_response::too_many_requests(retry_after_seconds)),
        }
    }
}
