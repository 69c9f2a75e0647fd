//! A raw HTTP/1.1 client on a blocking socket, and the requests the tests send.
//!
//! Tests need to see what a library client hides: header order, chunk sizes, the zero chunk, what
//! arrives in one read, silence, EOF versus reset. So [`Conn`] keeps every received byte and hands
//! it out raw; the framing itself is found by [`crate::wire`], the parser the load tool uses.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::bytes::{assert_bytes, find, show};
use crate::wire;

/// Default read timeout for every socket: a test never hangs for longer than this on one read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A response head: its exact bytes, and what was parsed from them.
#[derive(Debug, Clone)]
pub struct Head {
    /// Every byte of the head, status line to the empty line included.
    pub raw: Vec<u8>,
    pub status: u16,
    /// Header lines in wire order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// Body framing as the load tool sees it.
    pub framing: wire::Head,
}

impl Head {
    /// Parse a complete head (as cut from the stream by [`wire::parse_head`]).
    #[track_caller]
    pub fn parse(raw: Vec<u8>) -> Head {
        let mut headers = Vec::new();
        let framing = match wire::parse_head_with(&raw, |n, v| {
            headers.push((n.to_string(), String::from_utf8_lossy(v).trim().to_string()))
        }) {
            Ok(Some(h)) if h.len == raw.len() => h,
            Ok(_) => panic!("not exactly one response head: {}", show(&raw)),
            Err(e) => panic!("{e}: {}", show(&raw)),
        };
        Head {
            raw,
            status: framing.status,
            headers,
            framing,
        }
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// `HTTP/1.1 200 OK`, as sent.
    pub fn status_line(&self) -> String {
        let end = find(&self.raw, b"\r\n").unwrap_or(self.raw.len());
        String::from_utf8_lossy(&self.raw[..end]).into_owned()
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}\nhead: {}",
                show(&self.body),
                show(&self.head.raw)
            )
        })
    }
}

/// How a wait for the end of a connection ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum End {
    Eof,
    Reset,
    Timeout,
}

