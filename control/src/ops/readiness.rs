//! `/readyz`'s verdict: ready when a data plane is connected, listening, not draining, and has
//! applied a snapshot (its stats region's generation, or the publisher's applied generation when
//! the region cannot be read).

use std::path::Path;
use std::sync::atomic::Ordering;

use portcullis_contract::stats::StatsRegion;

use crate::publisher::PublisherHealth;

/// What the readiness check reads from the data plane's stats region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsFacts {
    /// The process that created the region.
    pub pid: u32,
    /// The generation its workers serve (0: none applied yet).
    pub generation: u64,
    pub draining: bool,
}

impl StatsFacts {
    /// The region at `path`, `None` when there is none or it cannot be read.
    pub fn read(path: &Path) -> Option<Self> {
        let region = StatsRegion::open(path).ok()?;
        let header = region.header();
        Some(Self {
            pid: header.pid.load(Ordering::Relaxed),
            generation: header.generation.load(Ordering::Relaxed),
            draining: header.draining.load(Ordering::Relaxed) != 0,
        })
    }
}

/// `Ok` when the gateway is ready to serve, else why not (one short phrase).
pub fn check(health: &PublisherHealth, stats: Option<StatsFacts>) -> Result<(), String> {
    let hello = match (&health.dataplane, health.connected) {
        (Some(hello), true) => hello,
        _ => return Err("the data plane is not connected to control".to_owned()),
    };
    if hello.listen.is_empty() {
        return Err("the data plane has no listener".to_owned());
    }
    let generation = match stats {
        // The region of an earlier data plane says nothing about this one.
        Some(stats) if stats.pid != hello.pid => 0,
        Some(stats) if stats.draining => return Err("the data plane is draining".to_owned()),
        Some(stats) => stats.generation,
        None => health.applied_generation,
    };
    if generation == 0 {
        return Err("the data plane has not applied a snapshot yet".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publisher::DataPlaneInfo;

    fn connected() -> PublisherHealth {
        PublisherHealth {
            generation: 3,
            applied_generation: 3,
            connected: true,
            dataplane: Some(DataPlaneInfo {
                pid: 42,
                workers: 2,
                io_backend: "epoll".into(),
                listen: vec!["127.0.0.1:8080".into()],
                listen_tls: None,
            }),
            ..PublisherHealth::default()
        }
    }

    fn stats(pid: u32, generation: u64, draining: bool) -> Option<StatsFacts> {
        Some(StatsFacts { pid, generation, draining })
    }

    #[test]
    fn ready_once_the_connected_data_plane_applied_a_snapshot() {
        assert_eq!(check(&connected(), stats(42, 3, false)), Ok(()));
        assert_eq!(check(&connected(), None), Ok(()));
    }

    #[test]
    fn not_ready_without_a_data_plane_an_applied_snapshot_or_a_listener() {
        let reason = |health: &PublisherHealth, stats| check(health, stats).unwrap_err();
        let disconnected = PublisherHealth { connected: false, ..connected() };
        assert!(reason(&disconnected, stats(42, 3, false)).contains("not connected"));
        assert!(reason(&PublisherHealth::default(), None).contains("not connected"));
        assert!(reason(&connected(), stats(42, 0, false)).contains("not applied"));
        // A restarted data plane: the publisher remembers the old one's generation, the new
        // region (or an old one left behind) does not count.
        assert!(reason(&connected(), stats(41, 3, false)).contains("not applied"));
        let fresh = PublisherHealth { applied_generation: 0, ..connected() };
        assert!(reason(&fresh, None).contains("not applied"));
        assert!(reason(&connected(), stats(42, 3, true)).contains("draining"));
        let mut deaf = connected();
        deaf.dataplane.as_mut().unwrap().listen.clear();
        assert!(reason(&deaf, stats(42, 3, false)).contains("no listener"));
    }
}
