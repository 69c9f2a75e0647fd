//! `POST /api/realtime`: replace a client's subscription set.
//!
//! Decoding follows PocketBase's (Go `encoding/json`) leniency, because existing
//! clients rely on it: the body is read only when non-empty; the `Content-Type`
//! must start with `application/json`; keys match case-insensitively; unknown
//! keys are ignored; only the first JSON value is read (trailing bytes ignored);
//! `null` or a missing `subscriptions` means "none". Type mismatches are decode
//! errors. Form, multipart and XML bodies, which PocketBase also accepts, are not
//! supported (400).
//!
//! Processing order, first failure wins: decode (400, empty `data`) → validate
//! (400, per-field `data`) → look up the client (404) → same IP as the stream
//! (400) → replace the set (204).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::broker::BrokerError;
use crate::error::{ApiError, BAD_REQUEST_MESSAGE, FieldError};
use crate::server::AppState;

/// Limits of PocketBase's validation rules, in UTF-8 bytes.
const MAX_CLIENT_ID_LEN: usize = 255;
const MAX_SUBSCRIPTIONS: usize = 1000;
const MAX_TOPIC_LEN: usize = 2500;

/// The decoded request body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SubscribeRequest {
    pub client_id: String,
    pub subscriptions: Vec<String>,
}

/// Why a body could not be decoded. Only logged; the client always gets
/// PocketBase's generic 400.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported content type {0:?}")]
    UnsupportedContentType(String),
    #[error("no JSON value in the body")]
    NoValue,
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<BrokerError> for ApiError {
    fn from(err: BrokerError) -> Self {
        match err {
            BrokerError::UnknownClient => {
                ApiError::new(StatusCode::NOT_FOUND, "Missing or invalid client id.")
            }
            BrokerError::IpMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "Invalid realtime client.")
            }
        }
    }
}

/// The handler.
pub async fn subscribe(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|rejection| {
        tracing::debug!(%rejection, "cannot read subscribe body");
        ApiError::new(rejection.status(), BAD_REQUEST_MESSAGE)
    })?;
    let request = decode(&headers, &body).map_err(|err| {
        tracing::debug!(%err, "undecodable subscribe body");
        ApiError::undecodable()
    })?;
    validate(&request)?;

    let set: BTreeSet<Arc<str>> = request
        .subscriptions
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(Arc::from)
        .collect();
    state
        .broker
        .replace_subscriptions(&request.client_id, peer.ip(), set)
        .inspect_err(|err| tracing::debug!(%err, "subscribe refused"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Decodes the body as PocketBase would (see the module docs).
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<SubscribeRequest, DecodeError> {
    // PocketBase skips parsing entirely for an empty body, whatever the type;
    // validation then reports the blank clientId.
    if body.is_empty() {
        return Ok(SubscribeRequest::default());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(DecodeError::UnsupportedContentType(content_type));
    }
    // A stream deserializer reads the first value and leaves the rest alone,
    // like Go's json.Decoder.Decode. A `null` body decodes to "nothing set".
    let first = serde_json::Deserializer::from_slice(body)
        .into_iter::<Option<SubscribeRequest>>()
        .next()
        .ok_or(DecodeError::NoValue)??;
    Ok(first.unwrap_or_default())
}

/// Applies PocketBase's validation rules, reporting every failing field at once
/// (within a field, the first failing rule wins).
pub fn validate(request: &SubscribeRequest) -> Result<(), ApiError> {
    let mut errors = BTreeMap::new();

    if request.client_id.is_empty() {
        errors.insert("clientId".to_owned(), FieldError::required());
    } else if request.client_id.len() > MAX_CLIENT_ID_LEN {
        errors.insert(
            "clientId".to_owned(),
            FieldError::length_out_of_range(1, MAX_CLIENT_ID_LEN),
        );
    }

    if request.subscriptions.len() > MAX_SUBSCRIPTIONS {
        errors.insert(
            "subscriptions".to_owned(),
            FieldError::length_too_long(MAX_SUBSCRIPTIONS),
        );
    } else {
        let too_long: BTreeMap<String, FieldError> = request
            .subscriptions
            .iter()
            .enumerate()
            .filter(|(_, topic)| topic.len() > MAX_TOPIC_LEN)
            .map(|(i, _)| (i.to_string(), FieldError::length_too_long(MAX_TOPIC_LEN)))
            .collect();
        if !too_long.is_empty() {
            errors.insert("subscriptions".to_owned(), FieldError::Nested(too_long));
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(BAD_REQUEST_MESSAGE, errors))
    }
}

/// Field names, matched ASCII-case-insensitively like Go's `encoding/json`.
enum Field {
    ClientId,
    Subscriptions,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(if name.eq_ignore_ascii_case("clientId") {
                    Field::ClientId
                } else if name.eq_ignore_ascii_case("subscriptions") {
                    Field::Subscriptions
                } else {
                    Field::Other
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

impl<'de> Deserialize<'de> for SubscribeRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RequestVisitor;
        impl<'de> Visitor<'de> for RequestVisitor {
            type Value = SubscribeRequest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with clientId and subscriptions")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut request = SubscribeRequest::default();
                // Repeated keys: the last one wins, as in Go.
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::ClientId => {
                            request.client_id =
                                map.next_value::<Option<String>>()?.unwrap_or_default();
                        }
                        Field::Subscriptions => {
                            request.subscriptions =
                                map.next_value::<Option<Vec<String>>>()?.unwrap_or_default();
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(request)
            }
        }
        deserializer.deserialize_map(RequestVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers
    }

    #[test]
    fn lenient_decoding() {
        let h = json_headers();
        let req = decode(
            &h,
            br#"{"CLIENTID":"abc","Subscriptions":["a","b"],"x":[1]} garbage"#,
        )
        .expect("decodes");
        assert_eq!(req.client_id, "abc");
        assert_eq!(req.subscriptions, ["a", "b"]);
        assert_eq!(
            decode(&h, b"null").expect("decodes"),
            SubscribeRequest::default()
        );
        assert_eq!(
            decode(&h, br#"{"clientId":"a","subscriptions":null}"#)
                .expect("decodes")
                .subscriptions,
            Vec::<String>::new()
        );
        assert_eq!(
            decode(&HeaderMap::new(), b"").expect("empty"),
            SubscribeRequest::default()
        );
    }

    #[test]
    fn strict_types() {
        let h = json_headers();
        for body in [
            &br#"{"clientId":1}"#[..],
            br#"{"clientId":"a","subscriptions":"x"}"#,
            br#"{"clientId":"a","subscriptions":[1]}"#,
            br#"[]"#,
            br#"{"clientId":"#,
            b"   ",
        ] {
            assert!(
                decode(&h, body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            decode(&HeaderMap::new(), br#"{"clientId":"a"}"#),
            Err(DecodeError::UnsupportedContentType(_))
        ));
    }
}
