//! Writing queued frames to sockets — the one part of a core that touches a
//! socket, through the runtime's narrow
//! [`SocketRef`](crate::runtime::SocketRef) interface.
//!
//! The flush task takes clients from the front of the flush line and writes
//! each one's whole queue with one non-blocking `sendmsg` of
//! `[head][id][tail]` iovecs per frame, gathered in a reused per-core array —
//! nothing allocated, nothing copied. A socket that is full is handed to the
//! client's stream task, which writes through io_uring (waiting for room)
//! with buffers from [`Writer::take_write`] until the queue is empty; the
//! per-client byte cap bounds what can pile up meanwhile.

use super::client::Client;
use super::outbox::Outbox;
use super::stats::Counters;
use crate::hooks::EndReason;
use crate::runtime::IoVecArray;
use bytes::Bytes;

/// Most frames one write carries (3 iovecs each; Linux allows 1024 iovecs).
pub const MAX_FRAMES_PER_WRITE: usize = 341;

#[derive(Debug)]
pub struct Writer {
    /// The iovec array of the current direct write (capacity for the largest).
    iov: IoVecArray,
    /// Reusable buffer lists for io_uring writes, so they are not allocated per write.
    pieces_pool: Vec<Vec<Bytes>>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            iov: IoVecArray::with_capacity(3 * MAX_FRAMES_PER_WRITE),
            pieces_pool: Vec::new(),
        }
    }
}

impl Writer {
    /// Writes what `client` (at `key`) has queued straight to its socket, if
    /// the socket takes it now. A client whose socket is full is handed to
    /// its stream task, which waits for room through io_uring.
    pub fn flush(
        &mut self,
        key: u32,
        client: &mut Client,
        outbox: &mut Outbox,
        now: u64,
        stats: &mut Counters,
    ) {
        if !client.dirty {
            return;
        }
        client.dirty = false;
        self.write_now(key, client, outbox, now, stats);
    }

    /// The write of [`Writer::flush`], whether or not the client is in the
    /// flush line (a fan-out makes room in a full queue this way).
    pub fn write_now(
        &mut self,
        key: u32,
        client: &mut Client,
        outbox: &mut Outbox,
        now: u64,
        stats: &mut Counters,
    ) {
        if client.blocked || client.queue.is_empty() || client.aborted() {
            return;
        }
        let (total, result) = {
            let mut iov = self.iov.gather();
            let (mut total, mut skip) = (0, client.sent as usize);
            for frame in outbox.frames(client).take(MAX_FRAMES_PER_WRITE) {
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
                    iov.push(piece);
                    total += piece.len();
                }
            }
            (total, client.socket.try_send(&iov))
        };
        stats.writes += 1;
        match result {
            Ok(written) => {
                outbox.complete_write(client, written, now, stats);
                if written < total {
                    // The socket is full: the stream task waits for room.
                    client.blocked = true;
                    client.wake();
                } else if !client.queue.is_empty() && !client.dirty {
                    // More than one write's worth: back in line.
                    outbox.back_in_line(key, client);
                } else if client.end.is_some() {
                    // A polite end waits for an empty queue.
                    client.wake();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                client.blocked = true;
                client.wake();
            }
            Err(_) => client.end(EndReason::ClientClosed),
        }
    }

    /// The buffers for the next io_uring write of a blocked client:
    /// `[head][id][tail]` per queued frame, after what was already sent.
    /// Give them back with [`Writer::recycle`].
    pub fn take_write(
        &mut self,
        client: &Client,
        outbox: &Outbox,
        stats: &mut Counters,
    ) -> Vec<Bytes> {
        let mut pieces = self.pieces_pool.pop().unwrap_or_default();
        // The slow path only: a write that outlives this call needs its own
        // copy of the id (the fast path points into the client record).
        let id = Bytes::copy_from_slice(&client.id);
        let mut skip = client.sent as usize;
        for frame in outbox.frames(client).take(MAX_FRAMES_PER_WRITE) {
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
        stats.writes += 1;
        pieces
    }

    /// Returns a write's buffer list for reuse.
    pub fn recycle(&mut self, mut pieces: Vec<Bytes>) {
        pieces.clear();
        self.pieces_pool.push(pieces);
    }
}
