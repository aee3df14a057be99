//! `portcullis-dataplane`: parses the command line and hands over to [`portcullis_dataplane::gateway`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use portcullis_dataplane::gateway::{self, IoChoice, Options};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Portcullis data plane: thread-per-core workers that route, check keys and proxy HTTP.
#[derive(Debug, Parser)]
#[command(name = "portcullis-dataplane", version)]
struct Args {
    /// Data directory shared with control (sockets, snapshots, stats).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Also listen for TLS (HTTPS) here, with the certificates of `[tls]`; port 0 picks a free port.
    #[arg(long)]
    listen_tls: Option<SocketAddr>,
    /// Worker threads (default: available parallelism).
    #[arg(long)]
    workers: Option<usize>,
    /// I/O backend.
    #[arg(long, value_enum, default_value_t = IoChoice::Auto)]
    io: IoChoice,
    /// Longest wait for in-flight requests after SIGTERM/SIGINT, in milliseconds.
    #[arg(long, default_value_t = portcullis_contract::shutdown::DRAIN_TIMEOUT_MS_DEFAULT)]
    drain_timeout_ms: u64,
    /// Attach the XDP pre-filter to this interface (repeatable; more from `[xdp] interfaces`).
    #[arg(long = "xdp-iface", value_name = "IFACE")]
    xdp_iface: Vec<String>,
    /// `off`: no XDP pre-filter; its rules are then enforced in user space.
    #[arg(long, value_enum, default_value_t = gateway::XdpSwitch::On)]
    xdp: gateway::XdpSwitch,
}

fn main() -> ExitCode {
    let args = Args::parse();
    portcullis_dataplane::logging::init();
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 || workers > portcullis_contract::stats::WORKERS_MAX {
        tracing::error!("--workers must be between 1 and {}", portcullis_contract::stats::WORKERS_MAX);
        return ExitCode::from(2);
    }
    let options = Options {
        data_dir: args.data_dir,
        listen: args.listen,
        listen_tls: args.listen_tls,
        workers,
        io: args.io,
        drain_timeout: Duration::from_millis(args.drain_timeout_ms),
        xdp: portcullis_dataplane::xdp::XdpOptions {
            disabled: args.xdp == gateway::XdpSwitch::Off,
            interfaces: args.xdp_iface,
        },
    };
    match gateway::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
