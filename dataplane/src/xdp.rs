//! The kernel plane, seen from the data plane: the XDP pre-filter (`kernel`), its rules in
//! user space (`rules`), blocked sources (`blocks`), per-source limits in user space (`limit`),
//! and the threads that keep them in step with snapshots and answer `ctl xdp`
//! (`service`). [`XdpPlane`] ties them together; workers ask it at accept ([`XdpPlane::admit`])
//! and per request ([`XdpPlane::limit_request`]).

pub mod blocks;
pub mod kernel;
pub mod limit;
pub mod rules;
pub mod service;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use portcullis_contract::xdp::{IpPrefix, XdpRules, canonical};
use portcullis_ebpf_common::{VERDICT_REASONS, VERDICT_REASONS_ALL, VerdictReason};
use serde_json::{Value, json};

use self::blocks::{Block, BlockError, BlockOrigin, Blocks};
use self::kernel::{Kernel, KernelError};
use self::limit::SourceLimiter;
use self::rules::SourceRules;

/// What the command line says about XDP.
#[derive(Debug, Clone, Default)]
pub struct XdpOptions {
    /// `--xdp=off` turns the kernel plane off (the rules are then enforced in user space).
    pub disabled: bool,
    /// `--xdp-iface`: interfaces to attach to at start (more may come from `[xdp] interfaces`).
    pub interfaces: Vec<String>,
}

