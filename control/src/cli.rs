//! The `portcullis` command line: its verbs and options, and which part of the library each
//! runs. Options that apply to every verb below a command (`--data-dir` of `ctl`, `--config` of
//! `policy` and `config`) are global to it, so they may follow the verb: `portcullis ctl status
//! --data-dir D` and `portcullis ctl --data-dir D status` are the same command.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use portcullis_contract::layout::DataDir;

use crate::stdout::print_line;
use crate::{config, ctl, data_dir, echo, management, policy, quickstart, up};

/// Portcullis: an API gateway for Linux edge hosts.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway: control, data plane and (by default) the echo backend.
    Up(up::UpOptions),
    /// Talk to a running gateway through its admin socket.
    Ctl {
        /// Data directory of the gateway (as given to `up`).
        #[arg(long, global = true)]
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
        /// Config directory (default: the demo config in the data directory).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Data directory (only used to find the default config).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
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
    /// Make the management store hold what a config directory declares: prints the plan
    /// (creates, updates, deletes per resource) and applies it (through the running gateway, or
    /// straight into the store when none runs). Resources made through the management API stay.
    Apply {
        /// The config directory.
        dir: PathBuf,
        /// Print the plan, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
        /// The gateway's data directory (default: $XDG_STATE_HOME/portcullis).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write the management store as a config directory that `apply` accepts unchanged, or as
    /// an APIOps extract (`--format apiops`) to take back to Azure.
    Export {
        /// A new (or empty) directory.
        dir: PathBuf,
        /// `dir` (a config directory) or `apiops`.
        #[arg(long, default_value = "dir")]
        format: String,
        #[arg(long)]
        json: bool,
        /// The gateway's data directory (default: $XDG_STATE_HOME/portcullis).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// APIs of the running gateway's management API: list, import an OpenAPI definition, export one.
    Api {
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: management::verbs::ApiCommand,
    },
    /// Subscriptions of the running gateway's management API: list, create, show keys.
    Subscription {
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: management::verbs::SubscriptionCommand,
    },
    /// Import from another system into the running gateway's store.
    Import {
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// An APIOps extract of an Azure API Management instance (apis/, products/, named values/ ...),
    /// as one change; every file it read or could not model is listed.
    Apiops {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
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
    /// Live traffic per API: requests per second, error rate, p50/p99, cache hit ratio
    /// (refreshed every second; Ctrl-C to quit).
    Top {
        /// Print one sample as JSON and exit.
        #[arg(long)]
        json: bool,
        /// The window each line covers, in seconds (1 to 60).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
        window: u64,
    },
    /// Management API tokens: create (the secret is shown once), list, delete.
    Token {
        #[command(subcommand)]
        command: management::verbs::TokenCommand,
    },
    /// The access log.
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Reopen the access-log file (run it after logrotate moved the file; SIGUSR1 to the data
    /// plane does the same).
    Reopen {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum XdpCommand {
    /// Interfaces and attach mode, packet counters by reason, map fill, blocks.
    Status {
        /// Print the data plane's status object as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and compile a config directory; print every problem (exit 1 if there is any).
    Check,
}

/// Runs one command to its end; `Err` is what to report (see [`error_text`]).
pub fn run(command: Command) -> anyhow::Result<()> {
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
                CtlCommand::Token { command } => management::verbs::token(&data_dir, command)?,
                CtlCommand::Logs { command: LogsCommand::Reopen { json } } => ctl::reopen_logs(&data_dir, json)?,
                CtlCommand::Top { json: true, window } => ctl::top::json(&data_dir, Some(window * 1_000))?,
                CtlCommand::Top { json: false, window } => {
                    return Ok(ctl::top::watch(&data_dir, Some(window * 1_000))?);
                }
            };
            Ok(print_line(output)?)
        }
        Command::EchoBackend { listen } => Ok(echo::run(listen)?),
        Command::Config { config: dir, data_dir, command: ConfigCommand::Check } => {
            let dir = match dir {
                Some(dir) => dir,
                None => data_dir::resolve(data_dir.as_deref())?.join(quickstart::QUICKSTART_DIR),
            };
            // Checked as `up` runs it: with the echo backend providing {{echo-backend-url}}.
            let compiled = config::load(&dir, &config::check_values(true))?;
            Ok(print_line(format_args!(
                "config OK: {} ({} APIs, {} subscriptions)",
                compiled.source,
                compiled.apis.len(),
                compiled.subscriptions.len()
            ))?)
        }
        Command::Policy { config: dir, command } => policy::cli::run(dir.as_deref(), command),
        Command::Apply { dir, dry_run, json, data_dir } => {
            let data_dir = DataDir::new(data_dir::resolve(data_dir.as_deref())?);
            Ok(print_line(management::cli::apply(&data_dir, &dir, dry_run, json)?)?)
        }
        Command::Export { dir, format, json, data_dir } => {
            let data_dir = DataDir::new(data_dir::resolve(data_dir.as_deref())?);
            Ok(print_line(management::cli::export(&data_dir, &dir, &format, json)?)?)
        }
        Command::Api { data_dir, command } => {
            let data_dir = DataDir::new(data_dir::resolve(data_dir.as_deref())?);
            Ok(print_line(management::verbs::api(&data_dir, command)?)?)
        }
        Command::Subscription { data_dir, command } => {
            let data_dir = DataDir::new(data_dir::resolve(data_dir.as_deref())?);
            Ok(print_line(management::verbs::subscription(&data_dir, command)?)?)
        }
        Command::Import { data_dir, command: ImportCommand::Apiops { dir, json } } => {
            let data_dir = DataDir::new(data_dir::resolve(data_dir.as_deref())?);
            Ok(print_line(management::verbs::import_apiops(&data_dir, &dir, json)?)?)
        }
    }
}

/// The text to print on stderr for a failed command. Diagnostics and gateway-side failures
/// arrive fully rendered ("error: ..." included); everything else gets the "error:" prefix.
pub fn error_text(error: &anyhow::Error) -> String {
    if let Some(diagnostics) = error.downcast_ref::<config::Diagnostics>() {
        diagnostics.to_string()
    } else if let Some(ctl::CtlError::Failed(message)) = error.downcast_ref::<ctl::CtlError>()
        && message.starts_with("error:")
    {
        message.clone()
    } else {
        format!("error: {error:#}")
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn parse(args: &[&str]) -> Command {
        let parsed = Cli::try_parse_from(std::iter::once("portcullis").chain(args.iter().copied()));
        parsed.unwrap_or_else(|error| panic!("{args:?}: {error}")).command
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ctl_data_dir_goes_before_or_after_the_verb() {
        for args in [
            &["ctl", "--data-dir", "/d", "status"][..],
            &["ctl", "status", "--data-dir", "/d"],
            &["ctl", "status", "--json", "--data-dir", "/d"],
            &["ctl", "xdp", "status", "--data-dir", "/d", "--json"],
            &["ctl", "block", "10.0.0.1", "--data-dir", "/d", "--for", "15m"],
        ] {
            let Command::Ctl { data_dir, .. } = parse(args) else { panic!("{args:?} is not ctl") };
            assert_eq!(data_dir, Some(PathBuf::from("/d")), "{args:?}");
        }
        let Command::Ctl { command: CtlCommand::Status { json }, .. } = parse(&["ctl", "status", "--json"]) else {
            panic!("ctl status");
        };
        assert!(json);
    }

    #[test]
    fn config_and_policy_options_go_before_or_after_the_verb() {
        for args in [
            &["config", "check", "--config", "/c", "--data-dir", "/d"][..],
            &["config", "--config", "/c", "check", "--data-dir", "/d"],
        ] {
            let Command::Config { config, data_dir, .. } = parse(args) else { panic!("{args:?} is not config") };
            assert_eq!((config, data_dir), (Some(PathBuf::from("/c")), Some(PathBuf::from("/d"))), "{args:?}");
        }
        for args in
            [&["policy", "check", "p.xml", "--config", "/c"][..], &["policy", "--config", "/c", "explain", "p.xml"]]
        {
            let Command::Policy { config, .. } = parse(args) else { panic!("{args:?} is not policy") };
            assert_eq!(config, Some(PathBuf::from("/c")), "{args:?}");
        }
    }

    #[test]
    fn options_of_other_verbs_are_still_refused() {
        assert!(Cli::try_parse_from(["portcullis", "echo-backend", "--data-dir", "/d"]).is_err());
        assert!(Cli::try_parse_from(["portcullis", "ctl", "reload", "--json"]).is_err());
    }
}
