//! Access end to end against the binary: topic rules (`--rules`) with locally
//! verified tokens (`--auth-jwt-secret`), PocketBase's auth-change rule, and
//! client addresses behind a trusted proxy (`--trusted-proxy`).
//! (Tokens checked by a real PocketBase: `tests/auth_pocketbase.rs` and
//! `tests/js/e2e/`.)
//!
//! Run: `cargo test --test access`.

use ringcast_testkit::{http::*, server::*, sse::*};
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "a-test-secret-of-some-length-0123456789";

/// An HS256 token for user `id` of PocketBase's `users` collection.
fn token(id: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({
        "id": id, "collectionId": "_pb_users_auth_", "collectionName": "users",
        "type": "auth", "exp": exp,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// `POST /api/realtime` with the SDK's raw `Authorization: <token>`.
fn subscribe_as(srv: &Server, token: Option<&str>, id: &str, subs: &[&str]) -> Response {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(t) = token {
        headers.push(("Authorization", t));
    }
    srv.request(&curl_request(
        &srv.host(),
        "POST",
        "/api/realtime",
        &headers,
        Some(subs_body(id, subs).as_bytes()),
        &[],
    ))
}

fn forbidden_topic(topic: &str) -> String {
    format!(
        r#"{{"data":{{}},"message":"The current client is not allowed to subscribe to \"{topic}\".","status":403}}"#
    )
}

#[test]
fn topic_rules_with_jwt_identities() {
    let dir = std::env::temp_dir().join(format!("ringcast-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        r#"
[[rule]]
topic = "private/*"
allow = "auth"
[[rule]]
topic = "users/{auth.id}/*"
allow = "owner"
"#,
    )
    .unwrap();
    let Some(srv) = Server::ringcast_only(
        "topic_rules_with_jwt_identities",
        "--rules",
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--auth-jwt-secret",
            SECRET,
        ],
    ) else {
        return;
    };

    // A guest: public topics yes, private ones no — refused whole, nothing changed.
    let mut guest = srv.open_stream();
    subscribe_as(&srv, None, &guest.id, &["news"]).assert_204("guest: news");
    let r = subscribe_as(&srv, None, &guest.id, &["news", "private/x?options=%7B%7D"]);
    r.assert_json(
        "HTTP/1.1 403 Forbidden",
        &forbidden_topic("private/x?options=%7B%7D"),
        "guest: private topic",
    );
    srv.publish("news", "1");
    guest.expect_event("news", "1");

    // bob: private topics and his own inbox, not alice's; a bad token is a guest.
    let bob = token("bob");
    let mut b = srv.open_stream();
    let r = subscribe_as(&srv, Some("not-a-token"), &b.id, &["private/x"]);
    r.assert_json(
        "HTTP/1.1 403 Forbidden",
        &forbidden_topic("private/x"),
        "invalid token",
    );
    subscribe_as(&srv, Some(&bob), &b.id, &["private/x", "users/bob/inbox"])
        .assert_204("bob: private and own inbox");
    let r = subscribe_as(
        &srv,
        Some(&format!("Bearer {bob}")),
        &b.id,
        &["users/alice/inbox"],
    );
    r.assert_json(
        "HTTP/1.1 403 Forbidden",
        &forbidden_topic("users/alice/inbox"),
        "bob: alice's inbox",
    );
    srv.publish("users/bob/inbox", r#"{"n":1}"#);
    b.expect_event("users/bob/inbox", r#"{"n":1}"#);

    // PocketBase's auth rule: bob cannot become alice, nor a guest, on the same stream.
    const MISMATCH: &str = r#"{"data":{},"message":"The current and the previous request authorization don't match.","status":403}"#;
    let alice = token("alice");
    for (who, t) in [("alice", Some(alice.as_str())), ("guest", None)] {
        subscribe_as(&srv, t, &b.id, &["news"]).assert_json(
            "HTTP/1.1 403 Forbidden",
            MISMATCH,
            &format!("bob → {who}"),
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn client_address_behind_a_trusted_proxy() {
    let Some(srv) = Server::ringcast_only(
        "client_address_behind_a_trusted_proxy",
        "--trusted-proxy",
        &["--trusted-proxy", "127.0.0.1/32"],
    ) else {
        return;
    };
    // The proxy (127.0.0.1) opens the stream for client 10.1.2.3.
    let mut c = srv.connect();
    c.send(
        format!(
            "GET /api/realtime HTTP/1.1\r\nHost: {}\r\nX-Real-IP: 10.1.2.3\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n",
            srv.host()
        )
        .as_bytes(),
    );
    let client = SseClient::from_conn(c);
    let post = |from: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        let mut conn = srv.connect_from(from);
        conn.send(&curl_request(
            &srv.host(),
            "POST",
            "/api/realtime",
            &all,
            Some(subs_body(&client.id, &["t"]).as_bytes()),
            &[],
        ));
        conn.read_response()
    };
    const INVALID: &str = r#"{"data":{},"message":"Invalid realtime client.","status":400}"#;
    // Through the proxy, for the same client: accepted.
    post("127.0.0.1", &[("X-Forwarded-For", "10.1.2.3")]).assert_204("same client via proxy");
    // Through the proxy, for another client: PocketBase's same-IP rule refuses it.
    post("127.0.0.1", &[("X-Forwarded-For", "10.9.9.9")]).assert_json(
        "HTTP/1.1 400 Bad Request",
        INVALID,
        "another client via the proxy",
    );
    // An untrusted peer cannot claim the client's address.
    post("127.0.0.2", &[("X-Real-IP", "10.1.2.3")]).assert_json(
        "HTTP/1.1 400 Bad Request",
        INVALID,
        "untrusted peer with X-Real-IP",
    );
    // Nor can a spoofed left-most X-Forwarded-For entry pass for it.
    post("127.0.0.1", &[("X-Forwarded-For", "10.1.2.3, 10.9.9.9")]).assert_json(
        "HTTP/1.1 400 Bad Request",
        INVALID,
        "spoofed left-most entry",
    );
    // The loopback-only publish rule looks at the client, not at the proxy.
    let r = srv.publish_raw(br#"{"topic":"t","data":1}"#, &[("X-Real-IP", "10.1.2.3")]);
    assert_eq!(
        r.status(),
        403,
        "publish for a remote client via the proxy: {}",
        r.body_str()
    );
}
