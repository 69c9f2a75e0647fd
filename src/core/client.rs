//! One realtime client's record: who it is, what it holds, what it has queued.
//!
//! Kept small, because an idle stream costs its record, its stream task and a
//! pending read, nothing else: the id is inline (fan-out writes point their
//! iovecs at it), the write queue is a head/tail pair into the core's shared
//! [`Deliveries`](super::queue::Deliveries), and what few clients have (auth, a
//! store, timeouts of their own) lives out of line in [`Extra`].

use super::history::Cursor;
use super::queue::Queue;
use super::topics::TopicId;
use crate::auth::Auth;
use crate::frame::{BodyMode, ID_LEN};
use crate::hooks::{ClientRef, EndReason, Store};
use crate::runtime::SocketRef;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use smallvec::SmallVec;
use std::net::{IpAddr, Ipv6Addr};
use std::task::Waker;
use std::time::SystemTime;

/// One SSE subscriber.
#[derive(Debug)]
pub struct Client {
    pub id: [u8; ID_LEN],
    /// The client's address, IPv4 as IPv4-mapped: an `Ipv6Addr` is 16 bytes,
    /// an `IpAddr` 17, which here would cost 8 with the alignment ([`Client::ip`]).
    ip: Ipv6Addr,
    /// For the core's direct (non-io_uring) writes.
    pub socket: SocketRef,
    pub mode: BodyMode,
    pub subs: SmallVec<[TopicId; 4]>,
    pub queue: Queue,
    /// Bytes of frames queued and not yet written (u32: the queue cap is
    /// clamped to fit, `Outbox::new`).
    pub queued_bytes: u32,
    /// Bytes of the first queued frame already written (a partial write).
    pub sent: u32,
    /// The stream task, parked until its socket is full (see `blocked`) or
    /// the stream ends.
    pub waker: Option<Waker>,
    /// Waiting in the core's flush line.
    pub dirty: bool,
    /// The socket was full: the stream task writes through io_uring until the
    /// queue is empty, and the core does not write directly.
    pub blocked: bool,
    pub connected_ms: u64,
    /// When a message was last written; the idle timer counts from here.
    pub last_write_ms: u64,
    pub end: Option<EndReason>,
    pub extra: Option<Box<Extra>>,
}

/// The less common parts of a client.
#[derive(Debug, Default)]
pub struct Extra {
    pub auth: Option<Auth>,
    pub store: Store,
    /// Set by the connect hook, instead of the server's.
    pub idle_timeout_ms: Option<u64>,
    pub max_lifetime_ms: Option<u64>,
    /// The stream's `Last-Event-ID`: where its first subscriptions resume
    /// (`core::history`).
    pub resume: Option<Cursor>,
    /// Recorded messages up to this sequence are not delivered live: the
    /// client resumed from a cursor its owner core had not reached yet.
    pub seen_through: u64,
}

impl Client {
    pub fn new(
        id: [u8; ID_LEN],
        ip: IpAddr,
        socket: SocketRef,
        mode: BodyMode,
        now: u64,
    ) -> Client {
        Client {
            id,
            ip: match ip.to_canonical() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            },
            socket,
            mode,
            subs: SmallVec::new(),
            queue: Queue::default(),
            queued_bytes: 0,
            sent: 0,
            waker: None,
            dirty: false,
            blocked: false,
            connected_ms: now,
            last_write_ms: now,
            end: None,
            extra: None,
        }
    }

    /// The client's address (canonical: IPv4 as IPv4).
    pub fn ip(&self) -> IpAddr {
        self.ip.to_canonical()
    }

    /// The id as text (it is always ASCII alphanumerics).
    pub fn id_str(&self) -> &str {
        std::str::from_utf8(&self.id).unwrap_or_default()
    }

    pub fn auth(&self) -> Option<&Auth> {
        self.extra.as_ref()?.auth.as_ref()
    }

    pub fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// What hooks may see of this client.
    pub fn view(&self) -> ClientRef<'_> {
        ClientRef {
            id: self.id_str(),
            ip: self.ip(),
            auth: self.auth(),
            store: self.extra.as_ref().map(|e| &e.store),
        }
    }

    /// Ends the stream: its task is woken to finish it (after the queue is
    /// written, if the end is graceful).
    pub fn end(&mut self, reason: EndReason) {
        self.end = Some(reason);
        self.wake();
    }

    /// Whether the stream ended in a way that drops its queue unwritten.
    pub fn aborted(&self) -> bool {
        self.end.is_some_and(|r| !r.is_graceful())
    }

    pub fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Remembers the stream task to wake (unless it is the one already kept).
    pub fn park(&mut self, waker: &Waker) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waker = Some(waker.clone());
        }
    }

    pub fn store(&mut self, op: StoreOp) -> Option<Value> {
        match op {
            StoreOp::Get(k) => self.extra.as_ref().and_then(|e| e.store.get(&k).cloned()),
            StoreOp::Set(k, v) => self.extra_mut().store.insert(k, v),
            StoreOp::Unset(k) => self.extra.as_mut().and_then(|e| e.store.remove(&k)),
        }
    }
}

/// A read or change of one client's store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    Get(String),
    Set(String, Value),
    Unset(String),
}

/// A snapshot of one client, taken on its core (and read back when it
/// crosses from another node of a cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub id: String,
    pub subscriptions: Vec<String>,
    /// The IP its stream came from.
    #[serde(rename = "remoteIP")]
    pub remote_ip: IpAddr,
    #[serde(
        serialize_with = "pocketbase_datetime",
        deserialize_with = "from_pocketbase_datetime"
    )]
    pub connected_at: SystemTime,
    /// Who it is, once a subscription POST carried a valid token.
    pub auth: Option<Auth>,
    #[serde(serialize_with = "sorted")]
    pub store: Store,
    /// The core that serves it.
    pub core: usize,
}

/// PocketBase's datetime format: `2026-11-23 00:23:02.501Z`.
fn pocketbase_datetime<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let text = humantime::format_rfc3339_millis(*t).to_string();
    s.serialize_str(&text.replacen('T', " ", 1))
}

fn from_pocketbase_datetime<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_rfc3339(&text.replacen(' ', "T", 1)).map_err(serde::de::Error::custom)
}

/// Store keys in order, so answers are stable.
fn sorted<S: Serializer>(store: &Store, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(store.iter().collect::<std::collections::BTreeMap<_, _>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stream costs one record in its core's client slab: pinned, so
    /// that a field added or widened shows up here (README, "How it works").
    #[test]
    fn a_client_record_is_small() {
        assert_eq!(std::mem::size_of::<Client>(), 144);
    }

    #[test]
    fn the_address_is_kept_canonical() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for (given, kept) in [(v4, v4), (mapped, v4), (v6, v6)] {
            let c = Client::new([b'a'; ID_LEN], given, SocketRef::new(-1), BodyMode::Raw, 0);
            assert_eq!(c.ip(), kept);
        }
    }
}
