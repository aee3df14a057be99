//! The request lifecycle: one connection's loop and the phases every request goes through.
//!
//! ```text
//! read head ─► inbound (route, operation, key, inbound policies)
//!          ─► backend (backend policies; forward-request calls the backend, then they resume)
//!          ─► outbound (outbound policies on the response head) ─► relay response body
//!     │ any error or policy answer
//!     └──► on-error (on-error policies, then the ONE place errors become APIM responses)
//!          ─► done (stats, always)
//! ```
//! The policy sections run in the VM ([`crate::policy`]) through [`policies`].

mod error;
mod exchange;
mod ip_limit;
mod policies;
mod relay;
mod tunnel;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use portcullis_contract::model::Limits;
use portcullis_contract::program::Section;
use portcullis_contract::stats::WorkerSlot;

use crate::http::error_response::{self, ErrorResponse};
use crate::http::forward::ClientConnection;
use crate::http::request::{self, HeadLimits, RequestHead};
use crate::http::response::ResponseHead;
use crate::http::{BodyFraming, HEAD_BYTES_INITIAL};
use crate::io::maybe_tls::MaybeTls;
use crate::io::{IdleRead, Park, ReadError, Stream, read_within};
use crate::policy::{RequestState, apply};
use crate::router::Route;
use crate::subscription::{self, KeyRejection};
use crate::worker::{LocalSnapshot, WorkerCtx};

pub(crate) use error::{ErrorSource, ProxyError};
use policies::{Matched, SectionEnd};

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

/// How reading the next request head ended.
enum HeadRead {
    /// Boxed (from the worker's spares): a head is kilobytes, and a connection future should
    /// not reserve room for one while it waits.
    Head(Box<RequestHead>),
    /// Nothing more to serve: clean close, idle timeout or drain.
    Closed,
    /// Idle for [`IDLE_PARK_AFTER_MS`] with no read in flight and no byte buffered: the
    /// connection may park. Carries when it went idle.
    Quiet(Instant),
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
}

/// Serves one client connection until it closes, fails, times out, the worker drains or it
/// parks. `resumed`: the connection comes from the parked registry and went idle then.
pub(crate) async fn serve_connection<S: Park>(
    worker: Rc<WorkerCtx<S>>,
    client: MaybeTls<S>,
    peer: SocketAddr,
    resumed: Option<Instant>,
) -> Ended {
    let mut idle =
        Idle { client, buf: Vec::with_capacity(IDLE_READ_BYTES), drain: worker.drain.subscribe(), idle_since: resumed };
    loop {
        let limits = worker.snapshot().map(|snapshot| snapshot.config.limits).unwrap_or_default();
        let head = match idle.read_head(&worker, &limits).await {
            HeadRead::Head(head) => head,
            HeadRead::Closed => {
                tracing::debug!("client connection closed while waiting for a request");
                break;
            }
            HeadRead::Quiet(idle_since) => match idle.park_in(&worker, peer, idle_since) {
                Ok(()) => return Ended::Parked,
                // Draining, or the reactor refused the fd: the connection stays in its task.
                Err(kept) => {
                    idle = kept;
                    continue;
                }
            },
            HeadRead::Failed(error) => {
                if let Some(response) = on_error(&error) {
                    let _ = idle.send_error(response).await;
                    record_response(worker.slot(), response.status);
                }
                break;
            }
        };
        let mut conn = Connection::open(idle, peer, &worker);
        // Boxed, with the connection moved in: the request's state machine (phases, policies,
        // relays) is large, and an idle keep-alive connection should not carry its space.
        let (keep_alive, conn) = Box::pin(async {
            let keep_alive = conn.serve_request(&worker, head).await;
            (keep_alive, conn)
        })
        .await;
        idle = conn.park(&worker);
        if !keep_alive || worker.drain.is_draining() {
            tracing::debug!("closing client connection after a request");
            break;
        }
    }
    idle.client.close().await;
    Ended::Closed
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

/// The on-error phase: turns an error into the client's response, if it can still get one.
/// Runs for every error of every phase, so later policies (`on-error` sections) plug in here.
fn on_error(error: &ProxyError) -> Option<ErrorResponse> {
    if error.source() != ErrorSource::Gateway {
        tracing::debug!(%error, source = ?error.source(), "request failed");
    }
    error.response()
}

/// What the client is answered after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Nothing: close the connection.
    None,
    /// One of the gateway's fixed APIM responses.
    Static(ErrorResponse),
    /// A policy's error (status), or the response a policy built.
    Policy(u16),
    Built,
}

