//! The embedding API end to end: a server started in this process with
//! `Server::builder()` (two cores), its `Broker`, every hook path, and the
//! admin HTTP API, checked over real loopback sockets.
//!
//! Run: `cargo test --test embed`.

use ringcast::hooks::{Hooks, Reject};
use ringcast::{Action, Broker, BrokerError, CoreError, EndReason, RunningServer};
use ringcast_testkit::{bytes::*, http::*, pocketbase::*, server::*, sse::*};
use serde_json::json;
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs a broker call to completion (the broker needs no particular runtime).
fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// A two-core server on a free port with `hooks`; `tweak` adjusts the builder.
fn start(
    hooks: Hooks,
    tweak: impl FnOnce(ringcast::ServerBuilder) -> ringcast::ServerBuilder,
) -> (RunningServer, Server) {
    let builder = ringcast::Server::builder()
        .http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .workers(2)
        .hooks(hooks);
    let running = tweak(builder).start().expect("start the server");
    let srv = Server::attach(running.local_addr());
    (running, srv)
}

/// Opens streams until both cores hold at least `per_core` of them.
fn streams_on_both_cores(srv: &Server, broker: &Broker, per_core: usize) -> Vec<SseClient> {
    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(srv.open_stream());
        let infos = block(broker.clients()).unwrap();
        let on = |core| infos.iter().filter(|c| c.core == core).count();
        if on(0) >= per_core && on(1) >= per_core {
            return clients;
        }
    }
    panic!("SO_REUSEPORT never spread 200 connections over both cores");
}

