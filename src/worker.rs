//! One worker core: its event loop, accept loops, inbox and timers.
//!
//! Each core's thread runs this loop: it accepts on its own listener and
//! serves each connection as a task (`crate::serve`), answers the commands
//! other cores and the broker send through its inbox (`crate::ring`), and runs
//! the core's two timers: the flush task that writes queued frames, and the
//! expiry of idle and old streams.

use crate::auth::Access;
use crate::broker::Broker;
use crate::config::Config;
use crate::conn::Connection;
use crate::core::{Core, Policy};
use crate::ctx::CoreCtx;
use crate::hooks::Hooks;
use crate::http::response::Cors;
use crate::ring::{Command, Inbox, Ring};
use crate::runtime::{self, Listener};
use crate::serve;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Accepts kept in flight per core, so bursts of connects are taken quickly.
const ACCEPT_LOOPS: usize = 4;
/// The wait after a failed accept, doubling while failures go on.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept failures are logged at most this often.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);
/// Commands taken from the inbox per loop turn; a batch of publishes fans out
/// before any stream writes, so frames for one client coalesce into one write.
const INBOX_BATCH: usize = 256;
/// Clients written to between clock checks (a write costs ≈ 10 µs of kernel
/// time on loopback).
const FLUSH_BATCH: usize = 16;
/// How long the flush task writes before it lets the loop park.
const FLUSH_SLICE: Duration = Duration::from_millis(2);
/// The pause between slices (rounded up to the timer's millisecond).
const FLUSH_PAUSE: Duration = Duration::from_micros(200);
/// How long shutdown waits for streams to flush and end politely.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What all cores share: read-only settings and the ring.
pub struct Shared {
    pub config: Arc<Config>,
    pub hooks: Hooks,
    pub access: Arc<Access>,
    pub ring: Ring,
    pub broker: Broker,
}

/// Runs core `index` on the calling thread until shutdown.
pub fn run(index: usize, shared: Shared, listener: std::net::TcpListener, inbox: Inbox) {
    let Shared {
        config,
        hooks,
        access,
        ring,
        broker,
    } = shared;
    runtime::run(async move {
        let policy = Policy::new(hooks, access.rules.clone());
        let mut core = Core::new(index, config.core_settings(broker.node()), policy);
        if let Some(cluster) = broker.cluster() {
            core.report_interest(cluster.interest_sink());
        }
        let core = Rc::new(RefCell::new(core));
        crate::ring::enter(&ring, index, core.clone());
        let ctx = Rc::new(CoreCtx {
            index,
            core,
            broker,
            cors: Cors::new(config.origins.clone()),
            config,
            access,
            token_checks: Default::default(),
        });
        let listener = Rc::new(Listener::from_std(listener));
        let trouble = Rc::new(AcceptTrouble::default());
        for _ in 0..ACCEPT_LOOPS {
            runtime::spawn(accept_loop(ctx.clone(), listener.clone(), trouble.clone()));
        }
        runtime::spawn(expire_loop(ctx.clone()));
        if let Some(every) = ctx.config.heartbeat {
            runtime::spawn(heartbeat_loop(ctx.clone(), every));
        }
        runtime::spawn(flush_loop(ctx.clone()));
        runtime::spawn(trim_loop(ctx.clone()));
        serve_inbox(&ctx, inbox).await;
        shut_down(&ctx, &listener).await;
        crate::stream::drop_parked();
        crate::ring::leave();
    });
}

async fn accept_loop(ctx: Rc<CoreCtx>, listener: Rc<Listener>, trouble: Rc<AcceptTrouble>) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                if ctx.core.borrow().shutting_down() {
                    socket.close();
                    continue;
                }
                runtime::spawn(serve::serve(Connection::new(ctx.clone(), socket, peer)));
            }
            Err(_) if ctx.core.borrow().shutting_down() => return,
            Err(e) => {
                // EMFILE and friends: the connection waits in the backlog
                // until descriptors are free; back off instead of spinning.
                ctx.core.borrow_mut().note_accept_error();
                trouble.report(ctx.index, &e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// Accept failures of one core, logged at most once per [`ACCEPT_LOG_EVERY`]
/// (with how many there were), so that a process out of file descriptors
/// does not flood its log while it waits for some to be freed.
#[derive(Default)]
struct AcceptTrouble {
    last_log: Cell<Option<std::time::Instant>>,
    unlogged: Cell<u64>,
}

impl AcceptTrouble {
    fn report(&self, core: usize, error: &std::io::Error) {
        let now = std::time::Instant::now();
        let due = self
            .last_log
            .get()
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_LOG_EVERY);
        if !due {
            self.unlogged.set(self.unlogged.get() + 1);
            return;
        }
        let more = self.unlogged.replace(0);
        self.last_log.set(Some(now));
        tracing::warn!(
            core,
            %error,
            "accept failed (and {more} more times since the last report); retrying with backoff"
        );
    }
}

/// Writes queued frames to their sockets, a slice of time at a time.
///
/// Between slices it sleeps on a timer rather than yielding, because only a
/// parked thread submits tokio-uring's queued operations: the answers to
/// publishers and their next reads. So requests keep flowing during a large
/// fan-out, and frames published meanwhile for clients still in line join
/// their client's next write: the busier the core, the more frames per write.
/// The pause (≈ 1.3 ms once rounded up) is a coalescing window, not waste:
/// parking through a no-op on the ring instead (≈ 3 µs) with 0.5 ms slices
/// cost 25–30 % more CPU per delivery and up to twice the p99 at 1,000
/// messages/s to 1,000 subscribers, and gained nothing measurable at 100/s.
async fn flush_loop(ctx: Rc<CoreCtx>) {
    loop {
        std::future::poll_fn(|cx| ctx.core.borrow_mut().poll_flush(cx)).await;
        let until = std::time::Instant::now() + FLUSH_SLICE;
        while ctx.core.borrow_mut().flush_some(FLUSH_BATCH) && std::time::Instant::now() < until {}
        if ctx.core.borrow().has_flush_line() {
            tokio::time::sleep(FLUSH_PAUSE).await;
        }
    }
}

/// Ends streams whose idle timeout, lifetime or write timeout passed. Ticks
/// at a tenth of the shortest (10–250 ms), so ends are that precise.
async fn expire_loop(ctx: Rc<CoreCtx>) {
    let config = &ctx.config;
    let shortest = config
        .idle_timeout
        .min(config.max_lifetime)
        .min(config.write_timeout);
    let tick = (shortest / 10).clamp(Duration::from_millis(10), Duration::from_millis(250));
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        ctx.core.borrow_mut().expire();
    }
}

