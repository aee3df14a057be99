//! The peers compared in the flood table, and what receives the flood for each on the
//! gateway's end of the veth.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use aya::Ebpf;
use aya::programs::{Xdp, XdpMode};
use portcullis_contract::xdp::XdpRules;
use portcullis_dataplane::xdp::kernel::Kernel;
use portcullis_dataplane::xdp::{XdpOptions, XdpPlane};
use portcullis_tests::TempDir;
use portcullis_tests::netns::{NetnsPair, in_netns};

use crate::generator::{Flood, GENERATOR_CPU};
use crate::system;
use crate::{BENCH_OBJECT, DENIED_BASE, FLOOD_SOURCES, GATEWAY_IP, LIMITED_BASE, PORT, SPREAD_SOURCES};

/// Datagrams per `recvmmsg` in the user-space peer (a batching reader, as fast as user space gets).
const READ_BATCH: usize = 64;
/// How long the reader waits for a datagram before it checks whether to stop.
const READ_TIMEOUT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    BareDrop,
    XdpDenylisted,
    XdpDenylistedSpread,
    XdpOverRate,
    Nftables,
    UserSpace,
    KernelStack,
}

impl Peer {
    pub(crate) const ALL: [Peer; 7] = [
        Peer::BareDrop,
        Peer::XdpDenylisted,
        Peer::XdpDenylistedSpread,
        Peer::XdpOverRate,
        Peer::Nftables,
        Peer::UserSpace,
        Peer::KernelStack,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Peer::BareDrop => "bare XDP_DROP",
            Peer::XdpDenylisted => "portcullis XDP, denylisted SYN flood, 1,024 sources",
            Peer::XdpDenylistedSpread => "portcullis XDP, denylisted SYN flood, 65,536 sources (cache misses)",
            Peer::XdpOverRate => "portcullis XDP, allowlisted over-rate SYN flood, 1,024 sources",
            Peer::Nftables => "nftables netdev ingress drop (10k-prefix set)",
            Peer::UserSpace => "rejection in user space: UDP flood, reader runs the data plane's admit",
            Peer::KernelStack => "no filter: TCP stack answers the SYNs (SYN cookies)",
        }
    }

    pub(crate) fn flood(self) -> Flood {
        match self {
            Peer::XdpOverRate => Flood { base: LIMITED_BASE, sources: FLOOD_SOURCES, udp: false },
            Peer::XdpDenylistedSpread => Flood { base: DENIED_BASE, sources: SPREAD_SOURCES, udp: false },
            Peer::UserSpace => Flood { base: DENIED_BASE, sources: FLOOD_SOURCES, udp: true },
            _ => Flood { base: DENIED_BASE, sources: FLOOD_SOURCES, udp: false },
        }
    }

    /// The gateway's own program is under test (these rows count against the targets).
    pub(crate) fn is_portcullis(self) -> bool {
        matches!(self, Peer::XdpDenylisted | Peer::XdpDenylistedSpread | Peer::XdpOverRate)
    }
}

/// What receives the flood on the gateway's end of the veth.
#[allow(dead_code, reason = "each variant holds what keeps its program, rules or socket alive until drop")]
pub(crate) enum Sink {
    Program(Ebpf),
    Gateway(Box<Kernel>),
    Nftables(String, Option<Ebpf>),
    UserSpace(Option<Ebpf>, Reader),
    Stack(Option<Ebpf>, std::net::TcpListener),
}

impl Sink {
    /// Starts what receives the flood for `peer`. `skbs`: the flood comes from a packet socket,
    /// so the rows without a program of their own need none (with live frames they need
    /// `pass_all` to take redirected frames at all).
    pub(crate) fn start(pair: &NetnsPair, peer: Peer, rules: &XdpRules, skbs: bool) -> Result<Self> {
        let interface = pair.gateway_if.clone();
        Ok(match peer {
            Peer::BareDrop => Sink::Program(attach_program(pair, "bare_drop")?),
            Peer::XdpDenylisted | Peer::XdpDenylistedSpread | Peer::XdpOverRate => {
                let rules = rules.clone();
                let kernel = in_netns(&pair.gateway_ns, move || -> Result<Kernel> {
                    let mut kernel = Kernel::load()?;
                    kernel.set_listeners(&[SocketAddr::from(([0, 0, 0, 0], PORT))])?;
                    kernel.apply(&rules)?;
                    kernel.attach(&interface)?;
                    Ok(kernel)
                })?;
                Sink::Gateway(Box::new(kernel))
            }
            Peer::Nftables => {
                let pass = pass_for_redirects(pair, skbs)?;
                nftables_deny(pair, rules)?;
                Sink::Nftables(pair.gateway_ns.clone(), pass)
            }
            Peer::UserSpace => {
                let pass = pass_for_redirects(pair, skbs)?;
                Sink::UserSpace(pass, Reader::start(pair, rules)?)
            }
            Peer::KernelStack => {
                let pass = pass_for_redirects(pair, skbs)?;
                let listener = in_netns(&pair.gateway_ns, || std::net::TcpListener::bind((GATEWAY_IP, PORT)))?;
                Sink::Stack(pass, listener)
            }
        })
    }

