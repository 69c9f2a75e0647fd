//! One TCP connection: its socket, its receive buffer and the one op in
//! flight on it, and reading a whole bounded request from it.
//!
//! A connection keeps at most one receiving op in flight, owned here and
//! carried across requests and into the realtime stream, because a tokio-uring
//! op cannot be cancelled: dropping it would leave an op (and the fd) behind.
//! Requests are read with reads whose size adapts: small for the typical short
//! request, growing for a client that fills it (a publisher pipelining many
//! requests). An idle stream instead waits for readability, holding no buffer,
//! and takes what arrived without io_uring. What is done with a request is
//! `crate::serve`'s business.

use crate::ctx::CoreCtx;
use crate::http::error::ApiError;
use crate::http::request::{self, BodyFraming, ChunkedDecoder, Head};
use crate::http::response;
use crate::runtime::{self, ReadFuture, Readable, Socket};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, timeout_at};

const MIN_READ: usize = 2 * 1024;
const MAX_READ: usize = 64 * 1024;
/// What an idle stream takes from its socket at a time: a request
/// pipelined behind the stream, or bytes it has no use for.
const IDLE_READ: usize = MIN_READ;

/// The receiving op in flight on a connection.
enum Pending {
    Read(ReadFuture),
    /// An idle stream's wait for bytes (or the end).
    Readable(Readable),
}

pub struct Connection {
    pub ctx: Rc<CoreCtx>,
    pub socket: Socket,
    pub peer: SocketAddr,
    /// Received bytes not consumed yet.
    pub buf: Vec<u8>,
    /// The one receiving op in flight, if any.
    pending: Option<Pending>,
    read_size: u32,
    /// How far `buf` was searched for the end of a request head.
    scanned: u32,
    /// This connection's key in the core's registry.
    key: u32,
}

/// How reading the next request ended, when it did not produce one.
pub enum Stop {
    /// Peer closed, or the keep-alive timeout passed with nothing received.
    Quiet,
    /// Answer this error, then close.
    Error(ApiError),
}

impl Connection {
    pub fn new(ctx: Rc<CoreCtx>, socket: Socket, peer: SocketAddr) -> Connection {
        let key = ctx.core.borrow_mut().open_connection(socket.handle());
        Connection {
            ctx,
            socket,
            peer,
            buf: Vec::new(),
            pending: None,
            read_size: MIN_READ as u32,
            scanned: 0,
            key: key as u32,
        }
    }

