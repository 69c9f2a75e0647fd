//! The counters of one core, as `GET /api/stats` and `Broker::stats` show
//! them, and their sum over cores.
//!
//! Every counter is declared once, in [`counters!`]: the struct, its doc and
//! the sum come from that one list, so a total can never leave a field out.

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
    /// Deliveries refused because the event alone is larger than
    /// `--max-queue-bytes` (the broker refuses such messages up front; a
    /// message hook's rewrite can still make one).
    oversized_frames,
}

/// One core's counters, with its index.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CoreStats {
    pub core: usize,
    #[serde(flatten)]
    pub counters: Counters,
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
        };
        let two = CoreStats {
            core: 1,
            counters: Counters {
                connections: 3,
                topics: 4,
                ..Counters::default()
            },
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
