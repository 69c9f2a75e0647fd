//! The link to Redis: one thread beside the cores, with its own
//! current-thread runtime, the one place that talks to Redis.
//!
//! * One subscription connection, drained by the client's own task into a
//!   queue as fast as Redis sends (Redis disconnects a subscriber whose
//!   output buffer grows past `client-output-buffer-limit pubsub`); messages
//!   for the cores go through a bounded forwarding queue, and what does not
//!   fit is dropped and counted rather than let memory grow without end.
//! * A small pool of multiplexed connections for publishing, each fed by one
//!   task in order: the pool connection is chosen by channel, and each task
//!   sends what it has queued as one pipeline, so per-channel order holds
//!   and a burst costs one round trip, not one per message.
//! * Lost link: every request in flight fails at once (`Unreachable`), the
//!   node keeps serving its own clients, and it reconnects with backoff and
//!   subscribes to every channel it still needs.

use super::shared::{self, CallReply, ClusterError, Command, NodeInfo, Shared};
use super::wire::{self, Payload};
use crate::core::{self, ClientOp, CoreError, Interest, NodeId, OpReply};
use crate::message::Message;
use crate::ring::Ring;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Publishing connections per node.
const POOL: usize = 2;
/// Messages from other nodes waiting for the cores.
const FORWARD_QUEUE: usize = 65_536;
/// Messages handed to the cores as one batch.
const FORWARD_BATCH: usize = 256;
/// How often a node says it is alive, and how long that lasts.
const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_TTL_MS: u64 = 3_000;
/// How long an operation on another node's client may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Failures to reach Redis are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// One payload for one channel; `done` learns how many subscribers got it.
struct Part {
    channel: String,
    payload: Vec<u8>,
    done: oneshot::Sender<Result<usize, ClusterError>>,
}

pub(super) struct Link {
    client: redis::Client,
    shared: Arc<Shared>,
    http: String,
    ring: Ring,
    commands: mpsc::UnboundedReceiver<Command>,
    interest: mpsc::UnboundedReceiver<Interest>,
    /// Channels (topics) this node's cores need, and how many cores do.
    wanted: HashMap<Box<str>, u32>,
    /// Operations sent to other nodes, by request id.
    pending: Rc<RefCell<HashMap<u64, (Instant, CallReply)>>>,
    next_request: u64,
    /// The connections the publishing tasks use, while connected.
    pool: Rc<RefCell<Vec<MultiplexedConnection>>>,
    queues: Vec<mpsc::UnboundedSender<Part>>,
    forward: Option<mpsc::Sender<Message>>,
    last_complaint: Option<Instant>,
}

/// Starts the link thread.
pub(super) fn spawn(
    client: redis::Client,
    shared: Arc<Shared>,
    http: String,
    ring: Ring,
    commands: mpsc::UnboundedReceiver<Command>,
    interest: mpsc::UnboundedReceiver<Interest>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ringcast-cluster".into())
        .spawn(move || {
            let link = Link::new(client, shared, http, ring, commands, interest);
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, link.run());
        })?;
    Ok(())
}

impl Link {
    fn new(
        client: redis::Client,
        shared: Arc<Shared>,
        http: String,
        ring: Ring,
        commands: mpsc::UnboundedReceiver<Command>,
        interest: mpsc::UnboundedReceiver<Interest>,
    ) -> Link {
        Link {
            client,
            shared,
            http,
            ring,
            commands,
            interest,
            wanted: HashMap::new(),
            pending: Rc::default(),
            next_request: 0,
            pool: Rc::default(),
            queues: Vec::new(),
            forward: None,
            last_complaint: None,
        }
    }

