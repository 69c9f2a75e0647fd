//! A cluster of ringcast nodes through a real `redis-server` (`--redis`): publishes, record
//! events, per-user sends, broadcasts and calls on named clients work whichever node the
//! subscriber and the publisher are on; a node needs a topic's channel only while it has
//! subscribers; dead nodes leave the cluster view; Redis down at start, lost and back.
//!
//! Each test runs its own `redis-server` (Debian `redis-server`; `.ci/run` installs it) and its
//! own nodes on free loopback ports.
//!
//! Run: `cargo test --test cluster`.

use ringcast_testkit::{http::*, redis::Redis, server::*, sse::*, wait::wait_for};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "a-cluster-test-secret-0123456789abcdef";
const PREFIX: &str = "ringcast";
/// How long a cluster may take to notice something (a heartbeat's TTL is 3 s).
const NOTICE: Duration = Duration::from_secs(10);

/// A node of the cluster on `redis`, with these extra flags, once its link to Redis is up.
fn node(redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str()];
    args.extend_from_slice(extra);
    let srv = Server::ringcast_only("cluster", "--redis", &args)
        .expect("the cluster tests need ringcast itself");
    wait_linked(&srv);
    srv
}

fn degraded(srv: &Server) -> bool {
    srv.get("/api/health").body_str().contains("degraded")
}

#[track_caller]
fn wait_linked(srv: &Server) {
    let up = wait_for(NOTICE, || (!degraded(srv)).then_some(()));
    assert!(
        up.is_some(),
        "{} did not link to Redis; its output:\n{}",
        srv.addr,
        srv.output_text()
    );
}

fn topic_channel(topic: &str) -> String {
    format!("{PREFIX}:t:{topic}")
}

/// `POST path` with a JSON body on a new connection.
fn post(srv: &Server, path: &str, body: &str) -> Response {
    srv.request(&curl_post_json(&srv.host(), path, body.as_bytes()))
}

fn request(srv: &Server, method: &str, path: &str) -> Response {
    srv.request(&curl_request(&srv.host(), method, path, &[], None, &[]))
}

/// The next event's name and data as JSON.
#[track_caller]
fn next(client: &mut SseClient) -> (String, Value) {
    let ev = client.next_event();
    let data = serde_json::from_str(&ev.data)
        .unwrap_or_else(|e| panic!("event {:?}: data {:?} is not JSON: {e}", ev.name, ev.data));
    (ev.name, data)
}

/// The cluster view of `srv`'s `/api/stats`.
fn cluster_view(srv: &Server) -> Value {
    srv.stats()["cluster"].clone()
}

