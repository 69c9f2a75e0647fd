//! History, resume and heartbeats (`--history`, `--sse-ids topic`,
//! `--heartbeat`), end to end: a subscriber killed and reconnected many times
//! while 10,000 numbered events are published gets each exactly once, in
//! order, whichever way it resumes (`Last-Event-ID` on the stream, on the
//! subscription request, or `since` in its options); a cursor too old or
//! from another run gets the `history_gap` event; the byte cap holds over a
//! million events; heartbeats arrive. Ringcast only (skipped in external mode).
//!
//! Run: `cargo test --test history`.

use ringcast_testkit::{http::*, server::*, sse::*};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

macro_rules! ringcast {
    ($args:expr) => {
        match Server::ringcast_only(
            concat!(file!(), ":", line!()),
            "history is ringcast's",
            $args,
        ) {
            Some(s) => s,
            None => return,
        }
    };
}

/// One decoded event, every `id:` line kept (the last one is the cursor).
#[derive(Debug, Default, Clone)]
struct Ev {
    ids: Vec<String>,
    name: String,
    data: String,
}

impl Ev {
    fn cursor(&self) -> &str {
        self.ids.last().map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct Sink {
    current: Ev,
    done: VecDeque<Ev>,
}

impl SseSink for Sink {
    fn field(&mut self, field: Field, value: &[u8]) {
        let value = String::from_utf8_lossy(value).into_owned();
        match field {
            Field::Id => self.current.ids.push(value),
            Field::Event => self.current.name = value,
            Field::Data => self.current.data = value,
            Field::Other => {}
        }
    }

    fn dispatch(&mut self) {
        self.done.push_back(std::mem::take(&mut self.current));
    }
}

/// A raw stream, read as an EventSource would.
struct Stream {
    conn: Conn,
    decoder: StreamDecoder,
    sink: Sink,
    id: String,
}

impl Stream {
    fn open(server: &Server, headers: &[(&str, &str)]) -> Stream {
        let mut conn = server.connect();
        conn.send(&stream_request(&server.host(), headers));
        let head = conn.read_head();
        assert!(head.text().starts_with("HTTP/1.1 200"), "{}", head.text());
        let mut stream = Stream {
            conn,
            decoder: StreamDecoder::new(Framing::Chunked),
            sink: Sink::default(),
            id: String::new(),
        };
        let connect = stream
            .next(Duration::from_secs(5))
            .expect("PB_CONNECT arrives");
        assert_eq!(connect.name, "PB_CONNECT");
        stream.id = connect.json()["clientId"].as_str().unwrap().to_owned();
        stream
    }

    fn next(&mut self, timeout: Duration) -> Option<Ev> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.conn.buf.is_empty() {
                let bytes = std::mem::take(&mut self.conn.buf);
                self.decoder
                    .feed(&bytes, &mut self.sink)
                    .expect("valid SSE");
            }
            if let Some(ev) = self.sink.done.pop_front() {
                return Some(ev);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.conn
                .set_read_timeout(left.max(Duration::from_millis(1)));
            match self.conn.fill() {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(e) => panic!("reading the stream: {e}"),
            }
        }
    }

    /// Subscribes; `last_event_id` goes on the request as a header.
    fn subscribe(&self, server: &Server, subs: &[&str], last_event_id: Option<&str>) -> Response {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(cursor) = last_event_id {
            headers.push(("Last-Event-ID", cursor));
        }
        let body = subs_body(&self.id, subs);
        server.request(&curl_request(
            &server.host(),
            "POST",
            "/api/realtime",
            &headers,
            Some(body.as_bytes()),
            &[],
        ))
    }
}

/// Publishes `count` events `{"n":i}` to `topic`, in batches of `batch`.
fn publish_numbered(server: &Server, topic: &str, range: std::ops::Range<u64>, batch: u64) {
    let mut at = range.start;
    while at < range.end {
        let end = (at + batch).min(range.end);
        let items: Vec<String> = (at..end)
            .map(|n| format!(r#"{{"topic":{},"data":{{"n":{n}}}}}"#, js(topic)))
            .collect();
        let body = format!(r#"{{"messages":[{}]}}"#, items.join(","));
        let r = server.publish_raw(body.as_bytes(), &[]);
        assert_eq!(r.status(), 200, "{}", r.body_str());
        at = end;
    }
}

fn stat(server: &Server, name: &str) -> u64 {
    server.stats()["total"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in /api/stats: {}", server.stats()))
}

#[test]
fn a_subscriber_killed_again_and_again_gets_every_event_once_in_order() {
    const EVENTS: u64 = 10_000;
    let server = ringcast!(&[
        "--workers",
        "2",
        "--history",
        "count=20000",
        "--sse-ids",
        "topic"
    ]);
    let mut stream = Stream::open(&server, &[]);
    stream
        .subscribe(&server, &["count"], None)
        .assert_204("subscribe");
    let publisher = {
        let addr = server.addr;
        std::thread::spawn(move || {
            let server = Server::attach(addr);
            for part in 0..100 {
                publish_numbered(&server, "count", part * 100..(part + 1) * 100, 20);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (mut got, mut cursor, mut resumes) = (Vec::<u64>::new(), String::new(), 0);
    while got.len() < EVENTS as usize {
        // Read a few hundred events, then drop the connection unannounced.
        let quota = 200 + (resumes * 137) % 900;
        let mut read = 0;
        while read < quota {
            let Some(ev) = stream.next(Duration::from_secs(10)) else {
                break;
            };
            assert_eq!(
                ev.ids.first(),
                Some(&stream.id),
                "the client id comes first"
            );
            let n = ev.json()["n"]
                .as_u64()
                .unwrap_or_else(|| panic!("a numbered event: {ev:?}"));
            got.push(n);
            cursor = ev.cursor().to_owned();
            read += 1;
        }
        if got.len() >= EVENTS as usize {
            break;
        }
        assert!(read > 0, "events stopped after {}", got.len());
        drop(stream);
        resumes += 1;
        // Each of the three ways to resume, in turn.
        stream = match resumes % 3 {
            0 => {
                let s = Stream::open(&server, &[("Last-Event-ID", &cursor)]);
                s.subscribe(&server, &["count"], None).assert_204("resume");
                s
            }
            1 => {
                let s = Stream::open(&server, &[]);
                s.subscribe(&server, &["count"], Some(&cursor))
                    .assert_204("resume");
                s
            }
            _ => {
                let s = Stream::open(&server, &[]);
                let sub = format!(r#"count?options={{"query":{{"since":"{cursor}"}}}}"#);
                s.subscribe(&server, &[&sub], None).assert_204("resume");
                s
            }
        };
    }
    publisher.join().expect("the publisher");
    assert!(resumes >= 5, "only {resumes} reconnects");
    let want: Vec<u64> = (0..EVENTS).collect();
    assert!(got == want, "{} events, first wrong at {:?}", got.len(), {
        got.iter().zip(&want).position(|(a, b)| a != b)
    });
    assert!(stat(&server, "history_replayed") > 0);
    assert_eq!(stat(&server, "history_gaps"), 0);
}

#[test]
fn an_old_cursor_or_another_run_gets_the_gap_event_then_what_is_kept() {
    let args = ["--history", "t=5", "--sse-ids", "topic"];
    let server = ringcast!(&args);
    let mut live = Stream::open(&server, &[]);
    live.subscribe(&server, &["t"], None)
        .assert_204("subscribe");
    publish_numbered(&server, "t", 0..10, 10);
    let cursors: Vec<String> = (0..10)
        .map(|_| {
            live.next(Duration::from_secs(5))
                .unwrap()
                .cursor()
                .to_owned()
        })
        .collect();
    let epoch = cursors[0].split(':').next().unwrap().to_owned();

    let mut late = Stream::open(&server, &[]);
    late.subscribe(&server, &["t"], Some(&cursors[1]))
        .assert_204("resume");
    let gap = late.next(Duration::from_secs(5)).unwrap();
    assert_eq!(gap.name, "t");
    assert_eq!(
        gap.data,
        format!(
            r#"{{"ringcast":"history_gap","since":"{}","oldest":"{}"}}"#,
            cursors[1], cursors[5]
        )
    );
    for (n, cursor) in cursors.iter().enumerate().skip(5) {
        let ev = late.next(Duration::from_secs(5)).unwrap();
        assert_eq!(
            (ev.json()["n"].as_u64(), ev.cursor()),
            (Some(n as u64), &cursor[..])
        );
    }

    // Up to date: nothing replayed, nothing missing.
    let mut current = Stream::open(&server, &[]);
    current
        .subscribe(&server, &["t"], Some(&cursors[9]))
        .assert_204("resume");
    assert!(current.next(Duration::from_millis(300)).is_none());

    // Not a cursor: PocketBase's error shape.
    let r = late.subscribe(&server, &[r#"t?options={"query":{"since":"soon"}}"#], None);
    assert_eq!(r.status(), 400, "{}", r.body_str());
    let body = r.json();
    assert_eq!(
        (body["status"].as_u64(), &body["data"]),
        (Some(400), &serde_json::json!({}))
    );

    // Another run of the server: another epoch, nothing comparable.
    let other = ringcast!(&args);
    let mut moved = Stream::open(&other, &[("Last-Event-ID", &cursors[9])]);
    moved.subscribe(&other, &["t"], None).assert_204("resume");
    let gap = moved.next(Duration::from_secs(5)).unwrap();
    let data = gap.json();
    assert_eq!(data["ringcast"], "history_gap");
    assert_eq!(data["since"], cursors[9].as_str());
    let oldest = data["oldest"].as_str().unwrap();
    assert!(!oldest.starts_with(&format!("{epoch}:")), "{oldest}");
    assert!(moved.next(Duration::from_millis(300)).is_none());
}

#[test]
fn history_stays_within_its_byte_cap_over_a_million_events() {
    let server = ringcast!(&[
        "--workers",
        "2",
        "--history",
        "m*=100000",
        "--history-max-bytes",
        "1000000"
    ]);
    let mut at = 0u64;
    while at < 1_000_000 {
        let items: Vec<String> = (at..at + 10_000)
            .map(|n| format!(r#"{{"topic":"m{}","data":{{"n":{n}}}}}"#, n % 1000))
            .collect();
        let body = format!(r#"{{"messages":[{}]}}"#, items.join(","));
        let r = server.publish_raw(body.as_bytes(), &[]);
        assert_eq!(r.status(), 200, "{}", r.body_str());
        at += 10_000;
        assert!(stat(&server, "history_bytes") <= 1_000_000);
    }
    let (events, evicted) = (
        stat(&server, "history_events"),
        stat(&server, "history_evicted"),
    );
    // Every core keeps its copy: each counted every message once.
    assert_eq!(events + evicted, 2_000_000);
    assert!(events > 1000, "{events} kept");
    let metrics = server.get("/metrics").body_str();
    assert!(metrics.contains("ringcast_history_evicted_total{core=\"0\"}"));
}

#[test]
fn heartbeats_are_comments_on_quiet_streams_only_when_asked() {
    let server = ringcast!(&["--heartbeat", "200ms"]);
    let mut stream = Stream::open(&server, &[]);
    let started = Instant::now();
    let beat = stream.conn.read_chunk_payload();
    assert_eq!(beat, format!(": {}\n\n", stream.id).into_bytes());
    assert!(started.elapsed() < Duration::from_secs(2));
    // The decoder, like an EventSource, sees no event in it.
    assert!(stream.next(Duration::from_millis(500)).is_none());
    assert!(stat(&server, "heartbeats") >= 2);

    let quiet = ringcast!(&[]);
    let mut stream = Stream::open(&quiet, &[]);
    stream
        .conn
        .expect_silence(Duration::from_millis(500), "no heartbeat by default");
}

/// A `redis-server` of this test's own on a free loopback port, killed on drop.
struct Redis {
    child: std::process::Child,
    url: String,
}

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn in_a_cluster_a_cursor_of_another_node_gets_the_gap_event_then_live_events() {
    let Some(redis) = Redis::start() else {
        eprintln!("skipped: no redis-server");
        return;
    };
    let args = |redis: &Redis| {
        vec![
            "--history".to_owned(),
            "t=100".to_owned(),
            "--sse-ids".to_owned(),
            "topic".to_owned(),
            "--redis".to_owned(),
            redis.url.clone(),
        ]
    };
    let (a_args, b_args) = (args(&redis), args(&redis));
    let a = ringcast!(&a_args.iter().map(String::as_str).collect::<Vec<_>>());
    let b = ringcast!(&b_args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut on_a = Stream::open(&a, &[]);
    on_a.subscribe(&a, &["t"], None)
        .assert_204("subscribe on A");
    // A stream on B makes B take `t` from Redis.
    let mut on_b = Stream::open(&b, &[]);
    on_b.subscribe(&b, &["t"], None)
        .assert_204("subscribe on B");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publish_numbered(&a, "t", 0..1, 1);
        if on_b.next(Duration::from_millis(200)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "B never got A's publish");
    }
    let mut seen = None;
    while let Some(ev) = on_a.next(Duration::from_millis(300)) {
        seen = Some(ev);
    }
    let seen = seen.expect("A delivered its own publishes");
    // The client moves from A to B with A's cursor: B's numbers are not A's.
    let mut moved = Stream::open(&b, &[("Last-Event-ID", seen.cursor())]);
    moved.subscribe(&b, &["t"], None).assert_204("resume on B");
    let gap = moved.next(Duration::from_secs(5)).expect("the gap event");
    assert_eq!(gap.json()["ringcast"], "history_gap", "{gap:?}");
    assert_eq!(gap.json()["since"], seen.cursor());
    publish_numbered(&a, "t", 7..8, 1);
    let live = moved
        .next(Duration::from_secs(5))
        .expect("live after the gap");
    assert_eq!(live.json()["n"], 7);
    let b_epoch = gap.json()["oldest"]
        .as_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        live.cursor().starts_with(&format!("{b_epoch}:")),
        "{live:?}"
    );
}
