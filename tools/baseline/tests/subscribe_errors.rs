//! `POST /api/realtime`: PocketBase's exact status codes and JSON bodies.

use std::net::{IpAddr, Ipv4Addr};

use ringcast_testkit::{
    baseline::{post_json, request, request_from},
    pocketbase::{
        BODY_BLANK_CLIENT_ID, BODY_CLIENT_ID_TOO_LONG, BODY_GENERIC_400, BODY_INVALID_CLIENT,
        BODY_MISSING_CLIENT, BODY_TOO_MANY_SUBSCRIPTIONS, TOPIC_TOO_LONG_ERR, body_topics_too_long,
    },
    server::Server,
    sse::SseClient,
};

/// A JSON array of strings (the test topics need no escaping).
fn subs_json(topics: &[String]) -> String {
    let quoted: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    format!("[{}]", quoted.join(","))
}

#[test]
fn blank_client_id() {
    let server = Server::baseline(&[]);
    let addr = server.addr;
    // No body at all, whatever the content type.
    request(addr, "POST", "/api/realtime", &[], b"").assert_status_json(400, BODY_BLANK_CLIENT_ID);
    request(
        addr,
        "POST",
        "/api/realtime",
        &[("Content-Type", "application/json")],
        b"",
    )
    .assert_status_json(400, BODY_BLANK_CLIENT_ID);
    for body in [
        "{}",
        r#"{"subscriptions":["a"]}"#,
        r#"{"clientId":"","subscriptions":["a"]}"#,
        r#"{"clientId":null}"#,
        "null",
    ] {
        post_json(addr, "/api/realtime", body).assert_status_json(400, BODY_BLANK_CLIENT_ID);
    }
}

#[test]
fn undecodable_bodies() {
    let server = Server::baseline(&[]);
    let addr = server.addr;
    for body in [
        r#"{"clientId":"#,
        "not json",
        "[]",
        r#"{"clientId":123}"#,
        r#"{"clientId":"abc","subscriptions":"a"}"#,
        r#"{"clientId":"abc","subscriptions":[1,2]}"#,
    ] {
        post_json(addr, "/api/realtime", body).assert_status_json(400, BODY_GENERIC_400);
    }
    let valid = br#"{"clientId":"abc"}"#;
    request(
        addr,
        "POST",
        "/api/realtime",
        &[("Content-Type", "text/plain")],
        valid,
    )
    .assert_status_json(400, BODY_GENERIC_400);
    request(addr, "POST", "/api/realtime", &[], valid).assert_status_json(400, BODY_GENERIC_400);
}