    async fn run(mut self) {
        let (forward, queue) = mpsc::channel(FORWARD_QUEUE);
        tokio::task::spawn_local(forward_to_cores(self.ring.clone(), queue));
        self.forward = Some(forward);
        for slot in 0..POOL {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::task::spawn_local(publish_in_order(self.pool.clone(), slot, rx));
            self.queues.push(tx);
        }
        let mut backoff = MIN_BACKOFF;
        loop {
            match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
                Ok(Ok((sink, stream))) => {
                    backoff = MIN_BACKOFF;
                    if !self.serve(sink, stream).await {
                        return self.leave().await;
                    }
                }
                Ok(Err(e)) => self.complain(&e.to_string()),
                Err(_) => self.complain("connecting timed out"),
            }
            self.shared.connected.store(false, Ordering::Relaxed);
            self.pool.borrow_mut().clear();
            for (_, (_, reply)) in self.pending.borrow_mut().drain() {
                let _ = reply.send(Err(ClusterError::Unreachable));
            }
            if !self.wait_offline(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Logs a failure to reach Redis, at most every [`LOG_EVERY`].
    fn complain(&mut self, why: &str) {
        let now = Instant::now();
        if self
            .last_complaint
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
        {
            self.last_complaint = Some(now);
            tracing::warn!(
                "cannot reach Redis ({why}); serving this node's clients only and retrying"
            );
        }
    }

    /// Connects, subscribes to this node's channel, the cluster-wide one and
    /// every topic the cores need, and opens the publishing pool.
    async fn connect(&mut self) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
        let (mut sink, stream) = self.client.get_async_pubsub().await?.split();
        let prefix = &self.shared.prefix;
        sink.subscribe(&[
            shared::node_channel(prefix, self.shared.node),
            shared::everyone_channel(prefix),
        ])
        .await?;
        let topics: Vec<String> = self
            .wanted
            .keys()
            .map(|t| shared::topic_channel(prefix, t))
            .collect();
        for chunk in topics.chunks(1000) {
            sink.subscribe(chunk).await?;
        }
        let mut pool = Vec::with_capacity(POOL);
        for _ in 0..POOL {
            pool.push(self.client.get_multiplexed_async_connection().await?);
        }
        *self.pool.borrow_mut() = pool;
        Ok((sink, stream))
    }

    /// Serves while connected; `false` once the node is shutting down.
    async fn serve(&mut self, mut sink: PubSubSink, mut stream: PubSubStream) -> bool {
        self.shared.connected.store(true, Ordering::Relaxed);
        self.shared
            .counters
            .connects
            .fetch_add(1, Ordering::Relaxed);
        self.last_complaint = None;
        tracing::info!(node = %self.shared.node, topics = self.wanted.len(), "connected to Redis");
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.on_message(msg.get_channel_name(), msg.get_payload_bytes()),
                    None => {
                        tracing::warn!("lost the subscription connection to Redis; reconnecting");
                        return true;
                    }
                },
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return false,
                },
                change = self.interest.recv() => {
                    let Some(change) = change else { return false };
                    let (subscribe, unsubscribe) = self.note_interest(change);
                    let ok = (subscribe.is_empty() || sink.subscribe(&subscribe).await.is_ok())
                        && (unsubscribe.is_empty() || sink.unsubscribe(&unsubscribe).await.is_ok());
                    if !ok {
                        tracing::warn!("Redis refused a subscription change; reconnecting");
                        return true;
                    }
                }
                _ = heartbeat.tick() => {
                    self.beat();
                    self.expire_calls();
                }
            }
        }
    }

    /// While Redis is unreachable: refuses what needs it and keeps track of
    /// the channels the cores need, until `backoff` passes. `false` once the
    /// node is shutting down.
    async fn wait_offline(&mut self, backoff: Duration) -> bool {
        let until = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                command = self.commands.recv() => match command {
                    Some(command) => refuse(command),
                    None => return false,
                },
                change = self.interest.recv() => match change {
                    Some(change) => {
                        self.note_interest(change);
                    }
                    None => return false,
                },
            }
        }
    }

    /// Counts a core's interest change, and any more already queued; returns
    /// the channels this node must now subscribe to and unsubscribe from:
    /// the net change, so that a topic dropped and taken again in one batch
    /// (a subscription POST that keeps it) stays subscribed.
    fn note_interest(&mut self, first: Interest) -> (Vec<String>, Vec<String>) {
        let mut touched: HashMap<Box<str>, bool> = HashMap::new();
        let mut next = Some(first);
        while let Some(change) = next.take().or_else(|| self.interest.try_recv().ok()) {
            let topic = match &change {
                Interest::Add(topic) | Interest::Remove(topic) => topic.clone(),
            };
            touched
                .entry(topic.clone())
                .or_insert_with(|| self.wanted.contains_key(&topic));
            match change {
                Interest::Add(_) => *self.wanted.entry(topic).or_default() += 1,
                Interest::Remove(_) => {
                    if let Some(count) = self.wanted.get_mut(&topic) {
                        *count -= 1;
                        if *count == 0 {
                            self.wanted.remove(&topic);
                        }
                    }
                }
            }
        }
        let prefix = &self.shared.prefix;
        let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
        for (topic, was_wanted) in touched {
            match (was_wanted, self.wanted.contains_key(&topic)) {
                (false, true) => subscribe.push(shared::topic_channel(prefix, &topic)),
                (true, false) => unsubscribe.push(shared::topic_channel(prefix, &topic)),
                _ => {}
            }
        }
        (subscribe, unsubscribe)
    }

    fn on_message(&mut self, channel: &str, payload: &[u8]) {
        let counters = &self.shared.counters;
        let envelope = match wire::decode(payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(channel, error = %e, "ignored a cluster message");
                return;
            }
        };
        if envelope.from == self.shared.node {
            // Our own publish, echoed: delivered here already.
            return;
        }
        match envelope.payload {
            Payload::Publish(msg) => {
                let full = self
                    .forward
                    .as_ref()
                    .is_some_and(|forward| forward.try_send(msg).is_err());
                if full {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "the cores are not taking messages from other nodes fast enough; one was dropped"
                    );
                } else {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                }
            }
            Payload::Request { id, client, op } => {
                let (ring, node, from) = (self.ring.clone(), self.shared.node, envelope.from);
                let reply_to = shared::node_channel(&self.shared.prefix, from);
                let queue = self.queue_for(&reply_to).clone();
                tokio::task::spawn_local(async move {
                    let result = run_here(&ring, node, &client, op).await;
                    let (done, _) = oneshot::channel();
                    let _ = queue.send(Part {
                        channel: reply_to,
                        payload: wire::answer(node, id, &result),
                        done,
                    });
                });
            }
            Payload::Answer { id, result } => {
                if let Some((_, reply)) = self.pending.borrow_mut().remove(&id) {
                    let _ = reply.send(Ok(result));
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { parts, reply } => {
                let mut done = Vec::new();
                for (channel, payloads) in parts {
                    for payload in payloads {
                        let (tx, rx) = oneshot::channel();
                        let part = Part {
                            channel: channel.clone(),
                            payload,
                            done: tx,
                        };
                        let _ = self.queue_for(&channel).send(part);
                        done.push(rx);
                    }
                }
                tokio::task::spawn_local(async move {
                    let mut result = Ok(());
                    for rx in done {
                        if let Err(e) = rx.await.unwrap_or(Err(ClusterError::Unreachable)) {
                            result = Err(e);
                        }
                    }
                    let _ = reply.send(result);
                });
            }
            Command::Call {
                node,
                client,
                op,
                reply,
            } => {
                self.next_request += 1;
                let id = self.next_request;
                let channel = shared::node_channel(&self.shared.prefix, node);
                let payload = wire::request(self.shared.node, id, &client, &op);
                self.pending
                    .borrow_mut()
                    .insert(id, (Instant::now() + CALL_TIMEOUT, reply));
                let (done, published) = oneshot::channel();
                let _ = self.queue_for(&channel).send(Part {
                    channel,
                    payload,
                    done,
                });
                let pending = self.pending.clone();
                tokio::task::spawn_local(async move {
                    let outcome = published.await.unwrap_or(Err(ClusterError::Unreachable));
                    let answer = match outcome {
                        // No node listens on that channel: it has no clients.
                        Ok(0) => Ok(Err(CoreError::NotFound(client))),
                        Ok(_) => return,
                        Err(e) => Err(e),
                    };
                    if let Some((_, reply)) = pending.borrow_mut().remove(&id) {
                        let _ = reply.send(answer);
                    }
                });
            }
            Command::Nodes { reply } => {
                let conn = self.pool.borrow().first().cloned();
                let prefix = self.shared.prefix.clone();
                tokio::task::spawn_local(async move {
                    let result = match conn {
                        Some(mut conn) => live_nodes(&mut conn, &prefix).await,
                        None => Err(ClusterError::Unreachable),
                    };
                    let _ = reply.send(result);
                });
            }
        }
    }

    fn queue_for(&self, channel: &str) -> &mpsc::UnboundedSender<Part> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(channel);
        &self.queues[(hash % self.queues.len() as u64) as usize]
    }

    /// Writes this node's heartbeat: its key (with a TTL) and its name in
    /// the set of nodes.
    fn beat(&self) {
        let Some(mut conn) = self.pool.borrow().first().cloned() else {
            return;
        };
        let (ring, http) = (self.ring.clone(), self.http.clone());
        let (prefix, node) = (self.shared.prefix.clone(), self.shared.node.to_string());
        tokio::task::spawn_local(async move {
            let Ok(cores) = ring.call_all(|c| c.stats()).await else {
                return;
            };
            let total = core::CoreStats::total(&cores);
            let info = NodeInfo {
                node: node.clone(),
                http,
                connections: total.connections,
                clients: total.clients,
                subscriptions: total.subscriptions,
            };
            let value = serde_json::to_string(&info).unwrap_or_default();
            let _: redis::RedisResult<()> = redis::pipe()
                .cmd("SET")
                .arg(shared::heartbeat_key(&prefix, &node))
                .arg(value)
                .arg("PX")
                .arg(HEARTBEAT_TTL_MS)
                .ignore()
                .cmd("SADD")
                .arg(shared::nodes_key(&prefix))
                .arg(&node)
                .ignore()
                .query_async(&mut conn)
                .await;
        });
    }

    /// Answers the operations sent to other nodes that were not answered in time.
    fn expire_calls(&self) {
        let now = Instant::now();
        let mut pending = self.pending.borrow_mut();
        let late: Vec<u64> = pending
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            if let Some((_, reply)) = pending.remove(&id) {
                let _ = reply.send(Err(ClusterError::Timeout));
            }
        }
    }

    /// Takes this node out of the cluster view on the way out.
    async fn leave(self) {
        let Some(mut conn) = self.pool.borrow().first().cloned() else {
            return;
        };
        let node = self.shared.node.to_string();
        let prefix = &self.shared.prefix;
        let _: redis::RedisResult<()> = redis::pipe()
            .cmd("DEL")
            .arg(shared::heartbeat_key(prefix, &node))
            .ignore()
            .cmd("SREM")
            .arg(shared::nodes_key(prefix))
            .arg(&node)
            .ignore()
            .query_async(&mut conn)
            .await;
    }
}

