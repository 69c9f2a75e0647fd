//! Micro-benchmarks of the hot path: request parsing, SSE framing, topic
//! matching, and a core's fan-out to 10,000 in-memory clients.
//!
//! A counting global allocator proves the fan-out claim: publishing one
//! message to 10,000 subscribers allocates a constant handful of times (the
//! frame), not once per recipient, and writing it to 1,000 real sockets
//! (socket pairs: the fd limit forbids 10,000 of them here) allocates nothing
//! more. The same holds with a no-op message hook set (the hook runs per
//! recipient, but only a hook that rewrites a message allocates). The counts
//! are printed and asserted before the timings run.
//!
//! Run: `cargo bench --bench hot_path`

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group};
use ringcast::config::SseIds;
use ringcast::core::topics::Topics;
use ringcast::core::{Core, Policy, Settings};
use ringcast::frame::{BodyMode, Frame};
use ringcast::http::request::parse_head;
use ringcast::runtime::SocketRef;
use ringcast::{Config, Hooks, Message};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A core with the server's default settings but an unbounded queue.
fn new_core(hooks: Hooks) -> Core {
    new_core_with(Config::default(), hooks)
}

/// [`new_core`] with these settings.
fn new_core_with(config: Config, hooks: Hooks) -> Core {
    let settings = Settings {
        max_queue_bytes: usize::MAX / 2,
        ..config.core_settings(ringcast::core::NodeId::random())
    };
    Core::new(0, settings, Policy::new(hooks, Default::default()))
}

/// The server's defaults with `chat` keeping its last 1,000 messages, their
/// cursors in a second `id:` line (`--history chat=1000 --sse-ids topic`).
fn with_history() -> Config {
    Config {
        history: vec!["chat=1000".parse().expect("a history spec")],
        sse_ids: SseIds::Topic,
        workers: Some(1),
        ..Config::default()
    }
}

/// A core with `n` in-memory clients (no sockets) subscribed to `chat`.
fn core_with_clients(n: usize, hooks: Hooks) -> (Core, Vec<usize>) {
    core_with_clients_in(Config::default(), n, hooks)
}

/// [`core_with_clients`] on a core with these settings.
fn core_with_clients_in(config: Config, n: usize, hooks: Hooks) -> (Core, Vec<usize>) {
    let mut core = new_core_with(config, hooks);
    let keys = (0..n)
        .map(|_| {
            let (key, id) = core
                .register(LOCAL, SocketRef::new(-1), BodyMode::Chunked)
                .expect("slot");
            core.set_subscriptions(&id, key, LOCAL, vec!["chat".to_owned()], None)
                .expect("subscribe");
            key
        })
        .collect();
    (core, keys)
}

/// A core whose `n` clients write to real sockets; returns the peers to read.
fn core_with_sockets(n: usize) -> (Core, Vec<UnixStream>, Vec<UnixStream>) {
    let mut core = new_core(Hooks::new());
    let (mut ours, mut peers) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (peer, sock) = UnixStream::pair().expect("socketpair");
        peer.set_nonblocking(true).expect("nonblocking");
        let (key, id) = core
            .register(LOCAL, SocketRef::new(sock.as_raw_fd()), BodyMode::Chunked)
            .expect("slot");
        core.set_subscriptions(&id, key, LOCAL, vec!["chat".to_owned()], None)
            .expect("subscribe");
        ours.push(sock);
        peers.push(peer);
    }
    (core, ours, peers)
}

/// Empties every peer's receive buffer.
fn read_all(peers: &mut [UnixStream], scratch: &mut [u8]) {
    for peer in peers {
        while matches!(peer.read(scratch), Ok(n) if n > 0) {}
    }
}

/// Empties in-memory clients' queues the way a blocked stream's task does.
fn drain(core: &mut Core, keys: &[usize]) -> usize {
    let mut bytes = 0;
    for &key in keys {
        let pieces = core.take_write(key);
        let n: usize = pieces.iter().map(|p| p.len()).sum();
        bytes += n;
        core.complete_write(key, n);
        core.recycle(pieces);
    }
    bytes
}

