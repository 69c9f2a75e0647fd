//! One core's world: its clients, their subscriptions and write queues.
//!
//! Everything here is owned by one thread and touched without locks; other
//! cores reach it only through the ring (`crate::ring`). Nothing here knows
//! HTTP: connection tasks call in to register a stream and to wait for an end
//! or a full socket (`poll_client`); the core's flush task calls in to write
//! (`writer`, whose non-blocking send is the only runtime call).

pub mod clients;
pub mod queue;
mod targeted;
pub mod topics;
mod writer;

use crate::auth::{Auth, Rules};
use crate::config::Config;
use crate::hooks::{
    ConnectEvent, DisconnectEvent, Hooks, MessageEvent, Outcome, Request, Store, SubscribeEvent,
};
use crate::http::error::ApiError;
use crate::publish::{Audience, Message, Target};
use crate::realtime::frame::{BodyMode, Frame, ID_LEN};
use bytes::Bytes;
use clients::{Client, EndReason, MAX_CLIENTS_PER_CORE};
use queue::Deliveries;
use serde::Serialize;
use slab::Slab;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime};
use topics::Topics;

/// This core's authenticated clients (slab keys) by user id.
type UserIndex = ahash::HashMap<Box<str>, SmallVec<[u32; 2]>>;

/// Most frames one write carries (3 iovecs each; Linux allows 1024 iovecs).
pub const MAX_FRAMES_PER_WRITE: usize = 341;

/// Counters of one core, as `GET /api/stats` shows them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CoreStats {
    pub core: usize,
    /// Open TCP connections.
    pub connections: u64,
    /// Registered realtime clients (open streams).
    pub clients: u64,
    /// (client, subscription) pairs.
    pub subscriptions: u64,
    /// Distinct subscription strings.
    pub topics: u64,
    /// Messages fanned out on this core.
    pub messages: u64,
    /// Frames queued for a client.
    pub deliveries: u64,
    /// Frames fully written to a socket.
    pub frames_written: u64,
    /// Write operations submitted (deliveries / writes = coalescing factor).
    pub writes: u64,
    /// Clients disconnected as slow consumers: over their queue cap, or their
    /// socket took nothing for an idle timeout.
    pub dropped_clients: u64,
    /// Frames discarded with those clients.
    pub dropped_frames: u64,
    /// Bytes queued and not yet written.
    pub queued_bytes: u64,
    /// Deliveries the message hook skipped.
    pub hook_skipped: u64,
    /// Deliveries refused because the event alone is larger than
    /// `--max-queue-bytes` (the publish API refuses such messages up front).
    pub oversized_frames: u64,
}

/// What a parked stream is woken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    Write,
    End(EndReason),
}

pub struct Core {
    pub index: usize,
    pub config: Arc<Config>,
    pub hooks: Hooks,
    /// Who may subscribe to what (`--rules`).
    rules: Arc<Rules>,
    clients: Slab<Client>,
    topics: Topics,
    /// Authenticated clients by user id, for messages to one user.
    users: UserIndex,
    deliveries: Deliveries,
    stats: CoreStats,
    epoch: Instant,
    /// The wall-clock time of `epoch`, to report when clients connected.
    started_at: SystemTime,
    /// Reusable buffer lists for io_uring writes, so they are not allocated per write.
    pieces_pool: Vec<Vec<Bytes>>,
    /// Clients with frames to write, in the order they got them.
    dirty: VecDeque<u32>,
    /// The flush task, parked while `dirty` is empty.
    flusher: Option<Waker>,
    /// The iovec array of the current direct write (capacity for the largest).
    iov: Vec<libc::iovec>,
    /// Every open connection's socket, to close them at shutdown.
    connections: Slab<RawFd>,
    shutting_down: bool,
}

impl Core {
    pub fn new(index: usize, config: Arc<Config>, hooks: Hooks) -> Core {
        Core {
            index,
            config,
            hooks,
            rules: Arc::default(),
            clients: Slab::new(),
            topics: Topics::default(),
            users: UserIndex::default(),
            deliveries: Deliveries::default(),
            stats: CoreStats {
                core: index,
                ..CoreStats::default()
            },
            epoch: Instant::now(),
            started_at: SystemTime::now(),
            pieces_pool: Vec::new(),
            dirty: VecDeque::new(),
            flusher: None,
            iov: Vec::with_capacity(3 * MAX_FRAMES_PER_WRITE),
            connections: Slab::new(),
            shutting_down: false,
        }
    }

