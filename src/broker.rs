//! [`Broker`]: the server seen from the embedding application — PocketBase's
//! `app.SubscriptionsBroker()`, shaped for a thread-per-core server.
//!
//! The broker is the one way into the cores, for the embedding application
//! and for the HTTP API alike, so both get the same checks and answers.
//! There is no global client map: a client id names its owner core and slab
//! key, so a call about one client is routed to that core through the ring
//! and runs there (at once, when the caller is that core's own thread);
//! listings and broadcasts ask every core. Every method is `async` and
//! works from any thread and any executor (the ring's channels need no
//! particular runtime): from a tokio app, `broker.send(..).await`; from a
//! plain thread, any `block_on` (e.g. `futures::executor::block_on`).
//!
//! Sending never blocks a core and never drops silently: a call returns once
//! the message is queued on the owner core, or with a typed error. An event
//! larger than a client's queue may hold (`--max-queue-bytes`) is refused up
//! front ([`BrokerError::TooLarge`]).
//!
//! Never wait for a broker call inside a hook: hooks run on a core, and that
//! core cannot answer while its hook waits (it would wait forever).
//!
//! ```no_run
//! # async fn demo(broker: ringcast::Broker) -> Result<(), ringcast::BrokerError> {
//! use serde_json::json;
//! let n = broker.publish("chat", &json!({"text": "hi"})).await?;
//! for client in broker.clients().await? {
//!     broker.send(&client.id, "welcome", &json!({"n": n})).await?;
//! }
//! # Ok(()) }
//! ```

use crate::auth::Auth;
use crate::cluster::{Cluster, ClusterError};
use crate::core::{self, ClientOp, CoreError, CoreStats, NodeId, OpReply};
use crate::frame;
use crate::message::{Action, Message};
use crate::ring::{Ring, ShuttingDown};
use serde::Serialize;
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

pub use crate::core::{ClientInfo, StoreOp};

/// Why a broker call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The owner core refused (unknown client, full queue, …).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Message `index` of a batch (`None`: the one event of a send or
    /// broadcast) takes `bytes` on the wire (at least: its data alone, when
    /// that is already too large), more than the `max` bytes a
    /// client may have queued (`--max-queue-bytes`): no client could ever
    /// take it, so it is refused before any core sees it.
    #[error(
        "the event takes {bytes} bytes, more than the {max} bytes a client may have queued (--max-queue-bytes)"
    )]
    TooLarge {
        index: Option<usize>,
        bytes: usize,
        max: usize,
    },
    /// Event names cannot contain line breaks (they would forge SSE fields).
    #[error("the event name {0:?} contains a line break")]
    InvalidEvent(String),
    /// The data could not be serialised to JSON.
    #[error("the message data is not serialisable as JSON: {0}")]
    Data(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The cluster could not carry the call to another node.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A publish was delivered on this node (to `recipients`) but could not
    /// reach the other nodes of the cluster.
    #[error("delivered on this node only ({recipients} deliveries): {error}")]
    ClusterUnreachable {
        recipients: u64,
        error: ClusterError,
    },
}

impl From<ShuttingDown> for BrokerError {
    fn from(_: ShuttingDown) -> Self {
        BrokerError::ShuttingDown
    }
}

/// A handle on a running server's clients; cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Broker {
    ring: Ring,
    /// `--max-queue-bytes`: an event larger than this cannot be delivered.
    max_event_bytes: usize,
    /// This node, as client ids name it.
    node: NodeId,
    cluster: Option<Cluster>,
}

impl Broker {
    pub(crate) fn new(
        ring: Ring,
        max_event_bytes: usize,
        node: NodeId,
        cluster: Option<Cluster>,
    ) -> Broker {
        Broker {
            ring,
            max_event_bytes,
            node,
            cluster,
        }
    }

