//! `portcullis`: the control plane's command line. Parses it, sets up logging and hands over to
//! the library (`cli::run`); prints what failed.

use std::process::ExitCode;

use clap::Parser as _;
use portcullis_control::cli::{self, Cli};
use portcullis_control::stdout;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    match cli::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // `portcullis ctl status | head`: the reader has what it wanted; nothing went wrong.
        Err(error) if stdout::closed_by_reader(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", cli::error_text(&error));
            ExitCode::FAILURE
        }
    }
}
