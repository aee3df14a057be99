//! The echo backend (`portcullis echo-backend`): a real HTTP/1.1 server that answers every
//! request with a JSON description of it, plus query knobs that tests use to shape the answer.
//!
//! Knobs: `echo-status=NNN` answers with that status; `echo-bytes=N` answers with N bytes of `x`
//! (text/plain, chunked, 16 KiB per chunk); `echo-delay-ms=N` waits before answering.

mod repeat_body;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use repeat_body::RepeatBody;

/// The body is echoed up to 64 KiB; `body_bytes` still counts all of it.
pub const ECHO_BODY_BYTES_MAX: usize = 64 * 1024;
/// Chunk size of an `echo-bytes` answer.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// `echo-bytes` above 1 GiB is refused: enough for any test, bounded against mistakes.
pub const ECHO_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// `echo-delay-ms` above 10 minutes is refused: longer than any timeout we test.
pub const ECHO_DELAY_MS_MAX: u64 = 600_000;
/// The first stdout line, which `portcullis up` reads to learn the address.
pub const LISTENING_PREFIX: &str = "echo backend listening on http://";

/// Why the echo backend stopped.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("echo backend I/O: {0}")]
    Io(#[from] std::io::Error),
}

type EchoBody = BoxBody<Bytes, Infallible>;

/// Runs the echo backend on `listen` until SIGTERM or SIGINT (then returns `Ok`).
pub fn run(listen: SocketAddr) -> Result<(), EchoError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(listen).await.map_err(|source| EchoError::Bind { addr: listen, source })?;
        let addr = listener.local_addr()?;
        // Handlers first: whoever reads the ready line may signal us at once.
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{LISTENING_PREFIX}{addr}")?;
        stdout.flush()?;
        drop(stdout);
        tokio::select! {
            result = serve(listener) => result,
            _ = terminate.recv() => Ok(()),
            _ = interrupt.recv() => Ok(()),
        }
    })
}

/// Serves connections from `listener` until an accept fails for good.
pub async fn serve(listener: TcpListener) -> Result<(), EchoError> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of fds or a connection reset before accept: transient, keep serving.
            Err(error) if is_transient(&error) => {
                tracing::warn!("echo backend: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(|request| async move { Ok::<_, Infallible>(answer(request).await) });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.keep_alive(true);
            if let Err(error) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!("echo backend: connection ended: {error}");
            }
        });
    }
}

fn is_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(error.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted)
        || matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// The query knobs of one request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Knobs {
    status: Option<StatusCode>,
    bytes: Option<u64>,
    delay_ms: Option<u64>,
}

fn knobs(query: &str) -> Result<Knobs, String> {
    let mut knobs = Knobs::default();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "echo-status" => {
                let status = value.parse::<u16>().ok().filter(|s| (200..=599).contains(s));
                let status = status.and_then(|s| StatusCode::from_u16(s).ok());
                knobs.status = Some(status.ok_or_else(|| format!("echo-status={value}: use 200 to 599"))?);
            }
            "echo-bytes" => {
                let bytes = value.parse::<u64>().ok().filter(|n| *n <= ECHO_BYTES_MAX);
                knobs.bytes = Some(bytes.ok_or_else(|| format!("echo-bytes={value}: use 0 to {ECHO_BYTES_MAX}"))?);
            }
            "echo-delay-ms" => {
                let delay = value.parse::<u64>().ok().filter(|n| *n <= ECHO_DELAY_MS_MAX);
                knobs.delay_ms =
                    Some(delay.ok_or_else(|| format!("echo-delay-ms={value}: use 0 to {ECHO_DELAY_MS_MAX}"))?);
            }
            _ => {}
        }
    }
    Ok(knobs)
}

async fn answer(request: Request<Incoming>) -> Response<EchoBody> {
    let query = request.uri().query().unwrap_or("").to_owned();
    let knobs = match knobs(&query) {
        Ok(knobs) => knobs,
        Err(message) => return json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": message })),
    };
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in request.headers() {
        headers.entry(name.as_str().to_owned()).or_default().push(String::from_utf8_lossy(value.as_bytes()).into());
    }
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let (body_bytes, body) = match read_body(request.into_body()).await {
        Ok(read) => read,
        Err(error) => return json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": error.to_string() })),
    };
    if let Some(delay_ms) = knobs.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let status = knobs.status.unwrap_or(StatusCode::OK);
    if let Some(bytes) = knobs.bytes {
        let mut response = Response::new(RepeatBody::new(bytes).boxed());
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
        return response;
    }
    let description = serde_json::json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_bytes": body_bytes,
        "body": String::from_utf8_lossy(&body),
        "server": "portcullis-echo",
    });
    json(status, &description)
}

/// Reads the whole body, keeping at most [`ECHO_BODY_BYTES_MAX`] of it.
async fn read_body(mut body: Incoming) -> Result<(u64, Vec<u8>), hyper::Error> {
    let mut total = 0u64;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            total += data.len() as u64;
            let room = ECHO_BODY_BYTES_MAX.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok((total, kept))
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<EchoBody> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_knobs_and_refuses_bad_ones() {
        assert_eq!(knobs("").unwrap(), Knobs::default());
        let parsed = knobs("a=1&echo-status=418&echo-bytes=5&echo-delay-ms=7").unwrap();
        assert_eq!(parsed, Knobs { status: Some(StatusCode::IM_A_TEAPOT), bytes: Some(5), delay_ms: Some(7) });
        assert!(knobs("echo-status=99").is_err());
        assert!(knobs("echo-status=abc").is_err());
        assert!(knobs(&format!("echo-bytes={}", ECHO_BYTES_MAX + 1)).is_err());
        assert!(knobs("echo-delay-ms=-1").is_err());
    }
}
