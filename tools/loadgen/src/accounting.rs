//! Delivery accounting per (client, topic).
//!
//! The publisher numbers the messages of every topic 0, 1, 2, … (`seq` in the payload). Each subscription of
//! each client gets a [`Tracker`] that sees the seqs in arrival order and classifies them on the fly; the
//! windows that decide which seqs were *required*, *allowed* or *unexpected* are seq numbers read from the
//! publisher's per-topic counters at the right moments, so no per-message log is kept:
//!
//! | moment (per client, topic)          | value read                        | meaning |
//! |-------------------------------------|-----------------------------------|---------|
//! | before the subscription POST is sent | `acked` (all seqs below it acked) | `unexp_lo`: those were fully published before we subscribed; receiving one is *unexpected* |
//! | after its 204 arrived                | `next` (first seq not yet sent)   | `req_lo`: every seq from here on was sent after the subscription was in force: *required* |
//! | when the client decides to leave (or the run ends) | `acked`            | `req_hi`: required seqs stop here (exclusive) |
//! | when the connection is closed (or the run ends)    | `next`             | `allow_hi`: a seq at or above it cannot legitimately arrive |
//!
//! Seqs in `[unexp_lo, req_lo)` and `[req_hi, allow_hi)` raced with the (un)subscription: they may or may
//! not arrive and neither outcome is an error. Without churn `unexp_lo = req_lo = 0` and every published
//! message is required.
//!
//! Classification of an arriving seq `s` (the stream should deliver in publish order):
//! * first time seen and the largest so far → delivered (a jump leaves a *gap* of possibly lost seqs);
//! * first time seen but below the largest seq `m` received so far (it fills a gap) → delivered, and
//!   - **reordered** (an error) if `s` had been acknowledged before `m` was even sent — i.e. `s` is below
//!     the topic's acked prefix at the time `m` was sent (`floor(m)`, recorded by the publisher);
//!   - *late* (allowed) otherwise: with several publishes in flight, requests that overlap in time may be
//!     fanned out in either order (PocketBase's notify hook handles them on concurrent goroutines). With
//!     `--in-flight 1` nothing overlaps and every late arrival is a reorder;
//! * seen before → duplicated;
//! * below `unexp_lo` → unexpected.
//!
//! At the end `lost = |required \ received|`. The received set is kept as one range minus a list of gaps,
//! which is empty while the server behaves, so the per-subscription state is a few words.

use serde::{Deserialize, Serialize};

const NONE: u64 = u64::MAX;

/// What [`Tracker::on_seq`] made of one arriving seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First delivery, in order.
    InOrder,
    /// First delivery after a higher seq that was published concurrently with it (allowed).
    Late,
    /// First delivery after a higher seq that was published after this one was acknowledged (error).
    Reordered,
    Duplicate,
    /// Published and acknowledged before this subscription was requested.
    Unexpected,
}

/// Per-(client, topic) state; see the module docs.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// Index into the run's topic table.
    pub topic: u32,
    unexp_lo: u64,
    /// `NONE` until the subscription is confirmed (a failed subscription requires nothing).
    req_lo: u64,
    /// Lowest seq received (`NONE`: nothing yet).
    first: u64,
    /// One past the highest seq received.
    next: u64,
    /// Half-open ranges inside `[first, next)` not received (yet), ascending and disjoint.
    gaps: Vec<(u64, u64)>,
    pub delivered: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub late: u64,
    pub unexpected: u64,
}

/// Final verdict of one tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    pub required: u64,
    pub lost: u64,
    /// Seqs received that were at or above `allow_hi`.
    pub unexpected: u64,
}

impl Tracker {
    /// Created just before the subscription POST is sent. `unexp_lo` = the topic's acked prefix then.
    pub fn new(topic: u32, unexp_lo: u64) -> Self {
        Tracker {
            topic,
            unexp_lo,
            req_lo: NONE,
            first: NONE,
            next: 0,
            gaps: Vec::new(),
            delivered: 0,
            duplicated: 0,
            reordered: 0,
            late: 0,
            unexpected: 0,
        }
    }

    /// The subscription POST answered 2xx; `req_lo` = the topic's next seq to be sent at that moment.
    pub fn confirm(&mut self, req_lo: u64) {
        self.req_lo = req_lo;
    }

