//! The exchange with a backend, for the backend and outbound phases: the round trips a
//! `forward-request` makes (send the request and its body, read the response head, replace a
//! stale connection, follow redirects) and the relay of the response to the client. Where the
//! request goes and connecting are [`super::target`]'s.

use std::time::{Duration, Instant};

use portcullis_contract::model::{Limits, PoolSettings};
use portcullis_contract::program::Section;

use crate::cache::entry::Tee;
use crate::http::chunked::{self, ChunkedScanner};
use crate::http::forward::{self, CONTINUE, ClientConnection, Forwarding};
use crate::http::redirect::{self, REDIRECTS_FOLLOWED_MAX};
use crate::http::response::{self, ResponseHead};
use crate::http::{BodyFraming, HEAD_BYTES_INITIAL, Version, find_header};
use crate::io::maybe_tls::MaybeTls;
use crate::io::{ReadError, Stream, read_within};
use crate::policy::{self, apply};
use crate::proxy::ErrorSource;
use crate::proxy::policies::LIMITS;
use crate::proxy::policies::{Response, SectionEnd};
use crate::proxy::relay::{self, BODY_READ_BYTES, RelayError};
use crate::proxy::target::{
    CONNECT_RETRY_ENDPOINTS_MAX, Target, TargetKind, connect, is_idempotent, redirect_dest, target,
};
use crate::proxy::tunnel;
use crate::proxy::{Connection, ProxyError, RequestCtx, Verdict};
use crate::snapshot::Snapshot;
use crate::upstream::Dest;
use crate::upstream::balance::{InFlight, Outcome};
use crate::worker::ctx::WorkerCtx;
use chrono::Utc;

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

impl<S: Stream> Connection<S> {
    /// The backend phase ([`crate::proxy::lifecycle`], phase 6): the operation's backend section
    /// until its `forward-request`, the round trips it asks for (retries, redirects), and the
    /// section's rest on the response. Hands on the final response for outbound.
    pub(super) async fn forward(&mut self, worker: &WorkerCtx<S>, ctx: &mut RequestCtx) -> Verdict<Exchange<S>> {
        // The route phase set both before the request got here.
        let (Some(snapshot), Some(route)) = (ctx.snapshot.clone(), ctx.route) else {
            return Verdict::Fail(ProxyError::BackendUnavailable);
        };
        let Some(api) = snapshot.config.apis.get(route.api as usize) else {
            return Verdict::Fail(ProxyError::BackendUnavailable);
        };
        let mut forward = match self.run_section(worker, ctx, Section::Backend, false, None).await {
            SectionEnd::Forward(forward) => forward,
            SectionEnd::Continue | SectionEnd::CacheLookup(_) => return self.answer_without_backend(worker, ctx).await,
            SectionEnd::Respond => return Verdict::Fail(ProxyError::PolicyResponse),
            SectionEnd::Failed(error) => return Verdict::Fail(error),
        };
        // Whether the client's body can be sent again (retry, redirect): decided before the first
        // send, while the buffer still holds all of it (a streamed body is gone once relayed).
        let body_buffered = relay::buffered_end(&self.buf, ctx.head.head_len(), ctx.head.framing()).is_some();
        loop {
            let mut limits = snapshot.config.limits;
            // forward-request's timeout, within the gateway's own bound.
            limits.backend_response_timeout_ms = limits.backend_response_timeout_ms.min(forward.timeout_ms.max(1));
            let exchange = self.round_trip(worker, ctx, &snapshot, api, route, &forward, body_buffered, &limits).await;
            ctx.trace.exchange_ended();
            let exchange = match exchange {
                Ok(exchange) => exchange,
                Err(error) => return Verdict::Fail(error),
            };
            // A body a policy replaced (set when the head was written) can always be sent again.
            let replayable = body_buffered || ctx.request_body_replaced;
            if forward.fail_on_error_status && ERROR_STATUSES.contains(&exchange.response.status()) {
                return self.fail_on_error_status(worker, ctx, exchange).await.into();
            }
            let resumed = self
                .run_section(
                    worker,
                    ctx,
                    Section::Backend,
                    true,
                    Some(Response { head: &exchange.response, body: None }),
                )
                .await;
            let error = match resumed {
                SectionEnd::Continue | SectionEnd::CacheLookup(_) => return Verdict::Continue(exchange),
                // A retry around forward-request: send the request again if it still can be.
                SectionEnd::Forward(next) if replayable => {
                    self.close_exchange(exchange);
                    forward = next;
                    continue;
                }
                SectionEnd::Forward(_) => ProxyError::RetryNotReplayable,
                SectionEnd::Respond => ProxyError::PolicyResponse,
                SectionEnd::Failed(error) => error,
            };
            self.close_exchange(exchange);
            return Verdict::Fail(error);
        }
    }

    /// One `forward-request`: the target, the forwarded head, the exchange and the redirects it
    /// follows. `body_buffered`: the client's whole body is in the buffer.
    #[allow(clippy::too_many_arguments, reason = "the forward's state, passed down rather than bundled")]
    async fn round_trip(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        api: &portcullis_contract::model::Api,
        route: crate::router::Route,
        forward: &crate::policy::Forward,
        body_buffered: bool,
        limits: &Limits,
    ) -> Result<Exchange<S>, ProxyError> {
        let target = target(worker, snapshot, api, route.api, &self.policy).await?;
        let head_end = self.write_forwarded_head(ctx, snapshot, api, route.remainder, &target);
        let replayable = body_buffered || ctx.request_body_replaced;
        // The head as sent, for the request that follows a redirect.
        let sent = forward.follow_redirects.then(|| self.out.get(..head_end).unwrap_or(&[]).to_vec());
        ctx.trace.exchange_started();
        let exchange = self.call_backend(worker, ctx, snapshot, target.kind, limits).await?;
        match sent {
            Some(sent) => self.follow_redirects(worker, ctx, snapshot, sent, replayable, exchange, limits).await,
            None => Ok(exchange),
        }
    }

