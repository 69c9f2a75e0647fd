//! What is published: a [`Message`] — where it goes ([`Target`]), its data,
//! and who may see it ([`Audience`]).
//!
//! This is the vocabulary shared by every path into the cores — the HTTP
//! publish API decodes bodies into it, the [`Broker`](crate::Broker) builds it
//! for embedders, and each core fans it out — so it knows nothing of HTTP or
//! of cores. Data is serialised once, before a message is built; every core
//! and every recipient shares those bytes.

use crate::auth::Auth;
use crate::filter::{Filter, Schema};
use crate::frame;
use serde_json::Value;
use smallvec::SmallVec;
use std::sync::Arc;

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
    /// For a record event, what PocketBase's rules and subscription options
    /// need (shared by every core).
    pub record: Option<Arc<RecordEvent>>,
}

/// A record event as the edge applies PocketBase's rules to it: per
/// subscriber, the collection's list rule (`posts/*`, `posts`) or view rule
/// (`posts/<id>`) and the subscription's `filter`; per subscription string,
/// its `fields`.
#[derive(Debug, PartialEq)]
pub struct RecordEvent {
    pub collection: Box<str>,
    pub collection_id: Option<Box<str>>,
    pub record_id: Box<str>,
    pub action: Action,
    /// The record as published, parsed once: what filters and `fields` read.
    pub record: Value,
    /// The collection's rules, when the publisher sent them (PocketBase's
    /// forwarder does); without them the message's audience decides alone.
    pub rules: Option<CollectionRules>,
    /// What only some subscribers see, when the publisher sent it.
    pub private: Option<PrivateFields>,
}

/// What PocketBase adds to a record for some subscribers only: the hidden
/// fields, for superusers; an auth record's `email` when it is not visible
/// to everyone, for superusers, the record's own user and whoever passes
/// the collection's manage rule.
#[derive(Debug, Default, PartialEq)]
pub struct PrivateFields {
    pub hidden: serde_json::Map<String, Value>,
    pub email: Option<Value>,
}

/// Which version of a record a subscriber gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Public,
    /// With the email: the record's own user, or a manager.
    Owner,
    /// With the email and the hidden fields.
    Superuser,
}

/// A collection's list, view and manage rules, compiled, and the field types
/// they were compiled with (subscription filters are compiled with them too).
#[derive(Debug, PartialEq)]
pub struct CollectionRules {
    pub list: Rule,
    pub view: Rule,
    /// Who may see an auth record's email even when it is not visible.
    pub manage: Rule,
    pub schema: Option<Arc<SchemaVersion>>,
}

/// A collection's rules as PocketBase stores them (`None`: null).
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleTexts<'a> {
    pub list: Option<&'a str>,
    pub view: Option<&'a str>,
    pub manage: Option<&'a str>,
}

/// A collection's field types, with what they were read from (PocketBase's
/// collection JSON) and its hash, so that a filter compiled for them is
/// reused while they do not change.
#[derive(Debug, PartialEq)]
pub struct SchemaVersion {
    pub hash: u64,
    pub schema: Schema,
    pub source: Value,
}

impl SchemaVersion {
    /// From a collection as PocketBase describes it (`{"fields":[…]}`).
    pub fn new(source: Value) -> SchemaVersion {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let text = source.to_string();
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(&text);
        SchemaVersion {
            hash,
            schema: Schema::from_pocketbase(&source),
            source,
        }
    }
}

impl CollectionRules {
    /// The rules, compiled for the collection described by `schema`.
    pub fn new(texts: RuleTexts<'_>, schema: Option<Value>) -> CollectionRules {
        let schema = schema.map(|s| Arc::new(SchemaVersion::new(s)));
        let types = schema.as_ref().map(|s| &s.schema);
        CollectionRules {
            list: Rule::compile(texts.list, types),
            view: Rule::compile(texts.view, types),
            manage: Rule::compile(texts.manage, types),
            schema,
        }
    }

    /// The rules as PocketBase stores them.
    pub fn texts(&self) -> RuleTexts<'_> {
        RuleTexts {
            list: self.list.text(),
            view: self.view.text(),
            manage: self.manage.text(),
        }
    }
}

/// One of a collection's rules, as the edge can apply it.
#[derive(Debug)]
pub enum Rule {
    /// `null`: superusers only.
    Superusers,
    /// `""`: everyone.
    Everyone,
    /// A filter each subscriber (but a superuser, who bypasses rules) must pass.
    Filter(Filter),
    /// A rule the edge cannot evaluate (it needs PocketBase's database or
    /// request, or fields not published): the message's audience decides —
    /// the publisher's safe choice, never everyone by default.
    Fallback { text: String, reason: String },
}

impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        match (self, other) {
            (Rule::Superusers, Rule::Superusers) | (Rule::Everyone, Rule::Everyone) => true,
            (Rule::Filter(a), Rule::Filter(b)) => a.text() == b.text(),
            (Rule::Fallback { text: a, .. }, Rule::Fallback { text: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Rule {
    /// A rule as PocketBase stores it (`None`: null), compiled for `schema`.
    pub fn compile(text: Option<&str>, schema: Option<&Schema>) -> Rule {
        let Some(text) = text else {
            return Rule::Superusers;
        };
        if text.trim().is_empty() {
            return Rule::Everyone;
        }
        let compiled = match schema {
            Some(schema) => Filter::compile_with(text, schema),
            None => Filter::compile(text),
        };
        match compiled {
            Ok(filter) => Rule::Filter(filter),
            Err(e) => Rule::Fallback {
                text: text.to_owned(),
                reason: e.to_string(),
            },
        }
    }

    /// The rule's text as PocketBase stores it (`None`: null).
    pub fn text(&self) -> Option<&str> {
        match self {
            Rule::Superusers => None,
            Rule::Everyone => Some(""),
            Rule::Filter(f) => Some(f.text()),
            Rule::Fallback { text, .. } => Some(text),
        }
    }
}

impl RecordEvent {
    /// The rule that decides who receives this event under `topic` (a
    /// subscription's part before `?`): the view rule for `<c>/<id>`, the
    /// list rule for `<c>/*` and `<c>`.
    pub fn rule_for(&self, topic: &str) -> Option<&Rule> {
        let rules = self.rules.as_ref()?;
        let by_id = topic
            .rsplit_once('/')
            .is_some_and(|(_, id)| id == &*self.record_id);
        Some(if by_id { &rules.view } else { &rules.list })
    }

    /// The payload PocketBase sends for it, `{"record":…,"action":"…"}`,
    /// with `record` already serialised.
    pub fn payload(&self, record_json: &[u8]) -> Vec<u8> {
        record_payload(record_json, self.action)
    }

    /// The record as a subscriber with `view` sees it, keys sorted as
    /// PocketBase writes them; `None` when that is the published record.
    pub fn record_as(&self, view: View) -> Option<Value> {
        let private = self.private.as_ref()?;
        let Value::Object(public) = &self.record else {
            return None;
        };
        let email = private.email.as_ref().map(|e| ("email", e));
        let extra: Vec<(&str, &Value)> = match view {
            View::Public => return None,
            View::Owner => email.into_iter().collect(),
            View::Superuser => private
                .hidden
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .chain(email)
                .collect(),
        };
        if extra.is_empty() {
            return None;
        }
        let mut fields: Vec<(&str, &Value)> = public
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .collect();
        fields.extend(extra);
        fields.sort_by(|a, b| a.0.cmp(b.0));
        Some(Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect(),
        ))
    }
}

fn record_payload(record_json: &[u8], action: Action) -> Vec<u8> {
    let mut data = Vec::with_capacity(record_json.len() + 32);
    data.extend_from_slice(b"{\"record\":");
    data.extend_from_slice(record_json);
    data.extend_from_slice(b",\"action\":\"");
    data.extend_from_slice(action.as_str().as_bytes());
    data.extend_from_slice(b"\"}");
    data
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
            record: None,
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
            record: None,
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
            record: None,
        }
    }

    /// A record event in collection `collection` (and its id, if known),
    /// addressed as PocketBase addresses it: `<c>/<id>`, `<c>/*` and `<c>`
    /// for the name and the id of the collection, with payload
    /// `{"record":{…},"action":"…"}`; no rules (its audience decides).
    pub fn record(
        collection: &str,
        collection_id: Option<&str>,
        action: Action,
        record_id: &str,
        record_json: &[u8],
    ) -> Message {
        let record = serde_json::from_slice(record_json).unwrap_or(Value::Null);
        Message::record_event(
            RecordEvent {
                collection: collection.into(),
                collection_id: collection_id.map(Into::into),
                record_id: record_id.into(),
                action,
                record,
                rules: None,
                private: None,
            },
            record_json,
        )
    }

    /// A record event whose record serialises as `record_json`.
    pub fn record_event(event: RecordEvent, record_json: &[u8]) -> Message {
        let mut topics: SmallVec<[Box<str>; 1]> = SmallVec::new();
        let names = std::iter::once(&*event.collection).chain(event.collection_id.as_deref());
        for c in names {
            let id = &event.record_id;
            for t in [format!("{c}/{id}"), format!("{c}/*"), c.to_owned()] {
                if !topics.iter().any(|x| **x == *t) {
                    topics.push(t.into());
                }
            }
        }
        Message {
            target: Target::Topics(topics),
            data: record_payload(record_json, event.action).into(),
            audience: Audience::Public,
            record: Some(Arc::new(event)),
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
        let longest = self
            .event_names()
            .map(|n| frame::field_len(n.as_bytes()))
            .max()
            .unwrap_or(0);
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
            record: None,
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
