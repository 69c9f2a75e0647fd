//! `ApiError`: every error a client can be answered with, in PocketBase's
//! JSON shape `{"data":{…},"message":"…","status":N}`.
//!
//! Keys are written in that order and nested `data` maps are built with sorted
//! keys, as PocketBase (Go) serialises them, so bodies match byte for byte.

use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// PocketBase's generic message for decode and validation failures.
pub const SOMETHING_WENT_WRONG: &str = "Something went wrong while processing your request.";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: Cow<'static, str>,
    /// Per-field details; an empty map for most errors.
    pub data: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            message: message.into(),
            data: Map::new(),
        }
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, message)
    }

    /// A 400 carrying per-field validation errors.
    pub fn validation(data: Map<String, Value>) -> Self {
        ApiError {
            status: 400,
            message: SOMETHING_WENT_WRONG.into(),
            data,
        }
    }

    /// PocketBase's answer for any route or method it does not serve.
    pub fn not_found() -> Self {
        Self::new(404, "The requested resource wasn't found.")
    }

    /// The JSON body, exactly as PocketBase writes it.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.message.len());
        out.extend_from_slice(b"{\"data\":");
        // Serialising a Map of Values cannot fail.
        serde_json::to_writer(&mut out, &self.data).unwrap_or_default();
        out.extend_from_slice(b",\"message\":");
        serde_json::to_writer(&mut out, &self.message).unwrap_or_default();
        out.extend_from_slice(format!(",\"status\":{}}}", self.status).as_bytes());
        out
    }
}

/// An event name with a line break (see `frame::is_valid_name`).
pub fn line_breaks() -> Value {
    json!({"code": "validation_invalid_format", "message": "Must not contain line breaks."})
}

/// `{"code":"validation_required","message":"Cannot be blank."}`
pub fn required() -> Value {
    json!({"code": "validation_required", "message": "Cannot be blank."})
}

/// The error for a string or list longer than `max` (bytes or entries).
pub fn too_long(max: usize) -> Value {
    json!({
        "code": "validation_length_too_long",
        "message": format!("The length must be no more than {max}."),
        "params": {"max": max, "min": 0},
    })
}

/// The error for a length outside `min..=max`.
pub fn out_of_range(min: usize, max: usize) -> Value {
    json!({
        "code": "validation_length_out_of_range",
        "message": format!("The length must be between {min} and {max}."),
        "params": {"max": max, "min": min},
    })
}

/// The error for a value outside a fixed set.
pub fn not_in(allowed: &[&str]) -> Value {
    json!({
        "code": "validation_not_in",
        "message": format!("Must be one of: {}.", allowed.join(", ")),
    })
}

/// Sorts a map's keys as Go does (plain string order), recursively, so that
/// errors keyed by array index come out `"1","10","2"` like PocketBase's.
pub fn sorted(map: Map<String, Value>) -> Map<String, Value> {
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
        .into_iter()
        .map(|(k, v)| match v {
            Value::Object(inner) => (k, Value::Object(sorted(inner))),
            other => (k, other),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_pocketbase_key_order() {
        let err = ApiError::new(404, "Missing or invalid client id.");
        assert_eq!(
            String::from_utf8(err.body()).unwrap(),
            r#"{"data":{},"message":"Missing or invalid client id.","status":404}"#
        );
    }

    #[test]
    fn validation_body_is_sorted() {
        let mut data = Map::new();
        data.insert(
            "subscriptions".into(),
            json!({"2": too_long(2500), "10": too_long(2500)}),
        );
        data.insert("clientId".into(), required());
        let body = String::from_utf8(ApiError::validation(sorted(data)).body()).unwrap();
        assert_eq!(
            body,
            r#"{"data":{"clientId":{"code":"validation_required","message":"Cannot be blank."},"subscriptions":{"10":{"code":"validation_length_too_long","message":"The length must be no more than 2500.","params":{"max":2500,"min":0}},"2":{"code":"validation_length_too_long","message":"The length must be no more than 2500.","params":{"max":2500,"min":0}}}},"message":"Something went wrong while processing your request.","status":400}"#
        );
    }
}
