//! Conformance replays: the cases recorded from PocketBase 0.40.6 in
//! `shared/conformance/pocketbase-0.40.6/*.txt`, sent with the same request bytes, checked byte for
//! byte (status line, header names/values/order with `Date` normalised, bodies, chunk framing).
//!
//! Run against ringcast: `cargo test --test conformance`.
//! Run against the real PocketBase (to prove the expectations):
//! `RINGCAST_TEST_ADDR=127.0.0.1:28090 RINGCAST_TEST_PUBLISH_PATH=/api/notify cargo test --test conformance`
//! with PocketBase serving a public copy of `shared/research/pb_hooks/notify.pb.js`.
//!
//! Every test uses its own topic names, so the tests can share one external server. Where several
//! captures have the same shape (a request and PocketBase's exact answer), they are rows of a
//! table named after the capture; a table runs every row and reports the failed ones by name.

use ringcast_testkit::{bytes::*, http::*, pocketbase::*, server::*, sse::*, wait::*};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

fn start() -> Server {
    Server::start(&[])
}

// =============================================================================================
// The tables
// =============================================================================================

/// What PocketBase answers to a case.
enum Answer {
    /// `204 No Content` with the security headers (a successful POST /api/realtime).
    NoContent,
    /// A JSON answer: status line, exact body (the head follows from them).
    Json(&'static str, String),
    /// Any other exact head and body.
    Exact(String, Vec<u8>),
}

const BAD: &str = "HTTP/1.1 400 Bad Request";
const NF: &str = "HTTP/1.1 404 Not Found";
const OK: &str = "HTTP/1.1 200 OK";

fn json(status_line: &'static str, body: &str) -> Answer {
    Answer::Json(status_line, body.to_string())
}

/// One request and its exact answer.
struct Case {
    /// The capture (or the variant of it) this row replays: what a failure is reported as.
    name: String,
    request: Vec<u8>,
    answer: Answer,
    /// Sent from this local address instead of 127.0.0.1.
    from: Option<&'static str>,
    /// The server must close the connection after the answer.
    closes: bool,
}

impl Case {
    fn new(name: impl Into<String>, request: impl Into<Vec<u8>>, answer: Answer) -> Case {
        Case {
            name: name.into(),
            request: request.into(),
            answer,
            from: None,
            closes: false,
        }
    }

    fn from(mut self, ip: &'static str) -> Case {
        self.from = Some(ip);
        self
    }

    fn closes(mut self) -> Case {
        self.closes = true;
        self
    }

    #[track_caller]
    fn check_response(&self, r: &Response) {
        match &self.answer {
            Answer::NoContent => r.assert_204(&self.name),
            Answer::Json(status_line, body) => r.assert_json(status_line, body, &self.name),
            Answer::Exact(head, body) => r.assert_exact(head, body, &self.name),
        }
    }

