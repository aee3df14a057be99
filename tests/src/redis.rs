//! A real `redis-server` (Debian's package; `.ci/run` installs it) on a free loopback port, for
//! the external cache's tests. Killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait;

/// A running `redis-server` with no persistence.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers `PING`.
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run redis-server ({error}): apt-get install redis-server"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = Self { child, addr };
        wait::eventually_within(Duration::from_secs(10), "redis-server to answer PING", || server.ping());
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Whether it answers `PING` with `+PONG`.
    pub fn ping(&self) -> bool {
        self.command("PING\r\n").is_some_and(|reply| reply.starts_with("+PONG"))
    }

    /// Sends one inline command and returns the first reply bytes (enough for small replies).
    pub fn command(&self, line: &str) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(line.as_bytes()).ok()?;
        let mut reply = [0u8; 4096];
        let read = stream.read(&mut reply).ok()?;
        Some(String::from_utf8_lossy(&reply[..read]).into_owned())
    }

    /// Keys matching `pattern` (`KEYS`), as the raw RESP reply.
    pub fn keys(&self, pattern: &str) -> String {
        self.command(&format!("KEYS {pattern}\r\n")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}
