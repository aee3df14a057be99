//! `xdp-bench --profile`: the program's own time per packet by path, from `BPF_PROG_TEST_RUN`
//! with a repeat count (the kernel times the program alone: no veth, no frame handling). No
//! hardware counters here (`bpftool prog profile` needs them), so this and variants of the
//! program are the profile.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context as _, Result};
use aya::Ebpf;
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use portcullis_contract::xdp::XdpRules;
use portcullis_dataplane::xdp::kernel::Kernel;
use portcullis_tests::packet;

use crate::{BENCH_OBJECT, DENIED_BASE, GATEWAY_IP, LIMITED_BASE, PORT};

/// Runs per measurement; the median of `PROFILE_ROUNDS` is printed.
const PROFILE_REPEAT: u32 = 2_000_000;
const PROFILE_ROUNDS: usize = 5;

/// Prints ns per run for the bare drop and each path through the gateway's program.
pub(crate) fn run(rules: &XdpRules) -> Result<()> {
    let mut kernel = Kernel::load()?;
    kernel.set_listeners(&[SocketAddr::from(([0, 0, 0, 0], PORT))])?;
    kernel.apply(rules)?;
    let mut bench = Ebpf::load(BENCH_OBJECT)?;
    let bare: &mut Xdp = bench.program_mut("bare_drop").context("bare_drop")?.try_into()?;
    bare.load()?;
    let syn = |source: Ipv4Addr, port: u16, flags: u8| {
        let tcp = packet::tcp(port, flags);
        packet::frame(&[&packet::ethernet(&[], packet::ETH_P_IPV4), &packet::ipv4(source, GATEWAY_IP, 6, 0, &tcp)])
    };
    let cases: [(&str, Vec<u8>); 5] = [
        ("not for a listener (port 9)", syn(DENIED_BASE, 9, packet::TCP_SYN)),
        ("denylisted SYN", syn(DENIED_BASE, PORT, packet::TCP_SYN)),
        ("allowlisted SYN over its bucket", syn(LIMITED_BASE, PORT, packet::TCP_SYN)),
        ("allowlisted ACK over its bucket", syn(LIMITED_BASE, PORT, packet::TCP_ACK)),
        ("outside the allowlist", syn(Ipv4Addr::new(192, 0, 3, 9), PORT, packet::TCP_SYN)),
    ];
    println!(
        "profile: BPF_PROG_TEST_RUN, {PROFILE_REPEAT} runs on one packet, median of {PROFILE_ROUNDS} (one source: verdict-cache hits)"
    );
    let bare_frame = &cases[1].1;
    let bare_ns = median(|| {
        let bare: &Xdp = bench.program("bare_drop").context("bare_drop")?.try_into()?;
        let mut options = TestRunOptions::new();
        options.data_in = Some(bare_frame);
        options.repeat = PROFILE_REPEAT;
        Ok(bare.test_run(options)?.duration.as_nanos() as f64)
    })?;
    println!("  {:<40} {bare_ns:>6.1} ns", "bare XDP_DROP");
    for (name, frame) in &cases {
        let ns = median(|| Ok(kernel.time_run(frame, PROFILE_REPEAT)?.1.as_nanos() as f64))?;
        println!("  {name:<40} {ns:>6.1} ns  (+{:.1})", ns - bare_ns);
    }
    Ok(())
}

fn median(mut sample: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut values = (0..PROFILE_ROUNDS).map(|_| sample()).collect::<Result<Vec<f64>>>()?;
    values.sort_by(f64::total_cmp);
    Ok(values[values.len() / 2])
}
