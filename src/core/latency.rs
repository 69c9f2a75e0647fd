//! Publish → last write: how long a fan-out takes to leave this core.
//!
//! A fan-out (one batch of messages entering this core) is stamped once when
//! it starts. Each copy it queues adds one to its count, and each copy that
//! leaves a queue — written to its socket, or discarded with a dropped client
//! — takes one off; when the last one leaves, the time since the stamp is
//! observed, once per fan-out. Per recipient this is an add when queueing and
//! a subtract when written: no clock read, no allocation (the list of fan-outs
//! in flight is a ring that keeps its capacity). A fan-out whose copies all
//! reach the socket during the fan-out itself is observed when it ends.
//!
//! Copies of one fan-out are written in any order across clients, so each
//! fan-out in flight has a slot of its own, found from its batch number: a
//! ring of [`MAX_TRACKED`] slots allocated once per core (≈ 96 KB). A client
//! that reads nothing holds its copy until it is dropped; should its fan-out
//! still be in flight when the batch number comes round to its slot again,
//! it is forgotten, unobserved, and counted (`untracked`).

use std::time::{Duration, Instant};

/// Upper bounds of the histogram's buckets, in seconds (the last, `+Inf`,
/// is implicit): 50 µs to 10 s, 1-2.5-5 steps.
pub const BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Fan-outs in flight tracked at most (a power of two; 24 B each).
pub const MAX_TRACKED: usize = 4096;

/// A fixed-bucket histogram of durations: what one core observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latency {
    /// Observations per bucket (not cumulative); the last is over 10 s.
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum_ns: u64,
    pub count: u64,
    /// Fan-outs forgotten because too many were in flight.
    pub untracked: u64,
}

impl Latency {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum_ns = self
            .sum_ns
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.count += 1;
    }

    /// The sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }
}

/// One fan-out in flight: its batch, its stamp and its copies still queued.
#[derive(Debug, Clone, Copy)]
struct Slot {
    batch: u32,
    left: u32,
    started: Instant,
}

/// The fan-outs of one core whose copies are not all written yet.
#[derive(Debug)]
pub struct FanoutClock {
    /// Fan-out `b` lives in slot `b % MAX_TRACKED` (a power of two): no search
    /// and no bookkeeping of order when a copy leaves, whichever it is.
    slots: Box<[Slot]>,
    /// The fan-out under way, if any: its batch, stamp, copies still queued
    /// and whether one left during the fan-out.
    open: Option<(u32, Instant)>,
    open_left: u32,
    open_wrote: bool,
    histogram: Latency,
}

const MASK: usize = MAX_TRACKED - 1;
const _: () = assert!(MAX_TRACKED.is_power_of_two());

impl Default for FanoutClock {
    fn default() -> Self {
        let idle = Slot {
            batch: 0,
            left: 0,
            started: Instant::now(),
        };
        FanoutClock {
            slots: vec![idle; MAX_TRACKED].into_boxed_slice(),
            open: None,
            open_left: 0,
            open_wrote: false,
            histogram: Latency::default(),
        }
    }
}

impl FanoutClock {
    /// Fan-out `batch` starts now.
    pub fn begin(&mut self, batch: u32) {
        self.open = Some((batch, Instant::now()));
        self.open_left = 0;
        self.open_wrote = false;
    }

    /// One copy of the fan-out under way was queued.
    #[inline]
    pub fn queued(&mut self) {
        self.open_left += 1;
    }

    /// The fan-out under way has queued all it will.
    pub fn end(&mut self) {
        let Some((batch, started)) = self.open.take() else {
            return;
        };
        let left = std::mem::take(&mut self.open_left);
        if left == 0 {
            if self.open_wrote {
                self.histogram.observe(started.elapsed());
            }
            return;
        }
        let slot = &mut self.slots[batch as usize & MASK];
        if slot.left > 0 {
            // A fan-out MAX_TRACKED batches old still has a copy queued.
            self.histogram.untracked += 1;
        }
        *slot = Slot {
            batch,
            left,
            started,
        };
    }

    /// A copy queued by fan-out `batch` left its queue (written or dropped).
    #[inline]
    pub fn left(&mut self, batch: u32) {
        if matches!(self.open, Some((b, _)) if b == batch) {
            self.open_left -= 1;
            self.open_wrote = true;
            return;
        }
        let slot = &mut self.slots[batch as usize & MASK];
        // Another batch in the slot: this one was forgotten.
        if slot.batch != batch || slot.left == 0 {
            return;
        }
        slot.left -= 1;
        if slot.left == 0 {
            let elapsed = slot.started.elapsed();
            self.histogram.observe(elapsed);
        }
    }

    pub fn histogram(&self) -> &Latency {
        &self.histogram
    }

    /// Fan-outs with copies still queued.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.left > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_once_when_the_last_copy_leaves() {
        let mut c = FanoutClock::default();
        c.begin(1);
        c.queued();
        c.queued();
        c.end();
        c.begin(2);
        c.queued();
        c.end();
        assert_eq!(c.in_flight(), 2);
        c.left(1);
        c.left(2);
        assert_eq!(c.histogram().count, 1);
        c.left(1);
        assert_eq!(c.histogram().count, 2);
        assert_eq!(c.in_flight(), 0);
        // Stray or repeated reports change nothing.
        c.left(1);
        c.left(7);
        assert_eq!(c.histogram().count, 2);
    }

    #[test]
    fn empty_fanouts_are_not_observed_but_written_during_one_are() {
        let mut c = FanoutClock::default();
        c.begin(5);
        c.end();
        assert_eq!(c.histogram().count, 0);
        c.begin(6);
        c.queued();
        c.left(6);
        c.end();
        assert_eq!(c.histogram().count, 1);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn batch_numbers_wrap() {
        let mut c = FanoutClock::default();
        for batch in [u32::MAX, 0] {
            c.begin(batch);
            c.queued();
            c.end();
        }
        c.left(0);
        c.left(u32::MAX);
        assert_eq!(c.histogram().count, 2);
    }

    #[test]
    fn a_stuck_fanout_is_forgotten_past_the_bound() {
        let mut c = FanoutClock::default();
        for batch in 0..(MAX_TRACKED as u32 + 10) {
            c.begin(batch);
            c.queued();
            c.end();
            if batch > 0 {
                c.left(batch); // all written but the first
            }
        }
        assert_eq!(c.histogram().untracked, 1);
        assert_eq!(c.in_flight(), 0);
        c.left(0);
        assert_eq!(c.histogram().count, MAX_TRACKED as u64 + 9);
    }

    #[test]
    fn buckets() {
        let mut h = Latency::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[6], 1); // ≤ 5 ms
        assert_eq!(h.counts[BUCKETS.len()], 1);
        assert_eq!(h.count, 3);
        assert!((h.sum_seconds() - 60.00301).abs() < 1e-9);
    }
}
