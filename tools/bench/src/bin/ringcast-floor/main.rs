//! `ringcast-floor`: **a measuring stick, not a server.**
//!
//! The benchmark wants to read ringcast's fan-out times against what *this machine* can do at best,
//! not only against other servers. This binary is that floor: the least work that can deliver one
//! message to N Server-Sent-Events subscribers. One thread, one level-triggered `epoll`, raw
//! `libc` calls, no runtime, no queue, no allocation per recipient. A publish builds its event frame
//! once per subscription name and `writev`s it to each subscriber right inside the request handler
//! (`[chunk size + "id:"][client id][rest]`, the same three iovecs ringcast uses); the publish is
//! answered once the last write returned. What remains is the kernel's cost of one TCP send per
//! subscriber — the part no design can avoid.
//!
//! It speaks just enough of PocketBase's realtime protocol for `ringcast-loadgen`'s `idle`, `fanout`
//! and `throughput` modes:
//! * `GET /api/realtime` → PocketBase's stream head (without `Date`) and the `PB_CONNECT` chunk with a
//!   40-character id;
//! * `POST /api/realtime` `{"clientId","subscriptions"}` → replaces the client's subscriptions, 204;
//! * `POST /api/publish` `{"topic","data"}` → delivers to every client subscribed to exactly `topic`,
//!   answers `{"recipients":N}`;
//! * `GET /api/health` → 200, so readiness can be checked like PocketBase's.
//!
//! Deliberately missing: `topic?options` prefix matching, the same-IP rule, CORS, HEAD and HTTP/1.0,
//! idle and lifetime timers, request limits, PocketBase's error bodies. A subscriber that does not read
//! gets its bytes buffered without bound. None of that is exercised by the benchmark, and all of it
//! would only make the floor higher.

mod proto;
mod sys;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;
use std::os::fd::RawFd;
use std::process::ExitCode;

use proto::{Frame, ID_LEN, IdGen};
use serde::Deserialize;
use sys::Io;

const USAGE: &str = "usage: ringcast-floor [--http 127.0.0.1:PORT]";

