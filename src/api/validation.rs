//! PocketBase's validation vocabulary: the per-field error objects that fill
//! an [`ApiError`]'s `data` (`{"code":"validation_required","message":"Cannot
//! be blank."}` …), and the checks several endpoints share.
//!
//! Nested `data` maps are built with sorted keys, as PocketBase (Go)
//! serialises them, so bodies match byte for byte.

use crate::frame;
use crate::http::error::ApiError;
use serde_json::{Map, Value, json};

/// The longest topic (subscription string) PocketBase accepts, in bytes;
/// published topics and event names obey it too.
pub const MAX_TOPIC_BYTES: usize = 2500;

/// An event name with a line break (see [`frame::is_valid_name`]).
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

/// The type error for a field that is not `expected`.
pub fn invalid_type(expected: &str) -> Value {
    json!({"code": "validation_invalid_type", "message": format!("Must be {expected}.")})
}

/// A 400 naming one field.
pub fn field_error(name: &str, err: Value) -> ApiError {
    let mut data = Map::new();
    data.insert(name.to_owned(), err);
    ApiError::validation(sorted(data))
}

/// A request body that must be a JSON object; `shape` says what to send.
pub fn json_object(body: &[u8], shape: &str) -> Result<Map<String, Value>, ApiError> {
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
pub fn check_event_name(name: &str, field: &str, errors: &mut Map<String, Value>) -> bool {
    let error = if name.len() > MAX_TOPIC_BYTES {
        too_long(MAX_TOPIC_BYTES)
    } else if !frame::is_valid_name(name) {
        line_breaks()
    } else {
        return true;
    };
    errors.insert(field.into(), error);
    false
}

/// The non-empty string in field `name`, or the error recorded.
pub fn required_str<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    errors: &mut Map<String, Value>,
) -> Option<&'a str> {
    match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            errors.insert(name.into(), required());
            None
        }
        Some(_) => {
            errors.insert(name.into(), invalid_type("a string"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
