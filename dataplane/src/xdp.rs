//! The kernel plane, seen from the data plane: the XDP pre-filter (`kernel`), its rules in
//! user space (`rules`), blocked sources (`blocks`), per-source limits in user space (`limit`),
//! and the threads that keep them in step with snapshots and answer `ctl xdp`
//! (`service`). [`XdpPlane`] ties them together; workers ask it at accept ([`XdpPlane::admit`])
//! and per request ([`XdpPlane::limit_request`]).
//!
//! Workers wait for no lock here: they read the rules and the blocks through arc-swap, count in
//! the lock-free counter store, and hand new blocks to the xdp-sync thread through a bounded
//! queue (writing the kernel map themselves only when its lock is free, `try_lock`). The xdp
//! threads take the locks (the kernel maps, the block table and its file).

pub mod blocks;
pub mod kernel;
pub mod limit;
pub mod rules;
pub mod service;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use portcullis_contract::xdp::{IpPrefix, XdpRules, canonical};
use portcullis_ebpf_common::{VERDICT_REASONS, VERDICT_REASONS_ALL, VerdictReason};
use serde_json::{Value, json};

use self::blocks::{Block, BlockError, BlockLookup, BlockOrigin, Blocks};
use self::kernel::{Kernel, KernelError};
use self::limit::SourceLimits;
use self::rules::SourceRules;

/// Blocks workers may hand to the xdp-sync thread between two of its rounds
/// ([`service::SYNC_INTERVAL_MS`]); past it a block is dropped (its source stays refused by its
/// bucket's penalty, only not at the NIC).
pub const PENDING_BLOCKS_MAX: usize = 1_024;