/// What cannot be done while Redis is unreachable, answered at once.
fn refuse(command: Command) {
    match command {
        Command::Publish { reply, .. } => {
            let _ = reply.send(Err(ClusterError::Unreachable));
        }
        Command::Call { reply, .. } => {
            let _ = reply.send(Err(ClusterError::Unreachable));
        }
        Command::Nodes { reply } => {
            let _ = reply.send(Err(ClusterError::Unreachable));
        }
    }
}

/// Runs an operation another node asked for on a client of this node.
async fn run_here(
    ring: &Ring,
    node: NodeId,
    client: &str,
    op: ClientOp,
) -> Result<OpReply, CoreError> {
    let not_found = || CoreError::NotFound(client.to_owned());
    let owner = core::locate(client.as_bytes(), ring.workers()).ok_or_else(not_found)?;
    if owner.node != node {
        return Err(not_found());
    }
    let id = client.to_owned();
    ring.call(owner.core, move |c| c.apply(op, id.as_bytes(), owner.key))
        .await
        .unwrap_or_else(|_| Err(not_found()))
}

/// Hands messages from other nodes to the cores, in the order they came,
/// several at a time.
async fn forward_to_cores(ring: Ring, mut queue: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(FORWARD_BATCH);
    while queue.recv_many(&mut batch, FORWARD_BATCH).await > 0 {
        if ring.publish(std::mem::take(&mut batch)).await.is_err() {
            // The cores are shutting down.
            return;
        }
    }
}

