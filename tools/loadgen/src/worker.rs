//! Connection workers: each is one OS thread running a tokio current_thread runtime with a task per SSE
//! client.
//!
//! Why this shape: a task per connection keeps the per-client logic straight-line (connect, read PB_CONNECT,
//! subscribe, stream, leave), while a single-threaded runtime per worker lets all per-client state live in
//! `Rc<RefCell<…>>` without atomics or locks. The read path is tuned for 10k+ mostly idle streams:
//! * all clients of a worker read into **one shared 64 KiB scratch buffer** (tasks never run concurrently
//!   on a current_thread runtime, and the buffer is only borrowed inside a synchronous poll), so an idle
//!   client costs a few hundred bytes of user memory, not a read buffer;
//! * the read goes through `AsyncRead::poll_read`, whose short-read heuristic re-arms readiness without an
//!   extra `EAGAIN` syscall per wake-up;
//! * events are decoded in place by [`StreamDecoder`] and accounted in [`Tracker`]s; the only per-event
//!   work is a 40-byte id compare, an event-name compare and two substring searches in the data;
//! * the latency histogram is per worker (merged at the end), timestamps are taken once per read.
//!
//! The coordinator talks to a worker through [`Cmd`] messages and watches its [`WorkerStats`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use hdrhistogram::Histogram;
use slab::Slab;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::accounting::{Arrival, Totals, Tracker};
use crate::net::{self, HttpConn, Response};
use crate::payload::{self, Clock};
use crate::shared::{Shared, WorkerStats};
use crate::sse::{Feed, Field, Framing, SseSink, StreamDecoder};

/// Messages from the coordinator.
pub enum Cmd {
    /// Start clients with these global indices (each connects, subscribes and then streams).
    Connect(Vec<u64>),
    /// Close idle keep-alive control connections (so they do not count in server memory figures).
    DropControlConns,
    /// Every `1/per_sec` seconds: one random streaming client leaves, one new client joins.
    StartChurn {
        per_sec: f64,
    },
    StopChurn,
    /// How many required deliveries are still to come if `targets[t]` messages are published per topic.
    Status {
        targets: Vec<u64>,
        reply: oneshot::Sender<Status>,
    },
    /// End of run: close accounting with the final per-topic counts and exit the thread.
    Finish {
        targets: Vec<u64>,
        reply: oneshot::Sender<WorkerReport>,
    },
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub remaining: u64,
    pub clients_behind: u64,
}

/// What a worker hands back at the end.
pub struct WorkerReport {
    pub totals: Totals,
    /// Event latency, ns.
    pub latency: Histogram<u64>,
    /// Handshake time (connect → subscription confirmed), µs.
    pub handshake: Histogram<u64>,
    pub leave_drain_timeouts: u64,
    /// The first few error messages, for diagnosis.
    pub error_samples: Vec<String>,
}

/// Spawns a worker thread.
pub fn spawn(
    shared: Arc<Shared>,
    stats: &'static WorkerStats,
    n_workers: usize,
) -> io::Result<(mpsc::UnboundedSender<Cmd>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = std::thread::Builder::new()
        .name("loadgen-worker".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, worker_main(shared, stats, n_workers, rx));
        })?;
    Ok((tx, handle))
}

/// A histogram of the workers' bounds (1 ns – 1 h, 3 significant digits): latency, handshakes, and
/// what the coordinator merges them into.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("constant, valid bounds")
}

const MAX_ERROR_SAMPLES: usize = 10;
/// `ev.tracker` values that are not a tracker index.
const EV_NONE: i32 = -1;
const EV_UNKNOWN: i32 = -2;
const EV_CONNECT: i32 = -3;

/// Per-worker state, shared by its tasks through `Rc`.
struct Worker {
    shared: Arc<Shared>,
    stats: &'static WorkerStats,
    clock: Clock,
    topic_names: Vec<Box<[u8]>>,
    get_request: Vec<u8>,
    scratch: RefCell<Box<[u8]>>,
    clients: RefCell<Slab<Rc<ClientCell>>>,
    /// Slab keys of streaming clients not asked to leave (churn picks from here).
    active: RefCell<Vec<usize>>,
    latency: RefCell<Histogram<u64>>,
    handshake: RefCell<Histogram<u64>>,
    /// Accounting of clients that are gone.
    totals: RefCell<Totals>,
    leave_drain_timeouts: Cell<u64>,
    error_samples: RefCell<Vec<String>>,
    connect_sem: Semaphore,
    control_sem: Semaphore,
    control_pool: RefCell<HashMap<Option<Ipv4Addr>, Vec<HttpConn>>>,
    churning: Cell<bool>,
    rng: Cell<u64>,
}

