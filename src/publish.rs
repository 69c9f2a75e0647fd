//! `POST /api/publish`: what a backend sends, turned into [`Message`]s.
//!
//! Three body shapes are accepted:
//! - a custom message `{"topic": "chat", "data": <any JSON>}`;
//! - a record event `{"collection": "posts", "collectionId": "pbc_…",
//!   "action": "create"|"update"|"delete", "record": {"id": "…", …}}`, delivered
//!   as PocketBase does to `posts/<id>`, `posts/*`, `posts` and the same with the
//!   collection id, with payload `{"record":{…},"action":"…"}`;
//! - a message for one user, `{"topic": "inbox", "data": …, "userId": "…",
//!   "collectionId": "…"}`: every stream authenticated as that user (on any
//!   core) gets event `inbox`, whatever it subscribed;
//! - a batch `{"messages": [ … ]}` of these, published in order.
//!
//! Any message may name its `audience` — `"public"` (the default),
//! `"superusers"`, or `{"users": ["id", …]}` — and then reaches only those
//! subscribers (superusers always): this is how ringcast applies what
//! PocketBase's list and view rules decide, without evaluating rules itself.
//!
//! Data is serialised here, once, compactly; every core and every recipient
//! shares those bytes.

use crate::http::error::{self, ApiError};
use crate::realtime::frame;
use crate::realtime::subscribe::MAX_TOPIC_BYTES;
use serde_json::{Map, Value};
use smallvec::SmallVec;

/// Most messages one request may carry.
pub const MAX_BATCH: usize = 10_000;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    const ALL: [Action; 3] = [Action::Create, Action::Update, Action::Delete];

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
}

impl Audience {
    /// Whether a subscriber with this auth may receive the message.
    pub fn admits(&self, auth: Option<&crate::auth::Auth>) -> bool {
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

    /// The most bytes one delivery of it takes on the wire, counting the
    /// event name as its topic (a subscription's `?…` suffix adds to that).
    pub fn wire_len(&self) -> usize {
        let longest = match &self.target {
            Target::Topics(topics) => topics.iter().map(|t| t.len()).max().unwrap_or(0),
            Target::User { event, .. } => event.len(),
        };
        frame::max_wire_len(longest, &self.data)
    }

    /// The same message, for `audience` only.
    pub fn for_audience(self, audience: Audience) -> Message {
        Message { audience, ..self }
    }

    /// A record event in collection `collection` (and its id, if known).
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
}

/// Parses a publish body into the messages it carries, in order.
pub fn parse(body: &[u8]) -> Result<Vec<Message>, ApiError> {
    let map = json_object(
        body,
        r#"{"topic":"…","data":…}, a record event or {"messages":[…]}"#,
    )?;
    if let Some(messages) = map.get("messages") {
        let Value::Array(items) = messages else {
            return Err(field_error(
                "messages",
                json_type_error("an array of messages"),
            ));
        };
        if items.is_empty() {
            return Err(field_error("messages", error::required()));
        }
        if items.len() > MAX_BATCH {
            return Err(field_error("messages", error::too_long(MAX_BATCH)));
        }
        let mut out = Vec::with_capacity(items.len());
        let mut errors = Map::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Object(m) => match one(m) {
                    Ok(msg) => out.push(msg),
                    Err(e) => {
                        errors.insert(i.to_string(), Value::Object(e));
                    }
                },
                _ => {
                    errors.insert(i.to_string(), json_type_error("an object"));
                }
            }
        }
        if !errors.is_empty() {
            return Err(field_error("messages", Value::Object(errors)));
        }
        Ok(out)
    } else {
        one(&map)
            .map(|m| vec![m])
            .map_err(|data| ApiError::validation(error::sorted(data)))
    }
}

fn field_error(name: &str, err: Value) -> ApiError {
    let mut data = Map::new();
    data.insert(name.to_owned(), err);
    ApiError::validation(error::sorted(data))
}

fn json_type_error(expected: &str) -> Value {
    serde_json::json!({"code": "validation_invalid_type", "message": format!("Must be {expected}.")})
}

/// One message object; the error is a map of field → problem.
fn one(map: &Map<String, Value>) -> Result<Message, Map<String, Value>> {
    let mut errors = Map::new();
    let audience = audience(map, &mut errors);
    match (target(map), audience) {
        (Ok(m), Some(a)) => Ok(m.for_audience(a)),
        (Ok(_), None) => Err(errors),
        (Err(mut more), _) => {
            more.extend(errors);
            Err(more)
        }
    }
}

