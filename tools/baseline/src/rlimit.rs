//! Raising the open-file limit.
//!
//! Every SSE subscriber holds a socket, and the usual soft limit (1024) would cap
//! a benchmark at about a thousand clients, far below what the server can hold.
//! The hard limit is the real ceiling; an unprivileged process may raise its
//! soft limit up to it.

use std::io;

/// The soft limit before and after the change.
#[derive(Debug, Clone, Copy)]
pub struct NofileLimit {
    pub before: u64,
    pub after: u64,
}

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit.
pub fn raise_nofile_limit() -> io::Result<NofileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` only writes into the struct we pass, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `setrlimit` only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(NofileLimit {
        before,
        after: limit.rlim_cur,
    })
}
