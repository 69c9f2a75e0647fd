//! Subscription strings of one core, interned to small ids.
//!
//! A subscription `s` receives a message published to topic `t` when `s == t`
//! or `s` starts with `t?` (PocketBase's rule: the `?` ends the topic, what
//! follows is options). So each interned `s` is indexed under every key it can
//! be reached by — itself and each prefix that ends before a `?` — and a
//! publish is one hash lookup. The index stores only hashes and prefix lengths
//! (candidates are checked against the string), so a subscription costs its
//! string once plus a few bytes per `?`.
//!
//! Each interned subscription knows its subscribers; when the last one leaves,
//! the string and its index entries are freed, so churn does not grow memory.

use super::records::Options;
use ahash::{AHashMap, RandomState};
use slab::Slab;
use smallvec::SmallVec;
use std::cell::OnceCell;
use std::rc::Rc;

pub type TopicId = u32;

/// At most this many `?`-prefixes of one subscription are indexed; a topic
/// with more `?` in it than that is still matched exactly and by its first
/// ones. Each costs an index entry, so a short `?`-heavy string must not buy
/// many (the SDK's `?options=` strings have one raw `?`).
const MAX_INDEXED_PREFIXES: usize = 4;

#[derive(Debug)]
struct Topic {
    name: Rc<str>,
    /// Client slab keys; a client holds each subscription string once.
    subscribers: Vec<u32>,
    /// Its record-event options (`filter`, `fields`), read when a record
    /// event first reaches it.
    options: OnceCell<Option<Box<Options>>>,
    /// Where it sits in the index: (bucket, position), one per key, so that
    /// freeing it costs its keys, not the size of buckets shared with every
    /// string of the same topic.
    slots: SmallVec<[(u64, u32); 2]>,
}

#[derive(Debug)]
pub struct Topics {
    topics: Slab<Topic>,
    by_name: AHashMap<Rc<str>, TopicId>,
    /// hash(matching key) → (subscription, length of the key).
    index: AHashMap<u64, Vec<(TopicId, u32)>>,
    hasher: RandomState,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            topics: Slab::new(),
            by_name: AHashMap::default(),
            index: AHashMap::default(),
            hasher: RandomState::new(),
        }
    }
}

impl Topics {
    /// Adds `client` as a subscriber of `name`, interning it if new
    /// (`true`: it was).
    pub fn add(&mut self, name: &str, client: u32) -> (TopicId, bool) {
        let (id, new) = match self.by_name.get(name) {
            Some(&id) => (id, false),
            None => (self.intern(name), true),
        };
        self.topics[id as usize].subscribers.push(client);
        (id, new)
    }

    /// Removes `client` from `id`; frees the subscription when nobody holds
    /// it, and then returns its name.
    pub fn remove(&mut self, id: TopicId, client: u32) -> Option<Rc<str>> {
        let topic = &mut self.topics[id as usize];
        if let Some(pos) = topic.subscribers.iter().position(|&c| c == client) {
            topic.subscribers.swap_remove(pos);
        }
        topic.subscribers.is_empty().then(|| self.free(id))
    }

