//! The broker: who is connected, what each client is subscribed to, and fan-out.
//!
//! This is PocketBase's own design written in idiomatic Rust: one map from
//! client id to client behind a reader-writer lock, and one channel per client
//! that the client's SSE response drains. Publishing takes the read lock, walks
//! every client and matches the topic against that client's subscriptions.
//!
//! Lock choice: `parking_lot::RwLock`. Every critical section is short, never
//! awaits, and does no I/O (sends are `try_send`), so an async lock would only add
//! overhead; parking_lot over `std` because it has no poisoning to handle and is
//! fair to writers (a subscription change is not starved by a stream of
//! publishes).
//!
//! ## Slow clients
//!
//! Each client's channel is a bounded `tokio::sync::mpsc` (capacity from
//! `--channel-capacity`). PocketBase blocks the publisher when a client does not
//! keep up, which lets one stalled socket stall every publish; a server that
//! fans out to many clients cannot afford that. So when a client's channel is
//! full, the publisher **evicts** that client: it is removed from the map (its
//! subscriptions stop matching and its id becomes unknown to POST), the eviction
//! is counted and logged, and the dropped sender lets the SSE response write
//! whatever is still queued and then end the stream. The client sees a normal
//! end of stream, which makes EventSource / the PocketBase SDK reconnect with a
//! new id and re-subscribe — the same recovery path as an idle timeout — instead
//! of silently missing messages.

use std::collections::btree_set::BTreeSet;
use std::collections::{HashMap, hash_map::Entry};
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::client_id::ClientId;

/// One message queued for one client: the SSE event name (the client's own
/// subscription string) and the already-serialised data. Both are reference
/// counted, so fanning a publish out to N subscriptions copies no payload bytes;
/// the SSE body builds the frame on the connection's own task.
#[derive(Debug, Clone)]
pub struct Message {
    pub name: Arc<str>,
    pub data: Bytes,
}

/// A message to publish to a topic.
#[derive(Debug, Clone)]
pub struct Publication {
    topic: String,
    /// `topic + "?"`, computed once per publication instead of once per client.
    variant_prefix: String,
    data: Bytes,
}

impl Publication {
    pub fn new(topic: String, data: Bytes) -> Self {
        let variant_prefix = format!("{topic}?");
        Self {
            topic,
            variant_prefix,
            data,
        }
    }
}

/// Why a subscription change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("no connected client has this id")]
    UnknownClient,
    #[error("client connected from {connected} but the request came from {request}")]
    IpMismatch { connected: IpAddr, request: IpAddr },
}

struct Client {
    tx: mpsc::Sender<Message>,
    /// Sorted, so that both the exact topic and all `topic?…` variants are found
    /// with a lookup and a range scan instead of a walk over every subscription.
    subscriptions: BTreeSet<Arc<str>>,
    /// Peer IP of the stream; PocketBase only lets the same IP change the
    /// subscriptions.
    ip: IpAddr,
}

impl Client {
    /// The subscriptions receiving a publish to `p`: `s == topic`, or `s` starts
    /// with `topic?` (the `?options=…` variants the SDK creates). Exact match
    /// first, then the variants in sorted order.
    fn matching<'a>(&'a self, p: &'a Publication) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        let exact = self.subscriptions.get(p.topic.as_str());
        let variants = self
            .subscriptions
            .range::<str, _>((Bound::Included(p.variant_prefix.as_str()), Bound::Unbounded))
            .take_while(move |s| s.starts_with(p.variant_prefix.as_str()));
        exact.into_iter().chain(variants)
    }
}

/// The set of connected clients. Shared by all handlers through an `Arc`.
pub struct Broker {
    clients: RwLock<HashMap<ClientId, Client>>,
    channel_capacity: usize,
    evictions: AtomicU64,
}

impl Broker {
    pub fn new(channel_capacity: usize) -> Self {
        Self {
            clients: RwLock::new(HashMap::new()),
            channel_capacity,
            evictions: AtomicU64::new(0),
        }
    }

    /// Registers a new client connected from `ip` and returns its id and the
    /// receiving end of its channel.
    pub fn register(
        &self,
        ip: IpAddr,
    ) -> Result<(ClientId, mpsc::Receiver<Message>), getrandom::Error> {
        let (tx, rx) = mpsc::channel(self.channel_capacity);
        let client = Client {
            tx,
            subscriptions: BTreeSet::new(),
            ip,
        };
        loop {
            // Draw outside the lock; a collision among 62^40 ids is not a real
            // possibility, but re-drawing costs one line.
            let id = ClientId::random()?;
            if let Entry::Vacant(slot) = self.clients.write().entry(id) {
                slot.insert(client);
                return Ok((id, rx));
            }
        }
    }

