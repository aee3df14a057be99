//! A small keep-alive HTTP/1.1 backend whose answers a test scripts: it reads each request
//! (a `Content-Length` or chunked body, decoded), records it, and answers with what the test's
//! handler returns. For redirects, error statuses and bodies the built-in echo backend cannot
//! produce; [`echo`] is a handler that shows a test what the gateway forwarded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The body, decoded when it came chunked.
    pub body: Vec<u8>,
    /// It came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// Which of the backend's connections it came on (1 for the first one accepted; 0 when read
    /// by [`read_request`] outside a [`ScriptedBackend`]).
    pub connection: u64,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the backend answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sent as these chunks (`Transfer-Encoding: chunked`, each written on its own) instead of
    /// `body` with a `Content-Length`.
    pub chunks: Option<Vec<Vec<u8>>>,
    /// Close the connection once this reply is written, without saying so: the gateway's pooled
    /// connection goes stale.
    pub close: bool,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new(), chunks: None, close: false }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A chunked body of these chunks.
    pub fn chunked(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.chunks = Some(chunks);
        self
    }

    /// Closes the connection after this reply, without a `Connection: close`.
    pub fn then_close(mut self) -> Self {
        self.close = true;
        self
    }
}

/// A handler that answers 200 with what the gateway forwarded, one `name=value` line each: the
/// request target, `Host`, `X-Forwarded-For`, `X-Forwarded-Host`, the subscription key header,
/// `Transfer-Encoding` and the (decoded) body; and the backend connection it came on in
/// `X-Backend-Conn`, so a test sees rewrites and connection reuse.
pub fn echo(request: &Request) -> Reply {
    let header = |name: &str| request.header(name).unwrap_or_default();
    let body = format!(
        "target={}\nhost={}\nxff={}\nxfh={}\nkey={}\nte={}\nbody={}\n",
        request.target,
        header("host"),
        header("x-forwarded-for"),
        header("x-forwarded-host"),
        header("ocp-apim-subscription-key"),
        header("transfer-encoding"),
        request.text(),
    );
    Reply::new(200)
        .header("Content-Type", "text/plain")
        .header("X-Backend-Conn", &request.connection.to_string())
        .body(body)
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running scripted backend; its threads end with the test process.
#[derive(Clone)]
pub struct ScriptedBackend {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicU64>,
}

impl std::fmt::Debug for ScriptedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedBackend").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl ScriptedBackend {
    /// Serves on a fresh loopback port.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"), handler)
    }

    /// Serves on `listener` (bound first when the handler must know its own address).
    pub fn on(listener: TcpListener, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicU64::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (recorded, accepted) = (Arc::clone(&requests), Arc::clone(&connections));
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let connection = accepted.fetch_add(1, Ordering::Relaxed) + 1;
                let (handler, recorded) = (Arc::clone(&handler), Arc::clone(&recorded));
                std::thread::spawn(move || serve(stream, connection, &*handler, &recorded));
            }
        });
        Self { addr, requests, connections }
    }

    /// How many connections the backend has accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// The requests whose target starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|request| request.target.starts_with(prefix)).collect()
    }
}

fn serve(stream: TcpStream, connection: u64, handler: &Handler, recorded: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    while let Some(mut request) = read_request(&mut reader) {
        request.connection = connection;
        let reply = handler(&request);
        let head_only = request.method == "HEAD";
        let close = request.header("connection").is_some_and(|value| value.eq_ignore_ascii_case("close"));
        recorded.lock().expect("requests lock").push(request);
        let mut out = format!("HTTP/1.1 {} Scripted\r\n", reply.status);
        for (name, value) in &reply.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        let written = match &reply.chunks {
            Some(chunks) => {
                out.push_str("Transfer-Encoding: chunked\r\n\r\n");
                write_chunked(&mut writer, out.as_bytes(), chunks, head_only)
            }
            None => {
                out.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
                let mut bytes = out.into_bytes();
                if !head_only {
                    bytes.extend_from_slice(&reply.body);
                }
                writer.write_all(&bytes)
            }
        };
        if written.is_err() || close || reply.close {
            return;
        }
    }
}

/// The head, then each chunk in a write of its own (so the gateway reads them apart).
fn write_chunked(writer: &mut TcpStream, head: &[u8], chunks: &[Vec<u8>], head_only: bool) -> std::io::Result<()> {
    writer.write_all(head)?;
    if head_only {
        return Ok(());
    }
    for chunk in chunks.iter().filter(|chunk| !chunk.is_empty()) {
        writer.write_all(&[format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat())?;
        writer.flush()?;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    writer.write_all(b"0\r\n\r\n")
}

/// Reads one request (`None` at the end of the stream or on anything unreadable); for backends
/// that answer with bytes of their own (interim responses, upgrades, huge bodies).
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().split(' ');
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let find = |name: &str| headers.iter().find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name));
    let chunked = find("transfer-encoding").is_some_and(|(_, value)| value.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let length: usize = find("content-length").map_or(Some(0), |(_, value)| value.parse().ok())?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        body
    };
    Some(Request { method, target, headers, body, chunked, connection: 0 })
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim_end().split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut trailer = String::new();
                reader.read_line(&mut trailer).ok()?;
                if trailer.trim_end().is_empty() {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
}
