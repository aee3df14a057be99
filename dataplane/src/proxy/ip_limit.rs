//! The per-IP request limit at the start of the inbound phase: over it, the client gets APIM's
//! 429 with `Retry-After` and is blocked (at the NIC when the XDP pre-filter is attached).
//!
//! When `rate-limit-by-key` with `counter-key="@(context.Request.IpAddress)"` lands in the
//! policy engine, its 429 path calls [`crate::xdp::XdpPlane::block_offender`] the same way.

use crate::io::Stream;
use crate::proxy::{Connection, RequestCtx, relay};
use crate::worker::WorkerCtx;
use crate::xdp::limit::write_too_many_requests;

impl<S: Stream> Connection<S> {
    /// Answers 429 when the client is over the per-IP limit; `true` when it did.
    pub(crate) async fn over_ip_limit(&mut self, ctx: &mut RequestCtx, worker: &WorkerCtx<S>) -> bool {
        let Some(snapshot) = ctx.snapshot.as_deref() else { return false };
        let Some(retry_after) = worker.xdp.limit_request(self.peer.ip(), &snapshot.config.xdp) else {
            return false;
        };
        ctx.request_end = relay::buffered_end(&self.buf, ctx.head.head_len(), ctx.head.framing());
        let close = !ctx.client_keep_alive || ctx.request_end.is_none() || worker.drain.is_draining();
        ctx.client_keep_alive = !close;
        ctx.response_started = true;
        ctx.status = 429;
        self.out.clear();
        write_too_many_requests(&mut self.out, retry_after, close);
        if self.write_out().await.is_err() {
            ctx.client_keep_alive = false;
        }
        true
    }
}