struct ClientCell {
    c: RefCell<Client>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Streaming,
    Leaving,
}

struct Client {
    index: u64,
    src: Option<Ipv4Addr>,
    phase: Phase,
    decoder: StreamDecoder,
    core: Core,
    /// Per tracker: `req_hi` fixed when the client was asked to leave.
    leave_targets: Vec<u64>,
    waker: Option<Waker>,
}

/// The part of a client the SSE sink mutates.
struct Core {
    /// The client id from PB_CONNECT (empty until then).
    id: Vec<u8>,
    /// `id:` seen during the handshake, before the id is known.
    pending_id: Vec<u8>,
    trackers: Vec<Tracker>,
    counts: Totals,
    ev: EvState,
}

#[derive(Debug, Clone, Copy)]
struct EvState {
    id_seen: bool,
    id_ok: bool,
    tracker: i32,
    data_lines: u32,
    seq: Option<u64>,
    ts: Option<u64>,
}

impl EvState {
    const EMPTY: EvState = EvState {
        id_seen: false,
        id_ok: false,
        tracker: EV_NONE,
        data_lines: 0,
        seq: None,
        ts: None,
    };
}

/// Decoding context for one read.
struct Sink<'a> {
    core: &'a mut Core,
    shared: &'a Shared,
    topics: &'a [Box<[u8]>],
    latency: &'a mut Histogram<u64>,
    now_ns: u64,
}

impl SseSink for Sink<'_> {
    #[inline]
    fn field(&mut self, field: Field, value: &[u8]) {
        let c = &mut *self.core;
        match field {
            Field::Id => {
                c.ev.id_seen = true;
                if c.id.is_empty() {
                    c.pending_id.clear();
                    c.pending_id.extend_from_slice(value);
                } else {
                    c.ev.id_ok = value == c.id.as_slice();
                }
            }
            Field::Event => {
                c.ev.tracker = if value == b"PB_CONNECT" {
                    EV_CONNECT
                } else {
                    c.trackers
                        .iter()
                        .position(|t| *self.topics[t.topic as usize] == *value)
                        .map_or(EV_UNKNOWN, |i| i as i32)
                };
            }
            Field::Data => {
                c.ev.data_lines += 1;
                if c.ev.data_lines == 1 && c.ev.tracker >= 0 {
                    let st = payload::extract(value);
                    c.ev.seq = st.seq;
                    c.ev.ts = st.ts;
                } else if c.ev.tracker == EV_CONNECT && c.id.is_empty() && c.pending_id.is_empty() {
                    // No `id:` line: fall back to the clientId in the data.
                    if let Some(id) = client_id_from_data(value) {
                        c.pending_id = id.to_vec();
                    }
                }
            }
            Field::Other => {}
        }
    }

    #[inline]
    fn dispatch(&mut self) {
        let c = &mut *self.core;
        let ev = std::mem::replace(&mut c.ev, EvState::EMPTY);
        if c.id.is_empty() {
            // Handshake: the first event must be PB_CONNECT.
            if ev.tracker == EV_CONNECT && !c.pending_id.is_empty() {
                c.id = std::mem::take(&mut c.pending_id);
            } else {
                c.counts.events += 1;
                c.counts.unexpected += 1;
                c.counts.unexpected_name += 1;
            }
            return;
        }
        c.counts.events += 1;
        if !(ev.id_seen && ev.id_ok) {
            c.counts.wrong_id += 1;
        }
        match ev.tracker {
            EV_CONNECT => {
                c.counts.unexpected += 1;
                c.counts.unexpected_connect += 1;
            }
            i if i < 0 => {
                c.counts.unexpected += 1;
                c.counts.unexpected_name += 1;
            }
            i => {
                let Some(seq) = ev.seq.filter(|_| ev.data_lines == 1) else {
                    c.counts.bad_payload += 1;
                    return;
                };
                let tr = &mut c.trackers[i as usize];
                let topic = tr.topic as usize;
                let shared = self.shared;
                match tr.on_seq(seq, |m| shared.floor(topic, m)) {
                    Arrival::InOrder | Arrival::Late | Arrival::Reordered => match ev.ts {
                        Some(ts) => {
                            self.latency
                                .saturating_record(self.now_ns.saturating_sub(ts));
                        }
                        None => c.counts.no_timestamp += 1,
                    },
                    Arrival::Duplicate | Arrival::Unexpected => {}
                }
            }
        }
    }
}

