//! The kernel plane, seen from the data plane: the XDP pre-filter (`kernel`), its rules in
//! user space for hosts without CAP_BPF (`rules`), blocked sources (`blocks`), the per-IP
//! request limit that feeds them (`limit`), and the thread that keeps all of them in step with
//! snapshots and answers `ctl xdp` (`service`).

pub mod kernel;

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, so `blocked_until` values compare.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
}