/// How often a core looks whether to give freed memory back, and how many
/// streams must have started or ended on it since the last time: a trim
/// walks the allocator's free lists, so it follows churn, not the clock.
const TRIM_CHECK: Duration = Duration::from_secs(1);
const TRIM_AFTER_STREAMS: u64 = 1024;
/// A tick with fewer streams started or ended than this ends a burst; churn
/// that goes on without such a pause is trimmed after at most this many ticks.
const TRIM_QUIET: u64 = TRIM_AFTER_STREAMS / 16;
const TRIM_AT_MOST_EVERY_TICKS: u32 = 10;

/// Gives memory back to the OS ([`runtime::release_free_memory`]) after many
/// streams started or ended here: once such a burst pauses, or every
/// [`TRIM_AT_MOST_EVERY_TICKS`] while it goes on. Ends free whole clients;
/// a burst of connects frees its handshakes' buffers (≈ 2 MB for 512 in
/// flight), which stay resident in the arena between the connections' own
/// allocations otherwise (measured at 19,000 idle streams: ≈ 40 B each).
async fn trim_loop(ctx: Rc<CoreCtx>) {
    // Streams started (those open and those ended) plus streams ended.
    let churn = |core: &Core| core.client_count() as u64 + 2 * core.streams_ended();
    let mut at_trim = churn(&ctx.core.borrow());
    let mut at_tick = at_trim;
    let mut ticks = 0;
    let mut interval = tokio::time::interval(TRIM_CHECK);
    loop {
        interval.tick().await;
        let now = churn(&ctx.core.borrow());
        let (since_trim, since_tick) = (now - at_trim, now - at_tick);
        at_tick = now;
        ticks += 1;
        let settled = since_tick < TRIM_QUIET || ticks >= TRIM_AT_MOST_EVERY_TICKS;
        if since_trim >= TRIM_AFTER_STREAMS && settled {
            at_trim = now;
            ticks = 0;
            let started = std::time::Instant::now();
            runtime::release_free_memory();
            tracing::debug!(took = ?started.elapsed(), "gave free memory back to the OS");
        }
    }
}

/// Queues a heartbeat comment for this core's streams every `every`
/// (`--heartbeat`): one timer per core, not one per stream.
async fn heartbeat_loop(ctx: Rc<CoreCtx>, every: Duration) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        interval.tick().await;
        ctx.core.borrow_mut().heartbeat();
    }
}

/// Serves commands from other cores until told to shut down. What was sent
/// before the inbox closed is still served — the rest of the batch that
/// held `Shutdown`, and what waits behind it — so no caller is left without
/// its answer.
async fn serve_inbox(ctx: &CoreCtx, mut inbox: Inbox) {
    let mut commands = Vec::with_capacity(INBOX_BATCH);
    loop {
        if inbox.recv_many(&mut commands, INBOX_BATCH).await == 0 {
            return;
        }
        let mut stop = false;
        for command in commands.drain(..) {
            stop |= serve_command(ctx, command);
        }
        if stop {
            inbox.close();
            while let Ok(command) = inbox.try_recv() {
                serve_command(ctx, command);
            }
            return;
        }
    }
}

/// Runs one command; `true` if it asks the core to shut down.
fn serve_command(ctx: &CoreCtx, command: Command) -> bool {
    match command {
        Command::Publish { batch, reply } => {
            let n = ctx.core.borrow_mut().publish(&batch);
            // The publisher may have gone; the messages are queued anyway.
            let _ = reply.send(n);
        }
        Command::Run(job) => job(&mut ctx.core.borrow_mut()),
        Command::Shutdown => return true,
    }
    false
}

/// Stops accepting, ends every stream politely, then closes what is left.
async fn shut_down(ctx: &CoreCtx, listener: &Listener) {
    listener.stop();
    ctx.core.borrow_mut().begin_shutdown();
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while ctx.core.borrow().client_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for socket in ctx.core.borrow().connections() {
        socket.abort();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while ctx.core.borrow().open_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::debug!(core = ctx.index, "core stopped");
}
