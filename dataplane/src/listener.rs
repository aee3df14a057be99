//! Listening sockets: one per worker on the same address, spread by the kernel with SO_REUSEPORT.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept-queue length per worker socket: absorbs connection bursts (the kernel caps it at
/// `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds `count` sockets to `addr`; when its port is 0, the others take the port the first got.
pub fn bind_all(addr: SocketAddr, count: usize) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let listener = bind_one(addr)?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_an_ephemeral_port() {
        let listeners = bind_all("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = listeners[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(listeners.iter().all(|l| l.local_addr().unwrap().port() == port));
    }

    #[test]
    fn reports_a_taken_port() {
        // Without SO_REUSEPORT on the first socket, the second bind must fail.
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(bind_all(plain.local_addr().unwrap(), 1).is_err());
    }
}
