//! One client connection: its state while idle and while serving a request, and the buffers it
//! borrows from its worker. The phases a request goes through, in order, are in [`lifecycle`];
//! the policy sections run in the VM ([`crate::policy`]) through [`policies`].

mod answer;
mod cache;
mod error;
mod exchange;
mod ip_limit;
mod lifecycle;
mod observe;
pub(crate) mod outbound;
pub(crate) mod policies;
mod relay;
mod target;
mod tunnel;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::http::error_response::ErrorResponse;
use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;
use crate::io::maybe_tls::MaybeTls;
use crate::io::{IdleRead, Park, ReadError, Stream, read_within};
use crate::policy::RequestState;
use crate::router::Route;
use crate::worker::ctx::{LocalSnapshot, WorkerCtx};

pub(crate) use error::{ErrorSource, ProxyError};
pub(crate) use lifecycle::{Verdict, admit, serve_connection};
use policies::Matched;

/// One client connection and its worker-owned buffers.
pub(crate) struct Connection<S: Stream> {
    /// The client: plain TCP or TLS over `S` (backend connections are `MaybeTls<S>` too).
    pub(crate) client: MaybeTls<S>,
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
    /// Policy state of the current request; reset, not reallocated, between requests.
    pub(crate) policy: Box<RequestState>,
    drain: tokio::sync::watch::Receiver<bool>,
}

/// A connection between requests: its socket, one small read buffer and the drain signal.
/// Everything else a request needs is borrowed from the worker when its head has arrived
/// ([`Connection::open`]) and handed back when it is answered ([`Connection::park`]), so an
/// idle keep-alive connection costs little more than its pending read.
///
/// A connection that stays idle for [`IDLE_PARK_AFTER_MS`] leaves even that: its read is
/// withdrawn, the buffer freed (a TLS connection's ciphertext buffers too) and the connection
/// parked in the worker's registry ([`crate::worker::parked`]) until it is readable again.
struct Idle<S> {
    client: MaybeTls<S>,
    buf: Vec<u8>,
    drain: tokio::sync::watch::Receiver<bool>,
    /// When a connection woken from the parked registry went idle (its keep-alive timeout runs
    /// from then); `None`: when its current read began.
    idle_since: Option<Instant>,
}

/// A connection waiting for its next request reads into a buffer this small (a pending
/// io_uring read owns its buffer for as long as the client is silent): typical API request heads
/// fit; a larger head grows it.
pub(crate) const IDLE_READ_BYTES: usize = 512;

/// A keep-alive connection that has had no byte of a next request for this long is parked:
/// it leaves its task (about 1.6 KB) and its [`IDLE_READ_BYTES`] buffer and waits in its worker's
/// registry as a small entry watched by tokio's reactor (`worker::parked`), the way event-loop
/// servers keep idle connections. Why 250 ms: a client that keeps a connection busy sends its next
/// request within milliseconds (a pool under load, a pipeline, a page's burst of API calls), so
/// busy connections never park and their requests cost exactly what they did; a connection quiet
/// for a quarter of a second is mostly quiet for seconds (a pool between bursts, a person between
/// clicks). Parking and waking cost a few microseconds (an io_uring cancel and an epoll_ctl pair
/// on io_uring, a task spawned on wake), so a client that sends one request every few hundred
/// milliseconds pays them at most once per request. A TLS connection parks the same way once rustls
/// holds no plaintext and no part of a record; its rustls state (keys, and the 4 KiB deframer
/// buffer rustls keeps) stays in the entry, its ciphertext buffers are freed.
pub(crate) const IDLE_PARK_AFTER_MS: u64 = 250;

// A connection parks before the default keep-alive timeout closes it.
const _: () = assert!(IDLE_PARK_AFTER_MS < portcullis_contract::model::KEEPALIVE_IDLE_TIMEOUT_MS_DEFAULT as u64);

/// The read-head phase's verdict ([`lifecycle`], phase 2): how reading the next head ended.
enum HeadRead {
    /// Boxed (from the worker's spares): a head is kilobytes, and a connection future should
    /// not reserve room for one while it waits.
    Head(Box<RequestHead>),
    /// Nothing more to serve: clean close, idle timeout or drain.
    Closed,
    /// Idle for [`IDLE_PARK_AFTER_MS`] with no read in flight and no byte buffered: the
    /// connection may park. Carries when it went idle.
    Quiet(Instant),
    /// A head the gateway refuses, or one that did not arrive in time: answered, then closed.
    Failed(ProxyError),
}

/// How a connection's task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The connection is closed: its worker counts it out.
    Closed,
    /// The connection is parked in its worker's registry: still open, still counted.
    Parked,
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
    /// The operation, once matched: from then on the operation's policies run.
    pub(crate) matched: Option<Matched>,
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
    /// A policy replaced the request body: the replacement is sent, the client's is skipped.
    pub(crate) request_body_replaced: bool,
    /// A followed redirect turned the request into a `GET`: no body is sent, the client's is skipped.
    pub(crate) request_body_dropped: bool,
    /// A chunked request body buffered for the policies, decoded (its data without the framing).
    pub(crate) decoded_request_body: Option<Vec<u8>>,
    /// The on-error section ran already (after `fail-on-error-status-code`); it runs once.
    pub(crate) on_error_ran: bool,
    /// `cache-lookup` missed: where `cache-store` keeps the response.
    pub(crate) cache_store: Option<Box<cache::PendingStore>>,
    /// The response came from the response cache (the backend was not called): for the access log.
    pub(crate) cache_hit: bool,
    /// The request's cache events, for the worker's stats slot.
    pub(crate) cache_counts: cache::CacheCounts,
    /// Body bytes relayed to the backend and to the client, as on the wire (`None`: not relayed;
    /// a bandwidth quota then counts the declared length).
    pub(crate) request_body_bytes: Option<u64>,
    pub(crate) response_body_bytes: Option<u64>,
    /// Bytes of the response head the client got (of the whole answer when the gateway wrote it).
    pub(crate) response_head_bytes: u64,
    /// When the head was read: for the request's total time and the access log's timestamp.
    pub(crate) started: Instant,
    pub(crate) started_at: std::time::SystemTime,
    /// The backend's status (0: not called, or no answer) and the time until its head arrived.
    pub(crate) backend_status: u16,
    pub(crate) backend_us: Option<u64>,
    /// The request's W3C trace context (continued from the client's `traceparent` or new), the
    /// gateway's span ids, and its timings when sampled (docs/observability.md "Traces").
    pub(crate) trace: crate::trace::RequestTrace,
}

