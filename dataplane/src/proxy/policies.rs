//! The policy phases: the matched operation's compiled sections, run in the VM.
//!
//! The VM is sans-IO: it reads the request through a [`View`] rebuilt for every run (the
//! connection buffers are taken while bodies are relayed, so nothing may borrow them across an
//! await) and keeps what must persist in the connection's [`RequestState`]. This file builds
//! those views, runs sections through retry waits, and turns their ends into the proxy's terms.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use portcullis_contract::key_index::KeySlot;
use portcullis_contract::model::Limits;
use portcullis_contract::program::{Section, Severity};

use crate::http::BodyFraming;
use crate::http::chunked::{self, ChunkedScanner};
use crate::http::response::ResponseHead;
use crate::io::Stream;
use crate::policy::CallMode;
use crate::policy::{
    self, Caller, ConcurrencyLimits, Exit, Forward, LastError, MatchedParam, RateLimits, ResponseView, View,
};
use crate::proxy::outbound;
use crate::proxy::relay::BODY_READ_BYTES;
use crate::proxy::{Connection, ProxyError, RequestCtx};
use crate::router::operation::OperationMatch;
use crate::snapshot::Snapshot;
use crate::subscription;
use crate::worker::ctx::WorkerCtx;

/// `limit-concurrency` counters: one table for the whole process, as APIM counts per gateway.
static CONCURRENCY: LazyLock<Arc<ConcurrencyLimits>> = LazyLock::new(ConcurrencyLimits::new);
/// `rate-limit` and `quota` counters: one store for the whole process (its tables allocated when
/// a snapshot first has a limit, by the channel thread: [`RateLimits::allocate`]).
pub(crate) static LIMITS: LazyLock<Arc<RateLimits>> = LazyLock::new(RateLimits::new);

/// The operation a request matched and what the views of its runs need besides the buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Matched {
    pub(crate) api: u32,
    pub(crate) found: OperationMatch,
    /// Index into `Config::subscriptions` of the subscription the key opened.
    pub(crate) subscription: Option<u32>,
    /// Index into `Config::products` of the product the request comes through.
    pub(crate) product: Option<u32>,
    /// `context.RequestId`.
    pub(crate) request_id: u128,
    /// `context.Timestamp`.
    pub(crate) timestamp: DateTime<Utc>,
}

/// How a section ended, in the proxy's terms.
#[derive(Debug)]
pub(crate) enum SectionEnd {
    /// Go on with the next phase.
    Continue,
    /// The section's `forward-request` wants the backend called (then [`Connection::resume_backend`]).
    Forward(Forward),
    /// A policy answered (return-response, mock-response, CORS preflight): send the built response.
    Respond,
    /// The inbound section's `cache-lookup` wants the request looked up (then resume it on a
    /// miss; a hit answers the request).
    CacheLookup(policy::ResponseLookup),
    Failed(ProxyError),
}

/// The backend's response as the backend, outbound and on-error sections see it.
#[derive(Clone, Copy)]
pub(crate) struct Response<'r> {
    pub(crate) head: &'r ResponseHead,
    /// A buffered whole body, when the proxy read it for a program that needs it.
    pub(crate) body: Option<&'r [u8]>,
}

thread_local! {
    /// Request ids: a random per-thread base plus a counter (unique without a syscall per request).
    static REQUEST_IDS: std::cell::Cell<u128> = std::cell::Cell::new(
        (u128::from(getrandom::u64().unwrap_or(0)) << 64) | u128::from(getrandom::u64().unwrap_or(0)),
    );
}

