//! PocketBase's JSON error shape, `{"data":{…},"message":"…","status":N}`.
//!
//! Clients (the JS SDK, scripts written against PocketBase) read these bodies, so
//! they are reproduced byte for byte: keys in the order `data`, `message`,
//! `status`, and every nested map serialised with **sorted** keys, which is what
//! Go's `encoding/json` does for maps. `BTreeMap` gives us that ordering for free
//! and, unlike `serde_json::Map` (insertion-ordered here because the crate enables
//! `preserve_order`), cannot drift.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The message PocketBase uses for every 400 caused by the request body.
pub const BAD_REQUEST_MESSAGE: &str = "Something went wrong while processing your request.";

/// One entry of an error's `data` object, in ozzo-validation's shape: either the
/// failed rule of a field, or (for arrays and nested objects) a map of
/// index/field name → error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FieldError {
    Rule {
        code: &'static str,
        message: Cow<'static, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        params: Option<LengthParams>,
    },
    Nested(BTreeMap<String, FieldError>),
}

/// `params` of the length rules. Field order (`max` before `min`) is PocketBase's
/// sorted-key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LengthParams {
    pub max: usize,
    pub min: usize,
}

impl FieldError {
    /// `validation_required` — the field is missing or empty.
    pub fn required() -> Self {
        Self::Rule {
            code: "validation_required",
            message: Cow::Borrowed("Cannot be blank."),
            params: None,
        }
    }

    /// `validation_length_out_of_range` — a string outside `min..=max` bytes.
    pub fn length_out_of_range(min: usize, max: usize) -> Self {
        Self::Rule {
            code: "validation_length_out_of_range",
            message: Cow::Owned(format!("The length must be between {min} and {max}.")),
            params: Some(LengthParams { max, min }),
        }
    }

    /// `validation_length_too_long` — a string or list longer than `max`.
    pub fn length_too_long(max: usize) -> Self {
        Self::Rule {
            code: "validation_length_too_long",
            message: Cow::Owned(format!("The length must be no more than {max}.")),
            params: Some(LengthParams { max, min: 0 }),
        }
    }
}

/// An error answered to an HTTP client. Every handler returns this as its error
/// type so that nothing but PocketBase-shaped JSON ever leaves the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    data: BTreeMap<String, FieldError>,
    message: Cow<'static, str>,
    status: u16,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            data: BTreeMap::new(),
            message: message.into(),
            status: status.as_u16(),
        }
    }

    /// 400 with empty `data`: the body could not be decoded at all.
    pub fn undecodable() -> Self {
        Self::new(StatusCode::BAD_REQUEST, BAD_REQUEST_MESSAGE)
    }

    /// 400 with per-field errors (all failing fields reported together).
    pub fn validation(
        message: impl Into<Cow<'static, str>>,
        data: BTreeMap<String, FieldError>,
    ) -> Self {
        Self {
            data,
            message: message.into(),
            status: StatusCode::BAD_REQUEST.as_u16(),
        }
    }

    /// PocketBase's answer for unknown routes and, unusually, for known routes
    /// with the wrong method (404, not 405).
    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "The requested resource wasn't found.",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong while processing your request.",
        )
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The exact bytes of the JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings, integers and string-keyed maps cannot fail;
        // the fallback only exists so that this path has no panic in it.
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"data":{},"message":"Something went wrong while processing your request.","status":500}"#
                .to_vec()
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.to_json(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_are_sorted_as_strings() {
        let mut per_index = BTreeMap::new();
        for i in [2usize, 10, 1] {
            per_index.insert(i.to_string(), FieldError::length_too_long(2500));
        }
        let mut data = BTreeMap::new();
        data.insert("subscriptions".to_owned(), FieldError::Nested(per_index));
        data.insert("clientId".to_owned(), FieldError::required());
        let body = String::from_utf8(ApiError::validation(BAD_REQUEST_MESSAGE, data).to_json())
            .expect("utf-8");
        let too_long = r#"{"code":"validation_length_too_long","message":"The length must be no more than 2500.","params":{"max":2500,"min":0}}"#;
        assert_eq!(
            body,
            format!(
                r#"{{"data":{{"clientId":{{"code":"validation_required","message":"Cannot be blank."}},"subscriptions":{{"1":{too_long},"10":{too_long},"2":{too_long}}}}},"message":"Something went wrong while processing your request.","status":400}}"#
            )
        );
    }
}
