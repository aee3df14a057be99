//! The calls `send-request` and `send-one-way-request` make, from the worker that runs the
//! request: an HTTP/1.1 exchange on the worker's own backend pool (a kept-alive connection to the
//! same address is reused, and goes back after a complete response), over TLS with the
//! snapshot's backend client configuration for `https://`, the whole call bounded by its timeout.
//! `wait` collects several calls in flight at once ([`collect`]); one-way calls are handed to the
//! worker's own task ([`OneWayCalls`]) so that the request goes on without them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use portcullis_contract::model::PoolSettings;
use rustls::pki_types::ServerName;

use crate::http::chunked::{self, ChunkedScanner};
use crate::http::redirect::{self, Scheme};
use crate::http::{BodyFraming, response};
use crate::io::Stream;
use crate::io::maybe_tls::MaybeTls;
use crate::policy::{CallFailure, OutgoingRequest, SENT_RESPONSE_BYTES_MAX, SentResponse};
use crate::proxy::relay::BODY_READ_BYTES;
use crate::proxy::target::{connect, host_address};
use crate::snapshot::Snapshot;
use crate::upstream::{BackendKey, Dest};
use crate::worker::ctx::{LocalSnapshot, WorkerCtx};

/// Calls one `wait` may have in flight at once; more in one `wait` fail the section.
pub(crate) const WAIT_CALLS_MAX: usize = 32;
/// One-way calls a worker keeps queued or in flight; past it new ones are dropped (and logged):
/// a backend that stops answering must not grow a worker's memory without bound.
pub(crate) const ONE_WAY_CALLS_MAX: usize = 1024;

/// A call in flight for a `wait`: its future, then its outcome.
pub(crate) type PendingCall<'w> =
    Pin<Box<dyn Future<Output = (crate::policy::SendCall, Result<SentResponse, CallFailure>)> + 'w>>;

/// Makes `request`'s call within `timeout`.
pub(crate) async fn call<S: Stream>(
    worker: &WorkerCtx<S>,
    snapshot: &Snapshot,
    request: &OutgoingRequest,
    timeout: Duration,
) -> Result<SentResponse, CallFailure> {
    match tokio::time::timeout(timeout, exchange(worker, snapshot, request)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(CallFailure::Timeout),
    }
}

