//! The operations on one named client, as values: the broker runs them on
//! the client's owner core (`Core::apply`), through the ring when the owner
//! is another core of this node and through the cluster when it is another
//! node, so every path runs the same code with the same checks.

use super::client::{ClientInfo, StoreOp};
use crate::auth::Auth;
use serde_json::Value;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq)]
pub enum ClientOp {
    /// The stream exists and came from `ip` (a subscription POST's first checks).
    CheckRealtime { ip: IpAddr },
    /// A subscription POST from `ip` carrying `auth`.
    SetSubscriptions {
        ip: IpAddr,
        subscriptions: Vec<String>,
        auth: Option<Auth>,
        /// The request's `Last-Event-ID`: where new subscriptions to topics
        /// with history resume (`core::history`).
        resume: Option<String>,
    },
    /// One event for this client, whatever it subscribed.
    Send { event: String, data: Vec<u8> },
    /// End its stream politely.
    Unregister,
    /// A snapshot of it.
    Info,
    /// Read or change its store.
    Store(StoreOp),
}

/// What an operation answered.
#[derive(Debug, Clone, PartialEq)]
pub enum OpReply {
    Done,
    /// A send: whether it was queued (`false`: the message hook skipped it).
    Sent(bool),
    Info(Box<ClientInfo>),
    /// A store read or change: the value read or replaced.
    Value(Option<Value>),
}