    /// This node, as its clients' ids name it.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// This node's cluster link, if it is part of one (`--redis`).
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Runs `op` on client `id` wherever it lives: on its owner core of this
    /// node, or through the cluster on its owner node.
    async fn on_owner(&self, id: &str, op: ClientOp) -> Result<OpReply, BrokerError> {
        let not_found = || BrokerError::Core(CoreError::NotFound(id.to_owned()));
        let owner = core::locate(id.as_bytes(), self.ring.workers()).ok_or_else(not_found)?;
        if owner.node != self.node {
            // Without a cluster, an id of another node is just unknown.
            let Some(cluster) = &self.cluster else {
                return Err(not_found());
            };
            return Ok(cluster.call(owner.node, id, op).await??);
        }
        let id = id.to_owned();
        Ok(self
            .ring
            .call(owner.core, move |c| c.apply(op, id.as_bytes(), owner.key))
            .await??)
    }

    /// Refuses an event no client could take.
    fn check_size(&self, index: Option<usize>, bytes: usize) -> Result<(), BrokerError> {
        if bytes > self.max_event_bytes {
            return Err(BrokerError::TooLarge {
                index,
                bytes,
                max: self.max_event_bytes,
            });
        }
        Ok(())
    }

    /// Checks that the stream `id` exists and came from `ip`, as a
    /// subscription POST must (PocketBase's first checks), without changing
    /// anything: worth doing before asking PocketBase about a token.
    pub(crate) async fn check_realtime_client(
        &self,
        id: &str,
        ip: IpAddr,
    ) -> Result<(), BrokerError> {
        self.on_owner(id, ClientOp::CheckRealtime { ip }).await?;
        Ok(())
    }

    /// Counts how a subscription POST's token was taken, on the core this
    /// thread runs (where the token was checked).
    pub(crate) fn note_auth(&self, outcome: core::AuthOutcome) {
        self.ring.on_this_core(|c| c.note_auth(outcome));
    }

    /// Applies a subscription POST of client `id` from `ip` carrying `auth`:
    /// replaces its subscriptions with `subscriptions`, on its owner core;
    /// new ones with history resume from `resume` (its `Last-Event-ID`)
    /// unless they say otherwise.
    pub(crate) async fn set_subscriptions(
        &self,
        id: &str,
        ip: IpAddr,
        subscriptions: Vec<String>,
        auth: Option<Auth>,
        resume: Option<String>,
    ) -> Result<(), BrokerError> {
        let op = ClientOp::SetSubscriptions {
            ip,
            subscriptions,
            auth,
            resume,
        };
        self.on_owner(id, op).await?;
        Ok(())
    }

    /// Number of open realtime streams on this node.
    pub async fn total_clients(&self) -> Result<usize, BrokerError> {
        let counts = self.ring.call_all(|c| c.client_page(0, 0).0).await?;
        Ok(counts.into_iter().sum())
    }

    /// A snapshot of every client of this node (core by core).
    pub async fn clients(&self) -> Result<Vec<ClientInfo>, BrokerError> {
        Ok(self.client_page(0, usize::MAX).await?.1)
    }

    /// Every client of this node, in chunks of at most `n` (PocketBase's
    /// `ChunkedClients`).
    pub async fn chunked_clients(&self, n: usize) -> Result<Vec<Vec<ClientInfo>>, BrokerError> {
        let all = self.clients().await?;
        Ok(all.chunks(n.max(1)).map(<[_]>::to_vec).collect())
    }

    /// The total number of clients of this node and the snapshots of `limit`
    /// of them after the first `skip`, core by core, slot by slot (slots are
    /// reused, so while clients come and go a page may repeat or miss one).
    /// Each core is asked in turn; a core walks its slab without allocating
    /// and copies only the page.
    pub async fn client_page(
        &self,
        skip: usize,
        limit: usize,
    ) -> Result<(usize, Vec<ClientInfo>), BrokerError> {
        let (mut skip, mut limit) = (skip, limit);
        let (mut total, mut items) = (0, Vec::new());
        for core in 0..self.ring.workers() {
            let (count, page) = self
                .ring
                .call(core, move |c| c.client_page(skip, limit))
                .await?;
            total += count;
            skip = skip.saturating_sub(count);
            limit -= page.len();
            items.extend(page);
        }
        Ok((total, items))
    }