fn client_id_from_data(data: &[u8]) -> Option<&[u8]> {
    let key = b"\"clientId\":\"";
    let start = memchr::memmem::find(data, key)? + key.len();
    let len = memchr::memchr(b'"', &data[start..])?;
    Some(&data[start..start + len])
}

/// Why a client's stream loop ended.
enum Exit {
    Left,
    LeaveTimeout,
    Broken(String),
}

async fn worker_main(
    shared: Arc<Shared>,
    stats: &'static WorkerStats,
    n_workers: usize,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
) {
    let cfg = &shared.cfg;
    let get_request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-store\r\n\r\n",
        cfg.realtime_path, cfg.host
    )
    .into_bytes();
    let w = Rc::new(Worker {
        clock: cfg.clock,
        topic_names: shared
            .topics
            .iter()
            .map(|t| t.as_bytes().to_vec().into_boxed_slice())
            .collect(),
        get_request,
        scratch: RefCell::new(vec![0u8; cfg.read_buffer].into_boxed_slice()),
        clients: RefCell::new(Slab::new()),
        active: RefCell::new(Vec::new()),
        latency: RefCell::new(histogram()),
        handshake: RefCell::new(histogram()),
        totals: RefCell::new(Totals::default()),
        leave_drain_timeouts: Cell::new(0),
        error_samples: RefCell::new(Vec::new()),
        connect_sem: Semaphore::new((cfg.connect_concurrency / n_workers).max(1)),
        control_sem: Semaphore::new(cfg.control_conns.max(1)),
        control_pool: RefCell::new(HashMap::new()),
        churning: Cell::new(false),
        rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (std::ptr::from_ref(stats) as u64)),
        stats,
        shared: shared.clone(),
    });
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Connect(indices) => {
                for i in indices {
                    w.spawn_client(i);
                }
            }
            Cmd::DropControlConns => w.control_pool.borrow_mut().clear(),
            Cmd::StartChurn { per_sec } => {
                if per_sec > 0.0 {
                    w.churning.set(true);
                    tokio::task::spawn_local(churn(w.clone(), per_sec));
                }
            }
            Cmd::StopChurn => w.churning.set(false),
            Cmd::Status { targets, reply } => {
                let _ = reply.send(w.status(&targets));
            }
            Cmd::Finish { targets, reply } => {
                let _ = reply.send(w.finish(&targets));
                return;
            }
        }
    }
}

impl Worker {
    fn spawn_client(self: &Rc<Self>, index: u64) {
        let cfg = &self.shared.cfg;
        let cell = Rc::new(ClientCell {
            c: RefCell::new(Client {
                index,
                src: net::source_ip(index, cfg.source_ips),
                phase: Phase::Handshake,
                decoder: StreamDecoder::new(Framing::Chunked),
                core: Core {
                    id: Vec::new(),
                    pending_id: Vec::new(),
                    trackers: Vec::with_capacity(cfg.subs_per_client),
                    counts: Totals::default(),
                    ev: EvState::EMPTY,
                },
                leave_targets: Vec::new(),
                waker: None,
            }),
        });
        let key = self.clients.borrow_mut().insert(cell.clone());
        self.stats
            .connecting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_local(run_client(self.clone(), cell, key));
    }

    fn sample_error(&self, msg: String) {
        let mut s = self.error_samples.borrow_mut();
        if s.len() < MAX_ERROR_SAMPLES {
            s.push(msg);
        }
    }

    /// Sends a request on a pooled keep-alive connection from `src` (PocketBase requires the subscription
    /// POST to come from the stream's IP). A stale pooled connection is retried once on a fresh one:
    /// subscription requests are idempotent.
    async fn control_request(&self, src: Option<Ipv4Addr>, req: &[u8]) -> io::Result<Response> {
        let _permit = self.control_sem.acquire().await.expect("semaphore open");
        let dst = self.shared.cfg.target;
        let pooled = self
            .control_pool
            .borrow_mut()
            .get_mut(&src)
            .and_then(|v| v.pop());
        let (conn, resp) = match pooled {
            Some(mut c) => match c.request(req).await {
                Ok(r) => (c, r),
                Err(_) => {
                    let mut c = HttpConn::open(src, dst).await?;
                    let r = c.request(req).await?;
                    (c, r)
                }
            },
            None => {
                let mut c = HttpConn::open(src, dst).await?;
                let r = c.request(req).await?;
                (c, r)
            }
        };
        // Keep at most `control_conns` idle connections over all source addresses.
        let mut pool = self.control_pool.borrow_mut();
        let pooled: usize = pool.values().map(Vec::len).sum();
        if resp.keep_alive && pooled < self.shared.cfg.control_conns {
            pool.entry(src).or_default().push(conn);
        }
        Ok(resp)
    }

