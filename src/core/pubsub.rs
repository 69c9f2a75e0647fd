//! The fan-out engine: who receives a message.
//!
//! Like uWebSockets' TopicTree, it holds the subscriptions (interned, in
//! [`Topics`]) and the user index, and for each published message builds one
//! [`Frame`] per matching subscription string — serialised once, shared by
//! every recipient of that string — handing the caller each group of
//! recipients with their frame. It never touches a client's queue or a
//! socket: what a delivery does is the caller's business (`core::delivery`).

use super::records::Options;
use super::topics::{TopicId, Topics};
use super::users::Users;
use crate::frame::Frame;
use crate::message::{Message, Target};
use smallvec::SmallVec;
use std::rc::Rc;
use tokio::sync::mpsc::UnboundedSender;

/// The subscribers that get one message under one event name, and the
/// frame they share.
pub struct Group<'a> {
    pub frame: Rc<Frame>,
    pub name: &'a str,
    /// Client slab keys.
    pub clients: &'a [u32],
    /// The subscription string's record-event options (`filter`, `fields`).
    pub options: Option<&'a Options>,
}

impl<'a> Group<'a> {
    fn new(
        name: &'a str,
        data: &[u8],
        cursor: Option<&[u8]>,
        clients: &'a [u32],
        options: Option<&'a Options>,
    ) -> Group<'a> {
        let frame = match cursor {
            Some(cursor) => Frame::with_cursor(name.as_bytes(), data, cursor),
            None => Frame::new(name.as_bytes(), data),
        };
        Group {
            frame: Rc::new(frame),
            name,
            clients,
            options,
        }
    }
}

#[derive(Debug, Default)]
pub struct PubSub {
    topics: Topics,
    users: Users,
    /// In a cluster: what this core holds, channel by channel.
    channels: Option<Channels>,
}

/// A change in the channels a core needs from the cluster: the topic part
/// (before any `?`) of the subscription strings it holds. A channel is
/// wanted while at least one string under it is interned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interest {
    Add(Box<str>),
    Remove(Box<str>),
}

/// Where a core sends its [`Interest`] changes.
pub type InterestSink = UnboundedSender<Interest>;

/// The channel a subscription string is reached by (its topic).
pub fn channel_of(subscription: &str) -> &str {
    subscription
        .split_once('?')
        .map_or(subscription, |(topic, _)| topic)
}

#[derive(Debug)]
struct Channels {
    /// Interned strings under each channel.
    counts: ahash::HashMap<Box<str>, u32>,
    sink: InterestSink,
}

impl Channels {
    fn interned(&mut self, name: &str) {
        let count = self.counts.entry(channel_of(name).into()).or_default();
        *count += 1;
        if *count == 1 {
            let _ = self.sink.send(Interest::Add(channel_of(name).into()));
        }
    }

    fn freed(&mut self, name: &str) {
        let channel = channel_of(name);
        if let Some(count) = self.counts.get_mut(channel) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(channel);
                // The cluster being gone (shutdown) leaves nothing to tell.
                let _ = self.sink.send(Interest::Remove(channel.into()));
            }
        }
    }
}

impl PubSub {
    /// From now on, tells `sink` which channels this core needs.
    pub fn report_interest(&mut self, sink: InterestSink) {
        self.channels = Some(Channels {
            counts: ahash::HashMap::default(),
            sink,
        });
    }

    fn add(&mut self, name: &str, key: u32) -> TopicId {
        let (id, new) = self.topics.add(name, key);
        if let (true, Some(channels)) = (new, self.channels.as_mut()) {
            channels.interned(name);
        }
        id
    }

    fn remove(&mut self, id: TopicId, key: u32) {
        if let (Some(freed), Some(channels)) = (self.topics.remove(id, key), self.channels.as_mut())
        {
            channels.freed(&freed);
        }
    }

    /// How many of `names` no client on this core holds yet.
    pub fn new_topics(&self, names: &[String]) -> usize {
        names.iter().filter(|n| !self.topics.contains(n)).count()
    }

    /// Replaces client `key`'s subscriptions `held` with `new`.
    pub fn replace(&mut self, key: u32, held: &mut SmallVec<[TopicId; 4]>, new: &[String]) {
        for t in std::mem::take(held) {
            self.remove(t, key);
        }
        for name in new {
            let id = self.add(name, key);
            held.push(id);
        }
    }

    /// Client `key` is gone: it no longer holds `held` nor belongs to `user`.
    pub fn release(&mut self, key: u32, held: &[TopicId], user: Option<&str>) {
        for &t in held {
            self.remove(t, key);
        }
        if let Some(user) = user {
            self.users.remove(user, key);
        }
    }

