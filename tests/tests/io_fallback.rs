//! Where io_uring is refused the way Docker's default seccomp profile refuses it
//! (`io_uring_setup` fails with EPERM), `--io auto` falls back to epoll and serves, and
//! `--io uring` refuses to start with a clear message. The filter is installed in the child
//! process only, between fork and exec.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test helpers fail the test by panicking

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use portcullis_tests::backend::{self, ScriptedBackend};
use portcullis_tests::http::Connection;
use portcullis_tests::{TempDir, bins, snapshot};

/// Installs a seccomp filter that fails `io_uring_setup` with EPERM and allows everything else.
fn refuse_io_uring() -> std::io::Result<()> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_DATA_NR: u32 = 0;
    const SECCOMP_DATA_ARCH: u32 = 4;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let filter = [
        // Another architecture's syscall numbers mean something else: refuse them all.
        libc::sock_filter { code: LD_W_ABS, jt: 0, jf: 0, k: SECCOMP_DATA_ARCH },
        libc::sock_filter { code: JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_KILL_PROCESS },
        libc::sock_filter { code: LD_W_ABS, jt: 0, jf: 0, k: SECCOMP_DATA_NR },
        libc::sock_filter { code: JEQ_K, jt: 0, jf: 1, k: libc::SYS_io_uring_setup as u32 },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32 },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
    ];
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: prctl and seccomp with valid arguments; `program` outlives the calls, and the
    // kernel copies the filter. Only async-signal-safe calls (this runs between fork and exec).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &raw const program) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn data_dir() -> (TempDir, ScriptedBackend) {
    let dir = TempDir::new("io-fallback");
    let backend = ScriptedBackend::start(backend::echo);
    snapshot::write_last_good(dir.path(), 1, &snapshot::two_apis(backend.addr, "echo"));
    (dir, backend)
}

fn dataplane_under_seccomp(dir: &TempDir, io: &str) -> std::process::Child {
    let mut command = Command::new(bins::dataplane());
    command
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--workers", "1", "--io", io])
        .args(["--xdp", "off"])
        .stderr(Stdio::piped());
    // SAFETY: the closure only calls async-signal-safe functions (prctl, seccomp).
    unsafe { command.pre_exec(refuse_io_uring) };
    command.spawn().unwrap()
}

#[test]
fn auto_falls_back_to_epoll_when_seccomp_refuses_io_uring() {
    let (dir, _backend) = data_dir();
    let mut child = dataplane_under_seccomp(&dir, "auto");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let listening = loop {
        let line = lines.next().expect("the data plane exited before listening").unwrap();
        seen.push(line.clone());
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.to_owned();
        }
    };
    assert!(
        seen.iter().any(|line| line.contains("io_uring unavailable") && line.contains("falling back to epoll")),
        "{seen:#?}"
    );
    assert!(listening.contains("io=epoll"), "{listening}");
    let addr: std::net::SocketAddr = listening.split(' ').next().unwrap().parse().unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    let mut client = Connection::open(addr).unwrap();
    let response = client.round_trip(b"GET /open/x HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.text().contains("target=/x\n"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn uring_only_refuses_to_start_when_seccomp_refuses_io_uring() {
    let (dir, _backend) = data_dir();
    let child = dataplane_under_seccomp(&dir, "uring");
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("io_uring"), "the error names io_uring: {stderr}");
}