    pub fn set_rules(&mut self, rules: Arc<Rules>) {
        self.rules = rules;
    }

    /// Milliseconds since this core started: a compact clock for deadlines.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    pub fn open_connection(&mut self, fd: RawFd) -> usize {
        self.connections.insert(fd)
    }

    pub fn close_connection(&mut self, key: usize) {
        self.connections.remove(key);
    }

    /// Registers a stream; returns its slab key and id, or `None` when full.
    pub fn register(
        &mut self,
        ip: IpAddr,
        fd: RawFd,
        mode: BodyMode,
    ) -> Option<(usize, [u8; ID_LEN])> {
        let now = self.now_ms();
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        if key >= MAX_CLIENTS_PER_CORE {
            return None;
        }
        let id = clients::new_id(self.index, self.config.workers(), key);
        entry.insert(Client {
            id,
            ip: ip.to_canonical(),
            fd,
            mode,
            subs: Default::default(),
            queue: Default::default(),
            queued_bytes: 0,
            sent: 0,
            waker: None,
            dirty: false,
            blocked: false,
            connected_ms: now,
            last_write_ms: now,
            end: None,
            extra: None,
        });
        Some((key, id))
    }

    /// Runs the connect hook for the client just registered at `key`, and
    /// keeps what it set (timeouts, store values).
    pub fn connect(&mut self, key: usize, request: &Request<'_>) -> Result<(), ApiError> {
        if !self.hooks.has_connect() {
            return Ok(());
        }
        let client = &mut self.clients[key];
        let mut event = ConnectEvent {
            client_id: client.id_str(),
            request: *request,
            idle_timeout: None,
            max_lifetime: None,
            store: Store::default(),
        };
        self.hooks.connect(&mut event)?;
        let ConnectEvent {
            idle_timeout,
            max_lifetime,
            store,
            ..
        } = event;
        if idle_timeout.is_some() || max_lifetime.is_some() || !store.is_empty() {
            let extra = client.extra_mut();
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            extra.idle_timeout_ms = idle_timeout.map(ms);
            extra.max_lifetime_ms = max_lifetime.map(ms);
            extra.store = store;
        }
        Ok(())
    }

    /// What the message hook decides for one message to client `key`.
    /// A skip is counted in `hook_skipped`, as for every other message.
    pub(crate) fn hook_message(&mut self, key: usize, name: &str, data: &[u8]) -> Outcome {
        if !self.hooks.has_message() {
            return Outcome::Deliver;
        }
        let outcome = self.hooks.message(&mut MessageEvent {
            client: self.clients[key].view(),
            name,
            data,
            outcome: Outcome::Deliver,
        });
        if outcome == Outcome::Skip {
            self.stats.hook_skipped += 1;
        }
        outcome
    }

    /// The open stream a subscription POST names, checked as PocketBase does:
    /// it must exist (404), and the POST must come from the IP the stream
    /// came from (400).
    pub fn realtime_client(
        &mut self,
        id: &[u8],
        key: usize,
        ip: IpAddr,
    ) -> Result<&mut Client, ApiError> {
        let client = self
            .live(id, key)
            .map_err(|_| ApiError::new(404, "Missing or invalid client id."))?;
        if client.ip != ip.to_canonical() {
            return Err(ApiError::bad_request("Invalid realtime client."));
        }
        Ok(client)
    }

    /// Removes a stream and everything it held, then tells the disconnect
    /// hook why it ended.
    pub fn unregister(&mut self, key: usize, reason: EndReason) {
        let client = self.remove(key);
        if self.hooks.has_disconnect() {
            let subscriptions: Vec<String> = client
                .subs
                .iter()
                .map(|&t| self.topics.name(t).to_owned())
                .collect();
            self.hooks.disconnect(&DisconnectEvent {
                client: client.view(),
                reason,
                subscriptions: &subscriptions,
            });
        }
        self.release_topics(key, client);
    }

    /// Removes a client that never became a stream (its connect was refused).
    pub fn discard(&mut self, key: usize) {
        let client = self.remove(key);
        self.release_topics(key, client);
    }

    fn remove(&mut self, key: usize) -> Client {
        let mut client = self.clients.remove(key);
        if let Some(auth) = client.auth() {
            if let Some(keys) = self.users.get_mut(auth.id.as_str()) {
                keys.retain(|k| *k != key as u32);
                if keys.is_empty() {
                    self.users.remove(auth.id.as_str());
                }
            }
        }
        self.deliveries.clear(&mut client.queue);
        self.stats.queued_bytes -= client.queued_bytes as u64;
        client
    }

    fn release_topics(&mut self, key: usize, client: Client) {
        self.stats.subscriptions -= client.subs.len() as u64;
        for &t in &client.subs {
            self.topics.unsubscribe(t, key as u32);
        }
    }

    /// Replaces the subscriptions of the client `id` (slab `key`), as
    /// `POST /api/realtime` does, in PocketBase's order of checks: the id,
    /// then the IP its stream came from, then the auth (a guest may become a
    /// user once; any other change is refused), then ringcast's topic rules,
    /// then the subscribe hook.
    pub fn subscribe(
        &mut self,
        id: &[u8],
        key: usize,
        ip: IpAddr,
        subs: Vec<String>,
        auth: Option<Auth>,
    ) -> Result<(), ApiError> {
        self.realtime_client(id, key, ip)?;
        let client = &mut self.clients[key];
        if let Some(stored) = client.auth() {
            let same = auth
                .as_ref()
                .is_some_and(|a| a.id == stored.id && a.collection_id == stored.collection_id);
            if !same {
                return Err(ApiError::new(
                    403,
                    "The current and the previous request authorization don't match.",
                ));
            }
        }
        self.rules.check(&subs, auth.as_ref())?;
        let mut event = SubscribeEvent {
            client: client.view(),
            auth: auth.as_ref(),
            subscriptions: subs,
        };
        self.hooks.subscribe(&mut event)?;
        let mut subs = event.subscriptions;
        if self.hooks.has_subscribe() {
            // The parser already dropped duplicates and blanks; a hook may add them back.
            let mut seen = ahash::HashSet::default();
            subs.retain(|s| !s.is_empty() && seen.insert(s.clone()));
        }
        if let Some(new) = auth.as_ref().filter(|_| client.auth().is_none()) {
            // A guest becoming a user: reachable by user id from now on.
            self.users
                .entry(new.id.as_str().into())
                .or_default()
                .push(key as u32);
        }
        if auth.is_some() || client.extra.is_some() {
            client.extra_mut().auth = auth;
        }
        let before = client.subs.len() as u64;
        for t in client.subs.drain(..) {
            self.topics.unsubscribe(t, key as u32);
        }
        for s in &subs {
            client.subs.push(self.topics.subscribe(s, key as u32));
        }
        self.stats.subscriptions = self.stats.subscriptions - before + client.subs.len() as u64;
        Ok(())
    }

    /// Fans a batch out to this core's subscribers, in order; returns the
    /// number of deliveries queued. Per recipient this only links a shared
    /// frame into the client's queue: no allocation, no copy (unless a
    /// message hook gives a client data of its own).
    pub fn publish(&mut self, batch: &[Message]) -> u64 {
        let (mut fanout, topics, users, clients) = self.fanout();
        let mut recipients = 0;
        let mut deliver = |fanout: &mut Fanout<'_>,
                           key: u32,
                           client: &mut Client,
                           frame: &Rc<Frame>,
                           name: &str,
                           msg: &Message| {
            // Most messages are public: decide that without loading the client's auth.
            let admitted = match &msg.audience {
                Audience::Public => true,
                audience => audience.admits(client.auth()),
            };
            if admitted
                && fanout.deliver(key, client, frame, name, &msg.data, OverCap::Disconnect)
                    == Ok(true)
            {
                recipients += 1;
            }
        };
        for msg in batch {
            fanout.stats.messages += 1;
            match &msg.target {
                Target::Topics(list) => {
                    for topic in list {
                        for sub in topics.matching(topic) {
                            let name = topics.name(sub);
                            let frame = Rc::new(Frame::new(name.as_bytes(), &msg.data));
                            for &key in topics.subscribers(sub) {
                                let client = &mut clients[key as usize];
                                deliver(&mut fanout, key, client, &frame, name, msg);
                            }
                        }
                    }
                }
                Target::User {
                    id,
                    collection_id,
                    event,
                } => {
                    let Some(keys) = users.get(&**id) else {
                        continue;
                    };
                    let frame = Rc::new(Frame::new(event.as_bytes(), &msg.data));
                    for &key in keys {
                        let client = &mut clients[key as usize];
                        let wanted = collection_id
                            .as_deref()
                            .is_none_or(|c| client.auth().is_some_and(|a| a.collection_id == c));
                        if wanted {
                            deliver(&mut fanout, key, client, &frame, event, msg);
                        }
                    }
                }
            }
        }
        self.finish_fanout(recipients);
        recipients
    }

    /// Splits the core into what deliveries touch and what they read.
    fn fanout(&mut self) -> (Fanout<'_>, &Topics, &UserIndex, &mut Slab<Client>) {
        let now = self.now_ms();
        let Core {
            topics,
            users,
            clients,
            deliveries,
            stats,
            dirty,
            hooks,
            config,
            ..
        } = self;
        let fanout = Fanout {
            deliveries,
            stats,
            dirty,
            hooks,
            max_queue: config.max_queue_bytes,
            now,
        };
        (fanout, topics, users, clients)
    }

    /// Counts a fan-out's deliveries and wakes the flush task for them.
    fn finish_fanout(&mut self, recipients: u64) {
        self.stats.deliveries += recipients;
        if !self.dirty.is_empty() {
            if let Some(w) = self.flusher.take() {
                w.wake();
            }
        }
    }

    /// Ends every stream whose idle timeout or lifetime has passed.
    pub fn expire(&mut self) {
        let now = self.now_ms();
        let idle = self.config.idle_timeout.as_millis() as u64;
        let lifetime = self.config.max_lifetime.as_millis() as u64;
        let Core {
            clients,
            deliveries,
            stats,
            ..
        } = self;
        for (_, client) in clients.iter_mut() {
            let (idle, lifetime) = match &client.extra {
                Some(e) => (
                    e.idle_timeout_ms.unwrap_or(idle),
                    e.max_lifetime_ms.unwrap_or(lifetime),
                ),
                None => (idle, lifetime),
            };
            let stalled = now.saturating_sub(client.last_write_ms) >= idle;
            if client.blocked && stalled && client.end.is_none_or(|r| r.is_graceful()) {
                // Its socket took nothing for a whole idle timeout: unlike
                // PocketBase, which keeps such a client forever, let it go.
                drop_slow_consumer(
                    client,
                    deliveries,
                    stats,
                    0,
                    "its socket accepted nothing for the idle timeout",
                );
                continue;
            }
            if client.end.is_some() {
                continue;
            }
            let reason = if now.saturating_sub(client.connected_ms) >= lifetime {
                EndReason::Lifetime
            } else if stalled {
                EndReason::IdleTimeout
            } else {
                continue;
            };
            end(client, reason);
        }
        self.deliveries.release_idle_memory();
        if self.dirty.is_empty() && self.dirty.capacity() > 4096 {
            self.dirty = VecDeque::new();
        }
    }

    /// Starts a graceful shutdown: every stream is ended politely.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        for (_, client) in self.clients.iter_mut() {
            if client.end.is_none() {
                end(client, EndReason::Shutdown);
            }
        }
    }

    /// Closes every remaining socket so that their tasks finish.
    pub fn close_all_connections(&mut self) {
        for (_, &fd) in self.connections.iter() {
            // SAFETY: shutdown(2) on a socket this core owns; it does not close the fd.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }

    /// Registered clients, ended or not.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }

    pub fn stats(&self) -> CoreStats {
        CoreStats {
            connections: self.connections.len() as u64,
            clients: self.clients.len() as u64,
            topics: self.topics.len() as u64,
            ..self.stats.clone()
        }
    }
}

/// What to do with a client whose queue would go over its byte cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OverCap {
    /// Fan-out: disconnect it as a slow consumer (counted), so that one slow
    /// reader cannot hold memory or publishers hostage.
    Disconnect,
    /// A send to this one client: refuse the send, tell the sender.
    Refuse,
}

