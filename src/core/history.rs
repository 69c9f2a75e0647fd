//! Per-topic history (`--history 'chat*=1000'`): the recent custom messages
//! of the topics that ask for it, so that a client that comes back with a
//! cursor gets what it missed, in order, then the live events, with nothing
//! lost or repeated across the switch.
//!
//! **One sequence per node, in one order on every core.** A cursor is
//! `<epoch>:<seq>`: the epoch is drawn when the server starts (a restart or
//! another node is told apart), `seq` numbers every recorded message of the
//! node, whatever its topic, so one cursor — the last one a stream saw, its
//! `Last-Event-ID` — resumes every topic of that stream. Each topic's log
//! holds an increasing (not dense) run of them.
//!
//! **Every core keeps its own copy.** The ring hands every publish to every
//! core in one total order (`Ring::in_total_order`: without it, two
//! publishers on two cores could reach two inboxes in opposite orders), so
//! every core numbers the same messages alike without talking to the others.
//! A replay is then read on the client's owner core in the same step that
//! registers the subscription: what was published before is in the log, what
//! comes after arrives live — no gap, no duplicate, and no lock.
//!
//! **Bounded.** Each topic keeps its last `N` messages; all topics of a core
//! share a byte budget (`--history-max-bytes` split over the cores), the
//! oldest message of the core going first. A topic whose messages are all
//! evicted is forgotten, and the highest sequence it lost is kept
//! (`forgotten`), so that a cursor older than it is told of a possible gap
//! rather than silently missing events.

use super::pubsub::channel_of;
use crate::filter::SubscriptionOptions;
use crate::message::{Audience, Message, Target};
use ahash::AHashMap;
use std::collections::VecDeque;
use std::rc::Rc;
use std::str::FromStr;

/// What a recorded message costs beyond its data (its entry, its place in
/// the eviction order): counted against the budget.
const ENTRY_COST: usize = 64;
/// What a topic's log costs beyond its name.
const TOPIC_COST: usize = 96;

/// One `--history` item: topics `pattern` (exact, or a prefix ending in `*`)
/// keep their last `limit` messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTopic {
    prefix: Box<str>,
    exact: bool,
    limit: usize,
}

/// A `--history` item that does not read as `PATTERN=N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not PATTERN=N (a topic, or a prefix ending in `*`, and a count above 0)")]
pub struct HistorySpecError(String);

impl FromStr for HistoryTopic {
    type Err = HistorySpecError;

    fn from_str(text: &str) -> Result<HistoryTopic, HistorySpecError> {
        let bad = || HistorySpecError(text.to_owned());
        let (pattern, limit) = text.trim().rsplit_once('=').ok_or_else(bad)?;
        let limit: usize = limit.trim().parse().map_err(|_| bad())?;
        let pattern = pattern.trim();
        if limit == 0 || pattern.is_empty() || !crate::frame::is_valid_name(pattern) {
            return Err(bad());
        }
        let (prefix, exact) = match pattern.strip_suffix('*') {
            Some(prefix) => (prefix, false),
            None => (pattern, true),
        };
        Ok(HistoryTopic {
            prefix: prefix.into(),
            exact,
            limit,
        })
    }
}

impl HistoryTopic {
    fn limit_for(&self, topic: &str) -> Option<usize> {
        let hit = if self.exact {
            topic == &*self.prefix
        } else {
            topic.starts_with(&*self.prefix)
        };
        hit.then_some(self.limit)
    }
}

/// What a core needs to keep history.
#[derive(Debug, Clone)]
pub struct HistorySettings {
    /// The first item a topic matches gives its limit.
    pub topics: Vec<HistoryTopic>,
    /// This core's share of `--history-max-bytes`.
    pub max_bytes: usize,
    /// Drawn once per server ([`epoch_for`]); the same on every core.
    pub epoch: u64,
    /// `--sse-ids topic`: each recorded event carries its cursor in a second
    /// `id:` line.
    pub sse_ids: bool,
    /// `--history-cursor-field`: each recorded event whose data is a JSON
    /// object carries its cursor in this field too (what the SDK sees).
    pub cursor_field: Option<Box<str>>,
}