    /// Gives up an exchange whose response is not relayed: its connection is closed (its body
    /// was not read), and its endpoint no longer counts the request in flight.
    fn close_exchange(&mut self, exchange: Exchange<S>) {
        let Exchange { response, upstream, in_flight, .. } = exchange;
        upstream.shutdown();
        drop(in_flight);
        self.response_heads.put_back(response);
    }

    /// Runs `section` (outbound, or on-error after `fail-on-error-status-code`) on the
    /// exchange's response and relays it; the endpoint's in-flight count ends with the relay.
    pub(super) async fn respond_from_backend(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        exchange: Exchange<S>,
        section: Section,
    ) -> Result<(), ProxyError> {
        let Exchange { response, upstream, dest, in_flight, limits } = exchange;
        let relayed = self.response_section(worker, ctx, section, &response, upstream, dest, &limits).await;
        // The request is no longer outstanding on its endpoint (least-requests).
        drop(in_flight);
        self.response_heads.put_back(response);
        relayed
    }

    /// Writes the request to the backend into `out`: its head (with the policies' edits) and a
    /// body a policy replaced. Returns where the head ends.
    fn write_forwarded_head(
        &mut self,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        api: &portcullis_contract::model::Api,
        remainder_start: usize,
        target: &Target<'_>,
    ) -> usize {
        // The host the client asked for, when the API passes it on (validated by the parser).
        let client_host = ctx.head.host(&self.buf).and_then(|host| std::str::from_utf8(host).ok());
        let traceparent = ctx.trace.traceparent;
        let forwarding = Forwarding {
            traceparent: Some(&traceparent),
            base_path: target.base_path,
            authority: client_host.filter(|_| api.preserve_host).unwrap_or(target.authority),
            remainder_start,
            client_ip: self.peer.ip(),
            tls: self.client.is_tls(),
        };
        ctx.request_body_dropped = false;
        if !self.policy.edits_request() {
            forward::write_request_head(&mut self.out, &ctx.head, &self.buf, &forwarding);
            return self.out.len();
        }
        apply::write_request_head(&mut self.out, &ctx.head, &self.buf, &forwarding, &self.policy, &snapshot.programs);
        let head_end = self.out.len();
        if let Some(body) = self.policy.request_body_replacement(&snapshot.programs) {
            self.out.extend_from_slice(body);
            ctx.request_body_replaced = true;
        }
        head_end
    }

    /// `forward-request follow-redirects="true"`: while the response is a redirect the gateway
    /// follows ([`redirect::plan`]), at most [`REDIRECTS_FOLLOWED_MAX`] times, sends the request
    /// to its `Location` (the same endpoint for the same origin, else the address the URL names:
    /// an IP address, or a host the snapshot resolved when it loaded). A redirect that keeps the
    /// body is followed only when the body can be sent again (`replayable`); one that is not
    /// followed, or the last, is returned as the response.
    #[allow(clippy::too_many_arguments, reason = "the forward's state, passed down rather than bundled")]
    async fn follow_redirects(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        mut sent: Vec<u8>,
        replayable: bool,
        mut exchange: Exchange<S>,
        limits: &Limits,
    ) -> Result<Exchange<S>, ProxyError> {
        for _ in 0..REDIRECTS_FOLLOWED_MAX {
            // A redirect to GET earlier on left the body out for good.
            let has_body =
                !ctx.request_body_dropped && (ctx.head.framing() != BodyFraming::None || ctx.request_body_replaced);
            let scheme = if exchange.dest.key.tls.is_some() { redirect::Scheme::Https } else { redirect::Scheme::Http };
            let Some(current) = redirect::sent_url(&sent, scheme) else { break };
            let response = &exchange.response;
            let Some(location) = find_header(&self.upstream_buf, response.headers(), b"location") else { break };
            let method = sent.split(|&b| b == b' ').next().unwrap_or(b"");
            let Some(next) = redirect::plan(response.status(), method, location, &current) else { break };
            if has_body && !next.becomes_get && !replayable {
                tracing::debug!(status = response.status(), "redirect not followed: the request body was streamed");
                break;
            }
            let Some(dest) = redirect_dest(worker, snapshot, &next.url, &current, &exchange.dest).await? else {
                tracing::debug!(location = %next.url, "redirect not followed: its host is not one a request can go to");
                break;
            };
            let mut head = Vec::with_capacity(sent.len());
            if !redirect::write_head(&sent, &next, &mut head) {
                break;
            }
            tracing::debug!(status = response.status(), location = %next.url, "following a backend redirect");
            // The redirect's own body is not wanted: its connection is closed rather than drained.
            let Exchange { response, upstream, in_flight, .. } = exchange;
            upstream.shutdown();
            drop(in_flight);
            self.response_heads.put_back(response);
            self.out.clear();
            self.out.extend_from_slice(&head);
            if next.becomes_get || ctx.request_body_dropped {
                ctx.request_body_dropped = true;
            } else if let Some(body) =
                ctx.request_body_replaced.then(|| self.policy.request_body_replacement(&snapshot.programs)).flatten()
            {
                self.out.extend_from_slice(body);
            }
            sent = head;
            let (upstream, reused) = match worker.pool.take(&dest) {
                Some(stream) => (stream, true),
                None => (connect(worker, &dest.key, limits, Some(snapshot)).await?, false),
            };
            let may_resend = replayable || ctx.request_body_dropped;
            let (response, upstream) =
                self.exchange_on(worker, ctx, upstream, reused, may_resend, &dest, limits).await?;
            exchange = Exchange { response, upstream, dest, in_flight: None, limits: *limits };
        }
        Ok(exchange)
    }

