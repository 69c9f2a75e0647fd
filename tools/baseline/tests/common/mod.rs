//! Helpers shared by the end-to-end tests: start the real binary on a loopback
//! port, speak raw HTTP/1.1 over `std::net::TcpStream`, and decode the chunked SSE
//! stream byte by byte so that framing is checked exactly.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

const PORT_BASE: u16 = 28000;
const PORT_SPAN: u16 = 1000;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `ringcast-baseline`, killed on drop.
pub struct Server {
    child: Child,
    // Kept open so that the server never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
    pub addr: SocketAddr,
}

fn next_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(u16::MAX);
    let mut start = NEXT.load(Ordering::Relaxed);
    if start == u16::MAX {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        start = (hasher.finish() % u64::from(PORT_SPAN)) as u16;
        let _ = NEXT.compare_exchange(u16::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    let offset = NEXT.fetch_add(1, Ordering::Relaxed) % PORT_SPAN;
    PORT_BASE + offset
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the binary with extra arguments on a free port in 28000–28999,
    /// retrying another port when the bind fails (the server then exits without
    /// printing its "listening" line).
    pub fn start_with(args: &[&str]) -> Self {
        for _ in 0..50 {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), next_port());
            let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast-baseline"))
                .arg("--http")
                .arg(addr.to_string())
                .args(["--workers", "2"])
                .args(args)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn ringcast-baseline");
            let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            if line.trim_end() == format!("ringcast-baseline listening on {addr}") {
                return Server {
                    child,
                    _stdout: stdout,
                    addr,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start ringcast-baseline on any port");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A complete HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status_line: String,
    pub status: u16,
    /// Header lines as received, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    /// Asserts status, `Content-Type: application/json` and the exact body.
    pub fn assert_json(&self, status: u16, body: &str) {
        assert_eq!(
            (self.status, self.body_str()),
            (status, body),
            "unexpected response: {self:#?}"
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(
            self.header("content-length"),
            Some(body.len().to_string().as_str())
        );
    }

    pub fn assert_no_content(&self) {
        assert_eq!(self.status, 204, "unexpected response: {self:#?}");
        assert!(self.body.is_empty());
        assert_eq!(self.header("content-type"), None);
    }
}

fn connect_from(local: Option<IpAddr>, addr: SocketAddr) -> TcpStream {
    let stream = match local {
        None => TcpStream::connect(addr).expect("connect"),
        Some(ip) => {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            socket
                .bind(&SocketAddr::new(ip, 0).into())
                .expect("bind local address");
            socket.connect(&addr.into()).expect("connect");
            socket.into()
        }
    };
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the
/// whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    request_from(None, addr, method, path, headers, body)
}

pub fn request_from(
    local: Option<IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = connect_from(local, addr);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" && method != "HEAD" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

/// A parsed response head.
struct Head {
    /// Offset of the first body byte.
    len: usize,
    status_line: String,
    status: u16,
    headers: Vec<(String, String)>,
}

fn split_head(raw: &[u8]) -> Option<Head> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line").to_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line");
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    Some(Head {
        len: end + 4,
        status_line,
        status,
        headers,
    })
}

fn parse_response(raw: &[u8]) -> Response {
    let head = split_head(raw).expect("complete head");
    let mut response = Response {
        status_line: head.status_line,
        status: head.status,
        headers: head.headers,
        body: Vec::new(),
    };
    let rest = &raw[head.len..];
    response.body = if response.header("transfer-encoding") == Some("chunked") {
        let mut reader = ChunkReader::new(rest.to_vec());
        let mut body = Vec::new();
        while let Some(chunk) = reader.parse_chunk() {
            if chunk.is_empty() {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        body
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().expect("content-length");
        assert_eq!(rest.len(), len, "body length");
        rest.to_vec()
    } else {
        rest.to_vec()
    };
    response
}

/// Decodes HTTP/1.1 chunked framing from a byte buffer.
struct ChunkReader {
    buf: Vec<u8>,
}

impl ChunkReader {
    fn new(buf: Vec<u8>) -> Self {
        Self { buf }
    }

    /// One complete chunk's payload (empty for the terminating chunk), or `None`
    /// when the buffer does not hold a complete chunk yet.
    fn parse_chunk(&mut self) -> Option<Vec<u8>> {
        let line_end = self.buf.windows(2).position(|w| w == b"\r\n")?;
        let size_line = std::str::from_utf8(&self.buf[..line_end]).expect("ascii chunk size");
        let size = usize::from_str_radix(size_line, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        let start = line_end + 2;
        let total = start + size + 2;
        if self.buf.len() < total {
            return None;
        }
        assert_eq!(
            &self.buf[start + size..total],
            b"\r\n",
            "chunk not followed by CRLF"
        );
        let payload = self.buf[start..start + size].to_vec();
        self.buf.drain(..total);
        Some(payload)
    }
}

/// One SSE event, parsed strictly from `id:<id>\nevent:<name>\ndata:<data>\n\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub name: String,
    pub data: String,
}

impl Event {
    pub fn parse(bytes: &[u8]) -> Event {
        let text = std::str::from_utf8(bytes).expect("utf-8 event");
        let body = text
            .strip_suffix("\n\n")
            .unwrap_or_else(|| panic!("event does not end with a blank line: {text:?}"));
        let mut lines = body.splitn(3, '\n');
        let mut field = |prefix: &str| {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("missing line in {text:?}"));
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix:?} line in {text:?}"))
                .to_owned()
        };
        let event = Event {
            id: field("id:"),
            name: field("event:"),
            data: field("data:"),
        };
        // Re-encode and compare, so any extra or missing byte fails.
        assert_eq!(event.encode(), bytes, "event framing");
        event
    }

    pub fn encode(&self) -> Vec<u8> {
        format!(
            "id:{}\nevent:{}\ndata:{}\n\n",
            self.id, self.name, self.data
        )
        .into_bytes()
    }
}

/// An open `GET /api/realtime` stream.
pub struct SseClient {
    stream: TcpStream,
    chunks: ChunkReader,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    /// The raw payload of the first chunk.
    pub first_chunk: Vec<u8>,
    pub id: String,
}

impl SseClient {
    /// Connects, reads the head and the `PB_CONNECT` event.
    pub fn connect(addr: SocketAddr) -> Self {
        Self::connect_from(None, addr)
    }

    pub fn connect_from(local: Option<IpAddr>, addr: SocketAddr) -> Self {
        Self::connect_with(local, addr, &[])
    }

    pub fn connect_with(local: Option<IpAddr>, addr: SocketAddr, headers: &[(&str, &str)]) -> Self {
        let mut stream = connect_from(local, addr);
        let mut head =
            format!("GET /api/realtime HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("write request");
        let mut raw = Vec::new();
        let head = loop {
            if let Some(head) = split_head(&raw) {
                break head;
            }
            read_more(&mut stream, &mut raw).expect("head");
        };
        raw.drain(..head.len);
        let mut client = SseClient {
            stream,
            chunks: ChunkReader::new(raw),
            status_line: head.status_line,
            headers: head.headers,
            first_chunk: Vec::new(),
            id: String::new(),
        };
        client.first_chunk = client.read_chunk();
        let event = Event::parse(&client.first_chunk);
        assert_eq!(event.name, "PB_CONNECT");
        client.id = event.id;
        client
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next chunk's payload (empty = end of stream); panics after 10 s.
    pub fn read_chunk(&mut self) -> Vec<u8> {
        self.try_read_chunk(READ_TIMEOUT)
            .expect("timed out waiting for a chunk")
    }

    /// The next chunk's payload, or `None` if none completes within `wait`.
    pub fn try_read_chunk(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(chunk) = self.chunks.parse_chunk() {
                return Some(chunk);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            match read_more(&mut self.stream, &mut self.chunks.buf) {
                Ok(()) => {}
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(err) => panic!("stream read failed: {err}"),
            }
        }
    }

    pub fn next_event(&mut self) -> Event {
        let chunk = self.read_chunk();
        assert!(
            !chunk.is_empty(),
            "stream ended while an event was expected"
        );
        let event = Event::parse(&chunk);
        assert_eq!(event.id, self.id, "every event carries the client id");
        event
    }

    /// Asserts that not a single byte arrives within `wait`.
    pub fn assert_silent(&mut self, wait: Duration) {
        assert!(
            self.chunks.buf.is_empty(),
            "unread bytes: {:?}",
            self.chunks.buf
        );
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("expected silence, got {other:?} {byte:?}"),
        }
    }

    /// Sends another request on the same (kept-alive) connection.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Bytes received but not yet consumed as chunks.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.chunks.buf)
    }
}

fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut tmp = [0u8; 16 * 1024];
    let n = stream.read(&mut tmp)?;
    if n == 0 {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    buf.extend_from_slice(&tmp[..n]);
    Ok(())
}

pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> Response {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Replaces the subscriptions of `id`, asserting 204.
pub fn subscribe(addr: SocketAddr, id: &str, topics: &[&str]) {
    let body = format!(
        r#"{{"clientId":"{id}","subscriptions":[{}]}}"#,
        topics
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    post_json(addr, "/api/realtime", &body).assert_no_content();
}

/// Publishes and returns the `recipients` count, asserting the exact answer shape.
pub fn publish(addr: SocketAddr, body: &str) -> usize {
    let response = post_json(addr, "/api/publish", body);
    assert_eq!(response.status, 200, "publish failed: {response:#?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let text = response.body_str();
    text.strip_prefix(r#"{"recipients":"#)
        .and_then(|rest| rest.strip_suffix('}'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected publish answer {text:?}"))
}