impl Answer {
    fn of(error: &ProxyError) -> Self {
        match error {
            ProxyError::PolicyResponse => Answer::Built,
            ProxyError::Policy(failed) => Answer::Policy(failed.status()),
            other => other.response().map_or(Answer::None, Answer::Static),
        }
    }
}

/// Writes the `trace` policies' entries of one request to the log (target `portcullis::trace`).
fn log_traces(state: &RequestState, programs: &crate::policy::Programs, ctx: &RequestCtx) {
    for entry in state.traces() {
        let source = programs.literal(entry.source);
        let message = entry.message.resolve(programs);
        let request_id = ctx.matched.map(|matched| matched.request_id).unwrap_or_default();
        match entry.severity {
            portcullis_contract::program::Severity::Error => {
                tracing::error!(target: "portcullis::trace", source, request_id = %format_args!("{request_id:032x}"), "{message}");
            }
            portcullis_contract::program::Severity::Information => {
                tracing::info!(target: "portcullis::trace", source, request_id = %format_args!("{request_id:032x}"), "{message}");
            }
            portcullis_contract::program::Severity::Verbose => {
                tracing::debug!(target: "portcullis::trace", source, request_id = %format_args!("{request_id:032x}"), "{message}");
            }
        }
    }
    if state.traces_dropped() > 0 {
        tracing::warn!(target: "portcullis::trace", dropped = state.traces_dropped(), "trace entries over the per-request limit were dropped");
    }
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

impl<S: Park> Idle<S> {
    /// Reads until a complete request head is buffered at the start of `buf`.
    async fn read_head(&mut self, worker: &WorkerCtx<S>, limits: &Limits) -> HeadRead {
        let mut deadline: Option<Instant> = None;
        loop {
            if !self.buf.is_empty() {
                match request::parse_within(&self.buf, &HeadLimits::of(limits)) {
                    Ok(Some(head)) => return HeadRead::Head(HeadSlot(worker.spares.request_head()).fill(head)),
                    // Part of a head: read more, in reads of a useful size.
                    Ok(None) if self.buf.capacity() - self.buf.len() < HEAD_BYTES_INITIAL => {
                        self.buf.reserve(HEAD_BYTES_INITIAL);
                    }
                    Ok(None) => {}
                    Err(error) => return HeadRead::Failed(error.into()),
                }
            }
            let idle = self.buf.is_empty();
            if idle && worker.drain.is_draining() {
                return HeadRead::Closed;
            }
            let limit = if idle {
                let timeout = Duration::from_millis(u64::from(limits.keepalive_idle_timeout_ms));
                self.idle_since.map_or(timeout, |since| timeout.saturating_sub(since.elapsed()))
            } else {
                // The header timeout runs from the request's first byte.
                let deadline = *deadline.get_or_insert_with(|| {
                    Instant::now() + Duration::from_millis(u64::from(limits.request_header_timeout_ms))
                });
                deadline.saturating_duration_since(Instant::now())
            };
            let buf = std::mem::take(&mut self.buf);
            let read = tokio::select! {
                read = read_next(&mut self.client, buf, idle, limit) => Some(read),
                () = crate::drain::signalled(&mut self.drain), if idle => None,
            };
            let Some((result, buf)) = read else {
                return HeadRead::Closed;
            };
            self.buf = buf;
            match result {
                Ok(IdleRead::Read(0)) | Err(ReadError::Io(_)) => return HeadRead::Closed,
                Ok(IdleRead::Read(_)) => {}
                Ok(IdleRead::Quiet) => {
                    // The read began when the connection went idle, IDLE_PARK_AFTER_MS ago.
                    let park_after = Duration::from_millis(IDLE_PARK_AFTER_MS);
                    let now = Instant::now();
                    return HeadRead::Quiet(self.idle_since.unwrap_or(now.checked_sub(park_after).unwrap_or(now)));
                }
                Err(ReadError::TimedOut) if idle => return HeadRead::Closed,
                Err(ReadError::TimedOut) => return HeadRead::Failed(ProxyError::HeaderTimeout),
            }
        }
    }

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
            matched: None,
            status: 0,
            response_started: false,
            request_end: None,
            sent_continue: false,
            request_body_replaced: false,
            request_body_dropped: false,
            decoded_request_body: None,
            on_error_ran: false,
        };
        self.policy.reset();
        let outcome = match self.inbound(&mut ctx) {
            _ if self.over_ip_limit(&mut ctx, worker).await => Ok(()),
            Verdict::Respond(response) => Err(ProxyError::Rejected(response)),
            Verdict::Continue => match self.inbound_policies(&mut ctx).await {
                SectionEnd::Continue => self.forward(worker, &mut ctx).await,
                SectionEnd::Respond => Err(ProxyError::PolicyResponse),
                SectionEnd::Failed(error) => Err(error),
                // The compiler allows forward-request only in the backend section.
                SectionEnd::Forward(_) => Err(ProxyError::BackendUnavailable),
            },
        };
        if let Err(error) = outcome {
            self.answer_error(&mut ctx, &error, worker).await;
        }
        let keep_alive = self.done(worker, &ctx);
        self.request_heads.put_back(ctx.head);
        keep_alive
    }

    /// Inbound phase: runs once the head is parsed, before anything reaches the backend.
    /// Routes the request to an API and an operation and checks its subscription key; the
    /// operation's inbound policies run next (see [`Self::serve_request`]).
    fn inbound(&self, ctx: &mut RequestCtx) -> Verdict {
        let Some(snapshot) = ctx.snapshot.as_deref() else {
            return Verdict::Respond(error_response::NO_CONFIGURATION);
        };
        // A declared body over the limit is refused before anything is forwarded.
        if matches!(ctx.head.framing(), BodyFraming::Length(length) if length > snapshot.config.limits.request_body_bytes_max)
        {
            return Verdict::Respond(error_response::PAYLOAD_TOO_LARGE);
        }
        let target = ctx.head.target(&self.buf);
        let Some(route) = snapshot.router.route(target) else {
            return Verdict::Respond(error_response::NOT_FOUND);
        };
        ctx.route = Some(route);
        let Some(api) = snapshot.config.apis.get(route.api as usize) else {
            return Verdict::Respond(error_response::NOT_FOUND);
        };
        let path_end = crate::http::url::Target::parse(target).path().len();
        let path = target.get(route.remainder..path_end).unwrap_or(&[]);
        let found = snapshot
            .operations
            .get(route.api as usize)
            .and_then(|operations| operations.find(ctx.head.method(&self.buf), path, route.remainder));
        let Some(found) = found else {
            return Verdict::Respond(error_response::NOT_FOUND);
        };
        let mut matched = Matched {
            api: route.api,
            found,
            subscription: None,
            product: None,
            request_id: policies::next_request_id(),
            timestamp: chrono::Utc::now(),
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
            let checked = subscription::check(&snapshot.config, route.api, key);
            // From here on-error policies run for the key's errors too, as in APIM.
            ctx.matched = Some(matched);
            match checked {
                Ok(subscription) => matched.subscription = Some(subscription),
                // Without a key, an open product containing the API lets the request in (APIM).
                Err(KeyRejection::Missing) if subscription::product_of(&snapshot.config, route.api, None).is_some() => {
                }
                Err(KeyRejection::Missing) => return Verdict::Respond(error_response::MISSING_KEY),
                Err(KeyRejection::Invalid) => return Verdict::Respond(error_response::INVALID_KEY),
            }
        }
        matched.product = subscription::product_of(&snapshot.config, route.api, matched.subscription);
        ctx.matched = Some(matched);
        Verdict::Continue
    }

    /// The inbound policy section, after the request body is read in when a section uses it.
    async fn inbound_policies(&mut self, ctx: &mut RequestCtx) -> SectionEnd {
        let limits = ctx.snapshot.as_deref().map(|snapshot| snapshot.config.limits).unwrap_or_default();
        if let Err(error) = self.buffer_request_body(ctx, &limits).await {
            return SectionEnd::Failed(error);
        }
        self.run_section(ctx, Section::Inbound, false, None).await
    }

    /// The on-error phase: runs the operation's on-error policies (when an operation was
    /// matched), then sends the response the client gets, if it can still get one.
    async fn answer_error(&mut self, ctx: &mut RequestCtx, error: &ProxyError, worker: &WorkerCtx<S>) {
        if ctx.response_started {
            ctx.client_keep_alive = false;
            return;
        }
        if error.source() != ErrorSource::Gateway {
            tracing::debug!(%error, source = ?error.source(), "request failed");
        }
        let mut answer = Answer::of(error);
        if answer != Answer::Built
            && ctx.matched.is_some()
            && error.source() != ErrorSource::Client
            && !ctx.on_error_ran
        {
            self.record_last_error(error, error.section());
            match self.run_section(ctx, Section::OnError, false, None).await {
                SectionEnd::Respond => answer = Answer::Built,
                SectionEnd::Failed(ProxyError::Policy(failed)) => answer = Answer::Policy(failed.status()),
                SectionEnd::Continue | SectionEnd::Forward(_) | SectionEnd::Failed(_) => {}
            }
        }
        if answer == Answer::None {
            ctx.client_keep_alive = false;
            return;
        }
        if ctx.request_end.is_none() {
            // The body was not relayed: skip it if it is all here, else the connection cannot continue.
            ctx.request_end = relay::buffered_end(&self.buf, ctx.head.head_len(), ctx.head.framing());
        }
        let close = !ctx.client_keep_alive || ctx.request_end.is_none() || worker.drain.is_draining();
        ctx.client_keep_alive = !close;
        ctx.response_started = true;
        self.out.clear();
        ctx.status = match (answer, error) {
            (Answer::Built, _) => {
                let connection = if close { ClientConnection::Close } else { ClientConnection::KeepAlive };
                let programs = ctx.snapshot.as_deref().map(|snapshot| &snapshot.programs);
                match programs {
                    Some(programs)
                        if apply::write_built_response(
                            &mut self.out,
                            &self.policy,
                            programs,
                            connection,
                            ctx.is_head,
                        ) =>
                    {
                        self.policy.built_status().unwrap_or(200)
                    }
                    _ => {
                        error_response::INTERNAL_ERROR.write(&mut self.out, close);
                        error_response::INTERNAL_ERROR.status
                    }
                }
            }
            (Answer::Policy(_), ProxyError::Policy(failed)) => {
                apply::write_error_response(&mut self.out, failed, close);
                failed.status()
            }
            (Answer::Policy(status), _) => {
                // The on-error section itself failed: APIM answers with its error.
                let message = self.policy.last_error().map_or("Internal server error", |e| &*e.message).to_owned();
                error_response::write(&mut self.out, status, "Error", &message, close);
                status
            }
            (Answer::Static(response), _) => {
                response.write(&mut self.out, close);
                response.status
            }
            (Answer::None, _) => 0,
        };
        if self.write_out().await.is_err() {
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
            log_traces(&self.policy, &snapshot.programs, ctx);
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