/// The epoch of the server that is node `node` of this process: random per
/// process start, and per server within a process.
pub fn epoch_for(node: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let nonce = *NONCE.get_or_init(|| {
        getrandom::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
    });
    let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one((nonce, node));
    // 53 bits: a JavaScript number holds it exactly.
    hash >> 11
}

/// A position in a node's history: `<epoch>:<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: u64,
    pub seq: u64,
}

impl Cursor {
    /// `<epoch>:<seq>`, both decimal; anything else (a client id, which a
    /// raw EventSource sends back when ids are not cursors) is `None`.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (epoch, seq) = text.trim().split_once(':')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(epoch) || !digits(seq) {
            return None;
        }
        Some(Cursor {
            epoch: epoch.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}

/// A cursor a client sent that does not read as `<epoch>:<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a history cursor (<epoch>:<offset>)")]
pub struct InvalidCursor(pub String);

/// One recorded message of one topic.
#[derive(Debug)]
pub struct Entry {
    pub seq: u64,
    /// The data as delivered (with the cursor field, if there is one).
    pub data: Rc<[u8]>,
    pub audience: Audience,
}

/// A message just recorded: its sequence and the data to deliver.
#[derive(Debug)]
pub struct Recorded {
    pub seq: u64,
    pub cursor: Box<str>,
    pub data: Rc<[u8]>,
}

/// A cursor that cannot be resumed without loss: older than what is kept,
/// or from another epoch (a restart, another node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub since: Cursor,
    /// The oldest position still kept for the topic (the replay starts
    /// there), or the latest when nothing is kept.
    pub oldest: Cursor,
}

impl Gap {
    /// The event's data: `{"ringcast":"history_gap","since":…,"oldest":…}`.
    pub fn data(&self) -> Vec<u8> {
        format!(
            r#"{{"ringcast":"history_gap","since":"{}","oldest":"{}"}}"#,
            self.since, self.oldest
        )
        .into_bytes()
    }
}

#[derive(Debug)]
struct TopicLog {
    limit: usize,
    entries: VecDeque<Entry>,
    /// The highest sequence evicted from this topic (0: none).
    evicted_through: u64,
}

#[derive(Debug)]
pub struct History {
    settings: HistorySettings,
    /// The last sequence given.
    head: u64,
    topics: AHashMap<Rc<str>, TopicLog>,
    /// Every entry in sequence order, for the budget's evictions; an entry
    /// evicted by its topic's limit stays here (stale) until compacted.
    order: VecDeque<(u64, Rc<str>)>,
    stale: usize,
    bytes: usize,
    events: usize,
    /// The highest sequence lost by a topic that was then forgotten.
    forgotten: u64,
    evicted: u64,
}

impl History {
    pub fn new(settings: HistorySettings) -> History {
        History {
            settings,
            head: 0,
            topics: AHashMap::default(),
            order: VecDeque::new(),
            stale: 0,
            bytes: 0,
            events: 0,
            forgotten: 0,
            evicted: 0,
        }
    }

    pub fn sse_ids(&self) -> bool {
        self.settings.sse_ids
    }

    pub fn epoch(&self) -> u64 {
        self.settings.epoch
    }

    /// Bytes counted against the budget, messages kept, messages evicted.
    pub fn usage(&self) -> (u64, u64, u64) {
        (self.bytes as u64, self.events as u64, self.evicted)
    }

    /// Whether topic `topic` keeps history.
    pub fn keeps(&self, topic: &str) -> bool {
        self.limit(topic).is_some()
    }

    fn limit(&self, topic: &str) -> Option<usize> {
        if let Some(log) = self.topics.get(topic) {
            return Some(log.limit);
        }
        self.settings.topics.iter().find_map(|t| t.limit_for(topic))
    }

    fn cursor(&self, seq: u64) -> Cursor {
        Cursor {
            epoch: self.settings.epoch,
            seq,
        }
    }

