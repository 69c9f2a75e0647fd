//! A cluster of ringcast nodes through Redis (`--redis`): publishes,
//! per-user sends and operations on named clients work whichever node the
//! subscriber and the publisher are on.
//!
//! Why Redis, and why this way: users who outgrow one box already run a
//! Redis; its pub/sub is the transport, never a protocol of our own.
//!
//! * **Topics.** A node subscribes to the Redis channel of a topic (the part
//!   of a subscription string before any `?`) when its first local
//!   subscriber appears, and unsubscribes after the last: per node, not per
//!   client or core (the cores report their first and last strings per
//!   channel, `core::pubsub::Interest`; this node counts cores). A publish is
//!   delivered on this node through the ring as before, and goes to Redis
//!   once per channel of its topics (a record event has up to six) on a
//!   connection chosen by the channel, so per-topic order holds. A node skips
//!   its own publishes when Redis echoes them.
//! * **Users and everyone.** Messages for one user's streams and broadcasts
//!   go to one cluster-wide channel; each node looks the user up in its cores.
//! * **Named clients.** A client id names its node (`core::id`). An operation
//!   on a client of another node (a subscription POST that a load balancer
//!   sent elsewhere, a send, a disconnect, a snapshot) is published on that
//!   node's own channel and answered on the asker's; a node nobody listens
//!   for (PUBLISH reaches no one) has no clients: not found, as PocketBase
//!   answers an unknown id.
//! * **Nodes.** Each node writes a heartbeat key with a TTL; the cluster view
//!   (`/api/stats`) lists the nodes whose key is alive.
//!
//! All Redis I/O runs on one thread beside the cores (`link`), talking to
//! them through the ring. Plain `SUBSCRIBE`/`PUBLISH` are used: they work
//! with a single Redis, Sentinel and Redis Cluster alike (in Redis Cluster,
//! classic pub/sub is broadcast to every shard; sharded pub/sub would spread
//! that load, and is a change of command names only, should it be needed).

mod link;
mod shared;
pub mod wire;

pub use shared::{ClusterError, LinkStatus, NodeInfo};

use crate::core::{ClientOp, CoreError, Interest, NodeId, OpReply};
use crate::message::{Message, Target};
use crate::ring::Ring;
use clap::Args;
use shared::{Command, Counters, Shared, everyone_channel, topic_channel};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// The cluster flags, flattened into `Config`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Join a cluster of ringcast nodes through this Redis
    /// (redis://host:port/db); without it this server is a single node.
    #[arg(long, env = "RINGCAST_REDIS", value_name = "URL")]
    pub redis: Option<String>,

    /// Prefix of every Redis key and channel ringcast uses; the nodes of one
    /// cluster share it.
    #[arg(
        long,
        env = "RINGCAST_REDIS_PREFIX",
        value_name = "PREFIX",
        default_value = "ringcast"
    )]
    pub redis_prefix: String,
}

impl Default for ClusterArgs {
    fn default() -> Self {
        ClusterArgs {
            redis: None,
            redis_prefix: "ringcast".into(),
        }
    }
}

