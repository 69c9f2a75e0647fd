//! `GET /api/realtime`: one realtime stream, from `PB_CONNECT` to its end.
//!
//! The connection's task registers a client on this core and writes the head
//! and the `PB_CONNECT` event in one write. Then it hands the connection to a
//! [`StreamTask`] and ends: a parked stream is the common case (most of a
//! server's connections, for minutes), so it gets a small hand-written future
//! instead of the request-serving state machine, kept in the core's slab of
//! parked streams ([`crate::parked`]) instead of a tokio task of its own.
//!
//! The core writes queued frames straight to the socket while it has room;
//! when the socket is full, the core wakes the stream task, which writes
//! through io_uring (waiting for room) until the queue is empty. The core also
//! wakes it when the stream must end, and its readiness poll (no buffer held)
//! notices the peer leaving. An abort (a slow consumer) ends the task even while its write is
//! stuck: dropping the connection shuts the socket down, which completes the
//! write. A polite end (idle timeout, lifetime, shutdown) writes the
//! zero-length chunk and gives the connection back ([`AfterStream`]), as
//! PocketBase keeps the connection for further requests.

use crate::conn::Connection;
use crate::core::ClientEvent;
use crate::frame::{self, BodyMode};
use crate::hooks::{EndReason, Request};
use crate::http::error::ApiError;
use crate::http::request::Head;
use crate::http::response::Responder;
use crate::parked::Parked;
use crate::runtime::{self, WritevFuture};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

/// How opening a stream went.
pub enum Opened {
    /// Registered and announced: hand the connection to [`park`].
    Stream { key: usize, mode: BodyMode },
    /// Refused (this core is full) and answered; the connection may go on.
    Refused,
    /// The peer is gone.
    Failed,
}

/// Registers the client and writes the head and `PB_CONNECT` (one write).
pub async fn open(conn: &mut Connection, head: Box<Head>, head_only: bool) -> Opened {
    let mode = match (head_only, head.http11) {
        (true, _) => BodyMode::Discard,
        (false, true) => BodyMode::Chunked,
        (false, false) => BodyMode::Raw,
    };
    match start(conn, head, mode) {
        Ok((key, out)) => {
            if conn.write_all(out).await.is_ok() {
                Opened::Stream { key, mode }
            } else {
                conn.ctx
                    .core
                    .borrow_mut()
                    .unregister(key, EndReason::ClientClosed);
                Opened::Failed
            }
        }
        Err(refusal) => {
            if conn.write_all(refusal).await.is_ok() {
                Opened::Refused
            } else {
                Opened::Failed
            }
        }
    }
}

/// Registers the client, runs the connect hook and renders the head and
/// `PB_CONNECT` (through the message hook); or renders the refusal when this
/// core is full or the hook said no. Takes the request head so that it is
/// freed here: a stream may live for half an hour without it.
fn start(conn: &Connection, head: Box<Head>, mode: BodyMode) -> Result<(usize, Vec<u8>), Vec<u8>> {
    let ctx = &conn.ctx;
    let responder = Responder::new(&head, &ctx.cors);
    let mut out = Vec::with_capacity(512);
    let mut core = ctx.core.borrow_mut();
    let ip = conn.client_ip(&head);
    let (key, id) = match core.register(ip, conn.socket.handle(), mode) {
        Ok(registered) => registered,
        Err(e) => {
            let full = ApiError::from(e);
            responder.error(&mut out, &full);
            if mode == BodyMode::Discard {
                out.truncate(out.len() - full.body().len());
            }
            return Err(out);
        }
    };
    let request = Request {
        remote_addr: SocketAddr::new(ip, conn.peer.port()),
        path: &head.path,
        query: &head.query,
        headers: &head.headers,
    };
    if let Err(err) = core.connect(key, &request) {
        core.discard(key);
        responder.stream_error(&mut out, &ApiError::from(err), mode == BodyMode::Discard);
        return Err(out);
    }
    if let Some(last) = &head.last_event_id {
        core.resume_from(key, last);
    }
    responder.event_stream(&mut out, mode == BodyMode::Discard);
    if mode != BodyMode::Discard {
        let data = [br#"{"clientId":""#.as_slice(), &id, br#""}"#].concat();
        let outcome = core.hook_message(key, "PB_CONNECT", &data);
        if let Some((name, data)) = outcome.event("PB_CONNECT", &data) {
            frame::write_event(&mut out, mode, &id, name.as_bytes(), data);
        }
    }
    Ok((key, out))
}

/// What becomes of a connection whose stream ended politely (HTTP/1.1 and
/// HEAD): the request-serving side implements it, so that this module need
/// not know that side. A type, not a value: it costs a parked stream nothing.
pub trait AfterStream: 'static {
    /// `last_chunk`: the zero-length chunk must be written first; `close`:
    /// the connection was to close with the stream.
    fn resume(conn: Connection, last_chunk: bool, close: bool);
}

