//! The families read when `/metrics` is scraped, from what control knows (generations, reloads)
//! and what the data plane publishes: its stats region (connections, requests in flight), its
//! upstream health report, its XDP counters (asked on `run/xdp.sock`), and `/proc` for both
//! processes. Runs on the ops listener's thread; nothing here holds a lock another thread waits on
//! for longer than a copy.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use portcullis_contract::layout::DataDir;
use portcullis_contract::stats::{StatsRegion, WorkerCounters};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{self, label};
use super::process;
use crate::admin::protocol::Request;
use crate::admin::xdp::{XDP_SCRAPE_TIMEOUT_MS, ask};
use crate::publisher::{Publisher, PublisherHealth};

const MS_PER_S: f64 = 1_000.0;
type NoLabels = Vec<(&'static str, String)>;
/// A family read from one field of `T`: name, help, the field.
type FieldFamily<T> = (&'static str, &'static str, fn(&T) -> u64);

/// Where the scrape-time families come from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub publisher: Arc<Publisher>,
    pub data_dir: DataDir,
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let health = self.publisher.health();
        encode::gauges(
            &mut encoder,
            "build_info",
            "The running control's version (always 1).",
            [([("version", env!("CARGO_PKG_VERSION"))], 1u64)],
        )?;
        self.encode_snapshots(&mut encoder, &health)?;
        encode_workers(&mut encoder, &self.data_dir)?;
        encode_upstreams(&mut encoder, &self.data_dir)?;
        encode_xdp(&mut encoder, &self.data_dir)?;
        let dataplane_pid = health.dataplane.as_ref().filter(|_| health.connected).map(|hello| hello.pid);
        encode_processes(&mut encoder, dataplane_pid)
    }
}

impl Sources {
    fn encode_snapshots(&self, encoder: &mut DescriptorEncoder<'_>, health: &PublisherHealth) -> std::fmt::Result {
        encode::gauges(
            encoder,
            "dataplane_connected",
            "1 while a data plane is connected to control's snapshot channel.",
            [(NoLabels::new(), u64::from(health.connected))],
        )?;
        encode::gauges(
            encoder,
            "snapshot_generation",
            "The config generation control published (plane=control) and the data plane last applied (plane=dataplane).",
            [([("plane", "control")], health.generation), ([("plane", "dataplane")], health.applied_generation)],
        )?;
        let applied = (health.applied_unix_ms > 0).then(|| (NoLabels::new(), health.applied_unix_ms as f64 / MS_PER_S));
        encode::gauges(
            encoder,
            "snapshot_last_applied_timestamp_seconds",
            "When the data plane last acknowledged a generation, in Unix seconds.",
            applied,
        )?;
        encode::counters(
            encoder,
            "snapshot_rejections",
            "Generations the data plane refused (it kept serving the previous one).",
            [(NoLabels::new(), health.rejections)],
        )?;
        let reloads = self.publisher.reloads().counts().map(|(result, n)| ([("result", result.as_str())], n));
        encode::counters(
            encoder,
            "config_reloads",
            "Reloads and applies, by result: applied, refused (did not compile), rejected (by the data plane), timed-out.",
            reloads,
        )
    }
}

/// Connections and requests in flight, summed over the workers of the stats region (nothing
/// when the data plane has not created one).
fn encode_workers(encoder: &mut DescriptorEncoder<'_>, data_dir: &DataDir) -> std::fmt::Result {
    let region = StatsRegion::open(&data_dir.stats_region()).ok();
    let counters: Vec<WorkerCounters> = region
        .as_ref()
        .map(|region| {
            (0..region.worker_count()).filter_map(|index| region.worker(index).map(|slot| slot.read())).collect()
        })
        .unwrap_or_default();
    let present = region.is_some();
    let sum =
        |field: fn(&WorkerCounters) -> u64| present.then(|| (NoLabels::new(), counters.iter().map(field).sum::<u64>()));
    let gauges: [FieldFamily<WorkerCounters>; 3] = [
        ("connections_active", "Client connections open, idle keep-alive ones included.", |c| c.connections_active),
        ("connections_parked", "Of the open connections, the idle keep-alive ones parked without a task.", |c| {
            c.connections_parked
        }),
        ("requests_in_flight", "Requests read but not yet fully answered.", |c| c.in_flight),
    ];
    for (name, help, field) in gauges {
        encode::gauges(encoder, name, help, sum(field))?;
    }
    encode::counters(
        encoder,
        "connections_accepted",
        "Client connections accepted by the running data plane.",
        sum(|c| c.connections_accepted),
    )?;
    let draining = region.as_ref().map(|region| (NoLabels::new(), region.header().draining.load(Ordering::Relaxed)));
    encode::gauges(encoder, "dataplane_draining", "1 once the data plane has stopped accepting to drain.", draining)
}