/// A handle on this node's cluster link; cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl Cluster {
    /// Starts the link thread for `args` (nothing when `--redis` is not
    /// given). It connects in the background and keeps retrying: a node
    /// whose Redis is down at start serves its own clients meanwhile.
    pub fn start(
        args: &ClusterArgs,
        node: NodeId,
        http: String,
        ring: Ring,
    ) -> Result<Option<Cluster>, ClusterError> {
        let Some(url) = &args.redis else {
            return Ok(None);
        };
        let client = redis::Client::open(url.as_str()).map_err(|e| ClusterError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (interest, interest_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            node,
            prefix: args.redis_prefix.clone(),
            connected: AtomicBool::new(false),
            counters: Counters::default(),
            commands,
            interest,
        });
        link::spawn(client, shared.clone(), http, ring, command_rx, interest_rx)
            .map_err(|e| ClusterError::Start(e.to_string()))?;
        Ok(Some(Cluster { shared }))
    }

    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// Where a core reports the channels it needs.
    pub fn interest_sink(&self) -> mpsc::UnboundedSender<Interest> {
        self.shared.interest.clone()
    }

    /// Whether the link to Redis is up.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> LinkStatus {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LinkStatus {
            node: self.shared.node.to_string(),
            connected: self.connected(),
            published: get(&c.published),
            publish_failures: get(&c.publish_failures),
            received: get(&c.received),
            dropped: get(&c.dropped),
            malformed: get(&c.malformed),
            connects: get(&c.connects),
        }
    }

    /// Sends a batch to the other nodes: each message once per Redis channel
    /// of its topics. Resolves once Redis has taken it all, or with the
    /// error that kept it from the other nodes (counted).
    pub async fn publish(&self, batch: &[Message]) -> Result<(), ClusterError> {
        let mut parts = BTreeMap::new();
        for msg in batch {
            for (channel, part) in split_by_channel(&self.shared.prefix, msg) {
                parts
                    .entry(channel)
                    .or_insert_with(Vec::new)
                    .push(wire::publish(self.shared.node, &part));
            }
        }
        let (reply, answer) = oneshot::channel();
        let sent = self.shared.commands.send(Command::Publish {
            parts: parts.into_iter().collect(),
            reply,
        });
        let result = match sent {
            Ok(()) => answer.await.unwrap_or(Err(ClusterError::Unreachable)),
            Err(_) => Err(ClusterError::Unreachable),
        };
        let c = &self.shared.counters;
        match &result {
            Ok(()) => c.published.fetch_add(batch.len() as u64, Ordering::Relaxed),
            Err(_) => c
                .publish_failures
                .fetch_add(batch.len() as u64, Ordering::Relaxed),
        };
        result
    }

    /// Runs `op` on client `id` of node `node`.
    pub async fn call(
        &self,
        node: NodeId,
        id: &str,
        op: ClientOp,
    ) -> Result<Result<OpReply, CoreError>, ClusterError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Call {
                node,
                client: id.to_owned(),
                op,
                reply,
            })
            .map_err(|_| ClusterError::Unreachable)?;
        answer.await.unwrap_or(Err(ClusterError::Unreachable))
    }

    /// The live nodes, by their heartbeats.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Nodes { reply })
            .map_err(|_| ClusterError::Unreachable)?;
        answer.await.unwrap_or(Err(ClusterError::Unreachable))
    }
}

/// `msg` as it goes to each Redis channel: a message to topics is split so
/// that each channel carries the topics reached through it (a record event's
/// `posts/R1`, `posts/*` and `posts` are three channels); messages to users
/// and to everyone share the cluster-wide channel.
fn split_by_channel(prefix: &str, msg: &Message) -> Vec<(String, Message)> {
    match &msg.target {
        Target::Topics(topics) => {
            let mut by_channel: BTreeMap<String, Message> = BTreeMap::new();
            for topic in topics {
                let channel = topic_channel(prefix, crate::core::channel_of(topic));
                let part = by_channel.entry(channel).or_insert_with(|| Message {
                    target: Target::Topics(Default::default()),
                    ..msg.clone()
                });
                if let Target::Topics(list) = &mut part.target {
                    list.push(topic.clone());
                }
            }
            by_channel.into_iter().collect()
        }
        Target::User { .. } | Target::All { .. } => vec![(everyone_channel(prefix), msg.clone())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Action;

    #[test]
    fn a_record_event_goes_once_per_channel_with_its_topics() {
        let msg = Message::record("posts", Some("pbc_1"), Action::Create, "r1", b"{}");
        let parts = split_by_channel("rc", &msg);
        let channels: Vec<&str> = parts.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            channels,
            [
                "rc:t:pbc_1",
                "rc:t:pbc_1/*",
                "rc:t:pbc_1/r1",
                "rc:t:posts",
                "rc:t:posts/*",
                "rc:t:posts/r1"
            ]
        );
        let topics: Vec<usize> = parts.iter().map(|(_, m)| m.event_names().count()).collect();
        assert_eq!(topics, [1; 6]);
        let user = Message::to_user("u", None, "inbox", *b"1");
        assert_eq!(split_by_channel("rc", &user)[0].0, "rc:all");
        // Topics with options share their topic's channel.
        let custom = Message::custom("chat?x", *b"1");
        assert_eq!(split_by_channel("rc", &custom)[0].0, "rc:t:chat");
    }
}