/// Counts allocations of one publish to 10,000 subscribers, after a warm-up
/// publish has grown the per-core queue storage.
fn fanout_allocations() {
    const N: usize = 10_000;
    let message = [Message::custom("chat", br#"{"text":"hello"}"#.to_vec())];
    for (label, config, hooks) in [
        ("no hooks", Config::default(), Hooks::new()),
        (
            "a no-op message hook",
            Config::default(),
            noop_message_hook(),
        ),
        ("history", with_history(), Hooks::new()),
    ] {
        let (mut core, keys) = core_with_clients_in(config, N, hooks);
        core.publish(&message);
        drain(&mut core, &keys);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let recipients = core.publish(&message);
        let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(recipients, N as u64);
        println!(
            "fan-out to {N} subscribers, {label}: {during} allocations in publish ({:.4} per recipient)",
            during as f64 / N as f64,
        );
        // History adds a few per message (its copy of the data, the
        // cursor), none per recipient.
        assert!(
            during <= 8,
            "publish with {label} allocated {during} times for {N} recipients"
        );
    }

    const S: usize = 1_000;
    let (mut core, _ours, mut peers) = core_with_sockets(S);
    let mut scratch = vec![0u8; 64 * 1024];
    core.publish(&message);
    while core.flush_some(64) {}
    read_all(&mut peers, &mut scratch);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    core.publish(&message);
    while core.flush_some(64) {}
    let written = ALLOCATIONS.load(Ordering::Relaxed) - before;
    read_all(&mut peers, &mut scratch);
    println!(
        "fan-out to {S} sockets (publish + one sendmsg each): {written} allocations ({:.4} per recipient)",
        written as f64 / S as f64
    );
    assert!(
        written <= 4,
        "publish + flush allocated {written} times for {S} recipients"
    );
}

/// A message hook that looks at every delivery and changes nothing.
fn noop_message_hook() -> Hooks {
    Hooks::new().on_message(|e| {
        black_box(e.name());
    })
}

fn parse(c: &mut Criterion) {
    let get = b"GET /api/realtime HTTP/1.1\r\nHost: 127.0.0.1:8090\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nPragma: no-cache\r\nUser-Agent: node\r\n\r\n";
    let post = b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1:8090\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n";
    let mut g = c.benchmark_group("parse_head");
    g.bench_function("sdk_get", |b| b.iter(|| parse_head(black_box(get), 65536)));
    g.bench_function("publish_post", |b| {
        b.iter(|| parse_head(black_box(post), 65536))
    });
    g.finish();
}

fn frame(c: &mut Criterion) {
    let data = br#"{"record":{"collectionId":"pbc_1125843985","collectionName":"posts","id":"rec000000000001","title":"hello"},"action":"create"}"#;
    let mut g = c.benchmark_group("frame");
    g.bench_function("build", |b| {
        b.iter(|| Frame::new(black_box(b"posts/*"), black_box(data)))
    });
    let f = Frame::new(b"posts/*", data);
    g.bench_function("pieces_per_recipient", |b| {
        b.iter(|| (f.head(BodyMode::Chunked), f.tail(BodyMode::Chunked)))
    });
    g.finish();
}

fn matching(c: &mut Criterion) {
    let mut topics = Topics::default();
    for i in 0..10_000u32 {
        topics.add(&format!("topic{i}"), i);
        topics.add(&format!("topic{i}?options=%7B%7D"), i);
    }
    c.bench_function("match/one_of_20k_subscriptions", |b| {
        b.iter(|| topics.matching(black_box("topic4242")).count())
    });
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    // Queueing alone, to in-memory clients (emptied outside the timing),
    // without hooks and with a message hook that changes nothing.
    for (name, n, hooks) in [
        ("publish", 1_000usize, Hooks::new()),
        ("publish", 10_000, Hooks::new()),
        ("publish_noop_message_hook", 10_000, noop_message_hook()),
    ] {
        let (mut core, keys) = core_with_clients(n, hooks);
        let message = [Message::custom("chat", br#"{"text":"hello"}"#.to_vec())];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    core.publish(&message);
                    spent += start.elapsed();
                    drain(&mut core, &keys);
                }
                spent
            })
        });
    }
    // The 100 × 10k burst, without and with history: what keeping it costs.
    let burst: Vec<Message> = (0..100)
        .map(|n| Message::custom("chat", format!(r#"{{"n":{n}}}"#).into_bytes()))
        .collect();
    for (name, config) in [
        ("burst_100", Config::default()),
        ("burst_100_history", with_history()),
    ] {
        let n = 10_000;
        let (mut core, keys) = core_with_clients_in(config, n, Hooks::new());
        g.throughput(Throughput::Elements((n * burst.len()) as u64));
        g.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    core.publish(&burst);
                    spent += start.elapsed();
                    drain(&mut core, &keys);
                }
                spent
            })
        });
    }
    // The real path: publish, then one sendmsg per client (socket pairs, so the
    // kernel's cost is in the figure; the peers are read outside the timing).
    let n = 1_000;
    let (mut core, _ours, mut peers) = core_with_sockets(n);
    let message = [Message::custom("chat", br#"{"text":"hello"}"#.to_vec())];
    let mut scratch = vec![0u8; 64 * 1024];
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("publish_and_send", n), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                core.publish(&message);
                while core.flush_some(64) {}
                spent += start.elapsed();
                read_all(&mut peers, &mut scratch);
            }
            spent
        })
    });
    g.finish();
}

criterion_group!(benches, parse, frame, matching, fanout);

fn main() {
    fanout_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
