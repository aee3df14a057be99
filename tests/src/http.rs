//! A small HTTP/1.1 client over `std::net::TcpStream`, exact about bytes on the wire: the tests
//! check status lines, headers and bodies byte for byte, and reuse connections on purpose.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a test waits for any single response before calling it a failure.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(20);

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// One client connection, kept alive across requests; plain TCP unless built with [`Connection::over`]
/// (e.g. on a TLS stream).
#[derive(Debug)]
pub struct Connection<S = TcpStream> {
    stream: S,
    buffer: Vec<u8>,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> std::io::Result<Self> {
        Self::from_stream(TcpStream::connect_timeout(&addr, Duration::from_secs(5))?)
    }

    /// Wraps a stream connected elsewhere (e.g. from a chosen source address).
    pub fn from_stream(stream: TcpStream) -> std::io::Result<Self> {
        stream.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, buffer: Vec::new() })
    }

    /// True when the server has closed this connection (EOF on read within `wait`).
    pub fn is_closed_by_peer(&mut self, wait: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(wait));
        let mut byte = [0u8; 1];
        let closed = matches!(self.stream.read(&mut byte), Ok(0) | Err(_));
        let _ = self.stream.set_read_timeout(Some(RESPONSE_TIMEOUT));
        closed
    }
}

impl<S: Read + Write> Connection<S> {
    /// Speaks HTTP over an already connected stream (set its timeouts first).
    pub fn over(stream: S) -> Self {
        Self { stream, buffer: Vec::new() }
    }

    /// The stream underneath.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The stream underneath, mutably (a TLS test seals records itself); bytes already read stay
    /// in this connection's buffer.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The stream underneath, to speak something other than HTTP on it (after an upgrade).
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// Sends raw bytes (for malformed or pipelined requests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends raw bytes and reads one response.
    pub fn round_trip(&mut self, bytes: &[u8]) -> std::io::Result<Response> {
        self.send_raw(bytes)?;
        self.read_response(false)
    }

    /// Sends a GET with the given extra headers and reads the response.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.send_raw(request.as_bytes())?;
        self.read_response(false)
    }

    /// Reads one response. `head_only` for responses to HEAD.
    pub fn read_response(&mut self, head_only: bool) -> std::io::Result<Response> {
        let (status, headers, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&self.buffer) {
                Ok(httparse::Status::Complete(len)) => {
                    let headers = parsed
                        .headers
                        .iter()
                        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect::<Vec<_>>();
                    break (parsed.code.unwrap_or(0), headers, len);
                }
                Ok(httparse::Status::Partial) => self.fill()?,
                Err(e) => return Err(invalid(format!("bad response head: {e}"))),
            }
        };
        self.buffer.drain(..head_len);
        let find = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let body = if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
            Vec::new()
        } else if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            self.read_chunked()?
        } else if let Some(length) = find("content-length") {
            let length: usize = length.trim().parse().map_err(|_| invalid("bad content-length".into()))?;
            self.read_exact_body(length)?
        } else {
            self.read_to_close()?
        };
        Ok(Response { status, headers, body })
    }

    /// Reads raw bytes through the next empty line (CRLF CRLF): a head exactly as it was sent
    /// (an interim 1xx, a 101, the head of a HEAD response), or a chunked body's last chunk and
    /// trailers.
    pub fn read_through_empty_line(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(self.buffer.drain(..end + 4).collect());
            }
            self.fill()?;
        }
    }

    /// Reads what comes next into `out`, buffered bytes first; `Ok(0)` at the end of the stream.
    pub fn read_some(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buffer.is_empty() {
            return self.stream.read(out);
        }
        let n = out.len().min(self.buffer.len());
        out[..n].copy_from_slice(&self.buffer[..n]);
        self.buffer.drain(..n);
        Ok(n)
    }

    /// Reads everything until the peer closes (a tunnel's last bytes), buffered bytes first.
    pub fn read_to_close(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = std::mem::take(&mut self.buffer);
        self.stream.read_to_end(&mut body)?;
        Ok(body)
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-response"));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_exact_body(&mut self, length: usize) -> std::io::Result<Vec<u8>> {
        while self.buffer.len() < length {
            self.fill()?;
        }
        Ok(self.buffer.drain(..length).collect())
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers until the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size)?);
            if !self.read_line()?.is_empty() {
                return Err(invalid("chunk not followed by CRLF".into()));
            }
        }
    }
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    Connection::open(addr)?.get(path, headers)
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}
