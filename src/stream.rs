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

/// A parked stream's read buffer: enough to notice EOF, nothing to hold.
const STREAM_READ: usize = 16;

/// Runs the stream; returns whether the connection may serve more requests.
pub async fn run(conn: &mut Connection, head: Box<Head>, head_only: bool) -> bool {
    let mode = match (head_only, head.http11) {
        (true, _) => BodyMode::Discard,
        (false, true) => BodyMode::Chunked,
        (false, false) => BodyMode::Raw,
    };
    let started = start(conn, &head, mode);
    // The request is answered; a stream may live for half an hour without it.
    drop(head);
    let (key, out) = match started {
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
/// or renders the refusal when this core is full.
fn start(conn: &Connection, head: &Head, mode: BodyMode) -> Result<(usize, Vec<u8>), Vec<u8>> {
    let ctx = &conn.ctx;
    let responder = Responder::new(head, &ctx.cors);
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

/// Writes what the core queues until the stream ends.
async fn pump(conn: &mut Connection, key: usize) -> EndReason {
    let ctx = conn.ctx.clone();
    if conn.buf.is_empty() {
        // Let go of the request's read buffer: idle streams are most streams.
        conn.buf = Vec::new();
    }
    loop {
        let socket = conn.socket.clone();
        let pending = conn
            .pending
            .get_or_insert_with(|| socket.read(Vec::with_capacity(STREAM_READ)));
        let event = tokio::select! {
            biased;
            event = poll_fn(|cx| ctx.core.borrow_mut().poll_client(key, cx)) => event,
            (res, data) = pending => {
                conn.pending = None;
                match res {
                    Ok(n) if n > 0 => {
                        // A request pipelined behind the stream: keep it for later.
                        conn.absorb(data);
                        if conn.buf.len() > ctx.config.max_header_bytes {
                            return EndReason::ClientClosed;
                        }
                        continue;
                    }
                    _ => return EndReason::ClientClosed,
                }
            }
        };
        match event {
            ClientEvent::End(reason) => return reason,
            ClientEvent::Write => {
                let pieces = ctx.core.borrow_mut().take_write(key);
                let (res, pieces) = conn.socket.writev(pieces).await;
                let written = res.as_ref().map_or(0, |&n| n);
                let mut core = ctx.core.borrow_mut();
                core.complete_write(key, written);
                core.recycle(pieces);
                drop(core);
                if res.is_err() {
                    return EndReason::ClientClosed;
                }
            }
        }
    }
}
