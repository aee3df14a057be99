//! The backend and outbound phases: forward the request, read the response head, relay the response.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis_contract::model::Limits;
use portcullis_contract::stats::WorkerSlot;

use crate::http::forward::{self, ClientConnection, Forwarding};
use crate::http::response::{self, ResponseHead};
use crate::http::{BodyFraming, HEAD_BYTES_INITIAL, Version};
use crate::io::{ReadError, Stream, read_within};
use crate::proxy::relay::{self, RelayError};
use crate::proxy::{Connection, ProxyError, RequestCtx, Verdict};
use crate::upstream;
use crate::worker::WorkerCtx;

/// What the gateway answers to `Expect: 100-continue` once the inbound phase has let the request through.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

impl<S: Stream> Connection<S> {
    /// Runs the backend phase, the outbound phase and the response relay.
    pub(super) async fn forward(&mut self, worker: &WorkerCtx<S>, ctx: &mut RequestCtx) -> Result<(), ProxyError> {
        // The inbound phase set both before returning Continue.
        let (Some(snapshot), Some(route)) = (ctx.snapshot.clone(), ctx.route) else {
            return Err(ProxyError::BackendUnavailable);
        };
        let api = snapshot.config.apis.get(route.api as usize).ok_or(ProxyError::BackendUnavailable)?;
        let addr =
            snapshot.backends.get(route.api as usize).copied().flatten().ok_or(ProxyError::BackendUnavailable)?;
        let limits = snapshot.config.limits;
        let forwarding = Forwarding {
            base_path: &api.backend.base_path,
            authority: &api.backend.authority,
            remainder_start: route.remainder,
            client_ip: self.peer.ip(),
        };
        forward::write_request_head(&mut self.out, &ctx.head, &self.buf, &forwarding);
        let (response, upstream) = self.backend(worker, ctx, addr, &limits).await?;
        let relayed = match self.outbound(ctx, &response) {
            Verdict::Respond(answer) => {
                upstream.shutdown();
                Err(ProxyError::Rejected(answer))
            }
            Verdict::Continue => self.relay_response(worker, ctx, &response, upstream, addr, &limits).await,
        };
        self.response_heads.put_back(response);
        relayed
    }

    /// Backend phase: sends the request (head in `out`, then the body) and reads the final
    /// response head. A reused connection that fails before any response byte is replaced
    /// once, when the whole request body is still buffered (a stale keep-alive connection).
    async fn backend(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        addr: SocketAddr,
        limits: &Limits,
    ) -> Result<(Box<ResponseHead>, S), ProxyError> {
        let replayable = relay::buffered_end(&self.buf, ctx.head.head_len(), ctx.head.framing()).is_some();
        let (mut upstream, mut reused) = match worker.pool.take(addr) {
            Some(stream) => (stream, true),
            None => (connect(worker, addr, limits).await?, false),
        };
        loop {
            match self.exchange_head(ctx, &mut upstream, limits).await {
                Ok(head) => return Ok((head, upstream)),
                Err(error) if reused && replayable && error.retryable() => {
                    tracing::debug!(%error, %addr, "reused backend connection failed before responding; retrying");
                    upstream.shutdown();
                    upstream = connect(worker, addr, limits).await?;
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
        upstream: &mut S,
        limits: &Limits,
    ) -> Result<Box<ResponseHead>, ProxyError> {
        let out = std::mem::take(&mut self.out);
        let len = out.len();
        let (result, out) = upstream.write_range(out, 0..len).await;
        self.out = out;
        result.map_err(ProxyError::BackendWrite)?;
        let head_len = ctx.head.head_len();
        let framing = ctx.head.framing();
        if framing == BodyFraming::None {
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
        upstream: &mut S,
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

    /// Outbound phase: runs on the final response head before it is relayed (outbound policies
    /// will run here and may replace the response).
    fn outbound(&self, _ctx: &mut RequestCtx, _response: &ResponseHead) -> Verdict {
        Verdict::Continue
    }

    /// Writes the response head to the client and streams the body; pools the backend
    /// connection when the response completed and the backend allows keep-alive.
    async fn relay_response(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        response: &ResponseHead,
        mut upstream: S,
        addr: SocketAddr,
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
        forward::write_response_head(&mut self.out, response, &self.upstream_buf, connection);
        if let Err(error) = self.write_out().await {
            upstream.shutdown();
            return Err(ProxyError::ClientWrite(error));
        }
        ctx.response_started = true;
        ctx.status = response.status();
        let buf = std::mem::take(&mut self.upstream_buf);
        let read_limit = millis(limits.backend_response_timeout_ms);
        let (result, buf) =
            relay::relay(&mut upstream, &mut self.client, buf, response.head_len(), framing, read_limit).await;
        self.upstream_buf = buf;
        match result {
            Ok(end)
                if framing != BodyFraming::UntilClose && response.keep_alive() && end == self.upstream_buf.len() =>
            {
                worker.pool.put(addr, upstream);
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

/// Opens a fresh backend connection, counting it.
async fn connect<S: Stream>(worker: &WorkerCtx<S>, addr: SocketAddr, limits: &Limits) -> Result<S, ProxyError> {
    WorkerSlot::add(&worker.slot().backend_connects, 1);
    Ok(upstream::connect(addr, millis(limits.backend_connect_timeout_ms)).await?)
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
