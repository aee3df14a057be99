//! The request lifecycle, in one place: every phase a connection and its requests go through, in
//! the order they run, each returning a [`Verdict`] (pingora's `ProxyHttp`, Envoy's filter
//! statuses).
//!
//! ```text
//!  1  admit              [xdp] rules, connections-per-worker-max ────────────► Close
//!  2  read head          limits, header timeout; quiet ─► park; error ──────► answer, close
//!  3  route              no config 503, body over limit 413, no API/operation 404 ──┐
//!  4  authenticate       subscription key 401                                       │
//!  5a built-in limits    per-IP 429, counts every request                           │
//!  5b inbound policies   the inbound section (VM): validate-jwt, validate-client-   │ Respond
//!                        certificate, rate limits and quotas where they stand;      │
//!                        cache-lookup: a hit ─► Done                                │
//!                                                                                   │ or Fail
//!  6  backend            backend section, forward-request, retries, redirects       │
//!  7  outbound           outbound section, relay (cache-store tees it) or tunnel    │
//!  8  on-error           on-error section, then the one APIM answer ◄───────────────┘
//!  9  done (always)      counters, telemetry (access log, metrics), span to the exporter,
//!                        keep-alive or close
//! ```
//!
//! Phases 3 to 7 run in [`Connection::phases`]; the first that does not continue ends them, and
//! every request then goes through on-error (when it ended in `Respond` or `Fail`) and done. Where
//! the phases of later features go is named beside the phase they join: the access log in 9.
//! Identity (JWT, client certificates), rate limits and quotas are inbound policies, run in 5b
//! where the document puts them; counters an `increment-condition` moves after the response move
//! after 7 (or in 9). The response cache's lookup runs inside 5b (where the section's
//! `cache-lookup` stands) and its store in 7 (docs/cache.md).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use portcullis_contract::model::Limits;
use portcullis_contract::program::Section;
use portcullis_contract::stats::WorkerSlot;

use crate::http::error_response::{self, ErrorResponse};
use crate::http::request::{self, HeadLimits, RequestHead};
use crate::http::{BodyFraming, HEAD_BYTES_INITIAL};
use crate::io::maybe_tls::MaybeTls;
use crate::io::{IdleRead, Park, ReadError, Stream};
use crate::proxy::answer::Answer;
use crate::proxy::cache::Lookup;
use crate::proxy::exchange::Exchange;
use crate::proxy::policies::{self, Matched, SectionEnd};
use crate::proxy::{
    Connection, Ended, ErrorSource, HeadRead, HeadSlot, IDLE_PARK_AFTER_MS, IDLE_READ_BYTES, Idle, ProxyError,
    RequestCtx, read_next, relay,
};
use crate::subscription::{self, KeyRejection};
use crate::trace;
use crate::worker::ctx::WorkerCtx;

/// What a phase decided: the lifecycle's one verdict type. `T` is what a phase hands on when it
/// continues (the backend phase hands outbound the backend's response; the others nothing). Small
/// by design: the largest variant is a [`ProxyError`].
#[must_use]
#[derive(Debug)]
pub(crate) enum Verdict<T = ()> {
    /// Go on to the next phase.
    Continue(T),
    /// Stop: the gateway answers with one of its own APIM responses (503, 413, 404, 401, 429).
    /// On-error runs first, as for any error.
    Respond(ErrorResponse),
    /// Stop: the request failed, or a policy answered ([`ProxyError::PolicyResponse`]). On-error
    /// decides what the client gets.
    Fail(ProxyError),
    /// Stop: the client has its response (relayed, or a tunnel that ended); only done is left.
    Done,
    /// Close the connection without a response: a refused connection (admit), or one that cannot
    /// serve another request (done).
    Close,
}

impl<T> Verdict<T> {
    /// What the phase handed on when it continues; otherwise the verdict that ends the request.
    pub(crate) fn into_continue<U>(self) -> Result<T, Verdict<U>> {
        match self {
            Verdict::Continue(value) => Ok(value),
            Verdict::Respond(response) => Err(Verdict::Respond(response)),
            Verdict::Fail(error) => Err(Verdict::Fail(error)),
            Verdict::Done => Err(Verdict::Done),
            Verdict::Close => Err(Verdict::Close),
        }
    }
}

impl<T> From<Result<(), ProxyError>> for Verdict<T> {
    /// A phase that sends the response itself: `Ok` once it is out.
    fn from(result: Result<(), ProxyError>) -> Self {
        match result {
            Ok(()) => Verdict::Done,
            Err(error) => Verdict::Fail(error),
        }
    }
}