    /// Client `key` is now authenticated as `user`.
    pub fn add_user(&mut self, user: &str, key: u32) {
        self.users.add(user, key);
    }

    /// The subscription strings of `held`, for snapshots and hooks.
    pub fn names(&self, held: &[TopicId]) -> Vec<String> {
        held.iter()
            .map(|&t| self.topics.name(t).to_owned())
            .collect()
    }

    /// Distinct subscription strings held on this core.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Whether a subscription string `msg` reaches has record-event options.
    pub fn any_options(&self, msg: &Message) -> bool {
        let Target::Topics(topics) = &msg.target else {
            return false;
        };
        topics.iter().any(|topic| {
            self.topics
                .matching(topic)
                .any(|sub| self.topics.options(sub).is_some())
        })
    }

    /// The recipients of `msg`, one [`Group`] per matching subscription
    /// string (or one for the user a message is for), in subscription order.
    /// Each group's frame is built when the group is reached, once for all
    /// of its subscribers.
    pub fn groups<'a>(&'a self, msg: &'a Message) -> impl Iterator<Item = Group<'a>> + 'a {
        self.groups_with(msg, &msg.data, None)
    }

    /// [`PubSub::groups`] with the data a recorded message is delivered with
    /// and the cursor its frames carry (`core::history`).
    pub fn groups_with<'a>(
        &'a self,
        msg: &'a Message,
        data: &'a [u8],
        cursor: Option<&'a [u8]>,
    ) -> impl Iterator<Item = Group<'a>> + 'a {
        let (topics, user) = match &msg.target {
            Target::Topics(list) => (&list[..], None),
            Target::User { id, event, .. } => (&[][..], Some((&**id, &**event))),
            // Every client: the caller walks its registry (`Core::publish`).
            Target::All { .. } => (&[][..], None),
        };
        let by_topic = topics
            .iter()
            .flat_map(move |topic| self.topics.matching(topic))
            .map(move |sub| {
                let name = self.topics.name(sub);
                // Only record events have options that matter.
                let options = msg.record.as_ref().and_then(|_| self.topics.options(sub));
                Group::new(name, data, cursor, self.topics.subscribers(sub), options)
            });
        let by_user = user.and_then(move |(id, event)| {
            let keys = self.users.clients(id);
            (!keys.is_empty()).then(|| Group::new(event, data, cursor, keys, None))
        });
        by_topic.chain(by_user)
    }

    #[cfg(test)]
    pub fn users(&self) -> &Users {
        &self.users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(p: &PubSub, msg: &Message) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for g in p.groups(msg) {
            out.extend(g.clients.iter().map(|&key| (key, g.name.to_owned())));
        }
        out
    }

    #[test]
    fn channels_are_reported_on_first_and_last_string() {
        let (sink, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let mut p = PubSub::default();
        p.report_interest(sink);
        let (mut a, mut b) = (SmallVec::new(), SmallVec::new());
        p.replace(
            1,
            &mut a,
            &["chat".into(), "chat?x=1".into(), "news".into()],
        );
        p.replace(2, &mut b, &["chat?y=2".into()]);
        p.replace(1, &mut a, &["chat".into()]);
        p.release(1, &a, None);
        p.release(2, &b, None);
        let mut seen = Vec::new();
        while let Ok(change) = changes.try_recv() {
            seen.push(change);
        }
        use Interest::*;
        assert_eq!(
            seen,
            [
                Add("chat".into()),
                Add("news".into()),
                Remove("news".into()),
                Remove("chat".into())
            ]
        );
    }

    #[test]
    fn topics_and_users_reach_their_clients_once_per_subscription() {
        let mut p = PubSub::default();
        let (mut a, mut b) = (SmallVec::new(), SmallVec::new());
        p.replace(1, &mut a, &["chat".into(), "chat?x=1".into()]);
        p.replace(2, &mut b, &["other".into()]);
        p.add_user("u1", 2);
        assert_eq!(
            collect(&p, &Message::custom("chat", *b"1")),
            [(1, "chat".to_owned()), (1, "chat?x=1".to_owned())]
        );
        assert_eq!(
            collect(&p, &Message::to_user("u1", None, "inbox", *b"1")),
            [(2, "inbox".to_owned())]
        );
        p.replace(1, &mut a, &["other".into()]);
        assert_eq!(p.topic_count(), 1);
        p.release(2, &b, Some("u1"));
        p.release(1, &a, None);
        assert_eq!(p.topic_count(), 0);
        assert!(p.users().is_empty());
    }
}