/// The `audience` field: `"public"` (also when absent), `"superusers"`, or
/// `{"users": ["id", …]}`.
fn audience(map: &Map<String, Value>, errors: &mut Map<String, Value>) -> Option<Audience> {
    let invalid = || {
        serde_json::json!({
            "code": "validation_invalid_audience",
            "message": "Must be \"public\", \"superusers\" or {\"users\": [\"id\", …]}."
        })
    };
    let audience = match map.get("audience") {
        None | Some(Value::Null) => Some(Audience::Public),
        Some(Value::String(s)) if s == "public" => Some(Audience::Public),
        Some(Value::String(s)) if s == "superusers" => Some(Audience::Superusers),
        Some(Value::Object(o)) if o.len() == 1 => match o.get("users") {
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|id| id.as_str().filter(|s| !s.is_empty()))
                .collect::<Option<Vec<_>>>()
                .map(|ids| Audience::Users(UserIds::new(ids))),
            _ => None,
        },
        Some(_) => None,
    };
    if audience.is_none() {
        errors.insert("audience".into(), invalid());
    }
    audience
}

/// The message without its audience: a record event, a message for one
/// user, or a custom message.
fn target(map: &Map<String, Value>) -> Result<Message, Map<String, Value>> {
    let mut errors = Map::new();
    if map.contains_key("collection") || map.contains_key("record") {
        let collection = required_str(map, "collection", &mut errors);
        let collection_id = match map.get("collectionId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
            Some(_) => {
                errors.insert("collectionId".into(), json_type_error("a non-empty string"));
                None
            }
        };
        let action = required_str(map, "action", &mut errors).and_then(|name| {
            let action = Action::from_name(name);
            if action.is_none() {
                errors.insert(
                    "action".into(),
                    error::not_in(&Action::ALL.map(Action::as_str)),
                );
            }
            action
        });
        let record = match map.get("record") {
            Some(record @ Value::Object(r)) => match r.get("id") {
                Some(Value::String(id)) if !id.is_empty() => Some((record, id.as_str())),
                _ => {
                    errors.insert(
                        "record".into(),
                        serde_json::json!({"id": error::required()}),
                    );
                    None
                }
            },
            None | Some(Value::Null) => {
                errors.insert("record".into(), error::required());
                None
            }
            Some(_) => {
                errors.insert("record".into(), json_type_error("an object"));
                None
            }
        };
        for (name, value) in [("collection", collection), ("collectionId", collection_id)] {
            if value.is_some_and(|v| v.len() > MAX_TOPIC_BYTES) {
                errors.insert(name.into(), error::too_long(MAX_TOPIC_BYTES));
            }
        }
        match (collection, action, record, errors.is_empty()) {
            // `Value`'s Display is compact JSON, keys in the order given.
            (Some(c), Some(a), Some((record, id)), true) => Ok(Message::record(
                c,
                collection_id,
                a,
                id,
                record.to_string().as_bytes(),
            )),
            _ => Err(errors),
        }
    } else {
        let topic = required_str(map, "topic", &mut errors);
        if let Some(t) = topic {
            check_event_name(t, "topic", &mut errors);
        }
        let user = match map.get("userId") {
            None | Some(Value::Null) => None,
            Some(_) => required_str(map, "userId", &mut errors).map(|id| {
                let collection = match map.get("collectionId") {
                    None | Some(Value::Null) => None,
                    Some(_) => required_str(map, "collectionId", &mut errors),
                };
                (id, collection)
            }),
        };
        match (topic, errors.is_empty()) {
            (Some(t), true) => {
                let data = map.get("data").unwrap_or(&Value::Null).to_string();
                Ok(match user {
                    Some((id, collection)) => {
                        Message::to_user(id, collection, t, data.into_bytes())
                    }
                    None => Message::custom(t, data.into_bytes()),
                })
            }
            _ => Err(errors),
        }
    }
}

/// A request body that must be a JSON object; `shape` says what to send.
pub(crate) fn json_object(body: &[u8], shape: &str) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(format!(
            "The body must be a JSON object: {shape}."
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "The body is not valid JSON ({e}); send {shape}."
        ))),
    }
}

/// Whether `name`, given as field `field`, can be an event name (topics
/// become event names too): not too long, no line breaks. Records the error.
pub(crate) fn check_event_name(name: &str, field: &str, errors: &mut Map<String, Value>) -> bool {
    let error = if name.len() > MAX_TOPIC_BYTES {
        error::too_long(MAX_TOPIC_BYTES)
    } else if !frame::is_valid_name(name) {
        error::line_breaks()
    } else {
        return true;
    };
    errors.insert(field.into(), error);
    false
}

