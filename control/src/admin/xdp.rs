//! The XDP commands of the admin socket (`xdp-status`, `block`, `unblock`): the data plane owns
//! the XDP maps and the block table, so control forwards the request to its `run/xdp.sock` and
//! relays the answer. Blocks are saved by the data plane (`xdp-blocks.json`), so they survive
//! its restarts.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use portcullis_contract::layout::DataDir;

use super::protocol::{RESPONSE_LINE_BYTES_MAX, Request, Response};

/// How long control waits for the data plane's XDP answer.
pub const XDP_TIMEOUT_MS: u64 = 5_000;

/// How long a metrics scrape waits for the data plane's XDP counters (a scrape must stay quick).
pub const XDP_SCRAPE_TIMEOUT_MS: u64 = 250;

/// Sends `request` to the data plane and turns its answer into an admin [`Response`].
pub async fn forward(data_dir: &DataDir, request: Request) -> Response {
    let path = data_dir.xdp_socket();
    let is_status = request == Request::XdpStatus;
    let timeout = Duration::from_millis(XDP_TIMEOUT_MS);
    let answer = tokio::task::spawn_blocking(move || ask(&path, &request, timeout)).await;
    match answer {
        Ok(Ok(mut value)) if value.get("ok").and_then(serde_json::Value::as_bool) == Some(true) => {
            // `xdp` carries the status object itself, or the block/unblock result without `ok`.
            let xdp = match value.as_object_mut() {
                Some(object) if is_status => object.remove("xdp").unwrap_or_default(),
                Some(object) => {
                    object.remove("ok");
                    value
                }
                None => value,
            };
            Response { ok: true, xdp: Some(xdp), ..Response::default() }
        }
        Ok(Ok(value)) => Response::failure(
            value
                .get("error")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("the data plane refused the request")
                .to_owned(),
        ),
        Ok(Err(error)) => Response::failure(error),
        Err(error) => Response::failure(format!("the XDP task failed: {error}")),
    }
}

/// Sends `request` to the data plane's XDP socket at `path` and reads its one-line JSON answer,
/// waiting at most `timeout` for each read and write. Blocking.
pub fn ask(path: &Path, request: &Request, timeout: Duration) -> Result<serde_json::Value, String> {
    let mut stream = UnixStream::connect(path)
        .map_err(|error| format!("the data plane is not running or has no XDP socket ({}: {error})", path.display()))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.write_all(&request.to_line()).map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    BufReader::new(stream.take(RESPONSE_LINE_BYTES_MAX as u64))
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the data plane's answer: {e}"))?;
    serde_json::from_slice(&line).map_err(|e| format!("the data plane's answer is not JSON: {e}"))
}
