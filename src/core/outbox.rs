//! What waits to be written: every client's queue of frames, the byte cap on
//! it, and the flush line of clients with something queued.
//!
//! Fan-out only links shared frames into queues (no allocation or copy per
//! recipient once the node slab has grown to the burst size) and puts the
//! client in line; the writer (`core::writer`) takes clients from the front of
//! the line. A client over its cap is a slow consumer: it is ended (its task
//! closes the socket) and what it loses is counted. Nothing here touches a
//! socket.

use super::client::Client;
use super::latency::{FanoutClock, Latency};
use super::queue::Deliveries;
use super::stats::Counters;
use crate::frame::{BodyMode, Frame};
use crate::hooks::EndReason;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// What to do with a client whose queue would go over its byte cap even
/// after what it had queued was written (`core::delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCap {
    /// Fan-out: disconnect it as a slow consumer (counted), so that one slow
    /// reader cannot hold memory or publishers hostage.
    Disconnect,
    /// A send to this one client: refuse the send, tell the sender.
    Refuse,
}

/// Why a delivery was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A send to one client whose queue is full.
    Full,
    /// The frame alone is over `--max-queue-bytes`: no client can take it.
    TooLarge,
}

/// The stamp of what no fan-out queued (heartbeats): never a batch's, so
/// the clock ignores it when it leaves.
const UNTIMED: u32 = u32::MAX;

#[derive(Debug)]
pub struct Outbox {
    deliveries: Deliveries,
    /// Clients with frames to write, in the order they got them.
    line: VecDeque<u32>,
    /// The flush task, parked while the line is empty.
    flusher: Option<Waker>,
    /// At most `u32::MAX`: a client's queued bytes are counted in a u32.
    max_queue: usize,
    /// The current fan-out, stamped on what it queues.
    batch: u32,
    /// Publish → last write of each fan-out.
    clock: FanoutClock,
}

impl Outbox {
    pub fn new(max_queue: usize) -> Outbox {
        Outbox {
            deliveries: Deliveries::default(),
            line: VecDeque::new(),
            flusher: None,
            max_queue: max_queue.min(u32::MAX as usize),
            batch: 0,
            clock: FanoutClock::default(),
        }
    }

    /// Starts a fan-out: what it queues can be told apart from what earlier
    /// ones did, should the client be dropped before this one is answered.
    pub fn begin_batch(&mut self) {
        self.batch = self.batch.wrapping_add(1);
        if self.batch == UNTIMED {
            self.batch = 0;
        }
        self.clock.begin(self.batch);
    }

    /// Ends the fan-out [`Outbox::begin_batch`] started: its clock runs until
    /// its last copy is written.
    pub fn end_batch(&mut self) {
        self.clock.end();
    }

    /// Publish → last write, as observed on this core.
    pub fn latency(&self) -> &Latency {
        self.clock.histogram()
    }

    /// Links `frame` into `client`'s queue and puts it in the flush line, or
    /// refuses it when it would take the queue over its byte cap (nothing
    /// changes then: the caller decides what becomes of the client).
    #[inline]
    pub fn enqueue(
        &mut self,
        key: u32,
        client: &mut Client,
        frame: &Rc<Frame>,
        now: u64,
        stats: &mut Counters,
    ) -> Result<(), Refused> {
        self.link(key, client, frame, now, stats, self.batch)
    }

    /// [`Outbox::enqueue`] outside any fan-out, left out of the publish →
    /// last write clock: a heartbeat is not a message.
    pub fn enqueue_untimed(
        &mut self,
        key: u32,
        client: &mut Client,
        frame: &Rc<Frame>,
        now: u64,
        stats: &mut Counters,
    ) -> Result<(), Refused> {
        self.link(key, client, frame, now, stats, UNTIMED)
    }

