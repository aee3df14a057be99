//! The request lifecycle: one connection's loop and the phases every request goes through.
//!
//! ```text
//! read head ─► inbound (route, key) ─► backend (forward, response head) ─► outbound (response head)
//!     │              │ Respond               │ error                          │ Respond
//!     └──────────────┴──────────────► on-error (the ONE place errors become APIM responses)
//!                                   ─► relay response body ─► done (stats, always)
//! ```
//! Policies will plug into inbound, outbound and on-error; they return the same [`Verdict`].

mod error;
mod exchange;
mod ip_limit;
mod relay;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use portcullis_contract::model::Limits;
use portcullis_contract::stats::WorkerSlot;

use crate::http::HEAD_BYTES_INITIAL;
use crate::http::error_response::{self, ErrorResponse};
use crate::http::request::{self, RequestHead};
use crate::http::response::ResponseHead;
use crate::io::{ReadError, Stream, read_within};
use crate::router::Route;
use crate::subscription::{self, KeyRejection};
use crate::worker::{LocalSnapshot, WorkerCtx};

pub(crate) use error::{ErrorSource, ProxyError};

/// A phase's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on to the next phase.
    Continue,
    /// Stop and answer the client with this response (through on-error).
    Respond(ErrorResponse),
}

/// One client connection and its worker-owned buffers.
pub(crate) struct Connection<S: Stream> {
    pub(crate) client: S,
    pub(crate) peer: SocketAddr,
    /// Client bytes: the current request head (at offset 0), then whatever followed it.
    pub(crate) buf: Vec<u8>,
    /// Backend bytes: the current response head, then body bytes.
    pub(crate) upstream_buf: Vec<u8>,
    /// Heads we write (forwarded request, relayed response, error responses).
    pub(crate) out: Vec<u8>,
    /// Heap slots for the parsed heads, reused by every request on this connection.
    request_heads: HeadSlot<RequestHead>,
    pub(crate) response_heads: HeadSlot<ResponseHead>,
    drain: tokio::sync::watch::Receiver<bool>,
}

/// How reading the next request head ended.
enum HeadRead {
    Head(Box<RequestHead>),
    /// Nothing more to serve: clean close, idle timeout or drain.
    Closed,
    Failed(ProxyError),
}

/// A parsed head's home on the heap. Heads hold fixed arrays of header spans (kilobytes), so they
/// are boxed to keep connection futures small; the box is handed back after each request and
/// refilled by the next, so a keep-alive connection allocates once, not once per request.
#[derive(Debug)]
pub(crate) struct HeadSlot<T>(Option<Box<T>>);

impl<T> Default for HeadSlot<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> HeadSlot<T> {
    /// Boxes `head`, in the returned box when there is one.
    pub(crate) fn fill(&mut self, head: T) -> Box<T> {
        match self.0.take() {
            Some(mut spare) => {
                *spare = head;
                spare
            }
            None => Box::new(head),
        }
    }

    /// Returns a box for the next `fill`.
    pub(crate) fn put_back(&mut self, head: Box<T>) {
        self.0 = Some(head);
    }
}

/// One request's state, owned by the request (style item 3).
pub(crate) struct RequestCtx {
    pub(crate) head: Box<RequestHead>,
    pub(crate) snapshot: Option<Rc<LocalSnapshot>>,
    pub(crate) route: Option<Route>,
    pub(crate) is_head: bool,
    /// The client lets us keep the connection after this request.
    pub(crate) client_keep_alive: bool,
    /// Status of the response the client got (0: none yet).
    pub(crate) status: u16,
    /// Some response bytes reached the client: an error can no longer become a response.
    pub(crate) response_started: bool,
    /// Offset in the client buffer where the next request starts, once the body is consumed.
    pub(crate) request_end: Option<usize>,
    /// We answered `Expect: 100-continue` already.
    pub(crate) sent_continue: bool,
}