    /// Every interned subscription that receives messages published to `topic`.
    pub fn matching<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = TopicId> + 'a {
        let hash = self.hasher.hash_one(topic.as_bytes());
        self.index
            .get(&hash)
            .into_iter()
            .flatten()
            .filter(move |&&(id, len)| {
                len as usize == topic.len()
                    && self.topics[id as usize].name.as_bytes().get(..topic.len())
                        == Some(topic.as_bytes())
            })
            .map(|&(id, _)| id)
    }

    /// Whether `name` is interned (someone on this core holds it).
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn name(&self, id: TopicId) -> &str {
        &self.topics[id as usize].name
    }

    /// The record-event options of `id`, if it has any.
    pub fn options(&self, id: TopicId) -> Option<&Options> {
        let topic = &self.topics[id as usize];
        topic
            .options
            .get_or_init(|| Options::parse(&topic.name))
            .as_deref()
    }

    pub fn subscribers(&self, id: TopicId) -> &[u32] {
        &self.topics[id as usize].subscribers
    }

    /// Number of distinct subscription strings held on this core.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    fn keys(name: &str) -> impl Iterator<Item = usize> + '_ {
        name.bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'?')
            .map(|(i, _)| i)
            .take(MAX_INDEXED_PREFIXES)
            .chain(std::iter::once(name.len()))
    }

    fn intern(&mut self, name: &str) -> TopicId {
        let name: Rc<str> = name.into();
        let entry = self.topics.vacant_entry();
        let id = entry.key() as TopicId;
        let mut slots = SmallVec::new();
        for len in Self::keys(&name) {
            let hash = self.hasher.hash_one(&name.as_bytes()[..len]);
            let bucket = self.index.entry(hash).or_default();
            slots.push((hash, bucket.len() as u32));
            bucket.push((id, len as u32));
        }
        entry.insert(Topic {
            name: name.clone(),
            subscribers: Vec::new(),
            options: OnceCell::new(),
            slots,
        });
        self.by_name.insert(name, id);
        id
    }

    fn free(&mut self, id: TopicId) -> Rc<str> {
        let mut topic = self.topics.remove(id as usize);
        for i in 0..topic.slots.len() {
            let (hash, at) = topic.slots[i];
            let Some(bucket) = self.index.get_mut(&hash) else {
                continue;
            };
            let last = bucket.len() as u32 - 1;
            bucket.swap_remove(at as usize);
            if at < last {
                // The bucket's last entry moved into the hole: tell its topic.
                let moved = bucket[at as usize].0;
                let slots = if moved == id {
                    &mut topic.slots
                } else {
                    &mut self.topics[moved as usize].slots
                };
                if let Some(slot) = slots.iter_mut().find(|s| **s == (hash, last)) {
                    slot.1 = at;
                }
            }
            if bucket.is_empty() {
                self.index.remove(&hash);
            }
        }
        self.by_name.remove(&topic.name);
        topic.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(t: &Topics, topic: &str) -> Vec<String> {
        let mut v: Vec<String> = t.matching(topic).map(|id| t.name(id).to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn exact_and_question_mark_prefix_match() {
        let mut t = Topics::default();
        for (i, s) in [
            "chat",
            "chat?options=x",
            "chatter",
            "chat/1",
            "a?b?c",
            "CHAT",
        ]
        .iter()
        .enumerate()
        {
            t.add(s, i as u32);
        }
        assert_eq!(matching(&t, "chat"), ["chat", "chat?options=x"]);
        assert_eq!(matching(&t, "chat?options=x"), ["chat?options=x"]);
        assert_eq!(matching(&t, "a"), ["a?b?c"]);
        assert_eq!(matching(&t, "a?b"), ["a?b?c"]);
        assert!(matching(&t, "cha").is_empty());
        assert!(matching(&t, "*").is_empty());
    }

    #[test]
    fn interning_is_shared_and_freed_when_unused() {
        let mut t = Topics::default();
        let (a, new) = t.add("x?y", 1);
        assert!(new);
        let (b, new) = t.add("x?y", 2);
        assert!(!new);
        assert_eq!(a, b);
        assert_eq!(t.subscribers(a), [1, 2]);
        assert_eq!(t.remove(a, 1), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove(a, 2).as_deref(), Some("x?y"));
        assert_eq!(t.len(), 0);
        assert!(t.index.is_empty() && t.by_name.is_empty());
        assert!(matching(&t, "x").is_empty());
    }

    #[test]
    fn churn_does_not_grow_the_index() {
        let mut t = Topics::default();
        for round in 0..100u32 {
            let ids: Vec<_> = (0..50)
                .map(|i| t.add(&format!("t{i}?r={round}"), i).0)
                .collect();
            for (i, id) in ids.into_iter().enumerate() {
                t.remove(id, i as u32);
            }
        }
        assert_eq!(t.len(), 0);
        assert!(t.index.is_empty());
    }

    #[test]
    fn freeing_keeps_every_other_subscription_reachable() {
        let mut t = Topics::default();
        // Many strings share the buckets of "a" and "a?b"; free them in a
        // scrambled order and check what is left after each step.
        let names: Vec<String> = (0..200).map(|i| format!("a?b?{i}")).collect();
        let ids: Vec<TopicId> = names.iter().map(|n| t.add(n, 1).0).collect();
        let mut left: std::collections::BTreeSet<usize> = (0..names.len()).collect();
        for step in 0..names.len() {
            let i = (step * 37) % names.len();
            t.remove(ids[i], 1);
            left.remove(&i);
            if step % 20 == 0 {
                let expect: Vec<String> = left.iter().map(|&j| names[j].clone()).collect();
                let mut got = matching(&t, "a");
                let mut want = expect.clone();
                want.sort();
                got.sort();
                assert_eq!(got, want, "after {step} removals");
                assert_eq!(matching(&t, "a?b").len(), left.len());
            }
        }
        assert!(t.index.is_empty());
    }
}
