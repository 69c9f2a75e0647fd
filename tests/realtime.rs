//! Ringcast-only end-to-end tests: the publish API, timeouts, fan-out across cores, HTTP limits,
//! slow consumers, stats, graceful shutdown, robustness. Every test starts its own ringcast with
//! the flags it needs; with `RINGCAST_TEST_ADDR` set (external mode) they are skipped.
//!
//! Run: `cargo test --test realtime`.

use ringcast_testkit::{bytes::*, http::*, pocketbase::*, server::*, sse::*, wait::*};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

macro_rules! ringcast {
    ($why:expr, $args:expr) => {
        match Server::ringcast_only(module_path_and_line!(), $why, $args) {
            Some(s) => s,
            None => return,
        }
    };
}

macro_rules! module_path_and_line {
    () => {
        concat!(file!(), ":", line!())
    };
}

/// 200, `Content-Type: application/json`, body exactly `{"recipients":N}`.
#[track_caller]
fn assert_recipients(r: &Response, n: usize, ctx: &str) {
    assert_eq!(r.status(), 200, "{ctx}: {}{}", r.head.text(), r.body_str());
    assert_eq!(
        r.head.header("Content-Type"),
        Some("application/json"),
        "{ctx}: {}",
        r.head.text()
    );
    assert_bytes(&r.body, format!(r#"{{"recipients":{n}}}"#).as_bytes(), ctx);
}

/// A PocketBase-shaped JSON error: `{"data":{...},"message":"...","status":N}` (keys in that order),
/// with the given HTTP status and `Content-Type: application/json`.
#[track_caller]
fn assert_pb_error(r: &Response, status: u16, ctx: &str) {
    assert_eq!(
        r.status(),
        status,
        "{ctx}: {}{}",
        r.head.text(),
        r.body_str()
    );
    assert_eq!(
        r.head.header("Content-Type"),
        Some("application/json"),
        "{ctx}: {}",
        r.head.text()
    );
    let body = r.body_str();
    assert!(
        body.starts_with(r#"{"data":{"#)
            && body.ends_with(&format!(r#","status":{status}}}"#))
            && body.contains(r#"},"message":""#),
        "{ctx}: not a PocketBase error body: {body}"
    );
    let v = r.json();
    assert!(
        v["data"].is_object(),
        "{ctx}: data is not an object: {body}"
    );
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{ctx}: empty message: {body}"
    );
    assert_eq!(v["status"].as_u64(), Some(status as u64), "{ctx}: {body}");
    if let Some(cl) = r.head.header("Content-Length") {
        assert_eq!(cl, r.body.len().to_string(), "{ctx}: Content-Length");
    }
}

/// Sum of every number stored under a key named `key` or starting with `key` + "_" (e.g.
/// `dropped` matches `dropped_clients` and `dropped_frames`), anywhere in the JSON document
/// (totals and per-core entries alike: only use it for loose checks). None if no such key.
fn sum_key(v: &serde_json::Value, key: &str) -> Option<u64> {
    let matches = |k: &str| {
        k == key
            || k.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with('_'))
    };
    match v {
        serde_json::Value::Object(m) => {
            let mut total = None;
            for (k, x) in m {
                let part = if matches(k) {
                    x.as_u64().or_else(|| sum_key(x, key))
                } else {
                    sum_key(x, key)
                };
                if let Some(p) = part {
                    total = Some(total.unwrap_or(0) + p);
                }
            }
            total
        }
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| sum_key(x, key))
            .reduce(|a, b| a + b),
        _ => None,
    }
}

/// The first array in the document whose elements are objects with a `connections` key: the
/// per-core entries of /api/stats.
fn per_core_entries(v: &serde_json::Value) -> Option<&Vec<serde_json::Value>> {
    match v {
        serde_json::Value::Array(a)
            if !a.is_empty() && a.iter().all(|e| e.get("connections").is_some()) =>
        {
            Some(a)
        }
        serde_json::Value::Array(a) => a.iter().find_map(per_core_entries),
        serde_json::Value::Object(m) => m.values().find_map(per_core_entries),
        _ => None,
    }
}

// =============================================================================================
// POST /api/publish
// =============================================================================================

#[test]
fn publish_custom_message() {
    let srv = ringcast!("POST /api/publish", &[]);
    let mut a = srv.open_stream();
    let mut b = srv.open_stream();
    let mut c = srv.open_stream();
    srv.subscribe(&a, &["news"]);
    srv.subscribe(&b, &["sports", "news"]);
    srv.subscribe(&c, &["other"]);
    let r = srv.publish_raw(
        br#"{"topic":"news","data":{ "z" : 1, "a" : [1, 2, {"k": null}], "s":"x\ny" }}"#,
        &[],
    );
    assert_recipients(&r, 2, "publish news");
    let data = r#"{"z":1,"a":[1,2,{"k":null}],"s":"x\ny"}"#;
    a.expect_event("news", data);
    b.expect_event("news", data);
    let r = srv.publish_raw(br#"{"topic":"nobody","data":1}"#, &[]);
    assert_recipients(&r, 0, "publish to nobody");
    let r = srv.publish_raw(br#"{"topic":"other","data":"hi"}"#, &[]);
    assert_recipients(&r, 1, "publish other");
    c.expect_event("other", r#""hi""#);
    // a and b got nothing else
    srv.publish("news", "2");
    a.expect_event("news", "2");
    b.expect_event("news", "2");
}

#[test]
fn publish_batch_in_order() {
    let srv = ringcast!("POST /api/publish batch", &[]);
    let mut a = srv.open_stream();
    srv.subscribe(&a, &["b1", "b2"]);
    let r = srv.publish_raw(
        br#"{"messages":[{"topic":"b1","data":1},{"topic":"b2","data":"two"},{"topic":"nobody","data":0},{"topic":"b1","data":{"k":true}}]}"#,
        &[],
    );
    assert_eq!(
        r.status(),
        200,
        "batch publish: {}{}",
        r.head.text(),
        r.body_str()
    );
    a.expect_event("b1", "1");
    a.expect_event("b2", r#""two""#);
    a.expect_event("b1", r#"{"k":true}"#);
    a.conn
        .expect_silence(Duration::from_millis(300), "after the batch");
}

/// Record events reach every PocketBase topic form for the record, with the PocketBase payload.
#[test]
fn publish_record_event_topics() {
    let srv = ringcast!("record events via /api/publish", &[]);
    let mut a = srv.open_stream();
    let mut b = srv.open_stream();
    let matching = [
        "posts/R1",
        "posts/*",
        "posts",
        "pbc_1/R1",
        "pbc_1/*",
        "pbc_1",
        "posts/R1?x=1",
        "posts/*?options=%7B%22query%22%3A%7B%7D%7D",
        "posts?a=b",
        "pbc_1/R1?options=%7B%7D",
        "pbc_1/*?y",
        "pbc_1?z=1",
    ];
    let not_matching = [
        "*",
        "POSTS/*",
        "posts/R2",
        "posts/?",
        "postsX",
        "posts/R1x",
        "pbc_1/R2",
        "Posts/R1",
        "pbc_2/*",
        "marker",
    ];
    let mut subs: Vec<&str> = matching.to_vec();
    subs.extend_from_slice(&not_matching);
    srv.subscribe(&a, &subs);
    srv.subscribe(&b, &not_matching);

    for action in ["create", "update", "delete"] {
        let record = r#"{"id":"R1","title":"hello","n":1,"collectionName":"posts","collectionId":"pbc_1","nested":{"z":0,"a":[true]}}"#;
        let body = format!(
            r#"{{"collection":"posts","collectionId":"pbc_1","action":"{action}","record":{record}}}"#
        );
        let r = srv.publish_raw(body.as_bytes(), &[]);
        assert_eq!(
            r.status(),
            200,
            "record {action}: {}{}",
            r.head.text(),
            r.body_str()
        );
        let payload = format!(r#"{{"record":{record},"action":"{action}"}}"#);
        let expected: Vec<(&str, &str)> = matching.iter().map(|t| (*t, payload.as_str())).collect();
        a.expect_events_any_order(&expected);
    }
    // Nothing for the non-matching topics (a) nor for b: the next event each gets is the marker.
    srv.publish("marker", "0");
    a.expect_event("marker", "0");
    b.expect_event("marker", "0");
}

#[test]
fn publish_validation_errors() {
    let srv = ringcast!("POST /api/publish validation", &[]);
    let mut a = srv.open_stream();
    srv.subscribe(&a, &["ok"]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("missing topic", br#"{"data":1}"#.to_vec()),
        ("empty topic", br#"{"topic":"","data":1}"#.to_vec()),
        ("topic not a string", br#"{"topic":5,"data":1}"#.to_vec()),
        ("invalid JSON", br#"{"topic":"#.to_vec()),
        ("not an object", b"[1,2]".to_vec()),
        ("empty body", Vec::new()),
        ("invalid UTF-8", b"{\"topic\":\"ok\xff\",\"data\":1}".to_vec()),
        ("bad action", br#"{"collection":"posts","collectionId":"pbc_1","action":"explode","record":{"id":"R1"}}"#.to_vec()),
        ("record without id", br#"{"collection":"posts","collectionId":"pbc_1","action":"create","record":{"title":"x"}}"#.to_vec()),
        ("record missing", br#"{"collection":"posts","collectionId":"pbc_1","action":"create"}"#.to_vec()),
        ("messages not an array", br#"{"messages":{"topic":"ok","data":1}}"#.to_vec()),
    ];
    for (name, body) in cases {
        let r = srv.publish_raw(&body, &[]);
        assert_pb_error(&r, 400, &format!("publish {name}"));
    }
    // Nothing was delivered by the rejected requests.
    let r = srv.publish_raw(br#"{"topic":"ok","data":"fine"}"#, &[]);
    assert_recipients(&r, 1, "valid publish after the errors");
    a.expect_event("ok", r#""fine""#);
}

#[test]
fn publish_admin_token() {
    let srv = ringcast!("--admin-token", &["--admin-token", "s3cret-token"]);
    let mut a = srv.open_stream(); // subscribers need no token
    srv.subscribe(&a, &["t"]);
    let body = br#"{"topic":"t","data":1}"#;
    assert_pb_error(
        &srv.publish_raw(body, &[]),
        401,
        "publish without Authorization",
    );
    assert_pb_error(
        &srv.publish_raw(body, &[("Authorization", "Bearer wrong")]),
        403,
        "publish with a wrong token",
    );
    assert_pb_error(
        &srv.publish_raw(body, &[("Authorization", "Bearer s3cret-token-x")]),
        403,
        "publish with a longer token",
    );
    a.conn.expect_silence(
        Duration::from_millis(200),
        "rejected publishes delivered nothing",
    );
    assert_recipients(
        &srv.publish_raw(body, &[("Authorization", "Bearer s3cret-token")]),
        1,
        "publish with the right token",
    );
    a.expect_event("t", "1");
}

// =============================================================================================
// Idle timeout and maximum lifetime
// =============================================================================================

#[test]
fn idle_timeout_ends_stream_keeps_connection() {
    let srv = ringcast!("--idle-timeout", &["--idle-timeout", "1s"]);
    let t0 = Instant::now();
    let mut a = srv.open_stream();
    srv.subscribe(&a, &["quiet"]);
    a.expect_end();
    let t = t0.elapsed();
    assert!(
        t >= Duration::from_millis(900) && t <= Duration::from_secs(3),
        "idle end after {t:?}, expected ≈1 s"
    );
    // The client is gone …
    let r = srv.post_realtime_json(subs_body(&a.id, &["quiet"]).as_bytes());
    r.assert_json(
        "HTTP/1.1 404 Not Found",
        BODY_MISSING_CLIENT,
        "POST after the idle end",
    );
    // … but the TCP connection is kept alive and serves another request.
    a.conn.send(&get_request(&srv.host(), "/api/health"));
    a.conn.read_response().assert_json(
        "HTTP/1.1 200 OK",
        BODY_HEALTH,
        "health on the same socket after the stream ended",
    );
}

#[test]
fn idle_timeout_postponed_by_delivered_message() {
    let srv = ringcast!("--idle-timeout", &["--idle-timeout", "2s"]);
    let t0 = Instant::now();
    let mut a = srv.open_stream();
    srv.subscribe(&a, &["tick"]);
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(t0.elapsed()));
    srv.publish("tick", "1");
    let t_pub = Instant::now();
    a.expect_event("tick", "1");
    a.expect_end();
    let since_pub = t_pub.elapsed();
    let total = t0.elapsed();
    assert!(
        since_pub >= Duration::from_millis(1800) && since_pub <= Duration::from_millis(4500),
        "stream ended {since_pub:?} after the delivered message (total {total:?}); expected ≈2 s"
    );
}

#[test]
fn idle_timeout_not_postponed_by_subscription_post() {
    let srv = ringcast!("--idle-timeout", &["--idle-timeout", "2s"]);
    let t0 = Instant::now();
    let mut a = srv.open_stream();
    for at in [400u64, 800, 1200, 1600] {
        std::thread::sleep(Duration::from_millis(at).saturating_sub(t0.elapsed()));
        let r = srv.post_realtime_json(subs_body(&a.id, &[&format!("s{at}")]).as_bytes());
        assert!(r.status() == 204 || r.status() == 404, "{}", r.head.text());
    }
    a.expect_end();
    let t = t0.elapsed();
    // A POST that reset the timer would move the end to ≥ 3.6 s.
    assert!(
        t >= Duration::from_millis(1800) && t <= Duration::from_millis(3300),
        "idle end after {t:?}, expected ≈2 s"
    );
}

#[test]
fn max_lifetime_ends_busy_stream() {
    let srv = ringcast!(
        "--max-lifetime",
        &["--max-lifetime", "2s", "--idle-timeout", "10s"]
    );
    let t0 = Instant::now();
    let mut a = srv.open_stream();
    srv.subscribe(&a, &["beat"]);
    let stop = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let stop = stop.clone();
        let host = srv.host();
        std::thread::spawn(move || {
            let mut n = 0;
            while stop.load(Ordering::Relaxed) == 0 && n < 20 {
                let body = format!(r#"{{"topic":"beat","data":{{"n":{n}}}}}"#);
                let mut c = Conn::connect(host.parse().unwrap());
                c.send(&curl_post_json(&host, "/api/publish", body.as_bytes()));
                let r = c.read_response();
                assert_eq!(r.status(), 200);
                n += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let mut expected_n = 0;
    loop {
        let raw = a.conn.read_chunk_raw();
        if raw == b"0\r\n\r\n" {
            break;
        }
        assert_bytes(
            &raw,
            &chunk(&event(&a.id, "beat", &format!(r#"{{"n":{expected_n}}}"#))),
            "beat",
        );
        expected_n += 1;
    }
    let t = t0.elapsed();
    stop.store(1, Ordering::Relaxed);
    publisher.join().unwrap();
    assert!(
        t >= Duration::from_millis(1800) && t <= Duration::from_secs(4),
        "max-lifetime end after {t:?}, expected ≈2 s"
    );
    assert!(expected_n >= 2, "only {expected_n} messages before the end");
    a.conn.send(&get_request(&srv.host(), "/api/health"));
    a.conn.read_response().assert_json(
        "HTTP/1.1 200 OK",
        BODY_HEALTH,
        "health on the same socket after max lifetime",
    );
}

// =============================================================================================
// Cores
// =============================================================================================

#[test]
fn fan_out_1000_clients_two_workers() {
    raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    let srv = ringcast!("--workers", &["--workers", "2"]);
    let mut clients: Vec<SseClient> = (0..1000).map(|_| srv.open_stream()).collect();
    assert!(all_distinct(clients.iter().map(|c| &c.id)), "duplicate ids");
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    std::thread::scope(|s| {
        for part in ids.chunks(250) {
            let srv = &srv;
            s.spawn(move || {
                let mut c = srv.connect();
                for id in part {
                    c.send(&curl_post_json(
                        &srv.host(),
                        "/api/realtime",
                        subs_body(id, &["fan"]).as_bytes(),
                    ));
                    c.read_response().assert_204("subscribe fan");
                }
            });
        }
    });
    for n in 0..20 {
        let r = srv.publish_raw(
            format!(r#"{{"topic":"fan","data":{{"n":{n}}}}}"#).as_bytes(),
            &[],
        );
        assert_recipients(&r, 1000, &format!("fan-out message {n}"));
    }
    assert_recipients(
        &srv.publish_raw(br#"{"topic":"fan","data":"end"}"#, &[]),
        1000,
        "end marker",
    );
    std::thread::scope(|s| {
        for part in clients.chunks_mut(250) {
            s.spawn(move || {
                for c in part {
                    for n in 0..20 {
                        c.expect_event("fan", &format!(r#"{{"n":{n}}}"#));
                    }
                    c.expect_event("fan", r#""end""#); // so no message came twice
                }
            });
        }
    });
}

#[test]
fn cross_core_subscribe_routing() {
    let srv = ringcast!("--workers", &["--workers", "2"]);
    let mut clients: Vec<SseClient> = (0..50).map(|_| srv.open_stream()).collect();
    for (i, c) in clients.iter().enumerate() {
        // srv.subscribe uses a new connection each time: SO_REUSEPORT spreads them over the cores.
        srv.subscribe(c, &[&format!("cc-{i}"), "cc-all"]);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let r = srv.publish_raw(
            format!(r#"{{"topic":"cc-{i}","data":{i}}}"#).as_bytes(),
            &[],
        );
        assert_recipients(&r, 1, &format!("publish cc-{i}"));
        c.expect_event(&format!("cc-{i}"), &i.to_string());
    }
    assert_recipients(
        &srv.publish_raw(br#"{"topic":"cc-all","data":"all"}"#, &[]),
        50,
        "publish cc-all",
    );
    for c in clients.iter_mut() {
        c.expect_event("cc-all", r#""all""#);
    }
    eprintln!("stats after cross-core routing: {}", srv.stats());
}

// =============================================================================================
// HTTP limits
// =============================================================================================

#[test]
fn header_section_over_limit_431() {
    let srv = ringcast!("--max-header-bytes", &["--max-header-bytes", "8192"]);
    let mut c = srv.connect();
    let req = format!(
        "GET /api/health HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        srv.host(),
        "a".repeat(16 * 1024)
    );
    c.send(req.as_bytes());
    let r = c.read_response();
    assert_pb_error(&r, 431, "16 KiB header with --max-header-bytes 8192");
    // Just under the limit is fine.
    let ok = format!(
        "GET /api/health HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        srv.host(),
        "a".repeat(6 * 1024)
    );
    srv.request(ok.as_bytes())
        .assert_json("HTTP/1.1 200 OK", BODY_HEALTH, "6 KiB header");
}

#[test]
fn body_over_limit_413() {
    let srv = ringcast!("--max-body-bytes", &["--max-body-bytes", "1024"]);
    let mut a = srv.open_stream();
    let h = srv.host();
    // Under the limit: accepted.
    let small = subs_body(&a.id, &["lim", &"x".repeat(900)]);
    assert!(small.len() <= 1024);
    srv.post_realtime_json(small.as_bytes())
        .assert_204("body under the limit");
    // Over the limit, with Content-Length.
    let big = subs_body(&a.id, &["lim", &"x".repeat(2000)]);
    assert_pb_error(
        &srv.post_realtime_json(big.as_bytes()),
        413,
        "POST /api/realtime over the limit",
    );
    let big_pub = format!(r#"{{"topic":"lim","data":"{}"}}"#, "y".repeat(2000));
    assert_pb_error(
        &srv.publish_raw(big_pub.as_bytes(), &[]),
        413,
        "POST /api/publish over the limit",
    );
    // Over the limit, chunked.
    let mut req = format!(
        "POST /api/realtime HTTP/1.1\r\nHost: {h}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for part in big.as_bytes().chunks(500) {
        req.extend(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend(part);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    assert_pb_error(&srv.request(&req), 413, "chunked body over the limit");
    // Nothing changed: lim is still subscribed, and delivered.
    srv.publish("lim", "1");
    a.expect_event("lim", "1");
}

#[test]
fn slow_request_head_is_closed() {
    let srv = ringcast!("--head-timeout", &["--head-timeout", "1s"]);
    // An established stream is not subject to the head timeout.
    let mut stream = srv.open_stream();
    srv.subscribe(&stream, &["alive"]);
    let mut c = srv.connect();
    let t0 = Instant::now();
    c.send(b"GET /api/rea");
    let (bytes, end) = c.read_to_end_within(Duration::from_secs(8));
    let t = t0.elapsed();
    assert!(
        end != End::Timeout,
        "the half-sent request was not closed within 8 s (got {})",
        show(&bytes)
    );
    assert!(
        t >= Duration::from_millis(800) && t <= Duration::from_secs(5),
        "closed after {t:?}, expected ≈1 s"
    );
    assert!(
        bytes.is_empty() || bytes.starts_with(b"HTTP/1.1 408 "),
        "unexpected answer to a slow head: {}",
        show(&bytes)
    );
    stream
        .conn
        .expect_silence(Duration::from_millis(300), "stream during the head timeout");
    srv.publish("alive", "1");
    stream.expect_event("alive", "1");
}

// =============================================================================================
// Slow consumers and stats
// =============================================================================================

#[test]
fn stats_shape() {
    let srv = ringcast!("GET /api/stats", &["--workers", "2"]);
    let mut a = srv.open_stream();
    let mut b = srv.open_stream();
    srv.subscribe(&a, &["st-1", "st-2"]);
    srv.subscribe(&b, &["st-1"]);
    srv.publish("st-1", "1");
    a.expect_event("st-1", "1");
    b.expect_event("st-1", "1");
    let v = srv.stats();
    assert!(v.is_object(), "stats is not a JSON object: {v}");
    let cores = per_core_entries(&v).unwrap_or_else(|| {
        panic!("no per-core entries (objects with \"connections\") in stats: {v}")
    });
    assert_eq!(
        cores.len(),
        2,
        "--workers 2 but {} per-core entries: {v}",
        cores.len()
    );
    for core in cores {
        for key in ["connections", "subscriptions", "deliveries", "dropped"] {
            assert!(
                sum_key(core, key).is_some(),
                "per-core entry without a {key:?} count: {core}"
            );
        }
    }
    for key in ["connections", "subscriptions", "deliveries", "dropped"] {
        assert!(
            sum_key(&v, key).is_some(),
            "stats has no numeric {key:?} count: {v}"
        );
    }
    assert!(
        sum_key(&v, "connections").unwrap() >= 2,
        "connections < 2: {v}"
    );
    assert!(
        sum_key(&v, "subscriptions").unwrap() >= 3,
        "subscriptions < 3: {v}"
    );
    assert!(
        sum_key(&v, "deliveries").unwrap() >= 2,
        "deliveries < 2: {v}"
    );
    assert_eq!(
        sum_key(&v, "dropped").unwrap(),
        0,
        "dropped != 0 with no slow client: {v}"
    );
}

#[test]
fn slow_consumer_is_dropped_others_unaffected() {
    let srv = ringcast!("--max-queue-bytes", &["--max-queue-bytes", "65536"]);
    // The slow client: a tiny receive window, reads PB_CONNECT and then never again.
    let mut sc = Conn::connect_small_rcvbuf(srv.addr, 4096);
    sc.send(format!("GET /api/realtime HTTP/1.1\r\nHost: {}\r\n\r\n", srv.host()).as_bytes());
    let mut slow = SseClient::from_conn(sc);
    let mut fast = srv.open_stream();
    srv.subscribe(&slow, &["flood"]);
    srv.subscribe(&fast, &["flood"]);

    const N: usize = 512; // × 16 KiB = 8 MiB, well over the kernel buffers of the slow socket
    let pad = "p".repeat(16 * 1024);
    let received = Arc::new(AtomicUsize::new(0));
    let fast_id = fast.id.clone();
    let reader = {
        let received = received.clone();
        let pad = pad.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                fast.expect_event("flood", &format!(r#"{{"i":{i},"pad":"{pad}"}}"#));
                received.store(i + 1, Ordering::Release);
            }
            fast
        })
    };
    for i in 0..N {
        // At most one message in flight towards the fast client: it never nears the cap.
        let ok = wait_for(Duration::from_secs(20), || {
            (received.load(Ordering::Acquire) >= i).then_some(())
        });
        assert!(
            ok.is_some(),
            "fast client stuck at {} of {N} (is the publisher blocked by the slow client?)",
            received.load(Ordering::Acquire)
        );
        let body = format!(r#"{{"topic":"flood","data":{{"i":{i},"pad":"{pad}"}}}}"#);
        let r = srv.publish_raw(body.as_bytes(), &[]);
        assert_eq!(
            r.status(),
            200,
            "publish {i}: {}{}",
            r.head.text(),
            r.body_str()
        );
    }
    let mut fast = reader
        .join()
        .expect("the fast client missed or mangled a message");
    assert_eq!(fast.id, fast_id);

    let dropped = wait_for(Duration::from_secs(5), || {
        sum_key(&srv.stats(), "dropped").filter(|&d| d >= 1)
    });
    assert!(
        dropped.is_some(),
        "stats never counted the dropped slow client: {}",
        srv.stats()
    );
    // The slow client's connection was closed: draining it reaches the end.
    let (bytes, end) = slow.conn.read_to_end_within(Duration::from_secs(10));
    assert!(
        end != End::Timeout,
        "the slow client's connection is still open after draining {} bytes",
        bytes.len()
    );
    let whole_events = bytes.windows(11).filter(|w| *w == b"event:flood").count();
    assert!(
        whole_events < N,
        "the slow client received all {N} messages: it was not dropped"
    );
    // Its id is gone; the fast client still receives.
    let r = srv.post_realtime_json(subs_body(&slow.id, &["flood"]).as_bytes());
    r.assert_json(
        "HTTP/1.1 404 Not Found",
        BODY_MISSING_CLIENT,
        "POST for the dropped client",
    );
    assert_recipients(
        &srv.publish_raw(br#"{"topic":"flood","data":"after"}"#, &[]),
        1,
        "publish after the drop",
    );
    fast.expect_event("flood", r#""after""#);
}

// =============================================================================================
// Shutdown and robustness
// =============================================================================================

#[test]
fn graceful_shutdown_on_sigterm() {
    let mut srv = ringcast!("SIGTERM", &[]);
    let mut streams: Vec<SseClient> = (0..3).map(|_| srv.open_stream()).collect();
    srv.subscribe(&streams[0], &["bye"]);
    // An HTTP/1.0 stream (no chunking) is simply closed.
    let (mut h10, _) = srv.open_http10_stream();
    // An idle keep-alive connection is closed too.
    let mut idle = srv.connect();
    idle.send(&get_request(&srv.host(), "/api/health"));
    idle.read_response()
        .assert_json("HTTP/1.1 200 OK", BODY_HEALTH, "health before SIGTERM");
    let t0 = Instant::now();
    srv.sigterm();
    for s in streams.iter_mut() {
        s.expect_end();
        let (rest, end) = s.conn.read_to_end_within(Duration::from_secs(8));
        assert!(
            rest.is_empty(),
            "bytes after the zero chunk: {}",
            show(&rest)
        );
        assert!(
            end != End::Timeout,
            "connection not closed after the zero chunk"
        );
    }
    for (name, c) in [
        ("HTTP/1.0 stream", &mut h10),
        ("idle keep-alive connection", &mut idle),
    ] {
        let (rest, end) = c.read_to_end_within(Duration::from_secs(8));
        assert!(
            rest.is_empty(),
            "{name}: bytes before the close: {}",
            show(&rest)
        );
        assert!(end != End::Timeout, "{name}: not closed on shutdown");
    }
    let status = srv.wait_exit(Duration::from_secs(8));
    let t = t0.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "ringcast still running {t:?} after SIGTERM; output:\n{}",
            srv.output_text()
        )
    });
    assert!(
        status.success(),
        "exit status {status} after SIGTERM; output:\n{}",
        srv.output_text()
    );
    assert!(t <= Duration::from_secs(5), "shutdown took {t:?}");
}

/// Write `req` in 64 KiB pieces, stopping early when the server answers or closes; then read
/// what comes until EOF/reset (or 5 s). Returns every byte received and how the wait ended.
fn send_until_answer(c: &mut Conn, req: &[u8]) -> (Vec<u8>, End) {
    for piece in req.chunks(64 * 1024) {
        if std::io::Write::write_all(&mut c.stream, piece).is_err() {
            break;
        }
        c.set_read_timeout(Duration::from_millis(1));
        let got = c.fill();
        c.set_read_timeout(READ_TIMEOUT);
        match got {
            Ok(0) => break,
            Ok(_) => break,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    // (includes whatever the 1 ms probes above already buffered)
    c.read_to_end_within(Duration::from_secs(5))
}

/// Send `req` on a new connection; the server must answer with a 4xx or close, never hang or die.
fn expect_rejected(srv: &Server, name: &str, req: &[u8]) {
    let mut c = srv.connect();
    let (bytes, end) = send_until_answer(&mut c, req);
    if bytes.is_empty() {
        assert!(
            end != End::Timeout,
            "{name}: no answer and no close within 5 s"
        );
    } else {
        assert!(
            bytes.starts_with(b"HTTP/1.1 4") || bytes.starts_with(b"HTTP/1.0 4"),
            "{name}: expected a 4xx answer, got {}",
            show(&bytes[..bytes.len().min(300)])
        );
    }
}

#[test]
fn bad_input_never_kills_the_server() {
    let mut srv = ringcast!("robustness", &[]);
    let mut sub = srv.open_stream();
    srv.subscribe(&sub, &["still"]);
    let h = srv.host();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x01\x02garbage\xff\xfe\r\n\r\n".to_vec()),
        ("no version", b"GET /api/health\r\n\r\n".to_vec()),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("bad header line", format!("GET /api/health HTTP/1.1\r\nHost: {h}\r\nno colon here\r\n\r\n").into_bytes()),
        ("negative Content-Length", format!("POST /api/realtime HTTP/1.1\r\nHost: {h}\r\nContent-Length: -1\r\n\r\n").into_bytes()),
        ("non-numeric Content-Length", format!("POST /api/realtime HTTP/1.1\r\nHost: {h}\r\nContent-Length: abc\r\n\r\n").into_bytes()),
        (
            "conflicting Content-Length",
            format!("POST /api/realtime HTTP/1.1\r\nHost: {h}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}").into_bytes(),
        ),
        (
            "huge chunk size",
            format!("POST /api/publish HTTP/1.1\r\nHost: {h}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nx").into_bytes(),
        ),
        (
            "bad chunk size",
            format!("POST /api/publish HTTP/1.1\r\nHost: {h}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n").into_bytes(),
        ),
        ("huge header (2 MiB)", format!("GET /api/health HTTP/1.1\r\nHost: {h}\r\nX-Big: {}\r\n\r\n", "b".repeat(2 << 20)).into_bytes()),
        ("huge URI (1 MiB)", format!("GET /api/{} HTTP/1.1\r\nHost: {h}\r\n\r\n", "u".repeat(1 << 20)).into_bytes()),
        ("invalid UTF-8 JSON to publish", {
            let mut r = format!("POST /api/publish HTTP/1.1\r\nHost: {h}\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n").into_bytes();
            r.extend(b"{\"topic\":\"still\xc3\x28\",\"data\"}");
            r
        }),
    ];
    for (name, req) in &cases {
        expect_rejected(&srv, name, req);
        assert!(
            srv.is_running(),
            "ringcast died on {name}; output:\n{}",
            srv.output_text()
        );
    }
    // A huge header gets 431 (PocketBase: Go's 1 MiB header limit). Written in pieces, stopping
    // as soon as the answer arrives.
    let mut c = srv.connect();
    let (bytes, _) = send_until_answer(
        &mut c,
        format!(
            "GET /api/health HTTP/1.1\r\nHost: {h}\r\nX-Big: {}\r\n\r\n",
            "b".repeat(2 << 20)
        )
        .as_bytes(),
    );
    assert!(
        bytes.starts_with(b"HTTP/1.1 431 "),
        "2 MiB header: expected 431, got {}",
        show(&bytes[..bytes.len().min(300)])
    );
    // Invalid UTF-8 in the JSON body → a clear 400.
    let mut body = b"{\"topic\":\"still".to_vec();
    body.extend(b"\xff\",\"data\":1}");
    assert_pb_error(
        &srv.publish_raw(&body, &[]),
        400,
        "invalid UTF-8 JSON to /api/publish",
    );
    // The subscriber on its own connection saw nothing of this and still works.
    assert_recipients(
        &srv.publish_raw(br#"{"topic":"still","data":"alive"}"#, &[]),
        1,
        "publish after the bad input",
    );
    sub.expect_event("still", r#""alive""#);
    srv.get("/api/health").assert_json(
        "HTTP/1.1 200 OK",
        BODY_HEALTH,
        "health after the bad input",
    );
}

// =============================================================================================
// More routing and configuration
// =============================================================================================

/// Topics shared by several clients survive one client's unsubscribe and another's disconnect;
/// a topic nobody holds any more can be subscribed again.
#[test]
fn topic_refcounts_across_unsubscribe_and_disconnect() {
    let srv = ringcast!("recipient counts", &["--workers", "2"]);
    let mut a = srv.open_stream();
    let b = srv.open_stream();
    srv.subscribe(&a, &["shared", "a-only"]);
    srv.subscribe(&b, &["shared"]);
    assert_recipients(
        &srv.publish_raw(br#"{"topic":"shared","data":1}"#, &[]),
        2,
        "two holders",
    );
    a.expect_event("shared", "1");
    srv.subscribe(&a, &["a-only"]);
    assert_recipients(
        &srv.publish_raw(br#"{"topic":"shared","data":2}"#, &[]),
        1,
        "a unsubscribed",
    );
    drop(b);
    let zero = wait_for(Duration::from_secs(3), || {
        let r = srv.publish_raw(br#"{"topic":"shared","data":3}"#, &[]);
        (r.body == br#"{"recipients":0}"#).then_some(())
    });
    assert!(
        zero.is_some(),
        "the disconnected client still counts as a recipient after 3 s"
    );
    let mut c = srv.open_stream();
    srv.subscribe(&c, &["shared"]);
    srv.subscribe(&a, &["a-only", "shared"]);
    assert_recipients(
        &srv.publish_raw(br#"{"topic":"shared","data":4}"#, &[]),
        2,
        "re-subscribed",
    );
    c.expect_event("shared", "4");
    a.expect_event("shared", "4");
    assert_recipients(
        &srv.publish_raw(br#"{"topic":"a-only","data":5}"#, &[]),
        1,
        "a-only",
    );
    a.expect_event("a-only", "5");
}

/// A client holding the maximum of 1000 subscriptions; one batch of 1000 messages, one per topic,
/// arrives complete and in order.
#[test]
fn thousand_subscriptions_and_a_thousand_message_batch() {
    let srv = ringcast!("batch publish", &[]);
    let mut a = srv.open_stream();
    let topics: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
    srv.subscribe(&a, &refs);
    let msgs: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"topic":"k{i}","data":{i}}}"#))
        .collect();
    let body = format!(r#"{{"messages":[{}]}}"#, msgs.join(","));
    let r = srv.publish_raw(body.as_bytes(), &[]);
    assert_eq!(r.status(), 200, "batch: {}{}", r.head.text(), r.body_str());
    for i in 0..1000 {
        a.expect_event(&format!("k{i}"), &i.to_string());
    }
}

/// A record event without `collectionId` reaches only the collection-name topics.
#[test]
fn record_event_without_collection_id() {
    let srv = ringcast!("record events", &[]);
    let mut a = srv.open_stream();
    srv.subscribe(
        &a,
        &[
            "posts/R9", "posts/*", "posts", "pbc_1/R9", "pbc_1/*", "pbc_1", "marker",
        ],
    );
    let r = srv.publish_raw(
        br#"{"collection":"posts","action":"update","record":{"id":"R9","b":2,"a":1}}"#,
        &[],
    );
    assert_eq!(r.status(), 200, "{}{}", r.head.text(), r.body_str());
    let payload = r#"{"record":{"id":"R9","b":2,"a":1},"action":"update"}"#;
    a.expect_events_any_order(&[
        ("posts/R9", payload),
        ("posts/*", payload),
        ("posts", payload),
    ]);
    srv.publish("marker", "0");
    a.expect_event("marker", "0");
}

/// HTTP/1.0 streams have no chunking: the idle timeout ends them by closing the connection.
#[test]
fn idle_timeout_closes_http10_stream() {
    let srv = ringcast!("--idle-timeout", &["--idle-timeout", "1s"]);
    let t0 = Instant::now();
    let (mut c, _) = srv.open_http10_stream();
    let (rest, end) = c.read_to_end_within(Duration::from_secs(6));
    let t = t0.elapsed();
    assert!(rest.is_empty(), "bytes before the close: {}", show(&rest));
    assert!(
        end != End::Timeout,
        "HTTP/1.0 stream not closed by the idle timeout"
    );
    assert!(
        t >= Duration::from_millis(900) && t <= Duration::from_secs(3),
        "closed after {t:?}, expected ≈1 s"
    );
}

/// The head timeout counts from a request's first byte: an idle keep-alive connection between
/// requests is not cut by it.
#[test]
fn head_timeout_spares_idle_keep_alive_connection() {
    let srv = ringcast!("--head-timeout", &["--head-timeout", "1s"]);
    let mut c = srv.connect();
    c.send(&get_request(&srv.host(), "/api/health"));
    c.read_response()
        .assert_json("HTTP/1.1 200 OK", BODY_HEALTH, "first request");
    c.expect_silence(Duration::from_millis(2000), "idle keep-alive connection");
    c.send(&get_request(&srv.host(), "/api/health"));
    c.read_response()
        .assert_json("HTTP/1.1 200 OK", BODY_HEALTH, "request after 2 s idle");
}

/// Every flag can come from a `RINGCAST_*` variable; durations accept `ms`.
#[test]
fn flags_from_environment() {
    if skip_in_external_mode("flags_from_environment", "RINGCAST_* variables") {
        return;
    }
    let srv = Server::start_with_env(
        &[],
        &[
            ("RINGCAST_IDLE_TIMEOUT", "1500ms"),
            ("RINGCAST_ADMIN_TOKEN", "envtok"),
        ],
    );
    let t0 = Instant::now();
    let mut a = srv.open_stream();
    srv.subscribe(&a, &["env"]);
    assert_pb_error(
        &srv.publish_raw(br#"{"topic":"env","data":1}"#, &[]),
        401,
        "publish without the env token",
    );
    assert_recipients(
        &srv.publish_raw(
            br#"{"topic":"env","data":1}"#,
            &[("Authorization", "Bearer envtok")],
        ),
        1,
        "publish with the env token",
    );
    a.expect_event("env", "1");
    let t_msg = Instant::now();
    a.expect_end();
    let since = t_msg.elapsed();
    assert!(
        since >= Duration::from_millis(1300) && since <= Duration::from_millis(4000),
        "idle end {since:?} after the message (total {:?}), expected ≈1.5 s",
        t0.elapsed()
    );
}

/// `--origins LIST` (PocketBase's flag): an allowed origin is echoed in
/// `Access-Control-Allow-Origin` (GET, POST, preflight); any other origin (matching is
/// case-sensitive) gets no CORS headers and a bare preflight answer. Expectations recorded from
/// PocketBase 0.40.6 run with `--origins 'http://a.example,https://b.example'`.
#[test]
fn origins_list() {
    let srv = ringcast!(
        "--origins",
        &["--origins", "http://a.example,https://b.example"]
    );
    let h = srv.host();
    for (origin, allowed) in [
        ("http://a.example", true),
        ("https://b.example", true),
        ("http://c.example", false),
        ("http://A.EXAMPLE", false),
    ] {
        let acao = if allowed {
            format!("Access-Control-Allow-Origin: {origin}\r\n")
        } else {
            String::new()
        };
        // stream
        let mut c = srv.connect();
        c.send(
            format!("GET /api/realtime HTTP/1.1\r\nHost: {h}\r\nOrigin: {origin}\r\n\r\n")
                .as_bytes(),
        );
        let head = c.read_head();
        let expected = sse_head(false).replacen(
            "HTTP/1.1 200 OK\r\n",
            &format!("HTTP/1.1 200 OK\r\n{acao}"),
            1,
        );
        assert_head(&head, &expected, &format!("stream, Origin {origin}"));
        // preflight
        let r = srv.request(
            format!(
                "OPTIONS /api/realtime HTTP/1.1\r\nHost: {h}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
            )
            .as_bytes(),
        );
        let expected = if allowed {
            format!(
                "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Headers: content-type\r\nAccess-Control-Allow-Methods: GET,HEAD,PUT,PATCH,POST,DELETE\r\n{acao}Vary: Origin\r\nVary: Access-Control-Request-Method\r\nVary: Access-Control-Request-Headers\r\nDate: <DATE>\r\n\r\n"
            )
        } else {
            "HTTP/1.1 204 No Content\r\nVary: Origin\r\nDate: <DATE>\r\n\r\n".to_string()
        };
        r.assert_exact(&expected, b"", &format!("preflight, Origin {origin}"));
        // POST (error answer)
        let r = srv.request(&curl_request(
            &h,
            "POST",
            "/api/realtime",
            &[("Origin", origin), ("Content-Type", "application/json")],
            Some(b"{}"),
            &[],
        ));
        let expected = json_head(
            "HTTP/1.1 400 Bad Request",
            BODY_BLANK_CLIENT_ID.len(),
            false,
        )
        .replacen("Bad Request\r\n", &format!("Bad Request\r\n{acao}"), 1);
        r.assert_exact(
            &expected,
            BODY_BLANK_CLIENT_ID.as_bytes(),
            &format!("POST, Origin {origin}"),
        );
    }
}

/// `--keepalive-timeout` (from `ringcast serve --help`): an idle keep-alive connection — here the
/// one left after an idle-timeout end of stream — is closed after that long, without a byte
/// (PocketBase: 5 minutes, keepalive-close-after-stream-end.txt).
#[test]
fn keepalive_timeout_closes_idle_connection_after_stream_end() {
    let srv = ringcast!(
        "--keepalive-timeout",
        &["--idle-timeout", "1s", "--keepalive-timeout", "1s"]
    );
    let mut a = srv.open_stream();
    a.expect_end();
    let t0 = Instant::now();
    let (rest, end) = a.conn.read_to_end_within(Duration::from_secs(6));
    let t = t0.elapsed();
    assert!(
        rest.is_empty(),
        "bytes after the zero chunk: {}",
        show(&rest)
    );
    assert!(
        end != End::Timeout,
        "the idle keep-alive connection was not closed within 6 s"
    );
    assert!(
        t >= Duration::from_millis(800) && t <= Duration::from_secs(4),
        "closed {t:?} after the stream end, expected ≈1 s"
    );
}