/// Phase 1, admit: runs when a listener accepts a connection, before a byte of it is read (and, on
/// the TLS listener, before the handshake). Refuses (`Close`) a source the `[xdp]` rules refuse in
/// user space (the kernel plane drops most of them before `accept`; counted there) and a connection
/// past `connections-per-worker-max`. Everything else continues to read head.
pub(crate) fn admit<S>(worker: &WorkerCtx<S>, peer: SocketAddr) -> Verdict {
    if !worker.xdp.admit(peer.ip()) {
        return Verdict::Close;
    }
    WorkerSlot::add(&worker.slot().connections_accepted, 1);
    let connections_max =
        worker.snapshot().map_or(portcullis_contract::model::CONNECTIONS_PER_WORKER_MAX_DEFAULT, |snapshot| {
            snapshot.config.limits.connections_per_worker_max
        });
    if worker.connections() >= connections_max as usize {
        return Verdict::Close;
    }
    Verdict::Continue(())
}

/// Serves one admitted connection until it closes, fails, times out, the worker drains or it parks:
/// reads each request's head (2), runs the request (3 to 9), and loops while the connection is kept
/// alive. `resumed`: the connection comes from the parked registry and went idle then.
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
                if let Some(response) = on_head_error(&error) {
                    let _ = idle.send_error(response).await;
                    record_response(worker.slot(), response.status);
                }
                break;
            }
        };
        let mut conn = Connection::open(idle, peer, &worker);
        // Boxed, with the connection moved in: the request's state machine (phases, policies,
        // relays) is large, and an idle keep-alive connection should not carry its space.
        let (next, conn) = Box::pin(async {
            let next = conn.serve_request(&worker, head).await;
            (next, conn)
        })
        .await;
        idle = conn.park(&worker);
        if matches!(next, Verdict::Close) || worker.drain.is_draining() {
            tracing::debug!("closing client connection after a request");
            break;
        }
    }
    idle.client.close().await;
    Ended::Closed
}

impl<S: Park> Idle<S> {
    /// Phase 2, read head: runs on an admitted connection, and again after each request it keeps
    /// alive. Reads until a complete request head is buffered at the start of `buf` (the buffer
    /// starts at [`IDLE_READ_BYTES`] and grows by [`HEAD_BYTES_INITIAL`] up to the head limit). Its
    /// verdict is a [`HeadRead`]: a head, a quiet connection that may park, a close (clean close,
    /// idle timeout, drain) or an error answered by [`on_head_error`].
    pub(super) async fn read_head(&mut self, worker: &WorkerCtx<S>, limits: &Limits) -> HeadRead {
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
}

/// On-error for a head that could not be read (there is no request, operation or policy yet): the
/// client's response, if it can still get one; the connection then closes.
fn on_head_error(error: &ProxyError) -> Option<ErrorResponse> {
    if error.source() != ErrorSource::Gateway {
        tracing::debug!(%error, source = ?error.source(), "request failed");
    }
    error.response()
}

impl<S: Stream> Connection<S> {
    /// Runs one request through every phase: 3 to 7, then on-error when they stopped with an error
    /// or a gateway response, then done. Its verdict says whether the connection serves another
    /// request (`Continue`) or closes (`Close`).
    pub(super) async fn serve_request(&mut self, worker: &WorkerCtx<S>, head: Box<RequestHead>) -> Verdict {
        WorkerSlot::add(&worker.slot().in_flight, 1);
        let mut ctx = RequestCtx::new(head, worker.snapshot(), &self.buf);
        self.policy.reset();
        match self.phases(worker, &mut ctx).await {
            Verdict::Continue(()) | Verdict::Done | Verdict::Close => {}
            Verdict::Respond(response) => self.on_error(worker, &mut ctx, &ProxyError::Rejected(response)).await,
            Verdict::Fail(error) => self.on_error(worker, &mut ctx, &error).await,
        }
        let next = self.done(worker, &ctx);
        self.request_heads.put_back(ctx.head);
        next
    }

