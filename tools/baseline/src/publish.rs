//! `POST /api/publish`: deliver a message to every matching subscription.
//!
//! Body: `{"topic": "chat", "data": <any JSON>}`, or a batch
//! `{"messages": [{"topic": …, "data": …}, …]}` published in order (when
//! `messages` is present, a top-level `topic` is ignored). `data` is serialised
//! once, compactly, with serde_json (key order as received); a missing or `null`
//! `data` is sent as `null`. The answer is `200 {"recipients": N}` where N counts
//! the messages queued: one per matching subscription, summed over the batch.
//!
//! Errors use PocketBase's shape; a missing topic mirrors the reference
//! `notify.pb.js` hook: `{"data":{"topic":{"code":"validation_required",…}},
//! "message":"Missing or invalid topic.","status":400}` (for a batch the field is
//! nested as `messages.<index>.topic`). Content-Type is not checked: this is an
//! internal, server-to-server endpoint.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::broker::Publication;
use crate::error::{ApiError, BAD_REQUEST_MESSAGE, FieldError};
use crate::server::AppState;

const MISSING_TOPIC_MESSAGE: &str = "Missing or invalid topic.";

/// Why a publish body was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Shape(&'static str),
    #[error("missing topic")]
    MissingTopic,
    #[error("message {0} has no topic")]
    MissingTopicInBatch(usize),
}

impl From<PublishError> for ApiError {
    fn from(err: PublishError) -> Self {
        let topic_required = || BTreeMap::from([("topic".to_owned(), FieldError::required())]);
        match err {
            PublishError::Json(_) | PublishError::Shape(_) => ApiError::undecodable(),
            PublishError::MissingTopic => {
                ApiError::validation(MISSING_TOPIC_MESSAGE, topic_required())
            }
            PublishError::MissingTopicInBatch(index) => {
                let item =
                    BTreeMap::from([(index.to_string(), FieldError::Nested(topic_required()))]);
                ApiError::validation(
                    MISSING_TOPIC_MESSAGE,
                    BTreeMap::from([("messages".to_owned(), FieldError::Nested(item))]),
                )
            }
        }
    }
}

/// The handler.
pub async fn publish(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| ApiError::new(rejection.status(), BAD_REQUEST_MESSAGE))?;
    let batch = parse(&body).inspect_err(|err| tracing::debug!(%err, "publish refused"))?;
    let recipients = state.broker.publish(&batch);
    let json = format!(r#"{{"recipients":{recipients}}}"#);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response())
}

/// Parses and validates a publish body into the publications to send, in order.
///
/// Walks a `serde_json::Value` rather than a derived struct: serde's derive would
/// also accept a JSON array in place of an object (`["chat", 1]`), which must be
/// a 400 here, and `data` has to become a `Value` anyway.
pub fn parse(body: &[u8]) -> Result<Vec<Publication>, PublishError> {
    let Value::Object(mut root) = serde_json::from_slice(body)? else {
        return Err(PublishError::Shape("the body is not a JSON object"));
    };
    match root.remove("messages") {
        None | Some(Value::Null) => Ok(vec![publication(root)?.ok_or(PublishError::MissingTopic)?]),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::Object(item) => {
                    publication(item)?.ok_or(PublishError::MissingTopicInBatch(index))
                }
                _ => Err(PublishError::Shape("a message is not a JSON object")),
            })
            .collect(),
        Some(_) => Err(PublishError::Shape("messages is not an array")),
    }
}

/// One `{topic, data}` object; `Ok(None)` when the topic is missing or blank.
fn publication(
    mut fields: serde_json::Map<String, Value>,
) -> Result<Option<Publication>, PublishError> {
    let topic = match fields.remove("topic") {
        Some(Value::String(topic)) if !topic.is_empty() => topic,
        None | Some(Value::Null) | Some(Value::String(_)) => return Ok(None),
        Some(_) => return Err(PublishError::Shape("topic is not a string")),
    };
    // `Value`'s `Display` is compact JSON; object keys keep the received order
    // (serde_json's `preserve_order`).
    let data = fields.remove("data").unwrap_or(Value::Null).to_string();
    Ok(Some(Publication::new(topic, Bytes::from(data))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_batch() {
        assert_eq!(
            parse(br#"{"topic":"a","data":{"z":1, "a" : [1, 2]}}"#)
                .expect("ok")
                .len(),
            1
        );
        assert_eq!(
            parse(br#"{"messages":[{"topic":"a"},{"topic":"b","data":1}]}"#)
                .expect("ok")
                .len(),
            2
        );
        assert_eq!(parse(br#"{"messages":[]}"#).expect("ok").len(), 0);
        assert!(matches!(
            parse(br#"{"data":1}"#),
            Err(PublishError::MissingTopic)
        ));
        assert!(matches!(
            parse(br#"{"topic":""}"#),
            Err(PublishError::MissingTopic)
        ));
        assert!(matches!(
            parse(br#"{"messages":[{"topic":"a"},{"data":1}]}"#),
            Err(PublishError::MissingTopicInBatch(1))
        ));
        assert!(matches!(parse(b"{"), Err(PublishError::Json(_))));
        for shape in [
            &br#"{"topic":1}"#[..],
            br#"["t",1]"#,
            br#"{"messages":[["t",1]]}"#,
            br#"{"messages":{}}"#,
        ] {
            assert!(matches!(parse(shape), Err(PublishError::Shape(_))));
        }
    }
}
