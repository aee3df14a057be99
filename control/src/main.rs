//! `portcullis`: the control plane's command line. Wires the subcommands to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_contract::layout::DataDir;
use portcullis_control::{config, ctl, data_dir, echo, policy, quickstart, up};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Portcullis: an API gateway for Linux edge hosts.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the gateway: control, data plane and (by default) the echo backend.
    Up(up::UpOptions),
    /// Talk to a running gateway through its admin socket.
    Ctl {
        /// Data directory of the gateway (as given to `up`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: CtlCommand,
    },
    /// Run the echo backend: an HTTP/1.1 server that answers with a JSON description of each request.
    EchoBackend {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Work with config directories.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Compile APIM policy documents outside a gateway.
    Policy {
        /// Config directory whose named values and fragments the documents may use.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: policy::cli::Command,
    },
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Show generations, the data plane and per-worker counters.
    Status {
        /// Print the status object as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reload the config directory and publish it to the data plane.
    Reload,
    /// The XDP pre-filter.
    Xdp {
        #[command(subcommand)]
        command: XdpCommand,
    },
    /// Drop traffic from an address or CIDR (at the NIC when XDP is attached).
    Block {
        /// IP address or CIDR prefix.
        target: String,
        /// How long (90s, 15m, 2h, 1d); default: until `ctl unblock`.
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
    /// Lift a block set by `ctl block` or by the per-IP request limit.
    Unblock {
        /// IP address or CIDR prefix, exactly as blocked.
        target: String,
    },
}

#[derive(Debug, Subcommand)]
enum XdpCommand {
    /// Interfaces and attach mode, packet counters by reason, map fill, blocks.
    Status {
        /// Print the data plane's status object as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and compile a config directory; print every problem (exit 1 if there is any).
    Check {
        /// Config directory (default: the demo config in the data directory).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (only used to find the default config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a terminal: logs piped to files or journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Diagnostics and gateway-side failures arrive fully rendered ("error: ..." included).
            if let Some(diagnostics) = error.downcast_ref::<config::Diagnostics>() {
                eprintln!("{diagnostics}");
            } else if let Some(ctl::CtlError::Failed(message)) = error.downcast_ref::<ctl::CtlError>()
                && message.starts_with("error:")
            {
                eprintln!("{message}");
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(options) => up::run(options),
        Command::Ctl { data_dir, command } => {
            let data_dir = DataDir::new(data_dir::resolve(data_dir.as_deref())?);
            let output = match command {
                CtlCommand::Status { json } => ctl::status(&data_dir, json)?,
                CtlCommand::Reload => ctl::reload(&data_dir)?,
                CtlCommand::Xdp { command: XdpCommand::Status { json } } => ctl::xdp::status(&data_dir, json)?,
                CtlCommand::Block { target, duration } => ctl::xdp::block(&data_dir, &target, duration.as_deref())?,
                CtlCommand::Unblock { target } => ctl::xdp::unblock(&data_dir, &target)?,
            };
            println!("{output}");
            Ok(())
        }
        Command::EchoBackend { listen } => Ok(echo::run(listen)?),
        Command::Config { command: ConfigCommand::Check { config: dir, data_dir } } => {
            let dir = match dir {
                Some(dir) => dir,
                None => data_dir::resolve(data_dir.as_deref())?.join(quickstart::QUICKSTART_DIR),
            };
            // Checked as `up` runs it: with the echo backend providing {{echo-backend-url}}.
            let compiled = config::load(&dir, &config::check_values(true))?;
            println!(
                "config OK: {} ({} APIs, {} subscriptions)",
                compiled.source,
                compiled.apis.len(),
                compiled.subscriptions.len()
            );
            Ok(())
        }
        Command::Policy { config: dir, command } => policy::cli::run(dir.as_deref(), command),
    }
}
