//! The load generators: wrk (closed loop; a Lua `done()` hook prints the counts and the
//! percentiles wrk's text leaves out, p99.9 among them) and oha (open loop at a fixed rate with
//! latency correction), each with one thread on cpu0; their output parsed into one shape.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::procs;

/// The line the Lua `done()` hook prints; everything after it is `key=value`.
const WRK_RESULT_TAG: &str = "bench-result";
/// `done()` for wrk: counts, errors and latency percentiles (µs) on one line.
const WRK_DONE_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "bench-result requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d connect_errors=%d read_errors=%d write_errors=%d status_errors=%d timeouts=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#;
/// Without oha, the fixed-load scenario paces wrk: each connection waits this long between
/// requests (wrk's `delay()` hook takes whole milliseconds).
pub(crate) const PACED_DELAY_MS: u32 = 4;
/// A response slower than this counts as a timeout.
const REQUEST_TIMEOUT: &str = "10s";

/// One load run, as the generator reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct LoadResult {
    /// Responses received (any status).
    pub(crate) requests: u64,
    pub(crate) seconds: f64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    /// Connect, read and write errors and timeouts.
    pub(crate) errors: u64,
    /// Responses with a status >= 400.
    pub(crate) status_errors: u64,
}

impl LoadResult {
    pub(crate) fn rps(&self) -> f64 {
        if self.seconds > 0.0 { self.requests as f64 / self.seconds } else { 0.0 }
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub(crate) struct LoadSpec {
    pub(crate) url: String,
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) headers: Vec<String>,
    /// A fixed offered load (requests/s over all connections): oha `-q`, else paced wrk.
    pub(crate) rate: Option<u32>,
    /// More Lua for wrk (e.g. a `request` function that varies the requests).
    pub(crate) script: Option<String>,
}

/// The programs that generate load.
#[derive(Debug, Clone)]
pub(crate) struct Generators {
    pub(crate) wrk: PathBuf,
    pub(crate) oha: Option<PathBuf>,
    /// Scripts and outputs go here.
    pub(crate) dir: PathBuf,
}

impl Generators {
    /// Runs `spec` to completion on cpu0; returns the result and the generator's CPU time, ns.
    pub(crate) fn run(&self, spec: &LoadSpec) -> Result<(LoadResult, u64)> {
        self.start(spec)?.finish()
    }

    /// Starts `spec` on cpu0 without waiting for it.
    pub(crate) fn start(&self, spec: &LoadSpec) -> Result<Started> {
        let (name, mut command, output) = match (&self.oha, spec.rate) {
            (Some(oha), Some(rate)) => ("oha", self.oha_command(oha, spec, rate), self.dir.join("oha.json")),
            _ => ("wrk", self.wrk_command(spec)?, self.dir.join("wrk.out")),
        };
        command.stdout(std::fs::File::create(&output)?).stderr(Stdio::null());
        let process = procs::spawn(name, &mut command, procs::CLIENT_CPU)?;
        Ok(Started { process, output, duration: spec.duration })
    }

    /// Which generator runs `spec`, for the report.
    pub(crate) fn describe(&self, spec: &LoadSpec) -> String {
        match (&self.oha, spec.rate) {
            (Some(_), Some(rate)) => format!("oha -q {rate} --latency-correction -c {}", spec.connections),
            (None, Some(_)) => format!("wrk -t1 -c {} paced ({PACED_DELAY_MS} ms between requests)", spec.connections),
            _ => format!("wrk -t1 -c {}", spec.connections),
        }
    }

    fn wrk_command(&self, spec: &LoadSpec) -> Result<Command> {
        let script = self.dir.join("wrk.lua");
        let mut lua = WRK_DONE_LUA.to_owned();
        if spec.rate.is_some() {
            lua.push_str(&format!("delay = function() return {PACED_DELAY_MS} end\n"));
        }
        if let Some(script) = &spec.script {
            lua.push_str(script);
        }
        std::fs::write(&script, lua)?;
        let mut command = Command::new(&self.wrk);
        command
            .args(["-t1", "-c", &spec.connections.to_string()])
            .args(["-d", &format!("{}s", spec.duration.as_secs().max(1))])
            .args(["--timeout", REQUEST_TIMEOUT, "-s"])
            .arg(&script);
        for header in &spec.headers {
            command.args(["-H", header]);
        }
        command.arg(&spec.url);
        Ok(command)
    }

    fn oha_command(&self, oha: &Path, spec: &LoadSpec, rate: u32) -> Command {
        let mut command = Command::new(oha);
        command
            .args(["-z", &format!("{}s", spec.duration.as_secs().max(1))])
            .args(["-c", &spec.connections.to_string(), "-q", &rate.to_string()])
            .args(["--latency-correction", "--no-tui", "--insecure", "--output-format", "json"]);
        for header in &spec.headers {
            command.args(["-H", header]);
        }
        command.arg(&spec.url);
        command
    }
}

/// A load generator that is running.
#[derive(Debug)]
pub(crate) struct Started {
    process: procs::Proc,
    output: PathBuf,
    duration: Duration,
}

impl Started {
    pub(crate) fn pid(&self) -> i32 {
        self.process.pid
    }

