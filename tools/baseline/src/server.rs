//! Routing, PocketBase's common response headers, and the listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::error::ApiError;
use crate::sse::StreamConfig;
use crate::{publish, sse, subscribe};

/// PocketBase's default request body limit. A maximal valid subscribe body
/// (1000 topics × 2500 bytes) is ~2.5 MB, above axum's 2 MB default.
const BODY_LIMIT: usize = 32 << 20;

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    pub stream: StreamConfig,
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/api/realtime",
            get(sse::connect).post(subscribe::subscribe),
        )
        .route("/api/publish", post(publish::publish))
        .fallback(not_found)
        // PocketBase answers a wrong method with 404, not 405.
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(pocketbase_headers))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::route_not_found()
}

/// The headers PocketBase's default middlewares put on every API response
/// (security headers, `Vary: Origin`, and `Access-Control-Allow-Origin: *` when
/// the request carries an `Origin`, as with its default `--origins *`).
async fn pocketbase_headers(request: Request, next: Next) -> Response {
    let has_origin = request.headers().contains_key(header::ORIGIN);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if has_origin {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    headers.insert(
        header::X_XSS_PROTECTION,
        HeaderValue::from_static("1; mode=block"),
    );
    response
}

/// Binds, announces the bound address on stdout (one line, for scripts and
/// tests: `ringcast-baseline listening on <addr>`), and serves until Ctrl-C or
/// SIGTERM.
pub async fn run(addr: SocketAddr, state: AppState) -> Result<(), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    // Events are small and latency matters: disable Nagle (Go does by default).
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
    });

    tracing::info!(%local, "listening");
    println!("ringcast-baseline listening on {local}");

    let broker = Arc::clone(&state.broker);
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    // No graceful shutdown: SSE streams never finish on their own, so waiting for
    // them would hang; in-flight streams are simply cut.
    tokio::select! {
        result = axum::serve(listener, app) => result.map_err(ServerError::Serve)?,
        () = shutdown_signal() => {
            tracing::info!(
                clients = broker.len(),
                evictions = broker.evictions(),
                "shutting down"
            );
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