/// One TCP connection and the bytes received on it but not consumed yet.
pub struct Conn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Conn::from_stream(stream)
    }

    /// Connect from a given local address (e.g. 127.0.0.2, to look like another client IP).
    pub fn connect_from(local: IpAddr, addr: SocketAddr) -> Conn {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        sock.bind(&SocketAddr::new(local, 0).into())
            .unwrap_or_else(|e| panic!("bind {local}: {e}"));
        sock.connect(&addr.into())
            .unwrap_or_else(|e| panic!("connect {local} -> {addr}: {e}"));
        Conn::from_stream(sock.into())
    }

    /// Connect with a small receive buffer (set before connecting, so the window stays small).
    pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> Conn {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        sock.set_recv_buffer_size(rcvbuf)
            .expect("SO_RCVBUF on a new socket");
        sock.connect(&addr.into())
            .unwrap_or_else(|e| panic!("connect -> {addr}: {e}"));
        Conn::from_stream(sock.into())
    }

    /// Like [`Conn::connect`], returning the error instead of panicking (for tests that open
    /// connections until something gives).
    pub fn try_connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        TcpStream::connect_timeout(&addr, timeout).map(Conn::from_stream)
    }

    fn from_stream(stream: TcpStream) -> Conn {
        stream.set_nodelay(true).ok();
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set a read timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("set a write timeout");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream
            .set_read_timeout(Some(d))
            .expect("set a read timeout");
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {} bytes: {e}", bytes.len()));
    }

    /// Read once more from the socket into the buffer. Ok(0) = EOF.
    pub fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 65536];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    #[track_caller]
    fn fill_or_panic(&mut self, what: &str) {
        match self.fill() {
            Ok(0) => panic!(
                "EOF while reading {what}; unconsumed bytes: {}",
                show(&self.buf)
            ),
            Ok(_) => {}
            Err(e) => panic!(
                "error while reading {what}: {e}; unconsumed bytes: {}",
                show(&self.buf)
            ),
        }
    }

    /// The first `n` buffered bytes, consumed.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// One `read()` call (or the already buffered bytes, if any): what arrived together.
    pub fn read_once(&mut self) -> Vec<u8> {
        if self.buf.is_empty() {
            self.fill_or_panic("one read");
        }
        std::mem::take(&mut self.buf)
    }

    /// Bytes up to and including `delim`.
    #[track_caller]
    pub fn read_until(&mut self, delim: &[u8]) -> Vec<u8> {
        loop {
            if let Some(p) = find(&self.buf, delim) {
                return self.take(p + delim.len());
            }
            self.fill_or_panic(&format!("up to {}", show(delim)));
        }
    }

    #[track_caller]
    fn read_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill_or_panic(&format!("{n} bytes"));
        }
        self.take(n)
    }

    #[track_caller]
    pub fn read_head(&mut self) -> Head {
        loop {
            match wire::parse_head(&self.buf) {
                Ok(Some(h)) => return Head::parse(self.take(h.len)),
                Ok(None) => self.fill_or_panic("a response head"),
                Err(e) => panic!("{e}: {}", show(&self.buf)),
            }
        }
    }

    /// Read one complete response. `head_request`: the request was HEAD (no body follows).
    /// Body framing: Content-Length, chunked (all chunks up to the zero chunk, de-chunked), or
    /// none for 1xx/204/304 and when neither header is present.
    #[track_caller]
    pub fn read_response_to(&mut self, head_request: bool) -> Response {
        let head = self.read_head();
        let f = head.framing;
        let body = if head_request || f.status == 204 || f.status == 304 || f.status < 200 {
            Vec::new()
        } else if let Some(n) = f.content_length {
            self.read_n(usize::try_from(n).expect("a Content-Length that fits in memory"))
        } else if f.chunked {
            let mut body = Vec::new();
            loop {
                let c = self.read_chunk_payload();
                if c.is_empty() {
                    break;
                }
                body.extend_from_slice(&c);
            }
            body
        } else {
            Vec::new()
        };
        Response { head, body }
    }

    #[track_caller]
    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    /// One HTTP chunk, raw: size line, payload and the CR LF after it (for the zero chunk:
    /// `0\r\n\r\n`, trailers included if any).
    #[track_caller]
    pub fn read_chunk_raw(&mut self) -> Vec<u8> {
        loop {
            match wire::next_chunk(&self.buf) {
                Ok(Some(c)) => return self.take(c.len),
                Ok(None) => self.fill_or_panic("a chunk"),
                Err(e) => panic!("{e}: {}", show(&self.buf)),
            }
        }
    }

    /// One HTTP chunk's payload (empty for the zero chunk). The framing must be exact: hex digits
    /// and CR LF, the data, CR LF (no extensions, no trailers).
    #[track_caller]
    pub fn read_chunk_payload(&mut self) -> Vec<u8> {
        let raw = self.read_chunk_raw();
        let size = find(&raw, b"\r\n")
            .filter(|&p| p > 0 && raw[..p].iter().all(u8::is_ascii_hexdigit))
            .and_then(|p| {
                let size = usize::from_str_radix(std::str::from_utf8(&raw[..p]).ok()?, 16).ok()?;
                (raw.len() == p + 2 + size + 2 && raw.ends_with(b"\r\n"))
                    .then_some(p + 2..p + 2 + size)
            })
            .unwrap_or_else(|| {
                panic!("chunk framing is not `HEX\\r\\nDATA\\r\\n`: {}", show(&raw))
            });
        raw[size].to_vec()
    }

    /// Expect exactly these bytes next (reads exactly `expected.len()` bytes).
    #[track_caller]
    pub fn expect_bytes(&mut self, expected: &[u8], ctx: &str) {
        let got = self.read_n(expected.len());
        assert_bytes(&got, expected, ctx);
    }

    /// Expect that nothing arrives for `d` (no bytes, no EOF).
    #[track_caller]
    pub fn expect_silence(&mut self, d: Duration, ctx: &str) {
        assert!(
            self.buf.is_empty(),
            "{ctx}: unexpected bytes already received: {}",
            show(&self.buf)
        );
        self.set_read_timeout(d);
        let r = self.fill();
        self.set_read_timeout(READ_TIMEOUT);
        match r {
            Ok(0) => panic!("{ctx}: expected silence, got EOF"),
            Ok(_) => panic!("{ctx}: expected silence for {d:?}, got {}", show(&self.buf)),
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("{ctx}: expected silence, got error {e}"),
        }
    }

    /// Read everything until the peer closes (or `timeout` passes). Returns the bytes and how it ended.
    pub fn read_to_end_within(&mut self, timeout: Duration) -> (Vec<u8>, End) {
        let deadline = Instant::now() + timeout;
        let end = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break End::Timeout;
            }
            self.set_read_timeout(left);
            match self.fill() {
                Ok(0) => break End::Eof,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => break End::Timeout,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break End::Reset,
                Err(e) => panic!("read_to_end_within: {e}"),
            }
        };
        self.set_read_timeout(READ_TIMEOUT);
        (std::mem::take(&mut self.buf), end)
    }

    /// Whether the peer has closed or reset the connection, without reading: bytes it sent before
    /// closing may still wait unread (`POLLRDHUP`), so a client that never reads can tell.
    pub fn peer_closed(&self) -> bool {
        self.poll_now(libc::POLLRDHUP) & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// Whether bytes (or an end) are waiting to be read, without reading them: for a client that
    /// keeps sending until the server answers.
    pub fn readable(&self) -> bool {
        !self.buf.is_empty() || self.poll_now(libc::POLLIN | libc::POLLRDHUP) != 0
    }

    /// The `revents` of a `poll` for `events` that does not wait.
    fn poll_now(&self, events: libc::c_short) -> libc::c_short {
        let mut fd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.stream),
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        if n > 0 { fd.revents } else { 0 }
    }

    /// Close with a reset (`SO_LINGER` 0): the peer sees `ECONNRESET`, not a polite FIN.
    pub fn reset(self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
    }

    /// Read one response within `timeout`, returning what went wrong instead of panicking (for
    /// threads that must go on after a bad answer). Body framing as [`Conn::read_response`].
    pub fn try_read_response(&mut self, timeout: Duration) -> io::Result<Response> {
        let deadline = Instant::now() + timeout;
        let result = self.try_read_response_until(deadline);
        self.set_read_timeout(READ_TIMEOUT);
        result
    }

    fn try_read_response_until(&mut self, deadline: Instant) -> io::Result<Response> {
        let head = loop {
            if let Some(h) = wire::parse_head(&self.buf)? {
                let raw = self.take(h.len);
                break Head::parse(raw);
            }
            self.fill_until(deadline, "a response head")?;
        };
        let f = head.framing;
        let body = if f.status == 204 || f.status == 304 || f.status < 200 {
            Vec::new()
        } else if let Some(n) = f.content_length {
            let n = usize::try_from(n).map_err(|_| io::Error::other("huge Content-Length"))?;
            while self.buf.len() < n {
                self.fill_until(deadline, "a response body")?;
            }
            self.take(n)
        } else if f.chunked {
            loop {
                if let Some((body, used)) = dechunk_prefix(&self.buf)? {
                    self.take(used);
                    break body;
                }
                self.fill_until(deadline, "a chunked response body")?;
            }
        } else {
            Vec::new()
        };
        Ok(Response { head, body })
    }

    /// One more read before `deadline`; EOF and the deadline are errors naming `what`.
    fn fill_until(&mut self, deadline: Instant, what: &str) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out waiting for {what}; got {}", show(&self.buf)),
            ));
        }
        self.set_read_timeout(left);
        match self.fill() {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("EOF while reading {what}; got {}", show(&self.buf)),
            )),
            Ok(_) => Ok(()),
            Err(e) if is_timeout(&e) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out waiting for {what}; got {}", show(&self.buf)),
            )),
            Err(e) => Err(e),
        }
    }

    /// Expect the peer to close the connection now, with nothing more sent.
    #[track_caller]
    pub fn expect_close(&mut self, ctx: &str) {
        let (rest, end) = self.read_to_end_within(Duration::from_secs(5));
        assert!(
            rest.is_empty() && end != End::Timeout,
            "{ctx}: not closed ({end:?}, {})",
            show(&rest)
        );
    }
}

