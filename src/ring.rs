//! The cross-core ring: how cores talk, and the only way they do.
//!
//! Each core owns one bounded inbox (a tokio MPSC channel: a lock-free ring of
//! slots whose wakeups reach the owner's event loop). Any core — or any thread
//! — holding a [`Ring`] can post a command to any core. Publishes go to every
//! core as shared batches; everything else (a subscription change, a send to
//! one client, a snapshot) is a closure run on the owner core, found from the
//! client id. Bounded means back-pressure: when an inbox is full the sender
//! waits, so nothing is dropped.
//!
//! A call made on the owner core's own thread (a request that landed on the
//! core that owns its client) runs at once, without the trip through the
//! inbox: [`enter`] tells the ring which core a thread runs.

use crate::core::Core;
use crate::message::Message;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{mpsc, oneshot};

/// Work to run on a core, with its state at hand.
pub type Job = Box<dyn FnOnce(&mut Core) + Send>;

/// What one core asks of another.
pub enum Command {
    /// Fan this batch out; reply with the number of deliveries queued.
    Publish {
        batch: Arc<[Message]>,
        reply: oneshot::Sender<u64>,
    },
    /// Run this on the core (it replies through its own channel).
    Run(Job),
    /// Stop accepting, end every stream politely, then exit.
    Shutdown,
}

/// `f` as a job, and where its result will arrive.
fn job<T: Send + 'static>(
    f: impl FnOnce(&mut Core) -> T + Send + 'static,
) -> (Job, oneshot::Receiver<T>) {
    let (reply, rx) = oneshot::channel();
    let job: Job = Box::new(move |core| {
        // The caller may have gone; then nobody needs the answer.
        let _ = reply.send(f(core));
    });
    (job, rx)
}

/// A core's inbox, read by that core's loop only.
pub type Inbox = mpsc::Receiver<Command>;

/// Senders to every core's inbox; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct Ring {
    cores: Arc<[mpsc::Sender<Command>]>,
    /// Held while one publish is handed to every core, when every core must
    /// see every publish in the same order ([`Ring::in_total_order`]).
    order: Option<Arc<Mutex<()>>>,
}

/// A core's loop has exited: the server is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is shutting down")]
pub struct ShuttingDown;

/// The core this thread runs, if it is a core's thread.
struct Local {
    /// Which server's ring (the address of its sender array).
    ring: usize,
    index: usize,
    core: Rc<RefCell<Core>>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// Declares that this thread runs core `index` of `ring`, so that calls for
/// it from this thread run in place. Called once by each core's loop.
pub fn enter(ring: &Ring, index: usize, core: Rc<RefCell<Core>>) {
    LOCAL.with(|l| {
        *l.borrow_mut() = Some(Local {
            ring: ring.id(),
            index,
            core,
        })
    });
}

/// Undoes [`enter`] when the core's loop ends, so its state is dropped with
/// the loop rather than at thread exit.
pub fn leave() {
    LOCAL.with(|l| l.borrow_mut().take());
}

impl Ring {
    /// A ring for `workers` cores, each inbox holding `capacity` commands.
    pub fn new(workers: usize, capacity: usize) -> (Ring, Vec<Inbox>) {
        let (senders, inboxes) = (0..workers)
            .map(|_| mpsc::channel(capacity.max(1)))
            .unzip::<_, _, Vec<_>, Vec<_>>();
        (
            Ring {
                cores: senders.into(),
                order: None,
            },
            inboxes,
        )
    }

    /// This ring, with publishes reaching every core in one order. Without
    /// it, two publishers on two threads can interleave their sends so that
    /// core 0 sees A then B and core 1 B then A; the history numbers
    /// messages on each core and needs them alike (`core::history`). The
    /// lock is taken once per batch, after every slot is reserved, for a few
    /// non-blocking sends.
    pub fn in_total_order(mut self) -> Ring {
        self.order = Some(Arc::default());
        self
    }

    pub fn workers(&self) -> usize {
        self.cores.len()
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.cores).cast::<()>() as usize
    }

