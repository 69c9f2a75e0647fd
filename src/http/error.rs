//! `ApiError`: every error a client can be answered with, in PocketBase's
//! JSON shape `{"data":{…},"message":"…","status":N}`.
//!
//! Keys are written in that order, as PocketBase (Go) serialises them, so
//! bodies match byte for byte. The field-level vocabulary that fills `data`
//! (`validation_required`, …) belongs to the endpoints: `crate::api::validation`.

use serde_json::{Map, Value};
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
}
