//! The HTTP API: one file per endpoint, each decoding its body, checking
//! access and calling the [`Broker`] — the one way into the cores — then
//! answering in PocketBase's shapes. The mapping from what a core or the
//! broker refuses to PocketBase's status codes and messages lives here, and
//! only here.
//!
//! | endpoint | file |
//! | --- | --- |
//! | `POST /api/realtime` (subscriptions) | [`subscribe`] |
//! | `POST /api/publish` | [`publish`] |
//! | `GET /api/stats` | [`stats`] |
//! | `GET /metrics` (Prometheus) | [`metrics`] |
//! | `GET /_/` (the demo page, `--demo`) | [`demo`] |
//! | `/api/clients…`, `POST /api/broadcast` | [`admin`] |
//! | who may use publish, stats and admin | [`access`] |
//! | what a handler knows of the request's origin | `caller` |
//! | refusals of the core and the broker, in PocketBase's words | `errors` |
//! | PocketBase's field-level error vocabulary | [`validation`] |

pub mod access;
pub mod admin;
mod caller;
pub mod demo;
mod errors;
pub mod metrics;
mod offload;
pub mod publish;
pub mod stats;
pub mod subscribe;
pub mod validation;

pub use caller::{Caller, TokenChecks};

use crate::config::Config;
use crate::http::error::ApiError;
use crate::http::request::Head;
use crate::http::response::Responder;
use crate::routes::{AdminRoute, Endpoint, Route};

/// The body a request without one may still carry (and have read, so that
/// the connection can go on): small.
const SMALL_BODY_BYTES: usize = 64 * 1024;

/// The largest body a request for `route` may have: no more than its handler
/// can use, so that nobody can make a core read 32 MiB for an endpoint that
/// takes a few bytes, or before it is known whether the caller may ask.
pub fn body_limit(route: &Route<'_>, config: &Config) -> usize {
    let limit = match route {
        Route::Api(Endpoint::Subscribe) => subscribe::MAX_BODY_BYTES,
        Route::Api(Endpoint::Publish)
        | Route::Api(Endpoint::Admin(AdminRoute::Send(_) | AdminRoute::Broadcast)) => {
            config.max_body_bytes
        }
        _ => SMALL_BODY_BYTES,
    };
    limit.min(config.max_body_bytes)
}

/// A request whose head passed the checks made before its body is read.
pub struct Admitted<'a>(Endpoint<'a>);

/// The checks that need only the head, made before a body is read: who may
/// use the publish, stats and admin endpoints.
pub fn admit<'a>(
    caller: &Caller<'_>,
    endpoint: Endpoint<'a>,
    head: &Head,
) -> Result<Admitted<'a>, ApiError> {
    match endpoint {
        // The demo page ringcast serves may publish and read the stats.
        Endpoint::Publish | Endpoint::Stats if demo::is_own_page(caller.config, head) => {
            access::authorize(
                caller,
                &Head {
                    origin: None,
                    ..head.clone()
                },
            )?;
        }
        Endpoint::Publish | Endpoint::Stats | Endpoint::Metrics | Endpoint::Admin(_) => {
            access::authorize(caller, head)?;
        }
        _ => {}
    }
    Ok(Admitted(endpoint))
}

/// `GET /api/health`: PocketBase's answer; a node of a cluster whose Redis is
/// unreachable still serves its own clients, and says it is degraded.
fn health(caller: &Caller<'_>) -> &'static [u8] {
    match caller.broker.cluster() {
        Some(cluster) if !cluster.connected() => {
            br#"{"message":"API is healthy; the cluster is degraded (Redis is unreachable).","code":200,"data":{"cluster":"degraded"}}"#
        }
        _ => br#"{"message":"API is healthy.","code":200,"data":{}}"#,
    }
}

/// Answers an admitted request into `out`.
pub async fn answer(
    caller: &Caller<'_>,
    responder: &Responder<'_>,
    Admitted(endpoint): Admitted<'_>,
    head: &Head,
    body: Vec<u8>,
    out: &mut Vec<u8>,
) {
    let result = match endpoint {
        Endpoint::Preflight => {
            responder.preflight(out, head);
            Ok(())
        }
        Endpoint::Subscribe => subscribe::handle(caller, head, body)
            .await
            .map(|()| responder.no_content(out)),
        Endpoint::Publish => publish::handle(caller, body)
            .await
            .map(|answer| responder.json(out, 200, &answer)),
        Endpoint::Stats => stats::handle(caller)
            .await
            .map(|body| responder.json(out, 200, &body)),
        Endpoint::Metrics => metrics::handle(caller)
            .await
            .map(|body| responder.typed(out, 200, metrics::CONTENT_TYPE, &body)),
        Endpoint::Demo if caller.config.demo => {
            responder.typed(out, 200, demo::CONTENT_TYPE, demo::PAGE.as_bytes());
            Ok(())
        }
        Endpoint::Demo => Err(ApiError::new(404, "File not found.")),
        Endpoint::Admin(route) => admin::handle(caller, route, head, &body)
            .await
            .map(|reply| match reply {
                admin::Reply::Json(body) => responder.json(out, 200, &body),
                admin::Reply::NoContent => responder.no_content(out),
            }),
        Endpoint::Health { head_only } => {
            let body = health(caller);
            responder.json(out, 200, body);
            if head_only {
                out.truncate(out.len() - body.len());
            }
            Ok(())
        }
        Endpoint::NotFound { file: true } => Err(ApiError::new(404, "File not found.")),
        Endpoint::NotFound { file: false } => Err(ApiError::not_found()),
    };
    if let Err(err) = result {
        responder.error(out, &err);
    }
}