#[test]
fn unknown_client_id() {
    let server = Server::baseline(&[]);
    let addr = server.addr;
    let _someone = SseClient::connect(addr);
    for id in [
        "a".repeat(40),
        "x".to_owned(),
        "a".repeat(255),
        "é".repeat(20),
    ] {
        let body = format!(r#"{{"clientId":"{id}","subscriptions":["a"]}}"#);
        post_json(addr, "/api/realtime", &body).assert_status_json(404, BODY_MISSING_CLIENT);
    }
}

#[test]
fn length_limits_count_bytes() {
    let server = Server::baseline(&[]);
    let addr = server.addr;
    let client = SseClient::connect(addr);
    let id = &client.id;

    for long_id in ["a".repeat(256), "é".repeat(128)] {
        let body = format!(r#"{{"clientId":"{long_id}"}}"#);
        post_json(addr, "/api/realtime", &body).assert_status_json(400, BODY_CLIENT_ID_TOO_LONG);
    }

    // 1000 subscriptions pass, 1001 fail — with only the count error even when
    // an entry is also too long (first failing rule of a field wins).
    let many: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
    let body = format!(
        r#"{{"clientId":"{id}","subscriptions":{}}}"#,
        subs_json(&many)
    );
    post_json(addr, "/api/realtime", &body).assert_no_content();
    let mut too_many = many.clone();
    too_many.push("x".repeat(2501));
    let body = format!(
        r#"{{"clientId":"{id}","subscriptions":{}}}"#,
        subs_json(&too_many)
    );
    post_json(addr, "/api/realtime", &body).assert_status_json(400, BODY_TOO_MANY_SUBSCRIPTIONS);

    // 2500 bytes pass (1250 × "é" too), 2501 fail, keyed by index; several
    // failing indices are all listed, sorted as strings.
    let ok = vec!["a".repeat(2500), "é".repeat(1250)];
    let body = format!(
        r#"{{"clientId":"{id}","subscriptions":{}}}"#,
        subs_json(&ok)
    );
    post_json(addr, "/api/realtime", &body).assert_no_content();

    let one_bad = vec!["ok".to_owned(), format!("{}a", "é".repeat(1250))];
    let body = format!(
        r#"{{"clientId":"{id}","subscriptions":{}}}"#,
        subs_json(&one_bad)
    );
    post_json(addr, "/api/realtime", &body).assert_status_json(400, &body_topics_too_long(&[1]));

    let mut several: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    for i in [2, 10, 1] {
        several[i] = "x".repeat(2501);
    }
    let body = format!(
        r#"{{"clientId":"{id}","subscriptions":{}}}"#,
        subs_json(&several)
    );
    post_json(addr, "/api/realtime", &body)
        .assert_status_json(400, &body_topics_too_long(&[1, 10, 2]));

    // Both fields failing are reported together.
    let body = format!(r#"{{"subscriptions":["{}"]}}"#, "x".repeat(2501));
    post_json(addr, "/api/realtime", &body).assert_status_json(
        400,
        &format!(
            r#"{{"data":{{"clientId":{{"code":"validation_required","message":"Cannot be blank."}},"subscriptions":{{"0":{TOPIC_TOO_LONG_ERR}}}}},"message":"Something went wrong while processing your request.","status":400}}"#
        ),
    );
}

#[test]
fn lenient_json_is_accepted() {
    let server = Server::baseline(&[]);
    let addr = server.addr;
    let client = SseClient::connect(addr);
    let id = &client.id;
    for body in [
        format!(r#"{{"clientId":"{id}","subscriptions":["a"]}}"#),
        format!(r#"{{"CLIENTID":"{id}","Subscriptions":["a"]}}"#),
        format!(r#"{{"clientId":"{id}","subscriptions":["a"],"extra":{{"x":[1]}}}}"#),
        format!(r#"{{"clientId":"{id}","subscriptions":["a"]}} trailing garbage"#),
        format!(r#"{{"clientId":"{id}","subscriptions":null}}"#),
        format!(r#"{{"clientId":"{id}"}}"#),
        format!(r#"{{"clientId":"{id}","subscriptions":[]}}"#),
    ] {
        post_json(addr, "/api/realtime", &body).assert_no_content();
    }
    let body = format!(r#"{{"clientId":"{id}","subscriptions":["a"]}}"#);
    request(
        addr,
        "POST",
        "/api/realtime",
        &[("Content-Type", "application/json; charset=utf-8")],
        body.as_bytes(),
    )
    .assert_no_content();
}

#[test]
fn success_has_pocketbase_headers_and_no_body() {
    let server = Server::baseline(&[]);
    let client = SseClient::connect(server.addr);
    let body = format!(r#"{{"clientId":"{}","subscriptions":["a"]}}"#, client.id);
    let response = request(
        server.addr,
        "POST",
        "/api/realtime",
        &[("Content-Type", "application/json"), ("Origin", "http://x")],
        body.as_bytes(),
    );
    response.assert_no_content();
    assert_eq!(response.head.status_line(), "HTTP/1.1 204 No Content");
    assert_eq!(response.head.header("content-length"), None);
    assert_eq!(
        response.head.header("access-control-allow-origin"),
        Some("*")
    );
    assert_eq!(response.head.header("x-frame-options"), Some("SAMEORIGIN"));
}

#[test]
fn post_from_another_ip_is_refused() {
    let server = Server::baseline(&[]);
    let client = SseClient::connect(server.addr);
    let body = format!(r#"{{"clientId":"{}","subscriptions":["a"]}}"#, client.id);
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    request_from(
        Some(other),
        server.addr,
        "POST",
        "/api/realtime",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .assert_status_json(400, BODY_INVALID_CLIENT);
    // The stream's own IP still works.
    post_json(server.addr, "/api/realtime", &body).assert_no_content();
}
