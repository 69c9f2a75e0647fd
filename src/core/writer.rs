//! Writing queued frames to sockets.
//!
//! Fan-out only links frames into queues and puts the client in the core's
//! flush line. The flush task then writes each client's whole queue with one
//! non-blocking `sendmsg` of `[head][id][tail]` iovecs, gathered in a reused
//! per-core array — nothing allocated, nothing copied. A socket that is full is handed to the
//! client's own task, which writes through io_uring (waiting for room) until
//! the queue is empty; the per-client byte cap bounds what can pile up.

use super::clients::EndReason;
use super::{ClientEvent, Core, MAX_FRAMES_PER_WRITE, end, wake};
use crate::runtime;
use bytes::Bytes;
use std::task::{Context, Poll};

impl Core {
    /// Called by the flush task: is any client waiting to be written to?
    pub fn poll_dirty(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.dirty.is_empty() {
            self.flusher = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Flushes up to `n` clients from the front of the line; returns whether
    /// any are left.
    pub fn flush_some(&mut self, n: usize) -> bool {
        for _ in 0..n {
            let Some(key) = self.dirty.pop_front() else {
                return false;
            };
            self.flush(key as usize);
        }
        self.has_dirty()
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Writes what `key` has queued straight to its socket — one `sendmsg` of
    /// `[head][id][tail]` iovecs per frame (a reused array) — if the socket
    /// takes it now. A client whose socket is full is handed to its own task,
    /// which waits for room through io_uring.
    fn flush(&mut self, key: usize) {
        let Core {
            clients,
            deliveries,
            stats,
            iov,
            ..
        } = self;
        let Some(client) = clients.get_mut(key).filter(|c| c.dirty) else {
            return;
        };
        client.dirty = false;
        let aborted = client.end.is_some_and(|r| !r.is_graceful());
        if client.blocked || client.queue.is_empty() || aborted {
            return;
        }
        // Reused, never re-zeroed: it only ever holds this call's pointers.
        iov.clear();
        let (mut total, mut skip) = (0, client.sent);
        for frame in deliveries.iter(&client.queue).take(MAX_FRAMES_PER_WRITE) {
            for piece in [
                frame.head(client.mode),
                &client.id[..],
                frame.tail(client.mode),
            ] {
                if skip >= piece.len() {
                    skip -= piece.len();
                    continue;
                }
                let piece = &piece[skip..];
                skip = 0;
                iov.push(libc::iovec {
                    iov_base: piece.as_ptr().cast_mut().cast(),
                    iov_len: piece.len(),
                });
                total += piece.len();
            }
        }
        stats.writes += 1;
        let result = runtime::try_send(client.fd, iov);
        match result {
            Ok(written) => {
                self.complete_write(key, written);
                let client = &mut self.clients[key];
                if written < total {
                    // The socket is full: the client's task waits for room.
                    client.blocked = true;
                    wake(client);
                } else if !client.queue.is_empty() {
                    // More than one write's worth: back in line.
                    client.dirty = true;
                    self.dirty.push_back(key as u32);
                } else if client.end.is_some() {
                    // A polite end waits for an empty queue.
                    wake(client);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                client.blocked = true;
                wake(client);
            }
            Err(_) => end(client, EndReason::ClientClosed),
        }
    }

    /// Called by a stream's task: is there something to write, or an end?
    pub fn poll_client(&mut self, key: usize, cx: &mut Context<'_>) -> Poll<ClientEvent> {
        let client = &mut self.clients[key];
        if let Some(reason) = client.end.filter(|r| !r.is_graceful()) {
            return Poll::Ready(ClientEvent::End(reason));
        }
        if client.blocked {
            if !client.queue.is_empty() {
                return Poll::Ready(ClientEvent::Write);
            }
            client.blocked = false;
        }
        if let Some(reason) = client.end.filter(|_| client.queue.is_empty()) {
            return Poll::Ready(ClientEvent::End(reason));
        }
        if !client
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            client.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The buffers for the next io_uring write of a blocked client:
    /// `[head][id][tail]` per queued frame, after what was already sent.
    /// Give them back with [`Core::recycle`].
    pub fn take_write(&mut self, key: usize) -> Vec<Bytes> {
        let mut pieces = self.pieces_pool.pop().unwrap_or_default();
        let client = &self.clients[key];
        // The slow path only: a write that outlives this call needs its own
        // copy of the id (the fast path points into the client record).
        let id = Bytes::copy_from_slice(&client.id);
        let mut skip = client.sent;
        for frame in self
            .deliveries
            .iter(&client.queue)
            .take(MAX_FRAMES_PER_WRITE)
        {
            for piece in [
                frame.head_bytes(client.mode),
                id.clone(),
                frame.tail_bytes(client.mode),
            ] {
                if skip >= piece.len() {
                    skip -= piece.len();
                } else {
                    pieces.push(piece.slice(skip..));
                    skip = 0;
                }
            }
        }
        self.stats.writes += 1;
        pieces
    }

    /// Returns a write's buffer list for reuse.
    pub fn recycle(&mut self, mut pieces: Vec<Bytes>) {
        pieces.clear();
        self.pieces_pool.push(pieces);
    }

    /// Records that `written` bytes of the last write reached the socket.
    pub fn complete_write(&mut self, key: usize, written: usize) {
        let now = self.now_ms();
        let client = &mut self.clients[key];
        let mut n = written + client.sent;
        client.sent = 0;
        while let Some(frame) = self.deliveries.front(&client.queue) {
            let len = frame.wire_len(client.mode);
            if n < len {
                client.sent = n;
                break;
            }
            n -= len;
            self.deliveries.pop(&mut client.queue);
            client.queued_bytes -= len;
            self.stats.queued_bytes -= len as u64;
            self.stats.frames_written += 1;
            client.last_write_ms = now;
        }
    }
}