    /// A snapshot of client `id`, on whichever node it is.
    pub async fn client_by_id(&self, id: &str) -> Result<ClientInfo, BrokerError> {
        match self.on_owner(id, ClientOp::Info).await? {
            OpReply::Info(info) => Ok(*info),
            _ => Err(unexpected()),
        }
    }

    /// Sends event `event` with `data` (serialised as JSON) to client `id`,
    /// whatever it subscribed. `Ok(false)`: the message hook skipped it.
    pub async fn send(
        &self,
        id: &str,
        event: &str,
        data: &impl Serialize,
    ) -> Result<bool, BrokerError> {
        let data = to_json(data)?;
        self.send_raw(id, event, data).await
    }

    /// [`Broker::send`] with data already serialised (sent verbatim).
    pub async fn send_raw(
        &self,
        id: &str,
        event: &str,
        data: impl Into<Vec<u8>>,
    ) -> Result<bool, BrokerError> {
        check_event(event)?;
        let (event, data) = (event.to_owned(), data.into());
        self.check_size(
            None,
            frame::max_wire_len(frame::field_len(event.as_bytes()), &data),
        )?;
        match self.on_owner(id, ClientOp::Send { event, data }).await? {
            OpReply::Sent(sent) => Ok(sent),
            _ => Err(unexpected()),
        }
    }

    /// Publishes `data` (serialised as JSON) to `topic`, exactly as
    /// `POST /api/publish` does; returns the number of deliveries.
    pub async fn publish(&self, topic: &str, data: &impl Serialize) -> Result<u64, BrokerError> {
        self.publish_messages(vec![Message::custom(topic, to_json(data)?)])
            .await
    }

    /// Publishes a record event (`create`, `update`, `delete`) to the
    /// collection's topics, as PocketBase does. `record` must serialise to a
    /// JSON object with an `id`.
    pub async fn publish_record(
        &self,
        collection: &str,
        collection_id: Option<&str>,
        action: Action,
        record: &impl Serialize,
    ) -> Result<u64, BrokerError> {
        let record = serde_json::to_value(record).map_err(|e| BrokerError::Data(e.to_string()))?;
        let Some(id) = record.get("id").and_then(Value::as_str) else {
            return Err(BrokerError::Data(
                "a record must be a JSON object with a string \"id\"".into(),
            ));
        };
        let message = Message::record(
            collection,
            collection_id,
            action,
            id,
            record.to_string().as_bytes(),
        );
        self.publish_messages(vec![message]).await
    }

    /// Sends event `event` with `data` (serialised as JSON) to every stream
    /// authenticated as user `user_id` (of collection `collection_id`, when
    /// given), on every core of every node, whatever they subscribed; returns
    /// how many of this node's streams got it.
    pub async fn send_to_user(
        &self,
        user_id: &str,
        collection_id: Option<&str>,
        event: &str,
        data: &impl Serialize,
    ) -> Result<u64, BrokerError> {
        let message = Message::to_user(user_id, collection_id, event, to_json(data)?);
        self.publish_messages(vec![message]).await
    }

