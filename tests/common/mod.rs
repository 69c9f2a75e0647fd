//! Black-box harness for ringcast's end-to-end tests.
//!
//! Everything here talks to the server over loopback TCP with `std::net::TcpStream` and
//! reads the raw bytes, so a test can see header order, chunk sizes and the zero chunk.
//! Nothing imports the `ringcast` library.
//!
//! Two modes:
//! * default: `Server::start` spawns the `ringcast` binary on a free port and kills it on drop;
//! * external: with `RINGCAST_TEST_ADDR=127.0.0.1:PORT` nothing is spawned and the tests talk to
//!   that address (e.g. the real PocketBase 0.40.6). Publishing then goes to
//!   `RINGCAST_TEST_PUBLISH_PATH` (e.g. `/api/notify` with a public copy of
//!   `shared/research/pb_hooks/notify.pb.js`). Ringcast-only tests call `Server::ringcast_only`,
//!   which returns `None` (and prints why) in that mode.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default read timeout for every socket: a test never hangs for longer than this on one read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Expected PocketBase response heads (names, values and order exactly as PocketBase 0.40.6 sends
// them; `<DATE>` stands for a valid, current IMF-fixdate `Date` value).
// ---------------------------------------------------------------------------------------------

/// The security headers PocketBase puts on every API response, in wire order.
pub const SECURITY_HEADERS: &str = "Cross-Origin-Opener-Policy: same-origin\r\n\
Vary: Origin\r\n\
X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: SAMEORIGIN\r\n\
X-Xss-Protection: 1; mode=block\r\n";

pub const ACAO: &str = "Access-Control-Allow-Origin: *\r\n";

/// The stream's headers between the status line and `Date` (get-realtime-raw-socket.txt).
const SSE_HEADERS: &str = "Cache-Control: no-store\r\n\
Content-Type: text/event-stream\r\n\
Cross-Origin-Opener-Policy: same-origin\r\n\
Vary: Origin\r\n\
X-Accel-Buffering: no\r\n\
X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: SAMEORIGIN\r\n\
X-Xss-Protection: 1; mode=block\r\n";