/// A fresh `context.RequestId` (a version-4-shaped GUID).
pub(crate) fn next_request_id() -> u128 {
    REQUEST_IDS.with(|ids| {
        let id = ids.get().wrapping_add(1);
        ids.set(id);
        // Version 4, RFC 4122 variant bits, so it prints as a valid random GUID.
        (id & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
    })
}

impl<S: Stream> Connection<S> {
    /// Runs `section` of the matched operation from its start (`resume`: from where it was
    /// suspended), sleeping through `retry` waits.
    pub(crate) async fn run_section(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &RequestCtx,
        section: Section,
        mut resume: bool,
        response: Option<Response<'_>>,
    ) -> SectionEnd {
        let (Some(snapshot), Some(matched)) = (ctx.snapshot.as_deref(), ctx.matched) else {
            return SectionEnd::Continue;
        };
        let Some(program) = program_of(snapshot, &matched, section) else { return SectionEnd::Continue };
        if program.is_empty() {
            return SectionEnd::Continue;
        }
        if let Some(forward) = program.plain_forward() {
            // Nothing to run around the call: no view, no VM.
            return if resume { SectionEnd::Continue } else { SectionEnd::Forward(forward) };
        }
        // Calls of a `wait` in flight (they borrow the worker and the snapshot, never `self`).
        let mut pending: Vec<outbound::PendingCall<'_>> = Vec::new();
        loop {
            let exit = {
                let Connection { buf, upstream_buf, policy, peer, client, .. } = &mut *self;
                let request_body = request_body(ctx, buf);
                let response = response.map(|response| ResponseView {
                    head: response.head,
                    buf: upstream_buf,
                    body: response.body,
                });
                let mut decoded = Vec::new();
                let params = matched_params(snapshot, &matched, ctx.head.target(buf), &mut decoded);
                let mut scratch = [0u8; portcullis_contract::key_index::KEY_BYTES_MAX];
                let Some(mut view) =
                    view(snapshot, ctx, &matched, buf, *peer, &params, request_body, response, &mut scratch)
                else {
                    return SectionEnd::Continue;
                };
                view.client_certificate = client.client_certificate();
                if resume {
                    policy::resume(section, program, &view, policy)
                } else {
                    policy::run(section, program, &view, policy)
                }
            };
            match exit {
                Exit::Continue => return SectionEnd::Continue,
                Exit::Respond => return SectionEnd::Respond,
                Exit::Error(error) => return SectionEnd::Failed(ProxyError::Policy(error)),
                Exit::Wait(duration) => {
                    tokio::time::sleep(duration.min(RETRY_WAIT_MAX)).await;
                    resume = true;
                }
                Exit::Cache(call) => match *call {
                    // The compiler allows cache-lookup in inbound only; elsewhere it would be a miss.
                    policy::CacheCall::LookupResponse(lookup) if section == Section::Inbound => {
                        return SectionEnd::CacheLookup(lookup);
                    }
                    policy::CacheCall::LookupResponse(_) => resume = true,
                    call => {
                        self.cache_value(ctx, call).await;
                        resume = true;
                    }
                },
                Exit::Send(call) => {
                    self.send(worker, ctx, snapshot, *call, &mut pending).await;
                    resume = true;
                }
                Exit::WaitCalls { any } => {
                    for (call, outcome) in outbound::collect(&mut pending, any).await {
                        self.policy.finish_call(&call, outcome, &snapshot.programs);
                    }
                    resume = true;
                }
                exit @ Exit::Forward { .. } => match exit.forward() {
                    Some(forward) => return SectionEnd::Forward(forward),
                    None => return SectionEnd::Continue,
                },
            }
        }
    }

    /// Makes (or starts, or hands off) a call a section asked for; records what is known now.
    async fn send<'w>(
        &mut self,
        worker: &'w WorkerCtx<S>,
        ctx: &RequestCtx,
        snapshot: &'w Snapshot,
        call: policy::SendCall,
        pending: &mut Vec<outbound::PendingCall<'w>>,
    ) {
        let timeout = Duration::from_millis(call.timeout_ms);
        match call.mode {
            CallMode::Now => {
                let outcome = outbound::call(worker, snapshot, &call.request, timeout).await;
                self.policy.finish_call(&call, outcome, &snapshot.programs);
            }
            CallMode::Deferred if pending.len() < outbound::WAIT_CALLS_MAX => {
                pending.push(Box::pin(async move {
                    let outcome = outbound::call(worker, snapshot, &call.request, timeout).await;
                    (call, outcome)
                }));
            }
            CallMode::Deferred => {
                tracing::debug!("a wait started more calls than {}", outbound::WAIT_CALLS_MAX);
                self.policy.finish_call(&call, Err(policy::CallFailure::ConnectionFailure), &snapshot.programs);
            }
            CallMode::OneWay => {
                let Some(local) = ctx.snapshot.clone() else { return };
                if !worker.one_way.queue(local, call.request, timeout) {
                    tracing::debug!("send-one-way-request dropped: {} calls queued", outbound::ONE_WAY_CALLS_MAX);
                }
            }
        }
    }

    /// Moves the counters the request's limits left for after its response (`response`: the
    /// backend's, when there is one): runs their deferred increment conditions and counts the
    /// request's and response's bytes in bandwidth quotas. Once per request; nothing to do for
    /// most.
    pub(crate) fn count_after_response(&mut self, ctx: &RequestCtx, response: Option<Response<'_>>) {
        if !self.policy.counts_after_response() {
            return;
        }
        // A response body whose length only its relay will tell (chunked, until the close): the
        // bandwidth quotas wait for it. Otherwise they count now, before the response goes out,
        // so that a client's next request finds them counted.
        let sizes_known = response.as_ref().is_none_or(|response| {
            matches!(response.head.framing(ctx.is_head), BodyFraming::Length(_) | BodyFraming::None)
        });
        let (Some(snapshot), Some(matched)) = (ctx.snapshot.as_deref(), ctx.matched) else { return };
        let Connection { buf, upstream_buf, policy, peer, .. } = &mut *self;
        let bytes = exchanged_bytes(ctx, response.as_ref());
        let request_body = request_body(ctx, buf);
        let response =
            response.map(|response| ResponseView { head: response.head, buf: upstream_buf, body: response.body });
        let mut decoded = Vec::new();
        let params = matched_params(snapshot, &matched, ctx.head.target(buf), &mut decoded);
        let mut scratch = [0u8; portcullis_contract::key_index::KEY_BYTES_MAX];
        if let Some(view) = view(snapshot, ctx, &matched, buf, *peer, &params, request_body, response, &mut scratch) {
            policy::after_response(&view, policy, sizes_known.then_some(bytes));
        }
    }

    /// Counts the bytes that went both ways (`response`: the backend's head, its body as relayed)
    /// in the bandwidth quotas that waited for the bodies.
    pub(crate) fn count_bandwidth(&mut self, ctx: &RequestCtx, response: Option<&ResponseHead>) {
        let response = response.map(|head| Response { head, body: None });
        let bytes = exchanged_bytes(ctx, response.as_ref());
        policy::count_bandwidth(&LIMITS, &mut self.policy, bytes, Utc::now());
    }

    /// Reads the rest of the request body into the connection buffer when the operation's
    /// policies read or replace it, or its backend section may send it more than once (a `retry`
    /// around `forward-request`, `follow-redirects`): a `Content-Length` body up to
    /// [`REQUEST_BODY_BUFFERED_BYTES_MAX`], a chunked one until it ends or its data passes that
    /// limit (then the rest streams and policies see no body, as for a larger `Content-Length`).
    pub(crate) async fn buffer_request_body(
        &mut self,
        ctx: &mut RequestCtx,
        limits: &Limits,
    ) -> Result<(), ProxyError> {
        let all = [Section::Inbound, Section::Backend, Section::Outbound, Section::OnError];
        let read_by_policies = uses_body(ctx, &all, true);
        if !read_by_policies && !replays_request(ctx) {
            return Ok(());
        }
        match ctx.head.framing() {
            BodyFraming::Length(len) => {
                let Ok(len) = usize::try_from(len) else { return Ok(()) };
                if len == 0 || len > REQUEST_BODY_BUFFERED_BYTES_MAX {
                    return Ok(());
                }
                let end = ctx.head.head_len() + len;
                let deadline = Instant::now() + Duration::from_millis(u64::from(limits.request_header_timeout_ms));
                while self.buf.len() < end {
                    self.read_request_body(ctx, end - self.buf.len(), deadline).await?;
                }
                Ok(())
            }
            BodyFraming::Chunked => self.buffer_chunked_request_body(ctx, limits, read_by_policies).await,
            BodyFraming::None | BodyFraming::UntilClose => Ok(()),
        }
    }

    /// [`Self::buffer_request_body`] for a chunked body: scans it as it arrives (the bytes stay as
    /// they came, so the relay sends them on unchanged) and, once it is whole, decodes its data
    /// for the policies (`read_by_policies`) into [`RequestCtx::decoded_request_body`].
    async fn buffer_chunked_request_body(
        &mut self,
        ctx: &mut RequestCtx,
        limits: &Limits,
        read_by_policies: bool,
    ) -> Result<(), ProxyError> {
        let start = ctx.head.head_len();
        let deadline = Instant::now() + Duration::from_millis(u64::from(limits.request_header_timeout_ms));
        let mut scanner = ChunkedScanner::new();
        let mut scanned = start;
        loop {
            let scan = match scanner.scan(self.buf.get(scanned..).unwrap_or(&[])) {
                Ok(scan) => scan,
                Err(error) => return Err(ProxyError::ClientChunked(error)),
            };
            scanned += scan.consumed;
            if scanner.data_bytes() > limits.request_body_bytes_max {
                // As the relay does: the body is refused (413) once it passes the limit.
                return Err(ProxyError::ClientBodyTooLarge);
            }
            // Checked before the end: a large body that arrived in few reads is over the limit
            // all the same.
            let over = scanner.data_bytes() > REQUEST_BODY_BUFFERED_BYTES_MAX as u64
                || self.buf.len() - start > CHUNKED_REQUEST_BUFFERED_WIRE_BYTES_MAX;
            if over {
                // Streamed from here: the relay carries on from what is buffered.
                return Ok(());
            }
            if scan.done {
                if read_by_policies {
                    let size = usize::try_from(scanner.data_bytes()).unwrap_or(0);
                    let wire = self.buf.get(start..scanned).unwrap_or(&[]);
                    ctx.decoded_request_body = Some(chunked::decode(wire, size).map_err(ProxyError::ClientChunked)?);
                }
                return Ok(());
            }
            self.read_request_body(ctx, BODY_READ_BYTES, deadline).await?;
        }
    }

    /// One read of request body bytes into the connection buffer (at least `room` bytes of room),
    /// answering `Expect: 100-continue` before the first.
    async fn read_request_body(
        &mut self,
        ctx: &mut RequestCtx,
        room: usize,
        deadline: Instant,
    ) -> Result<(), ProxyError> {
        if ctx.head.expects_continue() && !ctx.sent_continue {
            ctx.sent_continue = true;
            self.out.clear();
            self.out.extend_from_slice(crate::http::forward::CONTINUE);
            self.write_out().await.map_err(ProxyError::ClientWrite)?;
        }
        self.buf.reserve(room);
        let buf = std::mem::take(&mut self.buf);
        let limit = deadline.saturating_duration_since(Instant::now());
        let (result, buf) = crate::io::read_within(&mut self.client, buf, limit).await;
        self.buf = buf;
        match result {
            Ok(0) => Err(ProxyError::ClientBodyTruncated),
            Ok(_) => Ok(()),
            Err(error) => Err(ProxyError::ClientBody(error)),
        }
    }

    /// Records a proxy error as `context.LastError` (policy errors record themselves), so that
    /// `on-error` sees it.
    pub(crate) fn record_last_error(&mut self, error: &ProxyError, section: Section) {
        if matches!(error, ProxyError::Policy(_) | ProxyError::PolicyResponse) {
            return;
        }
        let status = error.response().map_or(500, |response| response.status);
        let (source, reason) = apim_reason(error);
        let message = match (error, error.response()) {
            (ProxyError::RetryNotReplayable, _) | (_, None) => error.to_string(),
            (_, Some(response)) => response.full_message().into_owned(),
        };
        self.policy.set_last_error(LastError::new(source, reason, &message, section, status));
    }
}

