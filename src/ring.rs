//! The cross-core ring: how cores talk, and the only way they do.
//!
//! Each core owns one bounded inbox (a tokio MPSC channel: a lock-free ring of
//! slots whose wakeups reach the owner's event loop). Any core — or any thread
//! — holding a [`Ring`] can post a command to any core. Publishes go to every
//! core; a subscription change goes to the client's owner core, found from the
//! client id. Bounded means back-pressure: when an inbox is full the sender
//! waits, so nothing is dropped.

use crate::core::CoreStats;
use crate::http::error::ApiError;
use crate::publish::Message;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What one core asks of another.
#[derive(Debug)]
pub enum Command {
    /// Fan this batch out; reply with the number of deliveries queued.
    Publish {
        batch: Arc<[Message]>,
        reply: oneshot::Sender<u64>,
    },
    /// Replace the subscriptions of a client this core owns.
    Subscribe {
        client_id: String,
        key: usize,
        ip: IpAddr,
        subscriptions: Vec<String>,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// Report this core's counters.
    Stats { reply: oneshot::Sender<CoreStats> },
    /// Stop accepting, end every stream politely, then exit.
    Shutdown,
}

/// A core's inbox, read by that core's loop only.
pub type Inbox = mpsc::Receiver<Command>;

/// Senders to every core's inbox; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct Ring {
    cores: Arc<[mpsc::Sender<Command>]>,
}

/// A core's loop has exited: the server is shutting down.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server is shutting down")]
pub struct ShuttingDown;

impl From<ShuttingDown> for ApiError {
    fn from(_: ShuttingDown) -> Self {
        ApiError::new(503, "The server is shutting down.")
    }
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
            },
            inboxes,
        )
    }

    pub fn workers(&self) -> usize {
        self.cores.len()
    }

    /// Hands a batch to every core; resolves once each has queued it, with the
    /// total number of deliveries.
    pub async fn publish(&self, batch: Vec<Message>) -> Result<u64, ShuttingDown> {
        let batch: Arc<[Message]> = batch.into();
        let mut replies = Vec::with_capacity(self.cores.len());
        for core in self.cores.iter() {
            let (reply, rx) = oneshot::channel();
            core.send(Command::Publish {
                batch: batch.clone(),
                reply,
            })
            .await
            .map_err(|_| ShuttingDown)?;
            replies.push(rx);
        }
        let mut total = 0;
        for rx in replies {
            total += rx.await.map_err(|_| ShuttingDown)?;
        }
        Ok(total)
    }

    /// Asks `core` to replace a client's subscriptions.
    pub async fn subscribe(
        &self,
        core: usize,
        client_id: String,
        key: usize,
        ip: IpAddr,
        subscriptions: Vec<String>,
    ) -> Result<(), ApiError> {
        let (reply, rx) = oneshot::channel();
        self.cores[core]
            .send(Command::Subscribe {
                client_id,
                key,
                ip,
                subscriptions,
                reply,
            })
            .await
            .map_err(|_| ShuttingDown)?;
        rx.await.map_err(|_| ShuttingDown)?
    }

    /// Every core's counters, in core order.
    pub async fn stats(&self) -> Result<Vec<CoreStats>, ShuttingDown> {
        let mut out = Vec::with_capacity(self.cores.len());
        for core in self.cores.iter() {
            let (reply, rx) = oneshot::channel();
            core.send(Command::Stats { reply })
                .await
                .map_err(|_| ShuttingDown)?;
            out.push(rx.await.map_err(|_| ShuttingDown)?);
        }
        Ok(out)
    }

    /// Tells every core to shut down; callable from a plain thread.
    pub fn shutdown_blocking(&self) {
        for core in self.cores.iter() {
            // A core that already exited has nothing left to stop.
            let _ = core.blocking_send(Command::Shutdown);
        }
    }
}
