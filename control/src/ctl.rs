//! `portcullis ctl`: the admin socket's client.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use portcullis_contract::layout::DataDir;

pub mod top;
pub mod xdp;

use crate::admin::protocol::RESPONSE_LINE_BYTES_MAX;
use crate::admin::server::APPLY_TIMEOUT_MS;
use crate::admin::{Request, Response, status};

/// How long ctl waits for an answer: a reload may take the apply timeout plus compiling.
pub const RESPONSE_TIMEOUT_MS: u64 = APPLY_TIMEOUT_MS + 20_000;

/// Why a ctl command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("no gateway is running with data dir {} (start one with `portcullis up`, or pass --data-dir)", .data_dir.display())]
    NotRunning { data_dir: PathBuf },
    #[error("admin socket {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the gateway sent a response that is not valid: {0}")]
    Protocol(String),
    #[error("{0}")]
    Failed(String),
}

/// Sends one request to the gateway running with `data_dir` and returns its response.
pub fn request(data_dir: &DataDir, request: &Request) -> Result<Response, CtlError> {
    let path = data_dir.admin_socket();
    let io_error = |source| CtlError::Io { path: path.clone(), source };
    let mut stream = UnixStream::connect(&path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            CtlError::NotRunning { data_dir: data_dir.root().to_path_buf() }
        }
        _ => io_error(error),
    })?;
    stream.set_read_timeout(Some(Duration::from_millis(RESPONSE_TIMEOUT_MS))).map_err(io_error)?;
    stream.write_all(&request.to_line()).map_err(io_error)?;
    let mut line = Vec::new();
    BufReader::new(stream.take(RESPONSE_LINE_BYTES_MAX as u64)).read_until(b'\n', &mut line).map_err(io_error)?;
    if line.last() != Some(&b'\n') {
        return Err(CtlError::Protocol("the response line was cut short".to_owned()));
    }
    serde_json::from_slice(&line).map_err(|error| CtlError::Protocol(error.to_string()))
}

/// `ctl status`: the rendered table, or the status object as JSON.
pub fn status(data_dir: &DataDir, json: bool) -> Result<String, CtlError> {
    let response = succeeded(request(data_dir, &Request::Status)?)?;
    let Some(status) = response.status else {
        return Err(CtlError::Protocol("a status response without a status".to_owned()));
    };
    if json {
        serde_json::to_string_pretty(&status).map_err(|error| CtlError::Protocol(error.to_string()))
    } else {
        Ok(status::render(&status).trim_end().to_owned())
    }
}

/// `ctl reload`: `reloaded: generation N applied by the data plane`.
pub fn reload(data_dir: &DataDir) -> Result<String, CtlError> {
    let response = succeeded(request(data_dir, &Request::Reload)?)?;
    let generation = response.generation.map_or_else(|| "?".to_owned(), |g| g.to_string());
    Ok(format!("reloaded: generation {generation} applied by the data plane"))
}

/// `ctl logs reopen`: the data plane reopens its access-log file.
pub fn reopen_logs(data_dir: &DataDir, json: bool) -> Result<String, CtlError> {
    succeeded(request(data_dir, &Request::ReopenLogs)?)?;
    Ok(if json { serde_json::json!({ "reopened": true }).to_string() } else { "access log reopened".to_owned() })
}

pub(crate) fn succeeded(response: Response) -> Result<Response, CtlError> {
    if response.ok {
        Ok(response)
    } else {
        Err(CtlError::Failed(response.error.unwrap_or_else(|| "the gateway reported a failure".to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_says_what_to_do() {
        let data_dir = DataDir::new("/nonexistent/portcullis-ctl");
        let error = request(&data_dir, &Request::Status).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no gateway is running with data dir /nonexistent/portcullis-ctl (start one with `portcullis up`, or pass --data-dir)"
        );
    }

    #[test]
    fn failures_and_bad_responses_are_errors() {
        let dir = std::env::temp_dir().join(format!("portcullis-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data_dir = DataDir::new(&dir);
        let listener = std::os::unix::net::UnixListener::bind(data_dir.admin_socket()).unwrap();
        let server = std::thread::spawn(move || {
            for answer in [&b"{\"ok\":false,\"error\":\"config broken\"}\n"[..], b"{\"ok\":tru", b"{\"ok\":true}\n"] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line).unwrap();
                stream.write_all(answer).unwrap();
            }
        });
        assert_eq!(reload(&data_dir).unwrap_err().to_string(), "config broken");
        assert!(matches!(status(&data_dir, false), Err(CtlError::Protocol(_))));
        assert!(matches!(status(&data_dir, true), Err(CtlError::Protocol(_))));
        server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
