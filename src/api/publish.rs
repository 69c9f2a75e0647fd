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
//! subscribers (superusers always): this is how ringcast applies what
//! PocketBase's list and view rules decide, without evaluating rules itself.
//!
//! Data is serialised here, once, compactly; every core and every recipient
//! shares those bytes.

use super::caller::Caller;
use super::validation::{
    self, MAX_TOPIC_BYTES, check_event_name, field_error, invalid_type, json_object, required_str,
};
use crate::broker::BrokerError;
use crate::http::error::ApiError;
use crate::message::{Action, Audience, CollectionRules, Message, RecordEvent, UserIds};
use serde_json::{Map, Value};

/// Most messages one request may carry.
pub const MAX_BATCH: usize = 10_000;

/// Answers `POST /api/publish`: `{"recipients":N}`, the deliveries queued on
/// this node; in a cluster whose Redis is unreachable, with `clusterError`
/// saying that the other nodes did not get it (not an error status: what
/// was delivered here stays delivered, a retry would duplicate it).
pub async fn handle(caller: &Caller<'_>, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let messages = decode_messages(body)?;
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
    let map = json_object(
        body,
        r#"{"topic":"…","data":…}, a record event or {"messages":[…]}"#,
    )?;
    if let Some(messages) = map.get("messages") {
        let Value::Array(items) = messages else {
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
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Object(m) => match one(m) {
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
    } else {
        one(&map)
            .map(|m| vec![m])
            .map_err(|data| ApiError::validation(validation::sorted(data)))
    }
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

/// A record event's `rules`: `{"list": <rule>, "view": <rule>}`, each a
/// PocketBase rule (a filter, `""` for everyone, `null` for superusers only),
/// and optionally its collection's `schema` (`{"fields": […]}` as PocketBase
/// describes a collection) so that rules compile with the field types.
fn rules(map: &Map<String, Value>, errors: &mut Map<String, Value>) -> Option<CollectionRules> {
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
    let (list, view) = (rule("list")?, rule("view")?);
    let schema = match map.get("schema") {
        None | Some(Value::Null) => None,
        Some(schema @ Value::Object(_)) => Some(schema.clone()),
        Some(_) => {
            errors.insert("schema".into(), invalid_type("an object"));
            return None;
        }
    };
    Some(CollectionRules::new(list, view, schema))
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
                errors.insert("collectionId".into(), invalid_type("a non-empty string"));
                None
            }
        };
        let action = required_str(map, "action", &mut errors).and_then(|name| {
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
        for (name, value) in [("collection", collection), ("collectionId", collection_id)] {
            if value.is_some_and(|s| s.len() > MAX_TOPIC_BYTES) {
                errors.insert(name.into(), validation::too_long(MAX_TOPIC_BYTES));
            }
        }
        let rules = rules(map, &mut errors);
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
                };
                Ok(Message::record_event(event, json.as_bytes()))
            }
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
}
