//! Conformance replays: the cases recorded from PocketBase 0.40.6 in
//! `shared/conformance/pocketbase-0.40.6/*.txt`, sent with the same request bytes, checked byte for
//! byte (status line, header names/values/order with `Date` normalised, bodies, chunk framing).
//!
//! Run against ringcast: `cargo test --test conformance`.
//! Run against the real PocketBase (to prove the expectations):
//! `RINGCAST_TEST_ADDR=127.0.0.1:28090 RINGCAST_TEST_PUBLISH_PATH=/api/notify cargo test --test conformance`
//! with PocketBase serving a public copy of `shared/research/pb_hooks/notify.pb.js`.
//!
//! Every test uses its own topic names, so the tests can share one external server.

use ringcast_testkit::{bytes::*, http::*, pocketbase::*, server::*, sse::*, wait::*};
use std::time::{Duration, Instant};

fn start() -> Server {
    Server::start(&[])
}

/// The GET the raw-socket captures sent.
fn raw_get(host: &str) -> Vec<u8> {
    format!("GET /api/realtime HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n")
        .into_bytes()
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

/// get-realtime-curl-v.txt: curl's request; same head, PB_CONNECT body of 123 bytes.
#[test]
fn get_stream_curl_request() {
    let srv = start();
    let mut c = srv.connect();
    c.send(&curl_request(
        &srv.host(),
        "GET",
        "/api/realtime",
        &[],
        None,
        &[],
    ));
    let head = c.read_head();
    assert_head(&head, &sse_head(false), "stream head");
    let payload = c.read_chunk_payload();
    assert_eq!(payload.len(), 123);
    let id = pb_connect_id(&payload);
    assert_bytes(&payload, &pb_connect_event(&id), "PB_CONNECT");
}

/// `Accept-Encoding: gzip` does not compress the stream (spec §1.1).
#[test]
fn get_stream_accept_encoding_gzip_ignored() {
    let srv = start();
    let mut c = srv.connect();
    c.send(&curl_request(
        &srv.host(),
        "GET",
        "/api/realtime",
        &[("Accept-Encoding", "gzip, deflate, br")],
        None,
        &[],
    ));
    SseClient::from_conn(c);
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

/// cors-get-and-post-with-origin.txt (GET): `Access-Control-Allow-Origin: *` first.
#[test]
fn cors_get_with_origin() {
    let srv = start();
    let mut c = srv.connect();
    c.send(&curl_request(
        &srv.host(),
        "GET",
        "/api/realtime",
        &[("Origin", "http://example.com")],
        None,
        &[],
    ));
    let head = c.read_head();
    assert_head(&head, &sse_head(true), "stream head with Origin");
    let raw = c.read_chunk_raw();
    let id = pb_connect_id(&raw);
    assert_bytes(&raw, &chunk(&pb_connect_event(&id)), "PB_CONNECT");
}

/// cors-get-and-post-with-origin.txt (POST success and error).
#[test]
fn cors_post_with_origin() {
    let srv = start();
    let client = srv.open_stream();
    let h = srv.host();
    let origin = [
        ("Origin", "http://example.com"),
        ("Content-Type", "application/json"),
    ];
    let body = subs_body(&client.id, &["example"]);
    let r = srv.request(&curl_request(
        &h,
        "POST",
        "/api/realtime",
        &origin,
        Some(body.as_bytes()),
        &[],
    ));
    r.assert_exact(&no_content_head(true), b"", "POST with Origin (success)");
    let r = srv.request(&curl_request(
        &h,
        "POST",
        "/api/realtime",
        &origin,
        Some(b"{}"),
        &[],
    ));
    r.assert_exact(
        &json_head("HTTP/1.1 400 Bad Request", 158, true),
        BODY_BLANK_CLIENT_ID.as_bytes(),
        "POST with Origin (error)",
    );
}

/// options-preflight.txt: plain OPTIONS.
#[test]
fn options_without_origin() {
    let srv = start();
    let r = srv.request(&curl_request(
        &srv.host(),
        "OPTIONS",
        "/api/realtime",
        &[],
        None,
        &[],
    ));
    r.assert_exact(
        "HTTP/1.1 204 No Content\r\nVary: Origin\r\nDate: <DATE>\r\n\r\n",
        b"",
        "OPTIONS",
    );
}

/// options-preflight.txt: preflights for POST and GET; the requested headers are echoed verbatim.
#[test]
fn options_preflight() {
    let srv = start();
    for (method, hdrs) in [
        ("POST", "content-type,authorization"),
        ("GET", "last-event-id,cache-control"),
    ] {
        let r = srv.request(&curl_request(
            &srv.host(),
            "OPTIONS",
            "/api/realtime",
            &[
                ("Origin", "http://example.com"),
                ("Access-Control-Request-Method", method),
                ("Access-Control-Request-Headers", hdrs),
            ],
            None,
            &[],
        ));
        let expected = format!(
            "HTTP/1.1 204 No Content\r\n\
Access-Control-Allow-Headers: {hdrs}\r\n\
Access-Control-Allow-Methods: GET,HEAD,PUT,PATCH,POST,DELETE\r\n\
Access-Control-Allow-Origin: *\r\n\
Vary: Origin\r\n\
Vary: Access-Control-Request-Method\r\n\
Vary: Access-Control-Request-Headers\r\n\
Date: <DATE>\r\n\r\n"
        );
        r.assert_exact(&expected, b"", &format!("preflight for {method}"));
    }
}

/// get-realtime-http10.txt: HTTP/1.0 status line, no Transfer-Encoding, events written raw.
#[test]
fn get_http10_raw_events() {
    let srv = start();
    let mut c = srv.connect();
    c.send(format!("GET /api/realtime HTTP/1.0\r\nHost: {}\r\n\r\n", srv.host()).as_bytes());
    let head = c.read_head();
    assert_head(&head, &sse_head_no_te("HTTP/1.0"), "HTTP/1.0 stream head");
    let ev = c.read_until(b"\n\n");
    let id = pb_connect_id(&ev);
    assert_bytes(
        &ev,
        &pb_connect_event(&id),
        "raw PB_CONNECT (no chunk framing)",
    );
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

/// get-realtime-last-event-id.txt: `Last-Event-ID` is ignored; a brand-new id is issued.
#[test]
fn last_event_id_ignored() {
    let srv = start();
    let old = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let mut c = srv.connect();
    c.send(
        format!(
            "GET /api/realtime HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nLast-Event-ID: {old}\r\n\r\n",
            srv.host()
        )
        .as_bytes(),
    );
    let client = SseClient::from_conn(c);
    assert_ne!(
        client.id, old,
        "Last-Event-ID must not be reused as the client id"
    );
}

/// get-trailing-slash-and-query.txt: `/api/realtime/` is not the route; a query string is ignored.
#[test]
fn trailing_slash_and_query_string() {
    let srv = start();
    let r = srv.request(&curl_request(
        &srv.host(),
        "GET",
        "/api/realtime/",
        &[],
        None,
        &[],
    ));
    r.assert_json(
        "HTTP/1.1 404 Not Found",
        BODY_FILE_NOT_FOUND,
        "GET /api/realtime/",
    );

    let mut c = srv.connect();
    c.send(&curl_request(
        &srv.host(),
        "GET",
        "/api/realtime?foo=bar",
        &[],
        None,
        &[],
    ));
    SseClient::from_conn(c);
}

/// wrong-method.txt: PUT/PATCH/DELETE → 404 (not 405).
#[test]
fn wrong_methods_404() {
    let srv = start();
    for m in ["PUT", "PATCH", "DELETE"] {
        let r = srv.request(&curl_request(
            &srv.host(),
            m,
            "/api/realtime",
            &[("Content-Type", "application/json")],
            Some(br#"{"clientId":"x","subscriptions":[]}"#),
            &[],
        ));
        r.assert_json(
            "HTTP/1.1 404 Not Found",
            BODY_NOT_FOUND,
            &format!("{m} /api/realtime"),
        );
    }
}

/// post-trailing-slash.txt
#[test]
fn post_trailing_slash_404() {
    let srv = start();
    let r = srv.request(&curl_post_json(&srv.host(), "/api/realtime/", b"{}"));
    r.assert_json(
        "HTTP/1.1 404 Not Found",
        BODY_NOT_FOUND,
        "POST /api/realtime/",
    );
}

/// GET /api/health (hooks-connect-subscribe-message.txt §3).
#[test]
fn health() {
    let srv = start();
    let r =
        srv.request(format!("GET /api/health HTTP/1.1\r\nHost: {}\r\n\r\n", srv.host()).as_bytes());
    r.assert_json("HTTP/1.1 200 OK", BODY_HEALTH, "GET /api/health");
}

// =============================================================================================
// POST /api/realtime — decoding and validation (spec §2.4, post-*.txt)
// =============================================================================================

const S204: &str = "204";

/// Run one POST case with a live stream open (so `ID` in the body is a registered client) and
/// check the exact answer: "204" or (status line, body).
#[track_caller]
fn post_case(srv: &Server, name: &str, request: &[u8], status_line: &str, body: &str) {
    let r = srv.request(request);
    if status_line == S204 {
        r.assert_204(name);
    } else {
        r.assert_json(status_line, body, name);
    }
}

const BAD: &str = "HTTP/1.1 400 Bad Request";
const NF: &str = "HTTP/1.1 404 Not Found";

#[test]
fn post_success() {
    let srv = start();
    let c = srv.open_stream();
    let body = format!(
        r#"{{"clientId":"{}","subscriptions":["example","posts/*"]}}"#,
        c.id
    );
    assert_eq!(body.len(), 93);
    post_case(
        &srv,
        "post-success",
        &curl_post_json(&srv.host(), "/api/realtime", body.as_bytes()),
        S204,
        "",
    );
}

/// post-no-body, post-empty-body-json-content-type, post-empty-object, post-missing-clientid,
/// post-empty-clientid → clientId "Cannot be blank.".
#[test]
fn post_blank_client_id_cases() {
    let srv = start();
    let _c = srv.open_stream();
    let h = srv.host();
    // curl -X POST (no body, no Content-Length, no Content-Type)
    post_case(
        &srv,
        "post-no-body",
        &curl_request(&h, "POST", "/api/realtime", &[], None, &[]),
        BAD,
        BODY_BLANK_CLIENT_ID,
    );
    // the same with an explicit Content-Length: 0
    post_case(
        &srv,
        "post-no-body (Content-Length: 0)",
        &curl_request(
            &h,
            "POST",
            "/api/realtime",
            &[("Content-Length", "0")],
            None,
            &[],
        ),
        BAD,
        BODY_BLANK_CLIENT_ID,
    );
    post_case(
        &srv,
        "post-empty-body-json-content-type",
        &curl_request(
            &h,
            "POST",
            "/api/realtime",
            &[("Content-Type", "application/json")],
            None,
            &[],
        ),
        BAD,
        BODY_BLANK_CLIENT_ID,
    );
    post_case(
        &srv,
        "post-empty-object",
        &curl_post_json(&h, "/api/realtime", b"{}"),
        BAD,
        BODY_BLANK_CLIENT_ID,
    );
    post_case(
        &srv,
        "post-missing-clientid",
        &curl_post_json(&h, "/api/realtime", br#"{"subscriptions":["example"]}"#),
        BAD,
        BODY_BLANK_CLIENT_ID,
    );
    post_case(
        &srv,
        "post-empty-clientid",
        &curl_post_json(
            &h,
            "/api/realtime",
            br#"{"clientId":"","subscriptions":["example"]}"#,
        ),
        BAD,
        BODY_BLANK_CLIENT_ID,
    );
}

/// post-invalid-json, post-invalid-json-not-json, post-json-array-body, post-clientid-not-string,
/// post-subscriptions-not-array, post-subscriptions-numbers → 400 with empty data.
#[test]
fn post_undecodable_json_cases() {
    let srv = start();
    let c = srv.open_stream();
    let h = srv.host();
    let id = &c.id;
    let cases: Vec<(&str, String)> = vec![
        ("post-invalid-json", r#"{"clientId":"#.to_string()),
        ("post-invalid-json-not-json", "not json".to_string()),
        ("post-json-array-body", format!(r#"["{id}"]"#)),
        (
            "post-clientid-not-string",
            r#"{"clientId":123,"subscriptions":[]}"#.to_string(),
        ),
        (
            "post-subscriptions-not-array",
            format!(r#"{{"clientId":"{id}","subscriptions":"example"}}"#),
        ),
        (
            "post-subscriptions-numbers",
            format!(r#"{{"clientId":"{id}","subscriptions":[1,2]}}"#),
        ),
    ];
    for (name, body) in cases {
        post_case(
            &srv,
            name,
            &curl_post_json(&h, "/api/realtime", body.as_bytes()),
            BAD,
            BODY_GENERIC_400,
        );
    }
}

/// Invalid UTF-8 inside the JSON strings → 400 with empty data (checked on PocketBase 0.40.6).
#[test]
fn post_invalid_utf8_json() {
    let srv = start();
    let c = srv.open_stream();
    let h = srv.host();
    let mut b1 = format!(r#"{{"clientId":"{}"#, c.id).into_bytes();
    b1.extend_from_slice(b"\xff\",\"subscriptions\":[\"a\"]}");
    post_case(
        &srv,
        "invalid UTF-8 in clientId",
        &curl_post_json(&h, "/api/realtime", &b1),
        BAD,
        BODY_GENERIC_400,
    );
    let mut b2 = format!(r#"{{"clientId":"{}","subscriptions":["a"#, c.id).into_bytes();
    b2.extend_from_slice(b"\xc3\x28\"]}");
    post_case(
        &srv,
        "invalid UTF-8 in a topic",
        &curl_post_json(&h, "/api/realtime", &b2),
        BAD,
        BODY_GENERIC_400,
    );
}

/// post-content-type-text-plain, post-no-content-type → 400 empty data;
/// post-content-type-json-charset → 204.
#[test]
fn post_content_types() {
    let srv = start();
    let c = srv.open_stream();
    let h = srv.host();
    let body = subs_body(&c.id, &["example"]);
    assert_eq!(body.len(), 83);
    post_case(
        &srv,
        "post-content-type-text-plain",
        &curl_request(
            &h,
            "POST",
            "/api/realtime",
            &[("Content-Type", "text/plain")],
            Some(body.as_bytes()),
            &[],
        ),
        BAD,
        BODY_GENERIC_400,
    );
    post_case(
        &srv,
        "post-no-content-type",
        &curl_request(&h, "POST", "/api/realtime", &[], Some(body.as_bytes()), &[]),
        BAD,
        BODY_GENERIC_400,
    );
    post_case(
        &srv,
        "post-content-type-json-charset",
        &curl_request(
            &h,
            "POST",
            "/api/realtime",
            &[("Content-Type", "application/json; charset=utf-8")],
            Some(body.as_bytes()),
            &[],
        ),
        S204,
        "",
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
    post_case(
        &srv,
        "post-form-urlencoded",
        &curl_request(
            &h,
            "POST",
            "/api/realtime",
            &[],
            Some(form.as_bytes()),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        ),
        S204,
        "",
    );
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
    post_case(
        &srv,
        "post-multipart",
        &curl_request(
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
        S204,
        "",
    );
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
    let xml = format!(
        "<x><ClientId>{}</ClientId><Subscriptions>xml-a</Subscriptions><Subscriptions>posts/*</Subscriptions></x>",
        c.id
    );
    post_case(
        &srv,
        "post-xml-body",
        &curl_request(
            &h,
            "POST",
            "/api/realtime",
            &[("Content-Type", "application/xml")],
            Some(xml.as_bytes()),
            &[],
        ),
        S204,
        "",
    );
    srv.publish("xml-a", "1");
    c.expect_event("xml-a", "1");
    let lower = format!("<x><clientId>{}</clientId></x>", c.id);
    assert_eq!(lower.len(), 68);
    post_case(
        &srv,
        "post-xml-body (lower-case element)",
        &curl_request(
            &h,
            "POST",
            "/api/realtime",
            &[("Content-Type", "application/xml")],
            Some(lower.as_bytes()),
            &[],
        ),
        BAD,
        BODY_BLANK_CLIENT_ID,
    );
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
        post_case(
            &srv,
            name,
            &curl_post_json(&h, "/api/realtime", body.as_bytes()),
            S204,
            "",
        );
        srv.publish(topic, r#"{"ok":true}"#);
        c.expect_event(topic, r#"{"ok":true}"#);
    }
}

/// post-unknown-clientid, post-clientid-255-unknown (→ 404), post-clientid-too-long-256 (→ 400).
#[test]
fn post_client_id_lengths() {
    let srv = start();
    let _c = srv.open_stream();
    let h = srv.host();
    post_case(
        &srv,
        "post-unknown-clientid",
        &curl_post_json(&h, "/api/realtime", br#"{"clientId":"0000000000000000000000000000000000000000","subscriptions":["example"]}"#),
        NF,
        BODY_MISSING_CLIENT,
    );
    let a255 = format!(r#"{{"clientId":"{}","subscriptions":[]}}"#, "a".repeat(255));
    assert_eq!(a255.len(), 289);
    post_case(
        &srv,
        "post-clientid-255-unknown",
        &curl_post_json(&h, "/api/realtime", a255.as_bytes()),
        NF,
        BODY_MISSING_CLIENT,
    );
    let a256 = format!(r#"{{"clientId":"{}","subscriptions":[]}}"#, "a".repeat(256));
    post_case(
        &srv,
        "post-clientid-too-long-256",
        &curl_post_json(&h, "/api/realtime", a256.as_bytes()),
        BAD,
        BODY_CLIENT_ID_TOO_LONG,
    );
}

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

    let b = py_body(Some(&c.id), &t1000);
    assert_eq!(b.len(), 7965);
    post_case(
        &srv,
        "post-1000-subscriptions-ok",
        &curl_post_json(&h, "/api/realtime", b.as_bytes()),
        S204,
        "",
    );
    let b = py_body(Some(&c.id), &t1001);
    assert_eq!(b.len(), 7974);
    post_case(
        &srv,
        "post-1001-subscriptions",
        &curl_post_json(&h, "/api/realtime", b.as_bytes()),
        BAD,
        BODY_TOO_MANY_SUBSCRIPTIONS,
    );
    let b = py_body(Some(&c.id), &t1001_long);
    assert_eq!(b.len(), 10470);
    post_case(
        &srv,
        "post-1001-subscriptions-and-long-topic",
        &curl_post_json(&h, "/api/realtime", b.as_bytes()),
        BAD,
        BODY_TOO_MANY_SUBSCRIPTIONS,
    );
    // The rejected POSTs changed nothing: the 1000 topics are still stored (t999 is delivered).
    srv.publish("t999", r#"{"last":true}"#);
    c.expect_event("t999", r#"{"last":true}"#);
}

/// post-topic-2500-chars-ok, post-topic-2501-chars, post-topics-several-too-long,
/// post-missing-clientid-and-long-topic.
#[test]
fn post_topic_length_limit() {
    let srv = start();
    let c = srv.open_stream();
    let h = srv.host();
    let id = c.id.as_str();
    let b = py_body(Some(id), &["x".repeat(2500)]);
    assert_eq!(b.len(), 2579);
    post_case(
        &srv,
        "post-topic-2500-chars-ok",
        &curl_post_json(&h, "/api/realtime", b.as_bytes()),
        S204,
        "",
    );
    let b = py_body(Some(id), &["ok".to_string(), "x".repeat(2501)]);
    assert_eq!(b.len(), 2586);
    post_case(
        &srv,
        "post-topic-2501-chars",
        &curl_post_json(&h, "/api/realtime", b.as_bytes()),
        BAD,
        &body_topics_too_long(&[1]),
    );
    let b = py_body(
        Some(id),
        &[
            "x".repeat(2501),
            "y".repeat(2501),
            "ok".to_string(),
            "z".repeat(2501),
        ],
    );
    assert_eq!(b.len(), 7596);
    let expected = body_topics_too_long(&[0, 1, 3]);
    assert_eq!(expected.len(), 471);
    post_case(
        &srv,
        "post-topics-several-too-long",
        &curl_post_json(&h, "/api/realtime", b.as_bytes()),
        BAD,
        &expected,
    );
    let b = py_body(None, &["x".repeat(2501)]);
    assert_eq!(b.len(), 2524);
    let expected = format!(
        r#"{{"data":{{"clientId":{{"code":"validation_required","message":"Cannot be blank."}},"subscriptions":{{"0":{TOPIC_TOO_LONG_ERR}}}}},"message":"Something went wrong while processing your request.","status":400}}"#
    );
    assert_eq!(expected.len(), 298);
    post_case(
        &srv,
        "post-missing-clientid-and-long-topic",
        &curl_post_json(&h, "/api/realtime", b.as_bytes()),
        BAD,
        &expected,
    );
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
    post_case(
        &srv,
        "r1 (2500 bytes)",
        &curl_post_json(&h, "/api/realtime", r1.as_bytes()),
        S204,
        "",
    );
    let r2 = py_body(Some(&id), &[e.repeat(1250) + "a"]);
    assert_eq!(r2.len(), 7580);
    post_case(
        &srv,
        "r2 (2501 bytes)",
        &curl_post_json(&h, "/api/realtime", r2.as_bytes()),
        BAD,
        &body_topics_too_long(&[0]),
    );
    let r3 = py_body(Some(&e.repeat(128)), &[]);
    assert_eq!(r3.len(), 805);
    post_case(
        &srv,
        "r3 (clientId 256 bytes)",
        &curl_post_json(&h, "/api/realtime", r3.as_bytes()),
        BAD,
        BODY_CLIENT_ID_TOO_LONG,
    );
    let r4 = py_body(Some(&(e.repeat(127) + "a")), &[]);
    assert_eq!(r4.len(), 800);
    post_case(
        &srv,
        "r4 (clientId 255 bytes)",
        &curl_post_json(&h, "/api/realtime", r4.as_bytes()),
        NF,
        BODY_MISSING_CLIENT,
    );

    // Raw UTF-8 in the body.
    let raw = |cid: &str, subs: &[String]| {
        subs_body(cid, &subs.iter().map(|s| s.as_str()).collect::<Vec<_>>())
    };
    let topic2500 = e.repeat(1250);
    post_case(
        &srv,
        "raw 2500-byte topic",
        &curl_post_json(
            &h,
            "/api/realtime",
            raw(&id, std::slice::from_ref(&topic2500)).as_bytes(),
        ),
        S204,
        "",
    );
    post_case(
        &srv,
        "raw 2501-byte topic",
        &curl_post_json(
            &h,
            "/api/realtime",
            raw(&id, &["ok".into(), e.repeat(1250) + "a"]).as_bytes(),
        ),
        BAD,
        &body_topics_too_long(&[1]),
    );
    post_case(
        &srv,
        "raw 256-byte clientId",
        &curl_post_json(&h, "/api/realtime", raw(&e.repeat(128), &[]).as_bytes()),
        BAD,
        BODY_CLIENT_ID_TOO_LONG,
    );
    post_case(
        &srv,
        "raw 255-byte clientId",
        &curl_post_json(
            &h,
            "/api/realtime",
            raw(&(e.repeat(127) + "a"), &[]).as_bytes(),
        ),
        NF,
        BODY_MISSING_CLIENT,
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
        post_case(
            &srv,
            name,
            &curl_post_json(&h, "/api/realtime", body.as_bytes()),
            S204,
            "",
        );
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
    let mut c = srv.connect();
    c.send(
        format!(
            "GET /api/realtime HTTP/1.1\r\nHost: {}\r\nAuthorization: garbage-token\r\n\r\n",
            srv.host()
        )
        .as_bytes(),
    );
    let client = SseClient::from_conn(c);
    let body = subs_body(&client.id, &["example"]);
    let h = srv.host();
    post_case(
        &srv,
        "POST with Authorization: garbage",
        &curl_request(
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
        S204,
        "",
    );
    post_case(
        &srv,
        "POST without Authorization",
        &curl_post_json(&h, "/api/realtime", body.as_bytes()),
        S204,
        "",
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
    let mut other = srv.connect_from("127.0.0.2");
    other.send(&curl_post_json(&h, "/api/realtime", body.as_bytes()));
    other
        .read_response()
        .assert_json(BAD, BODY_INVALID_CLIENT, "POST from 127.0.0.2");

    let spoof = curl_request(
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
    );
    srv.request(&spoof)
        .assert_204("POST from 127.0.0.1 with X-Forwarded-For/X-Real-IP");

    let mut other = srv.connect_from("127.0.0.2");
    other.send(&curl_post_json(
        &h,
        "/api/realtime",
        br#"{"clientId":"nope","subscriptions":[]}"#,
    ));
    other
        .read_response()
        .assert_json(NF, BODY_MISSING_CLIENT, "unknown id from 127.0.0.2");

    // A stream opened from 127.0.0.2 is subscribed from 127.0.0.2 just fine.
    let mut c2 = srv.connect_from("127.0.0.2");
    c2.send(&raw_get(&h));
    let mut client2 = SseClient::from_conn(c2);
    let mut p = srv.connect_from("127.0.0.2");
    p.send(&curl_post_json(
        &h,
        "/api/realtime",
        subs_body(&client2.id, &["ipm"]).as_bytes(),
    ));
    p.read_response()
        .assert_204("POST from 127.0.0.2 for a 127.0.0.2 stream");

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
    let mut c = srv.connect();
    let health = format!("GET /api/health HTTP/1.1\r\nHost: {h}\r\n\r\n");
    for i in 0..3 {
        c.send(health.as_bytes());
        c.read_response()
            .assert_json("HTTP/1.1 200 OK", BODY_HEALTH, &format!("health #{i}"));
    }
    c.send(&curl_post_json(
        &h,
        "/api/realtime",
        subs_body(&client.id, &["ka"]).as_bytes(),
    ));
    c.read_response()
        .assert_204("POST on the keep-alive connection");
    c.send(&curl_post_json(&h, "/api/realtime", b"{}"));
    c.read_response().assert_json(
        BAD,
        BODY_BLANK_CLIENT_ID,
        "error on the keep-alive connection",
    );
    c.send(health.as_bytes());
    c.read_response()
        .assert_json("HTTP/1.1 200 OK", BODY_HEALTH, "health after the POSTs");
    srv.publish("ka", "1");
    client.expect_event("ka", "1");
}

/// Pipelining: several requests in one write; the answers come back complete and in order.
#[test]
fn pipelined_requests() {
    let srv = start();
    let mut client = srv.open_stream();
    let h = srv.host();
    let mut batch = Vec::new();
    batch.extend(curl_post_json(
        &h,
        "/api/realtime",
        subs_body(&client.id, &["pipe-1"]).as_bytes(),
    ));
    batch.extend(curl_post_json(&h, "/api/realtime", br#"{"clientId":"#));
    batch.extend(curl_post_json(
        &h,
        "/api/realtime",
        subs_body(&client.id, &["pipe-2"]).as_bytes(),
    ));
    batch.extend(format!("GET /api/health HTTP/1.1\r\nHost: {h}\r\n\r\n").into_bytes());
    let mut c = srv.connect();
    c.send(&batch);
    c.read_response().assert_204("pipelined #1");
    c.read_response()
        .assert_json(BAD, BODY_GENERIC_400, "pipelined #2");
    c.read_response().assert_204("pipelined #3");
    c.read_response()
        .assert_json("HTTP/1.1 200 OK", BODY_HEALTH, "pipelined #4");
    // The last POST won: pipe-1 is gone.
    srv.publish("pipe-1", "1");
    srv.publish("pipe-2", "2");
    client.expect_event("pipe-2", "2");
}

/// A `Transfer-Encoding: chunked` request body.
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
    let mut c = srv.connect();
    c.send(&req);
    c.read_response().assert_204("chunked POST");
    // The connection is still usable afterwards.
    c.send(format!("GET /api/health HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes());
    c.read_response().assert_json(
        "HTTP/1.1 200 OK",
        BODY_HEALTH,
        "health after the chunked POST",
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
    let body = subs_body(&client.id, &["variant-1"]);
    let lower = format!(
        "POST /api/realtime HTTP/1.1\r\nhost: {h}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    srv.request(lower.as_bytes())
        .assert_204("lower-case header names");
    let body = subs_body(&client.id, &["variant-2"]);
    srv.request(&curl_post_json(&h, "/api/realtime?x=1", body.as_bytes()))
        .assert_204("POST /api/realtime?x=1");
    let body = subs_body(&client.id, &["variant-3"]);
    let mut req = format!(
        "POST /api/realtime HTTP/1.1\r\nHost: {h}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x};foo=bar\r\n",
        body.len()
    )
    .into_bytes();
    req.extend(body.as_bytes());
    req.extend(b"\r\n0\r\nX-Trailer: 1\r\n\r\n");
    srv.request(&req).assert_204("chunk extension and trailer");
    srv.publish("variant-1", "1");
    srv.publish("variant-2", "2");
    srv.publish("variant-3", "3");
    client.expect_event("variant-3", "3");
}

/// PocketBase matches the body's media type case-sensitively: `Application/JSON` is not JSON.
#[test]
fn content_type_media_type_is_case_sensitive() {
    let srv = start();
    let c = srv.open_stream();
    let body = subs_body(&c.id, &["x"]);
    let r = srv.request(&curl_request(
        &srv.host(),
        "POST",
        "/api/realtime",
        &[("Content-Type", "Application/JSON")],
        Some(body.as_bytes()),
        &[],
    ));
    r.assert_json(BAD, BODY_GENERIC_400, "Content-Type: Application/JSON");
}

/// `Connection: close` from the client: the answer carries `Connection: close` (after `Date`,
/// after `Content-Length`, before `Transfer-Encoding`) and the server closes the connection.
#[test]
fn connection_close_request_header() {
    let srv = start();
    let client = srv.open_stream();
    let h = srv.host();
    let body = subs_body(&client.id, &["cc"]);
    let mut c = srv.connect();
    c.send(
        format!(
            "POST /api/realtime HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = c.read_response();
    r.assert_exact(
        &format!(
            "HTTP/1.1 204 No Content\r\n{SECURITY_HEADERS}Date: <DATE>\r\nConnection: close\r\n\r\n"
        ),
        b"",
        "POST with Connection: close",
    );
    let (rest, end) = c.read_to_end_within(Duration::from_secs(5));
    assert!(
        rest.is_empty() && end != End::Timeout,
        "not closed after Connection: close ({end:?}, {})",
        show(&rest)
    );

    let mut c = srv.connect();
    c.send(
        format!("GET /api/health HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let r = c.read_response();
    r.assert_exact(
        &format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{SECURITY_HEADERS}Date: <DATE>\r\nContent-Length: 50\r\nConnection: close\r\n\r\n"
        ),
        BODY_HEALTH.as_bytes(),
        "health with Connection: close",
    );
    let (rest, end) = c.read_to_end_within(Duration::from_secs(5));
    assert!(
        rest.is_empty() && end != End::Timeout,
        "not closed after Connection: close ({end:?}, {})",
        show(&rest)
    );

    let mut c = srv.connect();
    c.send(
        format!("GET /api/realtime HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let head = c.read_head();
    let expected = sse_head(false).replace(
        "Date: <DATE>\r\nTransfer-Encoding: chunked\r\n",
        "Date: <DATE>\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n",
    );
    assert_head(&head, &expected, "stream with Connection: close");
    let raw = c.read_chunk_raw();
    let id = pb_connect_id(&raw);
    assert_bytes(&raw, &chunk(&pb_connect_event(&id)), "PB_CONNECT");
    c.expect_silence(
        Duration::from_millis(300),
        "stream with Connection: close stays open",
    );
}

/// HTTP/1.0 requests other than the stream: HTTP/1.0 answers, closed afterwards unless the client
/// asked for `Connection: keep-alive` (then the answer says `Connection: keep-alive`).
#[test]
fn http10_requests() {
    let srv = start();
    let client = srv.open_stream();
    let body = subs_body(&client.id, &["h10"]);
    let mut c = srv.connect();
    c.send(
        format!(
            "POST /api/realtime HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            srv.host(),
            body.len()
        )
        .as_bytes(),
    );
    c.read_response().assert_exact(
        &format!("HTTP/1.0 204 No Content\r\n{SECURITY_HEADERS}Date: <DATE>\r\n\r\n"),
        b"",
        "HTTP/1.0 POST",
    );
    let (rest, end) = c.read_to_end_within(Duration::from_secs(5));
    assert!(
        rest.is_empty() && end != End::Timeout,
        "HTTP/1.0 POST: not closed ({end:?}, {})",
        show(&rest)
    );

    let health10 = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n{SECURITY_HEADERS}Date: <DATE>\r\nContent-Length: 50\r\n"
    );
    let mut c = srv.connect();
    c.send(b"GET /api/health HTTP/1.0\r\n\r\n");
    c.read_response().assert_exact(
        &format!("{health10}\r\n"),
        BODY_HEALTH.as_bytes(),
        "HTTP/1.0 health",
    );
    let (rest, end) = c.read_to_end_within(Duration::from_secs(5));
    assert!(
        rest.is_empty() && end != End::Timeout,
        "HTTP/1.0 health: not closed ({end:?}, {})",
        show(&rest)
    );

    let mut c = srv.connect();
    for i in 0..2 {
        c.send(b"GET /api/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        c.read_response().assert_exact(
            &format!("{health10}Connection: keep-alive\r\n\r\n"),
            BODY_HEALTH.as_bytes(),
            &format!("HTTP/1.0 keep-alive health #{i}"),
        );
    }
}

/// HEAD /api/health: the GET's head, no body. Other methods on /api/health and a lower-case
/// method name → 404.
#[test]
fn health_head_and_other_methods() {
    let srv = start();
    let h = srv.host();
    let mut c = srv.connect();
    c.send(format!("HEAD /api/health HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes());
    let r = c.read_response_to(true);
    r.assert_exact(
        &json_head("HTTP/1.1 200 OK", 50, false),
        b"",
        "HEAD /api/health",
    );
    c.send(format!("GET /api/health HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes());
    c.read_response().assert_json(
        "HTTP/1.1 200 OK",
        BODY_HEALTH,
        "GET after HEAD on the same connection",
    );
    let r = srv.request(
        format!("POST /api/health HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    );
    r.assert_json(NF, BODY_NOT_FOUND, "POST /api/health");
    let r = srv.request(format!("get /api/health HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes());
    r.assert_json(NF, BODY_NOT_FOUND, "lower-case method");
}