    /// `forward-request fail-on-error-status-code="true"` and a 4xx or 5xx from the backend: the
    /// request goes to on-error, as APIM does (the rest of the backend section and the outbound
    /// section do not run). `context.LastError` says `forward-request` / `BackendErrorStatusCode`
    /// and on-error sees the backend's response as `context.Response`; the client gets what
    /// on-error makes of it: its `return-response`, its error, or else the backend's response
    /// with on-error's edits (status, headers, body).
    async fn fail_on_error_status(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        exchange: Exchange<S>,
    ) -> Result<(), ProxyError> {
        let status = exchange.response.status();
        ctx.backend_status = status;
        let message = format!("Backend service responded with status code {status}.");
        self.policy.set_last_error(crate::policy::LastError::new(
            "forward-request",
            "BackendErrorStatusCode",
            &message,
            Section::Backend,
            status,
        ));
        ctx.on_error_ran = true;
        self.respond_from_backend(worker, ctx, exchange, Section::OnError).await
    }

    /// A backend section without `forward-request` ran to its end: the response is what the
    /// policies made of an empty 200 (status, body), after the outbound section.
    async fn answer_without_backend(&mut self, worker: &WorkerCtx<S>, ctx: &mut RequestCtx) -> Verdict<Exchange<S>> {
        match self.run_section(worker, ctx, Section::Outbound, false, None).await {
            SectionEnd::Failed(error) => return Verdict::Fail(error),
            SectionEnd::Continue | SectionEnd::Respond | SectionEnd::Forward(_) | SectionEnd::CacheLookup(_) => {}
        }
        self.policy.respond_without_backend();
        Verdict::Fail(ProxyError::PolicyResponse)
    }

    /// Picks an endpoint, sends the request (head in `out`, then the body) and
    /// reads the final response head. A connect failure moves an idempotent request whose body
    /// is all buffered to another endpoint (at most [`CONNECT_RETRY_ENDPOINTS_MAX`] more); a
    /// reused connection that fails before any response byte is replaced once on the same
    /// endpoint, when the whole request body is still buffered (a stale keep-alive connection).
    async fn call_backend(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        kind: TargetKind,
        limits: &Limits,
    ) -> Result<Exchange<S>, ProxyError> {
        let replayable = relay::buffered_end(&self.buf, ctx.head.head_len(), ctx.head.framing()).is_some();
        let may_try_another = replayable && is_idempotent(ctx.head.method(&self.buf));
        let mut tried = [0usize; CONNECT_RETRY_ENDPOINTS_MAX + 1];
        let mut attempts = 0;
        let mut last_error = None;
        loop {
            let pick = match &kind {
                TargetKind::Address(_) => None,
                &TargetKind::Upstream(backend) => match worker.pool.pick(snapshot, backend, &tried[..attempts]) {
                    Some(pick) => Some(pick),
                    // Every endpoint tried: the last attempt's error.
                    None => return Err(last_error.unwrap_or(ProxyError::BackendUnavailable)),
                },
            };
            let dest = match (&pick, &kind) {
                (Some(pick), _) => pick.dest.clone(),
                (None, TargetKind::Address(key)) => Dest { key: key.clone(), pool: PoolSettings::default() },
                (None, TargetKind::Upstream(_)) => return Err(ProxyError::BackendUnavailable),
            };
            let dest = with_backend_certificate(dest, snapshot, self.policy.backend_certificate);
            let (upstream, reused) = match worker.pool.take(&dest) {
                Some(stream) => (stream, true),
                None => match connect(worker, &dest.key, limits, Some(snapshot)).await {
                    Ok(stream) => (stream, false),
                    Err(error) => {
                        let Some(pick) = pick else { return Err(error) };
                        worker.pool.report(snapshot, &pick, Outcome::Failure);
                        if may_try_another && attempts < CONNECT_RETRY_ENDPOINTS_MAX {
                            tracing::debug!(%error, addr = %dest.key.addr, "backend endpoint failed to connect; trying another");
                            tried[attempts] = pick.endpoint;
                            attempts += 1;
                            last_error = Some(error);
                            continue;
                        }
                        return Err(error);
                    }
                },
            };
            let result = self.exchange_on(worker, ctx, upstream, reused, replayable, &dest, limits).await;
            // The endpoint's outcome feeds its circuit breaker; the request stays in flight on it.
            let in_flight = pick.map(|pick| {
                let outcome = match &result {
                    Ok(_) => Outcome::Success,
                    Err(error) if error.source() == ErrorSource::Backend => Outcome::Failure,
                    Err(_) => Outcome::Released,
                };
                worker.pool.report(snapshot, &pick, outcome);
                pick.in_flight
            });
            return result.map(|(response, upstream)| Exchange {
                response,
                upstream,
                dest,
                in_flight,
                limits: *limits,
            });
        }
    }

    /// One attempt on `dest`'s connection `upstream`: replaced once by a fresh one when it was a
    /// reused connection that failed before responding and the request can be sent again.
    #[allow(clippy::too_many_arguments, reason = "the attempt's state, passed down rather than bundled")]
    async fn exchange_on(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        mut upstream: MaybeTls<S>,
        mut reused: bool,
        replayable: bool,
        dest: &Dest,
        limits: &Limits,
    ) -> Result<(Box<ResponseHead>, MaybeTls<S>), ProxyError> {
        loop {
            match self.exchange_head(ctx, &mut upstream, limits).await {
                Ok(head) => return Ok((head, upstream)),
                Err(error) if reused && replayable && error.retryable() => {
                    tracing::debug!(%error, addr = %dest.key.addr, "reused backend connection failed before responding; retrying");
                    upstream.shutdown();
                    let snapshot = ctx.snapshot.clone();
                    upstream = connect(worker, &dest.key, limits, snapshot.as_deref().map(|local| &**local)).await?;
                    reused = false;
                }
                Err(error) => {
                    upstream.shutdown();
                    return Err(error);
                }
            }
        }
    }

