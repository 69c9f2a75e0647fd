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

/// Largest response head or control/publish response body accepted.
const MAX_RESPONSE: usize = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    // SAFETY: zeroed rlimit is a valid out-parameter.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(rl.rlim_cur as u64)
}

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

/// Result of parsing a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head including the blank line.
    pub len: usize,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub close: bool,
    pub event_stream: bool,
}

/// Parses a response head from the start of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_RESPONSE {
                return Err(bad("response head too large"));
            }
            return Ok(None);
        }
        Err(e) => return Err(bad(&format!("bad response head: {e}"))),
    };
    let mut head = Head {
        status: resp.code.unwrap_or(0),
        len,
        content_length: None,
        chunked: false,
        close: resp.version == Some(0),
        event_stream: false,
    };
    for h in resp.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(v.parse().map_err(|_| bad("bad Content-Length"))?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = v
                .to_ascii_lowercase()
                .split(',')
                .any(|t| t.trim() == "chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = v.to_ascii_lowercase();
            if v.contains("close") {
                head.close = true;
            } else if v.contains("keep-alive") {
                head.close = false;
            }
        } else if h.name.eq_ignore_ascii_case("content-type") {
            head.event_stream = v.to_ascii_lowercase().starts_with("text/event-stream");
        }
    }
    Ok(Some(head))
}

pub fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
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

/// Decodes a complete chunked body from `buf`; `Ok(None)` if incomplete.
fn dechunk(buf: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    let mut i = 0;
    loop {
        let Some(eol) = memchr::memchr(b'\n', &buf[i..]) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[i..i + eol]).map_err(|_| bad("bad chunk size"))?;
        let size = line
            .trim_end_matches('\r')
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        i += eol + 1;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let Some(eol) = memchr::memchr(b'\n', &buf[i..]) else {
                    return Ok(None);
                };
                let empty = buf[i..i + eol].iter().all(|&b| b == b'\r');
                i += eol + 1;
                if empty {
                    return Ok(Some(body));
                }
            }
        }
        if buf.len() < i + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[i..i + size]);
        i += size;
        // CRLF after the data
        if buf[i] == b'\r' {
            i += 1;
        }
        if buf.get(i) != Some(&b'\n') {
            return Err(bad("chunk data not followed by CRLF"));
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n7b\r\n")
            .unwrap()
            .unwrap();
        assert!(h.chunked && h.event_stream && !h.close);
        assert_eq!(h.status, 200);
        assert_eq!(h.len, 80);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-")
                .unwrap()
                .is_none()
        );
        let h = parse_head(b"HTTP/1.0 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.close);
    }

    #[test]
    fn dechunk_body() {
        assert_eq!(
            dechunk(b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            Some(b"abcde".to_vec())
        );
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n").unwrap(), None);
        assert_eq!(dechunk(b"3\r\nab").unwrap(), None);
    }

    #[test]
    fn source_ips() {
        assert_eq!(source_ip(0, 8), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_ip(9, 8), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_ip(5, 0), None);
    }
}
