//! The few Linux calls the floor server makes, each a thin `libc` wrapper returning `io::Result`.
//!
//! Raw calls rather than `std::net` / mio on purpose: the floor is meant to show what the kernel
//! costs with nothing in between, so every syscall on the data path is visible here.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (20,000 here): every subscriber is a socket.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `lim`, which lives on our stack.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit only reads `lim`.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    Ok(lim.rlim_cur)
}

/// A non-blocking IPv4 listening socket with `SO_REUSEADDR` and the largest backlog the kernel
/// allows (`somaxconn` caps it).
pub fn listen(addr: SocketAddrV4) -> io::Result<RawFd> {
    // SAFETY: plain syscalls on integers and a sockaddr_in we own.
    unsafe {
        let fd = check(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let one: libc::c_int = 1;
        check(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        check(libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ))?;
        check(libc::listen(fd, 65535))?;
        Ok(fd)
    }
}

/// Accepts one pending connection (non-blocking, close-on-exec, `TCP_NODELAY` like every server
/// under test), or `None` when the queue is empty.
pub fn accept(listener: RawFd) -> io::Result<Option<RawFd>> {
    // SAFETY: accept4 with null address pointers is allowed; setsockopt reads a local int.
    unsafe {
        let fd = libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        );
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(None),
                // A peer that gave up before we got to it, or a momentary fd shortage: skip it.
                Some(libc::ECONNABORTED) | Some(libc::EMFILE) | Some(libc::ENFILE) => Ok(None),
                _ => Err(e),
            };
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        Ok(Some(fd))
    }
}

pub fn epoll_create() -> io::Result<RawFd> {
    // SAFETY: no pointers involved.
    check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// Registers (`EPOLL_CTL_ADD`) or changes (`EPOLL_CTL_MOD`) the interest of `fd`; the event's data
/// is the fd itself.
pub fn epoll_ctl(ep: RawFd, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: `ev` is a valid epoll_event on our stack for the duration of the call.
    check(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }).map(|_| ())
}

/// Waits for events (no timeout: the floor has no timers).
pub fn epoll_wait(ep: RawFd, events: &mut [libc::epoll_event]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `events.len()` entries into the slice.
    let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as libc::c_int, -1) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// Outcome of a non-blocking read or write.
pub enum Io {
    /// This many bytes were transferred (0 on a read: the peer closed).
    Done(usize),
    /// The socket is not ready (`EAGAIN`).
    WouldBlock,
    /// The connection is broken.
    Failed,
}

fn io_result(n: isize) -> Io {
    if n >= 0 {
        return Io::Done(n as usize);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Io::WouldBlock,
        _ => Io::Failed,
    }
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> Io {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    io_result(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// One `writev` of up to three slices: how every event reaches a subscriber
/// (`[chunk size + "id:"][client id][rest of the frame]`).
pub fn writev(fd: RawFd, parts: &[&[u8]]) -> Io {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 3];
    let n = parts.len().min(3);
    for (slot, part) in iov.iter_mut().zip(parts) {
        slot.iov_base = part.as_ptr() as *mut libc::c_void;
        slot.iov_len = part.len();
    }
    // SAFETY: every iovec points into a slice borrowed for the duration of the call; the kernel
    // only reads them.
    io_result(unsafe { libc::writev(fd, iov.as_ptr(), n as libc::c_int) })
}

pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and forgets it right after (closing also drops its epoll
    // registration, since the floor never duplicates descriptors).
    unsafe {
        libc::close(fd);
    }
}