/// Records what hooks saw, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn contains(&self, s: &str) -> bool {
        self.0.lock().unwrap().iter().any(|x| x == s)
    }
    fn wait_for(&self, s: &str) {
        let t0 = Instant::now();
        while !self.contains(s) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "hook log never got {s:?}: {:?}",
                self.0.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn broker_operations_across_cores() {
    let (running, srv) = start(Hooks::new(), |b| b);
    let broker = running.broker();
    let mut clients = streams_on_both_cores(&srv, &broker, 3);
    let n = clients.len();
    for (i, c) in clients.iter().enumerate() {
        srv.subscribe(c, &[&format!("own-{i}"), "all"]);
    }

    // Snapshots gather from both cores.
    assert_eq!(block(broker.total_clients()).unwrap(), n);
    let infos = block(broker.clients()).unwrap();
    let ids: HashSet<_> = infos.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, clients.iter().map(|c| c.id.clone()).collect());
    let chunks = block(broker.chunked_clients(2)).unwrap();
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), n);
    assert!(chunks.iter().all(|c| (1..=2).contains(&c.len())));
    for (i, c) in clients.iter().enumerate() {
        let info = block(broker.client_by_id(&c.id)).unwrap();
        assert_eq!(info.subscriptions, [format!("own-{i}"), "all".into()]);
        assert_eq!(info.remote_ip.to_string(), "127.0.0.1");
        assert!(info.auth.is_none());
    }
    let unknown = "A".repeat(40);
    assert_eq!(
        block(broker.client_by_id(&unknown)),
        Err(BrokerError::Core(CoreError::NotFound(unknown.clone())))
    );
    assert!(matches!(
        block(broker.client_by_id("short")),
        Err(BrokerError::Core(CoreError::NotFound(_)))
    ));

    // A send reaches its client whatever it subscribed; publishes take the HTTP API's path.
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            block(broker.send(&c.id, "direct", &json!({"i": i}))),
            Ok(true)
        );
        c.expect_event("direct", &format!(r#"{{"i":{i}}}"#));
    }
    assert_eq!(block(broker.publish("all", &json!("x"))), Ok(n as u64));
    assert_eq!(block(broker.publish("own-0", &json!(0))), Ok(1));
    assert_eq!(
        block(broker.broadcast("hello", &json!({"b": 1}))),
        Ok(n as u64)
    );
    for (i, c) in clients.iter_mut().enumerate() {
        c.expect_event("all", r#""x""#);
        if i == 0 {
            c.expect_event("own-0", "0");
        }
        c.expect_event("hello", r#"{"b":1}"#);
    }
    srv.subscribe(&clients[1], &["own-1", "all", "posts/*"]);
    let record = json!({"id": "r1", "title": "t"});
    assert_eq!(
        block(broker.publish_record("posts", Some("pbc_1"), Action::Create, &record)),
        Ok(1)
    );
    clients[1].expect_event(
        "posts/*",
        r#"{"record":{"id":"r1","title":"t"},"action":"create"}"#,
    );
    assert!(matches!(
        block(broker.publish_record("posts", None, Action::Update, &json!({"no": "id"}))),
        Err(BrokerError::Data(_))
    ));

    // The per-client store, on the owner core.
    let id = clients[1].id.clone();
    assert_eq!(block(broker.set(&id, "k", json!([1, 2]))), Ok(None));
    assert_eq!(block(broker.get(&id, "k")), Ok(Some(json!([1, 2]))));
    assert_eq!(
        block(broker.client_by_id(&id)).unwrap().store.get("k"),
        Some(&json!([1, 2]))
    );
    assert_eq!(block(broker.unset(&id, "k")), Ok(Some(json!([1, 2]))));
    assert_eq!(block(broker.get(&id, "k")), Ok(None));
    assert!(matches!(
        block(broker.set(&unknown, "k", json!(1))),
        Err(BrokerError::Core(CoreError::NotFound(_)))
    ));

    // Unregister ends the stream politely; the id is gone afterwards.
    let mut gone = clients.remove(0);
    block(broker.unregister(&gone.id)).unwrap();
    gone.expect_end();
    assert!(matches!(
        block(broker.send(&gone.id, "x", &1)),
        Err(BrokerError::Core(CoreError::NotFound(_)))
    ));
    assert_eq!(block(broker.total_clients()).unwrap(), n - 1);
    running.shutdown();
    assert_eq!(
        block(broker.total_clients()),
        Err(BrokerError::ShuttingDown)
    );
}

#[test]
fn send_to_a_full_queue_is_refused_not_dropped() {
    let (running, srv) = start(Hooks::new(), |b| b.max_queue_bytes(4096));
    let broker = running.broker();
    let mut c = Conn::connect_small_rcvbuf(srv.addr, 4096);
    c.send(format!("GET /api/realtime HTTP/1.1\r\nHost: {}\r\n\r\n", srv.host()).as_bytes());
    let client = SseClient::from_conn(c);
    let big = "x".repeat(1000);
    let mut refused = None;
    for i in 0..10_000 {
        match block(broker.send(&client.id, "big", &big)) {
            Ok(true) => {}
            Err(e) => {
                refused = Some((i, e));
                break;
            }
            Ok(false) => unreachable!("no hook skips"),
        }
    }
    let (i, err) = refused.expect("a client that never reads must fill up");
    assert_eq!(
        err,
        BrokerError::Core(CoreError::QueueFull(client.id.clone())),
        "after {i} sends"
    );
    // Still registered and counted nowhere as dropped.
    assert!(block(broker.client_by_id(&client.id)).is_ok());
    let stats = block(broker.stats()).unwrap();
    assert_eq!(stats.iter().map(|s| s.dropped_clients).sum::<u64>(), 0);
    running.shutdown();
}

#[test]
fn connect_hook_rejects_sets_timeouts_and_store() {
    let log = Log::default();
    let l = log.clone();
    let hooks = Hooks::new()
        .on_connect(|e| {
            if e.header("x-key") != Some("k") {
                return Err(Reject::new(403, "connect rejected by hook"));
            }
            if let Some(idle) = e.query_param("idle") {
                e.set_idle_timeout(Duration::from_millis(idle.parse().unwrap()));
            }
            e.set("agent", json!(e.header("user-agent")));
            Ok(())
        })
        .on_disconnect(move |e| l.push(format!("{}:{:?}", e.client().id(), e.reason())));
    let (running, srv) = start(hooks, |b| b);
    let broker = running.broker();

    // Refused: PocketBase's JSON error, with the SSE headers kept (hooks-connect-subscribe-message.txt §1).
    let r = srv.get("/api/realtime");
    assert_eq!(r.status(), 403);
    assert_eq!(r.head.header("Content-Type"), Some("text/event-stream"));
    assert_eq!(r.head.header("X-Accel-Buffering"), Some("no"));
    assert_bytes(
        &r.body,
        br#"{"data":{},"message":"Connect rejected by hook.","status":403}"#,
        "refused connect body",
    );
    assert_eq!(block(broker.total_clients()).unwrap(), 0);

    // Accepted with a 1 s idle timeout of its own and a store value.
    let mut c = srv.connect();
    let t0 = Instant::now();
    c.send(
        format!(
            "GET /api/realtime?idle=1000 HTTP/1.1\r\nHost: {}\r\nX-Key: k\r\nUser-Agent: t/1\r\n\r\n",
            srv.host()
        )
        .as_bytes(),
    );
    let mut client = SseClient::from_conn(c);
    let info = block(broker.client_by_id(&client.id)).unwrap();
    assert_eq!(info.store.get("agent"), Some(&json!("t/1")));
    client.expect_end();
    let t = t0.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&t),
        "idle end after {t:?}, expected ≈ 1 s (the server default is 5 min)"
    );
    log.wait_for(&format!("{}:IdleTimeout", client.id));
    // The refused connect never counted as a disconnect.
    assert_eq!(log.0.lock().unwrap().len(), 1);
    running.shutdown();
}