    fn status(&self, targets: &[u64]) -> Status {
        let mut st = Status::default();
        for (_, cell) in self.clients.borrow().iter() {
            let c = cell.c.borrow();
            if c.phase != Phase::Streaming {
                continue;
            }
            let r: u64 = c
                .core
                .trackers
                .iter()
                .map(|t| t.remaining(targets[t.topic as usize]))
                .sum();
            if r > 0 {
                st.remaining += r;
                st.clients_behind += 1;
            }
        }
        st
    }

    /// Folds a finished client (its own counters plus its trackers' verdicts) into the worker totals.
    fn fold(
        &self,
        mut counts: Totals,
        trackers: &[Tracker],
        req_hi: impl Fn(usize, &Tracker) -> u64,
        allow_hi: impl Fn(&Tracker) -> u64,
    ) {
        for (i, tr) in trackers.iter().enumerate() {
            counts.add_tracker(tr, tr.finish(req_hi(i, tr), allow_hi(tr)));
        }
        counts.clients_with_errors = u64::from(counts.errors() > 0);
        self.totals.borrow_mut().add(&counts);
    }

    fn finish(&self, targets: &[u64]) -> WorkerReport {
        for (_, cell) in self.clients.borrow().iter() {
            let c = cell.c.borrow();
            match c.phase {
                Phase::Handshake => {
                    let mut t = Totals {
                        connect_failures: 1,
                        clients_with_errors: 1,
                        ..Totals::default()
                    };
                    t.add(&c.core.counts);
                    self.totals.borrow_mut().add(&t);
                    self.sample_error("client still connecting at the end of the run".into());
                }
                Phase::Streaming => self.fold(
                    c.core.counts,
                    &c.core.trackers,
                    |_, tr| targets[tr.topic as usize],
                    |tr| targets[tr.topic as usize],
                ),
                Phase::Leaving => self.fold(
                    c.core.counts,
                    &c.core.trackers,
                    |i, _| c.leave_targets[i],
                    |tr| targets[tr.topic as usize],
                ),
            }
        }
        WorkerReport {
            totals: *self.totals.borrow(),
            latency: self.latency.borrow().clone(),
            handshake: self.handshake.borrow().clone(),
            leave_drain_timeouts: self.leave_drain_timeouts.get(),
            error_samples: self.error_samples.borrow().clone(),
        }
    }