/// Why a delivery was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// A send to one client whose queue is full.
    Full,
    /// The frame alone is over `--max-queue-bytes`: no client can take it.
    TooLarge,
}

/// The parts of a core that a delivery changes.
struct Fanout<'a> {
    deliveries: &'a mut Deliveries,
    stats: &'a mut CoreStats,
    dirty: &'a mut VecDeque<u32>,
    hooks: &'a Hooks,
    max_queue: usize,
    now: u64,
}

impl Fanout<'_> {
    /// Queues `frame` (event `name` carrying `data`) for `client`, through
    /// the message hook if one is set. `Ok(false)`: not delivered (the stream
    /// is ending, the hook skipped it, or the client was dropped).
    fn deliver(
        &mut self,
        key: u32,
        client: &mut Client,
        frame: &Rc<Frame>,
        name: &str,
        data: &[u8],
        over_cap: OverCap,
    ) -> Result<bool, Refused> {
        if client.end.is_some() {
            return Ok(false);
        }
        if self.hooks.has_message() {
            return self.deliver_through_hook(key, client, frame, name, data, over_cap);
        }
        self.queue(key, client, frame, over_cap)
    }

    /// [`Fanout::deliver`] with a message hook: the hook may skip the message
    /// or give this client a frame of its own. Kept out of line so that the
    /// common path (no hook) stays small.
    #[inline(never)]
    fn deliver_through_hook(
        &mut self,
        key: u32,
        client: &mut Client,
        frame: &Rc<Frame>,
        name: &str,
        data: &[u8],
        over_cap: OverCap,
    ) -> Result<bool, Refused> {
        let mut event = MessageEvent {
            client: client.view(),
            name,
            data,
            outcome: Outcome::Deliver,
        };
        let outcome = self.hooks.message(&mut event);
        match outcome.event(name, data) {
            None => {
                // As in PocketBase, a skipped message still resets the idle timer.
                client.last_write_ms = self.now;
                self.stats.hook_skipped += 1;
                Ok(false)
            }
            Some(_) if outcome == Outcome::Deliver => self.queue(key, client, frame, over_cap),
            Some((name, data)) => {
                let own = Rc::new(Frame::new(name.as_bytes(), data));
                self.queue(key, client, &own, over_cap)
            }
        }
    }

    /// Links `frame` into `client`'s queue and puts it in the flush line; a
    /// client over its byte cap is dropped or the send refused (`over_cap`).
    #[inline]
    fn queue(
        &mut self,
        key: u32,
        client: &mut Client,
        frame: &Rc<Frame>,
        over_cap: OverCap,
    ) -> Result<bool, Refused> {
        if client.mode == BodyMode::Discard {
            // HEAD streams write no body, but a message still counts as delivered.
            client.last_write_ms = self.now;
            return Ok(true);
        }
        let len = frame.wire_len(client.mode);
        if client.queued_bytes + len > self.max_queue {
            return Err(self.over_cap(client, len, over_cap));
        }
        self.deliveries.push(&mut client.queue, frame.clone());
        client.queued_bytes += len;
        self.stats.queued_bytes += len as u64;
        if !client.dirty && !client.blocked {
            client.dirty = true;
            self.dirty.push_back(key);
        }
        Ok(true)
    }

    /// A frame of `len` bytes does not fit in `client`'s queue: refuse the
    /// send, or drop the client as a slow consumer (a frame that could never
    /// fit is refused either way: that is not the client's fault).
    #[cold]
    fn over_cap(&mut self, client: &mut Client, len: usize, over_cap: OverCap) -> Refused {
        if len > self.max_queue {
            self.stats.oversized_frames += 1;
            return Refused::TooLarge;
        }
        if over_cap == OverCap::Disconnect {
            drop_slow_consumer(
                client,
                self.deliveries,
                self.stats,
                1,
                "its queue went over --max-queue-bytes",
            );
        }
        Refused::Full
    }
}