    /// Reads until a complete request head is buffered, within the timeouts:
    /// `--head-timeout` from its first byte, or from the accept for the first
    /// request of a `fresh` connection; `--keepalive-timeout` between requests.
    pub async fn next_request(&mut self, fresh: bool) -> Result<Box<Head>, Stop> {
        let config = &self.ctx.config;
        let (head_timeout, keepalive) = (config.head_timeout, config.keepalive_timeout);
        let max_head = config.max_header_bytes;
        let mut deadline = deadline_after(if self.buf.is_empty() && !fresh {
            keepalive
        } else {
            head_timeout
        });
        loop {
            // Only a buffer holding a whole head is parsed, so a head sent a
            // byte at a time is searched once, not re-parsed per byte.
            let mut from = self.scanned as usize;
            while let Some(end) = request::head_end(&self.buf, from) {
                if let Some((head, used)) =
                    request::parse_head(&self.buf[..end], max_head).map_err(Stop::Error)?
                {
                    self.buf.drain(..used);
                    self.scanned = 0;
                    // Boxed: the head is held across awaits and handed on to
                    // a stream; a pointer keeps the connection task's state small.
                    return Ok(Box::new(head));
                }
                // Only empty lines so far (allowed before a request): look on.
                from = end + 3;
            }
            if self.buf.len() > max_head {
                return Err(Stop::Error(request::head_too_large(max_head)));
            }
            // Fits u32: bounded by max_head plus one read.
            self.scanned = self.buf.len() as u32;
            let was_empty = self.buf.is_empty();
            match timeout_at(deadline, self.read_more()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) | Ok(Err(_)) => return Err(Stop::Quiet),
                Err(_) if self.buf.is_empty() => return Err(Stop::Quiet),
                Err(_) => {
                    return Err(Stop::Error(ApiError::new(
                        408,
                        format!(
                            "The request did not arrive within {}.",
                            humantime::format_duration(head_timeout)
                        ),
                    )));
                }
            }
            if was_empty {
                // The first byte of a request starts its own, shorter clock.
                deadline = deadline_after(head_timeout);
            }
        }
    }

    /// Reads the request's body, at most `max` bytes; `Ok(None)` if the peer
    /// went away.
    pub async fn read_body(
        &mut self,
        head: &Head,
        max: usize,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        let deadline = deadline_after(self.ctx.config.head_timeout);
        match head.body {
            BodyFraming::None => Ok(Some(Vec::new())),
            BodyFraming::Length(n) if n > max => Err(request::body_too_large(max)),
            BodyFraming::Length(n) => {
                // Room for the whole body at once: no copy per doubling.
                self.buf.reserve(n.saturating_sub(self.buf.len()));
                self.send_continue(head, n).await;
                while self.buf.len() < n {
                    if !self.read_within(deadline).await? {
                        return Ok(None);
                    }
                }
                let rest = self.buf.split_off(n);
                Ok(Some(std::mem::replace(&mut self.buf, rest)))
            }
            BodyFraming::Chunked => {
                self.send_continue(head, 1).await;
                let mut decoder = ChunkedDecoder::default();
                loop {
                    if let Some((body, used)) = decoder.decode(&self.buf, max)? {
                        self.buf.drain(..used);
                        return Ok(Some(body));
                    }
                    // Keep only what is not decoded yet: the framing of many
                    // tiny chunks is never held.
                    self.buf.drain(..decoder.take_consumed());
                    if !self.read_within(deadline).await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn send_continue(&mut self, head: &Head, needed: usize) {
        if head.expect_continue && head.http11 && self.buf.len() < needed {
            // If this fails the body read that follows fails too.
            let _ = self.write_all(response::CONTINUE.to_vec()).await;
        }
    }

    /// Writes all of `buf` within `--write-timeout`. A peer that does not
    /// take it in time (it does not read, or its window stays shut) is cut
    /// off: the socket is shut down, which also ends the write in flight.
    pub async fn write_all(&self, buf: Vec<u8>) -> io::Result<()> {
        let write = self.socket.write_all(buf);
        match tokio::time::timeout(self.ctx.config.write_timeout, write).await {
            Ok(result) => result,
            Err(_) => {
                self.socket.reset();
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }

    async fn read_within(&mut self, deadline: Instant) -> Result<bool, ApiError> {
        match timeout_at(deadline, self.read_more()).await {
            Ok(Ok(got)) => Ok(got),
            Ok(Err(_)) => Ok(false),
            Err(_) => Err(ApiError::new(
                408,
                "The request body did not arrive in time.",
            )),
        }
    }

    /// Waits for the in-flight read (starting one if needed) and appends what
    /// it brought. `Ok(false)` on end of stream.
    pub async fn read_more(&mut self) -> io::Result<bool> {
        let size = self.read_size as usize;
        let (res, data) = std::future::poll_fn(|cx| self.poll_read(cx, size)).await;
        self.pending = None;
        let n = res?;
        if n == 0 {
            return Ok(false);
        }
        // Fits u32: bounded by MAX_READ.
        self.read_size = if n == data.capacity() {
            (size * 2).min(MAX_READ)
        } else {
            MIN_READ
        } as u32;
        self.absorb(data);
        Ok(true)
    }

    /// Polls the read in flight, starting one of `size` bytes if there is
    /// none. The op stays in `pending` while it is awaited, so a caller that
    /// gives up (a timeout) leaves it for the next read instead of losing it.
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        size: usize,
    ) -> Poll<(io::Result<usize>, Vec<u8>)> {
        loop {
            let socket = &self.socket;
            let pending = self
                .pending
                .get_or_insert_with(|| Pending::Read(socket.read(Vec::with_capacity(size))));
            match pending {
                Pending::Read(read) => return Pin::new(read).poll(cx),
                // Left by a stream that ended politely: finish it, then read.
                Pending::Readable(readable) => {
                    let res = ready!(Pin::new(readable).poll(cx));
                    self.pending = None;
                    if let Err(e) = res {
                        return Poll::Ready((Err(e), Vec::new()));
                    }
                }
            }
        }
    }

    /// Polls for bytes from a peer not expected to send any (a parked
    /// stream): waits for readability with no buffer held, then appends what
    /// arrived. `Ready(Ok(false))` on end of stream.
    pub fn poll_idle_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            let socket = &self.socket;
            let pending = self
                .pending
                .get_or_insert_with(|| Pending::Readable(socket.readable()));
            let readable = match pending {
                Pending::Readable(readable) => readable,
                // A read left in flight by a request that timed out waiting.
                Pending::Read(read) => {
                    let (res, data) = ready!(Pin::new(read).poll(cx));
                    self.pending = None;
                    if res? == 0 {
                        return Poll::Ready(Ok(false));
                    }
                    self.absorb(data);
                    return Poll::Ready(Ok(true));
                }
            };
            let res = ready!(Pin::new(readable).poll(cx));
            self.pending = None;
            res?;
            match self.socket.try_read(&mut self.buf, IDLE_READ) {
                Ok(n) => return Poll::Ready(Ok(n > 0)),
                // Readiness that went away (or a signal): wait again.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// The client's address: the peer's, or the one a trusted proxy names.
    pub fn client_ip(&self, head: &Head) -> IpAddr {
        self.ctx.access.proxies.client_ip(
            self.peer.ip(),
            head.forwarded_for.as_deref(),
            head.real_ip.as_deref(),
        )
    }

    /// Gives back what a large request or a pipelined burst made the receive
    /// buffer grow to, once most of it is consumed.
    pub fn release_excess(&mut self) {
        if self.buf.capacity() > 2 * MAX_READ && self.buf.len() < MAX_READ {
            self.buf.shrink_to(MIN_READ.max(self.buf.len()));
        }
    }

    /// Appends a completed read's bytes to the buffer.
    pub fn absorb(&mut self, data: Vec<u8>) {
        if self.buf.is_empty() {
            self.buf = data;
        } else {
            self.buf.extend_from_slice(&data);
        }
    }
}

fn deadline_after(d: Duration) -> Instant {
    Instant::now() + d
}

impl Drop for Connection {
    fn drop(&mut self) {
        let socket = self.socket.take();
        if socket.unsent() == 0 || socket.is_reset() {
            socket.close();
        } else {
            // A peer that still has to take what it was sent gets a write
            // timeout to do so; one that does not read is then reset, so
            // that the FIN does not wait behind data it will never take.
            let timeout = self.ctx.config.write_timeout;
            runtime::spawn(linger(socket, timeout));
        }
        self.ctx
            .core
            .borrow_mut()
            .close_connection(self.key as usize);
    }
}

/// Closes `socket` once the peer has taken what it was sent, or resets it
/// when that takes longer than `timeout`.
async fn linger(socket: Socket, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    socket.shutdown_write();
    while socket.unsent() > 0 {
        if Instant::now() >= deadline {
            return socket.reset();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    socket.close();
}
