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
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Accepts kept in flight per core, so bursts of connects are taken quickly.
const ACCEPT_LOOPS: usize = 4;
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
}

/// Runs core `index` on the calling thread until shutdown.
pub fn run(index: usize, shared: Shared, listener: std::net::TcpListener, inbox: Inbox) {
    let Shared {
        config,
        hooks,
        access,
        ring,
    } = shared;
    runtime::run(async move {
        let policy = Policy::new(hooks, access.rules.clone());
        let core = Rc::new(RefCell::new(Core::new(
            index,
            config.core_settings(),
            policy,
        )));
        crate::ring::enter(&ring, index, core.clone());
        let ctx = Rc::new(CoreCtx {
            index,
            core,
            broker: Broker::new(ring, config.max_queue_bytes),
            cors: Cors::new(config.origins.clone()),
            config,
            access,
        });
        let listener = Rc::new(Listener::from_std(listener));
        for _ in 0..ACCEPT_LOOPS {
            runtime::spawn(accept_loop(ctx.clone(), listener.clone()));
        }
        runtime::spawn(expire_loop(ctx.clone()));
        runtime::spawn(flush_loop(ctx.clone()));
        serve_inbox(&ctx, inbox).await;
        shut_down(&ctx, &listener).await;
        crate::ring::leave();
    });
}

async fn accept_loop(ctx: Rc<CoreCtx>, listener: Rc<Listener>) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                if ctx.core.borrow().shutting_down() {
                    socket.close();
                    continue;
                }
                runtime::spawn(serve::serve(Connection::new(ctx.clone(), socket, peer)));
            }
            Err(_) if ctx.core.borrow().shutting_down() => return,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(core = ctx.index, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Writes queued frames to their sockets, a slice of time at a time.
///
/// Between slices it sleeps on a timer rather than yielding, because only a
/// parked thread submits tokio-uring's queued operations: the answers to
/// publishers and their next reads. So requests keep flowing during a large
/// fan-out, and frames published meanwhile for clients still in line join
/// their client's next write: the busier the core, the more frames per write.
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

/// Ends streams whose idle timeout or lifetime passed. Ticks at a tenth of the
/// shorter timeout (10–250 ms), so ends are that precise.
async fn expire_loop(ctx: Rc<CoreCtx>) {
    let shortest = ctx.config.idle_timeout.min(ctx.config.max_lifetime);
    let tick = (shortest / 10).clamp(Duration::from_millis(10), Duration::from_millis(250));
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        ctx.core.borrow_mut().expire();
    }
}

/// Serves commands from other cores until told to shut down.
async fn serve_inbox(ctx: &CoreCtx, mut inbox: Inbox) {
    let mut commands = Vec::with_capacity(INBOX_BATCH);
    loop {
        if inbox.recv_many(&mut commands, INBOX_BATCH).await == 0 {
            return;
        }
        for command in commands.drain(..) {
            match command {
                Command::Publish { batch, reply } => {
                    let n = ctx.core.borrow_mut().publish(&batch);
                    // The publisher may have gone; the messages are queued anyway.
                    let _ = reply.send(n);
                }
                Command::Run(job) => job(&mut ctx.core.borrow_mut()),
                Command::Shutdown => return,
            }
        }
    }
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