    /// Send the request on a new connection and check the answer.
    #[track_caller]
    fn check(&self, srv: &Server) {
        let mut c = match self.from {
            Some(ip) => srv.connect_from(ip),
            None => srv.connect(),
        };
        c.send(&self.request);
        self.check_response(&c.read_response());
        if self.closes {
            c.expect_close(&self.name);
        }
    }
}

/// Run `check` on every row, then fail with the names and messages of all rows that failed (the
/// rows are independent, so one failure says nothing about the others).
#[track_caller]
fn each_row<T>(rows: &[T], name: impl Fn(&T) -> &str, check: impl Fn(&T)) {
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let e = catch_unwind(AssertUnwindSafe(|| check(row))).err()?;
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Some(format!("[{}] {msg}", name(row)))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}

/// Every case on its own connection.
#[track_caller]
fn run_cases(srv: &Server, cases: &[Case]) {
    each_row(cases, |c| &c.name, |c| c.check(srv));
}

/// The cases one after the other on one keep-alive connection (a failure ends the run: the
/// answers after it would be misaligned).
#[track_caller]
fn run_keep_alive(c: &mut Conn, cases: &[Case]) {
    for case in cases {
        c.send(&case.request);
        case.check_response(&c.read_response());
    }
}

/// The cases pipelined: all requests in one write, then the answers, complete and in order.
#[track_caller]
fn run_pipelined(c: &mut Conn, cases: &[Case]) {
    let batch: Vec<u8> = cases.iter().flat_map(|c| c.request.clone()).collect();
    c.send(&batch);
    for case in cases {
        case.check_response(&c.read_response());
    }
}

/// A GET that opens a stream, and the exact head PocketBase answers it with.
struct StreamCase {
    name: &'static str,
    request: Vec<u8>,
    head: String,
    /// Further checks on the open stream.
    then: fn(&mut SseClient),
}

fn no_more_checks(_: &mut SseClient) {}

/// `curl -X METHOD http://HOST/PATH` with these headers and no body.
fn curl(host: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    curl_request(host, method, path, headers, None, &[])
}

// =============================================================================================
// GET /api/realtime — the stream
// =============================================================================================

/// get-realtime-raw-socket.txt: head and the `7b` PB_CONNECT chunk arrive in ONE read (444 bytes).
#[test]
fn get_stream_head_and_pb_connect_in_one_read() {
    let srv = start();
    let mut c = srv.connect();
    c.send(
        format!(
            "GET /api/realtime HTTP/1.1\r\nHost: {}\r\nUser-Agent: rawcap\r\nAccept: text/event-stream\r\n\r\n",
            srv.host()
        )
        .as_bytes(),
    );
    let got = c.read_once();
    let split = find(&got, b"\r\n\r\n").map(|p| p + 4).unwrap_or_else(|| {
        panic!(
            "the first read did not contain the whole head: {}",
            show(&got)
        )
    });
    let head = Head::parse(got[..split].to_vec());
    assert_head(&head, &sse_head(false), "stream head");
    let rest = &got[split..];
    assert!(
        rest.starts_with(b"7b\r\nid:"),
        "the first read did not contain the 7b PB_CONNECT chunk right after the head: {}",
        show(&got)
    );
    let id = pb_connect_id(rest);
    assert_bytes(
        rest,
        &chunk(&pb_connect_event(&id)),
        "first read after the head",
    );
    assert_eq!(got.len(), 444, "head + PB_CONNECT is 444 bytes");
    // No keep-alive bytes, no pings, no comments (idle-timeout-no-subscriptions.txt).
    c.expect_silence(Duration::from_millis(1500), "after PB_CONNECT");
}

/// Request variants that all get the stream: head and PB_CONNECT chunk exact.
#[test]
fn stream_request_variants() {
    const OLD_ID: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let srv = start();
    let h = srv.host();
    let rows = [
        // get-realtime-curl-v.txt: curl's request; same head, PB_CONNECT body of 123 bytes.
        StreamCase {
            name: "get-realtime-curl-v",
            request: curl(&h, "GET", "/api/realtime", &[]),
            head: sse_head(false),
            then: |c| assert_eq!(c.first_chunk.len(), 123),
        },
        // `Accept-Encoding: gzip` does not compress the stream (spec §1.1).
        StreamCase {
            name: "Accept-Encoding: gzip ignored",
            request: curl(
                &h,
                "GET",
                "/api/realtime",
                &[("Accept-Encoding", "gzip, deflate, br")],
            ),
            head: sse_head(false),
            then: no_more_checks,
        },
        // cors-get-and-post-with-origin.txt (GET): `Access-Control-Allow-Origin: *` first.
        StreamCase {
            name: "stream head with Origin",
            request: curl(
                &h,
                "GET",
                "/api/realtime",
                &[("Origin", "http://example.com")],
            ),
            head: sse_head(true),
            then: no_more_checks,
        },
        // get-realtime-last-event-id.txt: `Last-Event-ID` is ignored; a brand-new id is issued.
        StreamCase {
            name: "get-realtime-last-event-id",
            request: stream_request(&h, &[("Last-Event-ID", OLD_ID)]),
            head: sse_head(false),
            then: |c| {
                assert_ne!(
                    c.id, OLD_ID,
                    "Last-Event-ID must not be reused as the client id"
                )
            },
        },
        // get-trailing-slash-and-query.txt: a query string is ignored.
        StreamCase {
            name: "GET /api/realtime?foo=bar",
            request: curl(&h, "GET", "/api/realtime?foo=bar", &[]),
            head: sse_head(false),
            then: no_more_checks,
        },
        // `Connection: close` from the client: the head says so (after `Date`, before
        // `Transfer-Encoding`), and the stream stays open.
        StreamCase {
            name: "stream with Connection: close",
            request: format!(
                "GET /api/realtime HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
            head: sse_head(false).replace(
                "Date: <DATE>\r\nTransfer-Encoding: chunked\r\n",
                "Date: <DATE>\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n",
            ),
            then: |c| {
                c.expect_silence(
                    Duration::from_millis(300),
                    "stream with Connection: close stays open",
                )
            },
        },
    ];
    each_row(
        &rows,
        |r| r.name,
        |r| {
            let mut c = srv.connect();
            c.send(&r.request);
            let mut client = SseClient::expect_stream(c, &r.head, r.name);
            (r.then)(&mut client);
        },
    );
}

/// client-id-format.txt: ids are 40 chars of [A-Za-z0-9], unique; PB_CONNECT always `7b`.
#[test]
fn client_id_format_100_connections() {
    let srv = start();
    let clients: Vec<SseClient> = (0..100).map(|_| srv.open_stream()).collect();
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    for id in &ids {
        assert!(is_client_id(id), "bad id {id:?}");
    }
    assert!(
        all_distinct(&ids),
        "duplicate client ids among 100 connections"
    );
    // 100 × 40 = 4000 characters: every class of symbol shows up if the alphabet is [A-Za-z0-9].
    let all: String = ids.concat();
    assert!(
        all.bytes().any(|c| c.is_ascii_uppercase()),
        "no upper-case letter in 100 ids"
    );
    assert!(
        all.bytes().any(|c| c.is_ascii_lowercase()),
        "no lower-case letter in 100 ids"
    );
    assert!(
        all.bytes().any(|c| c.is_ascii_digit()),
        "no digit in 100 ids"
    );
    let distinct: std::collections::HashSet<u8> = all.bytes().collect();
    assert!(
        distinct.len() >= 55,
        "only {} distinct symbols in 4000 id characters",
        distinct.len()
    );
}

/// get-realtime-http10.txt: HTTP/1.0 status line, no Transfer-Encoding, events written raw.
#[test]
fn get_http10_raw_events() {
    let srv = start();
    let (mut c, id) = srv.open_http10_stream();
    // A delivered message is written raw as well.
    let r = srv.post_realtime_json(subs_body(&id, &["h10-topic"]).as_bytes());
    r.assert_204("subscribe the HTTP/1.0 client");
    srv.publish("h10-topic", r#"{"v":1}"#);
    c.expect_bytes(
        &event(&id, "h10-topic", r#"{"v":1}"#),
        "raw event on HTTP/1.0",
    );
    c.expect_silence(Duration::from_millis(300), "after the HTTP/1.0 event");
}

/// head-realtime.txt: HEAD gets the stream head without Transfer-Encoding and no body; the
/// response stays open (nothing else is written).
#[test]
fn head_realtime() {
    let srv = start();
    let mut c = srv.connect();
    c.send(
        format!(
            "HEAD /api/realtime HTTP/1.1\r\nHost: {}\r\n\r\n",
            srv.host()
        )
        .as_bytes(),
    );
    let head = c.read_head();
    assert_head(&head, &sse_head_no_te("HTTP/1.1"), "HEAD head");
    c.expect_silence(Duration::from_millis(1000), "after the HEAD head");
}

// =============================================================================================
// Routes and methods
// =============================================================================================

/// options-preflight.txt, get-trailing-slash-and-query.txt, wrong-method.txt,
/// post-trailing-slash.txt, GET /api/health (hooks-connect-subscribe-message.txt §3), and the
/// other methods on /api/health.
#[test]
fn routes_and_methods() {
    let srv = start();
    let h = srv.host();
    let preflight = |method: &str, hdrs: &str| {
        Case::new(
            format!("preflight for {method}"),
            curl(
                &h,
                "OPTIONS",
                "/api/realtime",
                &[
                    ("Origin", "http://example.com"),
                    ("Access-Control-Request-Method", method),
                    ("Access-Control-Request-Headers", hdrs),
                ],
            ),
            // The requested headers are echoed verbatim.
            Answer::Exact(
                format!(
                    "HTTP/1.1 204 No Content\r\n\
Access-Control-Allow-Headers: {hdrs}\r\n\
Access-Control-Allow-Methods: GET,HEAD,PUT,PATCH,POST,DELETE\r\n\
Access-Control-Allow-Origin: *\r\n\
Vary: Origin\r\n\
Vary: Access-Control-Request-Method\r\n\
Vary: Access-Control-Request-Headers\r\n\
Date: <DATE>\r\n\r\n"
                ),
                Vec::new(),
            ),
        )
    };
    // wrong-method.txt: PUT/PATCH/DELETE → 404 (not 405).
    let wrong_method = |m: &str| {
        Case::new(
            format!("{m} /api/realtime"),
            curl_request(
                &h,
                m,
                "/api/realtime",
                &[("Content-Type", "application/json")],
                Some(br#"{"clientId":"x","subscriptions":[]}"#),
                &[],
            ),
            json(NF, BODY_NOT_FOUND),
        )
    };
    run_cases(
        &srv,
        &[
            Case::new(
                "OPTIONS",
                curl(&h, "OPTIONS", "/api/realtime", &[]),
                Answer::Exact(
                    "HTTP/1.1 204 No Content\r\nVary: Origin\r\nDate: <DATE>\r\n\r\n".into(),
                    Vec::new(),
                ),
            ),
            preflight("POST", "content-type,authorization"),
            preflight("GET", "last-event-id,cache-control"),
            // `/api/realtime/` is not the route.
            Case::new(
                "GET /api/realtime/",
                curl(&h, "GET", "/api/realtime/", &[]),
                json(NF, BODY_FILE_NOT_FOUND),
            ),
            wrong_method("PUT"),
            wrong_method("PATCH"),
            wrong_method("DELETE"),
            Case::new(
                "POST /api/realtime/",
                curl_post_json(&h, "/api/realtime/", b"{}"),
                json(NF, BODY_NOT_FOUND),
            ),
            Case::new(
                "GET /api/health",
                get_request(&h, "/api/health"),
                json(OK, BODY_HEALTH),
            ),
            Case::new(
                "POST /api/health",
                format!("POST /api/health HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\n\r\n"),
                json(NF, BODY_NOT_FOUND),
            ),
            Case::new(
                "lower-case method",
                format!("get /api/health HTTP/1.1\r\nHost: {h}\r\n\r\n"),
                json(NF, BODY_NOT_FOUND),
            ),
        ],
    );
}

/// HEAD /api/health: the GET's head, no body; the connection goes on.
#[test]
fn health_head() {
    let srv = start();
    let h = srv.host();
    let mut c = srv.connect();
    c.send(format!("HEAD /api/health HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes());
    let r = c.read_response_to(true);
    r.assert_exact(&json_head(OK, 50, false), b"", "HEAD /api/health");
    run_keep_alive(
        &mut c,
        &[Case::new(
            "GET after HEAD on the same connection",
            get_request(&h, "/api/health"),
            json(OK, BODY_HEALTH),
        )],
    );
}

// =============================================================================================
// POST /api/realtime — decoding and validation (spec §2.4, post-*.txt)
// =============================================================================================

/// Python's `json.dumps` (default separators, ensure_ascii) of a subscriptions body — the captures'
/// big bodies were written that way.
fn py_body(client_id: Option<&str>, subs: &[String]) -> String {
    fn py_str(s: &str) -> String {
        let mut o = String::from("\"");
        for ch in s.chars() {
            match ch {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        o.push_str(&format!("\\u{:04x}", u));
                    }
                }
                c => o.push(c),
            }
        }
        o.push('"');
        o
    }
    let list: Vec<String> = subs.iter().map(|s| py_str(s)).collect();
    match client_id {
        Some(id) => format!(
            "{{\"clientId\": {}, \"subscriptions\": [{}]}}",
            py_str(id),
            list.join(", ")
        ),
        None => format!("{{\"subscriptions\": [{}]}}", list.join(", ")),
    }
}

/// Every POST capture whose answer depends only on the request, with one live stream open (so
/// its id in a body is a registered client).
#[test]
fn post_answers() {
    let srv = start();
    let c = srv.open_stream();
    let h = srv.host();
    let id = c.id.as_str();
    let post = |name: &str, body: &[u8], answer: Answer| {
        Case::new(name, curl_post_json(&h, "/api/realtime", body), answer)
    };
    let post_with = |name: &str, headers: &[(&str, &str)], body: Option<&[u8]>, answer| {
        Case::new(
            name,
            curl_request(&h, "POST", "/api/realtime", headers, body, &[]),
            answer,
        )
    };
    let blank = || json(BAD, BODY_BLANK_CLIENT_ID);
    let generic = || json(BAD, BODY_GENERIC_400);

    let success = format!(r#"{{"clientId":"{id}","subscriptions":["example","posts/*"]}}"#);
    assert_eq!(success.len(), 93);
    let example = subs_body(id, &["example"]);
    assert_eq!(example.len(), 83);
    let mut bad_utf8_id = format!(r#"{{"clientId":"{id}"#).into_bytes();
    bad_utf8_id.extend_from_slice(b"\xff\",\"subscriptions\":[\"a\"]}");
    let mut bad_utf8_topic = format!(r#"{{"clientId":"{id}","subscriptions":["a"#).into_bytes();
    bad_utf8_topic.extend_from_slice(b"\xc3\x28\"]}");
    let a255 = format!(r#"{{"clientId":"{}","subscriptions":[]}}"#, "a".repeat(255));
    assert_eq!(a255.len(), 289);
    let a256 = format!(r#"{{"clientId":"{}","subscriptions":[]}}"#, "a".repeat(256));
    let topic_2500 = py_body(Some(id), &["x".repeat(2500)]);
    assert_eq!(topic_2500.len(), 2579);
    let topic_2501 = py_body(Some(id), &["ok".to_string(), "x".repeat(2501)]);
    assert_eq!(topic_2501.len(), 2586);
    let several_long = py_body(
        Some(id),
        &[
            "x".repeat(2501),
            "y".repeat(2501),
            "ok".to_string(),
            "z".repeat(2501),
        ],
    );
    assert_eq!(several_long.len(), 7596);
    let several_long_answer = body_topics_too_long(&[0, 1, 3]);
    assert_eq!(several_long_answer.len(), 471);
    let blank_and_long = py_body(None, &["x".repeat(2501)]);
    assert_eq!(blank_and_long.len(), 2524);
    let blank_and_long_answer = format!(
        r#"{{"data":{{"clientId":{{"code":"validation_required","message":"Cannot be blank."}},"subscriptions":{{"0":{TOPIC_TOO_LONG_ERR}}}}},"message":"Something went wrong while processing your request.","status":400}}"#
    );
    assert_eq!(blank_and_long_answer.len(), 298);
    let origin = [
        ("Origin", "http://example.com"),
        ("Content-Type", "application/json"),
    ];

    run_cases(
        &srv,
        &[
            post("post-success", success.as_bytes(), Answer::NoContent),
            // post-no-body, post-empty-body-json-content-type, post-empty-object,
            // post-missing-clientid, post-empty-clientid → clientId "Cannot be blank.".
            // curl -X POST (no body, no Content-Length, no Content-Type)
            post_with("post-no-body", &[], None, blank()),
            // the same with an explicit Content-Length: 0
            post_with(
                "post-no-body (Content-Length: 0)",
                &[("Content-Length", "0")],
                None,
                blank(),
            ),
            post_with(
                "post-empty-body-json-content-type",
                &[("Content-Type", "application/json")],
                None,
                blank(),
            ),
            post("post-empty-object", b"{}", blank()),
            post(
                "post-missing-clientid",
                br#"{"subscriptions":["example"]}"#,
                blank(),
            ),
            post(
                "post-empty-clientid",
                br#"{"clientId":"","subscriptions":["example"]}"#,
                blank(),
            ),
            // post-invalid-json, post-invalid-json-not-json, post-json-array-body,
            // post-clientid-not-string, post-subscriptions-not-array, post-subscriptions-numbers
            // → 400 with empty data.
            post("post-invalid-json", br#"{"clientId":"#, generic()),
            post("post-invalid-json-not-json", b"not json", generic()),
            post(
                "post-json-array-body",
                format!(r#"["{id}"]"#).as_bytes(),
                generic(),
            ),
            post(
                "post-clientid-not-string",
                br#"{"clientId":123,"subscriptions":[]}"#,
                generic(),
            ),
            post(
                "post-subscriptions-not-array",
                format!(r#"{{"clientId":"{id}","subscriptions":"example"}}"#).as_bytes(),
                generic(),
            ),
            post(
                "post-subscriptions-numbers",
                format!(r#"{{"clientId":"{id}","subscriptions":[1,2]}}"#).as_bytes(),
                generic(),
            ),
            // Invalid UTF-8 inside the JSON strings → 400 with empty data (checked on PocketBase
            // 0.40.6).
            post("invalid UTF-8 in clientId", &bad_utf8_id, generic()),
            post("invalid UTF-8 in a topic", &bad_utf8_topic, generic()),
            // post-content-type-text-plain, post-no-content-type → 400 empty data;
            // post-content-type-json-charset → 204.
            post_with(
                "post-content-type-text-plain",
                &[("Content-Type", "text/plain")],
                Some(example.as_bytes()),
                generic(),
            ),
            post_with(
                "post-no-content-type",
                &[],
                Some(example.as_bytes()),
                generic(),
            ),
            post_with(
                "post-content-type-json-charset",
                &[("Content-Type", "application/json; charset=utf-8")],
                Some(example.as_bytes()),
                Answer::NoContent,
            ),
            // PocketBase matches the body's media type case-sensitively: `Application/JSON` is
            // not JSON.
            post_with(
                "Content-Type: Application/JSON",
                &[("Content-Type", "Application/JSON")],
                Some(subs_body(id, &["x"]).as_bytes()),
                generic(),
            ),
            // post-unknown-clientid, post-clientid-255-unknown (→ 404), post-clientid-too-long-256
            // (→ 400).
            post(
                "post-unknown-clientid",
                br#"{"clientId":"0000000000000000000000000000000000000000","subscriptions":["example"]}"#,
                json(NF, BODY_MISSING_CLIENT),
            ),
            post(
                "post-clientid-255-unknown",
                a255.as_bytes(),
                json(NF, BODY_MISSING_CLIENT),
            ),
            post(
                "post-clientid-too-long-256",
                a256.as_bytes(),
                json(BAD, BODY_CLIENT_ID_TOO_LONG),
            ),
            // post-topic-2500-chars-ok, post-topic-2501-chars, post-topics-several-too-long,
            // post-missing-clientid-and-long-topic.
            post(
                "post-topic-2500-chars-ok",
                topic_2500.as_bytes(),
                Answer::NoContent,
            ),
            post(
                "post-topic-2501-chars",
                topic_2501.as_bytes(),
                json(BAD, &body_topics_too_long(&[1])),
            ),
            post(
                "post-topics-several-too-long",
                several_long.as_bytes(),
                json(BAD, &several_long_answer),
            ),
            post(
                "post-missing-clientid-and-long-topic",
                blank_and_long.as_bytes(),
                json(BAD, &blank_and_long_answer),
            ),
            // cors-get-and-post-with-origin.txt (POST success and error).
            post_with(
                "POST with Origin (success)",
                &origin,
                Some(example.as_bytes()),
                Answer::Exact(no_content_head(true), Vec::new()),
            ),
            post_with(
                "POST with Origin (error)",
                &origin,
                Some(b"{}"),
                Answer::Exact(
                    json_head(BAD, 158, true),
                    BODY_BLANK_CLIENT_ID.as_bytes().to_vec(),
                ),
            ),
        ],
    );
}

/// post-form-urlencoded.txt, post-multipart.txt: form bodies work, and the subscriptions they set
/// are the ones delivered.
#[test]
fn post_form_and_multipart() {
    let srv = start();
    let mut c = srv.open_stream();
    let h = srv.host();
    let form = format!(
        "clientId={}&subscriptions=form-a&subscriptions=posts%2F%2A",
        c.id
    );
    Case::new(
        "post-form-urlencoded",
        curl_request(
            &h,
            "POST",
            "/api/realtime",
            &[],
            Some(form.as_bytes()),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        ),
        Answer::NoContent,
    )
    .check(&srv);
    srv.publish("form-a", r#"{"f":1}"#);
    c.expect_event("form-a", r#"{"f":1}"#);

    let boundary = "------------------------150f3be3137c1b23";
    let mut mp = String::new();
    for (n, v) in [
        ("clientId", c.id.as_str()),
        ("subscriptions", "multi-b"),
        ("subscriptions", "posts/*"),
    ] {
        mp.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n"
        ));
    }
    mp.push_str(&format!("--{boundary}--\r\n"));
    assert_eq!(mp.len(), 401, "same size as curl -F in post-multipart.txt");
    Case::new(
        "post-multipart",
        curl_request(
            &h,
            "POST",
            "/api/realtime",
            &[],
            Some(mp.as_bytes()),
            &[(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )],
        ),
        Answer::NoContent,
    )
    .check(&srv);
    // The multipart POST replaced the set: form-a is gone, multi-b is there.
    srv.publish("form-a", r#"{"f":2}"#);
    srv.publish("multi-b", r#"{"m":1}"#);
    c.expect_event("multi-b", r#"{"m":1}"#);
}

/// post-xml-body.txt: XML with <ClientId>/<Subscriptions> → 204; lower-case <clientId> → blank.
#[test]
fn post_xml_body() {
    let srv = start();
    let mut c = srv.open_stream();
    let h = srv.host();
    let xml_post = |name: &str, xml: &str, answer| {
        Case::new(
            name,
            curl_request(
                &h,
                "POST",
                "/api/realtime",
                &[("Content-Type", "application/xml")],
                Some(xml.as_bytes()),
                &[],
            ),
            answer,
        )
    };
    let xml = format!(
        "<x><ClientId>{}</ClientId><Subscriptions>xml-a</Subscriptions><Subscriptions>posts/*</Subscriptions></x>",
        c.id
    );
    xml_post("post-xml-body", &xml, Answer::NoContent).check(&srv);
    srv.publish("xml-a", "1");
    c.expect_event("xml-a", "1");
    let lower = format!("<x><clientId>{}</clientId></x>", c.id);
    assert_eq!(lower.len(), 68);
    xml_post(
        "post-xml-body (lower-case element)",
        &lower,
        json(BAD, BODY_BLANK_CLIENT_ID),
    )
    .check(&srv);
}

/// post-case-insensitive-keys, post-unknown-extra-field, post-trailing-garbage → 204, and the
/// subscription is really stored.
#[test]
fn post_lenient_json() {
    let srv = start();
    let mut c = srv.open_stream();
    let h = srv.host();
    let id = c.id.clone();
    let cases = [
        (
            "post-case-insensitive-keys",
            format!(r#"{{"CLIENTID":"{id}","Subscriptions":["lenient-1"]}}"#),
            "lenient-1",
        ),
        (
            "post-unknown-extra-field",
            format!(r#"{{"clientId":"{id}","subscriptions":["lenient-2"],"foo":1}}"#),
            "lenient-2",
        ),
        (
            "post-trailing-garbage",
            format!(r#"{{"clientId":"{id}","subscriptions":["lenient-3"]}} garbage"#),
            "lenient-3",
        ),
    ];
    for (name, body, topic) in cases {
        Case::new(
            name,
            curl_post_json(&h, "/api/realtime", body.as_bytes()),
            Answer::NoContent,
        )
        .check(&srv);
        srv.publish(topic, r#"{"ok":true}"#);
        c.expect_event(topic, r#"{"ok":true}"#);
    }
}

/// post-1000-subscriptions-ok, post-1001-subscriptions, post-1001-subscriptions-and-long-topic.
#[test]
fn post_subscription_count_limit() {
    let srv = start();
    let mut c = srv.open_stream();
    let h = srv.host();
    let t1000: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
    let t1001: Vec<String> = (0..1001).map(|i| format!("t{i}")).collect();
    let mut t1001_long = t1000.clone();
    t1001_long.push("x".repeat(2501));
    let rows = [
        ("post-1000-subscriptions-ok", t1000, 7965, Answer::NoContent),
        (
            "post-1001-subscriptions",
            t1001,
            7974,
            json(BAD, BODY_TOO_MANY_SUBSCRIPTIONS),
        ),
        (
            "post-1001-subscriptions-and-long-topic",
            t1001_long,
            10470,
            json(BAD, BODY_TOO_MANY_SUBSCRIPTIONS),
        ),
    ];
    let cases: Vec<Case> = rows
        .into_iter()
        .map(|(name, topics, len, answer)| {
            let b = py_body(Some(&c.id), &topics);
            assert_eq!(b.len(), len, "{name}: body size as captured");
            Case::new(
                name,
                curl_post_json(&h, "/api/realtime", b.as_bytes()),
                answer,
            )
        })
        .collect();
    run_cases(&srv, &cases);
    // The rejected POSTs changed nothing: the 1000 topics are still stored (t999 is delivered).
    srv.publish("t999", r#"{"last":true}"#);
    c.expect_event("t999", r#"{"last":true}"#);
}

/// post-length-counted-in-bytes.txt: both limits count UTF-8 bytes (r1–r4 as captured, with
/// `\u00e9` escapes), plus the same with raw UTF-8 bytes in the body.
#[test]
fn post_lengths_counted_in_utf8_bytes() {
    let srv = start();
    let mut c = srv.open_stream();
    let h = srv.host();
    let id = c.id.clone();
    let e = "é";
    let r1 = py_body(Some(&id), &[e.repeat(1250)]);
    assert_eq!(r1.len(), 7579);
    let r2 = py_body(Some(&id), &[e.repeat(1250) + "a"]);
    assert_eq!(r2.len(), 7580);
    let r3 = py_body(Some(&e.repeat(128)), &[]);
    assert_eq!(r3.len(), 805);
    let r4 = py_body(Some(&(e.repeat(127) + "a")), &[]);
    assert_eq!(r4.len(), 800);
    // Raw UTF-8 in the body.
    let raw = |cid: &str, subs: &[String]| {
        subs_body(cid, &subs.iter().map(|s| s.as_str()).collect::<Vec<_>>())
    };
    let topic2500 = e.repeat(1250);
    let post = |name: &str, body: String, answer| {
        Case::new(
            name,
            curl_post_json(&h, "/api/realtime", body.as_bytes()),
            answer,
        )
    };
    run_cases(
        &srv,
        &[
            post("r1 (2500 bytes)", r1, Answer::NoContent),
            post(
                "r2 (2501 bytes)",
                r2,
                json(BAD, &body_topics_too_long(&[0])),
            ),
            post(
                "r3 (clientId 256 bytes)",
                r3,
                json(BAD, BODY_CLIENT_ID_TOO_LONG),
            ),
            post("r4 (clientId 255 bytes)", r4, json(NF, BODY_MISSING_CLIENT)),
            post(
                "raw 2500-byte topic",
                raw(&id, std::slice::from_ref(&topic2500)),
                Answer::NoContent,
            ),
            post(
                "raw 2501-byte topic",
                raw(&id, &["ok".into(), e.repeat(1250) + "a"]),
                json(BAD, &body_topics_too_long(&[1])),
            ),
            post(
                "raw 256-byte clientId",
                raw(&e.repeat(128), &[]),
                json(BAD, BODY_CLIENT_ID_TOO_LONG),
            ),
            post(
                "raw 255-byte clientId",
                raw(&(e.repeat(127) + "a"), &[]),
                json(NF, BODY_MISSING_CLIENT),
            ),
        ],
    );
    // The 2500-byte topic is stored (the failed POSTs changed nothing) and its name is echoed.
    srv.publish(&topic2500, r#""é""#);
    c.expect_event(&topic2500, r#""é""#);
}

/// post-subscriptions-null, post-subscriptions-missing, post-subscriptions-empty-array: accepted,
/// the set is cleared, the stream stays open.
#[test]
fn post_subscriptions_null_missing_empty_clear_the_set() {
    let srv = start();
    let mut c = srv.open_stream();
    let h = srv.host();
    let id = c.id.clone();
    let clears = [
        (
            "post-subscriptions-null",
            format!(r#"{{"clientId":"{id}","subscriptions":null}}"#),
        ),
        (
            "post-subscriptions-missing",
            format!(r#"{{"clientId":"{id}"}}"#),
        ),
        (
            "post-subscriptions-empty-array",
            format!(r#"{{"clientId":"{id}","subscriptions":[]}}"#),
        ),
    ];
    for (i, (name, body)) in clears.iter().enumerate() {
        srv.subscribe(&c, &["clr-a"]);
        Case::new(
            *name,
            curl_post_json(&h, "/api/realtime", body.as_bytes()),
            Answer::NoContent,
        )
        .check(&srv);
        srv.publish("clr-a", &format!(r#"{{"cleared":{i}}}"#));
        // Prove nothing arrived for clr-a: the next event is the marker.
        srv.subscribe(&c, &["clr-marker"]);
        srv.publish("clr-marker", &format!(r#"{{"i":{i}}}"#));
        c.expect_event("clr-marker", &format!(r#"{{"i":{i}}}"#));
    }
}

/// post-auth-*.txt, as far as a guest-only server goes: `Authorization` on the GET is ignored; an
/// invalid token on the POST counts as guest (204), and guest → guest is always fine.
#[test]
fn post_authorization_header_as_guest() {
    let srv = start();
    let h = srv.host();
    let mut c = srv.connect();
    c.send(
        format!("GET /api/realtime HTTP/1.1\r\nHost: {h}\r\nAuthorization: garbage-token\r\n\r\n")
            .as_bytes(),
    );
    let client = SseClient::from_conn(c);
    let body = subs_body(&client.id, &["example"]);
    run_cases(
        &srv,
        &[
            Case::new(
                "POST with Authorization: garbage",
                curl_request(
                    &h,
                    "POST",
                    "/api/realtime",
                    &[
                        ("Content-Type", "application/json"),
                        ("Authorization", "garbage"),
                    ],
                    Some(body.as_bytes()),
                    &[],
                ),
                Answer::NoContent,
            ),
            Case::new(
                "POST without Authorization",
                curl_post_json(&h, "/api/realtime", body.as_bytes()),
                Answer::NoContent,
            ),
        ],
    );
}

/// post-ip-mismatch.txt: the POST must come from the stream's IP; forwarding headers are ignored;
/// the lookup comes first (unknown id from another IP → 404).
#[test]
fn post_ip_mismatch() {
    let srv = start();
    let mut client = srv.open_stream(); // from 127.0.0.1
    let h = srv.host();
    let body = subs_body(&client.id, &["ipm"]);
    run_cases(
        &srv,
        &[
            Case::new(
                "POST from 127.0.0.2",
                curl_post_json(&h, "/api/realtime", body.as_bytes()),
                json(BAD, BODY_INVALID_CLIENT),
            )
            .from("127.0.0.2"),
            Case::new(
                "POST from 127.0.0.1 with X-Forwarded-For/X-Real-IP",
                curl_request(
                    &h,
                    "POST",
                    "/api/realtime",
                    &[
                        ("X-Forwarded-For", "10.1.2.3"),
                        ("X-Real-IP", "10.1.2.3"),
                        ("Content-Type", "application/json"),
                    ],
                    Some(body.as_bytes()),
                    &[],
                ),
                Answer::NoContent,
            ),
            Case::new(
                "unknown id from 127.0.0.2",
                curl_post_json(
                    &h,
                    "/api/realtime",
                    br#"{"clientId":"nope","subscriptions":[]}"#,
                ),
                json(NF, BODY_MISSING_CLIENT),
            )
            .from("127.0.0.2"),
        ],
    );

    // A stream opened from 127.0.0.2 is subscribed from 127.0.0.2 just fine.
    let mut c2 = srv.connect_from("127.0.0.2");
    c2.send(&stream_request(&h, &[]));
    let mut client2 = SseClient::from_conn(c2);
    Case::new(
        "POST from 127.0.0.2 for a 127.0.0.2 stream",
        curl_post_json(
            &h,
            "/api/realtime",
            subs_body(&client2.id, &["ipm"]).as_bytes(),
        ),
        Answer::NoContent,
    )
    .from("127.0.0.2")
    .check(&srv);

    srv.publish("ipm", "7");
    client.expect_event("ipm", "7");
    client2.expect_event("ipm", "7");
}

/// client-disconnect.txt: once the client closes, its id is unknown (404) shortly after.
#[test]
fn client_disconnect_unregisters() {
    let srv = start();
    let client = srv.open_stream();
    let id = client.id.clone();
    let body = subs_body(&id, &["example"]);
    assert_eq!(body.len(), 83);
    srv.post_realtime_json(body.as_bytes())
        .assert_204("POST while connected");
    drop(client);
    let closed = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let r = wait_for(Duration::from_secs(3), || {
        let r = srv.post_realtime_json(body.as_bytes());
        if r.status() == 204 { None } else { Some(r) }
    })
    .unwrap_or_else(|| panic!("the client is still registered 3 s after its connection closed"));
    r.assert_json(NF, BODY_MISSING_CLIENT, "POST after the disconnect");
    eprintln!(
        "client unregistered within {:?} of the close",
        closed.elapsed()
    );
}

// =============================================================================================
// Subscriptions and delivered messages
// =============================================================================================

/// subscriptions-replace-dupes-empty-auth.txt (auth steps left out): duplicates stored once, ""
/// skipped, a POST replaces the set, [] clears it and the stream stays open, FIFO order.
#[test]
fn subscriptions_replace_dupes_empty_and_fifo() {
    let srv = start();
    let mut c = srv.open_stream();
    // Topic names as in the capture (`news`, `sports`): the chunk sizes are the recorded ones.
    srv.subscribe(&c, &["news", "news", "", "sports"]);
    srv.publish("news", r#"{"step":1}"#);
    let raw = c.conn.read_chunk_raw();
    assert_bytes(
        &raw,
        format!("48\r\nid:{}\nevent:news\ndata:{{\"step\":1}}\n\n\r\n", c.id).as_bytes(),
        "step 1",
    );
    srv.publish("sports", r#"{"step":2}"#);
    let raw = c.conn.read_chunk_raw();
    assert_bytes(
        &raw,
        format!(
            "4a\r\nid:{}\nevent:sports\ndata:{{\"step\":2}}\n\n\r\n",
            c.id
        )
        .as_bytes(),
        "step 2 (one news only)",
    );

    srv.subscribe(&c, &["sports"]);
    srv.publish("news", r#"{"step":3}"#);
    srv.publish("sports", r#"{"step":4}"#);
    c.expect_event("sports", r#"{"step":4}"#);

    srv.subscribe(&c, &[]);
    srv.publish("sports", r#"{"step":5}"#);
    srv.subscribe(&c, &["news"]);
    srv.publish("news", r#"{"step":6}"#);
    c.expect_event("news", r#"{"step":6}"#);

    for i in 1..=3 {
        srv.publish("news", &format!(r#"{{"seq":{i}}}"#));
    }
    for i in 1..=3 {
        let raw = c.conn.read_chunk_raw();
        assert_bytes(
            &raw,
            format!(
                "47\r\nid:{}\nevent:news\ndata:{{\"seq\":{i}}}\n\n\r\n",
                c.id
            )
            .as_bytes(),
            &format!("FIFO seq {i}"),
        );
    }
    c.conn
        .expect_silence(Duration::from_millis(300), "after the FIFO messages");
}

/// notify-hook-curl-client.txt: the event name is the client's own subscription string, including
/// the URL-encoded `?options=` suffix.
#[test]
fn event_name_is_the_full_subscription_string() {
    let srv = start();
    let mut a = srv.open_stream();
    let mut b = srv.open_stream();
    let opt = "alerts?options=%7B%22query%22%3A%7B%22a%22%3A%221%22%7D%7D";
    srv.subscribe(&a, &["alerts"]);
    srv.subscribe(&b, &[opt, "other"]);
    srv.publish("alerts", r#"{"level":"warn","text":"disk 91% full"}"#);
    a.expect_event_unordered_keys("alerts", r#"{"level":"warn","text":"disk 91% full"}"#);
    b.expect_event_unordered_keys(opt, r#"{"level":"warn","text":"disk 91% full"}"#);
    srv.publish("other", r#""hi B""#);
    b.expect_event("other", r#""hi B""#);
    srv.publish("alerts", "2");
    a.expect_event("alerts", "2"); // a did not get "other"
    b.expect_event(opt, "2");
}

/// A client holding both `chat` and `chat?options=…` gets one event per subscription (order
/// free); `chatroom` is a different topic.
#[test]
fn plain_and_options_variant_both_delivered() {
    let srv = start();
    let mut c = srv.open_stream();
    let opt = "chat?options=%7B%22query%22%3A%7B%7D%7D";
    srv.subscribe(&c, &["chat", opt, "chatroom"]);
    srv.publish("chat", r#"{"x":1}"#);
    c.expect_events_any_order(&[("chat", r#"{"x":1}"#), (opt, r#"{"x":1}"#)]);
    srv.publish("chatroom", r#"{"y":2}"#);
    c.expect_event("chatroom", r#"{"y":2}"#);
    c.conn
        .expect_silence(Duration::from_millis(300), "after chatroom");
}

/// Custom data is written as compact JSON (what notify.pb.js's JSON.stringify and ringcast's
/// publish produce), with no escaping at the SSE level.
#[test]
fn custom_data_is_compact_json() {
    let srv = start();
    let mut c = srv.open_stream();
    srv.subscribe(&c, &["vals"]);
    let cases = [
        (
            r#"{ "a" : 1, "b" : [ true, false, null ], "c" : { "d" : "e" } }"#,
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
        ),
        (r#""hi B""#, r#""hi B""#),
        ("42", "42"),
        ("-7", "-7"),
        ("0.5", "0.5"),
        ("null", "null"),
        ("[]", "[]"),
        ("{}", "{}"),
        (r#""line1\nline2""#, r#""line1\nline2""#),
        (r#""tab\tq\"b\\s""#, r#""tab\tq\"b\\s""#),
        (r#""\u00fc""#, "\"ü\""),
        ("\"ünïcødé €\"", "\"ünïcødé €\""),
        (r#""\u0001""#, r#""\u0001""#),
        (r#""</script>&""#, r#""</script>&""#),
        (r#"[1,"two",{"three":3}]"#, r#"[1,"two",{"three":3}]"#),
    ];
    for (input, output) in cases {
        srv.publish("vals", input);
        c.expect_event_unordered_keys("vals", output);
    }
}

// =============================================================================================
// HTTP/1.1 connection handling (also PocketBase's behaviour)
// =============================================================================================

/// Several requests on one keep-alive connection.
#[test]
fn keep_alive_several_requests() {
    let srv = start();
    let mut client = srv.open_stream();
    let h = srv.host();
    let health =
        |name: &str| Case::new(name, get_request(&h, "/api/health"), json(OK, BODY_HEALTH));
    run_keep_alive(
        &mut srv.connect(),
        &[
            health("health #0"),
            health("health #1"),
            health("health #2"),
            Case::new(
                "POST on the keep-alive connection",
                curl_post_json(
                    &h,
                    "/api/realtime",
                    subs_body(&client.id, &["ka"]).as_bytes(),
                ),
                Answer::NoContent,
            ),
            Case::new(
                "error on the keep-alive connection",
                curl_post_json(&h, "/api/realtime", b"{}"),
                json(BAD, BODY_BLANK_CLIENT_ID),
            ),
            health("health after the POSTs"),
        ],
    );
    srv.publish("ka", "1");
    client.expect_event("ka", "1");
}

/// Pipelining: several requests in one write; the answers come back complete and in order.
#[test]
fn pipelined_requests() {
    let srv = start();
    let mut client = srv.open_stream();
    let h = srv.host();
    let subscribe = |name: &str, topic: &str| {
        Case::new(
            name,
            curl_post_json(
                &h,
                "/api/realtime",
                subs_body(&client.id, &[topic]).as_bytes(),
            ),
            Answer::NoContent,
        )
    };
    run_pipelined(
        &mut srv.connect(),
        &[
            subscribe("pipelined #1", "pipe-1"),
            Case::new(
                "pipelined #2",
                curl_post_json(&h, "/api/realtime", br#"{"clientId":"#),
                json(BAD, BODY_GENERIC_400),
            ),
            subscribe("pipelined #3", "pipe-2"),
            Case::new(
                "pipelined #4",
                get_request(&h, "/api/health"),
                json(OK, BODY_HEALTH),
            ),
        ],
    );
    // The last POST won: pipe-1 is gone.
    srv.publish("pipe-1", "1");
    srv.publish("pipe-2", "2");
    client.expect_event("pipe-2", "2");
}

/// A `Transfer-Encoding: chunked` request body; the connection is still usable afterwards.
#[test]
fn chunked_request_body() {
    let srv = start();
    let mut client = srv.open_stream();
    let h = srv.host();
    let body = subs_body(&client.id, &["chunked-in"]);
    let (a, b) = body.as_bytes().split_at(10);
    let mut req = format!(
        "POST /api/realtime HTTP/1.1\r\nHost: {h}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    req.extend(format!("{:x}\r\n", a.len()).as_bytes());
    req.extend(a);
    req.extend(format!("\r\n{:x}\r\n", b.len()).as_bytes());
    req.extend(b);
    req.extend(b"\r\n0\r\n\r\n");
    run_keep_alive(
        &mut srv.connect(),
        &[
            Case::new("chunked POST", req, Answer::NoContent),
            Case::new(
                "health after the chunked POST",
                get_request(&h, "/api/health"),
                json(OK, BODY_HEALTH),
            ),
        ],
    );
    srv.publish("chunked-in", "3");
    client.expect_event("chunked-in", "3");
}

// =============================================================================================
// More HTTP/1.x details (checked on PocketBase 0.40.6 with raw sockets)
// =============================================================================================

/// `Expect: 100-continue`: `HTTP/1.1 100 Continue` first, then the real answer once the body is sent.
#[test]
fn post_expect_100_continue() {
    let srv = start();
    let mut client = srv.open_stream();
    let body = subs_body(&client.id, &["expect-100"]);
    let mut c = srv.connect();
    c.send(
        format!(
            "POST /api/realtime HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            srv.host(),
            body.len()
        )
        .as_bytes(),
    );
    c.expect_bytes(
        b"HTTP/1.1 100 Continue\r\n\r\n",
        "interim answer to Expect: 100-continue",
    );
    c.send(body.as_bytes());
    c.read_response().assert_204("POST after 100 Continue");
    srv.publish("expect-100", "1");
    client.expect_event("expect-100", "1");
}

/// Lower-case request header names (what Node's fetch sends) work; a query string on the POST is
/// ignored; a chunk extension and a trailer in a chunked body are accepted.
#[test]
fn post_request_variants() {
    let srv = start();
    let mut client = srv.open_stream();
    let h = srv.host();
    let body1 = subs_body(&client.id, &["variant-1"]);
    let lower = format!(
        "POST /api/realtime HTTP/1.1\r\nhost: {h}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body1}",
        body1.len()
    );
    let body2 = subs_body(&client.id, &["variant-2"]);
    let body3 = subs_body(&client.id, &["variant-3"]);
    let mut chunked = format!(
        "POST /api/realtime HTTP/1.1\r\nHost: {h}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x};foo=bar\r\n",
        body3.len()
    )
    .into_bytes();
    chunked.extend(body3.as_bytes());
    chunked.extend(b"\r\n0\r\nX-Trailer: 1\r\n\r\n");
    // One after the other: the last one's set is the one that stays.
    for case in [
        Case::new("lower-case header names", lower, Answer::NoContent),
        Case::new(
            "POST /api/realtime?x=1",
            curl_post_json(&h, "/api/realtime?x=1", body2.as_bytes()),
            Answer::NoContent,
        ),
        Case::new("chunk extension and trailer", chunked, Answer::NoContent),
    ] {
        case.check(&srv);
    }
    srv.publish("variant-1", "1");
    srv.publish("variant-2", "2");
    srv.publish("variant-3", "3");
    client.expect_event("variant-3", "3");
}

/// `Connection: close` from the client: the answer carries `Connection: close` (after `Date`,
/// after `Content-Length`) and the server closes the connection. (The stream's head is in
/// `stream_request_variants`.)
#[test]
fn connection_close_request_header() {
    let srv = start();
    let client = srv.open_stream();
    let h = srv.host();
    let body = subs_body(&client.id, &["cc"]);
    run_cases(
        &srv,
        &[
            Case::new(
                "POST with Connection: close",
                format!(
                    "POST /api/realtime HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
                Answer::Exact(
                    format!(
                        "HTTP/1.1 204 No Content\r\n{SECURITY_HEADERS}Date: <DATE>\r\nConnection: close\r\n\r\n"
                    ),
                    Vec::new(),
                ),
            )
            .closes(),
            Case::new(
                "health with Connection: close",
                format!("GET /api/health HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
                Answer::Exact(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{SECURITY_HEADERS}Date: <DATE>\r\nContent-Length: 50\r\nConnection: close\r\n\r\n"
                    ),
                    BODY_HEALTH.as_bytes().to_vec(),
                ),
            )
            .closes(),
        ],
    );
}

/// HTTP/1.0 requests other than the stream: HTTP/1.0 answers, closed afterwards unless the client
/// asked for `Connection: keep-alive` (then the answer says `Connection: keep-alive`).
#[test]
fn http10_requests() {
    let srv = start();
    let client = srv.open_stream();
    let body = subs_body(&client.id, &["h10"]);
    let health10 = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n{SECURITY_HEADERS}Date: <DATE>\r\nContent-Length: 50\r\n"
    );
    run_cases(
        &srv,
        &[
            Case::new(
                "HTTP/1.0 POST",
                format!(
                    "POST /api/realtime HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    srv.host(),
                    body.len()
                ),
                Answer::Exact(
                    format!("HTTP/1.0 204 No Content\r\n{SECURITY_HEADERS}Date: <DATE>\r\n\r\n"),
                    Vec::new(),
                ),
            )
            .closes(),
            Case::new(
                "HTTP/1.0 health",
                &b"GET /api/health HTTP/1.0\r\n\r\n"[..],
                Answer::Exact(format!("{health10}\r\n"), BODY_HEALTH.as_bytes().to_vec()),
            )
            .closes(),
        ],
    );
    let keep_alive = |i: usize| {
        Case::new(
            format!("HTTP/1.0 keep-alive health #{i}"),
            &b"GET /api/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"[..],
            Answer::Exact(
                format!("{health10}Connection: keep-alive\r\n\r\n"),
                BODY_HEALTH.as_bytes().to_vec(),
            ),
        )
    };
    run_keep_alive(&mut srv.connect(), &[keep_alive(0), keep_alive(1)]);
}
