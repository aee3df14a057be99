//! The backend and outbound phases: forward the request, read the response head, relay the response.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis_contract::model::Limits;
use portcullis_contract::program::Section;
use portcullis_contract::stats::WorkerSlot;
use rustls::pki_types::ServerName;

use crate::http::forward::{self, ClientConnection, Forwarding};
use crate::http::response::{self, ResponseHead};
use crate::http::{BodyFraming, HEAD_BYTES_INITIAL, Version};
use crate::io::maybe_tls::MaybeTls;
use crate::io::tls::TlsStream;
use crate::io::{ReadError, Stream, read_within};
use crate::policy::apply;
use crate::proxy::policies::{Response, SectionEnd};
use crate::proxy::relay::{self, RelayError};
use crate::proxy::{Connection, ProxyError, RequestCtx};
use crate::upstream::{self, BackendKey, ConnectError};
use crate::worker::WorkerCtx;

/// What the gateway answers to `Expect: 100-continue` once the inbound phase has let the request through.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

impl<S: Stream> Connection<S> {
    /// Runs the backend phase (the operation's backend policies; their `forward-request` calls
    /// the backend), the outbound phase and the response relay.
    pub(super) async fn forward(&mut self, worker: &WorkerCtx<S>, ctx: &mut RequestCtx) -> Result<(), ProxyError> {
        // The inbound phase set both before returning Continue.
        let (Some(snapshot), Some(route)) = (ctx.snapshot.clone(), ctx.route) else {
            return Err(ProxyError::BackendUnavailable);
        };
        let api = snapshot.config.apis.get(route.api as usize).ok_or(ProxyError::BackendUnavailable)?;
        let mut forward = match self.run_section(ctx, Section::Backend, false, None).await {
            SectionEnd::Forward(forward) => forward,
            SectionEnd::Continue => return self.answer_without_backend(ctx).await,
            SectionEnd::Respond => return Err(ProxyError::PolicyResponse),
            SectionEnd::Failed(error) => return Err(error),
        };
        loop {
            let mut limits = snapshot.config.limits;
            // forward-request's timeout, within the gateway's own bound.
            limits.backend_response_timeout_ms = limits.backend_response_timeout_ms.min(forward.timeout_ms.max(1));
            let key = backend_key(&snapshot, route.api, self.policy.backend_override())?;
            let forwarding = Forwarding {
                base_path: &api.backend.base_path,
                authority: &api.backend.authority,
                remainder_start: route.remainder,
                client_ip: self.peer.ip(),
                tls: self.client.is_tls(),
            };
            if self.policy.edits_request() {
                apply::write_request_head(
                    &mut self.out,
                    &ctx.head,
                    &self.buf,
                    &forwarding,
                    &self.policy,
                    &snapshot.programs,
                );
                if let Some(body) = self.policy.request_body_replacement(&snapshot.programs) {
                    self.out.extend_from_slice(body);
                    ctx.request_body_replaced = true;
                }
            } else {
                forward::write_request_head(&mut self.out, &ctx.head, &self.buf, &forwarding);
            }
            let (response, upstream) = self.backend(worker, ctx, &key, &limits).await?;
            let replayable = ctx.request_body_replaced
                || relay::buffered_end(&self.buf, ctx.head.head_len(), ctx.head.framing()).is_some();
            let resumed =
                self.run_section(ctx, Section::Backend, true, Some(Response { head: &response, body: None })).await;
            let end = match resumed {
                SectionEnd::Continue => None,
                // A retry around forward-request: send the request again if it still can be.
                SectionEnd::Forward(next) if replayable => {
                    upstream.shutdown();
                    self.response_heads.put_back(response);
                    forward = next;
                    continue;
                }
                SectionEnd::Forward(_) => Some(Err(ProxyError::RetryNotReplayable)),
                SectionEnd::Respond => Some(Err(ProxyError::PolicyResponse)),
                SectionEnd::Failed(error) => Some(Err(error)),
            };
            let relayed = match end {
                Some(result) => {
                    upstream.shutdown();
                    result
                }
                None => self.outbound(worker, ctx, &response, upstream, key, &limits).await,
            };
            self.response_heads.put_back(response);
            return relayed;
        }
    }