/// Disconnects a client that does not read fast enough, counting what it
/// loses (`extra` frames that were not even queued).
fn drop_slow_consumer(
    client: &mut Client,
    deliveries: &mut Deliveries,
    stats: &mut CoreStats,
    extra: usize,
    why: &str,
) {
    let dropped = deliveries.clear(&mut client.queue) + extra;
    stats.dropped_clients += 1;
    stats.dropped_frames += dropped as u64;
    stats.queued_bytes -= client.queued_bytes as u64;
    client.queued_bytes = 0;
    client.sent = 0;
    tracing::warn!(
        client = %String::from_utf8_lossy(&client.id),
        dropped_frames = dropped,
        "disconnecting a slow consumer: {why}"
    );
    // Abort a write that may be stuck on a full socket buffer.
    // SAFETY: shutdown(2) on the client's own socket; the fd stays open.
    unsafe { libc::shutdown(client.fd, libc::SHUT_RDWR) };
    end(client, EndReason::SlowConsumer);
}

fn end(client: &mut Client, reason: EndReason) {
    client.end = Some(reason);
    wake(client);
}

fn wake(client: &mut Client) {
    if let Some(w) = client.waker.take() {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::task::{Context, Poll, Waker};

    fn core() -> Core {
        Core::new(0, Arc::new(Config::default()), Hooks::new())
    }

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn render(core: &mut Core, key: usize) -> Vec<u8> {
        let pieces = core.take_write(key);
        let bytes: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        core.complete_write(key, bytes.len());
        core.recycle(pieces);
        bytes
    }

    #[test]
    fn publish_reaches_matching_subscriptions_with_their_names() {
        let mut c = core();
        let (a, id_a) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
        let (b, id_b) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
        c.subscribe(
            &id_a,
            a,
            LOCAL,
            vec!["chat".into(), "chat?x=1".into()],
            None,
        )
        .unwrap();
        c.subscribe(&id_b, b, LOCAL, vec!["other".into()], None)
            .unwrap();
        assert_eq!(c.publish(&[Message::custom("chat", *b"1")]), 2);
        let out = String::from_utf8(render(&mut c, a)).unwrap();
        let id = std::str::from_utf8(&id_a).unwrap();
        assert_eq!(
            out,
            format!("id:{id}\nevent:chat\ndata:1\n\nid:{id}\nevent:chat?x=1\ndata:1\n\n")
        );
        assert_eq!(c.stats().frames_written, 2);
    }

    fn user(id: &str, superuser: bool) -> Option<Auth> {
        Some(Auth {
            id: id.into(),
            collection_id: if superuser {
                "pbc_3142635823"
            } else {
                "_pb_users_auth_"
            }
            .into(),
            collection_name: if superuser { "_superusers" } else { "users" }.into(),
            superuser,
        })
    }

    #[test]
    fn auth_changes_follow_pocketbase() {
        let mut c = core();
        let (k, id) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
        c.subscribe(&id, k, LOCAL, vec!["a".into()], None).unwrap();
        // Guest → user once; the same user again; anything else is refused and changes nothing.
        c.subscribe(&id, k, LOCAL, vec!["b".into()], user("u1", false))
            .unwrap();
        c.subscribe(&id, k, LOCAL, vec!["c".into()], user("u1", false))
            .unwrap();
        for other in [None, user("u2", false), user("u1", true)] {
            let err = c
                .subscribe(&id, k, LOCAL, vec!["d".into()], other)
                .unwrap_err();
            assert_eq!(err.status, 403);
            assert_eq!(
                err.message,
                "The current and the previous request authorization don't match."
            );
        }
        assert_eq!(c.client_info(&id, k).unwrap().subscriptions, ["c"]);
    }

    #[test]
    fn audiences_and_messages_to_one_user() {
        use crate::publish::Audience;
        let mut c = core();
        let mut keys = Vec::new();
        for auth in [
            None,
            user("u1", false),
            user("u1", false),
            user("u2", false),
            user("su", true),
        ] {
            let (k, id) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
            c.subscribe(&id, k, LOCAL, vec!["notes/*".into()], auth)
                .unwrap();
            keys.push((k, id));
        }
        let note = |audience| {
            Message::record(
                "notes",
                None,
                crate::publish::Action::Create,
                "n1",
                br#"{"id":"n1"}"#,
            )
            .for_audience(audience)
        };
        assert_eq!(c.publish(&[note(Audience::Public)]), 5);
        assert_eq!(c.publish(&[note(Audience::Superusers)]), 1);
        let users = |ids: &[&str]| Audience::Users(crate::publish::UserIds::new(ids.to_vec()));
        assert_eq!(c.publish(&[note(users(&["u1"]))]), 3);
        assert_eq!(c.publish(&[note(users(&[]))]), 1);
        assert_eq!(
            c.publish(&[Message::to_user("u1", None, "inbox", *b"1")]),
            2
        );
        assert_eq!(
            c.publish(&[Message::to_user("u1", Some("other"), "inbox", *b"1")]),
            0
        );
        assert_eq!(
            c.publish(&[Message::to_user(
                "u1",
                Some("_pb_users_auth_"),
                "inbox",
                *b"1"
            )]),
            2
        );
        // The index forgets clients that leave.
        c.unregister(keys[1].0, EndReason::ClientClosed);
        assert_eq!(
            c.publish(&[Message::to_user("u1", None, "inbox", *b"1")]),
            1
        );
        c.unregister(keys[2].0, EndReason::ClientClosed);
        assert_eq!(
            c.publish(&[Message::to_user("u1", None, "inbox", *b"1")]),
            0
        );
        assert!(!c.users.contains_key("u1"));
    }

    #[test]
    fn subscribe_checks_id_and_ip() {
        let mut c = core();
        let (k, id) = c.register(LOCAL, -1, BodyMode::Chunked).unwrap();
        let mut wrong = id.to_vec();
        wrong[39] = if wrong[39] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            c.subscribe(&wrong, k, LOCAL, vec![], None)
                .unwrap_err()
                .status,
            404
        );
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(
            c.subscribe(&id, k, other, vec![], None)
                .unwrap_err()
                .message,
            "Invalid realtime client."
        );
        c.subscribe(&id, k, LOCAL, vec!["a".into(), "b".into()], None)
            .unwrap();
        c.subscribe(&id, k, LOCAL, vec!["b".into()], None).unwrap();
        assert_eq!((c.stats().subscriptions, c.stats().topics), (1, 1));
        c.unregister(k, EndReason::ClientClosed);
        assert_eq!(
            (c.stats().subscriptions, c.stats().topics, c.stats().clients),
            (0, 0, 0)
        );
    }

    #[test]
    fn partial_writes_resume_mid_frame() {
        let mut c = core();
        let (k, id) = c.register(LOCAL, -1, BodyMode::Chunked).unwrap();
        c.subscribe(&id, k, LOCAL, vec!["t".into()], None).unwrap();
        c.publish(&[Message::custom("t", *b"abc"), Message::custom("t", *b"def")]);
        let mut all = Vec::new();
        loop {
            let pieces = c.take_write(k);
            if pieces.is_empty() {
                break;
            }
            let first: Vec<u8> = pieces
                .iter()
                .flat_map(|p| p.iter().copied())
                .take(7)
                .collect();
            all.extend_from_slice(&first);
            c.complete_write(k, first.len());
            c.recycle(pieces);
        }
        let text = String::from_utf8(all).unwrap();
        assert!(
            text.contains("data:abc\n\n\r\n") && text.ends_with("data:def\n\n\r\n"),
            "{text}"
        );
        assert_eq!(c.stats().queued_bytes, 0);
    }

    #[test]
    fn flush_writes_directly_and_hands_full_sockets_to_the_task() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let mut c = core();
        let (mut peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
        let (k, id) = c.register(LOCAL, ours.as_raw_fd(), BodyMode::Raw).unwrap();
        c.subscribe(&id, k, LOCAL, vec!["t".into()], None).unwrap();
        c.publish(&[Message::custom("t", *b"1"), Message::custom("t", *b"2")]);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(c.poll_dirty(&mut cx), Poll::Ready(()));
        c.flush_some(16);
        assert_eq!(c.poll_dirty(&mut cx), Poll::Pending);
        let mut got = vec![0u8; 4096];
        let n = peer.read(&mut got).unwrap();
        let id = std::str::from_utf8(&id).unwrap();
        assert_eq!(
            std::str::from_utf8(&got[..n]).unwrap(),
            format!("id:{id}\nevent:t\ndata:1\n\nid:{id}\nevent:t\ndata:2\n\n")
        );
        let s = c.stats();
        assert_eq!((s.frames_written, s.writes, s.queued_bytes), (2, 1, 0));
        // A peer that does not read: the socket fills and the task takes over.
        let big = vec![b'x'; 64 * 1024];
        while !c.clients[k].blocked {
            c.publish(&[Message::custom("t", big.clone())]);
            c.flush_some(16);
        }
        assert_eq!(c.poll_client(k, &mut cx), Poll::Ready(ClientEvent::Write));
        assert!(c.stats().queued_bytes > 0);
    }

    #[test]
    fn a_socket_stalled_for_the_idle_timeout_is_dropped() {
        use std::os::fd::AsRawFd;
        let config = Config {
            idle_timeout: std::time::Duration::ZERO,
            ..Config::default()
        };
        let mut c = Core::new(0, Arc::new(config), Hooks::new());
        let (_peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
        let (k, id) = c.register(LOCAL, ours.as_raw_fd(), BodyMode::Raw).unwrap();
        c.subscribe(&id, k, LOCAL, vec!["t".into()], None).unwrap();
        while !c.clients[k].blocked {
            c.publish(&[Message::custom("t", vec![b'x'; 64 * 1024])]);
            c.flush_some(16);
        }
        c.expire();
        let s = c.stats();
        assert_eq!((s.dropped_clients, s.queued_bytes), (1, 0));
        assert!(s.dropped_frames >= 1);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(
            c.poll_client(k, &mut cx),
            Poll::Ready(ClientEvent::End(EndReason::SlowConsumer))
        );
    }

    #[test]
    fn slow_consumer_is_dropped_and_counted() {
        let mut c = core();
        c.config = Arc::new(Config {
            max_queue_bytes: 200,
            ..Config::default()
        });
        let (k, id) = c.register(LOCAL, -1, BodyMode::Chunked).unwrap();
        c.subscribe(&id, k, LOCAL, vec!["t".into()], None).unwrap();
        let msgs: Vec<_> = (0..5)
            .map(|_| Message::custom("t", vec![b'x'; 50]))
            .collect();
        let delivered = c.publish(&msgs);
        assert!(delivered < 5);
        let s = c.stats();
        assert_eq!(
            (s.dropped_clients, s.dropped_frames, s.queued_bytes),
            (1, delivered + 1, 0)
        );
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(
            c.poll_client(k, &mut cx),
            Poll::Ready(ClientEvent::End(EndReason::SlowConsumer))
        );
    }

    #[test]
    fn graceful_end_flushes_first_and_stops_new_frames() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let mut c = core();
        let (mut peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
        let (k, id) = c
            .register(LOCAL, ours.as_raw_fd(), BodyMode::Chunked)
            .unwrap();
        c.subscribe(&id, k, LOCAL, vec!["t".into()], None).unwrap();
        c.publish(&[Message::custom("t", *b"1")]);
        c.begin_shutdown();
        assert_eq!(c.publish(&[Message::custom("t", *b"2")]), 0);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(
            c.poll_client(k, &mut cx),
            Poll::Pending,
            "queued frames go first"
        );
        c.flush_some(16);
        assert_eq!(
            c.poll_client(k, &mut cx),
            Poll::Ready(ClientEvent::End(EndReason::Shutdown))
        );
        let mut got = vec![0u8; 4096];
        let n = peer.read(&mut got).unwrap();
        assert!(got[..n].ends_with(b"event:t\ndata:1\n\n\r\n"));
    }
}