/// A block a worker asks for.
#[derive(Debug, Clone, Copy)]
struct PendingBlock {
    prefix: IpPrefix,
    seconds: u32,
}

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
    /// The block table: taken by the xdp threads only.
    blocks: Mutex<Blocks>,
    /// What workers read: the block table as published after its last change.
    blocked: ArcSwap<BlockLookup>,
    /// Held while the block file is written (by whichever xdp thread saves), never by a worker.
    blocks_file: Mutex<PathBuf>,
    /// Blocks asked for by workers, applied by the xdp-sync thread.
    pending_blocks: SyncSender<PendingBlock>,
    pending_receiver: Mutex<Receiver<PendingBlock>>,
    /// Per-IP request limit, and the new-connection rate in user space (the kernel's SYN bucket
    /// when there is no kernel plane).
    sources: SourceLimits,
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
        let (pending_blocks, pending_receiver) = std::sync::mpsc::sync_channel(PENDING_BLOCKS_MAX);
        let plane = Self {
            kernel: Mutex::new(kernel),
            kernel_off,
            rules: ArcSwap::from_pointee(SourceRules::default()),
            current: ArcSwap::from_pointee(XdpRules::default()),
            generation: AtomicU64::new(0),
            blocked: ArcSwap::from_pointee(BlockLookup::new(restored.iter())),
            blocks: Mutex::new(restored),
            blocks_file: Mutex::new(blocks_path),
            pending_blocks,
            pending_receiver: Mutex::new(pending_receiver),
            sources: SourceLimits::default(),
            user_drops: std::array::from_fn(|_| AtomicU64::new(0)),
            cli_interfaces: options.interfaces.clone(),
        };
        if let Some(kernel) = plane.kernel().as_mut() {
            for (prefix, block) in plane.blocks().iter() {
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

    /// The block table (xdp threads only: workers read [`XdpPlane::blocked`]).
    fn blocks(&self) -> MutexGuard<'_, Blocks> {
        self.blocks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes the table as it stands for workers' lookups.
    fn publish_blocks(&self, blocks: &Blocks) {
        self.blocked.store(Arc::new(BlockLookup::new(blocks.iter())));
    }

    /// Whether the kernel plane is loaded.
    pub fn kernel_loaded(&self) -> bool {
        self.kernel_off.is_none()
    }

    /// Installs a snapshot's rules: user-space sets, then the kernel maps (generation switch),
    /// then the interfaces the config names.
    pub fn apply(&self, generation: u64, rules: &XdpRules) {
        self.rules.store(Arc::new(SourceRules::new(rules)));
        self.current.store(Arc::new(rules.clone()));
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
            let blocked = self.blocked.load();
            (!blocked.is_empty() && blocked.is_blocked(peer, unix_ms())).then_some(VerdictReason::Blocked)
        });
        let reason = reason.or_else(|| {
            let rules = self.current.load();
            let limited = !self.kernel_loaded() && rules.syn_rate_per_second != 0;
            (limited && !self.sources.take_connection(peer, &rules, monotonic_ns()))
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
    /// Waits for no lock: see [`XdpPlane::block_from_worker`]; until the block is in the table,
    /// the peer's bucket refuses it for the same time.
    pub fn limit_request(&self, peer: IpAddr, rules: &XdpRules) -> Option<u32> {
        if rules.per_ip_requests_per_second == 0 {
            return None;
        }
        let blocked = self.blocked.load();
        if !blocked.is_empty() {
            let now = unix_ms();
            if let Some((_, block)) = blocked.covering(peer, now) {
                let left_ms = block.until_unix_ms.map_or(u64::from(rules.block_seconds) * 1000, |until| until - now);
                return Some(left_ms.div_ceil(1000).max(1) as u32);
            }
        }
        let decision = self.sources.take_request(peer, rules, monotonic_ns());
        if decision.admitted {
            return None;
        }
        if decision.penalty_started {
            self.block_offender(peer, rules.block_seconds.max(1));
        }
        Some(u32::try_from(decision.retry_after_seconds()).unwrap_or(u32::MAX))
    }

    /// Blocks `peer`'s address for `seconds` from a worker (a rate limit's offender): into the
    /// kernel map at once if no xdp thread holds the kernel this instant (`try_lock`, never a
    /// wait: the client's next packet then dies at the NIC, as its 429 is not written yet), and in
    /// any case queued for the xdp-sync thread, which records it in the table (and the kernel, if
    /// it was busy) within [`service::SYNC_INTERVAL_MS`].
    pub fn block_offender(&self, peer: IpAddr, seconds: u32) {
        let host = IpPrefix::new(canonical(peer), if canonical(peer).is_ipv4() { 32 } else { 128 });
        let pending = PendingBlock { prefix: host, seconds };
        if let Ok(mut kernel) = self.kernel.try_lock() {
            if let Some(kernel) = kernel.as_mut() {
                let until_unix_ms = unix_ms().saturating_add(u64::from(pending.seconds) * 1000);
                if let Err(error) = kernel.block(pending.prefix, monotonic_deadline(Some(until_unix_ms))) {
                    tracing::debug!(prefix = %pending.prefix, %error, "blocking at the NIC from a worker");
                }
            }
        }
        if let Err(TrySendError::Full(_)) = self.pending_blocks.try_send(pending) {
            tracing::debug!(client = %pending.prefix.addr, "per-IP request limit exceeded; the block queue is full");
        }
    }

    /// Installs the blocks workers asked for (the xdp-sync thread, every round).
    pub fn apply_pending_blocks(&self) {
        let pending: Vec<PendingBlock> = {
            let receiver = self.pending_receiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            receiver.try_iter().take(PENDING_BLOCKS_MAX).collect()
        };
        for PendingBlock { prefix, seconds } in pending {
            match self.block(prefix, Some(Duration::from_secs(u64::from(seconds))), BlockOrigin::RateLimit) {
                Ok(()) => {
                    tracing::info!(client = %prefix.addr, seconds, "request rate limit exceeded: 429, then blocked")
                }
                Err(error) => {
                    tracing::warn!(client = %prefix.addr, %error, "request rate limit exceeded; could not block")
                }
            }
        }
    }

    /// Blocks `prefix` for `duration` (`None`: until unblocked), in the table and the kernel
    /// (xdp threads only; a worker's blocks go through [`XdpPlane::limit_request`]'s queue).
    pub fn block(&self, prefix: IpPrefix, duration: Option<Duration>, origin: BlockOrigin) -> Result<(), XdpError> {
        let until_unix_ms = duration.map(|d| unix_ms().saturating_add(d.as_millis() as u64));
        let block = Block { until_unix_ms, origin };
        {
            let mut blocks = self.blocks();
            blocks.insert(prefix, block)?;
            self.publish_blocks(&blocks);
        }
        if let Some(kernel) = self.kernel().as_mut() {
            kernel.block(prefix, monotonic_deadline(until_unix_ms))?;
        }
        Ok(())
    }

    /// Removes the block on exactly `prefix`; whether there was one.
    pub fn unblock(&self, prefix: IpPrefix) -> Result<bool, XdpError> {
        let removed = {
            let mut blocks = self.blocks();
            let removed = blocks.remove(&prefix);
            self.publish_blocks(&blocks);
            removed
        };
        if let Some(kernel) = self.kernel().as_mut() {
            kernel.unblock(prefix)?;
        }
        Ok(removed)
    }

    /// Housekeeping, about once a second: expired blocks leave the table and the kernel, and a
    /// changed block table is saved.
    pub fn tick(&self) {
        let expired = {
            let mut blocks = self.blocks();
            let expired = blocks.expire(unix_ms());
            if !expired.is_empty() {
                self.publish_blocks(&blocks);
            }
            expired
        };
        if !expired.is_empty() {
            if let Some(kernel) = self.kernel().as_mut() {
                for prefix in expired {
                    if let Err(error) = kernel.unblock(prefix) {
                        tracing::warn!(%prefix, %error, "removing an expired XDP block");
                    }
                }
            }
        }
        // The sources' idle buckets are not swept: a new source reclaims one in its own bucket of
        // slots, so nothing reads the 8 MiB table every second to free memory that stays allocated.
        self.save_blocks();
    }

    /// Saves the block table if it changed: the bytes are taken under the table's lock, the file
    /// is written after it is released (under the file's own lock, which no worker takes).
    pub fn save_blocks(&self) {
        let path = self.blocks_file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(bytes) = self.blocks().take_unsaved() else { return };
        if let Err(error) = blocks::write_file(&path, &bytes) {
            tracing::warn!(%error, "saving the XDP blocks");
            self.blocks().mark_unsaved();
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
        let blocks = self.blocks().to_json();
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

#[cfg(test)]
mod tests;
