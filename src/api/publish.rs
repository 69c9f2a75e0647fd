//! `POST /api/publish`: what a backend sends, decoded into [`Message`]s and
//! handed to the [`Broker`](crate::Broker), which refuses what no client could
//! take (413) and answers with the number of deliveries queued.
//!
//! These body shapes are accepted:
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
//! subscribers (superusers always). A record event may also carry its
//! collection's `rules` (`{"list": …, "view": …}`, as PocketBase stores them)
//! and `schema` (`{"fields": […]}`): the edge then evaluates the rules per
//! subscriber, as PocketBase's realtime does, and the audience decides only
//! for a rule it cannot evaluate.
//!
//! Data is serialised here, once, compactly; every core and every recipient
//! shares those bytes.

use super::caller::Caller;
use super::validation::{
    self, MAX_TOPIC_BYTES, check_event_name, field_error, invalid_type, required_str,
};
use crate::broker::BrokerError;
use crate::http::error::ApiError;
use crate::message::{
    Action, Audience, CollectionRules, Message, PrivateFields, RecordEvent, Rule, RuleTexts,
    UserIds,
};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::HashSet;

/// Most messages one request may carry.
pub const MAX_BATCH: usize = 10_000;

/// Answers `POST /api/publish`: `{"recipients":N}`, the deliveries queued on
/// this node; in a cluster whose Redis is unreachable, with `clusterError`
/// saying that the other nodes did not get it (not an error status: what
/// was delivered here stays delivered, a retry would duplicate it).
pub async fn handle(caller: &Caller<'_>, body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    let messages = super::offload::decode(body, decode_messages).await?;
    recipients(caller.broker.publish_messages(messages).await)
}

/// The answer to a publish (or broadcast) the broker made.
pub fn recipients(published: Result<u64, BrokerError>) -> Result<Vec<u8>, ApiError> {
    let answer = match published {
        Ok(n) => serde_json::json!({"recipients": n}),
        Err(BrokerError::ClusterUnreachable { recipients, error }) => serde_json::json!({
            "recipients": recipients,
            "clusterError": format!("{error}: delivered on this node only."),
        }),
        Err(e) => return Err(e.into()),
    };
    Ok(answer.to_string().into_bytes())
}

/// Parses a publish body into the messages it carries, in order.
pub fn decode_messages(body: &[u8]) -> Result<Vec<Message>, ApiError> {
    let shape = r#"{"topic":"…","data":…}, a record event or {"messages":[…]}"#;
    let top = match serde_json::from_slice::<&RawValue>(body).map(Object::read) {
        Ok(Ok(Some(top))) => top,
        Ok(Ok(None)) => {
            return Err(ApiError::bad_request(format!(
                "The body must be a JSON object: {shape}."
            )));
        }
        Ok(Err(e)) | Err(e) => {
            return Err(ApiError::bad_request(format!(
                "The body is not valid JSON ({e}); send {shape}."
            )));
        }
    };
    let Some(messages) = top.messages else {
        return one(&top)
            .map(|m| vec![m])
            .map_err(|data| ApiError::validation(validation::sorted(data)));
    };
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(messages.get()) else {
        return Err(field_error(
            "messages",
            invalid_type("an array of messages"),
        ));
    };
    if items.is_empty() {
        return Err(field_error("messages", validation::required()));
    }
    if items.len() > MAX_BATCH {
        return Err(field_error("messages", validation::too_long(MAX_BATCH)));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut errors = Map::new();
    for (i, item) in items.into_iter().enumerate() {
        match Object::read(item) {
            Ok(Some(m)) => match one(&m) {
                Ok(msg) => out.push(msg),
                Err(e) => {
                    errors.insert(i.to_string(), Value::Object(e));
                }
            },
            _ => {
                errors.insert(i.to_string(), invalid_type("an object"));
            }
        }
    }
    if !errors.is_empty() {
        return Err(field_error("messages", Value::Object(errors)));
    }
    Ok(out)
}

/// A message object, its fields decoded but for `data` (and a batch's
/// `messages`), kept as raw JSON text: a publish's data can be megabytes
/// that are only ever compacted, never needed as a tree (which costs many
/// times the text's size).
struct Object<'a> {
    map: Map<String, Value>,
    data: Option<&'a RawValue>,
    messages: Option<&'a RawValue>,
}

