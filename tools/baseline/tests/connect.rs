//! `GET /api/realtime`: head, PB_CONNECT framing, client ids, disconnects.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ringcast_testkit::{
    baseline::{post_json, request},
    http::Conn,
    pocketbase::{BODY_MISSING_CLIENT, BODY_NOT_FOUND},
    server::Server,
    sse::SseClient,
};

#[test]
fn pb_connect_is_the_first_event_framed_like_pocketbase() {
    let server = Server::baseline(&[]);
    let client = SseClient::connect(server.addr);

    assert_eq!(client.head.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(
        client.head.header("content-type"),
        Some("text/event-stream")
    );
    assert_eq!(client.head.header("cache-control"), Some("no-store"));
    assert_eq!(client.head.header("x-accel-buffering"), Some("no"));
    assert_eq!(client.head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(client.head.header("vary"), Some("Origin"));
    assert_eq!(
        client.head.header("x-content-type-options"),
        Some("nosniff")
    );
    assert_eq!(client.head.header("content-length"), None);
    assert_eq!(client.head.header("access-control-allow-origin"), None);

    let id = &client.id;
    let expected = format!("id:{id}\nevent:PB_CONNECT\ndata:{{\"clientId\":\"{id}\"}}\n\n");
    assert_eq!(
        String::from_utf8_lossy(&client.first_chunk),
        expected,
        "exact PB_CONNECT bytes"
    );
    assert_eq!(client.first_chunk.len(), 0x7b);
}

#[test]
fn head_and_first_chunk_bytes_on_the_wire() {
    let server = Server::baseline(&[]);
    let mut conn = Conn::connect(server.addr);
    conn.send(b"GET /api/realtime HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = String::from_utf8(conn.read_until(b"\n\n\r\n")).expect("ascii");
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    // hyper writes the chunk size in upper-case hex (PocketBase: "7b"); both are
    // valid HTTP and invisible to SSE parsers.
    let id = body
        .strip_prefix("7B\r\nid:")
        .map(|rest| &rest[..40])
        .unwrap_or_else(|| panic!("unexpected first chunk: {body:?}"));
    assert_eq!(
        body,
        format!("7B\r\nid:{id}\nevent:PB_CONNECT\ndata:{{\"clientId\":\"{id}\"}}\n\n\r\n")
    );
}

#[test]
fn client_ids_are_unique_40_char_alphanumerics() {
    let server = Server::baseline(&[]);
    let mut ids = HashSet::new();
    let mut symbols = HashSet::new();
    for _ in 0..100 {
        let client = SseClient::connect(server.addr);
        assert_eq!(client.id.len(), 40, "{}", client.id);
        assert!(
            client.id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{}",
            client.id
        );
        symbols.extend(client.id.bytes());
        assert!(ids.insert(client.id.clone()), "duplicate id {}", client.id);
    }
    // 4000 uniform draws from 62 symbols: every symbol shows up.
    assert_eq!(symbols.len(), 62);
}

#[test]
fn origin_adds_allow_origin() {
    let server = Server::baseline(&[]);
    let client = SseClient::connect_with(None, server.addr, &[("Origin", "http://example.com")]);
    assert_eq!(client.head.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn http10_stream_is_close_delimited() {
    let server = Server::baseline(&[]);
    let mut conn = Conn::connect(server.addr);
    conn.send(b"GET /api/realtime HTTP/1.0\r\n\r\n");
    let text = String::from_utf8(conn.read_until(b"\"}\n\n")).expect("ascii");
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"));
    assert!(
        body.starts_with("id:") && body.contains("\nevent:PB_CONNECT\n"),
        "{body:?}"
    );
}

#[test]
fn disconnect_unregisters_the_client_at_once() {
    let server = Server::baseline(&[]);
    let client = SseClient::connect(server.addr);
    let id = client.id.clone();
    let body = format!(r#"{{"clientId":"{id}","subscriptions":["a"]}}"#);
    post_json(server.addr, "/api/realtime", &body).assert_no_content();
    drop(client);

    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let response = post_json(server.addr, "/api/realtime", &body);
        if response.status() == 404 {
            response.assert_status_json(404, BODY_MISSING_CLIENT);
            break;
        }
        response.assert_no_content();
        assert!(
            Instant::now() < deadline,
            "client still registered after 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn wrong_methods_and_unknown_routes_are_404() {
    let server = Server::baseline(&[]);
    let not_found = BODY_NOT_FOUND;
    for method in ["PUT", "PATCH", "DELETE"] {
        request(server.addr, method, "/api/realtime", &[], b"").assert_status_json(404, not_found);
    }
    request(server.addr, "GET", "/api/publish", &[], b"").assert_status_json(404, not_found);
    request(server.addr, "GET", "/api/nothing", &[], b"").assert_status_json(404, not_found);
}