    /// Sends head and body on `upstream`, then reads the final response head.
    async fn exchange_head(
        &mut self,
        ctx: &mut RequestCtx,
        upstream: &mut MaybeTls<S>,
        limits: &Limits,
    ) -> Result<Box<ResponseHead>, ProxyError> {
        let head_len = ctx.head.head_len();
        let framing = ctx.head.framing();
        // A small body that is all buffered goes out in the head's write (one segment to the
        // backend instead of two), as small response bodies do towards the client. `out` keeps
        // only the head, so a retry on a fresh connection sends head and body once again.
        let coalesced = match framing {
            BodyFraming::None | BodyFraming::UntilClose => None,
            _ if ctx.request_body_replaced || ctx.request_body_dropped => None,
            _ => coalescible_end(&self.buf, head_len, framing),
        };
        let mut out = std::mem::take(&mut self.out);
        let head_bytes = out.len();
        if let Some(body) = coalesced.and_then(|end| self.buf.get(head_len..end)) {
            out.extend_from_slice(body);
        }
        let len = out.len();
        let (result, mut out) = upstream.write_range(out, 0..len).await;
        out.truncate(head_bytes);
        self.out = out;
        result.map_err(ProxyError::BackendWrite)?;
        if let Some(end) = coalesced {
            ctx.request_end = Some(end);
            return self.read_response_head(ctx, upstream, limits).await;
        }
        if ctx.request_body_replaced || ctx.request_body_dropped {
            // The replacement (or no body) went out with the head; the client's body is skipped,
            // which keeps the connection only when it is all buffered. An earlier attempt that
            // relayed it has found its end already.
            if ctx.request_end.is_none() {
                ctx.request_end = relay::buffered_end(&self.buf, head_len, framing);
                if ctx.request_end.is_none() {
                    ctx.client_keep_alive = false;
                    ctx.request_end = Some(head_len);
                }
            }
        } else if framing == BodyFraming::None {
            ctx.request_end = Some(head_len);
        } else {
            self.send_request_body(ctx, upstream, limits).await?;
        }
        self.read_response_head(ctx, upstream, limits).await
    }

    /// Relays the client's request body to `upstream` after its head (answering `Expect:
    /// 100-continue` first when the body is not all here yet), and records where it ended.
    async fn send_request_body(
        &mut self,
        ctx: &mut RequestCtx,
        upstream: &mut MaybeTls<S>,
        limits: &Limits,
    ) -> Result<(), ProxyError> {
        let head_len = ctx.head.head_len();
        let framing = ctx.head.framing();
        // A body that is all buffered is relayed without compacting the buffer (and can be replayed).
        let fully_buffered = relay::buffered_end(&self.buf, head_len, framing).is_some();
        if ctx.head.expects_continue() && !ctx.sent_continue && !fully_buffered {
            ctx.sent_continue = true;
            let (result, _) = self.client.write_range(CONTINUE.to_vec(), 0..CONTINUE.len()).await;
            result.map_err(ProxyError::ClientWrite)?;
        }
        let buf = std::mem::take(&mut self.buf);
        let read_limit = millis(limits.request_header_timeout_ms);
        let body_max = limits.request_body_bytes_max;
        let (result, buf) =
            relay::relay(&mut self.client, upstream, buf, head_len, framing, read_limit, body_max, None).await;
        self.buf = buf;
        match result {
            Ok((end, relayed)) => {
                ctx.request_end = Some(end);
                ctx.request_body_bytes = Some(relayed);
                Ok(())
            }
            Err(error) => {
                // The buffer was compacted mid-body, or the body's framing cannot be trusted
                // (RFC 9112 §11.2) or is over the limit: the connection serves no other request.
                if !fully_buffered || matches!(error, RelayError::Chunked(_) | RelayError::TooLarge) {
                    ctx.client_keep_alive = false;
                }
                Err(request_relay_error(error))
            }
        }
    }

    /// Reads the backend's final response head into `upstream_buf`, forwarding interim (1xx) ones.
    async fn read_response_head(
        &mut self,
        ctx: &RequestCtx,
        upstream: &mut MaybeTls<S>,
        limits: &Limits,
    ) -> Result<Box<ResponseHead>, ProxyError> {
        let deadline = Instant::now() + millis(limits.backend_response_timeout_ms);
        self.upstream_buf.clear();
        self.upstream_buf.reserve(HEAD_BYTES_INITIAL);
        let mut received_any = false;
        loop {
            if !self.upstream_buf.is_empty() {
                received_any = true;
                match response::parse(&self.upstream_buf)? {
                    Some(head) if head.is_interim() => {
                        if ctx.head.version() == Version::Http11 {
                            forward::write_response_head(
                                &mut self.out,
                                &head,
                                &self.upstream_buf,
                                ClientConnection::KeepAlive,
                            );
                            self.write_out().await.map_err(ProxyError::ClientWrite)?;
                        }
                        self.upstream_buf.drain(..head.head_len());
                        continue;
                    }
                    Some(head) => return Ok(self.response_heads.fill(head)),
                    None => {}
                }
            }
            let limit = deadline.saturating_duration_since(Instant::now());
            let buf = std::mem::take(&mut self.upstream_buf);
            let (result, buf) = read_within(upstream, buf, limit).await;
            self.upstream_buf = buf;
            match result {
                Ok(0) if !received_any => return Err(ProxyError::BackendClosedEarly),
                Ok(0) => return Err(ProxyError::BackendHeadTruncated),
                Ok(_) => {}
                Err(ReadError::TimedOut) => return Err(ProxyError::BackendHeadTimeout),
                Err(ReadError::Io(error)) if !received_any => return Err(ProxyError::BackendHeadRead(error)),
                Err(ReadError::Io(_)) => return Err(ProxyError::BackendHeadTruncated),
            }
        }
    }