    /// Forgets a client (its connection ended). Unknown ids are ignored: the
    /// client may already have been evicted.
    pub fn unregister(&self, id: &ClientId) {
        self.clients.write().remove(id);
    }

    /// Replaces the whole subscription set of client `id`, PocketBase's POST
    /// semantics.
    pub fn replace_subscriptions(
        &self,
        id: &str,
        request_ip: IpAddr,
        subscriptions: BTreeSet<Arc<str>>,
    ) -> Result<(), BrokerError> {
        let id = ClientId::parse(id).ok_or(BrokerError::UnknownClient)?;
        let mut clients = self.clients.write();
        let client = clients.get_mut(&id).ok_or(BrokerError::UnknownClient)?;
        if client.ip != request_ip {
            return Err(BrokerError::IpMismatch {
                connected: client.ip,
                request: request_ip,
            });
        }
        // The old set is dropped after the lock is released.
        let old = std::mem::replace(&mut client.subscriptions, subscriptions);
        drop(clients);
        drop(old);
        Ok(())
    }

    /// Queues every publication, in order, for every matching subscription and
    /// returns how many messages were queued. Clients whose channel is full are
    /// evicted (see the module docs) and their undelivered messages not counted.
    pub fn publish(&self, batch: &[Publication]) -> usize {
        let mut queued = 0;
        let mut full = Vec::new();
        {
            let clients = self.clients.read();
            for (id, client) in clients.iter() {
                'client: for publication in batch {
                    for name in client.matching(publication) {
                        let message = Message {
                            name: Arc::clone(name),
                            data: publication.data.clone(),
                        };
                        match client.tx.try_send(message) {
                            Ok(()) => queued += 1,
                            Err(TrySendError::Full(_)) => {
                                full.push(*id);
                                break 'client;
                            }
                            // The connection is gone and its response is being
                            // dropped, which unregisters it; nothing to do.
                            Err(TrySendError::Closed(_)) => break 'client,
                        }
                    }
                }
            }
        }
        if !full.is_empty() {
            self.evict(&full);
        }
        queued
    }

    fn evict(&self, ids: &[ClientId]) {
        let mut clients = self.clients.write();
        for id in ids {
            if clients.remove(id).is_some() {
                let total = self.evictions.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(client = %id, total, "evicted slow client: its channel is full");
            }
        }
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        self.clients.read().len()
    }

    /// Number of clients evicted for being too slow since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn subs(list: &[&str]) -> BTreeSet<Arc<str>> {
        list.iter().map(|s| Arc::from(*s)).collect()
    }

    fn publication(topic: &str, data: &'static str) -> Publication {
        Publication::new(topic.to_owned(), Bytes::from_static(data.as_bytes()))
    }

    fn drain(rx: &mut mpsc::Receiver<Message>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push((
                m.name.to_string(),
                String::from_utf8(m.data.to_vec()).expect("utf-8"),
            ));
        }
        out
    }

    #[test]
    fn exact_and_option_variants_match_but_not_other_prefixes() {
        let broker = Broker::new(16);
        let (id, mut rx) = broker.register(IP).expect("rng");
        let set = subs(&[
            "chat",
            "chat?options=x",
            "chat!",
            "chatroom",
            "chat/1",
            "cha",
            "other",
        ]);
        broker
            .replace_subscriptions(id.as_str(), IP, set)
            .expect("known client");
        assert_eq!(broker.publish(&[publication("chat", "1")]), 2);
        assert_eq!(
            drain(&mut rx),
            [
                ("chat".into(), "1".into()),
                ("chat?options=x".into(), "1".into())
            ]
        );
    }

    #[test]
    fn unknown_and_foreign_ip_are_refused() {
        let broker = Broker::new(16);
        let (id, _rx) = broker.register(IP).expect("rng");
        assert_eq!(
            broker.replace_subscriptions(&"a".repeat(40), IP, subs(&["x"])),
            Err(BrokerError::UnknownClient)
        );
        let other: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert!(matches!(
            broker.replace_subscriptions(id.as_str(), other, subs(&["x"])),
            Err(BrokerError::IpMismatch { .. })
        ));
    }

    #[test]
    fn a_full_channel_evicts_the_client() {
        let broker = Broker::new(2);
        let (id, mut rx) = broker.register(IP).expect("rng");
        broker
            .replace_subscriptions(id.as_str(), IP, subs(&["t"]))
            .expect("known client");
        let batch: Vec<_> = (0..5).map(|_| publication("t", "x")).collect();
        assert_eq!(broker.publish(&batch), 2);
        assert_eq!(broker.len(), 0);
        assert_eq!(broker.evictions(), 1);
        // Queued messages are still readable, then the channel reports closed.
        assert_eq!(drain(&mut rx).len(), 2);
        assert!(rx.is_closed());
    }
}