    /// Accounts one arriving seq. `floor(m)` must return the topic's acked prefix at the moment seq `m`
    /// was sent; it is only called for arrivals below the highest seq seen.
    #[inline]
    pub fn on_seq(&mut self, s: u64, floor: impl FnOnce(u64) -> u64) -> Arrival {
        if s < self.unexp_lo || s == NONE {
            self.unexpected += 1;
            return Arrival::Unexpected;
        }
        if self.first == NONE {
            self.first = s;
            self.next = s + 1;
            self.delivered += 1;
            return Arrival::InOrder;
        }
        if s == self.next {
            self.next += 1;
            self.delivered += 1;
            return Arrival::InOrder;
        }
        if s > self.next {
            self.gaps.push((self.next, s));
            self.next = s + 1;
            self.delivered += 1;
            return Arrival::InOrder;
        }
        if s < self.first {
            if s + 1 < self.first {
                self.gaps.insert(0, (s + 1, self.first));
            }
            self.first = s;
            return self.late_arrival(s, floor);
        }
        // first <= s < next: either fills a gap or was seen already.
        let i = self.gaps.partition_point(|&(_, hi)| hi <= s);
        match self.gaps.get(i).copied() {
            Some((lo, hi)) if lo <= s => {
                match (lo == s, s + 1 == hi) {
                    (true, true) => {
                        self.gaps.remove(i);
                    }
                    (true, false) => self.gaps[i].0 = s + 1,
                    (false, true) => self.gaps[i].1 = s,
                    (false, false) => {
                        self.gaps[i].1 = s;
                        self.gaps.insert(i + 1, (s + 1, hi));
                    }
                }
                self.late_arrival(s, floor)
            }
            _ => {
                self.duplicated += 1;
                Arrival::Duplicate
            }
        }
    }

    fn late_arrival(&mut self, s: u64, floor: impl FnOnce(u64) -> u64) -> Arrival {
        self.delivered += 1;
        if s < floor(self.next - 1) {
            self.reordered += 1;
            Arrival::Reordered
        } else {
            self.late += 1;
            Arrival::Late
        }
    }

    /// Required seqs below `target` not received yet: what is still to come if nothing is lost.
    pub fn remaining(&self, target: u64) -> u64 {
        if self.req_lo == NONE || target <= self.req_lo {
            return 0;
        }
        target - self.req_lo - self.received_in(self.req_lo, target)
    }

    /// True when every seq below `req_hi` that this subscription requires has arrived (used to drain a
    /// leaving client).
    pub fn caught_up(&self, req_hi: u64) -> bool {
        self.remaining(req_hi) == 0
    }

    /// Number of received seqs in `[lo, hi)`.
    fn received_in(&self, lo: u64, hi: u64) -> u64 {
        if self.first == NONE {
            return 0;
        }
        let lo = lo.max(self.first);
        let hi = hi.min(self.next);
        if lo >= hi {
            return 0;
        }
        let missing: u64 = self
            .gaps
            .iter()
            .map(|&(a, b)| b.min(hi).saturating_sub(a.max(lo)))
            .sum();
        hi - lo - missing
    }

    /// Final accounting with the window's upper ends (see the module docs).
    pub fn finish(&self, req_hi: u64, allow_hi: u64) -> Outcome {
        let required = if self.req_lo == NONE {
            0
        } else {
            req_hi.saturating_sub(self.req_lo)
        };
        let got = if required == 0 {
            0
        } else {
            self.received_in(self.req_lo, req_hi)
        };
        Outcome {
            required,
            lost: required - got,
            unexpected: self.received_in(allow_hi, NONE),
        }
    }
}

