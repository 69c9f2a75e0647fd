//! Sockets and a minimal HTTP/1.1 client.
//!
//! * Client connections bind their source address before connecting so that 10k+ connections to one
//!   server port can be spread over 127.0.0.1–127.0.0.N. `IP_BIND_ADDRESS_NO_PORT` makes the kernel pick
//!   the source port at connect time, per 4-tuple, instead of reserving a port per source address at bind
//!   time (which would exhaust the ephemeral range much earlier).
//! * PocketBase refuses a subscription POST from another IP than its stream's, so control requests for a
//!   client go out from the client's own source address (see `worker`).
//! * The HTTP client is deliberately tiny (keep-alive, Content-Length or chunked bodies, no redirects, no
//!   TLS): the targets are loopback test servers and a full client library would dominate the tool's cost
//!   and memory for nothing.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

// Response parsing lives in the test kit, so the tests read responses with the same code.
pub use ringcast_testkit::http::raise_nofile_limit;
pub use ringcast_testkit::wire::parse_head;
use ringcast_testkit::wire::{MAX_RESPONSE, bad, dechunk};

/// The i-th source address of the spread (`127.0.0.1 + i % n`), or `None` when not spreading.
pub fn source_ip(i: u64, n: u32) -> Option<Ipv4Addr> {
    (n > 0).then(|| Ipv4Addr::new(127, 0, 0, 1 + (i % u64::from(n)) as u8))
}

/// Opens a TCP connection from `src` (port chosen by the kernel) to `dst`, with TCP_NODELAY.
pub async fn connect(src: Option<Ipv4Addr>, dst: SocketAddr) -> io::Result<TcpStream> {
    let sock = match dst.ip() {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let (Some(ip), IpAddr::V4(_)) = (src, dst.ip()) {
        let one: libc::c_int = 1;
        // SAFETY: valid fd, option value pointer and length.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    }
    let stream = sock.connect(dst).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A complete (small) HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The connection can carry another request.
    pub keep_alive: bool,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A keep-alive HTTP/1.1 connection for control (subscription) and publish requests.
pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub async fn open(src: Option<Ipv4Addr>, dst: SocketAddr) -> io::Result<HttpConn> {
        Ok(HttpConn {
            stream: connect(src, dst).await?,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Sends one complete request and reads its response.
    pub async fn request(&mut self, req: &[u8]) -> io::Result<Response> {
        self.buf.clear();
        self.stream.write_all(req).await?;
        let head = loop {
            if let Some(h) = parse_head(&self.buf)? {
                break h;
            }
            self.fill().await?;
        };
        if (100..200).contains(&head.status) {
            return Err(bad("1xx responses are not supported"));
        }
        let start = head.len;
        let no_body = head.status == 204 || head.status == 304;
        let (body, keep_alive) = if no_body {
            (Vec::new(), !head.close)
        } else if head.chunked {
            loop {
                if let Some(body) = dechunk(&self.buf[start..])? {
                    break (body, !head.close);
                }
                self.fill().await?;
            }
        } else if let Some(n) = head.content_length {
            let n = usize::try_from(n).map_err(|_| bad("body too large"))?;
            if n > MAX_RESPONSE {
                return Err(bad("body too large"));
            }
            while self.buf.len() < start + n {
                self.fill().await?;
            }
            (self.buf[start..start + n].to_vec(), !head.close)
        } else {
            // Delimited by close.
            loop {
                match self.fill().await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            (self.buf[start..].to_vec(), false)
        };
        Ok(Response {
            status: head.status,
            body,
            keep_alive,
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.len() > MAX_RESPONSE {
            return Err(bad("response too large"));
        }
        self.buf.reserve(4096);
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by server",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ips() {
        assert_eq!(source_ip(0, 8), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_ip(9, 8), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_ip(5, 0), None);
    }
}