/// Request bodies that policies read or replace, or that the backend section may send twice,
/// are buffered up to this size (APIM buffers bodies it reads too); larger ones stream past the
/// policies, which see none, and cannot be sent again.
pub(crate) const REQUEST_BODY_BUFFERED_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A chunked body being buffered stops being buffered (and streams) when its bytes on the wire
/// pass this, whatever its data: tiny chunks with long extensions carry more framing than data,
/// and the buffer is bounded by what arrives, not by what it decodes to.
pub(crate) const CHUNKED_REQUEST_BUFFERED_WIRE_BYTES_MAX: usize = 2 * REQUEST_BODY_BUFFERED_BYTES_MAX;

/// A `retry` never sleeps longer than this between attempts, whatever its interval says.
const RETRY_WAIT_MAX: Duration = Duration::from_secs(300);

/// `LastError.Source` and `.Reason` for the proxy's own errors, as APIM names them.
fn apim_reason(error: &ProxyError) -> (&'static str, &'static str) {
    use crate::http::error_response as e;
    if matches!(error, ProxyError::RetryNotReplayable) {
        return ("forward-request", "RequestBodyNotBuffered");
    }
    match error.response() {
        Some(response) if response == e::MISSING_KEY => ("authorization", "SubscriptionKeyNotFound"),
        Some(response) if response == e::INVALID_KEY => ("authorization", "SubscriptionKeyInvalid"),
        Some(response) if response == e::NOT_FOUND => ("configuration", "OperationNotFound"),
        Some(response) if response == e::GATEWAY_TIMEOUT => ("forward-request", "Timeout"),
        Some(response) if response.status == 502 => ("forward-request", "BackendConnectionFailure"),
        // The per-IP limit counts by the client's address, as `rate-limit-by-key` would.
        Some(response) if response.status == 429 => ("rate-limit-by-key", "RateLimitExceeded"),
        _ => ("gateway", "ClientConnectionFailure"),
    }
}