fn required_str<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    errors: &mut Map<String, Value>,
) -> Option<&'a str> {
    match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            errors.insert(name.into(), error::required());
            None
        }
        Some(_) => {
            errors.insert(name.into(), json_type_error("a string"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(m: &Message) -> Vec<&str> {
        match &m.target {
            Target::Topics(t) => t.iter().map(|t| &**t).collect(),
            Target::User { .. } => panic!("not a topic message: {m:?}"),
        }
    }

    #[test]
    fn audiences_and_user_messages() {
        let m = parse(br#"{"collection":"notes","action":"create","record":{"id":"n1"},"audience":{"users":["u1","u2"]}}"#).unwrap();
        assert_eq!(
            m[0].audience,
            Audience::Users(UserIds::new(["u2", "u1", "u2"]))
        );
        let m = parse(br#"{"topic":"t","audience":"superusers"}"#).unwrap();
        assert_eq!(m[0].audience, Audience::Superusers);
        let m = parse(br#"{"topic":"inbox","data":{"a":1},"userId":"u1"}"#).unwrap();
        assert_eq!(
            m[0],
            Message::to_user("u1", None, "inbox", br#"{"a":1}"#.to_vec())
        );
        for bad in [
            r#"{"topic":"t","audience":"everyone"}"#,
            r#"{"topic":"t","audience":{"users":"u1"}}"#,
            r#"{"topic":"t","audience":{"users":[1]}}"#,
        ] {
            let body = String::from_utf8(parse(bad.as_bytes()).unwrap_err().body()).unwrap();
            assert!(
                body.contains(r#""audience":{"code":"validation_invalid_audience""#),
                "{body}"
            );
        }
        let e = parse(br#"{"topic":"t","userId":""}"#).unwrap_err();
        assert!(
            String::from_utf8(e.body())
                .unwrap()
                .contains(r#""userId":{"code":"validation_required""#)
        );
        let auth = |superuser| crate::auth::Auth {
            id: "u1".into(),
            collection_id: "c".into(),
            collection_name: "users".into(),
            superuser,
        };
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
    fn custom_message_is_serialised_compactly() {
        let m = parse(
            br#"{"topic":"chat","data":{ "b" : 1, "a" : [1, 2.50, 12345678901234567890123] }}"#,
        )
        .unwrap();
        assert_eq!(topics(&m[0]), ["chat"]);
        assert_eq!(
            &*m[0].data,
            br#"{"b":1,"a":[1,2.50,12345678901234567890123]}"#
        );
        let m = parse(br#"{"topic":"chat"}"#).unwrap();
        assert_eq!(&*m[0].data, b"null");
    }

    #[test]
    fn record_event_topics_and_payload() {
        let m = parse(br#"{"collection":"posts","collectionId":"pbc_1","action":"create","record":{"title":"x","id":"R1"}}"#).unwrap();
        assert_eq!(
            topics(&m[0]),
            [
                "posts/R1", "posts/*", "posts", "pbc_1/R1", "pbc_1/*", "pbc_1"
            ]
        );
        assert_eq!(
            &*m[0].data,
            br#"{"record":{"title":"x","id":"R1"},"action":"create"}"#
        );
        let m = parse(br#"{"collection":"posts","action":"delete","record":{"id":"R1"}}"#).unwrap();
        assert_eq!(topics(&m[0]), ["posts/R1", "posts/*", "posts"]);
    }

    #[test]
    fn batch_keeps_order() {
        let m = parse(br#"{"messages":[{"topic":"a","data":1},{"topic":"b","data":2}]}"#).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(topics(&m[1]), ["b"]);
    }

    #[test]
    fn errors_name_the_fields() {
        let e = parse(br#"{"data":1}"#).unwrap_err();
        assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            r#"{"data":{"topic":{"code":"validation_required","message":"Cannot be blank."}},"message":"Something went wrong while processing your request.","status":400}"#
        );
        let e = parse(br#"{"collection":"posts","action":"nope","record":{}}"#).unwrap_err();
        let body = String::from_utf8(e.body()).unwrap();
        assert!(
            body.contains(r#""action":{"code":"validation_not_in""#),
            "{body}"
        );
        assert!(
            body.contains(r#""record":{"id":{"code":"validation_required""#),
            "{body}"
        );
        let e = parse(br#"{"messages":[{"topic":"a"},{"topic":""},3]}"#).unwrap_err();
        let body = String::from_utf8(e.body()).unwrap();
        assert!(
            body.starts_with(r#"{"data":{"messages":{"1":{"topic":"#),
            "{body}"
        );
        assert!(
            body.contains(r#""2":{"code":"validation_invalid_type""#),
            "{body}"
        );
        assert_eq!(parse(b"[1]").unwrap_err().status, 400);
        assert!(
            parse(b"{oops")
                .unwrap_err()
                .message
                .contains("not valid JSON")
        );
    }
}
