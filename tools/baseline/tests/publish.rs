//! `POST /api/publish`: matching, exact event bytes, recipients, batches, errors.

use std::time::Duration;

use ringcast_testkit::{
    baseline::{post_json, publish, subscribe},
    server::Server,
    sse::{Event, SseClient},
};

const SILENCE: Duration = Duration::from_millis(300);

fn event(client: &SseClient, name: &str, data: &str) -> Event {
    Event {
        id: client.id.clone(),
        name: name.to_owned(),
        data: data.to_owned(),
    }
}

#[test]
fn exact_topic_delivery_bytes() {
    let server = Server::baseline(&[]);
    let mut client = SseClient::connect(server.addr);
    subscribe(server.addr, &client.id, &["chat"]);

    assert_eq!(
        publish(server.addr, r#"{"topic":"chat","data":{"text":"hi"}}"#),
        1
    );
    let chunk = client.conn.read_chunk_payload();
    assert_eq!(
        String::from_utf8(chunk).expect("utf-8"),
        format!("id:{}\nevent:chat\ndata:{{\"text\":\"hi\"}}\n\n", client.id)
    );
}

#[test]
fn options_variants_each_get_their_own_event() {
    let server = Server::baseline(&[]);
    let mut client = SseClient::connect(server.addr);
    let options = "chat?options=%7B%22query%22%3A%7B%22a%22%3A1%7D%7D";
    subscribe(
        server.addr,
        &client.id,
        &["chat", options, "chatroom", "chat/1", "cha", "other"],
    );

    assert_eq!(publish(server.addr, r#"{"topic":"chat","data":1}"#), 2);
    assert_eq!(client.next_event(), event(&client, "chat", "1"));
    assert_eq!(client.next_event(), event(&client, options, "1"));
    client.expect_silence(SILENCE, "after the expected events");

    // Publishing to a longer topic does not reach the shorter subscriptions.
    assert_eq!(publish(server.addr, r#"{"topic":"chatroom","data":2}"#), 1);
    assert_eq!(client.next_event(), event(&client, "chatroom", "2"));
    assert_eq!(publish(server.addr, r#"{"topic":"nobody","data":3}"#), 0);
    client.expect_silence(SILENCE, "after the expected events");
}

#[test]
fn only_the_variant_is_enough_to_match() {
    let server = Server::baseline(&[]);
    let mut client = SseClient::connect(server.addr);
    subscribe(server.addr, &client.id, &["news?options=x"]);
    assert_eq!(publish(server.addr, r#"{"topic":"news","data":"x"}"#), 1);
    assert_eq!(
        client.next_event(),
        event(&client, "news?options=x", r#""x""#)
    );
    // The topic itself is matched literally: "news?" is not "news".
    assert_eq!(
        publish(server.addr, r#"{"topic":"news?options=x","data":0}"#),
        1
    );
    assert_eq!(client.next_event(), event(&client, "news?options=x", "0"));
}

#[test]
fn recipients_count_matching_subscriptions_across_clients() {
    let server = Server::baseline(&[]);
    let mut a = SseClient::connect(server.addr);
    let mut b = SseClient::connect(server.addr);
    let mut c = SseClient::connect(server.addr);
    subscribe(server.addr, &a.id, &["t", "t?options=1", "t?options=2"]);
    subscribe(server.addr, &b.id, &["t"]);
    subscribe(server.addr, &c.id, &["u"]);

    assert_eq!(publish(server.addr, r#"{"topic":"t","data":null}"#), 4);
    assert_eq!(a.next_event().name, "t");
    assert_eq!(a.next_event().name, "t?options=1");
    assert_eq!(a.next_event().name, "t?options=2");
    assert_eq!(b.next_event(), event(&b, "t", "null"));
    c.expect_silence(SILENCE, "after the expected events");
}

#[test]
fn a_post_replaces_the_whole_set() {
    let server = Server::baseline(&[]);
    let mut client = SseClient::connect(server.addr);
    // Duplicates are stored once, empty strings skipped.
    subscribe(server.addr, &client.id, &["a", "b", "b", ""]);
    assert_eq!(publish(server.addr, r#"{"topic":"b","data":1}"#), 1);
    assert_eq!(client.next_event().name, "b");

    subscribe(server.addr, &client.id, &["c"]);
    assert_eq!(publish(server.addr, r#"{"topic":"a","data":1}"#), 0);
    assert_eq!(publish(server.addr, r#"{"topic":"c","data":2}"#), 1);
    assert_eq!(client.next_event(), event(&client, "c", "2"));

    subscribe(server.addr, &client.id, &[]);
    assert_eq!(publish(server.addr, r#"{"topic":"c","data":3}"#), 0);
    client.expect_silence(SILENCE, "after the expected events");
}

#[test]
fn data_is_reserialised_compactly_in_received_key_order() {
    let server = Server::baseline(&[]);
    let mut client = SseClient::connect(server.addr);
    subscribe(server.addr, &client.id, &["t"]);
    let cases = [
        (
            r#"{ "topic" : "t" , "data" : { "z" : 1 , "a" : [ 1 , 2.5 , true ] } }"#,
            r#"{"z":1,"a":[1,2.5,true]}"#,
        ),
        (
            r#"{"topic":"t","data":"line\nbreak \"q\" é"}"#,
            r#""line\nbreak \"q\" é""#,
        ),
        (r#"{"topic":"t"}"#, "null"),
        (r#"{"data":[],"topic":"t","ignored":1}"#, "[]"),
    ];
    for (body, data) in cases {
        assert_eq!(publish(server.addr, body), 1);
        assert_eq!(client.next_event(), event(&client, "t", data));
    }
}

#[test]
fn batch_is_delivered_in_order_and_counted() {
    let server = Server::baseline(&[]);
    let mut a = SseClient::connect(server.addr);
    let mut b = SseClient::connect(server.addr);
    subscribe(server.addr, &a.id, &["x", "y"]);
    subscribe(server.addr, &b.id, &["y", "y?o=1"]);

    let messages: Vec<String> = (0..20)
        .map(|i| {
            let topic = if i % 2 == 0 { "x" } else { "y" };
            format!(r#"{{"topic":"{topic}","data":{i}}}"#)
        })
        .collect();
    let body = format!(r#"{{"messages":[{}]}}"#, messages.join(","));
    // a: 20 (every message), b: 10 odd messages × 2 subscriptions.
    assert_eq!(publish(server.addr, &body), 40);

    for i in 0..20 {
        let name = if i % 2 == 0 { "x" } else { "y" };
        assert_eq!(a.next_event(), event(&a, name, &i.to_string()));
    }
    for i in (1..20).step_by(2) {
        assert_eq!(b.next_event(), event(&b, "y", &i.to_string()));
        assert_eq!(b.next_event(), event(&b, "y?o=1", &i.to_string()));
    }
    a.expect_silence(SILENCE, "after the expected events");
    b.expect_silence(SILENCE, "after the expected events");

    assert_eq!(publish(server.addr, r#"{"messages":[]}"#), 0);
}

#[test]
fn bad_publish_input() {
    let server = Server::baseline(&[]);
    let mut client = SseClient::connect(server.addr);
    subscribe(server.addr, &client.id, &["t"]);
    let undecodable = r#"{"data":{},"message":"Something went wrong while processing your request.","status":400}"#;
    let missing_topic = r#"{"data":{"topic":{"code":"validation_required","message":"Cannot be blank."}},"message":"Missing or invalid topic.","status":400}"#;
    let cases = [
        ("", undecodable),
        ("{", undecodable),
        ("[]", undecodable),
        (r#"{"topic":5}"#, undecodable),
        (r#"{"messages":{}}"#, undecodable),
        ("{}", missing_topic),
        (r#"{"data":1}"#, missing_topic),
        (r#"{"topic":"","data":1}"#, missing_topic),
        (
            r#"{"messages":[{"topic":"t","data":1},{"data":2}]}"#,
            r#"{"data":{"messages":{"1":{"topic":{"code":"validation_required","message":"Cannot be blank."}}}},"message":"Missing or invalid topic.","status":400}"#,
        ),
    ];
    for (body, expected) in cases {
        post_json(server.addr, "/api/publish", body).assert_status_json(400, expected);
    }
    // A refused batch publishes nothing, not even its valid prefix.
    client.expect_silence(SILENCE, "after the expected events");
}