/// Errors of `block` / `unblock` as the admin sees them.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error(transparent)]
    Blocks(#[from] BlockError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// The kernel plane and its user-space twin.
#[derive(Debug)]
pub struct XdpPlane {
    /// `None`: no kernel plane (disabled, or no CAP_BPF/CAP_NET_ADMIN); see `kernel_off`.
    kernel: Mutex<Option<Kernel>>,
    /// Why there is no kernel plane.
    kernel_off: Option<String>,
    /// Allow/deny of the current snapshot, for admission in user space.
    rules: ArcSwap<SourceRules>,
    /// The current snapshot's `[xdp]` section.
    current: ArcSwap<XdpRules>,
    /// Generation of the snapshot the rules came from.
    generation: AtomicU64,
    blocks: RwLock<Blocks>,
    blocks_path: PathBuf,
    /// Per-IP request limit.
    requests: SourceLimiter,
    /// New-connection rate in user space (the kernel's SYN bucket when there is no kernel plane).
    connections: SourceLimiter,
    /// Connections refused at accept, by reason.
    user_drops: [AtomicU64; VERDICT_REASONS as usize],
    /// Interfaces from the command line (kept attached whatever the config says).
    cli_interfaces: Vec<String>,
}

impl XdpPlane {
    /// Loads the program (unless disabled), marks `listen` as the gateway's listeners, attaches
    /// to the command-line interfaces and restores the persisted blocks. Says in one log line
    /// whether the kernel plane is on; when it is not, the rules are enforced in user space.
    pub fn start(options: &XdpOptions, blocks_path: PathBuf, listen: &[SocketAddr]) -> anyhow::Result<Self> {
        let restored = Blocks::restore(&blocks_path, unix_ms()).unwrap_or_else(|error| {
            tracing::warn!(%error, "ignoring the saved XDP blocks");
            Blocks::default()
        });
        let (kernel, kernel_off) = if options.disabled {
            (None, Some("disabled by --xdp=off".to_owned()))
        } else {
            match Kernel::load().and_then(|mut kernel| kernel.set_listeners(listen).map(|()| kernel)) {
                Ok(kernel) => (Some(kernel), None),
                Err(error) => (None, Some(format!("needs CAP_BPF and CAP_NET_ADMIN ({error})"))),
            }
        };
        let plane = Self {
            kernel: Mutex::new(kernel),
            kernel_off,
            rules: ArcSwap::from_pointee(SourceRules::default()),
            current: ArcSwap::from_pointee(XdpRules::default()),
            generation: AtomicU64::new(0),
            blocks: RwLock::new(restored),
            blocks_path,
            requests: SourceLimiter::default(),
            connections: SourceLimiter::default(),
            user_drops: std::array::from_fn(|_| AtomicU64::new(0)),
            cli_interfaces: options.interfaces.clone(),
        };
        if let Some(kernel) = plane.kernel().as_mut() {
            for (prefix, block) in plane.blocks.read().map_err(|_| anyhow::anyhow!("blocks lock poisoned"))?.iter() {
                kernel.block(*prefix, monotonic_deadline(block.until_unix_ms))?;
            }
            for interface in &options.interfaces {
                let mode = kernel.attach(interface)?;
                tracing::info!(interface, mode = mode.as_str(), "XDP pre-filter attached");
            }
        }
        match &plane.kernel_off {
            Some(reason) => tracing::warn!("XDP pre-filter off: {reason}; enforcing the [xdp] rules in user space"),
            None if options.interfaces.is_empty() => tracing::info!(
                "XDP pre-filter loaded; attached to no interface yet (--xdp-iface or [xdp] interfaces), rules enforced in user space meanwhile"
            ),
            None => {}
        }
        Ok(plane)
    }

    fn kernel(&self) -> MutexGuard<'_, Option<Kernel>> {
        self.kernel.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the kernel plane is loaded.
    pub fn kernel_loaded(&self) -> bool {
        self.kernel_off.is_none()
    }

    /// Installs a snapshot's rules: user-space sets, then the kernel maps (generation switch),
    /// then the interfaces the config names.
    pub fn apply(&self, generation: u64, rules: &XdpRules) {
        self.rules.store(std::sync::Arc::new(SourceRules::new(rules)));
        self.current.store(std::sync::Arc::new(rules.clone()));
        self.generation.store(generation, Ordering::Relaxed);
        let mut kernel = self.kernel();
        let Some(kernel) = kernel.as_mut() else { return };
        if let Err(error) = kernel.apply(rules) {
            tracing::error!(generation, %error, "filling the XDP maps failed; the previous XDP rules stay in force");
        }
        let attached: Vec<String> = kernel.attached().into_iter().map(|(name, _)| name).collect();
        for interface in rules.interfaces.iter().filter(|name| !attached.contains(name)) {
            match kernel.attach(interface) {
                Ok(mode) => tracing::info!(interface, mode = mode.as_str(), "XDP pre-filter attached (from config)"),
                Err(error) => tracing::warn!(interface, %error, "cannot attach the XDP pre-filter"),
            }
        }
        for interface in
            attached.iter().filter(|name| !rules.interfaces.contains(name) && !self.cli_interfaces.contains(name))
        {
            match kernel.detach(interface) {
                Ok(()) => tracing::info!(interface, "XDP pre-filter detached (no longer in config)"),
                Err(error) => tracing::warn!(interface, %error, "detaching the XDP pre-filter"),
            }
        }
    }

    /// Admission at accept: the same allow/deny/blocked rules as the program (and its SYN rate
    /// when there is no kernel plane). `false`: close the connection at once.
    pub fn admit(&self, peer: IpAddr) -> bool {
        let reason = self.rules.load().refuses(peer).or_else(|| {
            let blocked = self.blocks.read().is_ok_and(|blocks| blocks.is_blocked(peer, unix_ms()));
            blocked.then_some(VerdictReason::Blocked)
        });
        let reason = reason.or_else(|| {
            let rules = self.current.load();
            let limited = !self.kernel_loaded() && rules.syn_rate_per_second != 0;
            (limited && !self.connections.take(peer, rules.syn_rate_per_second, rules.syn_burst, Instant::now()))
                .then_some(VerdictReason::SynOverRate)
        });
        match reason {
            Some(reason) => {
                self.user_drops[reason as usize].fetch_add(1, Ordering::Relaxed);
                false
            }
            None => true,
        }
    }

    /// The per-IP request limit: `Some(retry_after_seconds)` when `peer` is over it (answer
    /// 429); the peer is then blocked for `block_seconds`, so its next packets die at the NIC.
    pub fn limit_request(&self, peer: IpAddr, rules: &XdpRules) -> Option<u32> {
        if rules.per_ip_requests_per_second == 0 {
            return None;
        }
        let now = unix_ms();
        if let Some((_, block)) = self.blocks.read().ok().and_then(|blocks| blocks.covering(peer, now)) {
            let left_ms = block.until_unix_ms.map_or(u64::from(rules.block_seconds) * 1000, |until| until - now);
            return Some(left_ms.div_ceil(1000).max(1) as u32);
        }
        if self.requests.take(peer, rules.per_ip_requests_per_second, rules.per_ip_burst, Instant::now()) {
            return None;
        }
        let seconds = rules.block_seconds.max(1);
        let host = IpPrefix::new(canonical(peer), if canonical(peer).is_ipv4() { 32 } else { 128 });
        match self.block(host, Some(Duration::from_secs(u64::from(seconds))), BlockOrigin::RateLimit) {
            Ok(()) => tracing::info!(client = %peer, seconds, "per-IP request limit exceeded: 429, then blocked"),
            Err(error) => tracing::warn!(client = %peer, %error, "per-IP request limit exceeded; could not block"),
        }
        Some(seconds)
    }

    /// Blocks `prefix` for `duration` (`None`: until unblocked), in the table and the kernel.
    pub fn block(&self, prefix: IpPrefix, duration: Option<Duration>, origin: BlockOrigin) -> Result<(), XdpError> {
        let until_unix_ms = duration.map(|d| unix_ms().saturating_add(d.as_millis() as u64));
        let block = Block { until_unix_ms, origin };
        self.blocks.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(prefix, block)?;
        if let Some(kernel) = self.kernel().as_mut() {
            kernel.block(prefix, monotonic_deadline(until_unix_ms))?;
        }
        Ok(())
    }

    /// Removes the block on exactly `prefix`; whether there was one.
    pub fn unblock(&self, prefix: IpPrefix) -> Result<bool, XdpError> {
        let removed = self.blocks.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&prefix);
        if let Some(kernel) = self.kernel().as_mut() {
            kernel.unblock(prefix)?;
        }
        Ok(removed)
    }

    /// Housekeeping, about once a second: expired blocks leave the table and the kernel, idle
    /// limiter entries are forgotten, and a changed block table is saved.
    pub fn tick(&self) {
        let expired = self.blocks.write().unwrap_or_else(std::sync::PoisonError::into_inner).expire(unix_ms());
        if !expired.is_empty() {
            if let Some(kernel) = self.kernel().as_mut() {
                for prefix in expired {
                    if let Err(error) = kernel.unblock(prefix) {
                        tracing::warn!(%prefix, %error, "removing an expired XDP block");
                    }
                }
            }
        }
        let rules = self.current.load();
        let now = Instant::now();
        self.requests.sweep(rules.per_ip_requests_per_second, rules.per_ip_burst, now);
        self.connections.sweep(rules.syn_rate_per_second, rules.syn_burst, now);
        self.save_blocks();
    }

    /// Saves the block table if it changed.
    pub fn save_blocks(&self) {
        let mut blocks = self.blocks.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if blocks.is_dirty() {
            if let Err(error) = blocks.persist(&self.blocks_path) {
                tracing::warn!(%error, "saving the XDP blocks");
            }
        }
    }

    /// `ctl xdp status`: interfaces and modes, counters by reason, map fill, blocks.
    pub fn status(&self) -> Value {
        let by_reason = |values: [u64; VERDICT_REASONS as usize]| -> Value {
            VERDICT_REASONS_ALL
                .iter()
                .map(|reason| (reason.name().to_owned(), json!(values[*reason as usize])))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let user = by_reason(std::array::from_fn(|i| self.user_drops[i].load(Ordering::Relaxed)));
        let blocks = self.blocks.read().map_or(Value::Null, |blocks| blocks.to_json());
        let rules = self.rules.load();
        let mut status = json!({
            "kernel": self.kernel_loaded(),
            "generation": self.generation.load(Ordering::Relaxed),
            "user_space_refusals": user,
            "blocks": blocks,
            "rules": {"allow": rules.allow.len(), "deny": rules.deny.len()},
        });
        if let Some(reason) = &self.kernel_off {
            status["reason"] = json!(reason);
        }
        if let Some(kernel) = self.kernel().as_ref() {
            let interfaces: Vec<Value> =
                kernel.attached().iter().map(|(name, mode)| json!({"name": name, "mode": mode.as_str()})).collect();
            status["interfaces"] = json!(interfaces);
            status["counters"] = kernel.counters().map_or_else(|e| json!(e.to_string()), by_reason);
            let fill = kernel.fill();
            status["maps"] =
                json!({"allow": fill.allow, "deny": fill.deny, "blocked": fill.blocked, "buckets": fill.buckets});
        }
        status
    }

    /// Detaches from every interface and saves the blocks (on exit).
    pub fn shutdown(&self) {
        if let Some(kernel) = self.kernel().as_mut() {
            kernel.detach_all();
        }
        self.save_blocks();
    }
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, so `blocked_until` values compare.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The monotonic-ns deadline matching a wall-clock expiry (`None`: never).
fn monotonic_deadline(until_unix_ms: Option<u64>) -> u64 {
    match until_unix_ms {
        None => u64::MAX,
        Some(until) => {
            let left_ns = until.saturating_sub(unix_ms()).saturating_mul(1_000_000);
            monotonic_ns().saturating_add(left_ns)
        }
    }
}
