//! Which handler answers a request, and the handlers that answer at once
//! (everything but the event stream, which lives in `stream`).

use crate::admin::{self, AdminRoute};
use crate::broker::Broker;
use crate::conn::Connection;
use crate::core::clients;
use crate::http::error::ApiError;
use crate::http::request::{Head, Method};
use crate::http::response::Responder;
use crate::publish;
use crate::realtime::subscribe;
use serde_json::json;

/// Where a request goes: into an event stream, or to a handler that answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET`/`HEAD /api/realtime`: served by `stream`.
    Stream {
        head_only: bool,
    },
    Answer(Answer),
}

/// The requests answered at once, by [`handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `POST /api/realtime`.
    Subscribe,
    /// `POST /api/publish`.
    Publish,
    Health {
        head_only: bool,
    },
    Stats,
    /// The client listing and messaging API (`crate::admin`).
    Admin(AdminRoute),
    /// `OPTIONS` anywhere (CORS preflight).
    Preflight,
    /// PocketBase answers unknown GETs from its static file handler, other
    /// methods from the router; the messages differ.
    NotFound {
        file: bool,
    },
}

pub fn route(head: &Head) -> Route {
    let method = head.method;
    if let Some(admin) = admin::route(head) {
        return Route::Answer(Answer::Admin(admin));
    }
    match (head.path.as_str(), method) {
        (_, Method::Options) => Route::Answer(Answer::Preflight),
        ("/api/realtime", Method::Get | Method::Head) => Route::Stream {
            head_only: method == Method::Head,
        },
        ("/api/realtime", Method::Post) => Route::Answer(Answer::Subscribe),
        ("/api/publish", Method::Post) => Route::Answer(Answer::Publish),
        ("/api/health", Method::Get | Method::Head) => Route::Answer(Answer::Health {
            head_only: method == Method::Head,
        }),
        ("/api/stats", Method::Get) => Route::Answer(Answer::Stats),
        (_, Method::Get | Method::Head) => Route::Answer(Answer::NotFound { file: true }),
        _ => Route::Answer(Answer::NotFound { file: false }),
    }
}

/// Answers `route` into `out`.
pub async fn handle(
    conn: &Connection,
    answer: Answer,
    head: &Head,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    let responder = Responder::new(head, &conn.ctx.cors);
    let result = match answer {
        Answer::Preflight => {
            responder.preflight(out, head);
            return;
        }
        Answer::Subscribe => subscribe(conn, head, body).await.map(|()| {
            responder.no_content(out);
        }),
        Answer::Publish => publish(conn, head, body).await.map(|n| {
            responder.json(out, 200, format!("{{\"recipients\":{n}}}").as_bytes());
        }),
        Answer::Stats => stats(conn, head)
            .await
            .map(|body| responder.json(out, 200, &body)),
        Answer::Admin(route) => admin(conn, route, head, body)
            .await
            .map(|reply| match reply {
                admin::Reply::Json(body) => responder.json(out, 200, &body),
                admin::Reply::NoContent => responder.no_content(out),
            }),
        Answer::Health { head_only } => {
            let body = br#"{"message":"API is healthy.","code":200,"data":{}}"#;
            responder.json(out, 200, body);
            if head_only {
                out.truncate(out.len() - body.len());
            }
            Ok(())
        }
        Answer::NotFound { file: true } => Err(ApiError::new(404, "File not found.")),
        Answer::NotFound { file: false } => Err(ApiError::not_found()),
    };
    if let Err(err) = result {
        responder.error(out, &err);
    }
}

/// `POST /api/realtime`: validate here, apply on the client's owner core.
async fn subscribe(conn: &Connection, head: &Head, body: &[u8]) -> Result<(), ApiError> {
    let form = subscribe::parse(head.content_type.as_deref(), body)?;
    let unknown = || ApiError::new(404, "Missing or invalid client id.");
    let (owner, key) =
        clients::locate(form.client_id.as_bytes(), conn.ctx.ring.workers()).ok_or_else(unknown)?;
    let ip = conn.client_ip(head);
    let verifier = &conn.ctx.access.verifier;
    if head.authorization.is_some() && verifier.asks_pocketbase() {
        // The cheap checks first, so that made-up ids cannot make us ask PocketBase.
        let id = form.client_id.clone();
        on_owner(conn, owner, move |core| {
            core.realtime_client(id.as_bytes(), key, ip).map(|_| ())
        })
        .await?;
    }
    let auth = verifier.verify(head.authorization.as_deref()).await;
    let (id, subs) = (form.client_id, form.subscriptions);
    on_owner(conn, owner, move |core| {
        core.subscribe(id.as_bytes(), key, ip, subs, auth)
    })
    .await
}

/// Runs `f` on core `owner`: directly when that is this core, else through the ring.
async fn on_owner<T: Send + 'static>(
    conn: &Connection,
    owner: usize,
    f: impl FnOnce(&mut crate::core::Core) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if owner == conn.ctx.index {
        f(&mut conn.ctx.core.borrow_mut())
    } else {
        conn.ctx.ring.call(owner, f).await?
    }
}