    /// Runs `f` at once if this thread runs core `core` of this ring and the
    /// core is not busy (a hook blocking on a broker call would find it
    /// borrowed); otherwise gives `f` back.
    fn run_here<T, F: FnOnce(&mut Core) -> T>(&self, core: usize, f: F) -> Result<T, F> {
        LOCAL.with(|l| match &*l.borrow() {
            Some(local) if local.index == core && local.ring == self.id() => {
                match local.core.try_borrow_mut() {
                    Ok(mut c) => Ok(f(&mut c)),
                    Err(_) => Err(f),
                }
            }
            _ => Err(f),
        })
    }

    /// Runs `f` on the core this thread runs, if it is one of this ring's
    /// and not busy; otherwise does nothing. For counting work done on the
    /// core a request landed on rather than its client's owner.
    pub fn on_this_core(&self, f: impl FnOnce(&mut Core)) {
        LOCAL.with(|l| {
            if let Some(local) = l.borrow().as_ref().filter(|l| l.ring == self.id()) {
                if let Ok(mut core) = local.core.try_borrow_mut() {
                    f(&mut core);
                }
            }
        });
    }

    /// Hands a batch to every core; resolves once each has queued it, with the
    /// total number of deliveries. All or nothing: a slot is reserved in every
    /// inbox before any core is sent the batch, so a publish is never half
    /// delivered and then answered as failed (its retry would duplicate it).
    pub async fn publish(&self, batch: impl Into<Arc<[Message]>>) -> Result<u64, ShuttingDown> {
        let batch: Arc<[Message]> = batch.into();
        let permits = self.reserve_all().await?;
        let mut replies = Vec::with_capacity(permits.len());
        {
            let _turn = self
                .order
                .as_ref()
                .map(|order| order.lock().unwrap_or_else(PoisonError::into_inner));
            for permit in permits {
                let (reply, rx) = oneshot::channel();
                permit.send(Command::Publish {
                    batch: batch.clone(),
                    reply,
                });
                replies.push(rx);
            }
        }
        let mut total = 0;
        for rx in replies {
            total += rx.await.map_err(|_| ShuttingDown)?;
        }
        Ok(total)
    }

    /// A slot in every core's inbox, or none if one of them is closed.
    async fn reserve_all(&self) -> Result<Vec<mpsc::Permit<'_, Command>>, ShuttingDown> {
        let mut permits = Vec::with_capacity(self.cores.len());
        for core in self.cores.iter() {
            permits.push(core.reserve().await.map_err(|_| ShuttingDown)?);
        }
        Ok(permits)
    }

    /// Runs `f` on core `core` and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        core: usize,
        f: impl FnOnce(&mut Core) -> T + Send + 'static,
    ) -> Result<T, ShuttingDown> {
        let f = match self.run_here(core, f) {
            Ok(out) => return Ok(out),
            Err(f) => f,
        };
        let (job, rx) = job(f);
        self.cores[core]
            .send(Command::Run(job))
            .await
            .map_err(|_| ShuttingDown)?;
        rx.await.map_err(|_| ShuttingDown)
    }

    /// Runs `f` on every core (all at once), results in core order; on all
    /// of them or none, as [`Ring::publish`].
    pub async fn call_all<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Core) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, ShuttingDown> {
        let f = Arc::new(f);
        let permits = self.reserve_all().await?;
        let mut replies = Vec::with_capacity(permits.len());
        for permit in permits {
            let f = f.clone();
            let (job, rx) = job(move |core: &mut Core| f(core));
            permit.send(Command::Run(job));
            replies.push(rx);
        }
        let mut out = Vec::with_capacity(replies.len());
        for rx in replies {
            out.push(rx.await.map_err(|_| ShuttingDown)?);
        }
        Ok(out)
    }

    /// Tells every core to shut down; callable from a plain thread (not from
    /// inside an async runtime).
    pub fn shutdown_blocking(&self) {
        for core in self.cores.iter() {
            // A core that already exited has nothing left to stop.
            let _ = core.blocking_send(Command::Shutdown);
        }
    }
}