    /// Runs `section` (outbound, or on-error after `fail-on-error-status-code`) on the backend's
    /// response, its body buffered first when the section reads or replaces it, then relays the
    /// response as the section left it; a section that answers or fails closes the backend.
    #[allow(clippy::too_many_arguments, reason = "the exchange's state, passed down rather than bundled")]
    async fn response_section(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        section: Section,
        response: &ResponseHead,
        mut upstream: MaybeTls<S>,
        dest: Dest,
        limits: &Limits,
    ) -> Result<(), ProxyError> {
        let read_body = crate::proxy::policies::uses_body(ctx, &[section], false)
            || (section == Section::Outbound && self.consumed_tokens_before_head(ctx, response));
        let body = match read_body {
            true => match self.buffer_response_body(ctx, response, &mut upstream, limits).await {
                Ok(body) => body,
                Err(error) => {
                    upstream.shutdown();
                    return Err(error);
                }
            },
            false => None,
        };
        if section == Section::Outbound {
            self.charge_tokens_before_head(ctx, response, body.as_deref());
        }
        let end = self
            .run_section(worker, ctx, section, false, Some(Response { head: response, body: body.as_deref() }))
            .await;
        // The response is decided: the limits that count after it by its status do, before any
        // of it goes out (a client's next request must find them counted).
        self.count_after_response(ctx, Some(Response { head: response, body: body.as_deref() }));
        let result = match end {
            SectionEnd::Continue | SectionEnd::Forward(_) | SectionEnd::CacheLookup(_) => {
                self.relay_response(worker, ctx, response, upstream, dest, limits).await
            }
            SectionEnd::Respond => {
                upstream.shutdown();
                Err(ProxyError::PolicyResponse)
            }
            SectionEnd::Failed(error) => {
                upstream.shutdown();
                Err(error)
            }
        };
        // The bodies went out: bandwidth quotas count the bytes that went both ways.
        self.count_bandwidth(ctx, Some(response));
        result
    }

    /// Reads the whole response body into `upstream_buf` (after the head, as it came, so the
    /// relay sends it on unchanged) for the policies, up to [`RESPONSE_BODY_BUFFERED_BYTES_MAX`]
    /// of data; returns the body the policies see (a chunked body's data). `None`: larger, or
    /// delimited by the connection's close; it streams past the policies, which see no body.
    async fn buffer_response_body(
        &mut self,
        ctx: &RequestCtx,
        response: &ResponseHead,
        upstream: &mut MaybeTls<S>,
        limits: &Limits,
    ) -> Result<Option<Vec<u8>>, ProxyError> {
        let start = response.head_len();
        let deadline = Instant::now() + millis(limits.backend_response_timeout_ms);
        match response.framing(ctx.is_head) {
            BodyFraming::None => Ok(Some(Vec::new())),
            BodyFraming::UntilClose => Ok(None),
            BodyFraming::Length(len) => {
                let Some(len) = usize::try_from(len).ok().filter(|&len| len <= RESPONSE_BODY_BUFFERED_BYTES_MAX) else {
                    return Ok(None);
                };
                let end = start + len;
                while self.upstream_buf.len() < end {
                    self.read_response_body(upstream, end - self.upstream_buf.len(), deadline).await?;
                }
                Ok(self.upstream_buf.get(start..end).map(<[u8]>::to_vec))
            }
            BodyFraming::Chunked => {
                let mut scanner = ChunkedScanner::new();
                let mut scanned = start;
                loop {
                    let scan = scanner
                        .scan(self.upstream_buf.get(scanned..).unwrap_or(&[]))
                        .map_err(ProxyError::BackendChunked)?;
                    scanned += scan.consumed;
                    // Checked before the end: a large body that arrived in few reads is over the
                    // limit all the same.
                    let over = scanner.data_bytes() > RESPONSE_BODY_BUFFERED_BYTES_MAX as u64
                        || self.upstream_buf.len() - start > CHUNKED_RESPONSE_BUFFERED_WIRE_BYTES_MAX;
                    if over {
                        // Streamed from here: the relay carries on from what is buffered.
                        return Ok(None);
                    }
                    if scan.done {
                        let size = usize::try_from(scanner.data_bytes()).unwrap_or(0);
                        let wire = self.upstream_buf.get(start..scanned).unwrap_or(&[]);
                        return chunked::decode(wire, size).map(Some).map_err(ProxyError::BackendChunked);
                    }
                    self.read_response_body(upstream, BODY_READ_BYTES, deadline).await?;
                }
            }
        }
    }

    /// One read of response body bytes into `upstream_buf` (at least `room` bytes of room).
    async fn read_response_body(
        &mut self,
        upstream: &mut MaybeTls<S>,
        room: usize,
        deadline: Instant,
    ) -> Result<(), ProxyError> {
        self.upstream_buf.reserve(room);
        let buf = std::mem::take(&mut self.upstream_buf);
        let (result, buf) = read_within(upstream, buf, deadline.saturating_duration_since(Instant::now())).await;
        self.upstream_buf = buf;
        match result {
            Ok(0) => Err(ProxyError::BackendBodyTruncated),
            Ok(_) => Ok(()),
            Err(error) => Err(ProxyError::BackendBody(error)),
        }
    }