thread_local! {
    /// This core's parked streams.
    static PARKED: Parked<StreamTask> = const { Parked::new() };
}

/// Parks an opened stream: it is polled by this core's one driver task, not
/// as a task of its own ([`crate::parked`]). `close`: the connection ends
/// with the stream (`Connection: close`), even after a polite end.
pub fn park<A: AfterStream>(mut conn: Connection, key: usize, mode: BodyMode, close: bool) {
    if conn.buf.is_empty() {
        // Let go of the request's read buffer: idle streams are most streams.
        conn.buf = Vec::new();
    }
    let task = StreamTask {
        conn: Some(conn),
        key: key as u32,
        mode,
        close,
        write: None,
        resume: A::resume,
    };
    if PARKED.with(|parked| parked.insert(task)) {
        runtime::spawn(std::future::poll_fn(|cx| {
            PARKED.with(|parked| parked.poll_woken(cx))
        }));
    }
}

/// Drops this core's parked streams, closing their connections: at the end
/// of its loop, before the runtime goes.
pub fn drop_parked() {
    PARKED.with(Parked::clear);
}

/// A parked stream: waits on the core and on the peer, writes through
/// io_uring when the core hands over a full socket. Its whole state is the
/// connection and one optional write, so a parked stream is small.
struct StreamTask {
    /// `None` once the stream has ended.
    conn: Option<Connection>,
    key: u32,
    mode: BodyMode,
    close: bool,
    /// The io_uring write in flight, when the socket was full.
    write: Option<WritevFuture>,
    /// [`AfterStream::resume`] of the serving side.
    resume: fn(Connection, bool, bool),
}

impl Future for StreamTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let key = this.key as usize;
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(());
        };
        let reason = loop {
            if let Some(write) = this.write.as_mut() {
                if let Some(reason) = conn.ctx.core.borrow_mut().poll_abort(key, cx) {
                    break reason;
                }
                let Poll::Ready((res, pieces)) = Pin::new(write).poll(cx) else {
                    return Poll::Pending;
                };
                this.write = None;
                let mut core = conn.ctx.core.borrow_mut();
                core.complete_write(key, *res.as_ref().unwrap_or(&0));
                core.recycle(pieces);
                if res.is_err() {
                    break EndReason::ClientClosed;
                }
                continue;
            }
            let event = conn.ctx.core.borrow_mut().poll_client(key, cx);
            match event {
                Poll::Ready(ClientEvent::End(reason)) => break reason,
                Poll::Ready(ClientEvent::Write) => {
                    let pieces = conn.ctx.core.borrow_mut().take_write(key);
                    this.write = Some(conn.socket.writev(pieces));
                    continue;
                }
                Poll::Pending => {}
            }
            match conn.poll_idle_read(cx) {
                Poll::Pending => return Poll::Pending,
                // A request pipelined behind the stream: keep it for later.
                Poll::Ready(Ok(true)) if conn.buf.len() <= conn.ctx.config.max_header_bytes => {}
                Poll::Ready(_) => break EndReason::ClientClosed,
            }
        };
        this.finish(reason);
        Poll::Ready(())
    }
}

impl StreamTask {
    /// Unregisters the client; after a polite end the connection goes back to
    /// serving requests (HTTP/1.1 and HEAD), otherwise it is closed.
    fn finish(&mut self, reason: EndReason) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        conn.ctx
            .core
            .borrow_mut()
            .unregister(self.key as usize, reason);
        tracing::debug!(key = self.key, ?reason, "stream ended");
        if reason == EndReason::SlowConsumer {
            // It does not read: do not leave what it was sent queued behind a FIN.
            conn.socket.reset();
        } else if reason.is_graceful() && self.mode != BodyMode::Raw {
            (self.resume)(conn, self.mode == BodyMode::Chunked, self.close);
        }
        // Otherwise dropping the connection closes it (and completes a write
        // stuck on a full socket).
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle stream is one slot of the core's parked slab; a slot is
    /// the `StreamTask` itself (`None` marks one being polled).
    #[test]
    fn a_parked_stream_is_small() {
        assert_eq!(std::mem::size_of::<Option<StreamTask>>(), 128);
    }
}