    #[inline]
    fn link(
        &mut self,
        key: u32,
        client: &mut Client,
        frame: &Rc<Frame>,
        now: u64,
        stats: &mut Counters,
        batch: u32,
    ) -> Result<(), Refused> {
        if client.mode == BodyMode::Discard {
            // HEAD streams write no body, but a message still counts as delivered.
            client.last_write_ms = now;
            return Ok(());
        }
        let len = frame.wire_len(client.mode);
        if client.queued_bytes as usize + len > self.max_queue {
            return Err(self.too_much(len, stats));
        }
        self.deliveries
            .push(&mut client.queue, frame.clone(), batch);
        if batch != UNTIMED {
            self.clock.queued();
        }
        // Fits: at most max_queue, which fits u32.
        client.queued_bytes += len as u32;
        stats.queued_bytes += len as u64;
        if !client.dirty && !client.blocked {
            client.dirty = true;
            self.line.push_back(key);
        }
        Ok(())
    }

    /// Why a frame of `len` bytes does not fit: a full queue, or a frame no
    /// queue could ever hold (that is not the client's fault).
    #[cold]
    fn too_much(&self, len: usize, stats: &mut Counters) -> Refused {
        if len > self.max_queue {
            stats.oversized_frames += 1;
            return Refused::TooLarge;
        }
        Refused::Full
    }

    /// Disconnects a client that does not read fast enough, counting what it
    /// loses (`extra` frames that were not even queued). Returns how many of
    /// the frames it lost the current fan-out had queued.
    pub fn drop_slow_consumer(
        &mut self,
        client: &mut Client,
        stats: &mut Counters,
        extra: usize,
        why: &str,
    ) -> usize {
        let (queued, of_batch) = self.clear(client, stats);
        let dropped = queued + extra;
        stats.dropped_clients += 1;
        stats.dropped_frames += dropped as u64;
        tracing::warn!(
            client = client.id_str(),
            dropped_frames = dropped,
            "disconnecting a slow consumer: {why}"
        );
        client.end(EndReason::SlowConsumer);
        of_batch
    }

    /// Drops everything `client` has queued; returns how many frames, and
    /// how many of them the current fan-out queued.
    pub fn clear(&mut self, client: &mut Client, stats: &mut Counters) -> (usize, usize) {
        stats.queued_bytes -= client.queued_bytes as u64;
        client.queued_bytes = 0;
        client.sent = 0;
        let clock = &mut self.clock;
        self.deliveries
            .clear(&mut client.queue, self.batch, |of| clock.left(of))
    }

    /// Records that `written` more bytes of `client`'s queue reached its
    /// socket: whole frames leave the queue, a partial one is remembered.
    pub fn complete_write(
        &mut self,
        client: &mut Client,
        written: usize,
        now: u64,
        stats: &mut Counters,
    ) {
        let mut n = written + client.sent as usize;
        client.sent = 0;
        stats.bytes_written += written as u64;
        while let Some(frame) = self.deliveries.front(&client.queue) {
            let len = frame.wire_len(client.mode);
            if n < len {
                // Fits: less than one queued frame.
                client.sent = n as u32;
                break;
            }
            n -= len;
            if let Some((_, batch)) = self.deliveries.pop(&mut client.queue) {
                self.clock.left(batch);
            }
            client.queued_bytes -= len as u32;
            stats.queued_bytes -= len as u64;
            stats.frames_written += 1;
            client.last_write_ms = now;
        }
    }

    /// `client`'s queued frames, oldest first.
    pub fn frames<'a>(&'a self, client: &Client) -> impl Iterator<Item = &'a Rc<Frame>> + 'a {
        self.deliveries.iter(&client.queue)
    }

    /// The next client in the flush line.
    pub fn next_in_line(&mut self) -> Option<u32> {
        self.line.pop_front()
    }

    /// Puts `key` back at the end of the line (it has more than one write's worth).
    pub fn back_in_line(&mut self, key: u32, client: &mut Client) {
        client.dirty = true;
        self.line.push_back(key);
    }

    pub fn has_line(&self) -> bool {
        !self.line.is_empty()
    }

    /// Called by the flush task: is any client waiting to be written to?
    pub fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.line.is_empty() {
            self.flusher = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Wakes the flush task if a fan-out put clients in line.
    pub fn wake_flusher(&mut self) {
        if !self.line.is_empty() {
            if let Some(w) = self.flusher.take() {
                w.wake();
            }
        }
    }

    /// Returns the memory of a past burst once nothing is queued.
    pub fn release_idle_memory(&mut self) {
        self.deliveries.release_idle_memory();
        if self.line.is_empty() && self.line.capacity() > 4096 {
            self.line = VecDeque::new();
        }
    }
}