    fn random(&self) -> u64 {
        // xorshift64*: plenty for picking churn victims.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Asks a random streaming client to leave.
    fn request_leave(&self) {
        let key = {
            let mut active = self.active.borrow_mut();
            if active.is_empty() {
                return;
            }
            let i = (self.random() % active.len() as u64) as usize;
            active.swap_remove(i)
        };
        let Some(cell) = self.clients.borrow().get(key).cloned() else {
            return;
        };
        let mut c = cell.c.borrow_mut();
        if c.phase != Phase::Streaming {
            return;
        }
        c.phase = Phase::Leaving;
        // Everything acknowledged by the server up to now must still arrive before we close.
        c.leave_targets = c
            .core
            .trackers
            .iter()
            .map(|t| self.shared.acked(t.topic as usize))
            .collect();
        self.stats
            .leaving
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = c.waker.take() {
            w.wake();
        }
    }

    fn remove_active(&self, key: usize) {
        let mut active = self.active.borrow_mut();
        if let Some(i) = active.iter().position(|&k| k == key) {
            active.swap_remove(i);
        }
    }
}

async fn churn(w: Rc<Worker>, per_sec: f64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64(1.0 / per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if !w.churning.get() {
            return;
        }
        w.request_leave();
        let index = w
            .shared
            .region
            .next_client()
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        w.stats
            .joined
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        w.spawn_client(index);
    }
}

async fn run_client(w: Rc<Worker>, cell: Rc<ClientCell>, key: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    let permit = w.connect_sem.acquire().await.expect("semaphore open");
    let t_start = std::time::Instant::now();
    let hs = handshake(&w, &cell).await;
    drop(permit);
    w.stats.connecting.fetch_sub(1, Relaxed);
    let stream = match hs {
        Ok(s) => s,
        Err(e) => {
            w.stats.connect_failed.fetch_add(1, Relaxed);
            w.stats.last_connect_ns.store(payload::mono_ns(), Relaxed);
            let c = cell.c.borrow();
            w.sample_error(format!("client {}: {e}", c.index));
            let mut t = c.core.counts;
            t.connect_failures += 1;
            t.clients_with_errors = 1;
            w.totals.borrow_mut().add(&t);
            drop(c);
            w.clients.borrow_mut().remove(key);
            return;
        }
    };
    let _ = w
        .handshake
        .borrow_mut()
        .record(t_start.elapsed().as_micros() as u64);
    cell.c.borrow_mut().phase = Phase::Streaming;
    w.active.borrow_mut().push(key);
    w.stats.connect_ok.fetch_add(1, Relaxed);
    w.stats.active.fetch_add(1, Relaxed);
    w.stats.last_connect_ns.store(payload::mono_ns(), Relaxed);

    let exit = stream_loop(&w, &cell, stream).await;

    w.stats.active.fetch_sub(1, Relaxed);
    let c = cell.c.borrow();
    let shared = &w.shared;
    match exit {
        Exit::Left | Exit::LeaveTimeout => {
            if matches!(exit, Exit::LeaveTimeout) {
                w.leave_drain_timeouts.set(w.leave_drain_timeouts.get() + 1);
            }
            w.stats.leaving.fetch_sub(1, Relaxed);
            w.stats.left.fetch_add(1, Relaxed);
            w.fold(
                c.core.counts,
                &c.core.trackers,
                |i, _| c.leave_targets[i],
                |tr| shared.next(tr.topic as usize),
            );
        }
        Exit::Broken(msg) => {
            w.sample_error(format!("client {}: stream broke: {msg}", c.index));
            let leaving = c.phase == Phase::Leaving;
            if leaving {
                w.stats.leaving.fetch_sub(1, Relaxed);
            } else {
                w.remove_active(key);
            }
            let mut counts = c.core.counts;
            counts.stream_errors += 1;
            // Whatever the server had acknowledged when the stream broke should have arrived.
            w.fold(
                counts,
                &c.core.trackers,
                |i, tr| {
                    if leaving {
                        c.leave_targets[i]
                    } else {
                        shared.acked(tr.topic as usize)
                    }
                },
                |tr| shared.next(tr.topic as usize),
            );
        }
    }
    drop(c);
    w.clients.borrow_mut().remove(key);
}

#[derive(Debug, thiserror::Error)]
enum HsError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("GET {0}")]
    Get(io::Error),
    #[error("GET answered HTTP {0}")]
    GetStatus(u16),
    #[error("stream before PB_CONNECT: {0}")]
    Stream(String),
    #[error("subscription POST: {0}")]
    Subscribe(io::Error),
    #[error("subscription POST answered HTTP {0}: {1}")]
    SubscribeStatus(u16, String),
}

