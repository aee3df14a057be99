//! Probes io_uring once at build time so the io_uring variants of the end-to-end tests are
//! reported as ignored, with the reason, on machines that refuse io_uring (e.g. Docker's default
//! seccomp profile or `kernel.io_uring_disabled`), instead of failing or silently passing.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_io_uring)");
    println!("cargo::rerun-if-changed=build.rs");
    if !io_uring_available() {
        println!("cargo::warning=io_uring is unavailable here: the io_uring end-to-end variants will be ignored");
        println!("cargo::rustc-cfg=no_io_uring");
    }
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