impl<'a> Object<'a> {
    /// `None` when the JSON is not an object.
    fn read(raw: &'a RawValue) -> Result<Option<Object<'a>>, serde_json::Error> {
        if !raw.get().starts_with('{') {
            return Ok(None);
        }
        let fields: Vec<(String, &'a RawValue)> =
            serde_json::from_str::<RawFields<'a>>(raw.get())?.0;
        let mut object = Object {
            map: Map::new(),
            data: None,
            messages: None,
        };
        for (key, value) in fields {
            match key.as_str() {
                "data" => object.data = Some(value),
                "messages" => object.messages = Some(value),
                _ => {
                    object.map.insert(key, serde_json::from_str(value.get())?);
                }
            }
        }
        Ok(Some(object))
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The message's data, compact (`null` when absent); `None` when it is
    /// nested deeper than clients' parsers are expected to take.
    fn data(&self) -> Option<Vec<u8>> {
        self.data
            .map_or_else(|| Some(b"null".to_vec()), |d| compact(d.get()))
    }
}

/// An object's fields in order, values as raw JSON.
struct RawFields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawFields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Fields<'a> {
            type Value = RawFields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawFields<'a>, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'a RawValue>()? {
                    fields.push(entry);
                }
                Ok(RawFields(fields))
            }
        }
        d.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// How deeply data may nest: serde_json's own limit, which the data's
/// receivers (and PocketBase, whose limit is higher) handle.
const MAX_DATA_DEPTH: usize = 128;

/// Valid JSON text without the whitespace between its tokens, and its
/// strings written as serde_json (and Go) write them: escapes decoded but
/// for `"`, `\\` and control characters, so `"\u00fc"` goes out as `"ü"`.
/// Numbers are kept byte for byte. Linear, and no tree. `None` when it nests
/// deeper than [`MAX_DATA_DEPTH`].
fn compact(json: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped, mut depth) = (false, false, 0usize);
    // Where the current string's opening quote is, and whether it has an escape.
    let (mut string_start, mut string_escaped) = (0, false);
    for &b in json.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
                string_escaped = true;
            } else if b == b'"' {
                in_string = false;
                if string_escaped {
                    rewrite_string(&mut out, string_start);
                }
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DATA_DEPTH {
                    return None;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' => {
                in_string = true;
                (string_start, string_escaped) = (out.len(), false);
            }
            _ => {}
        }
        out.push(b);
    }
    Some(out)
}

/// Rewrites the string literal at `out[start..]` (with escapes) in
/// serde_json's canonical form; left as it is if it does not decode (a lone
/// surrogate escape, which no encoder would write back).
fn rewrite_string(out: &mut Vec<u8>, start: usize) {
    if let Ok(text) = serde_json::from_slice::<String>(&out[start..]) {
        out.truncate(start);
        // Writing a String into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &text);
    }
}

/// One message object; the error is a map of field → problem.
fn one(map: &Object<'_>) -> Result<Message, Map<String, Value>> {
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
fn audience(map: &Object<'_>, errors: &mut Map<String, Value>) -> Option<Audience> {
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

/// A record event's `rules`: `{"list": <rule>, "view": <rule>}`, each a
/// PocketBase rule (a filter, `""` for everyone, `null` for superusers only),
/// and optionally its collection's `schema` (`{"fields": […]}` as PocketBase
/// describes a collection) so that rules compile with the field types.
fn rules(map: &Object<'_>, errors: &mut Map<String, Value>) -> Option<CollectionRules> {
    let rules = match map.get("rules") {
        None | Some(Value::Null) => return None,
        Some(Value::Object(rules)) => rules,
        Some(_) => {
            errors.insert("rules".into(), invalid_type("an object"));
            return None;
        }
    };
    let mut rule = |name: &str| match rules.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(text)) => Some(Some(text.as_str())),
        Some(_) => {
            errors.insert(
                "rules".into(),
                serde_json::json!({name: invalid_type("a string or null")}),
            );
            None
        }
    };
    let texts = RuleTexts {
        list: rule("list")?,
        view: rule("view")?,
        manage: rule("manage")?,
    };
    let schema = match map.get("schema") {
        None | Some(Value::Null) => None,
        Some(schema @ Value::Object(_)) => Some(schema.clone()),
        Some(_) => {
            errors.insert("schema".into(), invalid_type("an object"));
            return None;
        }
    };
    Some(CollectionRules::new(texts, schema))
}