/// Serves one client connection until it closes, fails, times out or the worker drains.
pub(crate) async fn serve_connection<S: Stream>(worker: Rc<WorkerCtx<S>>, client: S, peer: SocketAddr) {
    let mut conn = Connection {
        client,
        peer,
        buf: Vec::with_capacity(HEAD_BYTES_INITIAL),
        upstream_buf: Vec::new(),
        out: Vec::new(),
        request_heads: HeadSlot::default(),
        response_heads: HeadSlot::default(),
        drain: worker.drain.subscribe(),
    };
    loop {
        let limits = worker.snapshot().map(|snapshot| snapshot.config.limits).unwrap_or_default();
        let head = match conn.read_head(&worker, &limits).await {
            HeadRead::Head(head) => head,
            HeadRead::Closed => {
                tracing::debug!("client connection closed while waiting for a request");
                break;
            }
            HeadRead::Failed(error) => {
                if let Some(response) = on_error(&error) {
                    let _ = conn.send_error(response, true).await;
                    record_response(worker.slot(), response.status);
                }
                break;
            }
        };
        if !conn.serve_request(&worker, head).await || worker.drain.is_draining() {
            tracing::debug!("closing client connection after a request");
            break;
        }
    }
    conn.client.shutdown();
}

/// The on-error phase: turns an error into the client's response, if it can still get one.
/// Runs for every error of every phase, so later policies (`on-error` sections) plug in here.
fn on_error(error: &ProxyError) -> Option<ErrorResponse> {
    if error.source() != ErrorSource::Gateway {
        tracing::debug!(%error, source = ?error.source(), "request failed");
    }
    error.response()
}

/// Counts one response sent.
fn record_response(slot: &WorkerSlot, status: u16) {
    WorkerSlot::add(&slot.requests, 1);
    match status {
        400..=499 => WorkerSlot::add(&slot.responses_4xx, 1),
        500..=599 => WorkerSlot::add(&slot.responses_5xx, 1),
        _ => {}
    }
}

impl<S: Stream> Connection<S> {
    /// Reads until a complete request head is buffered at the start of `buf`.
    async fn read_head(&mut self, worker: &WorkerCtx<S>, limits: &Limits) -> HeadRead {
        let mut deadline: Option<Instant> = None;
        loop {
            if !self.buf.is_empty() {
                match request::parse(&self.buf) {
                    Ok(Some(head)) => return HeadRead::Head(self.request_heads.fill(head)),
                    Ok(None) => {}
                    Err(error) => return HeadRead::Failed(error.into()),
                }
            }
            let idle = self.buf.is_empty();
            if idle && worker.drain.is_draining() {
                return HeadRead::Closed;
            }
            let limit = if idle {
                Duration::from_millis(u64::from(limits.keepalive_idle_timeout_ms))
            } else {
                // The header timeout runs from the request's first byte.
                let deadline = *deadline.get_or_insert_with(|| {
                    Instant::now() + Duration::from_millis(u64::from(limits.request_header_timeout_ms))
                });
                deadline.saturating_duration_since(Instant::now())
            };
            let buf = std::mem::take(&mut self.buf);
            let read = tokio::select! {
                read = read_within(&mut self.client, buf, limit) => Some(read),
                () = crate::drain::signalled(&mut self.drain), if idle => None,
            };
            let Some((result, buf)) = read else {
                return HeadRead::Closed;
            };
            self.buf = buf;
            match result {
                Ok(0) | Err(ReadError::Io(_)) => return HeadRead::Closed,
                Ok(_) => {}
                Err(ReadError::TimedOut) if idle => return HeadRead::Closed,
                Err(ReadError::TimedOut) => return HeadRead::Failed(ProxyError::HeaderTimeout),
            }
        }
    }

    /// Writes a gateway response to the client.
    async fn send_error(&mut self, response: ErrorResponse, close: bool) -> std::io::Result<()> {
        self.out.clear();
        response.write(&mut self.out, close);
        self.write_out().await
    }

