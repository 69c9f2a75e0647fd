//! The admin HTTP API: list, inspect, message and disconnect clients, and
//! broadcast — the [`Broker`](crate::Broker) over HTTP, for backends that
//! are not written in Rust. Same access rule as `POST /api/publish`
//! (`super::access`).
//!
//! - `GET /api/clients?page=&perPage=` — a page of clients, shaped like
//!   PocketBase's list responses;
//! - `GET /api/clients/{id}`, `DELETE /api/clients/{id}` (ends its stream);
//! - `POST /api/clients/{id}/send` with `{"event": "…", "data": …}`;
//! - `POST /api/broadcast` with `{"event": "…", "data": …}`.

use super::caller::Caller;
use super::validation::{self, check_event_name, json_object};
use crate::http::error::ApiError;
use crate::http::request::Head;
use crate::routes::AdminRoute;
use serde_json::{Map, Value, json};

/// PocketBase's list defaults.
const DEFAULT_PER_PAGE: usize = 30;
const MAX_PER_PAGE: usize = 1000;

/// What an admin request is answered with.
pub enum Reply {
    Json(Vec<u8>),
    NoContent,
}

/// Answers an admin request (access was checked on the head: [`super::admit`]).
pub async fn handle(
    caller: &Caller<'_>,
    route: AdminRoute<'_>,
    head: &Head,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let broker = caller.broker;
    match route {
        AdminRoute::List => {
            let (page, per_page) = paging(&head.query);
            let skip = (page - 1).saturating_mul(per_page);
            let (total, items) = broker.client_page(skip, per_page).await?;
            Ok(Reply::Json(to_vec(&json!({
                "page": page,
                "perPage": per_page,
                "totalItems": total,
                "totalPages": total.div_ceil(per_page),
                "items": items,
            }))))
        }
        AdminRoute::Get(id) => Ok(Reply::Json(to_vec(&broker.client_by_id(id).await?))),
        AdminRoute::Disconnect(id) => {
            broker.unregister(id).await?;
            Ok(Reply::NoContent)
        }
        AdminRoute::Send(id) => {
            let (event, data) = event_body(body)?;
            let sent = broker.send_raw(id, &event, data).await?;
            Ok(Reply::Json(to_vec(&json!({"recipients": u64::from(sent)}))))
        }
        AdminRoute::Broadcast => {
            let (event, data) = event_body(body)?;
            let published = broker.broadcast_raw(&event, data).await;
            Ok(Reply::Json(super::publish::recipients(published)?))
        }
    }
}

/// `page` (from 1) and `perPage` (1–1000) from a query string; values that
/// are missing or not numbers take PocketBase's defaults.
fn paging(query: &str) -> (usize, usize) {
    let (mut page, mut per_page) = (1, DEFAULT_PER_PAGE);
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match (&*k, v.parse::<usize>()) {
            ("page", Ok(n)) => page = n.max(1),
            ("perPage", Ok(n)) => per_page = n.clamp(1, MAX_PER_PAGE),
            _ => {}
        }
    }
    (page, per_page)
}

/// `{"event": "…", "data": <any JSON>}` → the event name and compact data.
fn event_body(body: &[u8]) -> Result<(String, Vec<u8>), ApiError> {
    let map = json_object(body, r#"{"event":"…","data":…}"#)?;
    let mut errors = Map::new();
    let event = match map.get("event") {
        Some(Value::String(s)) if !s.is_empty() => {
            check_event_name(s, "event", &mut errors).then(|| s.clone())
        }
        _ => {
            errors.insert("event".into(), validation::required());
            None
        }
    };
    match event {
        Some(event) if errors.is_empty() => {
            let data = map.get("data").unwrap_or(&Value::Null).to_string();
            Ok((event, data.into_bytes()))
        }
        _ => Err(ApiError::validation(validation::sorted(errors))),
    }
}

fn to_vec(value: &impl serde::Serialize) -> Vec<u8> {
    // Values built from JSON and snapshots always serialise.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn paging_defaults_and_limits() {
        assert_eq!(paging(""), (1, 30));
        assert_eq!(paging("page=3&perPage=5000"), (3, 1000));
        assert_eq!(paging("page=0&perPage=x"), (1, 30));
    }

    #[test]
    fn event_bodies() {
        assert_eq!(
            event_body(br#"{"event":"e","data":{"a": 1}}"#).unwrap(),
            ("e".to_owned(), br#"{"a":1}"#.to_vec())
        );
        let err = event_body(br#"{"data":1}"#).unwrap_err();
        assert!(
            String::from_utf8(err.body())
                .unwrap()
                .contains("validation_required")
        );
        let err = event_body(br#"{"event":"a\nb"}"#).unwrap_err();
        assert!(
            String::from_utf8(err.body())
                .unwrap()
                .contains("line breaks")
        );
        assert_eq!(event_body(b"[]").unwrap_err().status, 400);
    }
}