/// Whether the matched operation's backend section may send the request more than once.
pub(crate) fn replays_request(ctx: &RequestCtx) -> bool {
    let (Some(snapshot), Some(matched)) = (ctx.snapshot.as_deref(), ctx.matched) else { return false };
    program_of(snapshot, &matched, Section::Backend).is_some_and(|program| program.bodies().replays_request)
}

/// Whether any of the matched operation's `sections` reads or replaces the request body
/// (`request`) or the response body.
pub(crate) fn uses_body(ctx: &RequestCtx, sections: &[Section], request: bool) -> bool {
    let (Some(snapshot), Some(matched)) = (ctx.snapshot.as_deref(), ctx.matched) else { return false };
    sections.iter().filter_map(|&section| program_of(snapshot, &matched, section)).any(|program| {
        let bodies = program.bodies();
        if request {
            bodies.reads_request || bodies.replaces_request
        } else {
            bodies.reads_response || bodies.replaces_response
        }
    })
}

fn program_of<'s>(snapshot: &'s Snapshot, matched: &Matched, section: Section) -> Option<&'s policy::LoadedProgram> {
    let policies = snapshot.policies(matched.product, matched.api, matched.found.operation)?;
    snapshot.programs.get(policies.program(section))
}

/// The whole request body, when it was buffered ([`Connection::buffer_request_body`] reads it
/// in when a section uses it): a `Content-Length` body is its bytes in the buffer, a chunked one
/// its decoded data.
fn request_body<'b>(ctx: &'b RequestCtx, buf: &'b [u8]) -> Option<&'b [u8]> {
    let start = ctx.head.head_len();
    match ctx.head.framing() {
        BodyFraming::None => Some(&[]),
        BodyFraming::Length(len) => {
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            buf.get(start..end)
        }
        BodyFraming::Chunked => ctx.decoded_request_body.as_deref(),
        BodyFraming::UntilClose => None,
    }
}