    /// A backend section without `forward-request` ran to its end: the response is what the
    /// policies made of an empty 200 (status, body), after the outbound section.
    async fn answer_without_backend(&mut self, ctx: &mut RequestCtx) -> Result<(), ProxyError> {
        match self.run_section(ctx, Section::Outbound, false, None).await {
            SectionEnd::Failed(error) => return Err(error),
            SectionEnd::Continue | SectionEnd::Respond | SectionEnd::Forward(_) => {}
        }
        self.policy.respond_without_backend();
        Err(ProxyError::PolicyResponse)
    }

    /// Backend phase: sends the request (head in `out`, then the body) and reads the final
    /// response head. A reused connection that fails before any response byte is replaced
    /// once, when the whole request body is still buffered (a stale keep-alive connection).
    async fn backend(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        key: &BackendKey,
        limits: &Limits,
    ) -> Result<(Box<ResponseHead>, MaybeTls<S>), ProxyError> {
        let replayable = relay::buffered_end(&self.buf, ctx.head.head_len(), ctx.head.framing()).is_some();
        let (mut upstream, mut reused) = match worker.pool.take(key) {
            Some(stream) => (stream, true),
            None => (connect(worker, key, limits, ctx.snapshot.as_deref().map(|local| &**local)).await?, false),
        };
        loop {
            match self.exchange_head(ctx, &mut upstream, limits).await {
                Ok(head) => return Ok((head, upstream)),
                Err(error) if reused && replayable && error.retryable() => {
                    tracing::debug!(%error, addr = %key.addr, "reused backend connection failed before responding; retrying");
                    upstream.shutdown();
                    upstream = connect(worker, key, limits, ctx.snapshot.as_deref().map(|local| &**local)).await?;
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
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        let (result, out) = upstream.write_range(out, 0..len).await;
        self.out = out;
        result.map_err(ProxyError::BackendWrite)?;
        let head_len = ctx.head.head_len();
        let framing = ctx.head.framing();
        if ctx.request_body_replaced {
            // The replacement went out with the head; the client's body is skipped, which keeps
            // the connection only when it is all buffered.
            ctx.request_end = relay::buffered_end(&self.buf, head_len, framing);
            if ctx.request_end.is_none() {
                ctx.client_keep_alive = false;
                ctx.request_end = Some(head_len);
            }
        } else if framing == BodyFraming::None {
            ctx.request_end = Some(head_len);
        } else {
            // A body that is all buffered is relayed without compacting the buffer (and can be replayed).
            let fully_buffered = relay::buffered_end(&self.buf, head_len, framing).is_some();
            if ctx.head.expects_continue() && !ctx.sent_continue && !fully_buffered {
                ctx.sent_continue = true;
                let (result, _) = self.client.write_range(CONTINUE.to_vec(), 0..CONTINUE.len()).await;
                result.map_err(ProxyError::ClientWrite)?;
            }
            let buf = std::mem::take(&mut self.buf);
            let read_limit = millis(limits.request_header_timeout_ms);
            let (result, buf) = relay::relay(&mut self.client, upstream, buf, head_len, framing, read_limit).await;
            self.buf = buf;
            match result {
                Ok(end) => ctx.request_end = Some(end),
                Err(error) => {
                    if !fully_buffered {
                        // The buffer was compacted mid-body: this connection cannot serve another request.
                        ctx.client_keep_alive = false;
                    }
                    return Err(request_relay_error(error));
                }
            }
        }
        self.read_response_head(ctx, upstream, limits).await
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

    /// Outbound phase: the operation's outbound policies on the response (its body buffered
    /// first when they read or replace it), then the relay.
    async fn outbound(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        response: &ResponseHead,
        mut upstream: MaybeTls<S>,
        key: BackendKey,
        limits: &Limits,
    ) -> Result<(), ProxyError> {
        let body = match crate::proxy::policies::uses_body(ctx, &[Section::Outbound], false) {
            true => match self.buffer_response_body(ctx, response, &mut upstream, limits).await {
                Ok(body) => body,
                Err(error) => {
                    upstream.shutdown();
                    return Err(error);
                }
            },
            false => None,
        };
        let body = body.and_then(|range| self.upstream_buf.get(range).map(<[u8]>::to_vec));
        let end = self
            .run_section(ctx, Section::Outbound, false, Some(Response { head: response, body: body.as_deref() }))
            .await;
        match end {
            SectionEnd::Continue | SectionEnd::Forward(_) => {
                self.relay_response(worker, ctx, response, upstream, key, limits).await
            }
            SectionEnd::Respond => {
                upstream.shutdown();
                Err(ProxyError::PolicyResponse)
            }
            SectionEnd::Failed(error) => {
                upstream.shutdown();
                Err(error)
            }
        }
    }

    /// Reads the whole `Content-Length` response body into `upstream_buf` (after the head), up
    /// to [`RESPONSE_BODY_BUFFERED_BYTES_MAX`]; returns its range. Other framings are not
    /// buffered yet: policies then see no body.
    async fn buffer_response_body(
        &mut self,
        ctx: &RequestCtx,
        response: &ResponseHead,
        upstream: &mut MaybeTls<S>,
        limits: &Limits,
    ) -> Result<Option<std::ops::Range<usize>>, ProxyError> {
        let BodyFraming::Length(len) = response.framing(ctx.is_head) else { return Ok(None) };
        let Ok(len) = usize::try_from(len) else { return Ok(None) };
        if len > RESPONSE_BODY_BUFFERED_BYTES_MAX {
            return Ok(None);
        }
        let start = response.head_len();
        let end = start + len;
        let deadline = Instant::now() + millis(limits.backend_response_timeout_ms);
        while self.upstream_buf.len() < end {
            self.upstream_buf.reserve(end - self.upstream_buf.len());
            let buf = std::mem::take(&mut self.upstream_buf);
            let (result, buf) = read_within(upstream, buf, deadline.saturating_duration_since(Instant::now())).await;
            self.upstream_buf = buf;
            match result {
                Ok(0) => return Err(ProxyError::BackendBodyTruncated),
                Ok(_) => {}
                Err(error) => return Err(ProxyError::BackendBody(error)),
            }
        }
        Ok(Some(start..end))
    }

    /// Writes the response head to the client and streams the body; pools the backend
    /// connection when the response completed and the backend allows keep-alive.
    async fn relay_response(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        response: &ResponseHead,
        mut upstream: MaybeTls<S>,
        key: BackendKey,
        limits: &Limits,
    ) -> Result<(), ProxyError> {
        let framing = response.framing(ctx.is_head);
        let close = !ctx.client_keep_alive || worker.drain.is_draining() || framing == BodyFraming::UntilClose;
        let connection = match (close, ctx.head.version()) {
            (true, _) => ClientConnection::Close,
            (false, Version::Http10) => ClientConnection::KeepAliveHttp10,
            (false, Version::Http11) => ClientConnection::KeepAlive,
        };
        ctx.client_keep_alive = !close;
        let programs = ctx.snapshot.as_deref().map(|snapshot| &snapshot.programs);
        let mut replaced = false;
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
                    replaced = true;
                    if !ctx.is_head {
                        self.out.extend_from_slice(body);
                    }
                }
            }
            _ => forward::write_response_head(&mut self.out, response, &self.upstream_buf, connection),
        }
        if let Err(error) = self.write_out().await {
            upstream.shutdown();
            return Err(ProxyError::ClientWrite(error));
        }
        ctx.response_started = true;
        ctx.status = self.policy.status_code().unwrap_or_else(|| response.status());
        if replaced {
            // The backend's body is dropped: its connection is kept only when the body is all in
            // the buffer (read whole for the policies, or arrived with the head).
            let whole = matches!(framing, BodyFraming::Length(_) | BodyFraming::None)
                && self.upstream_buf.len() == response.head_len() + framing_len(framing);
            if whole && response.keep_alive() {
                worker.pool.put(key, upstream);
            } else {
                upstream.shutdown();
            }
            return Ok(());
        }
        let buf = std::mem::take(&mut self.upstream_buf);
        let read_limit = millis(limits.backend_response_timeout_ms);
        let (result, buf) =
            relay::relay(&mut upstream, &mut self.client, buf, response.head_len(), framing, read_limit).await;
        self.upstream_buf = buf;
        match result {
            Ok(end)
                if framing != BodyFraming::UntilClose && response.keep_alive() && end == self.upstream_buf.len() =>
            {
                worker.pool.put(key, upstream);
                Ok(())
            }
            Ok(_) => {
                upstream.shutdown();
                Ok(())
            }
            Err(error) => {
                upstream.shutdown();
                Err(response_relay_error(error))
            }
        }
    }
}

/// Response bodies that outbound policies read or replace are buffered up to this size (the
/// brief's "buffered up to a named limit"); larger ones are streamed and the policies see none.
pub(crate) const RESPONSE_BODY_BUFFERED_BYTES_MAX: usize = 4 * 1024 * 1024;

fn framing_len(framing: BodyFraming) -> usize {
    match framing {
        BodyFraming::Length(len) => usize::try_from(len).unwrap_or(usize::MAX),
        _ => 0,
    }
}

/// Where the backend request goes: `set-backend-service`'s URL if a policy set one (an IP
/// literal, or a host resolved when the snapshot was loaded), else the API's backend; over TLS
/// for `https://`, verified for the URL's host.
fn backend_key(
    snapshot: &crate::snapshot::Snapshot,
    api: u32,
    backend_override: Option<&crate::policy::state::BackendOverride>,
) -> Result<BackendKey, ProxyError> {
    let Some(target) = backend_override else {
        let addr = snapshot.backends.get(api as usize).copied().flatten().ok_or(ProxyError::BackendUnavailable)?;
        let name = snapshot.backend_names.get(api as usize).cloned().flatten();
        return Ok(BackendKey { addr, tls: name.map(|name| (name, snapshot.backend_tls.id)) });
    };
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let addr = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, target.port),
        Err(_) => snapshot.resolved_host(&target.host, target.port).ok_or(ProxyError::BackendUnavailable)?,
    };
    let tls = match target.scheme {
        portcullis_contract::model::Scheme::Http => None,
        portcullis_contract::model::Scheme::Https => Some((
            ServerName::try_from(host.to_owned()).map_err(|_| ProxyError::BackendUnavailable)?,
            snapshot.backend_tls.id,
        )),
    };
    Ok(BackendKey { addr, tls })
}

