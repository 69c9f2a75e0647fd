//! Stream lifetime: idle timeout, maximum lifetime, slow-client eviction.

use std::io::Write;
use std::time::{Duration, Instant};

use ringcast_testkit::{
    baseline::{post_json, publish, subscribe},
    server::Server,
    sse::SseClient,
};

#[test]
fn idle_timeout_ends_the_stream_with_the_zero_chunk_and_keeps_the_connection() {
    let server = Server::baseline(&["--idle-timeout", "1s"]);
    let started = Instant::now();
    let mut client = SseClient::connect(server.addr);
    subscribe(server.addr, &client.id, &["t"]);

    let end = client.conn.read_chunk_payload();
    let elapsed = started.elapsed();
    assert!(end.is_empty(), "expected end of stream, got {end:?}");
    assert!(
        elapsed >= Duration::from_millis(950) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(client.conn.buf.is_empty(), "bytes after the terminator");

    // The client is gone...
    let body = format!(r#"{{"clientId":"{}","subscriptions":["t"]}}"#, client.id);
    assert_eq!(post_json(server.addr, "/api/realtime", &body).status(), 404);
    // ...and the TCP connection is still usable (HTTP keep-alive).
    client
        .conn
        .stream
        .write_all(b"GET /api/realtime HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("reuse connection");
}

#[test]
fn a_delivered_message_restarts_the_idle_timer() {
    let server = Server::baseline(&["--idle-timeout", "1s"]);
    let started = Instant::now();
    let mut client = SseClient::connect(server.addr);
    subscribe(server.addr, &client.id, &["t"]);

    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(publish(server.addr, r#"{"topic":"t","data":1}"#), 1);
    assert_eq!(client.next_event().data, "1");
    let end = client.conn.read_chunk_payload();
    let elapsed = started.elapsed();
    assert!(end.is_empty());
    assert!(elapsed >= Duration::from_millis(1550), "{elapsed:?}");
}

#[test]
fn max_lifetime_ends_a_busy_stream() {
    let server = Server::baseline(&["--idle-timeout", "10s", "--max-lifetime", "1s"]);
    let started = Instant::now();
    let mut client = SseClient::connect(server.addr);
    subscribe(server.addr, &client.id, &["t"]);
    let mut received = 0;
    loop {
        let recipients = publish(server.addr, r#"{"topic":"t","data":0}"#);
        let chunk = client.conn.read_chunk_payload();
        if chunk.is_empty() {
            break;
        }
        assert_eq!(recipients, 1);
        received += 1;
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "stream never ended"
        );
    }
    assert!(received >= 3, "{received}");
    assert!(started.elapsed() >= Duration::from_millis(950));
}

#[test]
fn a_client_that_stops_reading_is_evicted_and_others_are_unaffected() {
    let server = Server::baseline(&["--channel-capacity", "4"]);
    let stalled = SseClient::connect(server.addr);
    let mut healthy = SseClient::connect(server.addr);
    subscribe(server.addr, &stalled.id, &["big"]);
    subscribe(server.addr, &healthy.id, &["big"]);

    // 64 KiB events: the stalled socket's buffers fill after a few MB, then its
    // channel fills, then it is evicted.
    let body = format!(r#"{{"topic":"big","data":"{}"}}"#, "x".repeat(64 * 1024));
    let mut evicted_after = None;
    // Kernel buffers on loopback can absorb tens of MB (tcp_rmem max), hence
    // the generous bound; eviction usually comes after ~70 publishes.
    for i in 0..1000 {
        let recipients = publish(server.addr, &body);
        let event = healthy.next_event();
        assert_eq!(event.data.len(), 64 * 1024 + 2);
        if recipients == 1 {
            evicted_after = Some(i);
            break;
        }
        assert_eq!(recipients, 2);
    }
    let evicted_after = evicted_after.expect("the stalled client was never evicted");
    assert!(evicted_after > 4, "evicted too early: {evicted_after}");

    // Its id is unknown now; the healthy client keeps receiving.
    let body = format!(r#"{{"clientId":"{}","subscriptions":["big"]}}"#, stalled.id);
    assert_eq!(post_json(server.addr, "/api/realtime", &body).status(), 404);
    assert_eq!(publish(server.addr, r#"{"topic":"big","data":"after"}"#), 1);
    assert_eq!(healthy.next_event().data, r#""after""#);
}