/// One publishing connection's task: sends what is queued for it as one
/// pipeline at a time, in order, and tells each part how many got it.
async fn publish_in_order(
    pool: Rc<RefCell<Vec<MultiplexedConnection>>>,
    slot: usize,
    mut queue: mpsc::UnboundedReceiver<Part>,
) {
    let mut parts = Vec::new();
    while queue.recv_many(&mut parts, 512).await > 0 {
        let conn = pool.borrow().get(slot).cloned();
        let Some(mut conn) = conn else {
            for part in parts.drain(..) {
                let _ = part.done.send(Err(ClusterError::Unreachable));
            }
            continue;
        };
        let mut pipe = redis::pipe();
        for part in &parts {
            pipe.cmd("PUBLISH").arg(&part.channel).arg(&part.payload);
        }
        match pipe.query_async::<Vec<usize>>(&mut conn).await {
            Ok(counts) => {
                for (part, count) in parts.drain(..).zip(counts) {
                    let _ = part.done.send(Ok(count));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "a publish to Redis failed");
                for part in parts.drain(..) {
                    let _ = part.done.send(Err(ClusterError::Unreachable));
                }
            }
        }
    }
}

/// The nodes whose heartbeat is alive; forgets the others.
async fn live_nodes(
    conn: &mut MultiplexedConnection,
    prefix: &str,
) -> Result<Vec<NodeInfo>, ClusterError> {
    let unreachable = |_| ClusterError::Unreachable;
    let names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(shared::nodes_key(prefix))
        .query_async(conn)
        .await
        .map_err(unreachable)?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = names
        .iter()
        .map(|n| shared::heartbeat_key(prefix, n))
        .collect();
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(conn)
        .await
        .map_err(unreachable)?;
    let mut nodes = Vec::new();
    let mut dead = Vec::new();
    for (name, value) in names.into_iter().zip(values) {
        match value.and_then(|v| serde_json::from_str::<NodeInfo>(&v).ok()) {
            Some(info) => nodes.push(info),
            None => dead.push(name),
        }
    }
    if !dead.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("SREM")
            .arg(shared::nodes_key(prefix))
            .arg(&dead)
            .query_async(conn)
            .await;
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(nodes)
}