async fn admin(
    conn: &Connection,
    route: AdminRoute,
    head: &Head,
    body: &[u8],
) -> Result<admin::Reply, ApiError> {
    authorize(conn, head)?;
    admin::handle(&Broker::new(conn.ctx.ring.clone()), route, head, body).await
}

async fn publish(conn: &Connection, head: &Head, body: &[u8]) -> Result<u64, ApiError> {
    authorize(conn, head)?;
    let messages = publish::parse(body)?;
    let max = conn.ctx.config.max_queue_bytes;
    if let Some((i, m)) = messages
        .iter()
        .enumerate()
        .find(|(_, m)| m.wire_len() > max)
    {
        return Err(ApiError::new(
            413,
            format!(
                "Message {i} takes {} bytes as an event, more than the {max} bytes a client may have queued (--max-queue-bytes): no client could receive it.",
                m.wire_len()
            ),
        ));
    }
    Ok(conn.ctx.ring.publish(messages).await?)
}

async fn stats(conn: &Connection, head: &Head) -> Result<Vec<u8>, ApiError> {
    authorize(conn, head)?;
    let cores = conn.ctx.ring.call_all(|core| core.stats()).await?;
    let sum = |f: fn(&crate::core::CoreStats) -> u64| cores.iter().map(f).sum::<u64>();
    let total = json!({
        "connections": sum(|c| c.connections),
        "clients": sum(|c| c.clients),
        "subscriptions": sum(|c| c.subscriptions),
        "deliveries": sum(|c| c.deliveries),
        "frames_written": sum(|c| c.frames_written),
        "writes": sum(|c| c.writes),
        "dropped_clients": sum(|c| c.dropped_clients),
        "dropped_frames": sum(|c| c.dropped_frames),
        "queued_bytes": sum(|c| c.queued_bytes),
        "hook_skipped": sum(|c| c.hook_skipped),
    });
    serde_json::to_vec(&json!({"total": total, "cores": cores}))
        .map_err(|e| ApiError::new(500, format!("Could not serialise the stats: {e}.")))
}

/// Who may publish, use the admin API and read stats: holders of the admin token when one is
/// configured, otherwise loopback peers only.
fn authorize(conn: &Connection, head: &Head) -> Result<(), ApiError> {
    match &conn.ctx.config.admin_token {
        Some(token) => {
            let given = head
                .authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "));
            match given {
                None => Err(ApiError::new(
                    401,
                    "This endpoint needs the admin token: send \"Authorization: Bearer <token>\".",
                )),
                Some(t) if constant_time_eq(t.trim().as_bytes(), token.as_bytes()) => Ok(()),
                Some(_) => Err(ApiError::new(403, "The admin token is not valid.")),
            }
        }
        // Browsers send `Origin`: a web page on this host must not drive the
        // API (CSRF, reading client ids). Behind a trusted proxy the client's
        // address must be loopback too, not only the proxy's.
        None if head.origin.is_some() => Err(ApiError::new(
            403,
            "Browsers may not use this endpoint without an admin token; start ringcast with --admin-token.",
        )),
        None if conn.peer.ip().to_canonical().is_loopback()
            && conn.client_ip(head).to_canonical().is_loopback() =>
        {
            Ok(())
        }
        None => Err(ApiError::new(
            403,
            "Only loopback clients may publish when no admin token is set; start ringcast with --admin-token to publish from elsewhere.",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_head;

    fn route_of(raw: &str) -> Route {
        route(&parse_head(raw.as_bytes(), 4096).unwrap().unwrap().0)
    }

    #[test]
    fn routes_like_pocketbase() {
        assert_eq!(
            route_of("GET /api/realtime?x HTTP/1.1\r\n\r\n"),
            Route::Stream { head_only: false }
        );
        assert_eq!(
            route_of("HEAD /api/realtime HTTP/1.1\r\n\r\n"),
            Route::Stream { head_only: true }
        );
        assert_eq!(
            route_of("POST /api/realtime HTTP/1.1\r\n\r\n"),
            Route::Answer(Answer::Subscribe)
        );
        assert_eq!(
            route_of("PUT /api/realtime HTTP/1.1\r\n\r\n"),
            Route::Answer(Answer::NotFound { file: false })
        );
        assert_eq!(
            route_of("GET /api/realtime/ HTTP/1.1\r\n\r\n"),
            Route::Answer(Answer::NotFound { file: true })
        );
        assert_eq!(
            route_of("POST /api/realtime/ HTTP/1.1\r\n\r\n"),
            Route::Answer(Answer::NotFound { file: false })
        );
        assert_eq!(
            route_of("OPTIONS /api/realtime HTTP/1.1\r\n\r\n"),
            Route::Answer(Answer::Preflight)
        );
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
