//! One core's world: its clients, their subscriptions and write queues.
//!
//! Everything here is owned by one thread and touched without locks; other
//! cores reach it only through the ring (`crate::ring`). Nothing here knows
//! HTTP, and only the writer touches a socket (through `crate::runtime`'s
//! [`SocketRef`]). [`Core`] is the facade the rest of the server calls; the
//! work is done by its parts, each owning one concern:
//!
//! | part | concern |
//! | --- | --- |
//! | [`registry`] ([`client`], [`id`]) | the slab of clients and connections; ids that name their owner node, core and slot |
//! | [`ops`] | the operations on one named client, as values (run locally or on another node) |
//! | [`pubsub`] ([`topics`], [`users`]) | who receives a message: interned subscriptions, the user index, one frame per subscription string |
//! | [`delivery`] | one frame for one client: the message hook, then the queue |
//! | [`outbox`] ([`queue`]) | what waits to be written: per-client queues, the byte cap, the flush line |
//! | [`writer`] | writing queues to sockets: direct sends, buffers for io_uring writes |
//! | [`policy`] | the rules and hooks on connect, subscribe, message and disconnect |
//! | [`history`] | recent messages of the topics that keep them, cursors, replay on resume |
//! | [`stats`], [`latency`], [`error`] | counters, publish → last write; what a core refuses |

pub(crate) mod client;
pub(crate) mod delivery;
pub mod error;
pub mod history;
pub(crate) mod id;
pub mod latency;
pub mod ops;
pub(crate) mod outbox;
pub(crate) mod policy;
pub(crate) mod pubsub;
pub(crate) mod queue;
pub(crate) mod records;
pub(crate) mod registry;
pub mod stats;
pub mod topics;
pub(crate) mod users;
pub(crate) mod writer;

pub use client::{ClientInfo, StoreOp};
pub use error::CoreError;
pub use history::{HistorySettings, HistoryTopic};
pub use id::{MAX_CORES, NodeId, Owner, locate};
pub use ops::{ClientOp, OpReply};
pub use policy::Policy;
pub use pubsub::{Interest, InterestSink, channel_of};
pub use stats::{AuthOutcome, CoreStats, Counters};

use crate::auth::Auth;
use crate::frame::{BodyMode, Frame, ID_LEN};
use crate::hooks::{EndReason, HookError, Outcome, Request};
use crate::message::{Audience, Message, RecordEvent, Target, View};
use crate::runtime::SocketRef;
use bytes::Bytes;
use client::Client;
use delivery::Delivery;
use history::{Cursor, History};
use outbox::{Outbox, OverCap, Refused};
use pubsub::PubSub;
use registry::Registry;
use serde_json::Value;
use std::cell::OnceCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use writer::Writer;

/// What a core needs to know of the server's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This server, as its clients' ids name it.
    pub node: NodeId,
    /// Cores in the server (client ids encode the owner among them).
    pub workers: usize,
    /// A stream with no message delivered for this long is ended.
    pub idle_timeout: Duration,
    /// A stream is ended this long after it started.
    pub max_lifetime: Duration,
    /// Bytes that may wait in one client's queue.
    pub max_queue_bytes: usize,
    /// A client whose socket takes nothing for this long while it has
    /// frames queued is dropped as a slow consumer.
    pub write_timeout: Duration,
    /// Streams one (non-loopback) address may hold on this core; 0: no limit.
    pub max_streams_per_ip: usize,
    /// Distinct subscription strings this core holds at most.
    pub max_topics: usize,
    /// `--history`: the topics that keep their recent messages.
    pub history: Option<HistorySettings>,
}

/// What a parked stream is woken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    Write,
    End(EndReason),
}

pub struct Core {
    index: usize,
    settings: Settings,
    registry: Registry,
    pubsub: PubSub,
    outbox: Outbox,
    writer: Writer,
    policy: Policy,
    history: Option<History>,
    stats: Counters,
    epoch: Instant,
    /// The wall-clock time of `epoch`, to report when clients connected.
    started_at: SystemTime,
    shutting_down: bool,
}