/// The bytes a bandwidth quota counts: the request's head and body, the response's head and body,
/// the bodies as relayed (chunked with their framing, or to the backend's close), else as
/// declared (`Content-Length`: a body buffered and answered by policies, or not sent).
fn exchanged_bytes(ctx: &RequestCtx, response: Option<&Response<'_>>) -> u64 {
    let declared = |framing: BodyFraming| match framing {
        BodyFraming::Length(len) => len,
        _ => 0,
    };
    let request = ctx.request_bytes();
    let response = response.map_or(0, |response| {
        let body = ctx.response_body_bytes.unwrap_or_else(|| declared(response.head.framing(ctx.is_head)));
        response.head.head_len() as u64 + body
    });
    request + response
}

/// The operation's template parameters with their values from the request target (where the
/// bindings point), percent-decoded (into `decoded` only when a value is encoded).
fn matched_params<'a>(
    snapshot: &'a Snapshot,
    matched: &Matched,
    target: &'a [u8],
    decoded: &'a mut Vec<String>,
) -> Vec<MatchedParam<'a>> {
    let bindings = matched.found.bindings();
    if bindings.is_empty() {
        return Vec::new();
    }
    let Some(template) = snapshot
        .operations
        .get(matched.api as usize)
        .and_then(|operations| operations.template(matched.found.operation))
    else {
        return Vec::new();
    };
    let value_of = |binding: &crate::router::operation::Binding| {
        target
            .get(binding.start as usize..binding.end as usize)
            .and_then(|raw| std::str::from_utf8(raw).ok())
            .unwrap_or("")
    };
    // Decode first (the strings must not move while borrowed), then borrow.
    for binding in bindings {
        let raw = value_of(binding);
        if raw.contains('%') {
            // Path segments: `+` is a plus sign, not a space.
            decoded.push(
                crate::http::url::percent_decode_str(raw.as_bytes(), crate::http::url::Coding::Rfc3986).into_owned(),
            );
        }
    }
    let mut decoded = decoded.iter();
    template
        .param_names()
        .zip(bindings)
        .map(|(name, binding)| {
            let raw = value_of(binding);
            let value = if raw.contains('%') { decoded.next().map_or(raw, String::as_str) } else { raw };
            MatchedParam { name, value }
        })
        .collect()
}

