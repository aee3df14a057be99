//! Runs the real `portcullis` binary: the echo backend over a real socket, and `config check`.
#![allow(clippy::unwrap_used)] // reason: test helpers panic on broken fixtures; that is how a test fails

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PORTCULLIS: &str = env!("CARGO_BIN_EXE_portcullis");

/// An echo backend child, killed (by pid) when dropped.
struct Echo {
    child: Child,
    addr: SocketAddr,
}

impl Echo {
    fn start() -> Self {
        let mut child = Command::new(PORTCULLIS)
            .args(["echo-backend", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("echo backend listening on http://").unwrap().parse().unwrap();
        Self { child, addr }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal HTTP/1.1 response: status, lower-cased headers, de-chunked body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn read_response(reader: &mut BufReader<TcpStream>) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = Response { status, headers, body: Vec::new() };
    if response.header("transfer-encoding") == Some("chunked") {
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let length: usize = response.header("content-length").unwrap().parse().unwrap();
        response.body.resize(length, 0);
        reader.read_exact(&mut response.body).unwrap();
    }
    response
}

#[test]
fn echo_backend_describes_requests_and_honours_knobs() {
    let echo = Echo::start();
    let stream = TcpStream::connect(echo.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);

    writer
        .write_all(b"POST /a/b?x=1&x=2 HTTP/1.1\r\nHost: h\r\nX-Two: 1\r\nX-Two: 2\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let response = read_response(&mut reader);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/a/b");
    assert_eq!(json["query"], "x=1&x=2");
    assert_eq!(json["headers"]["x-two"], serde_json::json!(["1", "2"]));
    assert_eq!(json["body_bytes"], 5);
    assert_eq!(json["body"], "hello");
    assert_eq!(json["server"], "portcullis-echo");

    // Same connection (keep-alive): status knob.
    writer.write_all(b"GET /?echo-status=503 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut reader).status, 503);

    // Streamed bytes: chunked, 16 KiB chunks.
    writer.write_all(b"GET /?echo-bytes=40000 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let response = read_response(&mut reader);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.body.len(), 40_000);
    assert!(response.body.iter().all(|&b| b == b'x'));

    // Delay.
    let started = std::time::Instant::now();
    writer.write_all(b"GET /?echo-delay-ms=300 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut reader).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A bad knob is a 400 with a reason.
    writer.write_all(b"GET /?echo-status=42 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let response = read_response(&mut reader);
    assert_eq!(response.status, 400);
    assert!(String::from_utf8_lossy(&response.body).contains("echo-status=42"));
}

#[test]
fn echo_backend_exits_zero_on_sigterm() {
    let mut echo = Echo::start();
    let pid = rustix::process::Pid::from_raw(echo.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = echo.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn config_check_reports_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("portcullis-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("apis/echo")).unwrap();
    std::fs::create_dir_all(dir.join("subscriptions")).unwrap();
    std::fs::write(
        dir.join("apis/echo/api.toml"),
        "name = \"E\"\npath = \"echo\"\nbackend-url = \"{{echo-backend-url}}\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("subscriptions/demo.toml"),
        "name = \"Demo\"\n\nscope = \"/apis/ech\"\nprimary-key = \"a\"\nsecondary-key = \"b\"\n",
    )
    .unwrap();
    let output = Command::new(PORTCULLIS).args(["config", "check", "--config"]).arg(&dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: unknown API \"ech\" in subscription scope"), "{stderr}");
    assert!(stderr.contains(&format!("{}:3:9", dir.join("subscriptions/demo.toml").display())), "{stderr}");
    assert!(stderr.contains("   |         ^^^^^^^^^^^"), "{stderr}");

    std::fs::write(
        dir.join("subscriptions/demo.toml"),
        "name = \"Demo\"\nscope = \"/apis/echo\"\nprimary-key = \"a\"\nsecondary-key = \"b\"\n",
    )
    .unwrap();
    let output = Command::new(PORTCULLIS).args(["config", "check", "--config"]).arg(&dir).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("config OK: "));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctl_without_a_gateway_says_what_to_do() {
    let output =
        Command::new(PORTCULLIS).args(["ctl", "--data-dir", "/nonexistent/portcullis", "status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no gateway is running with data dir /nonexistent/portcullis"), "{stderr}");
}
