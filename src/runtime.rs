//! The runtime glue: the only module that knows tokio-uring.
//!
//! Each core runs a tokio-uring loop (a current-thread tokio runtime whose
//! socket I/O is submitted to an io_uring) with its own `SO_REUSEPORT`
//! listener, so the kernel spreads connections over cores with no shared
//! accept queue. Swapping the runtime means rewriting this file only.
//!
//! Traps from the spike (`shared/research/tokio-uring-notes.md`) handled here:
//! an in-flight op is not cancelled when its future is dropped and keeps the
//! fd open, so a connection shuts its socket down before letting go of it,
//! which completes any pending read or readiness poll; and the ring is set up
//! without `setup_defer_taskrun`, which hangs tokio-uring.

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket as RawSocket, Type};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio_uring::{InFlightOneshot, OneshotOutputTransform, UnsubmittedOneshot};

/// io_uring submission queue size: how many operations one loop iteration
/// can batch into a single `io_uring_enter`. (Not to be confused with the
/// cross-core ring of `crate::ring`, which is made of channels.)
const SUBMISSION_QUEUE_ENTRIES: u32 = 4096;

/// A pending read: completes with the bytes read (0 = EOF) and the buffer.
pub type ReadFuture = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>)>>>;

/// A pending vectored write: bytes written and the buffers back.
pub type WritevFuture = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<Bytes>)>>>;

/// A one-shot wait for a socket to become readable (`IORING_OP_POLL_ADD`):
/// data, end of stream, a reset or a shutdown all complete it. Unlike a
/// parked read it holds no buffer, so it is what an idle stream waits on.
/// Like every tokio-uring op it is not cancelled when dropped: the socket must
/// be shut down (which completes it) before the connection lets go of it.
/// Must not be polled again once it has completed.
pub struct Readable(InFlightOneshot<Rc<tokio_uring::net::TcpStream>, PollDone>);

/// Turns the poll's completion into a result; the op's stored data (the
/// socket handle) keeps the fd open while the poll is in flight.
pub struct PollDone;

impl OneshotOutputTransform for PollDone {
    type Output = io::Result<()>;
    type StoredData = Rc<tokio_uring::net::TcpStream>;

    fn transform_oneshot_output(
        self,
        _socket: Self::StoredData,
        cqe: io_uring::cqueue::Entry,
    ) -> io::Result<()> {
        // The result is the ready event mask, or -errno.
        match cqe.result() {
            r if r < 0 => Err(io::Error::from_raw_os_error(-r)),
            _ => Ok(()),
        }
    }
}

impl Future for Readable {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll(cx)
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
        .start(main)
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

/// Lets the loop park once and resumes at once. tokio-uring submits queued
/// operations (replies, next reads) only when its thread parks, so a long
/// burst of work must let it park now and then; a timer would round that
/// pause up to a whole millisecond with the core idle, while a no-op through
/// the ring is already complete when the loop parks, and the park returns
/// without sleeping.
pub async fn park_once() {
    let nop = io_uring::opcode::Nop::new().build();
    // A no-op cannot fail; its result says nothing.
    UnsubmittedOneshot::new((), NopDone, nop).submit().await;
}

/// The no-op's completion, which carries nothing.
pub struct NopDone;

impl OneshotOutputTransform for NopDone {
    type Output = ();
    type StoredData = ();

    fn transform_oneshot_output(self, _: (), _: io_uring::cqueue::Entry) {}
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
    inner: tokio_uring::net::TcpListener,
}

impl Listener {
    pub fn from_std(listener: std::net::TcpListener) -> Listener {
        Listener {
            inner: tokio_uring::net::TcpListener::from_std(listener),
        }
    }

    pub async fn accept(&self) -> io::Result<(Socket, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        // Frames are coalesced before they are written; Nagle would only delay them.
        stream.set_nodelay(true)?;
        Ok((
            Socket {
                stream: Rc::new(stream),
            },
            peer,
        ))
    }

    /// Makes pending and future `accept`s fail, so accept loops end.
    pub fn stop(&self) {
        // SAFETY: shutdown(2) on our own listening socket; the fd stays valid.
        unsafe { libc::shutdown(self.inner.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// A connected socket. Clones share it; reads and writes may be in flight at once.
#[derive(Clone)]
pub struct Socket {
    stream: Rc<tokio_uring::net::TcpStream>,
}

impl Socket {
    /// Starts a read into `buf`'s spare capacity.
    pub fn read(&self, buf: Vec<u8>) -> ReadFuture {
        let stream = self.stream.clone();
        Box::pin(async move { stream.read(buf).await })
    }

    /// Waits until the socket is readable, holding no buffer meanwhile.
    pub fn readable(&self) -> Readable {
        let fd = io_uring::types::Fd(self.stream.as_raw_fd());
        // POLLIN also reports end of stream; errors and hang-ups always are.
        let sqe = io_uring::opcode::PollAdd::new(fd, libc::POLLIN as u32).build();
        Readable(UnsubmittedOneshot::new(self.stream.clone(), PollDone, sqe).submit())
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
                self.stream.as_raw_fd(),
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
    /// state (≈ 200–300 bytes) is then held only while it is in flight, not
    /// reserved inside every parked connection task.
    pub fn write_all(&self, buf: Vec<u8>) -> Pin<Box<dyn Future<Output = io::Result<()>>>> {
        let stream = self.stream.clone();
        Box::pin(async move { stream.write_all(buf).await.0 })
    }

    /// One vectored write; may be partial. tokio-uring allocates the iovec
    /// array per op, so the box adds one small allocation per write.
    pub fn writev(&self, bufs: Vec<Bytes>) -> WritevFuture {
        let stream = self.stream.clone();
        Box::pin(async move { stream.writev(bufs).await })
    }

    /// The handle a core keeps to write without io_uring and to abort.
    pub fn handle(&self) -> SocketRef {
        SocketRef(self.stream.as_raw_fd())
    }

    /// Shuts both directions down: pending reads complete, the peer sees EOF,
    /// and the fd is closed once the last in-flight op lets go of it.
    pub fn close(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
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
        let r = unsafe { libc::ioctl(self.stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
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
                self.stream.as_raw_fd(),
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
                self.stream.as_raw_fd(),
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
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
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
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::addr_of!(linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        self.close();
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
        let stream = tokio_uring::net::TcpStream::from_std(ours);
        let socket = Socket {
            stream: Rc::new(stream),
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
