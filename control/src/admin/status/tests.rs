//! Tests of status collection (against a real stats region) and rendering.

use portcullis_contract::model::Config;
use portcullis_contract::stats::{IoBackend, WorkerSlot};

use super::*;
use crate::publisher::DataPlaneInfo;

fn view(connected: bool) -> PublisherView {
    PublisherView {
        generation: 3,
        applied_generation: 2,
        connected,
        dataplane: connected.then(|| DataPlaneInfo {
            pid: 42,
            workers: 2,
            io_backend: "uring".into(),
            listen: vec!["127.0.0.1:8080".into()],
            listen_tls: None,
        }),
        config: std::sync::Arc::new(Config::empty("/cfg")),
        openid: Vec::new(),
    }
}

#[test]
fn collects_counters_from_the_stats_region() {
    let dir = std::env::temp_dir().join(format!("portcullis-status-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stats.shm");
    let region = StatsRegion::create(&path, 2, IoBackend::Epoll, 1_000).unwrap();
    let slot = region.worker(1).unwrap();
    WorkerSlot::add(&slot.requests, 9);
    WorkerSlot::add(&slot.generation, 2);
    region.header().draining.store(1, Ordering::Relaxed);

    let status = collect(&view(false), &path, Path::new("/cfg"), 62_000);
    assert_eq!((status.generation, status.applied_generation), (3, 2));
    assert_eq!(status.dataplane.uptime_seconds, Some(61));
    assert_eq!(status.dataplane.io_backend.as_deref(), Some("epoll"));
    assert!(status.dataplane.draining && !status.dataplane.connected);
    assert_eq!(status.workers.len(), 2);
    assert_eq!((status.workers[1].counters.requests, status.workers[1].counters.generation), (9, 2));

    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["workers"][1]["requests"], 9);
    assert_eq!(json["workers"][1]["worker"], 1);
    assert_eq!(serde_json::from_value::<Status>(json).unwrap(), status);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_stats_region_is_reported_not_fatal() {
    let status = collect(&view(true), Path::new("/nonexistent/stats.shm"), Path::new("/cfg"), 0);
    assert!(status.stats_error.is_some());
    assert_eq!(status.dataplane.pid, Some(42));
    let table = render(&status);
    assert!(table.contains("stats         unavailable:"), "{table}");
    assert!(table.contains("data plane    pid 42, connected"), "{table}");
}

#[test]
fn renders_a_table() {
    let mut status = collect(&view(true), Path::new("/nonexistent"), Path::new("/cfg"), 0);
    status.stats_error = None;
    status.dataplane.uptime_seconds = Some(3_723);
    status.workers = vec![WorkerStatus {
        worker: 0,
        counters: WorkerCounters {
            requests: 12,
            responses_4xx: 1,
            connections_active: 3,
            connections_parked: 2,
            generation: 3,
            ..Default::default()
        },
    }];
    let table = render(&status);
    let expected = "\
generation    3 published, 2 applied by the data plane
listen        127.0.0.1:8080
io backend    uring, 2 workers
uptime        1h 02m 03s
draining      no

worker  requests       4xx       5xx  active conns  (parked)  in flight  generation
     0        12         1         0             3         2          0           3
";
    assert!(table.ends_with(expected), "{table}");
    assert_eq!(duration(5), "5s");
    assert_eq!(duration(65), "1m 05s");
    assert_eq!(duration(90_061), "1d 01h 01m 01s");
}

#[test]
fn backends_come_from_the_data_planes_report() {
    use portcullis_contract::upstreams::EndpointHealth;
    let dir = std::env::temp_dir().join(format!("portcullis-upstreams-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("upstreams.json");
    assert!(backends(&path).is_empty(), "no report yet");
    let report = UpstreamsReport {
        generation: 2,
        backends: vec![BackendHealth {
            id: "pool".into(),
            load_balancing: "weighted".into(),
            endpoints: vec![EndpointHealth {
                address: "127.0.0.1:9001".into(),
                resolved: true,
                active_healthy: Some(false),
                ejected_on_workers: 1,
            }],
        }],
    };
    std::fs::write(&path, serde_json::to_vec(&report).unwrap()).unwrap();
    let mut status = collect(&view(true), Path::new("/nonexistent"), Path::new("/cfg"), 0);
    status.stats_error = None;
    status.backends = backends(&path);
    assert_eq!(status.backends, report.backends);
    let table = render(&status);
    assert!(table.contains("pool"), "{table}");
    assert!(table.contains("127.0.0.1:9001"), "{table}");
    assert!(table.contains("FAILING"), "{table}");
    assert!(table.contains("1 workers"), "{table}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cache_line_sums_the_workers_and_shows_only_once_the_cache_was_used() {
    let mut status = collect(&view(true), Path::new("/nonexistent"), Path::new("/cfg"), 0);
    status.stats_error = None;
    let worker = |worker, hits, misses, stores, errors| WorkerStatus {
        worker,
        counters: WorkerCounters {
            cache_hits: hits,
            cache_misses: misses,
            cache_stores: stores,
            cache_external_errors: errors,
            ..Default::default()
        },
    };
    status.workers = vec![worker(0, 0, 0, 0, 0)];
    assert!(!render(&status).contains("cache  "), "{}", render(&status));
    status.workers = vec![worker(0, 5, 2, 2, 0), worker(1, 1, 1, 1, 3)];
    let table = render(&status);
    assert!(table.contains("\ncache         6 hits, 3 misses, 3 stores, 3 external errors\n"), "{table}");
}

#[test]
fn openid_keys_and_a_failed_refresh_are_shown() {
    let entries = [
        crate::openid::OpenIdStatus {
            url: "https://a.test/.well-known/openid-configuration".into(),
            keys: 2,
            fetched_unix_s: Some(1_000),
            last_error: None,
        },
        crate::openid::OpenIdStatus {
            url: "https://b.test/.well-known/openid-configuration".into(),
            keys: 1,
            fetched_unix_s: Some(900),
            last_error: Some("status 503 Service Unavailable".into()),
        },
        crate::openid::OpenIdStatus {
            url: "https://c.test/.well-known/openid-configuration".into(),
            keys: 0,
            fetched_unix_s: None,
            last_error: Some("connect: refused".into()),
        },
    ];
    let mut out = String::new();
    render_openid(&mut out, &entries, 1_065);
    assert_eq!(
        out,
        "
openid keys
  https://a.test/.well-known/openid-configuration  2 keys, fetched 1m 05s ago
  https://b.test/.well-known/openid-configuration  1 keys, fetched 2m 45s ago
    LAST FETCH FAILED (serving the last good keys): status 503 Service Unavailable
  https://c.test/.well-known/openid-configuration  0 keys
    LAST FETCH FAILED (no keys yet): connect: refused
"
    );
}