/// Each named backend's endpoints, from the data plane's health report.
fn encode_upstreams(encoder: &mut DescriptorEncoder<'_>, data_dir: &DataDir) -> std::fmt::Result {
    let backends = crate::admin::status::backends(&data_dir.upstreams_report());
    let endpoints = || {
        backends.iter().flat_map(|backend| {
            backend.endpoints.iter().map(move |endpoint| {
                (vec![label("backend", &backend.id), label("endpoint", &endpoint.address)], endpoint)
            })
        })
    };
    encode::gauges(
        encoder,
        "upstream_endpoint_resolved",
        "1 when the endpoint's host resolved at load (an unresolved one gets no requests).",
        endpoints().map(|(labels, endpoint)| (labels, u64::from(endpoint.resolved))),
    )?;
    encode::gauges(
        encoder,
        "upstream_endpoint_healthy",
        "The active health checks' verdict (1 passing, 0 failing); only endpoints with active checks.",
        endpoints()
            .filter_map(|(labels, endpoint)| endpoint.active_healthy.map(|healthy| (labels, u64::from(healthy)))),
    )?;
    encode::gauges(
        encoder,
        "upstream_endpoint_ejected_workers",
        "Workers whose circuit breaker has the endpoint ejected (open or half-open); 0 when closed everywhere.",
        endpoints().map(|(labels, endpoint)| (labels, u64::from(endpoint.ejected_on_workers))),
    )
}

/// XDP verdicts by reason: the kernel program's counters when it is loaded, and the refusals
/// user space made for the same rules. Skipped when the data plane does not answer in time.
fn encode_xdp(encoder: &mut DescriptorEncoder<'_>, data_dir: &DataDir) -> std::fmt::Result {
    let timeout = Duration::from_millis(XDP_SCRAPE_TIMEOUT_MS);
    let status = ask(&data_dir.xdp_socket(), &Request::XdpStatus, timeout).ok();
    let xdp = status.as_ref().and_then(|answer| answer.get("xdp"));
    let by_reason = |plane: &'static str, key: &str| {
        xdp.and_then(|xdp| xdp.get(key)).and_then(serde_json::Value::as_object).into_iter().flat_map(move |map| {
            map.iter().filter_map(move |(reason, n)| {
                Some((vec![label("plane", plane), label("reason", reason)], n.as_u64()?))
            })
        })
    };
    let kernel_loaded = xdp.and_then(|xdp| xdp.get("kernel")).and_then(serde_json::Value::as_bool) == Some(true);
    let kernel = by_reason("kernel", "counters").filter(|_| kernel_loaded);
    encode::counters(
        encoder,
        "xdp_verdicts",
        "IP-filter verdicts by reason: the XDP program's (plane=kernel, when loaded) and user space's (plane=user-space).",
        kernel.chain(by_reason("user-space", "user_space_refusals")),
    )
}

/// `process_*` for control and, when one is connected, the data plane.
fn encode_processes(encoder: &mut DescriptorEncoder<'_>, dataplane_pid: Option<u32>) -> std::fmt::Result {
    let control = process::read(std::process::id()).map(|stats| ("control", stats));
    let dataplane = dataplane_pid.and_then(process::read).map(|stats| ("dataplane", stats));
    let processes: Vec<_> = control.into_iter().chain(dataplane).collect();
    let each = |value: fn(&process::ProcessStats) -> f64| {
        processes.iter().map(move |(name, stats)| ([("process", *name)], value(stats))).collect::<Vec<_>>()
    };
    let whole = |value: fn(&process::ProcessStats) -> u64| {
        processes.iter().map(move |(name, stats)| ([("process", *name)], value(stats))).collect::<Vec<_>>()
    };
    encode::counters(encoder, "process_cpu_seconds", "User and system CPU time spent.", each(|s| s.cpu_seconds))?;
    let gauges: [FieldFamily<process::ProcessStats>; 4] = [
        ("process_resident_memory_bytes", "Resident memory size.", |s| s.resident_memory_bytes),
        ("process_virtual_memory_bytes", "Virtual memory size.", |s| s.virtual_memory_bytes),
        ("process_open_fds", "Open file descriptors.", |s| s.open_fds),
        ("process_threads", "Threads.", |s| s.threads),
    ];
    for (name, help, value) in gauges {
        encode::gauges(encoder, name, help, whole(value))?;
    }
    let started = each(|s| s.start_time_seconds);
    encode::gauges(encoder, "process_start_time_seconds", "When the process started, in Unix seconds.", started)?;
    Ok(())
}
