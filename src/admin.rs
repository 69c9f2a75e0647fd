//! The admin HTTP API: list, inspect, message and disconnect clients, and
//! broadcast — the [`Broker`](crate::Broker) over HTTP, for backends that
//! are not written in Rust. Same access rule as `POST /api/publish`.
//!
//! - `GET /api/clients?page=&perPage=` — a page of clients, shaped like
//!   PocketBase's list responses;
//! - `GET /api/clients/{id}`, `DELETE /api/clients/{id}` (ends its stream);
//! - `POST /api/clients/{id}/send` with `{"event": "…", "data": …}`;
//! - `POST /api/broadcast` with `{"event": "…", "data": …}`.

use crate::broker::Broker;
use crate::http::error::{self, ApiError};
use crate::http::request::{Head, Method};
use crate::publish;
use serde_json::{Map, Value, json};

/// PocketBase's list defaults.
const DEFAULT_PER_PAGE: usize = 30;
const MAX_PER_PAGE: usize = 1000;

/// An admin request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRoute {
    List,
    Get,
    Disconnect,
    Send,
    Broadcast,
}

/// The admin route for `head`, if it is one.
pub fn route(head: &Head) -> Option<AdminRoute> {
    let method = head.method;
    if head.path == "/api/broadcast" {
        return (method == Method::Post).then_some(AdminRoute::Broadcast);
    }
    if head.path == "/api/clients" {
        return (method == Method::Get).then_some(AdminRoute::List);
    }
    let rest = head.path.strip_prefix("/api/clients/")?;
    match (rest.split_once('/'), method) {
        (None, Method::Get) if !rest.is_empty() => Some(AdminRoute::Get),
        (None, Method::Delete) if !rest.is_empty() => Some(AdminRoute::Disconnect),
        (Some((id, "send")), Method::Post) if !id.is_empty() => Some(AdminRoute::Send),
        _ => None,
    }
}

/// What an admin request is answered with.
pub enum Reply {
    Json(Vec<u8>),
    NoContent,
}

/// Answers an authorised admin request.
pub async fn handle(
    broker: &Broker,
    route: AdminRoute,
    head: &Head,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let id = || {
        head.path
            .strip_prefix("/api/clients/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
    };
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
        AdminRoute::Get => Ok(Reply::Json(to_vec(&broker.client_by_id(id()).await?))),
        AdminRoute::Disconnect => {
            broker.unregister(id()).await?;
            Ok(Reply::NoContent)
        }
        AdminRoute::Send => {
            let (event, data) = event_body(body)?;
            let sent = broker.send_raw(id(), &event, data).await?;
            Ok(Reply::Json(to_vec(&json!({"recipients": u64::from(sent)}))))
        }
        AdminRoute::Broadcast => {
            let (event, data) = event_body(body)?;
            let n = broker.broadcast_raw(&event, data).await?;
            Ok(Reply::Json(to_vec(&json!({"recipients": n}))))
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
    let map = publish::json_object(body, r#"{"event":"…","data":…}"#)?;
    let mut errors = Map::new();
    let event = match map.get("event") {
        Some(Value::String(s)) if !s.is_empty() => {
            publish::check_event_name(s, "event", &mut errors).then(|| s.clone())
        }
        _ => {
            errors.insert("event".into(), error::required());
            None
        }
    };
    match event {
        Some(event) if errors.is_empty() => {
            let data = map.get("data").unwrap_or(&Value::Null).to_string();
            Ok((event, data.into_bytes()))
        }
        _ => Err(ApiError::validation(error::sorted(errors))),
    }
}

fn to_vec(value: &impl serde::Serialize) -> Vec<u8> {
    // Values built from JSON and snapshots always serialise.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_head;

    fn route_of(raw: &str) -> Option<AdminRoute> {
        route(&parse_head(raw.as_bytes(), 4096).unwrap().unwrap().0)
    }

    #[test]
    fn routes() {
        assert_eq!(
            route_of("GET /api/clients?page=2 HTTP/1.1\r\n\r\n"),
            Some(AdminRoute::List)
        );
        assert_eq!(
            route_of("GET /api/clients/abc HTTP/1.1\r\n\r\n"),
            Some(AdminRoute::Get)
        );
        assert_eq!(
            route_of("DELETE /api/clients/abc HTTP/1.1\r\n\r\n"),
            Some(AdminRoute::Disconnect)
        );
        assert_eq!(
            route_of("POST /api/clients/abc/send HTTP/1.1\r\n\r\n"),
            Some(AdminRoute::Send)
        );
        assert_eq!(
            route_of("POST /api/broadcast HTTP/1.1\r\n\r\n"),
            Some(AdminRoute::Broadcast)
        );
        assert_eq!(route_of("POST /api/clients HTTP/1.1\r\n\r\n"), None);
        assert_eq!(route_of("GET /api/clients/ HTTP/1.1\r\n\r\n"), None);
        assert_eq!(route_of("GET /api/clients/a/b HTTP/1.1\r\n\r\n"), None);
    }

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
