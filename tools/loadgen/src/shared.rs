//! State shared between the coordinator thread, the publisher thread and the connection worker threads
//! (of this process and, through `shm`, of the run's shard processes).
//!
//! Everything here is either immutable after start or a relaxed/acquire-release atomic written by exactly
//! one thread, so the hot paths never contend on a lock: workers read the per-topic publish counters only
//! when a subscription starts or ends, and publish their own counters once per socket read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::payload::{Clock, HeaderTemplate, Template};
use crate::shm::Region;

/// Settings the threads need, derived from the command line.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Spread client sources over 127.0.0.1..=127.0.0.N (0 = let the kernel choose).
    pub source_ips: u32,
    pub realtime_path: String,
    pub connect_concurrency: usize,
    pub control_conns: usize,
    pub subs_per_client: usize,
    pub clock: Clock,
    pub leave_drain_timeout: Duration,
    pub read_buffer: usize,
    pub publish: PublishTemplates,
}

/// The publish request, as templates (see `payload`).
#[derive(Debug, Clone)]
pub struct PublishTemplates {
    pub path: Template,
    pub headers: Vec<HeaderTemplate>,
    pub body: Template,
    pub pad: String,
}

/// Process-wide shared state.
#[derive(Debug)]
pub struct Shared {
    pub cfg: RunConfig,
    pub topics: Vec<String>,
    /// The publisher's per-topic counters, the workers' live counters and the next client index, in
    /// memory every process of the run maps (see `shm`).
    pub region: &'static Region,
    /// Monotonic ns at start of the run.
    pub t0_ns: u64,
}

impl Shared {
    pub fn next(&self, t: usize) -> u64 {
        self.region.topic(t).next.load(Ordering::Acquire)
    }

    pub fn acked(&self, t: usize) -> u64 {
        self.region.topic(t).acked.load(Ordering::Acquire)
    }

    /// The acked prefix of topic `t` when seq `m` was sent.
    pub fn floor(&self, t: usize, m: u64) -> u64 {
        // `next` is stored (Release) after the lag entry, so a seq below it has its entry written.
        if m >= self.next(t) {
            // Unknown seq (never sent): be lenient, treat everything as concurrent.
            return 0;
        }
        self.region
            .lag(t, m)
            .map_or(0, |l| m - u64::from(l.load(Ordering::Relaxed)))
    }

    /// The topics client `index` subscribes to: `index, index+1, …` modulo the topic count.
    pub fn topics_of(&self, index: u64) -> impl Iterator<Item = u32> + '_ {
        let n = self.topics.len() as u64;
        (0..self.cfg.subs_per_client as u64).map(move |j| ((index + j) % n) as u32)
    }

    /// Per-topic `next` counters now (= messages sent so far per topic).
    pub fn sent_per_topic(&self) -> Vec<u64> {
        (0..self.topics.len()).map(|t| self.next(t)).collect()
    }
}

/// Live counters of one worker thread, read by the coordinator for progress and phase ends. They live in
/// the run's shared mapping (`shm`), so all-zero must be a valid value: atomics only.
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub struct WorkerStats {
    /// Handshakes (connect + PB_CONNECT + subscribe) under way.
    pub connecting: AtomicU64,
    /// Clients streaming now.
    pub active: AtomicU64,
    /// Handshakes that completed / failed, cumulative.
    pub connect_ok: AtomicU64,
    pub connect_failed: AtomicU64,
    /// Clients asked to leave that have not closed yet.
    pub leaving: AtomicU64,
    pub joined: AtomicU64,
    pub left: AtomicU64,
    /// SSE events received after PB_CONNECT.
    pub events: AtomicU64,
    /// Monotonic ns of the last completed handshake / last received event.
    pub last_connect_ns: AtomicU64,
    pub last_event_ns: AtomicU64,
}

impl WorkerStats {
    /// Adds to a counter only this worker writes (a plain load + store: no locked instruction on the hot
    /// path).
    #[inline]
    pub fn bump(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