#[test]
fn subscribe_hook_rewrites_or_rejects() {
    let hooks = Hooks::new().on_subscribe(|e| {
        if e.subscriptions().iter().any(|s| s == "forbidden") {
            return Err(Reject::new(403, "topic not allowed by hook"));
        }
        let own = format!("clients/{}", e.client().id());
        let subs = e.subscriptions_mut();
        subs.retain(|s| !s.starts_with("admin/"));
        subs.push(own);
        Ok(())
    });
    let (running, srv) = start(hooks, |b| b);
    let broker = running.broker();
    let mut clients = streams_on_both_cores(&srv, &broker, 1);
    for c in &clients {
        srv.subscribe(c, &["a", "admin/x"]);
        let info = block(broker.client_by_id(&c.id)).unwrap();
        assert_eq!(
            info.subscriptions,
            ["a".to_owned(), format!("clients/{}", c.id)]
        );
        // Rejected: 403 with the hook's message, and nothing changed.
        let r = srv.post_realtime_json(subs_body(&c.id, &["b", "forbidden"]).as_bytes());
        r.assert_json(
            "HTTP/1.1 403 Forbidden",
            r#"{"data":{},"message":"Topic not allowed by hook.","status":403}"#,
            "subscribe hook rejection",
        );
        let after = block(broker.client_by_id(&c.id)).unwrap();
        assert_eq!(after.subscriptions, info.subscriptions);
    }
    for c in clients.iter_mut() {
        let topic = format!("clients/{}", c.id);
        assert_eq!(block(broker.publish(&topic, &1)), Ok(1));
        assert_eq!(block(broker.publish("admin/x", &1)), Ok(0));
        c.expect_event(&topic, "1");
    }
    running.shutdown();
}

