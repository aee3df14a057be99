//! The command line's results on stdout. A reader that leaves early (`portcullis ctl status |
//! head`) is not a failure of the command: printing reports [`PrintError::Closed`] and the command
//! ends quietly, where `println!` would panic with "failed printing to stdout: Broken pipe".

use std::fmt::Display;
use std::io::{self, Write as _};

/// Why a result could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    /// Nobody reads stdout any more (EPIPE): the command stops, quietly and successfully.
    #[error("stdout was closed by its reader")]
    Closed,
    /// Any other write failure (a full disk behind a redirect): a real error.
    #[error("cannot write to stdout: {0}")]
    Write(#[source] io::Error),
}

/// Writes `text` and a newline to stdout, flushed.
pub fn print_line(text: impl Display) -> Result<(), PrintError> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}").and_then(|()| stdout.flush()).map_err(|error| match error.kind() {
        io::ErrorKind::BrokenPipe => PrintError::Closed,
        _ => PrintError::Write(error),
    })
}

/// True when `error` is (or was caused by) a closed stdout: the command should exit quietly.
pub fn closed_by_reader(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| matches!(cause.downcast_ref::<PrintError>(), Some(PrintError::Closed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_stdout_is_quiet() {
        assert!(closed_by_reader(&anyhow::Error::new(PrintError::Closed)));
        assert!(closed_by_reader(&anyhow::Error::new(PrintError::Closed).context("printing the status")));
        let full = PrintError::Write(io::Error::from(io::ErrorKind::StorageFull));
        assert!(!closed_by_reader(&anyhow::Error::new(full)));
        let socket = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(!closed_by_reader(&anyhow::Error::new(socket)), "a broken admin socket is an error");
    }
}