    /// Writes `out` to the client.
    pub(crate) async fn write_out(&mut self) -> std::io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        let (result, out) = self.client.write_range(out, 0..len).await;
        self.out = out;
        result
    }

    /// Runs one request through every phase. Returns whether the connection may serve another.
    async fn serve_request(&mut self, worker: &WorkerCtx<S>, head: Box<RequestHead>) -> bool {
        let slot = worker.slot();
        WorkerSlot::add(&slot.in_flight, 1);
        let snapshot = worker.snapshot();
        let mut ctx = RequestCtx {
            is_head: head.is_head(&self.buf),
            client_keep_alive: head.keep_alive(),
            head,
            snapshot,
            route: None,
            status: 0,
            response_started: false,
            request_end: None,
            sent_continue: false,
        };
        let outcome = match self.inbound(&mut ctx) {
            _ if self.over_ip_limit(&mut ctx, worker).await => Ok(()),
            Verdict::Respond(response) => Err(ProxyError::Rejected(response)),
            Verdict::Continue => self.forward(worker, &mut ctx).await,
        };
        if let Err(error) = outcome {
            self.answer_error(&mut ctx, &error, worker).await;
        }
        let keep_alive = self.done(worker, &ctx);
        self.request_heads.put_back(ctx.head);
        keep_alive
    }

    /// Inbound phase: runs once the head is parsed, before anything reaches the backend.
    /// Routes the request and checks its subscription key (inbound policies will run here).
    fn inbound(&self, ctx: &mut RequestCtx) -> Verdict {
        let Some(snapshot) = ctx.snapshot.as_deref() else {
            return Verdict::Respond(error_response::NO_CONFIGURATION);
        };
        let Some(route) = snapshot.router.route(ctx.head.target(&self.buf)) else {
            return Verdict::Respond(error_response::NOT_FOUND);
        };
        ctx.route = Some(route);
        let Some(api) = snapshot.config.apis.get(route.api as usize) else {
            return Verdict::Respond(error_response::NOT_FOUND);
        };
        if api.subscription_required {
            let mut scratch = [0u8; portcullis_contract::key_index::KEY_BYTES_MAX];
            let key = subscription::find_key(
                &ctx.head,
                &self.buf,
                &api.subscription_key_header,
                &api.subscription_key_query,
                &mut scratch,
            );
            match subscription::check(&snapshot.config, route.api, key) {
                Ok(_) => {}
                Err(KeyRejection::Missing) => return Verdict::Respond(error_response::MISSING_KEY),
                Err(KeyRejection::Invalid) => return Verdict::Respond(error_response::INVALID_KEY),
            }
        }
        Verdict::Continue
    }

    /// Sends the on-error phase's response, if the client can still get one.
    async fn answer_error(&mut self, ctx: &mut RequestCtx, error: &ProxyError, worker: &WorkerCtx<S>) {
        let Some(response) = on_error(error).filter(|_| !ctx.response_started) else {
            ctx.client_keep_alive = false;
            return;
        };
        if ctx.request_end.is_none() {
            // The body was not relayed: skip it if it is all here, else the connection cannot continue.
            ctx.request_end = relay::buffered_end(&self.buf, ctx.head.head_len(), ctx.head.framing());
        }
        let close = !ctx.client_keep_alive || ctx.request_end.is_none() || worker.drain.is_draining();
        ctx.client_keep_alive = !close;
        ctx.response_started = true;
        ctx.status = response.status;
        if self.send_error(response, close).await.is_err() {
            ctx.client_keep_alive = false;
        }
    }

    /// Done phase: always runs last. Updates counters and drops the consumed request bytes.
    fn done(&mut self, worker: &WorkerCtx<S>, ctx: &RequestCtx) -> bool {
        let slot = worker.slot();
        if ctx.status != 0 {
            record_response(slot, ctx.status);
        }
        if let Some(snapshot) = ctx.snapshot.as_deref() {
            slot.generation.store(snapshot.generation, std::sync::atomic::Ordering::Relaxed);
        }
        WorkerSlot::sub(&slot.in_flight, 1);
        match ctx.request_end {
            Some(end) if ctx.client_keep_alive && end <= self.buf.len() => {
                self.buf.drain(..end);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HeadSlot;

    #[test]
    fn head_slot_reuses_its_allocation() {
        let mut slot = HeadSlot::<[u64; 64]>::default();
        let first = slot.fill([1; 64]);
        let address = std::ptr::from_ref(&*first);
        slot.put_back(first);
        let second = slot.fill([2; 64]);
        assert!(std::ptr::eq(address, &*second), "the second head lands in the first one's box");
        assert_eq!(second[0], 2);
    }
}
