//! What is published: a [`Message`] — where it goes ([`Target`]), its data,
//! and who may see it ([`Audience`]).
//!
//! This is the vocabulary shared by every path into the cores — the HTTP
//! publish API decodes bodies into it, the [`Broker`](crate::Broker) builds it
//! for embedders, and each core fans it out — so it knows nothing of HTTP or
//! of cores. Data is serialised once, before a message is built; every core
//! and every recipient shares those bytes.

use crate::auth::Auth;
use crate::frame;
use smallvec::SmallVec;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Create, Action::Update, Action::Delete];

    /// The action named `name` (as in the payload), if there is one.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The name PocketBase puts in the payload's `action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// A message ready for fan-out: where it goes, its data, who may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub target: Target,
    pub data: Box<[u8]>,
    pub audience: Audience,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// To the subscribers of these topics (a custom message has one, a
    /// record event up to six), each event named by its subscription.
    Topics(SmallVec<[Box<str>; 1]>),
    /// To every stream authenticated as this user, as event `event`.
    User {
        id: Box<str>,
        /// When given, the user's collection must match too.
        collection_id: Option<Box<str>>,
        event: Box<str>,
    },
    /// To every stream, whatever it subscribed, as event `event`.
    All { event: Box<str> },
}

/// Who may receive a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Audience {
    /// Everyone subscribed.
    #[default]
    Public,
    /// Superusers only.
    Superusers,
    /// These users (by record id) and superusers.
    Users(UserIds),
}

/// A set of user ids, sorted once so that the per-recipient check is a
/// binary search, however long the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIds(Box<[Box<str>]>);

impl UserIds {
    pub fn new<S: Into<Box<str>>>(ids: impl IntoIterator<Item = S>) -> UserIds {
        let mut ids: Vec<Box<str>> = ids.into_iter().map(Into::into).collect();
        ids.sort_unstable();
        ids.dedup();
        UserIds(ids.into())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.binary_search_by(|x| (**x).cmp(id)).is_ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|id| &**id)
    }
}

impl Audience {
    /// Whether a subscriber with this auth may receive the message.
    pub fn admits(&self, auth: Option<&Auth>) -> bool {
        match (self, auth) {
            (Audience::Public, _) => true,
            (_, Some(a)) if a.superuser => true,
            (Audience::Users(ids), Some(a)) => ids.contains(&a.id),
            _ => false,
        }
    }
}

impl Message {
    /// A custom message: `data` is written verbatim as the event data.
    pub fn custom(topic: &str, data: impl Into<Box<[u8]>>) -> Message {
        Message {
            target: Target::Topics(SmallVec::from_iter([topic.into()])),
            data: data.into(),
            audience: Audience::Public,
        }
    }

    /// Event `event` for every stream of user `id`.
    pub fn to_user(
        id: &str,
        collection_id: Option<&str>,
        event: &str,
        data: impl Into<Box<[u8]>>,
    ) -> Message {
        Message {
            target: Target::User {
                id: id.into(),
                collection_id: collection_id.map(Into::into),
                event: event.into(),
            },
            data: data.into(),
            audience: Audience::Public,
        }
    }

    /// Event `event` for every stream.
    pub fn broadcast(event: &str, data: impl Into<Box<[u8]>>) -> Message {
        Message {
            target: Target::All {
                event: event.into(),
            },
            data: data.into(),
            audience: Audience::Public,
        }
    }

    /// A record event in collection `collection` (and its id, if known),
    /// addressed as PocketBase addresses it: `<c>/<id>`, `<c>/*` and `<c>`
    /// for the name and the id of the collection, with payload
    /// `{"record":{…},"action":"…"}`.
    pub fn record(
        collection: &str,
        collection_id: Option<&str>,
        action: Action,
        record_id: &str,
        record_json: &[u8],
    ) -> Message {
        let mut topics: SmallVec<[Box<str>; 1]> = SmallVec::new();
        for c in std::iter::once(collection).chain(collection_id) {
            for t in [format!("{c}/{record_id}"), format!("{c}/*"), c.to_owned()] {
                if !topics.iter().any(|x| **x == *t) {
                    topics.push(t.into());
                }
            }
        }
        let mut data = Vec::with_capacity(record_json.len() + 32);
        data.extend_from_slice(b"{\"record\":");
        data.extend_from_slice(record_json);
        data.extend_from_slice(b",\"action\":\"");
        data.extend_from_slice(action.as_str().as_bytes());
        data.extend_from_slice(b"\"}");
        Message {
            target: Target::Topics(topics),
            data: data.into(),
            audience: Audience::Public,
        }
    }

    /// The same message, for `audience` only.
    pub fn for_audience(self, audience: Audience) -> Message {
        Message { audience, ..self }
    }

    /// Whether it is for one user's streams of one collection only.
    pub fn is_for_a_collection(&self) -> bool {
        matches!(
            self.target,
            Target::User {
                collection_id: Some(_),
                ..
            }
        )
    }

    /// The event names it will carry (a subscription's `?…` suffix may add
    /// to a topic's).
    pub fn event_names(&self) -> impl Iterator<Item = &str> {
        let (topics, event) = match &self.target {
            Target::Topics(topics) => (&topics[..], None),
            Target::User { event, .. } | Target::All { event } => (&[][..], Some(&**event)),
        };
        topics.iter().map(|t| &**t).chain(event)
    }

    /// The most bytes one delivery of it takes on the wire, counting the
    /// event name as its topic.
    pub fn wire_len(&self) -> usize {
        let longest = self.event_names().map(str::len).max().unwrap_or(0);
        frame::max_wire_len(longest, &self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(superuser: bool) -> Auth {
        Auth {
            id: "u1".into(),
            collection_id: "c".into(),
            collection_name: "users".into(),
            superuser,
        }
    }

    #[test]
    fn audiences() {
        let users = Audience::Users(UserIds::new(["zz", "u1", "a"]));
        assert!(users.admits(Some(&auth(false))));
        let nobody = Audience::Users(UserIds::new(Vec::<String>::new()));
        assert!(!nobody.admits(Some(&auth(false))));
        assert!(nobody.admits(Some(&auth(true))));
        assert!(!users.admits(None));
        assert!(!Audience::Superusers.admits(Some(&auth(false))));
        assert!(Audience::Public.admits(None));
    }

    #[test]
    fn record_topics_and_payload() {
        let m = Message::record(
            "posts",
            Some("pbc_1"),
            Action::Create,
            "R1",
            br#"{"id":"R1"}"#,
        );
        let names: Vec<&str> = m.event_names().collect();
        assert_eq!(
            names,
            [
                "posts/R1", "posts/*", "posts", "pbc_1/R1", "pbc_1/*", "pbc_1"
            ]
        );
        assert_eq!(&*m.data, br#"{"record":{"id":"R1"},"action":"create"}"#);
        let m = Message::record("posts", Some("posts"), Action::Delete, "R1", b"{}");
        assert_eq!(m.event_names().count(), 3);
    }

    #[test]
    fn wire_len_counts_the_longest_name() {
        let m = Message::to_user("u1", None, "inbox", *b"1");
        assert_eq!(m.wire_len(), frame::max_wire_len(5, b"1"));
        let m = Message::record("p", None, Action::Update, "abc", b"{}");
        assert_eq!(m.wire_len(), frame::max_wire_len(5, &m.data));
    }
}
