//! The counters of one core, as `GET /api/stats` and `Broker::stats` show
//! them, and their sum over cores.
//!
//! Every counter is declared once, in [`counters!`]: the struct, its doc and
//! the sum come from that one list, so a total can never leave a field out.

use super::latency::Latency;
use serde::Serialize;
use std::ops::{AddAssign, Deref, DerefMut};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Counters of one core, or their sum over cores.
        #[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl AddAssign<&Counters> for Counters {
            fn add_assign(&mut self, other: &Counters) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters! {
    /// Open TCP connections.
    connections,
    /// Accepts that failed (out of file descriptors, most likely).
    accept_errors,
    /// Registered realtime clients (open streams).
    clients,
    /// (client, subscription) pairs.
    subscriptions,
    /// Distinct subscription strings (summed over cores, a string held on
    /// two cores counts twice).
    topics,
    /// Messages fanned out.
    messages,
    /// Frames queued for a client.
    deliveries,
    /// Frames fully written to a socket.
    frames_written,
    /// Bytes of queued frames written to sockets.
    bytes_written,
    /// Write operations submitted (deliveries / writes = coalescing factor).
    writes,
    /// Clients disconnected as slow consumers: over their queue cap, or their
    /// socket took nothing for a write timeout.
    dropped_clients,
    /// Frames discarded with those clients.
    dropped_frames,
    /// Bytes queued and not yet written.
    queued_bytes,
    /// Deliveries the message hook skipped.
    hook_skipped,
    /// Requests a connect or subscribe hook refused.
    hook_rejected,
    /// Hooks that panicked (any hook; caught and logged).
    hook_panicked,
    /// Streams that ended because the peer closed or a write failed.
    ended_client_closed,
    /// Streams ended by the idle timeout.
    ended_idle_timeout,
    /// Streams ended by the maximum lifetime.
    ended_lifetime,
    /// Streams ended by a shutdown.
    ended_shutdown,
    /// Streams ended as slow consumers (also counted in `dropped_clients`).
    ended_slow_consumer,
    /// Streams ended by server code (`Broker::unregister`, `DELETE /api/clients/{id}`).
    ended_unregistered,
    /// Subscription requests whose token was verified (a user).
    auth_verified,
    /// Subscription requests treated as a guest (no token, or one not valid).
    auth_guest,
    /// Subscription requests refused because too many token checks were
    /// waiting (429).
    auth_busy,
    /// Subscription requests refused because PocketBase could not check the
    /// token (503).
    auth_unavailable,
    /// Deliveries refused because the event alone is larger than
    /// `--max-queue-bytes` (the broker refuses such messages up front; a
    /// message hook's rewrite can still make one).
    oversized_frames,
    /// Messages kept in the history (`--history`; every core keeps a copy,
    /// so the sum counts each message once per core).
    history_events,
    /// Bytes the history counts against `--history-max-bytes` (each core
    /// holds its share).
    history_bytes,
    /// Messages evicted from the history (a topic's limit or the byte cap).
    history_evicted,
    /// Events replayed from the history to a resuming client.
    history_replayed,
    /// `history_gap` events sent: a cursor too old or from another epoch.
    history_gaps,
    /// Heartbeat comments queued (`--heartbeat`).
    heartbeats,
}

/// How a subscription request's token was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// A user.
    Verified,
    /// No token, or one that is not valid.
    Guest,
    /// Refused: too many token checks waiting.
    Busy,
    /// Refused: PocketBase could not check it.
    Unavailable,
}

/// One core's counters, with its index.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CoreStats {
    pub core: usize,
    #[serde(flatten)]
    pub counters: Counters,
    /// Publish → last write on this core (`/metrics` only).
    #[serde(skip)]
    pub latency: Latency,
}

impl CoreStats {
    /// The sum of every core's counters.
    pub fn total<'a>(cores: impl IntoIterator<Item = &'a CoreStats>) -> Counters {
        let mut total = Counters::default();
        for core in cores {
            total += &core.counters;
        }
        total
    }
}

impl Deref for CoreStats {
    type Target = Counters;

    fn deref(&self) -> &Counters {
        &self.counters
    }
}

impl DerefMut for CoreStats {
    fn deref_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_sums_every_counter() {
        let one = CoreStats {
            core: 0,
            counters: Counters {
                connections: 1,
                oversized_frames: 2,
                ..Counters::default()
            },
            ..CoreStats::default()
        };
        let two = CoreStats {
            core: 1,
            counters: Counters {
                connections: 3,
                topics: 4,
                ..Counters::default()
            },
            ..CoreStats::default()
        };
        let total = CoreStats::total([&one, &two]);
        assert_eq!(
            (total.connections, total.topics, total.oversized_frames),
            (4, 4, 2)
        );
        let json = serde_json::to_value(&two).unwrap();
        assert_eq!(json["core"], 1);
        assert_eq!(json["topics"], 4);
    }
}