    /// Phases 3 to 7 in order; the first that does not continue ends them.
    async fn phases(&mut self, worker: &WorkerCtx<S>, ctx: &mut RequestCtx) -> Verdict {
        let decided = match self.route(ctx) {
            Verdict::Continue(()) => self.authenticate(ctx),
            stop => stop,
        };
        // The built-in limits count every request, whatever route and authenticate decided (a
        // flood of 404s or of bad keys is limited too); over a limit, their 429 is the answer.
        if let Err(stop) = self.built_in_limits(worker, ctx).into_continue::<()>() {
            return stop;
        }
        if let Err(stop) = decided.into_continue::<()>() {
            return stop;
        }
        let inbound = self.inbound(worker, ctx).await;
        if let Some(seconds) = self.policy.take_offender() {
            // A rate limit by the client's address refused it: its next packets die at the NIC.
            worker.xdp.block_offender(self.peer.ip(), seconds);
        }
        // The response cache's lookup runs inside inbound, where its cache-lookup stands; a hit
        // answers there (`Done`), without the backend.
        if let Err(stop) = inbound.into_continue::<()>() {
            return stop;
        }
        let exchange = match self.backend(worker, ctx).await.into_continue() {
            Ok(exchange) => exchange,
            Err(stop) => return stop,
        };
        self.outbound(worker, ctx, exchange).await
    }

    /// Phase 3, route: runs once the head is parsed, before anything reaches the backend. Refuses a
    /// declared body over `request-body-bytes-max` (413), then finds the API (longest whole-segment
    /// prefix, then the version and `;rev=` revision asked for) and its operation (method and URL
    /// template); none is a 404, and no configuration yet a 503. From a matched operation on, on-error runs its policies.
    fn route(&self, ctx: &mut RequestCtx) -> Verdict {
        let Some(snapshot) = ctx.snapshot.as_deref() else {
            return Verdict::Respond(error_response::NO_CONFIGURATION);
        };
        // A declared body over the limit is refused before anything is forwarded.
        if matches!(ctx.head.framing(), BodyFraming::Length(length) if length > snapshot.config.limits.request_body_bytes_max)
        {
            return Verdict::Respond(error_response::PAYLOAD_TOO_LARGE);
        }
        let target = ctx.head.target(&self.buf);
        let head = &ctx.head;
        let Some(route) = snapshot.router.route_with(target, |name| head.header(&self.buf, name)) else {
            return Verdict::Respond(error_response::NOT_FOUND);
        };
        ctx.route = Some(route);
        if snapshot.config.apis.get(route.api as usize).is_none() {
            return Verdict::Respond(error_response::NOT_FOUND);
        }
        let path_end = crate::http::url::Target::parse(target).path().len();
        let path = target.get(route.remainder..path_end).unwrap_or(&[]);
        let found = snapshot
            .operations
            .get(route.api as usize)
            .and_then(|operations| operations.find(ctx.head.method(&self.buf), path, route.remainder));
        let Some(found) = found else {
            return Verdict::Respond(error_response::NOT_FOUND);
        };
        ctx.matched = Some(Matched {
            api: route.api,
            found,
            subscription: None,
            product: None,
            request_id: policies::next_request_id(),
            timestamp: chrono::Utc::now(),
        });
        Verdict::Continue(())
    }

    /// Phase 4, authenticate: runs once route matched an operation. Checks the subscription key
    /// (header, else query) when the API requires one: missing or invalid is a 401 (an open product
    /// containing the API lets a request without a key in, as APIM does); then finds the product
    /// the request comes through.
    ///
    /// `validate-jwt` and `validate-client-certificate` are not a phase: they are inbound policies
    /// (5b), so that a document's order (a JWT checked before or after a `set-variable`) holds.
    fn authenticate(&self, ctx: &mut RequestCtx) -> Verdict {
        // Route continues only with all three set.
        let (Some(snapshot), Some(route), Some(mut matched)) = (ctx.snapshot.as_deref(), ctx.route, ctx.matched) else {
            return Verdict::Respond(error_response::NOT_FOUND);
        };
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
        Verdict::Continue(())
    }

    /// Phase 5a, built-in limits: run for every request with a configuration, after route and
    /// authenticate whatever they decided, before any inbound policy. The per-IP request limit
    /// (`[xdp] per-ip-requests-per-second`): over it, a 429 with `Retry-After`, and the client is
    /// blocked (at the NIC when the XDP pre-filter is attached).
    ///
    /// Slot: the gateway's rate limits and quotas by subscription or key (next issue) go here,
    /// after the per-IP limit, each answering its 429 or 403 as another `Respond`.
    fn built_in_limits(&self, worker: &WorkerCtx<S>, ctx: &RequestCtx) -> Verdict {
        self.ip_limit(worker, ctx)
    }

