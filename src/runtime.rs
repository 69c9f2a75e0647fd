//! The runtime glue: the only module that knows tokio-uring.
//!
//! Each core runs a tokio-uring loop (a current-thread tokio runtime whose
//! socket I/O is submitted to an io_uring) with its own `SO_REUSEPORT`
//! listener, so the kernel spreads connections over cores with no shared
//! accept queue. Swapping the runtime means rewriting this file only.
//!
//! Traps from the spike (`shared/research/tokio-uring-notes.md`) handled here:
//! an in-flight op is not cancelled when its future is dropped, so a
//! connection shuts its socket down before letting go of it, which completes
//! any pending read or readiness poll; and the ring is set up without
//! `setup_defer_taskrun`, which hangs tokio-uring.
//!
//! A connected [`Socket`] is its bare fd, not tokio-uring's `TcpStream`: that
//! one is two small allocations per connection (its shared fd, 64 bytes with
//! glibc's header, and here an `Rc` around it, 32), which live as long as the
//! connection and so pin, between them, the pages of the connect phase's
//! short-lived buffers (measured: 19,000 idle streams left ≈ 3 MB of free but
//! resident fragments in the cores' arenas). So its ops are submitted here as
//! raw io_uring entries ([`UnsubmittedOneshot`]) that hold only their buffers,
//! and the fd is closed through the ring too: the close is queued behind
//! every op already queued on it, and the kernel takes its own reference to
//! the socket when it starts an op, so no op can land on a reused fd number.

use bytes::Bytes;
use io_uring::{cqueue, opcode, types};
use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket as RawSocket, Type};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_uring::{InFlightOneshot, OneshotOutputTransform, UnsubmittedOneshot};

/// io_uring submission queue size: how many operations one loop iteration
/// can batch into a single `io_uring_enter`. (Not to be confused with the
/// cross-core ring of `crate::ring`, which is made of channels.)
const SUBMISSION_QUEUE_ENTRIES: u32 = 4096;

/// A pending read: completes with the bytes read (0 = EOF) and the buffer.
/// Boxed: a connection holding one grows by a pointer, not by the op.
pub struct ReadFuture(Pin<Box<InFlightOneshot<Vec<u8>, ReadDone>>>);

/// Puts a read's bytes into its buffer (they were written to its spare capacity).
pub struct ReadDone;

impl OneshotOutputTransform for ReadDone {
    type Output = (io::Result<usize>, Vec<u8>);
    type StoredData = Vec<u8>;

