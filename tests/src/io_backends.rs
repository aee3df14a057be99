//! The two I/O backends every end-to-end scenario runs on: [`on_both_io_backends!`] declares a
//! test per backend, and the io_uring one is reported as ignored, with the reason, where the
//! machine refuses io_uring.
//!
//! `tests/build.rs` probes `io_uring_setup` when the tests are built and sets `no_io_uring` where it
//! fails (Docker's default seccomp profile, `kernel.io_uring_disabled`); libtest can only ignore a
//! test at compile time. The io_uring variant checks again when it runs, so a build that outlived
//! the machine's io_uring fails with what to do instead of proving nothing.

/// Declares, for each scenario `fn(io: &str)` named, a module of the same name with one test per
/// I/O backend: `<scenario>::epoll` runs `scenario("epoll")`, `<scenario>::uring` runs
/// `scenario("uring")`, and is ignored, with the reason, where the machine refuses io_uring.
#[macro_export]
macro_rules! on_both_io_backends {
    // Scenarios that need something the machine may lack: ignored, with the reason, where the
    // build found the cfg set (see tests/build.rs).
    (ignore_if($cfg:meta, $reason:literal): $($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[test]
                #[cfg_attr($cfg, ignore = $reason)]
                fn epoll() {
                    super::$scenario("epoll");
                }

                #[test]
                #[cfg_attr(any(no_io_uring, $cfg), ignore = $reason)]
                fn uring() {
                    $crate::io_backends::require_io_uring();
                    super::$scenario("uring");
                }
            }
        )+
    };
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[test]
                fn epoll() {
                    super::$scenario("epoll");
                }

                #[test]
                #[cfg_attr(
                    no_io_uring,
                    ignore = "io_uring is refused on this machine (io_uring_setup failed when the tests were built)"
                )]
                fn uring() {
                    $crate::io_backends::require_io_uring();
                    super::$scenario("uring");
                }
            }
        )+
    };
}

/// Panics, saying why and what to do, when io_uring is refused now although it was not when the
/// tests were built (the io_uring variants would otherwise fail in the gateway's start-up).
pub fn require_io_uring() {
    if let Err(error) = probe_io_uring() {
        panic!(
            "io_uring is refused on this machine now ({error}) but was not when these tests were built; \
             rebuild them (`touch tests/build.rs`) so that the io_uring variants are reported as ignored"
        );
    }
}

/// Creates and closes a one-entry io_uring, as `tests/build.rs` does.
pub fn probe_io_uring() -> std::io::Result<()> {
    // struct io_uring_params: 120 bytes, zeroed for the defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params`, a whole struct io_uring_params.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: closing the ring fd just created, which nothing else holds.
    unsafe { libc::close(fd as i32) };
    Ok(())
}