#[test]
fn message_hook_skips_rewrites_and_sees_pb_connect() {
    let hooks = Hooks::new().on_message(|e| match e.name() {
        "PB_CONNECT" => {
            let tagged = format!(r#"{{"clientId":"{}","tag":"x"}}"#, e.client().id());
            e.set_data(tagged);
        }
        "drop-me" => e.skip(),
        "rewrite-me" => {
            e.set_name("rewritten");
            e.set_data(format!(r#"{{"for":"{}"}}"#, e.client().id()));
        }
        _ => {}
    });
    let (running, srv) = start(hooks, |b| b);
    let broker = running.broker();
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut c = srv.connect();
        c.send(format!("GET /api/realtime HTTP/1.1\r\nHost: {}\r\n\r\n", srv.host()).as_bytes());
        let head = c.read_head();
        let raw = c.read_chunk_payload();
        let id = pb_connect_id(&raw);
        assert_bytes(
            &raw,
            &event(
                &id,
                "PB_CONNECT",
                &format!(r#"{{"clientId":"{id}","tag":"x"}}"#),
            ),
            "PB_CONNECT through the message hook",
        );
        clients.push(SseClient {
            conn: c,
            id,
            head,
            first_chunk: raw,
        });
    }
    for c in &clients {
        srv.subscribe(c, &["drop-me", "rewrite-me", "normal"]);
    }
    assert_eq!(block(broker.publish("drop-me", &1)), Ok(0));
    assert_eq!(block(broker.publish("rewrite-me", &1)), Ok(6));
    assert_eq!(block(broker.publish("normal", &json!({"orig": 1}))), Ok(6));
    for c in clients.iter_mut() {
        let id = c.id.clone();
        c.expect_event("rewritten", &format!(r#"{{"for":"{id}"}}"#));
        c.expect_event("normal", r#"{"orig":1}"#);
    }
    let skipped: u64 = block(broker.stats())
        .unwrap()
        .iter()
        .map(|s| s.hook_skipped)
        .sum();
    assert_eq!(skipped, 6);
    running.shutdown();
}

#[test]
fn disconnect_hook_says_why() {
    let log = Log::default();
    let l = log.clone();
    let hooks = Hooks::new().on_disconnect(move |e| {
        l.push(format!(
            "{}:{:?}:{}",
            e.client().id(),
            e.reason(),
            e.subscriptions().join(",")
        ))
    });
    let (running, srv) = start(hooks, |b| b);
    let broker = running.broker();
    let closer = srv.open_stream();
    srv.subscribe(&closer, &["a", "b"]);
    let closer_id = closer.id.clone();
    drop(closer);
    log.wait_for(&format!("{closer_id}:ClientClosed:a,b"));
    let mut unreg = srv.open_stream();
    block(broker.unregister(&unreg.id)).unwrap();
    unreg.expect_end();
    log.wait_for(&format!("{}:{:?}:", unreg.id, EndReason::Unregistered));
    let mut last = srv.open_stream();
    running.shutdown();
    last.expect_end();
    log.wait_for(&format!("{}:Shutdown:", last.id));
}

#[test]
fn panicking_hooks_answer_500_and_the_cores_go_on() {
    let hooks = Hooks::new()
        .on_connect(|e| {
            if e.query_param("boom").is_some() {
                panic!("connect hook panic (expected by the test)");
            }
            Ok(())
        })
        .on_subscribe(|e| {
            if e.subscriptions().iter().any(|s| s == "boom") {
                panic!("subscribe hook panic (expected by the test)");
            }
            Ok(())
        })
        .on_message(|e| {
            if e.name() == "boom" {
                panic!("message hook panic (expected by the test)");
            }
        })
        .on_disconnect(|_| panic!("disconnect hook panic (expected by the test)"));
    let (running, srv) = start(hooks, |b| b);
    let broker = running.broker();
    const BODY_500: &str = r#"{"data":{},"message":"Something went wrong while processing your request.","status":500}"#;
    for _ in 0..4 {
        let r = srv.get("/api/realtime?boom");
        assert_eq!(r.status(), 500);
        assert_bytes(&r.body, BODY_500.as_bytes(), "connect hook panic");
    }
    let mut clients = streams_on_both_cores(&srv, &broker, 1);
    for c in &clients {
        let r = srv.post_realtime_json(subs_body(&c.id, &["boom"]).as_bytes());
        r.assert_json(
            "HTTP/1.1 500 Internal Server Error",
            BODY_500,
            "subscribe hook panic",
        );
        srv.subscribe(c, &["fine", "boom?x"]);
    }
    // A panicking message hook delivers the message unchanged.
    let n = clients.len() as u64;
    assert_eq!(block(broker.broadcast("boom", &1)), Ok(n));
    assert_eq!(block(broker.publish("fine", &2)), Ok(n));
    for c in clients.iter_mut() {
        c.expect_event("boom", "1");
        c.expect_event("fine", "2");
    }
    // Disconnects with a panicking hook leave the cores serving.
    clients.truncate(1);
    let mut again = srv.open_stream();
    srv.subscribe(&again, &["fine"]);
    assert_eq!(block(broker.publish("fine", &3)), Ok(2));
    again.expect_event("fine", "3");
    running.shutdown();
}

// ---------------------------------------------------------------------------------------------
// The admin HTTP API
// ---------------------------------------------------------------------------------------------

fn admin(
    srv: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    srv.request(&curl_request(
        &srv.host(),
        method,
        path,
        &headers,
        body.map(str::as_bytes),
        &[],
    ))
}

#[test]
fn admin_api_lists_inspects_messages_and_disconnects() {
    let (running, srv) = start(Hooks::new(), |b| b.admin_token("s3cret"));
    let broker = running.broker();
    let mut clients = streams_on_both_cores(&srv, &broker, 2);
    let n = clients.len();
    srv.subscribe(&clients[0], &["x"]);
    let tok = Some("s3cret");

    // Access: the admin token, exactly as for /api/publish.
    assert_eq!(admin(&srv, "GET", "/api/clients", None, None).status(), 401);
    assert_eq!(
        admin(&srv, "GET", "/api/clients", None, Some("nope")).status(),
        403
    );

    // Paging like PocketBase's list responses.
    let r = admin(&srv, "GET", "/api/clients?perPage=3", None, tok);
    assert_eq!(r.status(), 200, "{}", r.body_str());
    let page1 = r.json();
    assert_eq!(page1["page"], 1);
    assert_eq!(page1["perPage"], 3);
    assert_eq!(page1["totalItems"], n);
    assert_eq!(page1["totalPages"], n.div_ceil(3));
    let mut seen = HashSet::new();
    for page in 1..=n.div_ceil(3) {
        let r = admin(
            &srv,
            "GET",
            &format!("/api/clients?page={page}&perPage=3"),
            None,
            tok,
        );
        for item in r.json()["items"].as_array().unwrap() {
            assert!(seen.insert(item["id"].as_str().unwrap().to_owned()));
            assert_eq!(item["remoteIP"], "127.0.0.1");
            assert!(item["connectedAt"].as_str().unwrap().ends_with('Z'));
        }
    }
    assert_eq!(seen, clients.iter().map(|c| c.id.clone()).collect());

    // One client.
    let id0 = clients[0].id.clone();
    let r = admin(&srv, "GET", &format!("/api/clients/{id0}"), None, tok);
    assert_eq!(r.status(), 200);
    assert_eq!(r.json()["subscriptions"], json!(["x"]));
    let missing = admin(
        &srv,
        "GET",
        &format!("/api/clients/{}", "B".repeat(40)),
        None,
        tok,
    );
    missing.assert_json(
        "HTTP/1.1 404 Not Found",
        r#"{"data":{},"message":"Missing or invalid client id.","status":404}"#,
        "unknown client",
    );

    // Send to one, broadcast to all.
    let r = admin(
        &srv,
        "POST",
        &format!("/api/clients/{id0}/send"),
        Some(r#"{"event":"note","data":{"a":1}}"#),
        tok,
    );
    assert_bytes(&r.body, br#"{"recipients":1}"#, "send");
    clients[0].expect_event("note", r#"{"a":1}"#);
    let bad = admin(
        &srv,
        "POST",
        &format!("/api/clients/{id0}/send"),
        Some(r#"{"data":1}"#),
        tok,
    );
    bad.assert_json(
        "HTTP/1.1 400 Bad Request",
        r#"{"data":{"event":{"code":"validation_required","message":"Cannot be blank."}},"message":"Something went wrong while processing your request.","status":400}"#,
        "send without an event",
    );
    let r = admin(
        &srv,
        "POST",
        "/api/broadcast",
        Some(r#"{"event":"all","data":"hi"}"#),
        tok,
    );
    assert_bytes(
        &r.body,
        format!(r#"{{"recipients":{n}}}"#).as_bytes(),
        "broadcast",
    );
    for c in clients.iter_mut() {
        c.expect_event("all", r#""hi""#);
    }

    // Disconnect: 204, the stream ends politely, then 404.
    let r = admin(&srv, "DELETE", &format!("/api/clients/{id0}"), None, tok);
    r.assert_204("DELETE /api/clients/{id}");
    clients[0].expect_end();
    let r = admin(&srv, "DELETE", &format!("/api/clients/{id0}"), None, tok);
    assert_eq!(r.status(), 404);
    let r = admin(&srv, "GET", "/api/clients", None, tok);
    assert_eq!(r.json()["totalItems"], n - 1);
    running.shutdown();
}

#[test]
fn oversized_and_malformed_events_are_refused_up_front() {
    let (running, srv) = start(Hooks::new(), |b| b.max_queue_bytes(4096));
    let broker = running.broker();
    let mut c = srv.open_stream();
    srv.subscribe(&c, &["t"]);
    let big = "x".repeat(5000);

    // Over --max-queue-bytes: no client could ever take it, so nobody is dropped for it.
    let r = srv.publish_raw(format!(r#"{{"topic":"t","data":"{big}"}}"#).as_bytes(), &[]);
    assert_eq!(r.status(), 413, "{}", r.body_str());
    assert!(
        r.body_str().contains("--max-queue-bytes"),
        "{}",
        r.body_str()
    );
    // The broker applies the same rule to embedders.
    assert!(matches!(
        block(broker.send(&c.id, "t", &big)),
        Err(BrokerError::TooLarge { index: None, .. })
    ));
    assert!(matches!(
        block(broker.publish("t", &big)),
        Err(BrokerError::TooLarge { index: Some(0), .. })
    ));
    assert!(matches!(
        block(broker.broadcast("t", &big)),
        Err(BrokerError::TooLarge { index: None, .. })
    ));
    let stats = block(broker.stats()).unwrap();
    // Refused before any core saw them: no core had to refuse a frame, nobody was dropped.
    assert_eq!(stats.iter().map(|s| s.oversized_frames).sum::<u64>(), 0);
    assert_eq!(stats.iter().map(|s| s.dropped_clients).sum::<u64>(), 0);

    // A line break in an event name would forge SSE fields.
    let r = srv.publish_raw(br#"{"topic":"t\nevent:forged","data":1}"#, &[]);
    r.assert_json(
        "HTTP/1.1 400 Bad Request",
        r#"{"data":{"topic":{"code":"validation_invalid_format","message":"Must not contain line breaks."}},"message":"Something went wrong while processing your request.","status":400}"#,
        "topic with a line break",
    );
    for result in [
        block(broker.send(&c.id, "a\nb", &1)).map(|_| 0),
        block(broker.publish("a\rb", &1)),
        block(broker.broadcast("a\nb", &1)),
        block(broker.send_to_user("u", None, "a\nb", &1)),
    ] {
        assert!(
            matches!(result, Err(BrokerError::InvalidEvent(_))),
            "{result:?}"
        );
    }
    // The client is still there and served.
    assert_eq!(block(broker.publish("t", &"ok")), Ok(1));
    c.expect_event("t", r#""ok""#);
    running.shutdown();
}

#[test]
fn browsers_cannot_use_the_admin_api_without_a_token() {
    let (running, srv) = start(Hooks::new(), |b| b);
    for (method, path, body) in [
        ("GET", "/api/clients", None),
        ("POST", "/api/broadcast", Some(r#"{"event":"e","data":1}"#)),
        ("POST", "/api/publish", Some(r#"{"topic":"t","data":1}"#)),
    ] {
        let r = srv.request(&curl_request(
            &srv.host(),
            method,
            path,
            &[
                ("Content-Type", "text/plain"),
                ("Origin", "http://evil.example"),
            ],
            body.map(str::as_bytes),
            &[],
        ));
        assert_eq!(
            r.status(),
            403,
            "{method} {path} from a web page: {}",
            r.body_str()
        );
        assert!(r.body_str().contains("--admin-token"), "{}", r.body_str());
    }
    // The same requests from a backend (no Origin) are fine.
    assert_eq!(admin(&srv, "GET", "/api/clients", None, None).status(), 200);
    running.shutdown();
}

#[test]
fn identities_reach_hooks_the_broker_and_the_admin_listing() {
    const SECRET: &str = "embed-test-secret-0123456789-abcdefghij";
    let token = |id: &str| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"id": id, "collectionId": "_pb_users_auth_", "collectionName": "users", "exp": exp}),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let seen = Log::default();
    let s = seen.clone();
    let hooks = Hooks::new().on_subscribe(move |e| {
        s.push(format!("{}:{:?}", e.client().id(), e.auth().map(|a| &a.id)));
        Ok(())
    });
    let access = ringcast::auth::AuthArgs {
        auth_jwt_secret: Some(SECRET.into()),
        ..Default::default()
    };
    let (running, srv) = start(hooks, |b| b.access(access));
    let broker = running.broker();
    let mut clients = streams_on_both_cores(&srv, &broker, 1);
    let (alice, bob) = (token("alice"), token("bob"));
    for (i, c) in clients.iter().enumerate() {
        let t = if i % 2 == 0 { &alice } else { &bob };
        let r = srv.request(&curl_request(
            &srv.host(),
            "POST",
            "/api/realtime",
            &[("Content-Type", "application/json"), ("Authorization", t)],
            Some(subs_body(&c.id, &["x"]).as_bytes()),
            &[],
        ));
        r.assert_204("subscribe with a token");
        let who = if i % 2 == 0 { "alice" } else { "bob" };
        seen.wait_for(&format!("{}:Some({who:?})", c.id));
        let info = block(broker.client_by_id(&c.id)).unwrap();
        let auth = info.auth.expect("the broker sees the auth");
        assert_eq!(
            (auth.id.as_str(), auth.collection_name.as_str()),
            (who, "users")
        );
    }
    let r = admin(&srv, "GET", "/api/clients?perPage=1000", None, None);
    for item in r.json()["items"].as_array().unwrap() {
        let id = item["auth"]["id"].as_str().expect("auth in the listing");
        assert!(id == "alice" || id == "bob", "{item}");
    }
    // Every stream of alice, on both cores, and no one else.
    let alices = clients.len().div_ceil(2) as u64;
    assert_eq!(
        block(broker.send_to_user("alice", None, "inbox", &json!({"n": 1}))),
        Ok(alices)
    );
    assert_eq!(
        block(broker.send_to_user("alice", Some("other"), "inbox", &1)),
        Ok(0)
    );
    for (i, c) in clients.iter_mut().enumerate() {
        if i % 2 == 0 {
            c.expect_event("inbox", r#"{"n":1}"#);
        }
    }
    assert_eq!(
        block(broker.publish("x", &"marker")),
        Ok(clients.len() as u64)
    );
    for c in clients.iter_mut() {
        c.expect_event("x", r#""marker""#); // bob's streams got no inbox event before it
    }
    running.shutdown();
}