    fn transform_oneshot_output(self, mut buf: Vec<u8>, cqe: cqueue::Entry) -> Self::Output {
        let n = match result(&cqe) {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        // SAFETY: the kernel wrote `n` bytes (at most the spare capacity the
        // read was given) right after the buffer's initialised part.
        unsafe { buf.set_len(buf.len() + n) };
        (Ok(n), buf)
    }
}

impl Future for ReadFuture {
    type Output = (io::Result<usize>, Vec<u8>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// A pending vectored write: bytes written and the buffers back.
pub struct WritevFuture(Pin<Box<InFlightOneshot<Gather, WritevDone>>>);

/// A vectored write's buffers and the iovec array that points into them,
/// both held (at stable addresses) until the write completes.
pub struct Gather {
    bufs: Vec<Bytes>,
    _iovecs: Vec<libc::iovec>,
}

/// Hands a vectored write's buffers back.
pub struct WritevDone;

impl OneshotOutputTransform for WritevDone {
    type Output = (io::Result<usize>, Vec<Bytes>);
    type StoredData = Gather;

    fn transform_oneshot_output(self, gather: Gather, cqe: cqueue::Entry) -> Self::Output {
        (result(&cqe), gather.bufs)
    }
}

impl Future for WritevFuture {
    type Output = (io::Result<usize>, Vec<Bytes>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// A one-shot wait for a socket to become readable (`IORING_OP_POLL_ADD`):
/// data, end of stream, a reset or a shutdown all complete it. Unlike a
/// parked read it holds no buffer, so it is what an idle stream waits on.
/// Like every tokio-uring op it is not cancelled when dropped: the socket must
/// be shut down (which completes it) before the connection lets go of it.
/// Must not be polled again once it has completed.
pub struct Readable(InFlightOneshot<(), Done>);

impl Future for Readable {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

/// The outcome of an op that holds nothing: a readiness poll (whose result
/// is the ready event mask) or a close.
pub struct Done;

impl OneshotOutputTransform for Done {
    type Output = io::Result<()>;
    type StoredData = ();

    fn transform_oneshot_output(self, _: (), cqe: cqueue::Entry) -> io::Result<()> {
        result(&cqe).map(drop)
    }
}

/// One write of a `write_all`: the buffer is held until the write completes.
struct WriteDone;

impl OneshotOutputTransform for WriteDone {
    type Output = (io::Result<usize>, Vec<u8>);
    type StoredData = Vec<u8>;

    fn transform_oneshot_output(self, buf: Vec<u8>, cqe: cqueue::Entry) -> Self::Output {
        (result(&cqe), buf)
    }
}

/// An accept's peer address, written by the kernel (boxed: at a stable address).
struct PeerAddr {
    storage: SockAddrStorage,
    len: libc::socklen_t,
}

/// Hands an accepted fd and its peer's address over.
struct AcceptDone;

impl OneshotOutputTransform for AcceptDone {
    type Output = io::Result<(Socket, SocketAddr)>;
    type StoredData = Box<PeerAddr>;

    fn transform_oneshot_output(self, addr: Box<PeerAddr>, cqe: cqueue::Entry) -> Self::Output {
        let fd = i32::try_from(result(&cqe)?).map_err(|_| io::ErrorKind::InvalidData)?;
        let socket = Socket { fd };
        // SAFETY: the kernel wrote a socket address of `len` bytes into `storage`.
        let peer = unsafe { SockAddr::new(addr.storage, addr.len) }.as_socket();
        let peer = peer.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
        Ok((socket, peer))
    }
}

/// A completion's result: bytes (or an fd, or an event mask), or -errno.
fn result(cqe: &cqueue::Entry) -> io::Result<usize> {
    match cqe.result() {
        r if r < 0 => Err(io::Error::from_raw_os_error(-r)),
        r => Ok(r as usize),
    }
}

thread_local! {
    /// Whether this thread is inside [`run`]'s main future, where ops can be
    /// submitted (not while the runtime drops its remaining tasks).
    static IN_LOOP: Cell<bool> = const { Cell::new(false) };
}

/// Marks the thread as inside the loop for as long as it lives.
struct InLoop;

impl InLoop {
    fn enter() -> InLoop {
        IN_LOOP.with(|l| l.set(true));
        InLoop
    }
}

impl Drop for InLoop {
    fn drop(&mut self) {
        IN_LOOP.with(|l| l.set(false));
    }
}

/// Binds a listening socket that other cores can bind too (`SO_REUSEPORT`).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = RawSocket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(65535)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Runs `main` on this thread's own io_uring loop until it completes.
pub fn run<F: Future>(main: F) -> F::Output {
    tokio_uring::builder()
        .entries(SUBMISSION_QUEUE_ENTRIES)
        .start(async move {
            let _in_loop = InLoop::enter();
            main.await
        })
}

/// Makes the calling thread yield the CPU to the cores (nice 19): for
/// background work that must not slow the event loops down on a machine with
/// few cores. On Linux a thread's nice value is its own.
pub fn lower_priority() {
    // SAFETY: setpriority(2) on the calling thread (who = 0); failure is harmless.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
}

/// Gives the allocator's free memory back to the OS. glibc returns only the
/// top of its heaps, so after many clients left, the pages they freed in the
/// middle stay resident (2,000 clients churned for 90 s, then all gone:
/// 12.1 MB resident without a trim, 10.4 MB with). Other allocators give
/// memory back on their own.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim(3) has no preconditions; it only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `TCP_CLOSE` in `tcp_info.tcpi_state` (include/net/tcp_states.h).
const TCP_CLOSE: u8 = 7;

/// Spawns a task on the current core's loop.
pub fn spawn<F: Future + 'static>(task: F) {
    tokio_uring::spawn(task);
}

/// A non-owning handle on a connected socket: the two things a core does to
/// a socket without io_uring, so that `crate::core` needs neither libc nor
/// tokio-uring. Valid while the [`Socket`] it came from is open (a core drops
/// a client's handle before its connection closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRef(RawFd);

impl SocketRef {
    /// A handle on any socket fd (tests and benchmarks use socket pairs).
    pub const fn new(fd: RawFd) -> SocketRef {
        SocketRef(fd)
    }

    /// Sends as much of `iov` as the socket takes right now, without waiting
    /// and without io_uring.
    ///
    /// Fan-out writes go this way first: on a socket with room the send
    /// completes inline anyway, and doing it here keeps those writes out of
    /// the submission queue, where thousands of them would otherwise sit in
    /// front of (and delay) the answers to publishers. Only a write that would
    /// block is handed to io_uring ([`Socket::writev`]).
    pub fn try_send(self, iov: &IoVecs<'_, '_>) -> io::Result<usize> {
        // SAFETY: msghdr is plain data; zeroed is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.vecs.as_ptr().cast_mut();
        msg.msg_iovlen = iov.vecs.len();
        // SAFETY: every iovec points into a slice that outlives `iov` (its
        // lifetime parameter), and `iov` is borrowed for the whole call.
        let n = unsafe { libc::sendmsg(self.0, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Shuts both directions down: a pending read or a write stuck on a full
    /// buffer completes at once; the fd stays open until its owner closes it.
    pub fn abort(self) {
        // SAFETY: shutdown(2) does not close the fd; on a stale fd it fails harmlessly.
        unsafe { libc::shutdown(self.0, libc::SHUT_RDWR) };
    }
}

/// The iovec array of one non-blocking vectored send, reused from send to
/// send so that a fan-out write allocates nothing.
#[derive(Debug, Default)]
pub struct IoVecArray {
    vecs: Vec<libc::iovec>,
}

impl IoVecArray {
    pub fn with_capacity(n: usize) -> IoVecArray {
        IoVecArray {
            vecs: Vec::with_capacity(n),
        }
    }

    /// An empty gather list whose pieces must outlive it (`'p`).
    pub fn gather<'p>(&mut self) -> IoVecs<'_, 'p> {
        self.vecs.clear();
        IoVecs {
            vecs: &mut self.vecs,
            _pieces: std::marker::PhantomData,
        }
    }
}

/// Slices gathered for one [`SocketRef::try_send`]; it borrows them, so they
/// stay alive until the send.
pub struct IoVecs<'a, 'p> {
    vecs: &'a mut Vec<libc::iovec>,
    _pieces: std::marker::PhantomData<&'p [u8]>,
}

impl<'p> IoVecs<'_, 'p> {
    pub fn push(&mut self, piece: &'p [u8]) {
        self.vecs.push(libc::iovec {
            iov_base: piece.as_ptr().cast_mut().cast(),
            iov_len: piece.len(),
        });
    }
}

/// A core's listener.
pub struct Listener {
    inner: std::net::TcpListener,
}

impl Listener {
    pub fn from_std(listener: std::net::TcpListener) -> Listener {
        Listener { inner: listener }
    }

    pub async fn accept(&self) -> io::Result<(Socket, SocketAddr)> {
        let addr = Box::new(PeerAddr {
            storage: SockAddrStorage::zeroed(),
            len: std::mem::size_of::<SockAddrStorage>() as libc::socklen_t,
        });
        let fd = types::Fd(self.inner.as_raw_fd());
        let storage = (&raw const addr.storage).cast_mut().cast();
        let len = (&raw const addr.len).cast_mut();
        let sqe = opcode::Accept::new(fd, storage, len)
            .flags(libc::SOCK_CLOEXEC)
            .build();
        let (socket, peer) = UnsubmittedOneshot::new(addr, AcceptDone, sqe)
            .submit()
            .await?;
        // Frames are coalesced before they are written; Nagle would only delay them.
        socket.set_nodelay()?;
        Ok((socket, peer))
    }

    /// Makes pending and future `accept`s fail, so accept loops end.
    pub fn stop(&self) {
        // SAFETY: shutdown(2) on our own listening socket; the fd stays valid.
        unsafe { libc::shutdown(self.inner.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// A connected socket: its fd, owned, and nothing else. Reads and writes may
/// be in flight at once; each op holds only its buffers.
pub struct Socket {
    /// -1 once handed on ([`Socket::take`]).
    fd: RawFd,
}

impl Socket {
    /// Starts a read into `buf`'s spare capacity.
    pub fn read(&self, mut buf: Vec<u8>) -> ReadFuture {
        let spare = buf.spare_capacity_mut();
        let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
        let sqe = opcode::Recv::new(self.raw(), spare.as_mut_ptr().cast(), len).build();
        ReadFuture(Box::pin(
            UnsubmittedOneshot::new(buf, ReadDone, sqe).submit(),
        ))
    }

    /// Waits until the socket is readable, holding no buffer meanwhile.
    pub fn readable(&self) -> Readable {
        // POLLIN also reports end of stream; errors and hang-ups always are.
        let sqe = opcode::PollAdd::new(self.raw(), libc::POLLIN as u32).build();
        Readable(UnsubmittedOneshot::new((), Done, sqe).submit())
    }

    /// Appends what the socket holds right now, up to `max` bytes, to `buf`,
    /// without waiting and without io_uring: after [`Socket::readable`] the
    /// bytes are there, so a read op would be a round trip for nothing.
    /// `Ok(0)` is end of stream.
    pub fn try_read(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        buf.reserve(max);
        let spare = buf.spare_capacity_mut();
        // SAFETY: recv(2) writes at most `spare.len()` bytes into the
        // vector's spare capacity, which is allocated and ours to write.
        let n = unsafe {
            libc::recv(
                self.fd,
                spare.as_mut_ptr().cast(),
                spare.len().min(max),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    /// Writes all of `buf`. Like the other ops, the future is boxed: an op's
    /// state is then held only while it is in flight, not reserved inside
    /// every parked connection.
    pub fn write_all(&self, mut buf: Vec<u8>) -> Pin<Box<dyn Future<Output = io::Result<()>>>> {
        let fd = self.raw();
        Box::pin(async move {
            let mut done = 0;
            while done < buf.len() {
                let rest = &buf[done..];
                let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
                let sqe = opcode::Send::new(fd, rest.as_ptr(), len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build();
                let (res, back) = UnsubmittedOneshot::new(buf, WriteDone, sqe).submit().await;
                buf = back;
                match res? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => done += n,
                }
            }
            Ok(())
        })
    }

    /// One vectored write; may be partial. The iovec array is allocated per
    /// op, and held with the buffers until the write completes.
    pub fn writev(&self, bufs: Vec<Bytes>) -> WritevFuture {
        let iovecs: Vec<libc::iovec> = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr().cast_mut().cast(),
                iov_len: b.len(),
            })
            .collect();
        let n = u32::try_from(iovecs.len()).unwrap_or(u32::MAX);
        let sqe = opcode::Writev::new(self.raw(), iovecs.as_ptr(), n).build();
        let gather = Gather {
            bufs,
            _iovecs: iovecs,
        };
        WritevFuture(Box::pin(
            UnsubmittedOneshot::new(gather, WritevDone, sqe).submit(),
        ))
    }

    /// The handle a core keeps to write without io_uring and to abort.
    pub fn handle(&self) -> SocketRef {
        SocketRef(self.fd)
    }

    /// This socket, moved out of `self` (which then owns nothing): for a
    /// connection handing its socket to the task that closes it.
    pub fn take(&mut self) -> Socket {
        Socket {
            fd: std::mem::replace(&mut self.fd, -1),
        }
    }

    /// Shuts both directions down: pending reads complete, the peer sees EOF,
    /// and the fd is closed when the socket is dropped.
    pub fn close(&self) {
        // SAFETY: shutdown(2) does not close the fd; failure is harmless.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }

    fn raw(&self) -> types::Fd {
        types::Fd(self.fd)
    }

    fn set_nodelay(&self) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt(2) on our own socket with an int option.
        let r = unsafe {
            libc::setsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                std::ptr::addr_of!(on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Bytes written to the socket that the peer has not acknowledged yet;
    /// none once the connection is gone (the kernel's count stays as it was
    /// when a reset arrives, but nothing will ever be sent).
    pub fn unsent(&self) -> usize {
        if self.is_closed() {
            return 0;
        }
        let mut n: libc::c_int = 0;
        // SAFETY: ioctl(2) TIOCOUTQ (SIOCOUTQ) writes one int.
        let r = unsafe { libc::ioctl(self.fd, libc::TIOCOUTQ, &mut n) };
        if r == 0 {
            usize::try_from(n).unwrap_or(0)
        } else {
            0
        }
    }

    /// Whether the TCP connection is over (`TCP_CLOSE`: reset by the peer,
    /// or closed both ways).
    fn is_closed(&self) -> bool {
        // The state is tcp_info's first byte; the kernel copies no more
        // than it is asked for.
        let mut state: u8 = 0;
        let mut len: libc::socklen_t = 1;
        // SAFETY: getsockopt(2) TCP_INFO into a one-byte buffer of that length.
        let r = unsafe {
            libc::getsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                std::ptr::addr_of_mut!(state).cast(),
                &mut len,
            )
        };
        r != 0 || state == TCP_CLOSE
    }

    /// Whether [`Socket::reset`] was called: closing it then resets it.
    pub fn is_reset(&self) -> bool {
        let mut linger = libc::linger {
            l_onoff: 0,
            l_linger: 0,
        };
        let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
        // SAFETY: getsockopt(2) into a linger struct of the given size.
        let r = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::addr_of_mut!(linger).cast(),
                &mut len,
            )
        };
        r == 0 && linger.l_onoff != 0 && linger.l_linger == 0
    }

    /// Sends a FIN after what is queued; reads go on.
    pub fn shutdown_write(&self) {
        // SAFETY: shutdown(2) does not close the fd; failure is harmless.
        unsafe { libc::shutdown(self.fd, libc::SHUT_WR) };
    }

    /// Cuts the connection off, for a peer that does not read: what is still
    /// queued in the kernel is thrown away and the peer gets a reset when the
    /// fd closes (`SO_LINGER` 0), instead of a FIN that would wait behind
    /// megabytes it will never take.
    pub fn reset(&self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt(2) on our own socket with a valid linger struct.
        unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::addr_of!(linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        self.close();
    }
}

impl Drop for Socket {
    /// Closes the fd through the ring, behind every op queued on it (see the
    /// module doc); when the loop is gone (its leftover tasks being dropped),
    /// with close(2).
    fn drop(&mut self) {
        if self.fd < 0 {
            return;
        }
        if IN_LOOP.with(Cell::get) {
            let sqe = opcode::Close::new(self.raw()).build();
            // Its result is of no use: dropping the op leaves it to complete.
            drop(UnsubmittedOneshot::new((), Done, sqe).submit());
        } else {
            // SAFETY: the fd is ours and closed once.
            unsafe { libc::close(self.fd) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A connected pair: ours on the io_uring side, the peer a plain std socket.
    fn pair() -> (Socket, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        let socket = Socket {
            fd: std::os::fd::IntoRawFd::into_raw_fd(ours),
        };
        (socket, peer)
    }

    #[test]
    fn readable_waits_for_bytes_then_for_the_end_without_a_buffer() {
        run(async {
            let (socket, mut peer) = pair();
            let mut buf = Vec::new();
            assert_eq!(
                socket.try_read(&mut buf, 64).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            let readable = socket.readable();
            peer.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            readable.await.unwrap();
            assert_eq!(socket.try_read(&mut buf, 4).unwrap(), 4);
            assert_eq!(socket.try_read(&mut buf, 64).unwrap(), 12);
            assert_eq!(buf, b"GET / HTTP/1.1\r\n");
            drop(peer);
            socket.readable().await.unwrap();
            assert_eq!(socket.try_read(&mut buf, 64).unwrap(), 0);
        });
    }

    #[test]
    fn shutting_down_completes_a_pending_poll() {
        run(async {
            let (socket, _peer) = pair();
            let readable = socket.readable();
            socket.close();
            readable.await.unwrap();
            assert_eq!(socket.try_read(&mut Vec::new(), 64).unwrap(), 0);
        });
    }
}