impl Core {
    pub fn new(index: usize, settings: Settings, policy: Policy) -> Core {
        Core {
            index,
            outbox: Outbox::new(settings.max_queue_bytes),
            history: settings.history.clone().map(History::new),
            settings,
            registry: Registry::default(),
            pubsub: PubSub::default(),
            writer: Writer::default(),
            policy,
            stats: Counters::default(),
            epoch: Instant::now(),
            started_at: SystemTime::now(),
            shutting_down: false,
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// From now on, tells `sink` which topics this core holds (a cluster's
    /// node subscribes to them in Redis).
    pub fn report_interest(&mut self, sink: InterestSink) {
        self.pubsub.report_interest(sink);
    }

    /// Milliseconds since this core started: a compact clock for deadlines.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    // --- Connections and streams (called by this core's connection tasks) ---

    pub fn open_connection(&mut self, socket: SocketRef) -> usize {
        self.registry.open_connection(socket)
    }

    pub fn close_connection(&mut self, key: usize) {
        self.registry.close_connection(key);
    }

    pub fn note_accept_error(&mut self) {
        self.stats.accept_errors += 1;
    }

    /// Registers a stream; returns its slab key and id.
    pub fn register(
        &mut self,
        ip: IpAddr,
        socket: SocketRef,
        mode: BodyMode,
    ) -> Result<(usize, [u8; ID_LEN]), CoreError> {
        let now = self.now_ms();
        let owner = (self.settings.node, self.index, self.settings.workers);
        let per_ip = self.settings.max_streams_per_ip;
        self.registry.register(owner, ip, per_ip, socket, mode, now)
    }

    /// Runs the connect hook for the client just registered at `key`.
    pub fn connect(&mut self, key: usize, request: &Request<'_>) -> Result<(), CoreError> {
        let result = self.policy.connect(self.registry.client_mut(key), request);
        self.count_hook_error(&result);
        result
    }

    /// Counts a connect or subscribe hook's refusal or panic.
    fn count_hook_error<T>(&mut self, result: &Result<T, CoreError>) {
        match result {
            Err(CoreError::Hook(HookError::Rejected(_))) => self.stats.hook_rejected += 1,
            Err(CoreError::Hook(HookError::Panicked(_))) => self.stats.hook_panicked += 1,
            _ => {}
        }
    }

    /// Counts how a subscription request's token was taken (on the core
    /// that checked it, which need not own the client).
    pub fn note_auth(&mut self, outcome: AuthOutcome) {
        let counter = match outcome {
            AuthOutcome::Verified => &mut self.stats.auth_verified,
            AuthOutcome::Guest => &mut self.stats.auth_guest,
            AuthOutcome::Busy => &mut self.stats.auth_busy,
            AuthOutcome::Unavailable => &mut self.stats.auth_unavailable,
        };
        *counter += 1;
    }

    /// What the message hook decides for one message to client `key` outside
    /// a fan-out (`PB_CONNECT`); a skip is counted like any other.
    pub(crate) fn hook_message(&mut self, key: usize, name: &str, data: &[u8]) -> Outcome {
        let outcome = self
            .policy
            .message(self.registry.client_mut(key), name, data);
        match outcome {
            Outcome::Skip => self.stats.hook_skipped += 1,
            Outcome::Panicked => self.stats.hook_panicked += 1,
            _ => {}
        }
        outcome
    }

    /// Removes a stream and everything it held, then tells the disconnect
    /// hook why it ended.
    pub fn unregister(&mut self, key: usize, reason: EndReason) {
        let mut client = self.registry.remove(key);
        let stats = &mut self.stats;
        *match reason {
            EndReason::ClientClosed => &mut stats.ended_client_closed,
            EndReason::IdleTimeout => &mut stats.ended_idle_timeout,
            EndReason::Lifetime => &mut stats.ended_lifetime,
            EndReason::Shutdown => &mut stats.ended_shutdown,
            EndReason::SlowConsumer => &mut stats.ended_slow_consumer,
            EndReason::Unregistered => &mut stats.ended_unregistered,
        } += 1;
        if self
            .policy
            .disconnect(&client, reason, || self.pubsub.names(&client.subs))
        {
            self.stats.hook_panicked += 1;
        }
        self.release(key, &mut client);
    }

    /// Removes a client that never became a stream (its connect was refused).
    pub fn discard(&mut self, key: usize) {
        let mut client = self.registry.remove(key);
        self.release(key, &mut client);
    }

    /// Lets go of what a removed client held: its queue, its subscriptions
    /// and its place in the user index.
    fn release(&mut self, key: usize, client: &mut Client) {
        self.outbox.clear(client, &mut self.stats);
        self.stats.subscriptions -= client.subs.len() as u64;
        let user = client.auth().map(|a| a.id.as_str());
        self.pubsub.release(key as u32, &client.subs, user);
    }

    /// Called by a stream's task: is there something to write, or an end?
    /// Registers the task to be woken otherwise.
    pub fn poll_client(&mut self, key: usize, cx: &mut Context<'_>) -> Poll<ClientEvent> {
        let client = self.registry.client_mut(key);
        if let Some(reason) = client.end.filter(|r| !r.is_graceful()) {
            return Poll::Ready(ClientEvent::End(reason));
        }
        if client.blocked {
            if !client.queue.is_empty() {
                return Poll::Ready(ClientEvent::Write);
            }
            client.blocked = false;
        }
        if let Some(reason) = client.end.filter(|_| client.queue.is_empty()) {
            return Poll::Ready(ClientEvent::End(reason));
        }
        client.park(cx.waker());
        Poll::Pending
    }

    /// Called by a stream's task while its io_uring write is in flight: has
    /// the stream been aborted (a slow consumer), so that the write must not
    /// be waited for? Registers the task to be woken if it is.
    pub fn poll_abort(&mut self, key: usize, cx: &mut Context<'_>) -> Option<EndReason> {
        let client = self.registry.client_mut(key);
        if client.aborted() {
            return client.end;
        }
        client.park(cx.waker());
        None
    }

    /// The buffers for the next io_uring write of a blocked client; give
    /// them back with [`Core::recycle`].
    pub fn take_write(&mut self, key: usize) -> Vec<Bytes> {
        let client = self.registry.client(key);
        self.writer
            .take_write(client, &self.outbox, &mut self.stats)
    }

    /// Records that `written` bytes of the last write reached the socket.
    pub fn complete_write(&mut self, key: usize, written: usize) {
        let now = self.now_ms();
        let client = self.registry.client_mut(key);
        self.outbox
            .complete_write(client, written, now, &mut self.stats);
    }

    /// Returns a write's buffer list for reuse.
    pub fn recycle(&mut self, pieces: Vec<Bytes>) {
        self.writer.recycle(pieces);
    }

    // --- The flush task ---

    /// Is any client waiting to be written to?
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.outbox.poll_line(cx)
    }

    /// Writes to up to `n` clients from the front of the flush line; returns
    /// whether any are left.
    pub fn flush_some(&mut self, n: usize) -> bool {
        let now = self.now_ms();
        for _ in 0..n {
            let Some(key) = self.outbox.next_in_line() else {
                return false;
            };
            // A key whose client left (or was replaced) is not dirty: skipped.
            let Some(client) = self.registry.get_mut(key as usize) else {
                continue;
            };
            self.writer
                .flush(key, client, &mut self.outbox, now, &mut self.stats);
        }
        self.outbox.has_line()
    }

    pub fn has_flush_line(&self) -> bool {
        self.outbox.has_line()
    }

    // --- Subscriptions ---

    /// The open stream a subscription POST names, checked as PocketBase does:
    /// it must exist, and the POST must come from the IP the stream came from.
    pub fn realtime_client(&mut self, id: &[u8], key: usize, ip: IpAddr) -> Result<(), CoreError> {
        realtime_client(&mut self.registry, id, key, ip).map(|_| ())
    }

    /// Replaces the subscriptions of the client `id` (slab `key`), as
    /// `POST /api/realtime` does: the id and IP checks, then the policy's
    /// (auth, rules, hook); a refused request changes nothing.
    pub fn set_subscriptions(
        &mut self,
        id: &[u8],
        key: usize,
        ip: IpAddr,
        subs: Vec<String>,
        auth: Option<Auth>,
    ) -> Result<(), CoreError> {
        self.resume_subscriptions(id, key, ip, subs, auth, None)
    }

    /// [`Core::set_subscriptions`] for a request that may resume: with
    /// history, each subscription string new to the client that names a
    /// topic keeping history resumes from a cursor — its own `since` option,
    /// else `resume` (the POST's `Last-Event-ID`), else the stream's — and
    /// gets what it missed before anything published after this call.
    pub fn resume_subscriptions(
        &mut self,
        id: &[u8],
        key: usize,
        ip: IpAddr,
        subs: Vec<String>,
        auth: Option<Auth>,
        resume: Option<&str>,
    ) -> Result<(), CoreError> {
        let client = realtime_client(&mut self.registry, id, key, ip)?;
        let admitted = self.policy.admit(client, subs, auth.as_ref());
        if admitted.is_err() {
            self.count_hook_error(&admitted);
        }
        let subs = admitted?;
        if let Some(bad) = subs.iter().find(|s| !crate::frame::is_valid_name(s)) {
            return Err(CoreError::InvalidSubscription(bad.clone()));
        }
        let client = self.registry.client_mut(key);
        let resumes = match &self.history {
            Some(history) => {
                let held = self.pubsub.names(&client.subs);
                let stream = client.extra.as_ref().and_then(|e| e.resume);
                history.resumes(&subs, &held, resume, stream)?
            }
            None => Vec::new(),
        };
        if self.pubsub.topic_count() + self.pubsub.new_topics(&subs) > self.settings.max_topics {
            return Err(CoreError::TooManyTopics);
        }
        if let Some(new) = auth.as_ref().filter(|_| client.auth().is_none()) {
            // A guest becoming a user: reachable by user id from now on.
            self.pubsub.add_user(&new.id, key as u32);
        }
        if auth.is_some() || client.extra.is_some() {
            // Rules and filters read the auth record: kept ready, not made per event.
            client.extra_mut().auth = auth.map(|mut a| {
                if a.record.is_none() {
                    a.record = Some(Arc::new(a.record_json()));
                }
                a
            });
        }
        let before = client.subs.len() as u64;
        self.pubsub.replace(key as u32, &mut client.subs, &subs);
        self.stats.subscriptions = self.stats.subscriptions - before + client.subs.len() as u64;
        // The stream's Last-Event-ID is for its first subscriptions only.
        if let Some(extra) = &mut client.extra {
            extra.resume = None;
        }
        if !resumes.is_empty() {
            self.replay(key, &resumes);
        }
        Ok(())
    }

    /// Where the first subscriptions of the stream at `key` resume: its
    /// `Last-Event-ID`, when that is a cursor (a raw EventSource sends back
    /// whatever id it saw last, a client id when ids are not cursors).
    pub fn resume_from(&mut self, key: usize, last_event_id: &str) {
        if self.history.is_none() {
            return;
        }
        if let Some(cursor) = Cursor::parse(last_event_id) {
            self.registry.client_mut(key).extra_mut().resume = Some(cursor);
        }
    }

    /// Queues, for client `key`, each resumed subscription's gap event, then
    /// the kept messages after each cursor in sequence order.
    fn replay(&mut self, key: usize, resumes: &[(String, Cursor)]) {
        let (mut delivery, registry, _, history) = self.fanout();
        let delivered = match history {
            Some(history) => replay_to(
                &mut delivery,
                registry.client_mut(key),
                key,
                history,
                resumes,
            ),
            None => 0,
        };
        let retracted = delivery.retracted;
        self.finish_fanout(delivered, retracted);
    }

    // --- Messages ---

    /// Starts a fan-out: the parts deliveries change, and the registry and
    /// index they read.
    fn fanout(&mut self) -> (Delivery<'_>, &mut Registry, &PubSub, Option<&History>) {
        let now = self.now_ms();
        let Core {
            registry,
            pubsub,
            outbox,
            writer,
            policy,
            stats,
            history,
            ..
        } = self;
        outbox.begin_batch();
        let delivery = Delivery {
            outbox,
            writer,
            policy,
            stats,
            now,
            retracted: 0,
        };
        (delivery, registry, pubsub, history.as_ref())
    }

    /// Counts a fan-out's deliveries — those still queued for a connected
    /// client — and wakes the flush task for them; returns that count.
    fn finish_fanout(&mut self, counted: u64, retracted: u64) -> u64 {
        let recipients = counted - retracted;
        self.stats.deliveries += recipients;
        self.outbox.end_batch();
        self.outbox.wake_flusher();
        recipients
    }

    /// Fans a batch out to this core's subscribers, in order; returns the
    /// number of deliveries queued for clients still connected at its end.
    /// Per recipient this only links a shared frame into the client's queue:
    /// no allocation, no copy (unless a message hook gives a client data of
    /// its own).
    pub fn publish(&mut self, batch: &[Message]) -> u64 {
        // Recorded before any delivery, so each frame can carry its cursor.
        let recorded: Vec<_> = match &mut self.history {
            Some(history) => batch.iter().map(|msg| history.record(msg)).collect(),
            None => Vec::new(),
        };
        let (mut delivery, registry, pubsub, history) = self.fanout();
        let sse_ids = history.is_some_and(History::sse_ids);
        let mut recipients = 0;
        for (i, msg) in batch.iter().enumerate() {
            delivery.stats.messages += 1;
            if let Target::All { event } = &msg.target {
                recipients += to_everyone(&mut delivery, registry, msg, event);
                continue;
            }
            if let Some(event) = msg
                .record
                .as_deref()
                .filter(|e| has_rules_or_options(e, pubsub, msg))
            {
                recipients += to_record_subscribers(&mut delivery, registry, pubsub, msg, event);
                continue;
            }
            // Most messages are for everyone: decided once, not per recipient.
            let everyone = msg.audience == Audience::Public && !msg.is_for_a_collection();
            let recorded = recorded.get(i).and_then(Option::as_ref);
            let (data, cursor, seq) = match recorded {
                Some(r) => (&r.data[..], sse_ids.then_some(r.cursor.as_bytes()), r.seq),
                None => (&msg.data[..], None, 0),
            };
            for group in pubsub.groups_with(msg, data, cursor) {
                for &key in group.clients {
                    let client = registry.client_mut(key as usize);
                    let (frame, name) = (&group.frame, group.name);
                    if (everyone || admits(msg, client))
                        && (seq == 0 || !seen_already(client, seq))
                        && matches!(
                            delivery.deliver(key, client, frame, name, data, OverCap::Disconnect),
                            Ok(true)
                        )
                    {
                        recipients += 1;
                    }
                }
            }
        }
        let retracted = delivery.retracted;
        self.finish_fanout(recipients, retracted)
    }

    /// Queues one event for one client, whatever it subscribed. `Ok(false)`:
    /// the message hook skipped it. A full queue refuses the send (the client
    /// stays connected) rather than dropping it unseen.
    pub fn send(
        &mut self,
        id: &[u8],
        key: usize,
        name: &str,
        data: &[u8],
    ) -> Result<bool, CoreError> {
        self.registry.live(id, key)?;
        let frame = Rc::new(Frame::new(name.as_bytes(), data));
        let (mut delivery, registry, ..) = self.fanout();
        let client = registry.client_mut(key);
        delivery.stats.messages += 1;
        let delivered = delivery
            .deliver(key as u32, client, &frame, name, data, OverCap::Refuse)
            .map_err(|refused| match refused {
                Refused::Full => CoreError::QueueFull(client.id_str().to_owned()),
                Refused::TooLarge => CoreError::TooLarge(frame.wire_len(client.mode)),
            })?;
        self.finish_fanout(u64::from(delivered), 0);
        Ok(delivered)
    }

    // --- Named clients (the broker's calls) ---

    /// Runs `op` for client `id` at slab `key`.
    pub fn apply(&mut self, op: ClientOp, id: &[u8], key: usize) -> Result<OpReply, CoreError> {
        let core = self;
        Ok(match op {
            ClientOp::CheckRealtime { ip } => {
                core.realtime_client(id, key, ip)?;
                OpReply::Done
            }
            ClientOp::SetSubscriptions {
                ip,
                subscriptions,
                auth,
                resume,
            } => {
                core.resume_subscriptions(id, key, ip, subscriptions, auth, resume.as_deref())?;
                OpReply::Done
            }
            ClientOp::Send { event, data } => OpReply::Sent(core.send(id, key, &event, &data)?),
            ClientOp::Unregister => {
                core.end_client(id, key)?;
                OpReply::Done
            }
            ClientOp::Info => OpReply::Info(Box::new(core.client_info(id, key)?)),
            ClientOp::Store(op) => OpReply::Value(core.store(id, key, op)?),
        })
    }

    /// Ends a client's stream politely (what is queued is written first, then
    /// the zero chunk); the disconnect hook sees [`EndReason::Unregistered`].
    pub fn end_client(&mut self, id: &[u8], key: usize) -> Result<(), CoreError> {
        self.registry.live(id, key)?.end(EndReason::Unregistered);
        Ok(())
    }

    /// Reads or changes a client's store; returns the value read or replaced.
    pub fn store(
        &mut self,
        id: &[u8],
        key: usize,
        op: StoreOp,
    ) -> Result<Option<serde_json::Value>, CoreError> {
        Ok(self.registry.live(id, key)?.store(op))
    }

    /// A snapshot of one client.
    pub fn client_info(&mut self, id: &[u8], key: usize) -> Result<ClientInfo, CoreError> {
        self.registry.live(id, key)?;
        Ok(self.info(self.registry.client(key)))
    }

    /// This core's open streams in slab order: how many there are, and
    /// snapshots of `limit` of them after skipping `skip`. Walking the slab
    /// costs no allocation, so a page is cheap however many clients there are.
    pub fn client_page(&self, skip: usize, limit: usize) -> (usize, Vec<ClientInfo>) {
        let total = self.registry.live_clients().count();
        let page = self
            .registry
            .live_clients()
            .skip(skip)
            .take(limit)
            .map(|c| self.info(c))
            .collect();
        (total, page)
    }

    fn info(&self, client: &Client) -> ClientInfo {
        ClientInfo {
            id: client.id_str().to_owned(),
            subscriptions: self.pubsub.names(&client.subs),
            remote_ip: client.ip(),
            connected_at: self.started_at + Duration::from_millis(client.connected_ms),
            auth: client.auth().cloned(),
            store: client
                .extra
                .as_ref()
                .map(|e| e.store.clone())
                .unwrap_or_default(),
            core: self.index,
        }
    }

    // --- Timers and shutdown ---

    /// Ends every stream whose idle timeout or lifetime has passed, and lets
    /// go of a client whose socket took nothing for a write timeout
    /// (PocketBase keeps such a client forever).
    pub fn expire(&mut self) {
        let now = self.now_ms();
        let idle = self.settings.idle_timeout.as_millis() as u64;
        let lifetime = self.settings.max_lifetime.as_millis() as u64;
        let write_timeout = self.settings.write_timeout.as_millis() as u64;
        let Core {
            registry,
            outbox,
            stats,
            ..
        } = self;
        for (_, client) in registry.iter_mut() {
            let (idle, lifetime) = match &client.extra {
                Some(e) => (
                    e.idle_timeout_ms.unwrap_or(idle),
                    e.max_lifetime_ms.unwrap_or(lifetime),
                ),
                None => (idle, lifetime),
            };
            let since_write = now.saturating_sub(client.last_write_ms);
            if client.blocked && since_write >= write_timeout && !client.aborted() {
                outbox.drop_slow_consumer(
                    client,
                    stats,
                    0,
                    "its socket accepted nothing for the write timeout",
                );
                continue;
            }
            let stalled = since_write >= idle;
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
            client.end(reason);
        }
        self.outbox.release_idle_memory();
    }

    /// Queues one heartbeat comment (`--heartbeat`) for every stream that
    /// has nothing queued: one frame shared by all of them.
    pub fn heartbeat(&mut self) {
        let now = self.now_ms();
        let frame = Rc::new(Frame::comment());
        for (key, client) in self.registry.iter_mut() {
            if client.end.is_some() || client.blocked || !client.queue.is_empty() {
                continue;
            }
            if client.mode == BodyMode::Discard {
                continue;
            }
            if self
                .outbox
                .enqueue_untimed(key as u32, client, &frame, now, &mut self.stats)
                .is_ok()
            {
                self.stats.heartbeats += 1;
            }
        }
        self.outbox.wake_flusher();
    }

    /// Starts a graceful shutdown: every stream is ended politely.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        for (_, client) in self.registry.iter_mut() {
            if client.end.is_none() {
                client.end(EndReason::Shutdown);
            }
        }
    }

    /// Every open connection's socket (for shutdown to close what is left).
    pub fn connections(&self) -> impl Iterator<Item = SocketRef> + '_ {
        self.registry.connections()
    }

    /// Registered clients, ended or not.
    pub fn client_count(&self) -> usize {
        self.registry.len()
    }

    pub fn open_connections(&self) -> usize {
        self.registry.connection_count()
    }

    /// Streams that ended on this core since it started, for whatever reason.
    pub fn streams_ended(&self) -> u64 {
        let c = &self.stats;
        c.ended_client_closed
            + c.ended_idle_timeout
            + c.ended_lifetime
            + c.ended_shutdown
            + c.ended_slow_consumer
            + c.ended_unregistered
    }

    pub fn stats(&self) -> CoreStats {
        let (history_bytes, history_events, history_evicted) =
            self.history.as_ref().map_or((0, 0, 0), History::usage);
        CoreStats {
            core: self.index,
            counters: Counters {
                connections: self.registry.connection_count() as u64,
                clients: self.registry.len() as u64,
                topics: self.pubsub.topic_count() as u64,
                history_bytes,
                history_events,
                history_evicted,
                ..self.stats.clone()
            },
            latency: self.outbox.latency().clone(),
        }
    }
}