    /// Records `msg` if one of its topics keeps history (custom messages
    /// only: a record event's copies depend on each subscriber's rules).
    pub fn record(&mut self, msg: &Message) -> Option<Recorded> {
        if msg.record.is_some() {
            return None;
        }
        let Target::Topics(topics) = &msg.target else {
            return None;
        };
        let mut recorded: Option<Recorded> = None;
        for topic in topics {
            let Some(limit) = self.limit(topic) else {
                continue;
            };
            let data = match &recorded {
                Some(r) => r.data.clone(),
                None => {
                    self.head += 1;
                    let cursor = self.cursor(self.head).to_string();
                    let data = self.with_cursor_field(&msg.data, &cursor);
                    recorded = Some(Recorded {
                        seq: self.head,
                        cursor: cursor.into(),
                        data: data.clone(),
                    });
                    data
                }
            };
            let entry = Entry {
                seq: self.head,
                data,
                audience: msg.audience.clone(),
            };
            self.push(topic, limit, entry);
        }
        recorded
    }

    fn with_cursor_field(&self, data: &[u8], cursor: &str) -> Rc<[u8]> {
        let Some(field) = &self.settings.cursor_field else {
            return data.into();
        };
        let Some(rest) = data.strip_prefix(b"{") else {
            return data.into();
        };
        let name = serde_json::Value::from(&**field).to_string();
        let comma = if rest.trim_ascii_start().starts_with(b"}") {
            ""
        } else {
            ","
        };
        let mut out = Vec::with_capacity(data.len() + name.len() + cursor.len() + 5);
        out.push(b'{');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b":\"");
        out.extend_from_slice(cursor.as_bytes());
        out.push(b'"');
        out.extend_from_slice(comma.as_bytes());
        out.extend_from_slice(rest);
        out.into()
    }

    fn push(&mut self, topic: &str, limit: usize, entry: Entry) {
        let key: Rc<str> = match self.topics.get_key_value(topic) {
            Some((key, _)) => key.clone(),
            None => {
                let key: Rc<str> = topic.into();
                self.bytes += key.len() + TOPIC_COST;
                let log = TopicLog {
                    limit,
                    entries: VecDeque::new(),
                    // A topic seen again after being forgotten may have lost
                    // events up to there: older cursors are told so.
                    evicted_through: self.forgotten,
                };
                self.topics.insert(key.clone(), log);
                key
            }
        };
        self.bytes += entry.data.len() + ENTRY_COST;
        self.events += 1;
        self.order.push_back((entry.seq, key.clone()));
        let Some(log) = self.topics.get_mut(&*key) else {
            return;
        };
        log.entries.push_back(entry);
        if log.entries.len() > log.limit {
            if let Some(old) = log.entries.pop_front() {
                log.evicted_through = old.seq;
                self.bytes -= old.data.len() + ENTRY_COST;
                self.events -= 1;
                self.evicted += 1;
                self.stale += 1;
            }
        }
        while self.bytes > self.settings.max_bytes && self.evict_oldest() {}
        if self.stale > 64 && self.stale * 2 > self.order.len() {
            self.compact();
        }
    }

    /// Evicts the oldest message of the core; `false` when none is left.
    fn evict_oldest(&mut self) -> bool {
        while let Some((seq, topic)) = self.order.pop_front() {
            let Some(log) = self.topics.get_mut(&*topic) else {
                self.stale = self.stale.saturating_sub(1);
                continue;
            };
            if log.entries.front().is_none_or(|e| e.seq != seq) {
                self.stale = self.stale.saturating_sub(1);
                continue;
            }
            if let Some(old) = log.entries.pop_front() {
                log.evicted_through = old.seq;
                self.bytes -= old.data.len() + ENTRY_COST;
                self.events -= 1;
                self.evicted += 1;
            }
            if log.entries.is_empty() {
                self.forgotten = self.forgotten.max(log.evicted_through);
                self.topics.remove(&*topic);
                self.bytes -= topic.len() + TOPIC_COST;
            }
            return true;
        }
        false
    }

    /// Drops the order's stale entries: those its topic's limit evicted.
    fn compact(&mut self) {
        let topics = &self.topics;
        self.order.retain(|(seq, topic)| {
            topics
                .get(&**topic)
                .and_then(|log| log.entries.front())
                .is_some_and(|front| front.seq <= *seq)
        });
        self.stale = 0;
    }

    /// Which of `subs` resume, and from where: those not in `held` whose
    /// topic keeps history, from their own `since` option, else from
    /// `header` (a subscription request's `Last-Event-ID`), else from
    /// `stream` (the stream's). A `since` or header that is not a cursor is
    /// refused; options that cannot be read are ignored, as PocketBase does.
    pub fn resumes(
        &self,
        subs: &[String],
        held: &[String],
        header: Option<&str>,
        stream: Option<Cursor>,
    ) -> Result<Vec<(String, Cursor)>, InvalidCursor> {
        let header = match header.map(str::trim).filter(|h| !h.is_empty()) {
            Some(text) => Some(Cursor::parse(text).ok_or_else(|| InvalidCursor(text.into()))?),
            None => None,
        };
        let mut out = Vec::new();
        for sub in subs {
            if held.contains(sub) || !self.keeps(channel_of(sub)) {
                continue;
            }
            let since = match SubscriptionOptions::parse(sub) {
                Ok(options) => options.query.get("since").cloned(),
                Err(_) => None,
            };
            let since = match since.filter(|s| !s.is_empty()) {
                Some(text) => Some(Cursor::parse(&text).ok_or(InvalidCursor(text))?),
                None => header.or(stream),
            };
            if let Some(since) = since {
                out.push((sub.clone(), since));
            }
        }
        Ok(out)
    }

    /// Whether `since` is this core's but ahead of it: another core
    /// delivered messages this one has not reached yet (they are in its
    /// inbox). Nothing is replayed; the live ones up to `since` must be
    /// skipped for that client instead.
    pub fn is_ahead(&self, since: Cursor) -> bool {
        since.epoch == self.settings.epoch && since.seq > self.head
    }

    /// What a client resuming topic `topic` from `since` gets: a gap, if
    /// there is one, then the kept messages after `since`, oldest first.
    pub fn resume<'a>(
        &'a self,
        topic: &str,
        since: Cursor,
    ) -> (Option<Gap>, impl Iterator<Item = &'a Entry> + 'a) {
        let log = self.topics.get(topic);
        let oldest = self.cursor(
            log.and_then(|l| l.entries.front())
                .map_or(self.head, |e| e.seq),
        );
        let gap = Gap { since, oldest };
        let (gap, after) = if since.epoch != self.settings.epoch {
            // Another node's or an earlier run's numbers: nothing to compare.
            (Some(gap), u64::MAX)
        } else if self.is_ahead(since) {
            (None, u64::MAX)
        } else {
            let evicted_through = log.map_or(self.forgotten, |l| l.evicted_through);
            ((evicted_through > since.seq).then_some(gap), since.seq)
        };
        let entries = log.into_iter().flat_map(|l| l.entries.iter());
        (gap, entries.skip_while(move |e| e.seq <= after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(spec: &str, max_bytes: usize) -> History {
        History::new(HistorySettings {
            topics: spec.split(',').map(|s| s.parse().unwrap()).collect(),
            max_bytes,
            epoch: 7,
            sse_ids: false,
            cursor_field: None,
        })
    }

    fn seqs(h: &History, topic: &str, since: u64) -> (Option<Gap>, Vec<u64>) {
        let (gap, entries) = h.resume(
            topic,
            Cursor {
                epoch: 7,
                seq: since,
            },
        );
        (gap, entries.map(|e| e.seq).collect())
    }

    #[test]
    fn patterns_cursors_and_bad_specs() {
        let h = history("chat*=3,news=2", 1 << 20);
        assert!(h.keeps("chat") && h.keeps("chat/1") && h.keeps("news"));
        assert!(!h.keeps("news/1") && !h.keeps("other"));
        for bad in ["chat", "chat=0", "=3", "chat=x", "a\nb=1"] {
            assert!(bad.parse::<HistoryTopic>().is_err(), "{bad}");
        }
        assert_eq!(Cursor::parse("7:42"), Some(Cursor { epoch: 7, seq: 42 }));
        for bad in [
            "",
            "7",
            "7:",
            ":1",
            "a:1",
            "7:-1",
            "abcdefghijABCDEFGHIJ0123456789abcdefghij",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn one_sequence_over_topics_limits_and_gaps() {
        let mut h = history("a=2,b=10", 1 << 20);
        for topic in ["a", "b", "a", "x", "a", "b"] {
            h.record(&Message::custom(topic, *b"{}"));
        }
        // a: 1, 3, 4 (1 evicted by the limit); b: 2, 5; x is not kept.
        assert_eq!(seqs(&h, "a", 3), (None, vec![4]));
        assert_eq!(seqs(&h, "b", 0), (None, vec![2, 5]));
        let (gap, got) = seqs(&h, "a", 0);
        assert_eq!(gap.map(|g| g.oldest.seq), Some(3));
        assert_eq!(got, [3, 4]);
        let (gap, got) = h.resume("a", Cursor { epoch: 8, seq: 3 });
        assert_eq!(gap.map(|g| g.oldest.seq), Some(3));
        assert_eq!(got.count(), 0);
        assert_eq!(h.usage().2, 1);
    }

    #[test]
    fn the_byte_budget_holds_and_forgotten_topics_still_report_gaps() {
        let mut h = history("t*=1000", 10_000);
        for i in 0..100_000u64 {
            h.record(&Message::custom(&format!("t{}", i % 500), *b"{\"n\":1}"));
            assert!(h.usage().0 <= 10_000);
        }
        let (bytes, events, evicted) = h.usage();
        assert!(bytes <= 10_000 && events > 0);
        assert_eq!(events + evicted, 100_000);
        assert!(h.order.len() <= 2 * events as usize + 65);
        // A topic forgotten and never seen again: a cursor before its loss.
        assert!(seqs(&h, "t-never", 10).0.is_some());
        assert!(seqs(&h, "t-never", h.head).0.is_none());
    }

    #[test]
    fn new_subscriptions_resume_from_their_own_cursor_first() {
        let h = history("chat*=5", 1 << 20);
        let subs: Vec<String> = [
            "chat",
            r#"chat/1?options={"query":{"since":"7:3"}}"#,
            "other",
            "chat/held",
        ]
        .map(String::from)
        .into();
        let held = ["chat/held".to_owned()];
        let c = |seq| Cursor { epoch: 7, seq };
        assert_eq!(
            h.resumes(&subs, &held, Some("7:9"), Some(c(1))).unwrap(),
            [(subs[0].clone(), c(9)), (subs[1].clone(), c(3))]
        );
        assert_eq!(
            h.resumes(&subs, &held, None, Some(c(1))).unwrap()[0].1,
            c(1)
        );
        assert_eq!(h.resumes(&subs, &held, None, None).unwrap().len(), 1);
        assert!(h.resumes(&subs, &held, Some("nope"), None).is_err());
        let bad = [r#"chat?options={"query":{"since":"x"}}"#.to_owned()];
        assert_eq!(
            h.resumes(&bad, &[], None, None),
            Err(InvalidCursor("x".into()))
        );
    }

    #[test]
    fn the_cursor_field_goes_first_in_an_object() {
        let mut h = history("a=5", 1 << 20);
        h.settings.cursor_field = Some("_cursor".into());
        let r = h.record(&Message::custom("a", *b"{\"n\":1}")).unwrap();
        assert_eq!(&*r.data, br#"{"_cursor":"7:1","n":1}"#);
        let r = h.record(&Message::custom("a", *b"{}")).unwrap();
        assert_eq!(&*r.data, br#"{"_cursor":"7:2"}"#);
        let r = h.record(&Message::custom("a", *b"[1]")).unwrap();
        assert_eq!(&*r.data, b"[1]");
        assert_eq!(&*r.cursor, "7:3");
    }
}