    /// Publishes prepared messages, in order; returns the number of
    /// deliveries queued on this node. The whole batch is refused, before any
    /// core sees it, if one message has an event name with a line break or is
    /// larger than a client's queue may hold. In a cluster the batch also
    /// goes to the other nodes; when it could not reach them the error says
    /// so, with what was delivered here
    /// ([`BrokerError::ClusterUnreachable`]).
    pub async fn publish_messages(&self, batch: Vec<Message>) -> Result<u64, BrokerError> {
        for (index, message) in batch.iter().enumerate() {
            message.event_names().try_for_each(check_event)?;
            // Data alone over the cap is refused without measuring its
            // lines (a scan of megabytes on the core for a known answer).
            let bytes = if message.data.len() > self.max_event_bytes {
                message.data.len()
            } else {
                message.wire_len()
            };
            self.check_size(Some(index), bytes)?;
        }
        let batch: Arc<[Message]> = batch.into();
        let Some(cluster) = &self.cluster else {
            return Ok(self.ring.publish(batch).await?);
        };
        let (here, there) = tokio::join!(self.ring.publish(batch.clone()), cluster.publish(&batch));
        let recipients = here?;
        match there {
            Ok(()) => Ok(recipients),
            Err(error) => Err(BrokerError::ClusterUnreachable { recipients, error }),
        }
    }

    /// Sends event `event` to every connected client (of every node);
    /// returns how many of this node's got it.
    pub async fn broadcast(&self, event: &str, data: &impl Serialize) -> Result<u64, BrokerError> {
        self.broadcast_raw(event, to_json(data)?).await
    }

    /// [`Broker::broadcast`] with data already serialised (sent verbatim).
    pub async fn broadcast_raw(
        &self,
        event: &str,
        data: impl Into<Vec<u8>>,
    ) -> Result<u64, BrokerError> {
        let data: Vec<u8> = data.into();
        self.publish_messages(vec![Message::broadcast(event, data)])
            .await
            .map_err(|e| match e {
                BrokerError::TooLarge { bytes, max, .. } => BrokerError::TooLarge {
                    index: None,
                    bytes,
                    max,
                },
                e => e,
            })
    }

    /// Ends client `id`'s stream politely (queued messages first, then the
    /// zero-length chunk); the SDK reconnects as after an idle timeout.
    pub async fn unregister(&self, id: &str) -> Result<(), BrokerError> {
        self.on_owner(id, ClientOp::Unregister).await?;
        Ok(())
    }

    /// Sets `key` in client `id`'s store; returns the value it replaced.
    pub async fn set(
        &self,
        id: &str,
        key: &str,
        value: Value,
    ) -> Result<Option<Value>, BrokerError> {
        self.store(id, StoreOp::Set(key.to_owned(), value)).await
    }

    /// Reads `key` from client `id`'s store.
    pub async fn get(&self, id: &str, key: &str) -> Result<Option<Value>, BrokerError> {
        self.store(id, StoreOp::Get(key.to_owned())).await
    }

    /// Removes `key` from client `id`'s store; returns what it held.
    pub async fn unset(&self, id: &str, key: &str) -> Result<Option<Value>, BrokerError> {
        self.store(id, StoreOp::Unset(key.to_owned())).await
    }

    async fn store(&self, id: &str, op: StoreOp) -> Result<Option<Value>, BrokerError> {
        match self.on_owner(id, ClientOp::Store(op)).await? {
            OpReply::Value(value) => Ok(value),
            _ => Err(unexpected()),
        }
    }

    /// Every core's counters (of this node), in core order.
    pub async fn stats(&self) -> Result<Vec<CoreStats>, BrokerError> {
        Ok(self.ring.call_all(|c| c.stats()).await?)
    }
}

/// An answer of the wrong kind: only another node could send one.
fn unexpected() -> BrokerError {
    BrokerError::Cluster(ClusterError::Unreachable)
}

/// Event names (topics become event names too) must not break SSE framing.
fn check_event(name: &str) -> Result<(), BrokerError> {
    if frame::is_valid_name(name) {
        Ok(())
    } else {
        Err(BrokerError::InvalidEvent(name.to_owned()))
    }
}

fn to_json(data: &impl Serialize) -> Result<Vec<u8>, BrokerError> {
    serde_json::to_vec(data).map_err(|e| BrokerError::Data(e.to_string()))
}
