//! `portcullis ctl top`: one line per API (requests per second, error rate, p50/p99, cache hit
//! ratio), refreshed every second from control's live window; `--json` prints one sample.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use portcullis_contract::layout::DataDir;
use portcullis_management::analytics::TopSample;

use super::{CtlError, request, succeeded};
use crate::admin::Request;

/// How often the view is redrawn.
pub const REFRESH_MS: u64 = 1_000;
/// ANSI: cursor home, clear the screen.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";
/// API ids longer than this are cut in the table (the JSON has them whole).
const API_COLUMN_CHARS: usize = 32;

/// One sample over the last `window_ms` (default: the gateway's, 10 s).
pub fn sample(data_dir: &DataDir, window_ms: Option<u64>) -> Result<TopSample, CtlError> {
    let response = succeeded(request(data_dir, &Request::Top { window_ms })?)?;
    let top = response.top.ok_or_else(|| CtlError::Protocol("a top response without a sample".to_owned()))?;
    serde_json::from_value(top).map_err(|error| CtlError::Protocol(error.to_string()))
}

/// `ctl top --json`: one sample, pretty JSON.
pub fn json(data_dir: &DataDir, window_ms: Option<u64>) -> Result<String, CtlError> {
    serde_json::to_string_pretty(&sample(data_dir, window_ms)?).map_err(|error| CtlError::Protocol(error.to_string()))
}

/// `ctl top`: redraws the table every second until interrupted (or the gateway stops).
pub fn watch(data_dir: &DataDir, window_ms: Option<u64>) -> Result<(), CtlError> {
    let io = |source| CtlError::Io { path: data_dir.admin_socket(), source };
    loop {
        let table = render(&sample(data_dir, window_ms)?);
        let mut stdout = std::io::stdout().lock();
        write!(stdout, "{CLEAR_SCREEN}{table}").map_err(io)?;
        stdout.flush().map_err(io)?;
        drop(stdout);
        std::thread::sleep(Duration::from_millis(REFRESH_MS));
    }
}

/// The table of one sample.
pub fn render(sample: &TopSample) -> String {
    let mut out = String::new();
    let seconds = sample.window_ms as f64 / 1_000.0;
    let _ = writeln!(out, "portcullis top: last {seconds:.0} s, {} APIs (Ctrl-C to quit)", sample.apis.len());
    let _ = writeln!(
        out,
        "{:<width$} {:>9} {:>7} {:>9} {:>9} {:>7}",
        "API",
        "RPS",
        "ERR%",
        "P50 ms",
        "P99 ms",
        "CACHE%",
        width = API_COLUMN_CHARS
    );
    if sample.apis.is_empty() {
        let _ = writeln!(out, "(no requests in the window)");
    }
    let ms = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"));
    for api in &sample.apis {
        let name = if api.api_id.is_empty() { "(no API)" } else { api.api_id.as_str() };
        let name: String = name.chars().take(API_COLUMN_CHARS).collect();
        let cache = api.cache_hit_ratio.map_or_else(|| "-".to_owned(), |ratio| format!("{:.1}", ratio * 100.0));
        let _ = writeln!(
            out,
            "{name:<width$} {:>9.1} {:>7.1} {:>9} {:>9} {:>7}",
            api.rps,
            api.error_rate * 100.0,
            ms(api.p50_ms),
            ms(api.p99_ms),
            cache,
            width = API_COLUMN_CHARS
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use portcullis_management::analytics::ApiSample;

    use super::*;

    #[test]
    fn the_table_has_a_line_per_api() {
        let sample = TopSample {
            at_ms: 0,
            window_ms: 10_000,
            apis: vec![
                ApiSample {
                    api_id: "echo".into(),
                    requests: 1234,
                    rps: 123.4,
                    error_rate: 0.015,
                    p50_ms: Some(1.25),
                    p99_ms: Some(17.0),
                    cache_hit_ratio: Some(0.5),
                },
                ApiSample { api_id: String::new(), requests: 3, rps: 0.3, ..ApiSample::default() },
            ],
        };
        let table = render(&sample);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].contains("last 10 s, 2 APIs"));
        let echo: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(echo, ["echo", "123.4", "1.5", "1.2", "17.0", "50.0"]);
        let none: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(none, ["(no", "API)", "0.3", "0.0", "-", "-", "-"]);
        let empty = render(&TopSample { window_ms: 10_000, ..TopSample::default() });
        assert!(empty.contains("(no requests in the window)"));
    }
}