    /// Phase 5b, inbound policies: run once the request passed 3 to 5a. Reads the request body in
    /// first when a section of the operation reads or replaces it (or may send it twice), then runs
    /// the operation's inbound section in the VM; its `return-response` (and mock-response, CORS
    /// preflight) answers without the backend.
    ///
    /// The response cache's lookup runs here, where the section's `cache-lookup` stands (the
    /// section suspends; docs/cache.md): a hit answers at once (`Done`: the rest of inbound,
    /// backend and outbound do not run), a miss resumes the section.
    async fn inbound(&mut self, worker: &WorkerCtx<S>, ctx: &mut RequestCtx) -> Verdict {
        let limits = ctx.snapshot.as_deref().map(|snapshot| snapshot.config.limits).unwrap_or_default();
        if let Err(error) = self.buffer_request_body(ctx, &limits).await {
            return Verdict::Fail(error);
        }
        let mut resume = false;
        loop {
            return match self.run_section(worker, ctx, Section::Inbound, resume, None).await {
                SectionEnd::Continue => Verdict::Continue(()),
                SectionEnd::Respond => Verdict::Fail(ProxyError::PolicyResponse),
                SectionEnd::Failed(error) => Verdict::Fail(error),
                SectionEnd::CacheLookup(lookup) => match self.cache_lookup(worker, ctx, &lookup).await {
                    Lookup::Answered(sent) => sent.into(),
                    Lookup::Continue => {
                        resume = true;
                        continue;
                    }
                },
                // The compiler allows forward-request only in the backend section.
                SectionEnd::Forward(_) => Verdict::Fail(ProxyError::BackendUnavailable),
            };
        }
    }

    /// Phase 6, backend: runs after inbound continues. The backend section runs until its
    /// `forward-request`, which picks the backend and an endpoint, sends the request and reads the
    /// final response head (following redirects when asked); the section then resumes (a `retry`
    /// may forward again). Hands outbound the response, its body not read yet. A backend section
    /// without `forward-request`, and `fail-on-error-status-code`, answer here.
    async fn backend(&mut self, worker: &WorkerCtx<S>, ctx: &mut RequestCtx) -> Verdict<Exchange<S>> {
        let started = Instant::now();
        let verdict = self.forward(worker, ctx).await;
        ctx.backend_us = Some(started.elapsed().as_micros() as u64);
        if let Verdict::Continue(exchange) = &verdict {
            ctx.backend_status = exchange.status();
        }
        verdict
    }

    /// Phase 7, outbound: runs on the backend's final response head, before the client sees a byte
    /// of it. The outbound section (the body read in first when it reads or replaces it), then the
    /// relay of head and body to the client (`Done`), or a 101's tunnel. After a `cache-lookup`
    /// miss, `cache-store` keeps the response as the client gets it (a bounded tee on the relay).
    async fn outbound(&mut self, worker: &WorkerCtx<S>, ctx: &mut RequestCtx, exchange: Exchange<S>) -> Verdict {
        self.respond_from_backend(worker, ctx, exchange, Section::Outbound).await.into()
    }

    /// Phase 8, on-error: runs when phases 3 to 7 stopped with `Respond` or `Fail` (for a policy
    /// error, a policy's answer, a gateway refusal, a backend failure). Once an operation matched
    /// (and the error is not the client's), records `context.LastError` and runs the operation's
    /// on-error section, whose answer wins; then sends the one response the client gets, through
    /// [`Answer`] (the one place errors become APIM responses). After response bytes went out, it
    /// can only close the connection.
    async fn on_error(&mut self, worker: &WorkerCtx<S>, ctx: &mut RequestCtx, error: &ProxyError) {
        if ctx.response_started {
            ctx.client_keep_alive = false;
            return;
        }
        if error.source() != ErrorSource::Gateway {
            tracing::debug!(%error, source = ?error.source(), "request failed");
        }
        let answer = self.on_error_section(worker, ctx, error).await;
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
        ctx.status = self.write_answer(ctx, answer, error, close);
        ctx.response_head_bytes = self.out.len() as u64;
        if self.write_out().await.is_err() {
            ctx.client_keep_alive = false;
        }
    }

    /// The operation's on-error section, when it runs for `error` (once per request), and the
    /// answer the client gets after it.
    async fn on_error_section(&mut self, worker: &WorkerCtx<S>, ctx: &mut RequestCtx, error: &ProxyError) -> Answer {
        let answer = Answer::of(error);
        if answer == Answer::Built || ctx.matched.is_none() || error.source() == ErrorSource::Client || ctx.on_error_ran
        {
            return answer;
        }
        self.record_last_error(error, error.section());
        match self.run_section(worker, ctx, Section::OnError, false, None).await {
            SectionEnd::Respond => Answer::Built,
            SectionEnd::Failed(ProxyError::Policy(failed)) => Answer::Policy(failed.status()),
            SectionEnd::Continue | SectionEnd::Forward(_) | SectionEnd::Failed(_) | SectionEnd::CacheLookup(_) => {
                answer
            }
        }
    }