/// An HS256 token for user `id` of PocketBase's `users` collection.
fn token(id: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let claims = json!({
        "id": id, "collectionId": "_pb_users_auth_", "collectionName": "users",
        "type": "auth", "exp": exp,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("an HS256 token")
}

#[test]
fn publishes_reach_every_node_once_and_in_order() {
    let redis = Redis::start();
    let nodes: Vec<Server> = (0..3).map(|_| node(&redis, &[])).collect();
    let mut subscribers: Vec<SseClient> = nodes
        .iter()
        .map(|n| {
            let c = n.open_stream();
            n.subscribe(&c, &["chat", "posts/*", "posts/R1?options=%7B%7D"]);
            c
        })
        .collect();
    // One subscription per node, not per client or core.
    redis.wait_subscribers(&topic_channel("chat"), 3);
    redis.wait_subscribers(&topic_channel("posts/*"), 3);
    redis.wait_subscribers(&topic_channel("posts/R1"), 3);

    // From every node in turn, each message once everywhere (the publisher's own node included:
    // Redis echoes it back, and the node skips its own), and what one node accepted in the order
    // it accepted it. (Publishes accepted by different nodes may interleave differently on
    // different nodes: a node delivers its own at once, the others' in Redis's order.)
    const N: usize = 60;
    for i in 0..N {
        let r = post(
            &nodes[i % 3],
            "/api/publish",
            &format!(r#"{{"topic":"chat","data":{{"from":{},"n":{i}}}}}"#, i % 3),
        );
        assert_eq!(r.body_str(), r#"{"recipients":1}"#, "publish {i}");
    }
    for (k, s) in subscribers.iter_mut().enumerate() {
        let mut last: [Option<u64>; 3] = [None; 3];
        for _ in 0..N {
            let (name, data) = next(s);
            assert_eq!(name, "chat", "node {k}");
            let (Some(from), Some(n)) = (data["from"].as_u64(), data["n"].as_u64()) else {
                panic!("node {k}: {data}");
            };
            let from = from as usize;
            assert!(
                last[from].is_none_or(|l| n == l + 3),
                "node {k}: from node {from}, {n} after {:?}",
                last[from]
            );
            assert!(
                last[from].is_some() || n == from as u64,
                "node {k}: {data} first"
            );
            last[from] = Some(n);
        }
    }

    // A record event: the subscribers of posts/* and posts/R1 on every node, matched as on one
    // node.
    let r = post(
        &nodes[1],
        "/api/publish",
        r#"{"collection":"posts","collectionId":"pbc_1","action":"create","record":{"id":"R1","title":"hi"}}"#,
    );
    assert_eq!(r.body_str(), r#"{"recipients":2}"#);
    let record = json!({"action": "create", "record": {"id": "R1", "title": "hi"}});
    for (k, s) in subscribers.iter_mut().enumerate() {
        let mut got = vec![next(s), next(s)];
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                ("posts/*".into(), record.clone()),
                ("posts/R1?options=%7B%7D".into(), record.clone())
            ],
            "node {k}"
        );
    }
    for s in &mut subscribers {
        s.expect_silence(Duration::from_millis(300), "nothing twice");
    }
    for n in &nodes {
        let link = &cluster_view(n)["link"];
        assert_eq!(link["publishFailures"], 0, "{link}");
        assert_eq!(link["dropped"], 0, "{link}");
        assert_eq!(link["malformed"], 0, "{link}");
    }
}

#[test]
fn a_node_holds_a_channel_while_its_streams_need_it() {
    let redis = Redis::start();
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let chat = topic_channel("chat");

    let mut one = b.open_stream();
    let mut two = b.open_stream();
    b.subscribe(&one, &["chat"]);
    b.subscribe(&two, &["chat?options=%7B%7D"]);
    redis.wait_subscribers(&chat, 1);

    // Replacing a set that keeps the topic keeps the channel (removed and added in one batch).
    b.subscribe(&one, &["other", "chat"]);
    redis.wait_subscribers(&topic_channel("other"), 1);
    a.publish("chat", "1");
    assert_eq!(next(&mut one), ("chat".into(), json!(1)));
    assert_eq!(next(&mut two), ("chat?options=%7B%7D".into(), json!(1)));
    assert_eq!(redis.subscribers(&chat), 1);

    // The last subscriber goes: the node lets the channel go, and a publish costs it nothing.
    b.subscribe(&one, &["other"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(redis.subscribers(&chat), 1, "two still subscribes");
    drop(two);
    redis.wait_subscribers(&chat, 0);
    b.subscribe(&one, &[]);
    redis.wait_subscribers(&topic_channel("other"), 0);
    let r = post(&a, "/api/publish", r#"{"topic":"chat","data":2}"#);
    assert_eq!(r.body_str(), r#"{"recipients":0}"#);
    one.expect_silence(Duration::from_millis(300), "unsubscribed");
}

#[test]
fn calls_on_a_client_of_another_node_reach_its_owner() {
    let redis = Redis::start();
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let mut client = a.open_stream();

    // A subscription POST that a load balancer sent to the other node.
    b.subscribe(&client, &["chat"]);
    redis.wait_subscribers(&topic_channel("chat"), 1);
    b.publish("chat", "1");
    assert_eq!(next(&mut client), ("chat".into(), json!(1)));

    // Inspect and send through the other node.
    let r = request(&b, "GET", &format!("/api/clients/{}", client.id));
    assert_eq!(r.status(), 200, "{}", r.body_str());
    let info = r.json();
    assert_eq!(info["id"], client.id.as_str());
    assert_eq!(info["subscriptions"], json!(["chat"]));
    let r = post(
        &b,
        &format!("/api/clients/{}/send", client.id),
        r#"{"event":"hello","data":{"x":1}}"#,
    );
    assert_eq!(r.body_str(), r#"{"recipients":1}"#);
    assert_eq!(next(&mut client), ("hello".into(), json!({"x": 1})));

    // Ids of no client: on a live node or on a node that does not exist, as PocketBase answers.
    const MISSING: &str = r#"{"data":{},"message":"Missing or invalid client id.","status":404}"#;
    let mut gone_here = client.id.clone().into_bytes();
    gone_here[39] = if gone_here[39] == b'a' { b'b' } else { b'a' };
    let mut no_node = client.id.clone().into_bytes();
    no_node[5..9].copy_from_slice(b"zzzz");
    for id in [gone_here, no_node].map(|id| String::from_utf8(id).expect("ASCII")) {
        let r = b.post_realtime_json(subs_body(&id, &["chat"]).as_bytes());
        r.assert_json(
            "HTTP/1.1 404 Not Found",
            MISSING,
            &format!("subscribe {id}"),
        );
        let r = request(&b, "GET", &format!("/api/clients/{id}"));
        assert_eq!(r.status(), 404, "GET {id}: {}", r.body_str());
    }

    // Disconnect through the other node: the stream ends politely.
    let r = request(&b, "DELETE", &format!("/api/clients/{}", client.id));
    assert_eq!(r.status(), 204, "{}", r.body_str());
    client.expect_end();
    let r = request(&b, "GET", &format!("/api/clients/{}", client.id));
    assert_eq!(r.status(), 404);
}

#[test]
fn user_sends_and_broadcasts_reach_every_node() {
    let redis = Redis::start();
    let nodes: Vec<Server> = (0..3)
        .map(|_| node(&redis, &["--auth-jwt-secret", SECRET]))
        .collect();
    let subscribe_as = |srv: &Server, who: &str, c: &SseClient| {
        let t = token(who);
        let r = srv.request(&curl_request(
            &srv.host(),
            "POST",
            "/api/realtime",
            &[("Content-Type", "application/json"), ("Authorization", &t)],
            Some(subs_body(&c.id, &["news"]).as_bytes()),
            &[],
        ));
        r.assert_204(&format!("{who} subscribes"));
    };
    let mut bob_a = nodes[0].open_stream();
    let mut bob_b = nodes[1].open_stream();
    let mut alice_c = nodes[2].open_stream();
    subscribe_as(&nodes[0], "bob", &bob_a);
    subscribe_as(&nodes[1], "bob", &bob_b);
    subscribe_as(&nodes[2], "alice", &alice_c);

    let r = post(
        &nodes[2],
        "/api/publish",
        r#"{"topic":"inbox","data":{"for":"bob"},"userId":"bob"}"#,
    );
    assert_eq!(r.status(), 200, "{}", r.body_str());
    assert_eq!(next(&mut bob_a), ("inbox".into(), json!({"for": "bob"})));
    assert_eq!(next(&mut bob_b), ("inbox".into(), json!({"for": "bob"})));
    alice_c.expect_silence(Duration::from_millis(300), "not alice's");

    let r = post(&nodes[1], "/api/broadcast", r#"{"event":"all","data":2}"#);
    assert_eq!(r.status(), 200, "{}", r.body_str());
    for c in [&mut bob_a, &mut bob_b, &mut alice_c] {
        assert_eq!(next(c), ("all".into(), json!(2)));
        c.expect_silence(Duration::from_millis(200), "once");
    }
}

#[test]
fn the_cluster_view_lists_the_live_nodes() {
    let redis = Redis::start();
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let c = node(&redis, &[]);
    let _streams = [
        a.open_stream(),
        b.open_stream(),
        c.open_stream(),
        c.open_stream(),
    ];
    let totals = |srv: &Server| cluster_view(srv)["total"].clone();
    let all = wait_for(NOTICE, || {
        let t = totals(&a);
        (t["nodes"] == 3 && t["clients"] == 4).then_some(t)
    });
    assert!(all.is_some(), "cluster totals: {}", totals(&a));
    let names: Vec<Value> = [&a, &b, &c]
        .iter()
        .map(|n| cluster_view(n)["link"]["node"].clone())
        .collect();
    let listed = cluster_view(&b)["nodes"].clone();
    for name in &names {
        assert!(
            listed
                .as_array()
                .is_some_and(|l| l.iter().any(|n| &n["node"] == name)),
            "{name} in {listed}"
        );
    }

    // A node that dies (SIGKILL: no goodbye) leaves the view once its heartbeat expires.
    drop(c);
    let two = wait_for(NOTICE, || {
        let t = totals(&a);
        (t["nodes"] == 2 && t["clients"] == 2).then_some(t)
    });
    assert!(two.is_some(), "after a node died: {}", totals(&a));
}

#[test]
fn redis_down_at_start_then_up() {
    let mut redis = Redis::not_started();
    let url = redis.url();
    let start = || {
        Server::ringcast_only("redis_down_at_start_then_up", "--redis", &["--redis", &url])
            .expect("ringcast")
    };
    let a = start();
    let b = start();
    assert!(degraded(&a), "no Redis: degraded");

    // Local traffic is served meanwhile; the publisher is told the other nodes did not get it.
    let mut local = a.open_stream();
    let mut remote = b.open_stream();
    a.subscribe(&local, &["chat"]);
    b.subscribe(&remote, &["chat"]);
    let r = post(&a, "/api/publish", r#"{"topic":"chat","data":1}"#);
    assert_eq!(r.status(), 200);
    let answer = r.json();
    assert_eq!(answer["recipients"], 1, "{answer}");
    assert!(answer["clusterError"].is_string(), "{answer}");
    assert_eq!(next(&mut local), ("chat".into(), json!(1)));
    assert!(cluster_view(&a)["link"]["publishFailures"].as_u64() >= Some(1));

    // Redis comes up: both nodes link (backoff ≤ 5 s) and subscribe what their streams need.
    redis.restart();
    wait_linked(&a);
    wait_linked(&b);
    redis.wait_subscribers(&topic_channel("chat"), 2);
    let r = post(&a, "/api/publish", r#"{"topic":"chat","data":2}"#);
    assert_eq!(r.body_str(), r#"{"recipients":1}"#);
    assert_eq!(next(&mut local), ("chat".into(), json!(2)));
    assert_eq!(next(&mut remote), ("chat".into(), json!(2)));
}

#[test]
fn redis_lost_while_running_and_back() {
    let mut redis = Redis::start();
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let mut local = a.open_stream();
    let mut remote = b.open_stream();
    a.subscribe(&local, &["chat"]);
    b.subscribe(&remote, &["chat"]);
    redis.wait_subscribers(&topic_channel("chat"), 2);
    a.publish("chat", "1");
    assert_eq!(next(&mut local), ("chat".into(), json!(1)));
    assert_eq!(next(&mut remote), ("chat".into(), json!(1)));

    redis.stop();
    let down = wait_for(NOTICE, || (degraded(&a) && degraded(&b)).then_some(()));
    assert!(down.is_some(), "both nodes report degraded health");

    // Local delivery goes on; the publisher is told; the loss is counted; routed calls say 503.
    let r = post(&a, "/api/publish", r#"{"topic":"chat","data":2}"#);
    let answer = r.json();
    assert_eq!(answer["recipients"], 1, "{answer}");
    assert!(
        answer["clusterError"]
            .as_str()
            .is_some_and(|e| e.contains("delivered on this node only")),
        "{answer}"
    );
    assert_eq!(next(&mut local), ("chat".into(), json!(2)));
    assert!(cluster_view(&a)["link"]["publishFailures"].as_u64() >= Some(1));
    let r = b.post_realtime_json(subs_body(&local.id, &["chat", "x"]).as_bytes());
    assert_eq!(r.status(), 503, "{}", r.body_str());
    assert!(r.json()["message"].is_string());

    // Redis is back: every node links again and resubscribes its streams' channels.
    redis.restart();
    wait_linked(&a);
    wait_linked(&b);
    redis.wait_subscribers(&topic_channel("chat"), 2);
    a.publish("chat", "3");
    assert_eq!(next(&mut local), ("chat".into(), json!(3)));
    assert_eq!(next(&mut remote), ("chat".into(), json!(3)));
    remote.expect_silence(Duration::from_millis(300), "nothing twice");
    let link = &cluster_view(&a)["link"];
    assert!(link["connects"].as_u64() >= Some(2), "{link}");
}