/// Head of the SSE stream (HTTP/1.1), see get-realtime-raw-socket.txt.
pub fn sse_head(origin: bool) -> String {
    let acao = if origin { ACAO } else { "" };
    format!(
        "HTTP/1.1 200 OK\r\n{acao}{SSE_HEADERS}Date: <DATE>\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

/// Head of the SSE stream for HTTP/1.0 (get-realtime-http10.txt) and of HEAD (head-realtime.txt):
/// same headers without `Transfer-Encoding`.
pub fn sse_head_no_te(version: &str) -> String {
    format!("{version} 200 OK\r\n{SSE_HEADERS}Date: <DATE>\r\n\r\n")
}

/// Head of a `204 No Content` answer to POST /api/realtime (post-success.txt).
pub fn no_content_head(origin: bool) -> String {
    format!(
        "HTTP/1.1 204 No Content\r\n{}{SECURITY_HEADERS}Date: <DATE>\r\n\r\n",
        if origin { ACAO } else { "" }
    )
}

/// Head of a JSON answer (API errors, health): Content-Type, security headers, Date, Content-Length.
pub fn json_head(status_line: &str, body_len: usize, origin: bool) -> String {
    format!(
        "{status_line}\r\n{}Content-Type: application/json\r\n{SECURITY_HEADERS}Date: <DATE>\r\nContent-Length: {body_len}\r\n\r\n",
        if origin { ACAO } else { "" }
    )
}

// PocketBase's JSON bodies (keys in wire order, no trailing newline).
pub const BODY_BLANK_CLIENT_ID: &str = r#"{"data":{"clientId":{"code":"validation_required","message":"Cannot be blank."}},"message":"Something went wrong while processing your request.","status":400}"#;
pub const BODY_GENERIC_400: &str =
    r#"{"data":{},"message":"Something went wrong while processing your request.","status":400}"#;
pub const BODY_MISSING_CLIENT: &str =
    r#"{"data":{},"message":"Missing or invalid client id.","status":404}"#;
pub const BODY_CLIENT_ID_TOO_LONG: &str = r#"{"data":{"clientId":{"code":"validation_length_out_of_range","message":"The length must be between 1 and 255.","params":{"max":255,"min":1}}},"message":"Something went wrong while processing your request.","status":400}"#;
pub const BODY_TOO_MANY_SUBSCRIPTIONS: &str = r#"{"data":{"subscriptions":{"code":"validation_length_too_long","message":"The length must be no more than 1000.","params":{"max":1000,"min":0}}},"message":"Something went wrong while processing your request.","status":400}"#;
pub const BODY_INVALID_CLIENT: &str =
    r#"{"data":{},"message":"Invalid realtime client.","status":400}"#;
pub const BODY_NOT_FOUND: &str =
    r#"{"data":{},"message":"The requested resource wasn't found.","status":404}"#;
pub const BODY_FILE_NOT_FOUND: &str = r#"{"data":{},"message":"File not found.","status":404}"#;
pub const BODY_HEALTH: &str = r#"{"message":"API is healthy.","code":200,"data":{}}"#;

pub const TOPIC_TOO_LONG_ERR: &str = r#"{"code":"validation_length_too_long","message":"The length must be no more than 2500.","params":{"max":2500,"min":0}}"#;

/// `{"data":{"subscriptions":{"<i>":{...too long...},...}},...}` for the given failing indices
/// (post-topic-2501-chars.txt, post-topics-several-too-long.txt).
pub fn body_topics_too_long(indices: &[usize]) -> String {
    let items: Vec<String> = indices
        .iter()
        .map(|i| format!(r#""{i}":{TOPIC_TOO_LONG_ERR}"#))
        .collect();
    format!(
        r#"{{"data":{{"subscriptions":{{{}}}}},"message":"Something went wrong while processing your request.","status":400}}"#,
        items.join(",")
    )
}

// ---------------------------------------------------------------------------------------------
// Byte helpers
// ---------------------------------------------------------------------------------------------

/// Python-like escaped rendering of bytes, for readable assertion messages.
pub fn show(b: &[u8]) -> String {
    let mut s = String::from("b'");
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('\'');
    s
}

/// Assert two byte strings are equal; the message shows both, escaped, and the first difference.
#[track_caller]
pub fn assert_bytes(got: &[u8], expected: &[u8], ctx: &str) {
    if got != expected {
        let first = got
            .iter()
            .zip(expected.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "{ctx}: bytes differ (first difference at byte {first}; got {} bytes, expected {})\n   got: {}\nexpected: {}",
            got.len(),
            expected.len(),
            show(got),
            show(expected)
        );
    }
}

/// The SSE event PocketBase writes: `id:<id>\nevent:<name>\ndata:<data>\n\n`.
pub fn event(id: &str, name: &str, data: &str) -> Vec<u8> {
    format!("id:{id}\nevent:{name}\ndata:{data}\n\n").into_bytes()
}

/// One HTTP chunk holding `payload`: lower-case hex size, CR LF, payload, CR LF.
pub fn chunk(payload: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", payload.len()).into_bytes();
    v.extend_from_slice(payload);
    v.extend_from_slice(b"\r\n");
    v
}

pub fn pb_connect_event(id: &str) -> Vec<u8> {
    event(id, "PB_CONNECT", &format!(r#"{{"clientId":"{id}"}}"#))
}

pub fn is_client_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// Replace every maximal run of exactly 40 `[A-Za-z0-9]` characters by `<ID>`.
pub fn normalize_ids(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if i - start == 40 {
                out.push_str("<ID>");
            } else {
                out.push_str(&s[start..i]);
            }
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// IMF-fixdate (RFC 9110) of a point in time, e.g. `Mon, 23 Nov 2026 00:26:17 GMT`.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Whether `v` is the IMF-fixdate of a second between 60 s ago and 5 s from now.
pub fn is_current_http_date(v: &str) -> bool {
    let now = SystemTime::now();
    (-5i64..=60).any(|back| {
        let t = if back < 0 {
            now + Duration::from_secs((-back) as u64)
        } else {
            now - Duration::from_secs(back as u64)
        };
        http_date(t) == v
    })
}

/// A response head rendered as text with a valid current `Date:` value replaced by `<DATE>`
/// (an invalid or stale date is left as is, so the comparison fails and shows it).
pub fn normalize_head(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw).into_owned();
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if let Some(v) = line
            .strip_prefix("Date: ")
            .and_then(|l| l.strip_suffix("\r\n"))
        {
            if is_current_http_date(v) {
                out.push_str("Date: <DATE>\r\n");
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

#[track_caller]
pub fn assert_head(head: &Head, expected: &str, ctx: &str) {
    let got = normalize_head(&head.raw);
    if got != expected {
        panic!(
            "{ctx}: response head differs\n   got: {}\nexpected: {}",
            show(got.as_bytes()),
            show(expected.as_bytes())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP connection
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Head {
    /// Every byte of the head, status line to the empty line included.
    pub raw: Vec<u8>,
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
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
    /// Assert the exact head (after `Date` normalisation) and the exact body.
    #[track_caller]
    pub fn assert_exact(&self, head: &str, body: &[u8], ctx: &str) {
        assert_head(&self.head, head, ctx);
        assert_bytes(&self.body, body, &format!("{ctx} (body)"));
    }
    /// Assert PocketBase's JSON answer: exact head with Content-Length and exact body.
    #[track_caller]
    pub fn assert_json(&self, status_line: &str, body: &str, ctx: &str) {
        self.assert_exact(
            &json_head(status_line, body.len(), false),
            body.as_bytes(),
            ctx,
        );
    }
    #[track_caller]
    pub fn assert_204(&self, ctx: &str) {
        self.assert_exact(&no_content_head(false), b"", ctx);
    }
}

/// How a wait for the end of a connection ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum End {
    Eof,
    Reset,
    Timeout,
}

pub struct Conn {
    pub stream: TcpStream,
    /// Bytes received but not consumed yet.
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
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::new(local, 0).into())
            .unwrap_or_else(|e| panic!("bind {local}: {e}"));
        sock.connect(&addr.into())
            .unwrap_or_else(|e| panic!("connect {local} -> {addr}: {e}"));
        Conn::from_stream(sock.into())
    }

    /// Connect with a small receive buffer (set before connecting, so the window stays small).
    pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> Conn {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(rcvbuf).unwrap();
        sock.connect(&addr.into())
            .unwrap_or_else(|e| panic!("connect -> {addr}: {e}"));
        Conn::from_stream(sock.into())
    }

    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
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
                let rest = self.buf.split_off(p + delim.len());
                return std::mem::replace(&mut self.buf, rest);
            }
            self.fill_or_panic(&format!("up to {}", show(delim)));
        }
    }

    #[track_caller]
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill_or_panic(&format!("{n} bytes"));
        }
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    #[track_caller]
    pub fn read_head(&mut self) -> Head {
        let raw = self.read_until(b"\r\n\r\n");
        parse_head(raw)
    }

    /// Read one complete response. `head_request`: the request was HEAD (no body follows).
    /// Body framing: Content-Length, chunked (all chunks up to the zero chunk, de-chunked), or
    /// none for 1xx/204/304 and when neither header is present.
    #[track_caller]
    pub fn read_response_to(&mut self, head_request: bool) -> Response {
        let head = self.read_head();
        let body = if head_request || head.status == 204 || head.status == 304 || head.status < 200
        {
            Vec::new()
        } else if let Some(cl) = head.header("Content-Length") {
            let n: usize = cl
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {cl:?}"));
            self.read_n(n)
        } else if head
            .header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
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

    /// One HTTP chunk, raw: size line, payload and the CR LF after it (for the zero chunk: `0\r\n\r\n`).
    #[track_caller]
    pub fn read_chunk_raw(&mut self) -> Vec<u8> {
        let line = self.read_until(b"\r\n");
        let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
        let size = usize::from_str_radix(text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {}", show(&line)));
        let mut raw = line;
        raw.extend(self.read_n(size + 2));
        raw
    }

    /// One HTTP chunk's payload (empty for the zero chunk). The framing is checked.
    #[track_caller]
    pub fn read_chunk_payload(&mut self) -> Vec<u8> {
        let raw = self.read_chunk_raw();
        let p = find(&raw, b"\r\n").unwrap();
        assert!(
            raw.ends_with(b"\r\n"),
            "chunk does not end with CR LF: {}",
            show(&raw)
        );
        raw[p + 2..raw.len() - 2].to_vec()
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
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
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
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    break End::Timeout;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break End::Reset,
                Err(e) => panic!("read_to_end_within: {e}"),
            }
        };
        self.set_read_timeout(READ_TIMEOUT);
        (std::mem::take(&mut self.buf), end)
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn parse_head(raw: Vec<u8>) -> Head {
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {}", show(&raw)));
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    Head {
        raw,
        version,
        status,
        headers,
    }
}

// ---------------------------------------------------------------------------------------------
// Request builders
// ---------------------------------------------------------------------------------------------

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
    serde_json::to_string(s).unwrap()
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

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

pub fn external_addr() -> Option<SocketAddr> {
    std::env::var("RINGCAST_TEST_ADDR")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("RINGCAST_TEST_ADDR={s:?} is not an IP:PORT address"))
        })
}

pub fn is_external() -> bool {
    external_addr().is_some()
}

pub struct Server {
    pub addr: SocketAddr,
    child: Option<Child>,
    output: Arc<Mutex<Vec<u8>>>,
    exit: Option<ExitStatus>,
}

impl Server {
    /// Start ringcast with the given extra arguments, or use `RINGCAST_TEST_ADDR` (external mode).
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// Like `start`, with extra environment variables for the server (e.g. `RINGCAST_IDLE_TIMEOUT`).
    /// A server already listening at `addr` (e.g. one embedded in the test process).
    pub fn attach(addr: SocketAddr) -> Server {
        Server {
            addr,
            child: None,
            output: Arc::default(),
            exit: None,
        }
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        if let Some(addr) = external_addr() {
            return Server {
                addr,
                child: None,
                output: Arc::default(),
                exit: None,
            };
        }
        let mut last_err = String::new();
        for _attempt in 0..5 {
            match Self::spawn(args, env) {
                Ok(s) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start ringcast: {last_err}");
    }

    /// Start ringcast for a test that needs ringcast-only features; `None` (and a note on stderr)
    /// in external mode.
    pub fn ringcast_only(test: &str, why: &str, args: &[&str]) -> Option<Server> {
        if skip_in_external_mode(test, why) {
            return None;
        }
        Some(Server::start(args))
    }

    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            l.local_addr().unwrap().port()
        };
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
        cmd.arg("serve")
            .arg("--http")
            .arg(addr.to_string())
            .args(args);
        // The server reads every flag from RINGCAST_* too: keep the caller's environment out.
        for (k, _) in std::env::vars() {
            if k.starts_with("RINGCAST_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        unsafe {
            // Die with the test thread that started us, whatever happens to the test process.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", env!("CARGO_BIN_EXE_ringcast")))?;
        let output: Arc<Mutex<Vec<u8>>> = Arc::default();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut b = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    out.lock().unwrap().extend_from_slice(&b[..n]);
                }
            });
        }
        let mut server = Server {
            addr,
            child: Some(child),
            output,
            exit: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = server.child.as_mut().unwrap().try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                let out = server.output_text();
                server.child = None;
                let msg = format!("ringcast exited during startup ({st}); output:\n{out}");
                if out.contains("in use") {
                    return Err(msg); // lost a race for the port: retry with another one
                }
                panic!("{msg}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                panic!(
                    "ringcast did not accept connections on {addr} within 10 s; output so far:\n{}",
                    server.output_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    pub fn sigterm(&self) {
        let pid = self.pid().expect("no child process (external mode?)");
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Wait for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exit {
            return Some(st);
        }
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.exit = Some(st);
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the spawned process is still running (always true in external mode).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => self.exit.is_none(),
            Some(c) => c.try_wait().unwrap().is_none(),
        }
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    pub fn connect_from(&self, ip: &str) -> Conn {
        Conn::connect_from(ip.parse().unwrap(), self.addr)
    }

    /// Send `raw` on a new connection and read one response.
    #[track_caller]
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut c = self.connect();
        c.send(raw);
        c.read_response()
    }

    #[track_caller]
    pub fn get(&self, path: &str) -> Response {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host()).as_bytes())
    }

    /// POST /api/realtime with a JSON body, curl style.
    #[track_caller]
    pub fn post_realtime_json(&self, body: &[u8]) -> Response {
        self.request(&curl_post_json(&self.host(), "/api/realtime", body))
    }

    /// Set the subscriptions of `client`; asserts the exact 204 answer.
    #[track_caller]
    pub fn subscribe(&self, client: &SseClient, subs: &[&str]) {
        let r = self.post_realtime_json(subs_body(&client.id, subs).as_bytes());
        r.assert_204(&format!("subscribe {subs:?}"));
    }

    /// Open an SSE stream (HTTP/1.1) and check its exact head and PB_CONNECT chunk.
    #[track_caller]
    pub fn open_stream(&self) -> SseClient {
        let mut c = self.connect();
        c.send(
            format!(
                "GET /api/realtime HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
                self.host()
            )
            .as_bytes(),
        );
        SseClient::from_conn(c)
    }

    /// Publish a custom message: ringcast `POST /api/publish {"topic","data"}`, or in external mode
    /// `POST $RINGCAST_TEST_PUBLISH_PATH` with the same body (notify.pb.js). `data_json` is raw JSON.
    /// Asserts 200.
    #[track_caller]
    pub fn publish(&self, topic: &str, data_json: &str) -> Response {
        let body = format!(r#"{{"topic":{},"data":{}}}"#, js(topic), data_json);
        let r = self.request(&curl_post_json(
            &self.host(),
            &publish_path(),
            body.as_bytes(),
        ));
        assert_eq!(
            r.status(),
            200,
            "publish {topic} -> {}\n{}",
            r.head.text(),
            r.body_str()
        );
        r
    }

    /// GET /api/stats as JSON (ringcast only).
    /// `POST /api/publish` with this JSON body, whatever the answer.
    #[track_caller]
    pub fn publish_raw_json(&self, body: &str) -> Response {
        self.request(&curl_post_json(
            &self.host(),
            "/api/publish",
            body.as_bytes(),
        ))
    }

    pub fn stats(&self) -> serde_json::Value {
        let r = self.get("/api/stats");
        assert_eq!(
            r.status(),
            200,
            "GET /api/stats: {}{}",
            r.head.text(),
            r.body_str()
        );
        r.json()
    }
}

/// In external mode, print why the current test is skipped (straight to fd 2, so the note shows
/// even though libtest captures test output) and return true. `test` is used when the thread has
/// no name (libtest names each test's thread after the test).
pub fn skip_in_external_mode(test: &str, why: &str) -> bool {
    if !is_external() {
        return false;
    }
    let thread = std::thread::current();
    let name = thread.name().unwrap_or(test);
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {name}: ringcast-only ({why}); RINGCAST_TEST_ADDR is set\n").as_bytes(),
    );
    true
}

pub fn publish_path() -> String {
    if is_external() {
        std::env::var("RINGCAST_TEST_PUBLISH_PATH").unwrap_or_else(|_| "/api/notify".to_string())
    } else {
        "/api/publish".to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An open SSE stream with its client id.
pub struct SseClient {
    pub conn: Conn,
    pub id: String,
}

impl SseClient {
    /// Read the stream head and the PB_CONNECT chunk from a connection that sent the GET.
    #[track_caller]
    pub fn from_conn(mut conn: Conn) -> SseClient {
        let head = conn.read_head();
        assert_head(&head, &sse_head(false), "GET /api/realtime");
        let raw = conn.read_chunk_raw();
        let id = pb_connect_id(&raw);
        assert_bytes(&raw, &chunk(&pb_connect_event(&id)), "PB_CONNECT chunk");
        SseClient { conn, id }
    }

    /// Expect the next event to be exactly this one. An event of up to 2048 bytes must be exactly
    /// one chunk (checked raw, framing included). Larger events are compared de-chunked: PocketBase
    /// (Go's 2048-byte response buffer) splits them over several chunks, e.g. a 5063-byte event
    /// arrives as chunks of 2048 + 3013 + 2 bytes, so chunk boundaries are not part of the contract.
    #[track_caller]
    pub fn expect_event(&mut self, name: &str, data: &str) {
        let ev = event(&self.id, name, data);
        let got = self.read_event_bytes(ev.len());
        assert_bytes(&got, &ev, &format!("event {name:?}"));
    }

    /// Like `expect_event`, for data holding a JSON object with several keys. Against ringcast the
    /// bytes are exact (keys in the published order). In external mode (PocketBase +
    /// notify.pb.js) the hook re-serialises a Go map, so the key order varies from run to run:
    /// there the `id:`/`event:` lines, the length and the parsed JSON must match.
    #[track_caller]
    pub fn expect_event_unordered_keys(&mut self, name: &str, data: &str) {
        if !is_external() {
            return self.expect_event(name, data);
        }
        let ev = event(&self.id, name, data);
        let got = self.read_event_bytes(ev.len());
        let head = format!("id:{}\nevent:{name}\ndata:", self.id);
        let ok = got.len() == ev.len()
            && got.starts_with(head.as_bytes())
            && got.ends_with(b"\n\n")
            && serde_json::from_slice::<serde_json::Value>(&got[head.len()..got.len() - 2]).ok()
                == serde_json::from_str::<serde_json::Value>(data).ok();
        if !ok {
            panic!(
                "event {name:?} (key order free)\n   got: {}\nexpected: {}",
                show(&got),
                show(&ev)
            );
        }
    }

    /// Read the next event of `len` bytes: for `len <= 2048` one raw chunk (returned raw, so a
    /// comparison with `chunk(event)` checks the framing); otherwise the de-chunked payload of as
    /// many chunks as needed (returned as the bare event bytes).
    #[track_caller]
    pub fn read_event_bytes(&mut self, len: usize) -> Vec<u8> {
        if len <= 2048 {
            let raw = self.conn.read_chunk_raw();
            // Return the bare payload if the framing is canonical (lower-case hex size without
            // leading zeros or extensions), else the raw bytes, so the comparison fails and shows it.
            let line_end = find(&raw, b"\r\n").unwrap() + 2;
            let payload = &raw[line_end..raw.len() - 2];
            if raw[..line_end] == *format!("{:x}\r\n", payload.len()).as_bytes() {
                return payload.to_vec();
            }
            return raw;
        }
        let mut payload = Vec::new();
        while payload.len() < len {
            let p = self.conn.read_chunk_payload();
            assert!(
                !p.is_empty(),
                "stream ended inside an event: {}",
                show(&payload)
            );
            payload.extend(p);
        }
        payload
    }

    /// Expect the next `expected.len()` chunks to be exactly these events, in any order.
    #[track_caller]
    pub fn expect_events_any_order(&mut self, expected: &[(&str, &str)]) {
        let mut exp: Vec<Vec<u8>> = expected
            .iter()
            .map(|(n, d)| event(&self.id, n, d))
            .collect();
        let mut got: Vec<Vec<u8>> = exp.iter().map(|e| self.read_event_bytes(e.len())).collect();
        got.sort();
        exp.sort();
        if got != exp {
            let g: Vec<String> = got.iter().map(|c| show(c)).collect();
            let e: Vec<String> = exp.iter().map(|c| show(c)).collect();
            panic!("events differ (sorted)\n   got: {g:#?}\nexpected: {e:#?}");
        }
    }

    /// Expect the end of the stream: exactly the zero chunk `0\r\n\r\n`.
    #[track_caller]
    pub fn expect_end(&mut self) {
        self.conn
            .expect_bytes(b"0\r\n\r\n", "end of stream (zero chunk)");
    }
}

/// The client id from a PB_CONNECT chunk (`7b\r\nid:<ID>\n...`); checks the id format.
#[track_caller]
pub fn pb_connect_id(raw_chunk: &[u8]) -> String {
    let p = find(raw_chunk, b"id:").unwrap_or_else(|| panic!("no id: line in {}", show(raw_chunk)));
    let rest = &raw_chunk[p + 3..];
    let e = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
    let id = String::from_utf8_lossy(&rest[..e]).into_owned();
    assert!(
        is_client_id(&id),
        "client id {id:?} is not 40 characters of [A-Za-z0-9]: {}",
        show(raw_chunk)
    );
    id
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (for tests with many sockets).
pub fn raise_nofile_limit() {
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Poll `f` every 20 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A string unique within this test process (for topic names).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// All ids in a list are distinct.
pub fn all_distinct<'a>(ids: impl IntoIterator<Item = &'a String>) -> bool {
    let mut seen = HashSet::new();
    ids.into_iter().all(|i| seen.insert(i.clone()))
}