/// The view of one run.
#[expect(clippy::too_many_arguments, reason = "each is one borrowed part of the request the view gathers")]
fn view<'a>(
    snapshot: &'a Snapshot,
    ctx: &'a RequestCtx,
    matched: &Matched,
    buf: &'a [u8],
    peer: SocketAddr,
    params: &'a [MatchedParam<'a>],
    request_body: Option<&'a [u8]>,
    response: Option<ResponseView<'a>>,
    scratch: &'a mut [u8; portcullis_contract::key_index::KEY_BYTES_MAX],
) -> Option<View<'a>> {
    let api = snapshot.config.apis.get(matched.api as usize)?;
    let operation = api.operations.get(matched.found.operation as usize)?;
    let subscription = matched.subscription.and_then(|index| snapshot.config.subscriptions.get(index as usize));
    let product = matched.product.and_then(|index| snapshot.config.products.get(index as usize));
    let subscription_key = match subscription {
        Some(_) => {
            match subscription::find_key(
                &ctx.head,
                buf,
                &api.subscription_key_header,
                &api.subscription_key_query,
                scratch,
            ) {
                subscription::FoundKey::Present(key) => std::str::from_utf8(key).ok(),
                _ => None,
            }
        }
        None => None,
    };
    let caller = Caller {
        user: subscription.and_then(|s| s.owner).and_then(|owner| snapshot.config.users.get(owner as usize)),
        primary_key: matched.subscription.and_then(|index| snapshot.config.key_index.key_of(index, KeySlot::Primary)),
        secondary_key: matched
            .subscription
            .and_then(|index| snapshot.config.key_index.key_of(index, KeySlot::Secondary)),
        groups: &snapshot.config.groups,
    };
    Some(View {
        programs: &snapshot.programs,
        request: &ctx.head,
        request_buf: buf,
        remainder_start: ctx.route.map_or(0, |route| route.remainder),
        peer: peer.ip(),
        client_certificate: None,
        client_trust: &snapshot.client_trust,
        api,
        operation,
        subscription,
        subscription_key,
        caller,
        product,
        deployment: &snapshot.config.deployment,
        matched: params,
        request_id: matched.request_id,
        timestamp: matched.timestamp,
        now: Utc::now(),
        request_body,
        response,
        concurrency: &CONCURRENCY,
        limits: &LIMITS,
        tracing: false,
        traceparent: Some(&ctx.trace.traceparent),
    })
}

/// Writes the `trace` policies' entries of one request to the log (target `portcullis::trace`).
pub(crate) fn log_traces(state: &policy::RequestState, programs: &policy::Programs, matched: Option<&Matched>) {
    let request_id = matched.map(|matched| matched.request_id).unwrap_or_default();
    for entry in state.traces() {
        let source = programs.literal(entry.source);
        let message = entry.message.resolve(programs);
        match entry.severity {
            Severity::Error => {
                tracing::error!(target: "portcullis::trace", source, request_id = %format_args!("{request_id:032x}"), "{message}");
            }
            Severity::Information => {
                tracing::info!(target: "portcullis::trace", source, request_id = %format_args!("{request_id:032x}"), "{message}");
            }
            Severity::Verbose => {
                tracing::debug!(target: "portcullis::trace", source, request_id = %format_args!("{request_id:032x}"), "{message}");
            }
        }
    }
    if state.traces_dropped() > 0 {
        tracing::warn!(target: "portcullis::trace", dropped = state.traces_dropped(), "trace entries over the per-request limit were dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error_response;

    #[test]
    fn gateway_answers_have_apim_last_error_names() {
        let limited = ProxyError::Rejected(error_response::too_many_requests(3));
        assert_eq!(apim_reason(&limited), ("rate-limit-by-key", "RateLimitExceeded"));
        let missing = ProxyError::Rejected(error_response::MISSING_KEY);
        assert_eq!(apim_reason(&missing), ("authorization", "SubscriptionKeyNotFound"));
    }
}