/// Connect, GET the stream, wait for PB_CONNECT, POST the subscriptions.
async fn handshake(w: &Rc<Worker>, cell: &ClientCell) -> Result<TcpStream, HsError> {
    let shared = &w.shared;
    let cfg = &shared.cfg;
    let (src, index) = {
        let c = cell.c.borrow();
        (c.src, c.index)
    };
    let mut stream = net::connect(src, cfg.target)
        .await
        .map_err(HsError::Connect)?;
    stream
        .write_all(&w.get_request)
        .await
        .map_err(HsError::Get)?;
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let head = loop {
        if stream.read_buf(&mut buf).await.map_err(HsError::Get)? == 0 {
            return Err(HsError::Get(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before response head",
            )));
        }
        if let Some(h) = net::parse_head(&buf).map_err(HsError::Get)? {
            break h;
        }
    };
    if head.status != 200 {
        return Err(HsError::GetStatus(head.status));
    }
    let framing = if head.chunked {
        Framing::Chunked
    } else {
        Framing::Identity
    };
    buf.drain(..head.len);
    {
        let mut c = cell.c.borrow_mut();
        c.decoder = StreamDecoder::new(framing);
    }
    // Read until PB_CONNECT gave us the client id.
    loop {
        if !buf.is_empty() {
            let mut c = cell.c.borrow_mut();
            let c = &mut *c;
            let mut latency = w.latency.borrow_mut();
            let mut sink = Sink {
                core: &mut c.core,
                shared,
                topics: &w.topic_names,
                latency: &mut latency,
                now_ns: w.clock.now_ns(),
            };
            match c.decoder.feed(&buf, &mut sink) {
                Ok(Feed::More) => {}
                Ok(Feed::Ended) => return Err(HsError::Stream("stream ended".into())),
                Err(e) => return Err(HsError::Stream(e.to_string())),
            }
            buf.clear();
            if !c.core.id.is_empty() {
                break;
            }
        }
        if stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| HsError::Stream(e.to_string()))?
            == 0
        {
            return Err(HsError::Stream("closed before PB_CONNECT".into()));
        }
    }
    // Subscribe. unexp_lo is read before the POST goes out, req_lo after its answer (see accounting).
    let body = {
        let mut c = cell.c.borrow_mut();
        let mut body = String::with_capacity(128);
        body.push_str("{\"clientId\":\"");
        body.push_str(&payload::json_escape(&String::from_utf8_lossy(&c.core.id)));
        body.push_str("\",\"subscriptions\":[");
        for (j, t) in shared.topics_of(index).enumerate() {
            if j > 0 {
                body.push(',');
            }
            body.push('"');
            body.push_str(&shared.topics[t as usize]);
            body.push('"');
            c.core
                .trackers
                .push(Tracker::new(t, shared.acked(t as usize)));
        }
        body.push_str("]}");
        body
    };
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        cfg.realtime_path,
        cfg.host,
        body.len(),
        body
    );
    let resp = w
        .control_request(src, req.as_bytes())
        .await
        .map_err(HsError::Subscribe)?;
    if !resp.is_success() {
        return Err(HsError::SubscribeStatus(
            resp.status,
            String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]).into_owned(),
        ));
    }
    let mut c = cell.c.borrow_mut();
    for t in c.core.trackers.iter_mut() {
        t.confirm(shared.next(t.topic as usize));
    }
    Ok(stream)
}

/// Reads and accounts events until the client leaves or the stream breaks.
async fn stream_loop(w: &Rc<Worker>, cell: &ClientCell, mut stream: TcpStream) -> Exit {
    let mut drain: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let drain_timeout = w.shared.cfg.leave_drain_timeout;
    poll_fn(|cx| {
        loop {
            {
                let c = cell.c.borrow();
                if c.phase == Phase::Leaving {
                    let done = c
                        .core
                        .trackers
                        .iter()
                        .zip(&c.leave_targets)
                        .all(|(t, &hi)| t.caught_up(hi));
                    if done {
                        return Poll::Ready(Exit::Left);
                    }
                    let sleep =
                        drain.get_or_insert_with(|| Box::pin(tokio::time::sleep(drain_timeout)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Exit::LeaveTimeout);
                    }
                }
            }
            let mut scratch = w.scratch.borrow_mut();
            let mut rb = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut stream).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    let mut c = cell.c.borrow_mut();
                    if !c.waker.as_ref().is_some_and(|wk| wk.will_wake(cx.waker())) {
                        c.waker = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Exit::Broken(format!("read: {e}"))),
                Poll::Ready(Ok(())) => {
                    let data = rb.filled();
                    if data.is_empty() {
                        return Poll::Ready(Exit::Broken("EOF".into()));
                    }
                    let mono = payload::mono_ns();
                    let now_ns = match w.clock {
                        Clock::Monotonic => mono,
                        Clock::Realtime => w.clock.now_ns(),
                    };
                    let mut c = cell.c.borrow_mut();
                    let c = &mut *c;
                    let before = c.core.counts.events;
                    let mut latency = w.latency.borrow_mut();
                    let mut sink = Sink {
                        core: &mut c.core,
                        shared: &w.shared,
                        topics: &w.topic_names,
                        latency: &mut latency,
                        now_ns,
                    };
                    let r = c.decoder.feed(data, &mut sink);
                    let n = c.core.counts.events - before;
                    if n > 0 {
                        WorkerStats::bump(&w.stats.events, n);
                        w.stats
                            .last_event_ns
                            .store(mono, std::sync::atomic::Ordering::Relaxed);
                    }
                    match r {
                        Ok(Feed::More) => {}
                        Ok(Feed::Ended) => {
                            return Poll::Ready(Exit::Broken("server ended the stream".into()));
                        }
                        Err(e) => return Poll::Ready(Exit::Broken(e.to_string())),
                    }
                }
            }
        }
    })
    .await
}