/// Delivers a message for every client (`Target::All`) to those its
/// audience admits; returns how many got it.
#[inline(never)]
fn to_everyone(
    delivery: &mut Delivery<'_>,
    registry: &mut Registry,
    msg: &Message,
    event: &str,
) -> u64 {
    let frame = Rc::new(Frame::new(event.as_bytes(), &msg.data));
    let mut recipients = 0;
    for (key, client) in registry.iter_mut() {
        if msg.audience.admits(client.auth())
            && matches!(
                delivery.deliver(
                    key as u32,
                    client,
                    &frame,
                    event,
                    &msg.data,
                    OverCap::Disconnect
                ),
                Ok(true)
            )
        {
            recipients += 1;
        }
    }
    recipients
}

/// Whether a record event needs per-subscriber rules or per-subscription
/// options (otherwise it goes the common way, decided by its audience).
fn has_rules_or_options(event: &RecordEvent, pubsub: &PubSub, msg: &Message) -> bool {
    event.rules.is_some() || pubsub.any_options(msg)
}

/// Delivers a record event to the subscribers PocketBase's rules and each
/// subscription's options admit (`core::records`); returns how many got it.
#[inline(never)]
fn to_record_subscribers(
    delivery: &mut Delivery<'_>,
    registry: &mut Registry,
    pubsub: &PubSub,
    msg: &Message,
    event: &RecordEvent,
) -> u64 {
    let now = SystemTime::now();
    let schema = event.rules.as_ref().and_then(|r| r.schema.as_deref());
    // The record with what only some see, built once per publish if anyone gets it.
    let (owner_record, superuser_record) = (OnceCell::new(), OnceCell::new());
    let mut recipients = 0;
    for group in pubsub.groups(msg) {
        let rule = event.rule_for(channel_of(group.name));
        let fields = group.options.and_then(|o| o.fields());
        // Serialised once per subscription string (trimmed to its `fields`)
        // and record version, for all its subscribers.
        let render = |record: &Value| {
            let json = match fields {
                Some(fields) => fields.project(record),
                None => record.to_string().into_bytes(),
            };
            let data = event.payload(&json);
            (Rc::new(Frame::new(group.name.as_bytes(), &data)), data)
        };
        let trimmed;
        let public: (&Rc<Frame>, &[u8]) = match fields {
            Some(_) => {
                trimmed = render(&event.record);
                (&trimmed.0, &trimmed.1)
            }
            None => (&group.frame, &msg.data),
        };
        let versions = [OnceCell::new(), OnceCell::new()];
        let mut deliver_all = |filter: Option<records::SubscriptionFilter<'_>>| {
            for &key in group.clients {
                let client = registry.client_mut(key as usize);
                if !records::admits(event, &msg.audience, rule, filter, client.auth(), now) {
                    continue;
                }
                let view = records::view_of(event, client.auth(), now);
                let (cell, version) = match view {
                    View::Public => (None, None),
                    View::Owner => (Some(&versions[0]), Some(&owner_record)),
                    View::Superuser => (Some(&versions[1]), Some(&superuser_record)),
                };
                let (frame, data) = match (cell, version) {
                    (Some(cell), Some(version)) => {
                        match version.get_or_init(|| event.record_as(view)) {
                            Some(record) => {
                                let (frame, data) = cell.get_or_init(|| render(record));
                                (frame, &data[..])
                            }
                            None => public,
                        }
                    }
                    _ => public,
                };
                if let Ok(true) =
                    delivery.deliver(key, client, frame, group.name, data, OverCap::Disconnect)
                {
                    recipients += 1;
                }
            }
        };
        match group.options {
            // An invalid filter: this subscription receives nothing.
            Some(options) => {
                options.with_filter(schema, &mut deliver_all);
            }
            None => deliver_all(None),
        }
    }
    recipients
}