/// Waits for the calls in `pending`: all of them, or with `any` the first to complete (the
/// others are dropped, which closes their connections). Returns the outcomes in completion order.
pub(crate) async fn collect<'w>(
    pending: &mut Vec<PendingCall<'w>>,
    any: bool,
) -> Vec<(crate::policy::SendCall, Result<SentResponse, CallFailure>)> {
    let mut done = Vec::with_capacity(pending.len());
    std::future::poll_fn(|cx| {
        let mut index = 0;
        while index < pending.len() {
            match pending[index].as_mut().poll(cx) {
                Poll::Ready(outcome) => {
                    done.push(outcome);
                    drop(pending.swap_remove(index));
                    if any {
                        return Poll::Ready(());
                    }
                }
                Poll::Pending => index += 1,
            }
        }
        if pending.is_empty() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    pending.clear();
    done
}

/// The URL of a call, parsed: absolute `http://` or `https://` only.
fn parse_url(url: &str) -> Option<redirect::Url> {
    let base = redirect::Url { scheme: Scheme::Http, host: String::new(), port: 80, target: "/".to_owned() };
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return None;
    }
    redirect::resolve(url.as_bytes(), &base).filter(|parsed| !parsed.host.is_empty())
}

/// The URL of a call to named backend `id`: its first endpoint, its base path, then `target`
/// (a path and query); `None` when the snapshot has no such backend.
fn backend_url(snapshot: &Snapshot, id: &str, target: &str) -> Option<redirect::Url> {
    let backend = snapshot.config.backends.iter().find(|backend| backend.id == id)?;
    let endpoint = backend.endpoints.first()?;
    let scheme = match backend.scheme {
        portcullis_contract::model::Scheme::Http => Scheme::Http,
        portcullis_contract::model::Scheme::Https => Scheme::Https,
    };
    let host =
        if endpoint.host.contains(':') { format!("[{}]", endpoint.host) } else { endpoint.host.to_ascii_lowercase() };
    Some(redirect::Url { scheme, host, port: endpoint.port, target: format!("{}{target}", backend.base_path) })
}

/// The call: address, connection (pooled, else fresh), round trip; a reused connection that
/// fails before any response byte is replaced once by a fresh one (a stale keep-alive).
async fn exchange<S: Stream>(
    worker: &WorkerCtx<S>,
    snapshot: &Snapshot,
    request: &OutgoingRequest,
) -> Result<SentResponse, CallFailure> {
    let url = match &request.backend {
        Some(id) => backend_url(snapshot, id, &request.url),
        None => parse_url(&request.url),
    };
    let url = url.ok_or(CallFailure::InvalidUrl)?;
    let host = url.bare_host().to_owned();
    let addr = host_address(worker, snapshot, &host, url.port).await.map_err(|_| CallFailure::ConnectionFailure)?;
    let tls = match url.scheme {
        Scheme::Http => None,
        Scheme::Https => {
            // `authentication-certificate` inside the call: its own client configuration (and so
            // its own pooled connections), as for forward-request.
            let named =
                request.certificate.and_then(|index| snapshot.named_tls.get(index as usize)).and_then(Option::as_ref);
            let identity = named.map_or(snapshot.backend_tls.id, |named| named.id);
            Some((ServerName::try_from(host).map_err(|_| CallFailure::InvalidUrl)?, identity))
        }
    };
    let dest = Dest { key: BackendKey { addr, tls }, pool: PoolSettings::default() };
    let head = request_bytes(request, &url);
    let is_head = request.method.eq_ignore_ascii_case("HEAD");
    if let Some(stream) = worker.pool.take(&dest) {
        match round_trip(stream, &head, is_head).await {
            Ok((response, stream)) => return Ok(release(worker, dest, response, stream)),
            Err(Attempt::Stale) => {}
            Err(Attempt::Failed(failure)) => return Err(failure),
        }
    }
    let limits = snapshot.config.limits;
    let stream =
        connect(worker, &dest.key, &limits, Some(snapshot)).await.map_err(|_| CallFailure::ConnectionFailure)?;
    match round_trip(stream, &head, is_head).await {
        Ok((response, stream)) => Ok(release(worker, dest, response, stream)),
        Err(Attempt::Stale) => Err(CallFailure::ConnectionFailure),
        Err(Attempt::Failed(failure)) => Err(failure),
    }
}

/// The response, its connection pooled when it may serve another call.
fn release<S: Stream>(worker: &WorkerCtx<S>, dest: Dest, response: Received, stream: MaybeTls<S>) -> SentResponse {
    if response.reusable {
        worker.pool.put(dest, stream);
    } else {
        stream.shutdown();
    }
    response.response
}

/// The request on the wire: request line, `Host`, the built headers, the body's length, the body.
fn request_bytes(request: &OutgoingRequest, url: &redirect::Url) -> Vec<u8> {
    let body = request.body.as_deref().unwrap_or(&[]);
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(request.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(url.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(url.authority().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &request.headers {
        let framing = ["host", "content-length", "transfer-encoding", "connection"];
        if framing.iter().any(|skipped| skipped.eq_ignore_ascii_case(name)) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let method_has_body =
        !matches!(request.method.to_ascii_uppercase().as_str(), "GET" | "HEAD" | "DELETE" | "OPTIONS");
    if request.body.is_some() || method_has_body {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// How one attempt failed.
enum Attempt {
    /// Nothing came back (a reused connection the peer had closed): another connection may try.
    Stale,
    Failed(CallFailure),
}

/// A whole response, and whether its connection may be pooled.
struct Received {
    response: SentResponse,
    reusable: bool,
}

/// Sends `head` on `stream` and reads the whole final response.
async fn round_trip<S: Stream>(
    mut stream: MaybeTls<S>,
    head: &[u8],
    is_head: bool,
) -> Result<(Received, MaybeTls<S>), Attempt> {
    let (written, _) = stream.write_range(head.to_vec(), 0..head.len()).await;
    if written.is_err() {
        stream.shutdown();
        return Err(Attempt::Stale);
    }
    let mut buf: Vec<u8> = Vec::with_capacity(BODY_READ_BYTES);
    let parsed = loop {
        match response::parse(&buf) {
            Ok(Some(parsed)) if parsed.is_interim() => {
                buf.drain(..parsed.head_len());
                continue;
            }
            Ok(Some(parsed)) => break parsed,
            Ok(None) => {}
            Err(_) => return Err(failed(stream, CallFailure::InvalidResponse)),
        }
        if buf.len() > crate::http::HEAD_BYTES_INITIAL * 16 {
            return Err(failed(stream, CallFailure::InvalidResponse));
        }
        let had_bytes = !buf.is_empty();
        match read_more(&mut stream, &mut buf).await {
            Ok(0) | Err(()) if !had_bytes => {
                stream.shutdown();
                return Err(Attempt::Stale);
            }
            Ok(0) | Err(()) => return Err(failed(stream, CallFailure::ConnectionFailure)),
            Ok(_) => {}
        }
    };
    let head_len = parsed.head_len();
    let framing = parsed.framing(is_head);
    let body = match read_body(&mut stream, &mut buf, head_len, framing).await {
        Ok(body) => body,
        Err(failure) => return Err(failed(stream, failure)),
    };
    let headers = parsed
        .headers()
        .iter()
        .map(|header| {
            (
                String::from_utf8_lossy(header.name.of(&buf)).into_owned(),
                String::from_utf8_lossy(header.value.of(&buf)).into_owned(),
            )
        })
        .collect();
    let response = SentResponse {
        status: parsed.status(),
        reason: String::from_utf8_lossy(parsed.reason(&buf)).into_owned(),
        headers,
        body: Rc::from(body.as_slice()),
    };
    let delimited = matches!(framing, BodyFraming::Length(_) | BodyFraming::None | BodyFraming::Chunked);
    let reusable = delimited && parsed.keep_alive() && buf.len() == head_len + body_wire_len(framing, &buf, head_len);
    Ok((Received { response, reusable }, stream))
}

/// Bytes of the body on the wire after the head (what [`read_body`] consumed).
fn body_wire_len(framing: BodyFraming, buf: &[u8], head_len: usize) -> usize {
    match framing {
        BodyFraming::Length(len) => usize::try_from(len).unwrap_or(usize::MAX),
        BodyFraming::None => 0,
        // A chunked body is read to its end and nothing else: all of what follows the head.
        BodyFraming::Chunked | BodyFraming::UntilClose => buf.len().saturating_sub(head_len),
    }
}

fn failed<S: Stream>(stream: MaybeTls<S>, failure: CallFailure) -> Attempt {
    stream.shutdown();
    Attempt::Failed(failure)
}

/// One read into `buf`'s spare room; `Ok(0)` is the peer's close.
async fn read_more<S: Stream>(stream: &mut MaybeTls<S>, buf: &mut Vec<u8>) -> Result<usize, ()> {
    buf.reserve(BODY_READ_BYTES);
    let taken = std::mem::take(buf);
    // The call's own timeout bounds the read; this one only keeps the type of the seam.
    let (result, taken) = crate::io::read_within(stream, taken, Duration::from_secs(24 * 3600)).await;
    *buf = taken;
    result.map_err(|_| ())
}

/// Reads the body after the head (at `head_len` of `buf`) whole, by its framing; returns its data.
async fn read_body<S: Stream>(
    stream: &mut MaybeTls<S>,
    buf: &mut Vec<u8>,
    head_len: usize,
    framing: BodyFraming,
) -> Result<Vec<u8>, CallFailure> {
    let too_large = |len: usize| len > SENT_RESPONSE_BYTES_MAX;
    match framing {
        BodyFraming::None => Ok(Vec::new()),
        BodyFraming::Length(len) => {
            let len = usize::try_from(len).map_err(|_| CallFailure::InvalidResponse)?;
            if too_large(len) {
                return Err(CallFailure::InvalidResponse);
            }
            while buf.len() < head_len + len {
                match read_more(stream, buf).await {
                    Ok(0) | Err(()) => return Err(CallFailure::ConnectionFailure),
                    Ok(_) => {}
                }
            }
            Ok(buf[head_len..head_len + len].to_vec())
        }
        BodyFraming::Chunked => {
            let mut scanner = ChunkedScanner::new();
            let mut scanned = head_len;
            loop {
                let scan = scanner.scan(buf.get(scanned..).unwrap_or(&[])).map_err(|_| CallFailure::InvalidResponse)?;
                scanned += scan.consumed;
                if too_large(buf.len() - head_len) {
                    return Err(CallFailure::InvalidResponse);
                }
                if scan.done {
                    buf.truncate(scanned);
                    let size = usize::try_from(scanner.data_bytes()).unwrap_or(0);
                    return chunked::decode(&buf[head_len..scanned], size).map_err(|_| CallFailure::InvalidResponse);
                }
                match read_more(stream, buf).await {
                    Ok(0) | Err(()) => return Err(CallFailure::ConnectionFailure),
                    Ok(_) => {}
                }
            }
        }
        BodyFraming::UntilClose => loop {
            if too_large(buf.len() - head_len) {
                return Err(CallFailure::InvalidResponse);
            }
            match read_more(stream, buf).await {
                Ok(0) => return Ok(buf[head_len..].to_vec()),
                Err(()) => return Err(CallFailure::ConnectionFailure),
                Ok(_) => {}
            }
        },
    }
}

/// One queued `send-one-way-request`: what to send, on which snapshot, within how long.
struct OneWayCall {
    snapshot: Rc<LocalSnapshot>,
    request: OutgoingRequest,
    timeout: Duration,
}

/// A worker's one-way calls: queued by requests, sent by the worker's own task
/// ([`send_one_way_calls`]), each in a task of its own so that none waits for another.
#[derive(Default)]
pub(crate) struct OneWayCalls {
    queue: RefCell<VecDeque<OneWayCall>>,
    in_flight: Cell<usize>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for OneWayCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneWayCalls").field("in_flight", &self.in_flight.get()).finish()
    }
}

impl OneWayCalls {
    /// Queues a call; `false` (the call dropped) past [`ONE_WAY_CALLS_MAX`].
    pub(crate) fn queue(&self, snapshot: Rc<LocalSnapshot>, request: OutgoingRequest, timeout: Duration) -> bool {
        let mut queue = self.queue.borrow_mut();
        if queue.len() + self.in_flight.get() >= ONE_WAY_CALLS_MAX {
            return false;
        }
        queue.push_back(OneWayCall { snapshot, request, timeout });
        drop(queue);
        self.wake.notify_one();
        true
    }
}

/// The worker's task that sends its one-way calls, each in a task of its own.
pub(crate) async fn send_one_way_calls<S: Stream>(worker: Rc<WorkerCtx<S>>) {
    loop {
        worker.one_way.wake.notified().await;
        loop {
            let Some(next) = worker.one_way.queue.borrow_mut().pop_front() else { break };
            let calls = &worker.one_way;
            calls.in_flight.set(calls.in_flight.get() + 1);
            let worker = Rc::clone(&worker);
            tokio::task::spawn_local(async move {
                let outcome = call(&worker, &next.snapshot, &next.request, next.timeout).await;
                if let Err(failure) = outcome {
                    tracing::debug!(?failure, "send-one-way-request failed");
                }
                let calls = &worker.one_way;
                calls.in_flight.set(calls.in_flight.get().saturating_sub(1));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_absolute_http_or_https() {
        let url = parse_url("https://api.example.com:8443/v1/x?y=1").unwrap_or_else(|| panic!("parsed"));
        assert_eq!(
            (url.scheme, url.host.as_str(), url.port, url.target.as_str()),
            (Scheme::Https, "api.example.com", 8443, "/v1/x?y=1")
        );
        let url = parse_url("http://127.0.0.1").unwrap_or_else(|| panic!("parsed"));
        assert_eq!((url.port, url.target.as_str()), (80, "/"));
        assert!(parse_url("/relative").is_none());
        assert!(parse_url("ftp://host/").is_none());
        assert!(parse_url("").is_none());
    }

    #[test]
    fn the_request_carries_host_headers_and_length() {
        let request = OutgoingRequest {
            method: "POST".into(),
            url: "http://h:81/p?q".into(),
            headers: vec![("X-A".into(), "1".into()), ("Content-Length".into(), "99".into())],
            body: Some(Rc::from(&b"hi"[..])),
            certificate: None,
            backend: None,
        };
        let url = parse_url(&request.url).unwrap_or_else(|| panic!("parsed"));
        assert_eq!(
            String::from_utf8_lossy(&request_bytes(&request, &url)),
            "POST /p?q HTTP/1.1\r\nHost: h:81\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi"
        );
        let get = OutgoingRequest { url: "http://h/".into(), ..OutgoingRequest::new() };
        let url = parse_url(&get.url).unwrap_or_else(|| panic!("parsed"));
        assert_eq!(String::from_utf8_lossy(&request_bytes(&get, &url)), "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    }
}
