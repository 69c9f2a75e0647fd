//! What the cluster handle and its link thread share: the link's state and
//! counters, the commands the handle sends it, and the names of the Redis
//! keys and channels.

use crate::core::{ClientOp, CoreError, Interest, NodeId, OpReply};
use std::sync::atomic::{AtomicBool, AtomicU64};
use tokio::sync::{mpsc, oneshot};

/// Why the cluster could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis cannot be reached (or the link is reconnecting).
    #[error("Redis is unreachable")]
    Unreachable,
    /// The other node did not answer in time.
    #[error("the node that owns the client did not answer in time")]
    Timeout,
    /// `--redis` is not a Redis URL.
    #[error("--redis {url:?} is not usable: {reason}; give a URL like redis://127.0.0.1:6379")]
    Url { url: String, reason: String },
    /// The link thread could not be started.
    #[error("cannot start the cluster link: {0}")]
    Start(String),
}

/// Counters of this node's cluster link, for `/api/stats`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Publishes sent to Redis.
    pub published: AtomicU64,
    /// Publishes that could not reach the other nodes (Redis unreachable).
    pub publish_failures: AtomicU64,
    /// Messages received from other nodes and handed to the cores.
    pub received: AtomicU64,
    /// Messages from other nodes dropped because the cores could not take
    /// them fast enough (the forwarding queue was full).
    pub dropped: AtomicU64,
    /// Payloads from Redis that could not be read.
    pub malformed: AtomicU64,
    /// Times the link to Redis was (re)established.
    pub connects: AtomicU64,
}

/// What the cluster link looks like now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    pub node: String,
    pub connected: bool,
    pub published: u64,
    pub publish_failures: u64,
    pub received: u64,
    pub dropped: u64,
    pub malformed: u64,
    pub connects: u64,
}

/// A live node, as its heartbeat says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub node: String,
    /// The address it serves.
    pub http: String,
    pub connections: u64,
    pub clients: u64,
    pub subscriptions: u64,
}

#[derive(Debug)]
pub struct Shared {
    pub node: NodeId,
    pub prefix: String,
    pub connected: AtomicBool,
    pub counters: Counters,
    pub commands: mpsc::UnboundedSender<Command>,
    pub interest: mpsc::UnboundedSender<Interest>,
}

pub type CallReply = oneshot::Sender<Result<Result<OpReply, CoreError>, ClusterError>>;

/// What the rest of the node asks of the link.
pub enum Command {
    /// Publish these payloads, channel by channel.
    Publish {
        parts: Vec<(String, Vec<Vec<u8>>)>,
        reply: oneshot::Sender<Result<(), ClusterError>>,
    },
    /// Run `op` on client `client` of node `node`.
    Call {
        node: NodeId,
        client: String,
        op: ClientOp,
        reply: CallReply,
    },
    /// The live nodes.
    Nodes {
        reply: oneshot::Sender<Result<Vec<NodeInfo>, ClusterError>>,
    },
}

pub fn topic_channel(prefix: &str, topic: &str) -> String {
    format!("{prefix}:t:{topic}")
}

pub fn everyone_channel(prefix: &str) -> String {
    format!("{prefix}:all")
}

pub fn node_channel(prefix: &str, node: NodeId) -> String {
    format!("{prefix}:n:{node}")
}

pub fn heartbeat_key(prefix: &str, node: &str) -> String {
    format!("{prefix}:node:{node}")
}

pub fn nodes_key(prefix: &str) -> String {
    format!("{prefix}:nodes")
}