/// Opens a fresh backend connection, counting it; for an `https://` backend, completes the TLS
/// handshake (within the connect timeout) with the snapshot's backend client configuration.
async fn connect<S: Stream>(
    worker: &WorkerCtx<S>,
    key: &BackendKey,
    limits: &Limits,
    snapshot: Option<&crate::snapshot::Snapshot>,
) -> Result<MaybeTls<S>, ProxyError> {
    WorkerSlot::add(&worker.slot().backend_connects, 1);
    let limit = millis(limits.backend_connect_timeout_ms);
    let plain: S = upstream::connect(key.addr, limit).await?;
    let (Some((name, _)), Some(snapshot)) = (&key.tls, snapshot) else {
        return Ok(MaybeTls::Plain(plain));
    };
    let config = std::sync::Arc::clone(&snapshot.backend_tls.config);
    match tokio::time::timeout(limit, TlsStream::open(plain, config, name.clone())).await {
        Ok(Ok(stream)) => Ok(MaybeTls::Tls(Box::new(stream))),
        Ok(Err(error)) => Err(ProxyError::Connect(ConnectError::Tls(error))),
        Err(_) => Err(ProxyError::Connect(ConnectError::TimedOut)),
    }
}

/// Client → backend relay errors: reads are the client's fault, writes the backend's.
fn request_relay_error(error: RelayError) -> ProxyError {
    match error {
        RelayError::Read(error) => ProxyError::ClientBody(error),
        RelayError::Truncated => ProxyError::ClientBodyTruncated,
        RelayError::Write(error) => ProxyError::BackendWrite(error),
        RelayError::Chunked(error) => ProxyError::ClientChunked(error),
    }
}

/// Backend → client relay errors: reads are the backend's fault, writes the client's.
fn response_relay_error(error: RelayError) -> ProxyError {
    match error {
        RelayError::Read(error) => ProxyError::BackendBody(error),
        RelayError::Truncated => ProxyError::BackendBodyTruncated,
        RelayError::Write(error) => ProxyError::ClientWrite(error),
        RelayError::Chunked(error) => ProxyError::BackendChunked(error),
    }
}