    /// The gateway program's counters by verdict reason, for the gateway's rows.
    pub(crate) fn program_counters(&self) -> Result<Option<[u64; portcullis_ebpf_common::VERDICT_REASONS as usize]>> {
        match self {
            Sink::Gateway(kernel) => Ok(Some(kernel.counters()?)),
            _ => Ok(None),
        }
    }

    /// Stops the user-space reader, if any: (datagrams read, its CPU time in ns).
    pub(crate) fn finish(&mut self) -> Result<Option<(u64, u64)>> {
        match self {
            Sink::UserSpace(_, reader) => reader.stop().map(Some),
            _ => Ok(None),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::Nftables(ns, _) = self {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "delete", "table", "netdev", "portcullis_bench"])
                .status();
        }
    }
}

fn nftables_deny(pair: &NetnsPair, rules: &XdpRules) -> Result<()> {
    let elements: Vec<String> = rules.deny.iter().map(ToString::to_string).collect();
    let script = format!(
        "table netdev portcullis_bench {{\n set deny {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }} }}\n \
         chain ingress {{ type filter hook ingress device \"{}\" priority 0; ip saddr @deny drop; }}\n}}\n",
        elements.join(", "),
        pair.gateway_if
    );
    let path = std::env::temp_dir().join(format!("portcullis-bench-{}.nft", std::process::id()));
    std::fs::write(&path, script)?;
    let status = Command::new("ip").args(["netns", "exec", &pair.gateway_ns, "nft", "-f"]).arg(&path).status();
    let _ = std::fs::remove_file(&path);
    if !status.is_ok_and(|s| s.success()) {
        bail!("nft failed (apt-get install nftables)");
    }
    Ok(())
}

/// Rejection by the data plane in user space: a UDP socket on the gateway's address whose reader
/// takes every datagram (`recvmmsg`, [`READ_BATCH`] at a time) and puts its source through
/// [`XdpPlane::admit`], the check the data plane runs at accept when the kernel plane is off,
/// with the same rules. The reader runs on the CPU the generator does not use.
pub(crate) struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(u64, u64)>>>,
    _blocks_dir: TempDir,
}

impl Reader {
    fn start(pair: &NetnsPair, rules: &XdpRules) -> Result<Self> {
        let blocks_dir = TempDir::new("bench-blocks");
        let listen = SocketAddr::from((GATEWAY_IP, PORT));
        let options = XdpOptions { disabled: true, interfaces: Vec::new() };
        let plane = XdpPlane::start(&options, blocks_dir.path().join("xdp-blocks.json"), &[listen])?;
        plane.apply(1, rules);
        let socket = in_netns(&pair.gateway_ns, || UdpSocket::bind(listen))?;
        socket.set_read_timeout(Some(READ_TIMEOUT))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            system::pin_to(1 - GENERATOR_CPU);
            read_and_refuse(&socket, &plane, &stopping)
        });
        Ok(Self { stop, thread: Some(thread), _blocks_dir: blocks_dir })
    }

    fn stop(&mut self) -> Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().context("reader already stopped")?;
        thread.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))?
    }
}