    /// Writes the response head to the client and streams the body; pools the backend
    /// connection when the response completed and the backend allows keep-alive.
    async fn relay_response(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        response: &ResponseHead,
        upstream: MaybeTls<S>,
        dest: Dest,
        limits: &Limits,
    ) -> Result<(), ProxyError> {
        if response.status() == 101 {
            return self.switch_protocols(ctx, response, upstream).await;
        }
        let framing = response.framing(ctx.is_head);
        let close = !ctx.client_keep_alive || worker.drain.is_draining() || framing == BodyFraming::UntilClose;
        ctx.client_keep_alive = !close;
        let connection = match (close, ctx.head.version()) {
            (true, _) => ClientConnection::Close,
            (false, Version::Http10) => ClientConnection::KeepAliveHttp10,
            (false, Version::Http11) => ClientConnection::KeepAlive,
        };
        let body = self.write_relayed_head(ctx, response, framing, connection);
        let status = self.policy.status_code().unwrap_or_else(|| response.status());
        // `cache-store`: the response as the client gets it, when the rules let it in.
        // A body delimited by the connection's close cannot be replayed on a kept-alive one.
        let delimited = framing != BodyFraming::UntilClose;
        let mut store = if ctx.cache_store.is_some() && delimited { self.begin_store(ctx, status, body) } else { None };
        if let Err(error) = self.write_out().await {
            upstream.shutdown();
            return Err(ProxyError::ClientWrite(error));
        }
        ctx.response_started = true;
        ctx.status = status;
        ctx.response_head_bytes = response.head_len() as u64;
        let mut usage = self.usage_scanner(response, framing);
        let relayed = match body {
            RelayedBody::Coalesced(end) => {
                ctx.response_body_bytes = Some(end.saturating_sub(response.head_len()) as u64);
                if let (Some(scanner), Some(body)) = (usage.as_mut(), self.upstream_buf.get(response.head_len()..end)) {
                    scanner.push(body);
                }
                self.release_backend(worker, response, framing, end, dest, upstream);
                Ok(())
            }
            RelayedBody::Replaced => {
                self.release_after_replaced_body(worker, response, framing, dest, upstream);
                Ok(())
            }
            RelayedBody::Streamed => {
                let mut tap = (store.as_mut().map(|(_, tee)| tee), usage.as_mut());
                let relayed = self.relay_body(worker, response, framing, upstream, dest, limits, &mut tap).await;
                relayed.map(|bytes| ctx.response_body_bytes = Some(bytes))
            }
        };
        if let (Ok(()), Some(scanner)) = (&relayed, usage) {
            self.policy.set_token_usage(scanner.finish());
        }
        if let (true, Some(snapshot)) = (self.policy.charges_tokens(), ctx.snapshot.as_deref()) {
            let usage = self.policy.token_usage();
            policy::charge_tokens(&LIMITS, &snapshot.programs, &mut self.policy, usage, Utc::now(), false);
        }
        if let (Ok(()), Some((head, tee))) = (&relayed, store) {
            self.store_response(ctx, &head, tee);
        }
        relayed
    }

    /// A usage scanner for this response when a token metric or token limit policy waits for its
    /// `usage`: a successful, uncompressed response (JSON, or an event stream).
    fn usage_scanner(&self, response: &ResponseHead, framing: BodyFraming) -> Option<crate::llm::UsageScanner> {
        if self.policy.token_metrics().is_empty() && !self.policy.charges_tokens() {
            return None;
        }
        let events = self.usage_events(response)?;
        Some(crate::llm::UsageScanner::new(framing == BodyFraming::Chunked, events))
    }

    /// Whether a response's `usage` can be read, and where: `Some(true)` an event stream,
    /// `Some(false)` a JSON body, `None` not at all (not a success, or compressed).
    fn usage_events(&self, response: &ResponseHead) -> Option<bool> {
        if !(200..300).contains(&response.status()) {
            return None;
        }
        let buf = &self.upstream_buf;
        let header = |name: &[u8]| {
            response.headers().iter().find(|h| h.name.of(buf).eq_ignore_ascii_case(name)).map(|h| h.value.of(buf))
        };
        if header(b"content-encoding").is_some_and(|coding| !coding.eq_ignore_ascii_case(b"identity")) {
            return None;
        }
        Some(
            header(b"content-type")
                .is_some_and(|kind| kind.len() >= 17 && kind[..17].eq_ignore_ascii_case(b"text/event-stream")),
        )
    }

    /// Whether a token limit names a tokens-consumed header or variable and the response is a JSON
    /// body (not a stream): its body is then read in before the outbound section (up to the
    /// policies' buffering limit, as when they read it), so that both are set as in APIM.
    fn consumed_tokens_before_head(&self, ctx: &RequestCtx, response: &ResponseHead) -> bool {
        let Some(snapshot) = ctx.snapshot.as_deref() else { return false };
        self.policy.wants_consumed_tokens(&snapshot.programs) && self.usage_events(response) == Some(false)
    }