fn main() -> ExitCode {
    let mut addr: SocketAddrV4 = "127.0.0.1:8092".parse().expect("valid default");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--http" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => addr = v,
                None => {
                    eprintln!("{USAGE}\n--http needs an IPv4 address:port");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!(
                    "{USAGE}\nA single-thread epoll fan-out floor for the benchmark (see the source)."
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("{USAGE}\nunknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    match run(addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringcast-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: SocketAddrV4) -> std::io::Result<()> {
    sys::raise_nofile_limit()?;
    let listener = sys::listen(addr)?;
    let ep = sys::epoll_create()?;
    sys::epoll_ctl(ep, libc::EPOLL_CTL_ADD, listener, libc::EPOLLIN as u32)?;
    println!("ringcast-floor listening on {addr}");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id()) << 32;
    let mut floor = Floor {
        ep,
        conns: Vec::new(),
        ids: HashMap::new(),
        topics: HashMap::new(),
        idgen: IdGen::new(seed),
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sys::epoll_wait(ep, &mut events)?;
        for ev in &events[..n] {
            let fd = ev.u64 as RawFd;
            let flags = ev.events;
            if fd == listener {
                while let Some(c) = sys::accept(listener)? {
                    floor.add(c)?;
                }
                continue;
            }
            if flags & libc::EPOLLOUT as u32 != 0 {
                floor.flush(fd);
            }
            if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                floor.readable(fd, &mut buf);
            }
        }
    }
}

/// One accepted connection.
#[derive(Default)]
struct Conn {
    /// Bytes of requests not handled yet (empty once the connection is a stream).
    rbuf: Vec<u8>,
    /// Bytes the kernel did not accept yet; while non-empty, everything else queues behind them.
    out: Vec<u8>,
    /// Set once `GET /api/realtime` turned this connection into an event stream.
    stream: Option<Stream>,
    /// `EPOLLOUT` is registered (only while `out` is non-empty).
    want_write: bool,
}

struct Stream {
    id: [u8; ID_LEN],
    subs: Vec<Box<str>>,
}

struct Floor {
    ep: RawFd,
    /// Indexed by fd: the kernel hands out small integers, so a vector is the whole "slab".
    conns: Vec<Option<Conn>>,
    ids: HashMap<[u8; ID_LEN], RawFd>,
    /// Subscription name → subscribers (exact names only).
    topics: HashMap<Box<str>, HashSet<RawFd>>,
    idgen: IdGen,
}

#[derive(Deserialize)]
struct SubscribeBody {
    #[serde(rename = "clientId")]
    client_id: String,
    #[serde(default)]
    subscriptions: Vec<String>,
}

#[derive(Deserialize)]
struct PublishBody {
    topic: String,
    #[serde(default)]
    data: serde_json::Value,
}

impl Floor {
    fn add(&mut self, fd: RawFd) -> std::io::Result<()> {
        let i = fd as usize;
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        self.conns[i] = Some(Conn::default());
        sys::epoll_ctl(self.ep, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32)
    }

    fn close(&mut self, fd: RawFd) {
        if let Some(conn) = self.conns.get_mut(fd as usize).and_then(Option::take) {
            if let Some(s) = conn.stream {
                self.ids.remove(&s.id);
                for name in &s.subs {
                    if let Some(set) = self.topics.get_mut(name) {
                        set.remove(&fd);
                    }
                }
            }
            sys::close(fd);
        }
    }

    fn readable(&mut self, fd: RawFd, buf: &mut [u8]) {
        loop {
            match sys::read(fd, buf) {
                Io::Done(0) | Io::Failed => return self.close(fd),
                Io::WouldBlock => break,
                Io::Done(n) => {
                    let Some(conn) = self.conns.get_mut(fd as usize).and_then(Option::as_mut)
                    else {
                        return;
                    };
                    // A stream's client has nothing more to say; whatever it sends is dropped.
                    if conn.stream.is_none() {
                        conn.rbuf.extend_from_slice(&buf[..n]);
                    }
                    if n < buf.len() {
                        break;
                    }
                }
            }
        }
        self.handle_requests(fd);
    }

    /// Handles every complete request in the connection's buffer (keep-alive, pipelining).
    fn handle_requests(&mut self, fd: RawFd) {
        loop {
            let Some(conn) = self.conns.get_mut(fd as usize).and_then(Option::as_mut) else {
                return;
            };
            if conn.stream.is_some() || conn.rbuf.is_empty() {
                return;
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let head_len = match req.parse(&conn.rbuf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => return,
                Err(_) => {
                    let r = proto::json_response("400 Bad Request", r#"{"status":400}"#);
                    self.send(fd, &[&r]);
                    return self.close(fd);
                }
            };
            let body_len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .unwrap_or(0);
            if conn.rbuf.len() < head_len + body_len {
                return;
            }
            let method = req.method.unwrap_or("").to_string();
            let path = req.path.unwrap_or("");
            let path = path.split('?').next().unwrap_or("").to_string();
            let rest = conn.rbuf.split_off(head_len + body_len);
            let body = std::mem::replace(&mut conn.rbuf, rest).split_off(head_len);
            self.dispatch(fd, &method, &path, &body);
        }
    }

    fn dispatch(&mut self, fd: RawFd, method: &str, path: &str, body: &[u8]) {
        match (method, path) {
            ("GET", "/api/realtime") => self.open_stream(fd),
            ("POST", "/api/realtime") => {
                let r = self.subscribe(fd, body);
                self.send(fd, &[&r]);
            }
            ("POST", "/api/publish") => {
                let r = self.publish(body);
                self.send(fd, &[&r]);
            }
            ("GET", "/api/health") => {
                let r = proto::json_response(
                    "200 OK",
                    r#"{"message":"API is healthy.","code":200,"data":{}}"#,
                );
                self.send(fd, &[&r]);
            }
            _ => {
                let r = proto::json_response("404 Not Found", r#"{"status":404}"#);
                self.send(fd, &[&r]);
            }
        }
    }

    fn open_stream(&mut self, fd: RawFd) {
        let mut id = self.idgen.next_id();
        while self.ids.contains_key(&id) {
            id = self.idgen.next_id();
        }
        self.ids.insert(id, fd);
        if let Some(conn) = self.conns[fd as usize].as_mut() {
            conn.rbuf = Vec::new();
            conn.stream = Some(Stream {
                id,
                subs: Vec::new(),
            });
        }
        let open = proto::stream_open(&id);
        self.send(fd, &[&open]);
    }

    fn subscribe(&mut self, _fd: RawFd, body: &[u8]) -> Vec<u8> {
        let Ok(req) = serde_json::from_slice::<SubscribeBody>(body) else {
            return proto::json_response("400 Bad Request", r#"{"status":400}"#);
        };
        let Some(&client) = (req.client_id.len() == ID_LEN)
            .then(|| {
                let mut id = [0u8; ID_LEN];
                id.copy_from_slice(req.client_id.as_bytes());
                id
            })
            .and_then(|id| self.ids.get(&id))
        else {
            return proto::json_response(
                "404 Not Found",
                r#"{"data":{},"message":"Missing or invalid client id.","status":404}"#,
            );
        };
        let Some(stream) = self.conns[client as usize]
            .as_mut()
            .and_then(|c| c.stream.as_mut())
        else {
            return proto::json_response("404 Not Found", r#"{"status":404}"#);
        };
        for old in stream.subs.drain(..) {
            if let Some(set) = self.topics.get_mut(&old) {
                set.remove(&client);
            }
        }
        for name in req.subscriptions {
            let name: Box<str> = name.into();
            self.topics.entry(name.clone()).or_default().insert(client);
            stream.subs.push(name);
        }
        proto::NO_CONTENT.to_vec()
    }

    /// The measured path: one frame per subscription name, one `writev` per subscriber, answered
    /// after the last write.
    fn publish(&mut self, body: &[u8]) -> Vec<u8> {
        let Ok(req) = serde_json::from_slice::<PublishBody>(body) else {
            return proto::json_response("400 Bad Request", r#"{"status":400}"#);
        };
        let data = req.data.to_string();
        let frame = Frame::new(&req.topic, &data);
        let mut recipients = 0u64;
        let mut dead = Vec::new();
        if let Some(set) = self.topics.get(req.topic.as_str()) {
            for &fd in set {
                let Some(conn) = self.conns[fd as usize].as_mut() else {
                    continue;
                };
                let Some(stream) = conn.stream.as_ref() else {
                    continue;
                };
                let id = stream.id;
                recipients += 1;
                if !deliver(self.ep, fd, conn, &[&frame.head, &id, &frame.tail]) {
                    dead.push(fd);
                }
            }
        }
        for fd in dead {
            self.close(fd);
        }
        proto::json_response("200 OK", &format!("{{\"recipients\":{recipients}}}"))
    }

    /// Writes a response (or the stream's opening) to `fd`, queueing what the kernel refuses.
    fn send(&mut self, fd: RawFd, parts: &[&[u8]]) {
        let ep = self.ep;
        let ok = match self.conns.get_mut(fd as usize).and_then(Option::as_mut) {
            Some(conn) => deliver(ep, fd, conn, parts),
            None => return,
        };
        if !ok {
            self.close(fd);
        }
    }

    /// `EPOLLOUT`: pushes the queued bytes; back to `EPOLLIN` only once they are all gone.
    fn flush(&mut self, fd: RawFd) {
        let ep = self.ep;
        let Some(conn) = self.conns.get_mut(fd as usize).and_then(Option::as_mut) else {
            return;
        };
        let mut written = 0;
        let broken = loop {
            if written == conn.out.len() {
                break false;
            }
            match sys::writev(fd, &[&conn.out[written..]]) {
                Io::Done(n) => written += n,
                Io::WouldBlock => break false,
                Io::Failed => break true,
            }
        };
        if broken {
            return self.close(fd);
        }
        conn.out.drain(..written);
        if conn.out.is_empty() && conn.want_write {
            conn.want_write = false;
            let _ = sys::epoll_ctl(ep, libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32);
        }
    }
}

/// Writes `parts` with one `writev`; what the kernel does not take is appended to the connection's
/// queue and `EPOLLOUT` is armed. Returns false when the connection is broken.
fn deliver(ep: RawFd, fd: RawFd, conn: &mut Conn, parts: &[&[u8]]) -> bool {
    let mut skip = 0;
    if conn.out.is_empty() {
        match sys::writev(fd, parts) {
            Io::Done(n) => skip = n,
            Io::WouldBlock => {}
            Io::Failed => return false,
        }
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if skip == total {
        return true;
    }
    for p in parts {
        if skip >= p.len() {
            skip -= p.len();
            continue;
        }
        conn.out.extend_from_slice(&p[skip..]);
        skip = 0;
    }
    if !conn.want_write {
        conn.want_write = true;
        let _ = sys::epoll_ctl(
            ep,
            libc::EPOLL_CTL_MOD,
            fd,
            (libc::EPOLLIN | libc::EPOLLOUT) as u32,
        );
    }
    true
}
