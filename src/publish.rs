//! `POST /api/publish`: what a backend sends, turned into [`Message`]s.
//!
//! Three body shapes are accepted:
//! - a custom message `{"topic": "chat", "data": <any JSON>}`;
//! - a record event `{"collection": "posts", "collectionId": "pbc_…",
//!   "action": "create"|"update"|"delete", "record": {"id": "…", …}}`, delivered
//!   as PocketBase does to `posts/<id>`, `posts/*`, `posts` and the same with the
//!   collection id, with payload `{"record":{…},"action":"…"}`;
//! - a batch `{"messages": [ … ]}` of either, published in order.
//!
//! Data is serialised here, once, compactly; every core and every recipient
//! shares those bytes.

use crate::http::error::{self, ApiError};
use crate::realtime::subscribe::MAX_TOPIC_BYTES;
use serde_json::{Map, Value};
use smallvec::SmallVec;

/// Most messages one request may carry.
pub const MAX_BATCH: usize = 10_000;

const ACTIONS: [&str; 3] = ["create", "update", "delete"];

/// A message ready for fan-out: the topics it is published to and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// A custom message has one topic; a record event up to six.
    pub topics: SmallVec<[Box<str>; 1]>,
    pub data: Box<[u8]>,
}

impl Message {
    /// A custom message: `data` is written verbatim as the event data.
    pub fn custom(topic: &str, data: impl Into<Box<[u8]>>) -> Message {
        Message {
            topics: SmallVec::from_iter([topic.into()]),
            data: data.into(),
        }
    }

    /// A record event in collection `collection` (and its id, if known).
    pub fn record(
        collection: &str,
        collection_id: Option<&str>,
        action: &str,
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
        data.extend_from_slice(action.as_bytes());
        data.extend_from_slice(b"\"}");
        Message {
            topics,
            data: data.into(),
        }
    }
}

/// Parses a publish body into the messages it carries, in order.
pub fn parse(body: &[u8]) -> Result<Vec<Message>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "The body is not valid JSON ({e}); send {{\"topic\":\"…\",\"data\":…}}, a record event or {{\"messages\":[…]}}."
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request(
            "The body must be a JSON object: {\"topic\":\"…\",\"data\":…}, a record event or {\"messages\":[…]}.",
        ));
    };
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
        let action = required_str(map, "action", &mut errors);
        if action.is_some_and(|a| !ACTIONS.contains(&a)) {
            errors.insert("action".into(), error::not_in(&ACTIONS));
        }
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
        if topic.is_some_and(|t| t.len() > MAX_TOPIC_BYTES) {
            errors.insert("topic".into(), error::too_long(MAX_TOPIC_BYTES));
        }
        match (topic, errors.is_empty()) {
            (Some(t), true) => {
                let data = map.get("data").unwrap_or(&Value::Null).to_string();
                Ok(Message::custom(t, data.into_bytes()))
            }
            _ => Err(errors),
        }
    }
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
        m.topics.iter().map(|t| &**t).collect()
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
