//! Probes io_uring once at build time so the io_uring variants of the end-to-end tests are
//! reported as ignored, with the reason, on machines that refuse io_uring (e.g. Docker's default
//! seccomp profile or `kernel.io_uring_disabled`), instead of failing or silently passing.
//! Likewise for the XDP tests: `no_bpf` where BPF maps cannot be created (no CAP_BPF), and
//! `no_netns` where network namespaces cannot be made (not root, or no `ip` command), and
//! `no_redis` where `redis-server` is not installed (the external cache's tests), and
//! `no_chromium` where Debian's `chromium` and `chromedriver` are not (the portal's browser test).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_io_uring)");
    println!("cargo::rustc-check-cfg=cfg(no_bpf)");
    println!("cargo::rustc-check-cfg=cfg(no_netns)");
    println!("cargo::rustc-check-cfg=cfg(no_redis)");
    println!("cargo::rustc-check-cfg=cfg(no_chromium)");
    println!("cargo::rerun-if-changed=build.rs");
    if !bpf_available() {
        println!("cargo::warning=BPF is unavailable here (no CAP_BPF): the XDP tests will be ignored");
        println!("cargo::rustc-cfg=no_bpf");
    }
    if !netns_available() {
        println!(
            "cargo::warning=network namespaces are unavailable (not root, or no `ip`): the netns tests will be ignored"
        );
        println!("cargo::rustc-cfg=no_netns");
    }
    if !redis_available() {
        println!(
            "cargo::warning=redis-server is not installed (apt-get install redis-server): the external cache tests will be ignored"
        );
        println!("cargo::rustc-cfg=no_redis");
    }
    if !chromium_available() {
        println!(
            "cargo::warning=chromium or chromedriver is not installed (apt-get install chromium chromium-driver): the portal's browser test will be ignored"
        );
        println!("cargo::rustc-cfg=no_chromium");
    }
    if !io_uring_available() {
        println!("cargo::warning=io_uring is unavailable here: the io_uring end-to-end variants will be ignored");
        println!("cargo::rustc-cfg=no_io_uring");
    }
}

fn redis_available() -> bool {
    std::process::Command::new("redis-server").arg("--version").output().is_ok_and(|out| out.status.success())
}

fn chromium_available() -> bool {
    ["chromium", "chromedriver"].iter().all(|program| {
        std::process::Command::new(program).arg("--version").output().is_ok_and(|out| out.status.success())
    })
}

fn io_uring_available() -> bool {
    // io_uring_setup(2) with 1 entry and zeroed params; a ring fd means io_uring works.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params` (struct io_uring_params, 120 bytes).
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return false;
    }
    // SAFETY: closing the fd we just got.
    unsafe { libc::close(fd as i32) };
    true
}

fn bpf_available() -> bool {
    // bpf(BPF_MAP_CREATE) of a one-entry array: a map fd means we may load XDP programs.
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    let mut attr = [0u32; 32];
    attr[0] = BPF_MAP_TYPE_ARRAY;
    attr[1] = 4; // key size
    attr[2] = 4; // value size
    attr[3] = 1; // max entries
    // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes of `attr`, all initialized.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, attr.as_mut_ptr(), std::mem::size_of_val(&attr)) };
    if fd < 0 {
        return false;
    }
    // SAFETY: closing the fd we just got.
    unsafe { libc::close(fd as i32) };
    true
}

fn netns_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && std::process::Command::new("ip").arg("-V").output().is_ok_and(|out| out.status.success())
}