    /// Phase 9, done: always runs, last, whatever the request's verdict. Counts the response
    /// (requests, 4xx, 5xx, in flight, the generation served; the worker's telemetry: series,
    /// latencies, emitted metrics) and offers its access-log record (with the `trace` policies'
    /// entries; without the access log they go to the log), then drops the request's bytes from
    /// the buffer (pipelined bytes stay). `Continue`: the connection serves another request;
    /// `Close`: it closes.
    fn done(&mut self, worker: &WorkerCtx<S>, ctx: &RequestCtx) -> Verdict {
        // The answer is complete: the request leaves the in-flight gauge before the bookkeeping
        // below (a scrape between the client's last byte and here still sees it).
        WorkerSlot::sub(&worker.slot().in_flight, 1);
        // Limits waiting for a backend response that never came (an error, a policy's answer),
        // and bandwidth a relay that failed left uncounted.
        self.count_after_response(ctx, None);
        self.count_bandwidth(ctx, None);
        let slot = worker.slot();
        if ctx.status != 0 {
            record_response(slot, ctx.status);
        }
        if let Some(snapshot) = ctx.snapshot.as_deref() {
            slot.generation.store(snapshot.generation, std::sync::atomic::Ordering::Relaxed);
            if snapshot.config.observability.access_log.destination
                == portcullis_contract::telemetry::AccessLogDestination::Off
            {
                policies::log_traces(&self.policy, &snapshot.programs, ctx.matched.as_ref());
            }
        }
        self.observe(worker, ctx);
        ctx.cache_counts.record(slot);
        self.finish_span(ctx);
        match ctx.request_end {
            Some(end) if ctx.client_keep_alive && end <= self.buf.len() => {
                self.buf.drain(..end);
                Verdict::Continue(())
            }
            _ => Verdict::Close,
        }
    }
}

impl<S: Stream> Connection<S> {
    /// A sampled request's span goes to the exporter (a full queue drops it; nothing waits).
    fn finish_span(&self, ctx: &RequestCtx) {
        if ctx.trace.timing.is_none() {
            return;
        }
        let snapshot = ctx.snapshot.as_deref();
        let api = snapshot
            .zip(ctx.matched.as_ref())
            .and_then(|(snapshot, matched)| snapshot.config.apis.get(matched.api as usize).map(|api| (api, matched)));
        let operation = api.and_then(|(api, matched)| api.operations.get(matched.found.operation as usize));
        let product = snapshot
            .zip(ctx.matched.and_then(|matched| matched.product))
            .and_then(|(snapshot, product)| snapshot.config.products.get(product as usize));
        let target = ctx.head.target(&self.buf);
        let finished = trace::Finished {
            method: ctx.head.method(&self.buf),
            path: crate::http::url::Target::parse(target).path(),
            status: ctx.status,
            api_id: api.map(|(api, _)| api.id.as_str()),
            operation_id: operation.map(|operation| operation.id.as_str()),
            product_id: product.map(|product| product.id.as_str()),
            tracestate: ctx.trace.tracestate.map(|span| span.of(&self.buf)),
        };
        if let Some(record) = trace::SpanRecord::finish(&ctx.trace, &finished) {
            trace::submit(record);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_continues_with_its_value_or_stops_as_it_is() {
        let continued: Verdict<u32> = Verdict::Continue(7);
        assert!(matches!(continued.into_continue::<()>(), Ok(7)));
        let stop = Verdict::<u32>::Respond(error_response::NOT_FOUND).into_continue::<()>();
        assert!(matches!(stop, Err(Verdict::Respond(response)) if response == error_response::NOT_FOUND));
        assert!(matches!(Verdict::<u32>::Done.into_continue::<()>(), Err(Verdict::Done)));
        assert!(matches!(Verdict::<u32>::Close.into_continue::<()>(), Err(Verdict::Close)));
        let failed = Verdict::<u32>::Fail(ProxyError::BackendClosedEarly).into_continue::<()>();
        assert!(matches!(failed, Err(Verdict::Fail(ProxyError::BackendClosedEarly))));
    }

    #[test]
    fn a_phase_that_sends_the_response_is_done_or_failed() {
        assert!(matches!(Verdict::<()>::from(Ok(())), Verdict::Done));
        assert!(matches!(
            Verdict::<()>::from(Err(ProxyError::HeaderTimeout)),
            Verdict::Fail(ProxyError::HeaderTimeout)
        ));
    }

    #[test]
    fn verdicts_stay_small() {
        // Returned by every phase on the hot path: no larger than the error it may carry.
        assert!(size_of::<Verdict>() <= size_of::<ProxyError>() + size_of::<usize>());
    }
}