/// The reader's loop: (datagrams read, CPU time in ns). Every datagram of the flood must be
/// refused; one that is admitted fails the run.
fn read_and_refuse(socket: &UdpSocket, plane: &XdpPlane, stop: &AtomicBool) -> Result<(u64, u64)> {
    let started = system::thread_cpu_ns();
    let mut buffers = vec![[0u8; 256]; READ_BATCH];
    // SAFETY: sockaddr_in and mmsghdr are plain C structs for which all-zero is valid.
    let mut sources: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; READ_BATCH];
    let mut iovecs: Vec<libc::iovec> = buffers
        .iter_mut()
        .map(|buffer| libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() })
        .collect();
    // SAFETY: as above.
    let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; READ_BATCH];
    let mut read = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for (index, header) in headers.iter_mut().enumerate() {
            header.msg_hdr.msg_name = (&raw mut sources[index]).cast();
            header.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            header.msg_hdr.msg_iov = &raw mut iovecs[index];
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live buffer, iovec and address of ours, sized as stated.
        let count = unsafe {
            libc::recvmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), READ_BATCH as u32, 0, std::ptr::null_mut())
        };
        if count <= 0 {
            continue; // the read timeout: look at `stop` again
        }
        for source in &sources[..count as usize] {
            let ip = IpAddr::V4(Ipv4Addr::from(u32::from_be(source.sin_addr.s_addr)));
            if plane.admit(ip) {
                bail!("user space admitted {ip}, a denylisted flood source");
            }
        }
        read += count as u64;
    }
    Ok((read, system::thread_cpu_ns().saturating_sub(started)))
}

/// A default route for the gateway's namespace, so that its replies to the flood's sources
/// (SYN-ACKs) leave as a real host's would leave by its NIC: out of a second veth pair whose far
/// end drops them in XDP. Without a route the stack gives up on a SYN before it queues a request
/// (no SYN-ACK, no SYN cookie), which is not what a host on the Internet does. The namespace's
/// deletion removes the pair; the returned program must stay alive for the run.
pub(crate) fn reply_route(pair: &NetnsPair) -> Result<Ebpf> {
    let tag = pair.gateway_if.trim_start_matches("pcg");
    let (near, far) = (format!("pcr{tag}"), format!("pcq{tag}"));
    let ip = |args: &[&str]| -> Result<()> {
        let status = Command::new("ip").args(["-n", &pair.gateway_ns]).args(args).status()?;
        if !status.success() {
            bail!("ip {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    ip(&["link", "add", &near, "type", "veth", "peer", "name", &far])?;
    ip(&["addr", "add", "10.255.0.1/30", "dev", &near])?;
    ip(&["link", "set", &near, "up"])?;
    ip(&["link", "set", &far, "up"])?;
    let far_mac = system::mac(&pair.gateway_ns, &far)?;
    let lladdr = far_mac.iter().map(|byte| format!("{byte:02x}")).collect::<Vec<_>>().join(":");
    ip(&["neigh", "add", "10.255.0.2", "lladdr", &lladdr, "dev", &near, "nud", "permanent"])?;
    ip(&["route", "add", "default", "via", "10.255.0.2", "dev", &near])?;
    in_netns(&pair.gateway_ns, move || {
        let mut ebpf = Ebpf::load(BENCH_OBJECT)?;
        let program: &mut Xdp = ebpf.program_mut("bare_drop").context("program")?.try_into()?;
        program.load()?;
        program.attach(&far, XdpMode::Driver)?;
        Ok(ebpf)
    })
}

/// `pass_all` on the gateway's veth end where the flood is redirected XDP frames (veth takes
/// those only with a program attached); nothing where it is skbs (a host without XDP).
pub(crate) fn pass_for_redirects(pair: &NetnsPair, skbs: bool) -> Result<Option<Ebpf>> {
    if skbs { Ok(None) } else { attach_program(pair, "pass_all").map(Some) }
}

/// Loads `name` from the bench object and attaches it natively to the gateway's veth end.
pub(crate) fn attach_program(pair: &NetnsPair, name: &'static str) -> Result<Ebpf> {
    let interface = pair.gateway_if.clone();
    in_netns(&pair.gateway_ns, move || {
        let mut ebpf = Ebpf::load(BENCH_OBJECT)?;
        let program: &mut Xdp = ebpf.program_mut(name).context("program")?.try_into()?;
        program.load()?;
        // A just-killed gateway's link may take a moment to go: retry while the device is busy.
        let mut tries = 0;
        while let Err(error) = program.attach(&interface, XdpMode::Driver) {
            tries += 1;
            if tries == 20 {
                return Err(error.into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(ebpf)
    })
}
