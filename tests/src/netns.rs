//! Network namespaces for the XDP tests: a gateway namespace and a client namespace joined by a
//! veth pair, with addresses from TEST-NET-1 (192.0.2.0/24) that exist only inside them. Both
//! namespaces (and with them the veth pair) are deleted on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The gateway's address on its veth.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Client addresses on the client's veth: the first is the "good" client, the others are free
/// for tests to allow, deny or block.
pub const CLIENT_IPS: [Ipv4Addr; 3] =
    [Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3), Ipv4Addr::new(192, 0, 2, 4)];

/// Two namespaces joined by a veth pair.
#[derive(Debug)]
pub struct NetnsPair {
    pub gateway_ns: String,
    pub client_ns: String,
    /// The veth end in the gateway namespace (where XDP attaches).
    pub gateway_if: String,
    pub client_if: String,
}

impl NetnsPair {
    /// Creates the namespaces, the veth pair, addresses and routes; panics with the failing
    /// command's output when the host refuses.
    pub fn create() -> Self {
        Self::with_queues(1)
    }

    /// As [`NetnsPair::create`], with `queues` receive and transmit queues on each veth end (a
    /// multi-queue NIC: veth picks the receive queue of a redirected frame by the sending CPU,
    /// and of a packet by the transmit queue it left by).
    pub fn with_queues(queues: usize) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let tag = format!("{}{}", std::process::id() % 100_000, COUNTER.fetch_add(1, Ordering::Relaxed));
        let pair = Self {
            gateway_ns: format!("pcgw{tag}"),
            client_ns: format!("pccl{tag}"),
            gateway_if: format!("pcg{tag}"),
            client_if: format!("pcc{tag}"),
        };
        run(&["ip", "netns", "add", &pair.gateway_ns]);
        run(&["ip", "netns", "add", &pair.client_ns]);
        let queues = queues.to_string();
        let counts = ["numtxqueues", &queues, "numrxqueues", &queues];
        run(&[
            &["ip", "link", "add", &pair.gateway_if],
            &counts[..],
            &["type", "veth", "peer", "name", &pair.client_if],
            &counts[..],
        ]
        .concat());
        run(&["ip", "link", "set", &pair.gateway_if, "netns", &pair.gateway_ns]);
        run(&["ip", "link", "set", &pair.client_if, "netns", &pair.client_ns]);
        let gw = |args: &[&str]| run(&[&["ip", "-n", &pair.gateway_ns], args].concat());
        let cl = |args: &[&str]| run(&[&["ip", "-n", &pair.client_ns], args].concat());
        gw(&["addr", "add", &format!("{GATEWAY_IP}/24"), "dev", &pair.gateway_if]);
        for ip in CLIENT_IPS {
            cl(&["addr", "add", &format!("{ip}/24"), "dev", &pair.client_if]);
        }
        for (ns, dev) in [(&pair.gateway_ns, &pair.gateway_if), (&pair.client_ns, &pair.client_if)] {
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// Runs `f` on a thread inside the client namespace (sockets it makes live there).
    pub fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.client_ns, f)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.gateway_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a fresh thread that has joined network namespace `name`.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(format!("/var/run/netns/{name}")).expect("open the netns file");
                // SAFETY: setns(2) on this thread with a netns fd we hold open; affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns into {name}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("netns thread panicked")
    })
}

/// Connects from `source` to `target` within `timeout` (call inside the client namespace).
pub fn connect_from(source: Ipv4Addr, target: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    socket.connect_timeout(&target.into(), timeout)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

fn run(args: &[&str]) {
    let output = Command::new(args[0]).args(&args[1..]).output().expect("run ip");
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}
