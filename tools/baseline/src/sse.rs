//! `GET /api/realtime`: the Server-Sent Events stream.
//!
//! ## Why not `axum::response::sse`
//!
//! axum's `Event` writes fields as `name: value` (with a space), splits data on
//! newlines into several `data:` lines, and panics on a newline in an event name.
//! PocketBase writes `id:<clientId>\nevent:<name>\ndata:<data>\n\n` verbatim with no
//! space, and event names here are client-chosen subscription strings. So the
//! response body is a small hand-written [`http_body::Body`] that frames each
//! event itself, byte for byte as PocketBase does. Everything else (HTTP/1.1
//! chunked encoding, keep-alive, HTTP/1.0) is still axum/hyper.
//!
//! Every event is yielded as one body frame, so hyper sends it as one HTTP chunk,
//! like PocketBase's flush per event. The first frame (`PB_CONNECT`) is ready at
//! once, so hyper writes it with the response head.
//!
//! ## End of stream
//!
//! The body ends (hyper writes the terminating `0\r\n\r\n` chunk and keeps the
//! connection alive, as PocketBase does) when the idle timeout passes without a
//! delivered message, when the maximum lifetime is reached, or when the broker has
//! evicted the client (its sender is gone). When the client disconnects, hyper
//! drops the body. In every case the [`Registration`] guard inside the body
//! unregisters the client on drop, so the broker never keeps a dead client.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use crate::broker::{Broker, Message};
use crate::client_id::{CLIENT_ID_LEN, ClientId};
use crate::error::ApiError;
use crate::server::AppState;

/// Per-connection timers, from the command line. `None` disables a timer.
#[derive(Debug, Clone, Copy)]
pub struct StreamConfig {
    /// Ends the stream when no message was delivered for this long (PocketBase: 5 min).
    pub idle_timeout: Option<Duration>,
    /// Ends the stream this long after it started, whatever the traffic (PocketBase: 30 min).
    pub max_lifetime: Option<Duration>,
}

/// Frames one event exactly as PocketBase's `Message.WriteSSE`.
pub fn encode_event(id: &ClientId, name: &[u8], data: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(
        b"id:".len()
            + CLIENT_ID_LEN
            + b"\nevent:".len()
            + name.len()
            + b"\ndata:".len()
            + data.len()
            + b"\n\n".len(),
    );
    frame.extend_from_slice(b"id:");
    frame.extend_from_slice(id.as_bytes());
    frame.extend_from_slice(b"\nevent:");
    frame.extend_from_slice(name);
    frame.extend_from_slice(b"\ndata:");
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// The `PB_CONNECT` event: data is a literal concatenation in PocketBase too, so
/// the bytes never vary beyond the id.
fn connect_event(id: &ClientId) -> Bytes {
    let data = format!(r#"{{"clientId":"{id}"}}"#);
    encode_event(id, b"PB_CONNECT", data.as_bytes())
}

/// The handler: registers a client and answers with its event stream.
pub async fn connect(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let (id, rx) = state.broker.register(peer.ip()).map_err(|err| {
        tracing::error!(%err, "cannot draw a client id from the OS random source");
        ApiError::internal()
    })?;
    tracing::debug!(client = %id, %peer, "client connected");

    let body = SseBody::new(
        Registration {
            broker: Arc::clone(&state.broker),
            id,
        },
        rx,
        state.stream,
    );
    let mut response = Response::new(Body::new(body));
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// Unregisters the client when the response body is dropped, however the stream
/// ended.
struct Registration {
    broker: Arc<Broker>,
    id: ClientId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.broker.unregister(&self.id);
        tracing::debug!(client = %self.id, "client disconnected");
    }
}

/// The streaming response body of one client.
struct SseBody {
    registration: Registration,
    /// `PB_CONNECT`, until it has been yielded.
    connect: Option<Bytes>,
    rx: mpsc::Receiver<Message>,
    idle_timeout: Option<Duration>,
    idle: Option<Pin<Box<Sleep>>>,
    lifetime: Option<Pin<Box<Sleep>>>,
    ended: bool,
}

impl SseBody {
    fn new(registration: Registration, rx: mpsc::Receiver<Message>, config: StreamConfig) -> Self {
        let now = Instant::now();
        Self {
            connect: Some(connect_event(&registration.id)),
            registration,
            rx,
            idle_timeout: config.idle_timeout,
            idle: config
                .idle_timeout
                .map(|d| Box::pin(tokio::time::sleep_until(now + d))),
            lifetime: config
                .max_lifetime
                .map(|d| Box::pin(tokio::time::sleep_until(now + d))),
            ended: false,
        }
    }

    fn end(&mut self, why: &'static str) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        tracing::debug!(client = %self.registration.id, why, "ending stream");
        self.ended = true;
        Poll::Ready(None)
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(connect) = this.connect.take() {
            return Poll::Ready(Some(Ok(Frame::data(connect))));
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(message)) => {
                // Only a delivered message restarts the idle timer (PocketBase).
                if let (Some(idle), Some(timeout)) = (this.idle.as_mut(), this.idle_timeout) {
                    idle.as_mut().reset(Instant::now() + timeout);
                }
                let frame = encode_event(
                    &this.registration.id,
                    message.name.as_bytes(),
                    &message.data,
                );
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            Poll::Ready(None) => return this.end("evicted"),
            Poll::Pending => {}
        }
        if let Some(lifetime) = this.lifetime.as_mut()
            && lifetime.as_mut().poll(cx).is_ready()
        {
            return this.end("max lifetime reached");
        }
        if let Some(idle) = this.idle.as_mut()
            && idle.as_mut().poll(cx).is_ready()
        {
            return this.end("idle timeout");
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pb_connect_is_123_bytes_without_spaces() {
        let id = ClientId::parse("Y4XViRWkJrItsXGEKMhCYXkYA2OYKIbxP1jtlx8R").expect("valid id");
        let frame = connect_event(&id);
        assert_eq!(
            &frame[..],
            b"id:Y4XViRWkJrItsXGEKMhCYXkYA2OYKIbxP1jtlx8R\nevent:PB_CONNECT\ndata:{\"clientId\":\"Y4XViRWkJrItsXGEKMhCYXkYA2OYKIbxP1jtlx8R\"}\n\n"
        );
        assert_eq!(frame.len(), 0x7b);
    }
}