/// A complete chunked body at the start of `buf`: the payload and the bytes it used.
fn dechunk_prefix(buf: &[u8]) -> io::Result<Option<(Vec<u8>, usize)>> {
    let (mut body, mut used) = (Vec::new(), 0);
    while let Some(c) = wire::next_chunk(&buf[used..])? {
        let payload = used + c.payload.start..used + c.payload.end;
        used += c.len;
        if payload.is_empty() {
            return Ok(Some((body, used)));
        }
        body.extend_from_slice(&buf[payload]);
    }
    Ok(None)
}

/// A read that ended because its timeout passed (the kind depends on the platform).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// `GET PATH` with nothing but `Host`, as the raw-socket captures sent it.
pub fn get_request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// A request like curl 7.88.1 sends it: request line, Host, `User-Agent: curl/7.88.1`, `Accept: */*`,
/// then `headers` verbatim, then (when there is a body) `Content-Length`, then `after_cl` headers.
pub fn curl_request(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    after_cl: &[(&str, &str)],
) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
    );
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(b) = body {
        r.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    for (n, v) in after_cl {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    if let Some(b) = body {
        r.extend_from_slice(b);
    }
    r
}

/// `curl -X POST -H 'Content-Type: application/json' -d BODY http://HOST/PATH`
pub fn curl_post_json(host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    curl_request(
        host,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(body),
        &[],
    )
}

/// A JSON string literal (escaped like JSON.stringify / serde_json do).
pub fn js(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// `{"clientId":"ID","subscriptions":[...]}` (compact).
pub fn subs_body(id: &str, subs: &[&str]) -> String {
    let list: Vec<String> = subs.iter().map(|s| js(s)).collect();
    format!(
        r#"{{"clientId":{},"subscriptions":[{}]}}"#,
        js(id),
        list.join(",")
    )
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (for thousands of sockets); returns the new
/// soft limit.
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