impl RequestCtx {
    /// A request whose head was just read from `buf`, served on `snapshot`.
    fn new(head: Box<RequestHead>, snapshot: Option<Rc<LocalSnapshot>>, buf: &[u8]) -> Self {
        let tracing = snapshot.as_deref().and_then(|snapshot| snapshot.config.observability.tracing.as_ref());
        let trace = crate::trace::RequestTrace::begin(&head, buf, tracing);
        RequestCtx {
            trace,
            is_head: head.is_head(buf),
            client_keep_alive: head.keep_alive(),
            head,
            snapshot,
            route: None,
            matched: None,
            status: 0,
            response_started: false,
            request_end: None,
            sent_continue: false,
            request_body_replaced: false,
            request_body_dropped: false,
            decoded_request_body: None,
            on_error_ran: false,
            cache_store: None,
            cache_hit: false,
            request_body_bytes: None,
            response_body_bytes: None,
            response_head_bytes: 0,
            started: Instant::now(),
            started_at: std::time::SystemTime::now(),
            backend_status: 0,
            backend_us: None,
            cache_counts: cache::CacheCounts::default(),
        }
    }

    /// The request's bytes: its head, and its body as relayed (chunked with its framing) or else
    /// as declared (`Content-Length`: a body buffered and answered by policies, or not sent).
    pub(crate) fn request_bytes(&self) -> u64 {
        let declared = match self.head.framing() {
            crate::http::BodyFraming::Length(length) => length,
            _ => 0,
        };
        self.head.head_len() as u64 + self.request_body_bytes.unwrap_or(declared)
    }

    /// The request's trace id as a number (the access log prints it as 32 hex digits).
    pub(crate) fn trace_id(&self) -> u128 {
        u128::from_be_bytes(self.trace.trace_id)
    }
}

/// The next read of a request head. An idle connection's read is withdrawn after
/// [`IDLE_PARK_AFTER_MS`] so that it can park; the bytes of a head already begun are awaited until
/// `limit` (its header timeout).
async fn read_next<S: Park>(
    client: &mut MaybeTls<S>,
    buf: Vec<u8>,
    idle: bool,
    limit: Duration,
) -> (Result<IdleRead, ReadError>, Vec<u8>) {
    let park_after = Duration::from_millis(IDLE_PARK_AFTER_MS);
    if idle && limit > park_after {
        client.read_idle(buf, park_after, limit).await
    } else {
        let (result, buf) = read_within(client, buf, limit).await;
        (result.map(IdleRead::Read), buf)
    }
}

impl<S: Park> Idle<S> {
    /// Parks the connection in the worker's registry; gives it back when that is not possible
    /// (a draining worker, a reactor that refused the fd).
    fn park_in(self, worker: &WorkerCtx<S>, peer: SocketAddr, idle_since: Instant) -> Result<(), Self> {
        let Idle { client, buf, drain, .. } = self;
        match worker.parked.park(client, peer, idle_since, &worker.drain) {
            Ok(()) => Ok(()),
            Err(client) => Err(Idle { client, buf, drain, idle_since: Some(idle_since) }),
        }
    }

    /// Answers a request whose head could not be read, then the connection closes.
    async fn send_error(&mut self, response: ErrorResponse) -> std::io::Result<()> {
        let mut out = Vec::new();
        response.write(&mut out, true);
        let len = out.len();
        self.client.write_range(out, 0..len).await.0
    }
}

impl<S: Stream> Connection<S> {
    /// A connection serving a request: the idle parts plus what it borrows from the worker.
    fn open(idle: Idle<S>, peer: SocketAddr, worker: &WorkerCtx<S>) -> Self {
        let spares = &worker.spares;
        Connection {
            client: idle.client,
            peer,
            buf: idle.buf,
            upstream_buf: spares.buffer(),
            out: spares.buffer(),
            request_heads: HeadSlot::default(),
            response_heads: HeadSlot(spares.response_head()),
            policy: spares.policy_state(),
            drain: idle.drain,
        }
    }

    /// After a request: hands what it borrowed back to the worker, and shrinks an empty read
    /// buffer to [`IDLE_READ_BYTES`].
    fn park(mut self, worker: &WorkerCtx<S>) -> Idle<S> {
        // Releases what the request held (limit-concurrency slots among them) now, not when
        // the state is next used.
        self.policy.reset();
        worker.spares.put_back(self.request_heads.0, self.response_heads.0, self.policy, [self.out, self.upstream_buf]);
        let mut buf = self.buf;
        if buf.is_empty() && buf.capacity() > IDLE_READ_BYTES {
            buf = Vec::with_capacity(IDLE_READ_BYTES);
        }
        Idle { client: self.client, buf, drain: self.drain, idle_since: None }
    }

    /// Writes `out` to the client.
    pub(crate) async fn write_out(&mut self) -> std::io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        let (result, out) = self.client.write_range(out, 0..len).await;
        self.out = out;
        result
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