/// [`Core::realtime_client`], with only the registry borrowed.
fn realtime_client<'r>(
    registry: &'r mut Registry,
    id: &[u8],
    key: usize,
    ip: IpAddr,
) -> Result<&'r mut Client, CoreError> {
    let client = registry.live(id, key)?;
    if client.ip() != ip.to_canonical() {
        return Err(CoreError::ForeignAddress);
    }
    Ok(client)
}

/// [`Core::replay`]'s deliveries to `client`; returns how many were queued.
fn replay_to(
    delivery: &mut Delivery<'_>,
    client: &mut Client,
    key: usize,
    history: &History,
    resumes: &[(String, Cursor)],
) -> u64 {
    let mut entries = Vec::new();
    let mut delivered = 0;
    for (i, (name, since)) in resumes.iter().enumerate() {
        if history.is_ahead(*since) {
            let extra = client.extra_mut();
            extra.seen_through = extra.seen_through.max(since.seq);
            continue;
        }
        let (gap, kept) = history.resume(channel_of(name), *since);
        entries.extend(kept.map(|entry| (entry.seq, i, entry)));
        if let Some(gap) = gap {
            let data = gap.data();
            let frame = Rc::new(Frame::new(name.as_bytes(), &data));
            delivery.stats.history_gaps += 1;
            let queued =
                delivery.deliver(key as u32, client, &frame, name, &data, OverCap::Disconnect);
            delivered += u64::from(matches!(queued, Ok(true)));
        }
    }
    // Several topics resumed at once: one stream, one order.
    entries.sort_by_key(|&(seq, i, _)| (seq, i));
    for (seq, i, entry) in entries {
        if !entry.audience.admits(client.auth()) {
            continue;
        }
        let name = &resumes[i].0;
        let frame = if history.sse_ids() {
            let cursor = Cursor {
                epoch: history.epoch(),
                seq,
            };
            Frame::with_cursor(name.as_bytes(), &entry.data, cursor.to_string().as_bytes())
        } else {
            Frame::new(name.as_bytes(), &entry.data)
        };
        delivery.stats.history_replayed += 1;
        let frame = Rc::new(frame);
        let queued = delivery.deliver(
            key as u32,
            client,
            &frame,
            name,
            &entry.data,
            OverCap::Disconnect,
        );
        delivered += u64::from(matches!(queued, Ok(true)));
    }
    delivered
}

/// Whether a resumed `client` already had recorded message `seq` (from
/// another core, ahead of this one).
#[inline(never)]
fn seen_already(client: &Client, seq: u64) -> bool {
    client.extra.as_ref().is_some_and(|e| seq <= e.seen_through)
}

/// Whether `client` may receive `msg`: its audience, and for a message to one
/// user, the user's collection when the message names one.
#[inline(never)]
fn admits(msg: &Message, client: &Client) -> bool {
    let auth = client.auth();
    msg.audience.admits(auth)
        && match &msg.target {
            Target::User {
                collection_id: Some(c),
                ..
            } => auth.is_some_and(|a| *a.collection_id == **c),
            _ => true,
        }
}

#[cfg(test)]
mod tests;