/// A record event's fields for some subscribers only: `hidden` (an object of
/// the hidden fields, for superusers) and `email` (an auth record's email
/// that is not visible to everyone, for superusers, its own user and its
/// managers), as PocketBase's realtime sends them.
fn private(map: &Object<'_>, errors: &mut Map<String, Value>) -> Option<PrivateFields> {
    let hidden = match map.get("hidden") {
        None | Some(Value::Null) => None,
        Some(Value::Object(hidden)) => Some(hidden.clone()),
        Some(_) => {
            errors.insert("hidden".into(), invalid_type("an object"));
            return None;
        }
    };
    let email = match map.get("email") {
        None | Some(Value::Null) => None,
        Some(email @ Value::String(_)) => Some(email.clone()),
        Some(_) => {
            errors.insert("email".into(), invalid_type("a string"));
            return None;
        }
    };
    (hidden.is_some() || email.is_some()).then(|| PrivateFields {
        hidden: hidden.unwrap_or_default(),
        email,
    })
}

/// Logs, once per rule text (and thread), a rule the edge cannot evaluate:
/// its records then go by the message's audience, which the operator should
/// know about (and may want to set, e.g. the forwarder's
/// `RINGCAST_AUDIENCE_<COLLECTION>`).
fn warn_fallbacks(collection: &str, rules: &CollectionRules) {
    /// Distinct texts remembered; past it, no more warnings (a publisher
    /// sending ever new rules must not grow memory).
    const MAX_WARNED: usize = 1024;
    thread_local! {
        static WARNED: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    }
    for (which, rule) in [("list", &rules.list), ("view", &rules.view)] {
        let Rule::Fallback { text, reason } = rule else {
            continue;
        };
        WARNED.with_borrow_mut(|warned| {
            if warned.len() < MAX_WARNED && warned.insert(text.clone()) {
                tracing::warn!(
                    collection,
                    which,
                    rule = %text,
                    %reason,
                    "a collection rule cannot be evaluated at the edge; its records go by the message's audience"
                );
            }
        });
    }
}