    /// Waits for the end of the run; returns the result and the generator's CPU time, ns.
    pub(crate) fn finish(mut self) -> Result<(LoadResult, u64)> {
        let (success, cpu) = self.process.wait_with_cpu(self.duration + Duration::from_secs(30))?;
        let text = std::fs::read_to_string(&self.output)?;
        if !success {
            bail!("{} failed: {text}", self.process.name);
        }
        let result = if self.process.name == "oha" { parse_oha(&text) } else { parse_wrk(&text) };
        Ok((result.with_context(|| format!("no result in {}'s output: {text}", self.process.name))?, cpu))
    }
}

/// Parses the `bench-result` line of [`WRK_DONE_LUA`].
pub(crate) fn parse_wrk(text: &str) -> Option<LoadResult> {
    let line = text.lines().find_map(|line| line.strip_prefix(WRK_RESULT_TAG))?;
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace().find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    Some(LoadResult {
        requests: field("requests")? as u64,
        seconds: field("duration_us")? / 1e6,
        p50_us: field("p50_us")?,
        p90_us: field("p90_us")?,
        p99_us: field("p99_us")?,
        p999_us: field("p999_us")?,
        errors: (field("connect_errors")? + field("read_errors")? + field("write_errors")? + field("timeouts")?) as u64,
        status_errors: field("status_errors")? as u64,
    })
}

/// Parses oha's `--output-format json` (latencies in seconds).
pub(crate) fn parse_oha(text: &str) -> Option<LoadResult> {
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let percentile = |name: &str| json["latencyPercentiles"][name].as_f64().map(|s| s * 1e6);
    let statuses = json["statusCodeDistribution"].as_object()?;
    let requests: u64 = statuses.values().filter_map(serde_json::Value::as_u64).sum();
    let status_errors: u64 = statuses
        .iter()
        .filter(|(code, _)| code.parse::<u16>().is_ok_and(|code| code >= 400))
        .filter_map(|(_, count)| count.as_u64())
        .sum();
    // Requests still in flight when `-z` ends are reported as "aborted due to deadline": not errors.
    let errors: u64 = json["errorDistribution"].as_object().map_or(0, |errors| {
        errors.iter().filter(|(kind, _)| !kind.contains("deadline")).filter_map(|(_, count)| count.as_u64()).sum()
    });
    Some(LoadResult {
        requests,
        seconds: json["summary"]["total"].as_f64()?,
        p50_us: percentile("p50")?,
        p90_us: percentile("p90")?,
        p99_us: percentile("p99")?,
        p999_us: percentile("p99.9")?,
        errors,
        status_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_done_line() {
        let text = "Running 8s test @ http://127.0.0.1:8080/api/5b\n  1 threads and 64 connections\n\
  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.02ms  210.11us   9.80ms   91.00%\n\
  412345 requests in 8.00s, 50.12MB read\nRequests/sec:  51543.12\nTransfer/sec:      6.26MB\n\
bench-result requests=412345 duration_us=8000123 p50_us=980 p90_us=1200 p99_us=1780 p999_us=3120 max_us=9800 \
connect_errors=0 read_errors=1 write_errors=0 status_errors=2 timeouts=3\n";
        let result = parse_wrk(text).unwrap();
        assert_eq!(result.requests, 412_345);
        assert!((result.seconds - 8.000_123).abs() < 1e-9);
        assert_eq!((result.p50_us, result.p99_us, result.p999_us), (980.0, 1780.0, 3120.0));
        assert_eq!((result.errors, result.status_errors), (4, 2));
        assert!((result.rps() - 51_542.33).abs() < 0.01);
        assert_eq!(parse_wrk("Requests/sec:  51543.12\n"), None);
        assert_eq!(parse_wrk("bench-result requests=1\n"), None, "a truncated line is refused");
    }

    #[test]
    fn oha_json() {
        let text = r#"{"summary":{"successRate":1.0,"total":8.001,"requestsPerSec":16000.5},
            "latencyPercentiles":{"p10":0.0001,"p50":0.00025,"p90":0.0004,"p99":0.0009,"p99.9":0.002,"p99.99":0.004},
            "statusCodeDistribution":{"200":127990,"401":10},
            "errorDistribution":{"connection closed":2,"aborted due to deadline":64}}"#;
        let result = parse_oha(text).unwrap();
        assert_eq!(result.requests, 128_000);
        assert_eq!((result.status_errors, result.errors), (10, 2));
        assert!((result.p50_us - 250.0).abs() < 1e-6 && (result.p999_us - 2000.0).abs() < 1e-6);
        assert_eq!(parse_oha("not json"), None);
    }
}