    /// Before the outbound section, when a token limit waits for the `usage` and the whole body
    /// is already here (buffered for the policies, or a `Content-Length` body that came with the
    /// head): charges it now, so that the tokens-consumed variable is there for the outbound
    /// section and the header goes out with the head. A body still to come is charged after the
    /// relay ([`Self::relay_response`]), when the head is gone (docs/policies.md "Token limits").
    fn charge_tokens_before_head(&mut self, ctx: &RequestCtx, response: &ResponseHead, body: Option<&[u8]>) {
        let Some(snapshot) = ctx.snapshot.as_deref() else { return };
        if !self.policy.charges_tokens() {
            return;
        }
        let Some(events) = self.usage_events(response) else { return };
        let start = response.head_len();
        let whole = match (body, response.framing(ctx.is_head)) {
            (Some(body), _) => Some(body),
            (None, BodyFraming::Length(len)) => usize::try_from(len)
                .ok()
                .and_then(|len| start.checked_add(len))
                .and_then(|end| self.upstream_buf.get(start..end)),
            (None, _) => None,
        };
        let Some(whole) = whole else { return };
        let mut scanner = crate::llm::UsageScanner::new(false, events);
        scanner.push(whole);
        let usage = scanner.finish();
        policy::charge_tokens(&LIMITS, &snapshot.programs, &mut self.policy, usage, Utc::now(), true);
    }

    /// The head `out` holds and a tee holding the body bytes already behind it (a small body or
    /// a policy's replacement), when `cache-store` will keep this response.
    /// The response goes out with the `Cache-Control` a hit on it will carry.
    fn begin_store(&mut self, ctx: &RequestCtx, status: u16, body: RelayedBody) -> Option<(Vec<u8>, Tee)> {
        let mut head_end = self.out.windows(4).position(|window| window == b"\r\n\r\n")? + 4;
        let mut tee = self.store_tee(ctx, status, self.out.get(..head_end)?)?;
        if let Some(directive) = self.miss_cache_control(ctx) {
            head_end = crate::proxy::cache::replace_cache_control(&mut self.out, head_end, &directive);
        }
        let head = self.out.get(..head_end)?;
        if !matches!(body, RelayedBody::Streamed) {
            tee.push(self.out.get(head_end..).unwrap_or(&[]));
        }
        Some((head.to_vec(), tee))
    }

    /// Writes the response head into `out` with the policies' edits, and behind it the body a
    /// policy replaced it with, or a small body that arrived with the head: one segment to the
    /// client instead of two (most API responses). Returns what happens to the backend's body.
    fn write_relayed_head(
        &mut self,
        ctx: &RequestCtx,
        response: &ResponseHead,
        framing: BodyFraming,
        connection: ClientConnection,
    ) -> RelayedBody {
        let programs = ctx.snapshot.as_deref().map(|snapshot| &snapshot.programs);
        match programs {
            Some(programs) if self.policy.edits_response() => {
                apply::write_response_head(
                    &mut self.out,
                    response,
                    &self.upstream_buf,
                    connection,
                    &self.policy,
                    programs,
                );
                if let Some(body) = self.policy.response_body_replacement(programs) {
                    if !ctx.is_head {
                        self.out.extend_from_slice(body);
                    }
                    return RelayedBody::Replaced;
                }
            }
            _ => forward::write_response_head(&mut self.out, response, &self.upstream_buf, connection),
        }
        let head_len = response.head_len();
        let Some(end) = coalescible_end(&self.upstream_buf, head_len, framing) else {
            return RelayedBody::Streamed;
        };
        if let Some(body) = self.upstream_buf.get(head_len..end) {
            self.out.extend_from_slice(body);
        }
        RelayedBody::Coalesced(end)
    }

    /// A response whose body a policy replaced: the backend's body is dropped, and its connection
    /// kept only when that body is all in the buffer (read whole for the policies, or arrived
    /// with the head).
    fn release_after_replaced_body(
        &self,
        worker: &WorkerCtx<S>,
        response: &ResponseHead,
        framing: BodyFraming,
        dest: Dest,
        upstream: MaybeTls<S>,
    ) {
        let whole = matches!(framing, BodyFraming::Length(_) | BodyFraming::None)
            && self.upstream_buf.len() == response.head_len() + framing_len(framing);
        if whole && response.keep_alive() {
            worker.pool.put(dest, upstream);
        } else {
            upstream.shutdown();
        }
    }

    /// Streams the response body from the backend to the client, after its head went out
    /// (copying it into the response cache's tee, when it keeps this response, and through the
    /// usage scanner, when a token metric waits for it).
    #[allow(clippy::too_many_arguments, reason = "the exchange's state, passed down rather than bundled")]
    async fn relay_body(
        &mut self,
        worker: &WorkerCtx<S>,
        response: &ResponseHead,
        framing: BodyFraming,
        mut upstream: MaybeTls<S>,
        dest: Dest,
        limits: &Limits,
        tap: &mut dyn relay::BodyTap,
    ) -> Result<u64, ProxyError> {
        let buf = std::mem::take(&mut self.upstream_buf);
        let read_limit = millis(limits.backend_response_timeout_ms);
        let (result, buf) = relay::relay(
            &mut upstream,
            &mut self.client,
            buf,
            response.head_len(),
            framing,
            read_limit,
            u64::MAX,
            Some(tap),
        )
        .await;
        self.upstream_buf = buf;
        match result {
            Ok((end, relayed)) => {
                self.release_backend(worker, response, framing, end, dest, upstream);
                Ok(relayed)
            }
            Err(error) => {
                upstream.shutdown();
                Err(response_relay_error(error))
            }
        }
    }

    /// After a response relayed up to `end` of `upstream_buf`: the backend connection goes back
    /// to the pool when the response was delimited, the backend keeps the connection open and
    /// nothing follows the body; else it is closed.
    fn release_backend(
        &self,
        worker: &WorkerCtx<S>,
        response: &ResponseHead,
        framing: BodyFraming,
        end: usize,
        dest: Dest,
        upstream: MaybeTls<S>,
    ) {
        if framing != BodyFraming::UntilClose && response.keep_alive() && end == self.upstream_buf.len() {
            worker.pool.put(dest, upstream);
        } else {
            upstream.shutdown();
        }
    }

