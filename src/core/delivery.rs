//! One delivery: a frame for one client, through the message hook if one is
//! set, into the client's queue.
//!
//! Every way a message reaches a client — fan-out, a send to one client, a
//! broadcast — ends here, so the hook, the idle-timer rule for skipped
//! messages and the byte cap apply alike to all of them.
//!
//! The byte cap bounds memory, not bursts: a fan-out queues a whole batch
//! before the flush task writes anything, so a client that reads perfectly
//! well can still find its queue full in the middle of a large batch or a
//! burst of publishes. Before such a client is dropped, what it has queued is
//! written to its socket at once; only a client whose socket takes nothing
//! more (it is not reading) is dropped — and the deliveries of this fan-out
//! it had been counted for are taken back from the recipients (`retracted`).

use super::client::Client;
use super::outbox::{Outbox, OverCap, Refused};
use super::policy::Policy;
use super::stats::Counters;
use super::writer::Writer;
use crate::frame::Frame;
use crate::hooks::Outcome;
use std::rc::Rc;

/// The parts of a core that deliveries change, borrowed for one fan-out.
pub struct Delivery<'a> {
    pub outbox: &'a mut Outbox,
    pub writer: &'a mut Writer,
    pub policy: &'a Policy,
    pub stats: &'a mut Counters,
    pub now: u64,
    /// Deliveries of this fan-out already counted whose client was then
    /// dropped: not recipients after all.
    pub retracted: u64,
}

impl Delivery<'_> {
    /// Queues `frame` (event `name` carrying `data`) for `client`.
    /// `Ok(false)`: not delivered (the stream is ending, the hook skipped it,
    /// or the client was dropped as a slow consumer).
    #[inline]
    pub fn deliver(
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
        if self.policy.has_message_hook() {
            return self.deliver_through_hook(key, client, frame, name, data, over_cap);
        }
        self.queue(key, client, frame, over_cap)
    }

    /// [`Delivery::deliver`] with a message hook: the hook may skip the
    /// message or give this client a frame of its own. Kept out of line so
    /// that the common path (no hook) stays small.
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
        let outcome = self.policy.message(client, name, data);
        if outcome == Outcome::Panicked {
            self.stats.hook_panicked += 1;
        }
        match outcome.event(name, data) {
            None => {
                // As in PocketBase, a skipped message still resets the idle timer.
                client.last_write_ms = self.now;
                self.stats.hook_skipped += 1;
                Ok(false)
            }
            Some(_) if matches!(outcome, Outcome::Deliver | Outcome::Panicked) => {
                self.queue(key, client, frame, over_cap)
            }
            Some((name, data)) => {
                let own = Rc::new(Frame::new(name.as_bytes(), data));
                self.queue(key, client, &own, over_cap)
            }
        }
    }

    #[inline]
    fn queue(
        &mut self,
        key: u32,
        client: &mut Client,
        frame: &Rc<Frame>,
        over_cap: OverCap,
    ) -> Result<bool, Refused> {
        match self
            .outbox
            .enqueue(key, client, frame, self.now, self.stats)
        {
            Ok(()) => Ok(true),
            Err(Refused::Full) => self.make_room(key, client, frame, over_cap),
            Err(refused) => Err(refused),
        }
    }

    /// `client`'s queue is full: write it now and try again; a client whose
    /// socket takes no more is refused the send or dropped (`over_cap`).
    #[cold]
    #[inline(never)]
    fn make_room(
        &mut self,
        key: u32,
        client: &mut Client,
        frame: &Rc<Frame>,
        over_cap: OverCap,
    ) -> Result<bool, Refused> {
        if !client.blocked {
            self.writer
                .write_now(key, client, self.outbox, self.now, self.stats);
            if self
                .outbox
                .enqueue(key, client, frame, self.now, self.stats)
                .is_ok()
            {
                return Ok(true);
            }
        }
        if over_cap == OverCap::Disconnect {
            let lost = self.outbox.drop_slow_consumer(
                client,
                self.stats,
                1,
                "its queue went over --max-queue-bytes and its socket took no more",
            );
            self.retracted += lost as u64;
        }
        Err(Refused::Full)
    }
}