/// The message without its audience: a record event, a message for one
/// user, or a custom message.
fn target(map: &Object<'_>) -> Result<Message, Map<String, Value>> {
    let mut errors = Map::new();
    if map.contains_key("collection") || map.contains_key("record") {
        let collection = required_str(&map.map, "collection", &mut errors);
        let collection_id = match map.get("collectionId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
            Some(_) => {
                errors.insert("collectionId".into(), invalid_type("a non-empty string"));
                None
            }
        };
        let action = required_str(&map.map, "action", &mut errors).and_then(|name| {
            let action = Action::from_name(name);
            if action.is_none() {
                errors.insert(
                    "action".into(),
                    validation::not_in(&Action::ALL.map(Action::as_str)),
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
                        serde_json::json!({"id": validation::required()}),
                    );
                    None
                }
            },
            None | Some(Value::Null) => {
                errors.insert("record".into(), validation::required());
                None
            }
            Some(_) => {
                errors.insert("record".into(), invalid_type("an object"));
                None
            }
        };
        // Each becomes part of an event name (`<collection>/<record id>`).
        for (name, value) in [("collection", collection), ("collectionId", collection_id)] {
            if let Some(value) = value {
                check_event_name(value, name, &mut errors);
            }
        }
        if let Some((_, id)) = record {
            let mut id_errors = Map::new();
            let longest = collection
                .map_or(0, str::len)
                .max(collection_id.map_or(0, str::len));
            let room = MAX_TOPIC_BYTES.saturating_sub(longest + 1);
            if check_event_name(id, "id", &mut id_errors) && id.len() > room {
                id_errors.insert("id".into(), validation::too_long(room));
            }
            if !id_errors.is_empty() {
                errors.insert("record".into(), Value::Object(id_errors));
            }
        }
        let rules = rules(map, &mut errors);
        let private = private(map, &mut errors);
        if let (Some(c), Some(r)) = (collection, &rules) {
            warn_fallbacks(c, r);
        }
        match (collection, action, record, errors.is_empty()) {
            (Some(c), Some(a), Some((record, id)), true) => {
                // `Value`'s Display is compact JSON, keys in the order given.
                let json = record.to_string();
                let event = RecordEvent {
                    collection: c.into(),
                    collection_id: collection_id.map(Into::into),
                    record_id: id.into(),
                    action: a,
                    record: record.clone(),
                    rules,
                    private,
                };
                Ok(Message::record_event(event, json.as_bytes()))
            }
            _ => Err(errors),
        }
    } else {
        let topic = required_str(&map.map, "topic", &mut errors);
        if let Some(t) = topic {
            check_event_name(t, "topic", &mut errors);
        }
        let user = match map.get("userId") {
            None | Some(Value::Null) => None,
            Some(_) => required_str(&map.map, "userId", &mut errors).map(|id| {
                let collection = match map.get("collectionId") {
                    None | Some(Value::Null) => None,
                    Some(_) => required_str(&map.map, "collectionId", &mut errors),
                };
                (id, collection)
            }),
        };
        let data = map.data();
        if data.is_none() {
            errors.insert(
                "data".into(),
                serde_json::json!({
                    "code": "validation_invalid_format",
                    "message": format!("Must not be nested more than {MAX_DATA_DEPTH} deep."),
                }),
            );
        }
        match (topic, data, errors.is_empty()) {
            (Some(t), Some(data), true) => Ok(match user {
                Some((id, collection)) => Message::to_user(id, collection, t, data),
                None => Message::custom(t, data),
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Target;

    fn topics(m: &Message) -> Vec<&str> {
        match &m.target {
            Target::Topics(t) => t.iter().map(|t| &**t).collect(),
            _ => panic!("not a topic message: {m:?}"),
        }
    }

    #[test]
    fn audiences_and_user_messages() {
        let m = decode_messages(br#"{"collection":"notes","action":"create","record":{"id":"n1"},"audience":{"users":["u1","u2"]}}"#).unwrap();
        assert_eq!(
            m[0].audience,
            Audience::Users(UserIds::new(["u2", "u1", "u2"]))
        );
        let m = decode_messages(br#"{"topic":"t","audience":"superusers"}"#).unwrap();
        assert_eq!(m[0].audience, Audience::Superusers);
        let m = decode_messages(br#"{"topic":"inbox","data":{"a":1},"userId":"u1"}"#).unwrap();
        assert_eq!(
            m[0],
            Message::to_user("u1", None, "inbox", br#"{"a":1}"#.to_vec())
        );
        for bad in [
            r#"{"topic":"t","audience":"everyone"}"#,
            r#"{"topic":"t","audience":{"users":"u1"}}"#,
            r#"{"topic":"t","audience":{"users":[1]}}"#,
        ] {
            let body =
                String::from_utf8(decode_messages(bad.as_bytes()).unwrap_err().body()).unwrap();
            assert!(
                body.contains(r#""audience":{"code":"validation_invalid_audience""#),
                "{body}"
            );
        }
        let e = decode_messages(br#"{"topic":"t","userId":""}"#).unwrap_err();
        assert!(
            String::from_utf8(e.body())
                .unwrap()
                .contains(r#""userId":{"code":"validation_required""#)
        );
    }

    #[test]
    fn custom_message_is_serialised_compactly() {
        let m = decode_messages(
            br#"{"topic":"chat","data":{ "b" : 1, "a" : [1, 2.50, 12345678901234567890123] }}"#,
        )
        .unwrap();
        assert_eq!(topics(&m[0]), ["chat"]);
        assert_eq!(
            &*m[0].data,
            br#"{"b":1,"a":[1,2.50,12345678901234567890123]}"#
        );
        let m = decode_messages(br#"{"topic":"chat"}"#).unwrap();
        assert_eq!(&*m[0].data, b"null");
    }

    #[test]
    fn record_event_topics_and_payload() {
        let m = decode_messages(br#"{"collection":"posts","collectionId":"pbc_1","action":"create","record":{"title":"x","id":"R1"}}"#).unwrap();
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
        let m =
            decode_messages(br#"{"collection":"posts","action":"delete","record":{"id":"R1"}}"#)
                .unwrap();
        assert_eq!(topics(&m[0]), ["posts/R1", "posts/*", "posts"]);
    }

    #[test]
    fn record_event_names_are_checked_like_topics() {
        // Found by fuzz/publish_body: each becomes part of an event name.
        let e = decode_messages(
            br#"{"collection":"posts\nevent:x","collectionId":"pbc\r","action":"create","record":{"id":"R\n1"}}"#,
        )
        .unwrap_err();
        let body = String::from_utf8(e.body()).unwrap();
        for field in [
            r#""collection":{"#,
            r#""collectionId":{"#,
            r#""record":{"id":{"#,
        ] {
            assert!(body.contains(field), "{field} in {body}");
        }
        let long = format!(
            r#"{{"collection":"posts","action":"create","record":{{"id":"{}"}}}}"#,
            "r".repeat(2495)
        );
        let body = String::from_utf8(decode_messages(long.as_bytes()).unwrap_err().body()).unwrap();
        assert!(
            body.contains(r#""record":{"id":{"code":"validation_length_too_long""#),
            "{body}"
        );
    }

    #[test]
    fn batch_keeps_order() {
        let m = decode_messages(br#"{"messages":[{"topic":"a","data":1},{"topic":"b","data":2}]}"#)
            .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(topics(&m[1]), ["b"]);
    }

    #[test]
    fn errors_name_the_fields() {
        let e = decode_messages(br#"{"data":1}"#).unwrap_err();
        assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            r#"{"data":{"topic":{"code":"validation_required","message":"Cannot be blank."}},"message":"Something went wrong while processing your request.","status":400}"#
        );
        let e =
            decode_messages(br#"{"collection":"posts","action":"nope","record":{}}"#).unwrap_err();
        let body = String::from_utf8(e.body()).unwrap();
        assert!(
            body.contains(r#""action":{"code":"validation_not_in""#),
            "{body}"
        );
        assert!(
            body.contains(r#""record":{"id":{"code":"validation_required""#),
            "{body}"
        );
        let e = decode_messages(br#"{"messages":[{"topic":"a"},{"topic":""},3]}"#).unwrap_err();
        let body = String::from_utf8(e.body()).unwrap();
        assert!(
            body.starts_with(r#"{"data":{"messages":{"1":{"topic":"#),
            "{body}"
        );
        assert!(
            body.contains(r#""2":{"code":"validation_invalid_type""#),
            "{body}"
        );
        assert_eq!(decode_messages(b"[1]").unwrap_err().status, 400);
        assert!(
            decode_messages(b"{oops")
                .unwrap_err()
                .message
                .contains("not valid JSON")
        );
    }

    #[test]
    fn data_is_compacted_without_a_tree() {
        assert_eq!(
            compact(r#" { "a b" : [ 1 , 2.50 ] , "c" : "x \" y \\" , "d" : null } "#),
            Some(br#"{"a b":[1,2.50],"c":"x \" y \\","d":null}"#.to_vec())
        );
        assert_eq!(
            compact(r#"["\u00fc\/\u0001\t", "\ud83d\ude00", "\ud800"]"#),
            Some("[\"ü/\\u0001\\t\",\"😀\",\"\\ud800\"]".as_bytes().to_vec()),
            "escapes decoded as serde_json writes strings; a lone surrogate kept"
        );
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert_eq!(compact(&deep), None);
        let deep = format!(r#"{{"topic":"t","data":{deep}}}"#);
        let e = decode_messages(deep.as_bytes()).unwrap_err();
        assert!(
            String::from_utf8(e.body())
                .unwrap()
                .contains("nested more than 128")
        );
        let m = decode_messages(br#"{"topic":"t","data":"  spaced  "}"#).unwrap();
        assert_eq!(&*m[0].data, br#""  spaced  ""#);
    }
}