    /// A `101 Switching Protocols`: relays the 101 (with `Upgrade` and `Connection: upgrade`),
    /// then tunnels bytes both ways until both sides are done; the connection then closes. A 101
    /// the client did not ask for is the backend's error (502): the client could not read it.
    async fn switch_protocols(
        &mut self,
        ctx: &mut RequestCtx,
        response: &ResponseHead,
        upstream: MaybeTls<S>,
    ) -> Result<(), ProxyError> {
        ctx.client_keep_alive = false;
        if !ctx.head.wants_upgrade() {
            upstream.shutdown();
            return Err(ProxyError::UnrequestedUpgrade);
        }
        forward::write_response_head(&mut self.out, response, &self.upstream_buf, ClientConnection::Upgrade);
        if let Err(error) = self.write_out().await {
            upstream.shutdown();
            return Err(ProxyError::ClientWrite(error));
        }
        ctx.response_started = true;
        ctx.status = 101;
        // Bytes either side sent after its head (already read) are the tunnel's first bytes.
        let early_client = ctx.request_end.and_then(|end| self.buf.get(end..)).unwrap_or(&[]);
        let early_backend = self.upstream_buf.get(response.head_len()..).unwrap_or(&[]);
        let moved = tunnel::tunnel(&self.client, &upstream, early_client, early_backend).await;
        tracing::debug!(?moved, "upgraded connection closed");
        upstream.shutdown();
        Ok(())
    }
}

/// What happens to the backend's response body once the head is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelayedBody {
    /// All of it arrived with the head and went out with it; it ends at this offset of `upstream_buf`.
    Coalesced(usize),
    /// A policy replaced it: the replacement went out with the head, the backend's is dropped.
    Replaced,
    /// It is streamed after the head.
    Streamed,
}

/// A body at most this large that is already buffered with its head (a response towards the
/// client, a request towards the backend) is copied behind the head and sent with it (one write,
/// one segment); larger ones are relayed from the buffer.
pub(crate) const COALESCED_BODY_BYTES_MAX: usize = 16 * 1024;

/// Where the body after the head (`buf[head_len..]`) ends, when all of it is buffered and small
/// enough to go out in the head's write.
fn coalescible_end(buf: &[u8], head_len: usize, framing: BodyFraming) -> Option<usize> {
    relay::buffered_end(buf, head_len, framing).filter(|&end| end - head_len <= COALESCED_BODY_BYTES_MAX)
}

/// Response bodies that outbound policies read or replace are buffered up to this size (the
/// brief's "buffered up to a named limit"); larger ones are streamed and the policies see none.
pub(crate) const RESPONSE_BODY_BUFFERED_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A chunked response being buffered for policies streams instead once its bytes on the wire
/// pass this, whatever its data (as [`crate::proxy::policies::CHUNKED_REQUEST_BUFFERED_WIRE_BYTES_MAX`]).
pub(crate) const CHUNKED_RESPONSE_BUFFERED_WIRE_BYTES_MAX: usize = 2 * RESPONSE_BODY_BUFFERED_BYTES_MAX;

fn framing_len(framing: BodyFraming) -> usize {
    match framing {
        BodyFraming::Length(len) => usize::try_from(len).unwrap_or(usize::MAX),
        _ => 0,
    }
}

/// Statuses that `fail-on-error-status-code="true"` sends to on-error (APIM: "400 to 599 inclusive").
const ERROR_STATUSES: std::ops::RangeInclusive<u16> = 400..=599;

/// One backend round trip's result: the final response head, the connection it came on (its
/// body not read yet), where that connection goes back to, the endpoint's in-flight count, and
/// the limits the round trip ran under (with `forward-request`'s timeout), which its relay keeps.
pub(crate) struct Exchange<S: Stream> {
    response: Box<ResponseHead>,
    upstream: MaybeTls<S>,
    dest: Dest,
    in_flight: Option<InFlight>,
    limits: Limits,
}

impl<S: Stream> Exchange<S> {
    /// The backend's status.
    pub(crate) fn status(&self) -> u16 {
        self.response.status()
    }
}

/// Client → backend relay errors: reads are the client's fault, writes the backend's.
fn request_relay_error(error: RelayError) -> ProxyError {
    match error {
        RelayError::Read(error) => ProxyError::ClientBody(error),
        RelayError::Truncated => ProxyError::ClientBodyTruncated,
        RelayError::Write(error) => ProxyError::BackendWrite(error),
        RelayError::Chunked(error) => ProxyError::ClientChunked(error),
        RelayError::TooLarge => ProxyError::ClientBodyTooLarge,
    }
}

/// Backend → client relay errors: reads are the backend's fault, writes the client's.
fn response_relay_error(error: RelayError) -> ProxyError {
    match error {
        RelayError::Read(error) => ProxyError::BackendBody(error),
        RelayError::Truncated => ProxyError::BackendBodyTruncated,
        RelayError::Write(error) => ProxyError::ClientWrite(error),
        RelayError::Chunked(error) => ProxyError::BackendChunked(error),
        // Response bodies are relayed without a size limit.
        RelayError::TooLarge => ProxyError::BackendBodyTruncated,
    }
}

/// `dest` presenting the named certificate `authentication-certificate` chose (if any) when it is
/// spoken to over TLS: its own client configuration, so its pooled connections are its own too.
fn with_backend_certificate(mut dest: Dest, snapshot: &Snapshot, certificate: Option<u32>) -> Dest {
    let named = certificate.and_then(|index| snapshot.named_tls.get(index as usize)).and_then(Option::as_ref);
    if let (Some(named), Some((_, identity))) = (named, dest.key.tls.as_mut()) {
        *identity = named.id;
    }
    dest
}