/// Aggregated accounting over all clients (the `accounting` object of the JSON report).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    /// Every SSE event received after PB_CONNECT, good or bad.
    pub events: u64,
    /// First-time deliveries of a seq to a (client, topic) (includes reordered ones).
    pub delivered: u64,
    /// Sum over (client, topic) of the messages that had to arrive.
    pub required: u64,
    /// Required but never received.
    pub lost: u64,
    pub duplicated: u64,
    /// Delivered after a higher seq of the same (client, topic) that was published after this one had
    /// been acknowledged (an ordering violation).
    pub reordered: u64,
    /// Delivered after a higher seq that was published concurrently (both in flight): allowed, not an
    /// error; zero with `--in-flight 1`.
    pub late: u64,
    /// Events that should not have arrived: an event name the client is not subscribed to, a seq outside
    /// the subscription window, a second PB_CONNECT. Sum of the three fields below.
    pub unexpected: u64,
    pub unexpected_name: u64,
    pub unexpected_seq: u64,
    pub unexpected_connect: u64,
    /// Events whose data has no parsable `"seq"` number, or several `data:` lines.
    pub bad_payload: u64,
    /// Events whose `id:` is missing or is not the client's own id.
    pub wrong_id: u64,
    /// Events without a `"ts"` (no latency sample); not an error.
    pub no_timestamp: u64,
    /// Streams that broke (read error, EOF, malformed chunked/SSE framing, or the server ended the stream)
    /// while the client meant to stay connected.
    pub stream_errors: u64,
    /// Clients whose connect / PB_CONNECT / subscription failed.
    pub connect_failures: u64,
    /// Clients with at least one of the errors above.
    pub clients_with_errors: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.events += o.events;
        self.delivered += o.delivered;
        self.required += o.required;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.late += o.late;
        self.unexpected += o.unexpected;
        self.unexpected_name += o.unexpected_name;
        self.unexpected_seq += o.unexpected_seq;
        self.unexpected_connect += o.unexpected_connect;
        self.bad_payload += o.bad_payload;
        self.wrong_id += o.wrong_id;
        self.no_timestamp += o.no_timestamp;
        self.stream_errors += o.stream_errors;
        self.connect_failures += o.connect_failures;
        self.clients_with_errors += o.clients_with_errors;
    }

    /// Count of accounting errors that `--check` turns into a failing exit status.
    pub fn errors(&self) -> u64 {
        self.lost
            + self.duplicated
            + self.reordered
            + self.unexpected
            + self.bad_payload
            + self.wrong_id
            + self.stream_errors
            + self.connect_failures
    }

    /// Folds one finished tracker in.
    pub fn add_tracker(&mut self, t: &Tracker, o: Outcome) {
        self.delivered += t.delivered;
        self.required += o.required;
        self.lost += o.lost;
        self.duplicated += t.duplicated;
        self.reordered += t.reordered;
        self.late += t.late;
        self.unexpected_seq += t.unexpected + o.unexpected;
        self.unexpected += t.unexpected + o.unexpected;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Tracker {
        let mut t = Tracker::new(0, 0);
        t.confirm(0);
        t
    }

    /// Sequential publishing: every seq was acknowledged before the next was sent.
    fn seq_floor(m: u64) -> u64 {
        m
    }

    fn feed(t: &mut Tracker, seqs: &[u64]) -> Vec<Arrival> {
        seqs.iter().map(|&s| t.on_seq(s, seq_floor)).collect()
    }

    #[test]
    fn clean_stream() {
        let mut t = tracker();
        assert!(
            feed(&mut t, &[0, 1, 2, 3])
                .iter()
                .all(|a| *a == Arrival::InOrder)
        );
        assert_eq!(t.remaining(4), 0);
        assert_eq!(t.remaining(6), 2);
        let o = t.finish(4, NONE);
        assert_eq!(
            o,
            Outcome {
                required: 4,
                lost: 0,
                unexpected: 0
            }
        );
        assert_eq!((t.delivered, t.duplicated, t.reordered), (4, 0, 0));
    }

    #[test]
    fn lost_in_middle_head_and_tail() {
        let mut t = tracker();
        feed(&mut t, &[1, 2, 5, 6]);
        // 0 (head), 3, 4 (gap) and 7, 8, 9 (tail) are lost
        assert_eq!(t.finish(10, NONE).lost, 6);
        assert_eq!(t.delivered, 4);
        // nothing received at all
        let t = tracker();
        assert_eq!(t.finish(3, NONE).lost, 3);
    }

    #[test]
    fn duplicates() {
        let mut t = tracker();
        let a = feed(&mut t, &[0, 1, 1, 2, 0, 2]);
        assert_eq!(
            a,
            vec![
                Arrival::InOrder,
                Arrival::InOrder,
                Arrival::Duplicate,
                Arrival::InOrder,
                Arrival::Duplicate,
                Arrival::Duplicate
            ]
        );
        assert_eq!(t.duplicated, 3);
        assert_eq!(t.finish(3, NONE).lost, 0);
    }

    #[test]
    fn reordered_fill_gaps_and_then_duplicate() {
        let mut t = tracker();
        let a = feed(&mut t, &[0, 3, 1, 5, 2, 4, 2]);
        assert_eq!(
            a,
            vec![
                Arrival::InOrder,
                Arrival::InOrder,
                Arrival::Reordered,
                Arrival::InOrder,
                Arrival::Reordered,
                Arrival::Reordered,
                Arrival::Duplicate
            ]
        );
        assert_eq!(t.reordered, 3);
        assert_eq!(t.duplicated, 1);
        assert_eq!(t.finish(6, NONE).lost, 0);
        // a gap split in the middle
        let mut t = tracker();
        feed(&mut t, &[0, 9, 4]);
        assert_eq!(t.gaps, vec![(1, 4), (5, 9)]);
        assert_eq!(t.finish(10, NONE).lost, 7);
    }

    #[test]
    fn reordered_below_first() {
        let mut t = tracker();
        assert_eq!(
            feed(&mut t, &[3, 0]),
            vec![Arrival::InOrder, Arrival::Reordered]
        );
        assert_eq!(t.gaps, vec![(1, 3)]);
        assert_eq!(t.on_seq(2, seq_floor), Arrival::Reordered);
        assert_eq!(t.on_seq(1, seq_floor), Arrival::Reordered);
        assert_eq!(t.finish(4, NONE).lost, 0);
        assert_eq!(t.reordered, 3);
    }

    #[test]
    fn concurrent_publishes_may_arrive_late() {
        // Seqs 0..4 were in flight together (floor 0 for all), 4 was sent after 0..3 were acked.
        let floor = |m: u64| if m < 4 { 0 } else { 4 };
        let mut t = tracker();
        let a: Vec<_> = [2, 0, 3, 1, 4]
            .iter()
            .map(|&s| t.on_seq(s, floor))
            .collect();
        assert_eq!(
            a,
            vec![
                Arrival::InOrder,
                Arrival::Late,
                Arrival::InOrder,
                Arrival::Late,
                Arrival::InOrder
            ]
        );
        assert_eq!((t.late, t.reordered), (2, 0));
        // ... but 3 arriving after 4 is a reorder: 3 was acknowledged before 4 was sent.
        let mut t = tracker();
        let a: Vec<_> = [0, 1, 2, 4, 3]
            .iter()
            .map(|&s| t.on_seq(s, floor))
            .collect();
        assert_eq!(a[4], Arrival::Reordered);
        assert_eq!(t.finish(5, NONE).lost, 0);
    }

    #[test]
    fn remaining_counts_unfilled_gaps() {
        let mut t = tracker();
        feed(&mut t, &[0, 3]);
        assert_eq!(t.remaining(4), 2);
        assert_eq!(t.remaining(6), 4);
        assert!(!t.caught_up(4));
        assert!(t.caught_up(1));
    }

    #[test]
    fn churn_windows() {
        // Subscribed while seqs 0..10 were acked and 0..12 sent: 10 and 11 raced with the subscription.
        let mut t = Tracker::new(0, 10);
        assert_eq!(t.on_seq(9, seq_floor), Arrival::Unexpected);
        t.confirm(12);
        assert_eq!(t.on_seq(11, seq_floor), Arrival::InOrder); // optional, fine
        feed(&mut t, &[12, 13, 14]);
        // Left when 14 was acked (req_hi 15); 15 raced with the leave; closed when 16 had been sent.
        assert!(t.caught_up(15));
        assert_eq!(t.on_seq(15, seq_floor), Arrival::InOrder);
        let o = t.finish(15, 16);
        assert_eq!(o.required, 3);
        assert_eq!(o.lost, 0);
        assert_eq!(o.unexpected, 0);
        assert_eq!(t.unexpected, 1);
        // A seq beyond what was ever sent is unexpected at the end.
        t.on_seq(20, seq_floor);
        assert_eq!(t.finish(15, 16).unexpected, 1);
        // Optional seqs that did not arrive are not lost.
        let mut t = Tracker::new(0, 10);
        t.confirm(12);
        feed(&mut t, &[12, 13]);
        assert_eq!(t.finish(14, 16).lost, 0);
        assert_eq!(t.finish(15, 16).lost, 1);
    }

    #[test]
    fn unconfirmed_subscription_requires_nothing() {
        let t = Tracker::new(0, 0);
        assert_eq!(t.finish(10, NONE).required, 0);
        assert_eq!(t.remaining(10), 0);
    }

    #[test]
    fn totals_errors() {
        let mut tot = Totals::default();
        let mut t = tracker();
        feed(&mut t, &[0, 0, 2, 1]);
        tot.add_tracker(&t, t.finish(4, NONE));
        assert_eq!(tot.lost, 1);
        assert_eq!(tot.duplicated, 1);
        assert_eq!(tot.reordered, 1);
        assert_eq!(tot.delivered, 3);
        assert_eq!(tot.errors(), 3);
        tot.wrong_id += 1;
        assert_eq!(tot.errors(), 4);
    }
}
