//! `GET /api/realtime`: one realtime stream, from `PB_CONNECT` to its end.
//!
//! The stream registers a client on this core, writes the head and the
//! `PB_CONNECT` event in one write, then parks. The core writes queued frames
//! straight to the socket while it has room; when it is full, the core wakes
//! this task, which writes through io_uring (waiting for room) until the queue
//! is empty. The core also wakes it when the stream must end.
//! Its pending read notices the peer leaving. A polite end (idle timeout,
//! lifetime, shutdown) writes the zero-length chunk and keeps the connection
//! for further requests, as PocketBase does.

use crate::conn::Connection;
use crate::core::ClientEvent;
use crate::core::clients::EndReason;
use crate::http::error::ApiError;
use crate::http::request::Head;
use crate::http::response::Responder;
use crate::realtime::frame::{self, BodyMode};
use std::future::poll_fn;
use std::task::{Context, Poll, ready};

/// A parked stream's read buffer: enough to notice EOF, nothing to hold.
const STREAM_READ: usize = 16;

/// Runs the stream; returns whether the connection may serve more requests.
pub async fn run(conn: &mut Connection, head: Box<Head>, head_only: bool) -> bool {
    let mode = match (head_only, head.http11) {
        (true, _) => BodyMode::Discard,
        (false, true) => BodyMode::Chunked,
        (false, false) => BodyMode::Raw,
    };
    let (key, out) = match start(conn, head, mode) {
        Ok(started) => started,
        Err(refusal) => return conn.socket.write_all(refusal).await.is_ok(),
    };
    let reason = if conn.socket.write_all(out).await.is_err() {
        EndReason::ClientClosed
    } else {
        pump(conn, key).await
    };
    conn.ctx.core.borrow_mut().unregister(key);
    tracing::debug!(key, ?reason, "stream ended");
    if !reason.is_graceful() {
        return false;
    }
    match mode {
        BodyMode::Chunked => conn
            .socket
            .write_all(frame::LAST_CHUNK.to_vec())
            .await
            .is_ok(),
        BodyMode::Discard => true,
        BodyMode::Raw => false,
    }
}

/// Registers the client and renders the head and `PB_CONNECT` (one write);
/// or renders the refusal when this core is full. Takes the request head so
/// that it is freed here: a stream may live for half an hour without it.
fn start(conn: &Connection, head: Box<Head>, mode: BodyMode) -> Result<(usize, Vec<u8>), Vec<u8>> {
    let ctx = &conn.ctx;
    let responder = Responder::new(&head, &ctx.cors);
    let mut out = Vec::with_capacity(512);
    let registered = ctx
        .core
        .borrow_mut()
        .register(conn.peer.ip(), conn.socket.fd(), mode);
    let Some((key, id)) = registered else {
        responder.error(
            &mut out,
            &ApiError::new(503, "This server holds as many realtime clients as it can."),
        );
        return Err(out);
    };
    responder.event_stream(&mut out, mode == BodyMode::Discard);
    if mode != BodyMode::Discard {
        let data = [br#"{"clientId":""#.as_slice(), &id, br#""}"#].concat();
        frame::write_event(&mut out, mode, &id, b"PB_CONNECT", &data);
    }
    Ok((key, out))
}

/// What wakes a parked stream.
enum Wake {
    /// The pending read completed: EOF, an error, or bytes.
    Read(std::io::Result<usize>, Vec<u8>),
    Core(ClientEvent),
}

/// Waits on the core and on the peer until the stream ends; writes through
/// io_uring when the core hands over a full socket.
async fn pump(conn: &mut Connection, key: usize) -> EndReason {
    if conn.buf.is_empty() {
        // Let go of the request's read buffer: idle streams are most streams.
        conn.buf = Vec::new();
    }
    loop {
        match poll_fn(|cx| poll_stream(conn, key, cx)).await {
            Wake::Read(Ok(n), data) if n > 0 => {
                // A request pipelined behind the stream: keep it for later.
                conn.absorb(data);
                if conn.buf.len() > conn.ctx.config.max_header_bytes {
                    return EndReason::ClientClosed;
                }
            }
            Wake::Read(..) => return EndReason::ClientClosed,
            Wake::Core(ClientEvent::End(reason)) => return reason,
            Wake::Core(ClientEvent::Write) => {
                let pieces = conn.ctx.core.borrow_mut().take_write(key);
                let (res, pieces) = conn.socket.writev(pieces).await;
                let mut core = conn.ctx.core.borrow_mut();
                core.complete_write(key, *res.as_ref().unwrap_or(&0));
                core.recycle(pieces);
                if res.is_err() {
                    return EndReason::ClientClosed;
                }
            }
        }
    }
}

/// The core first (an end or a full socket), then the peer's read, which is
/// started here if none is in flight.
fn poll_stream(conn: &mut Connection, key: usize, cx: &mut Context<'_>) -> Poll<Wake> {
    if let Poll::Ready(event) = conn.ctx.core.borrow_mut().poll_client(key, cx) {
        return Poll::Ready(Wake::Core(event));
    }
    let socket = &conn.socket;
    let read = conn
        .pending
        .get_or_insert_with(|| socket.read(Vec::with_capacity(STREAM_READ)));
    let (res, data) = ready!(read.as_mut().poll(cx));
    conn.pending = None;
    Poll::Ready(Wake::Read(res, data))
}
