//! Unit tests of a core: fan-out, auth changes, audiences, writes, caps,
//! ends, and the named-client operations, on clients without sockets or on
//! socket pairs.

use super::*;
use crate::hooks::Hooks;
use crate::message::{Action, Audience, RuleTexts, UserIds};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::task::{Context, Poll, Waker};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NO_SOCKET: SocketRef = SocketRef::new(-1);

fn settings() -> Settings {
    Settings {
        node: NodeId::random(),
        workers: 1,
        idle_timeout: Duration::from_secs(300),
        max_lifetime: Duration::from_secs(1800),
        max_queue_bytes: 1 << 20,
        write_timeout: Duration::from_secs(30),
        max_streams_per_ip: 2,
        max_topics: 100,
        history: None,
    }
}

fn core() -> Core {
    core_with(settings(), Hooks::new())
}

fn core_with(settings: Settings, hooks: Hooks) -> Core {
    Core::new(0, settings, Policy::new(hooks, Default::default()))
}

fn render(core: &mut Core, key: usize) -> Vec<u8> {
    let pieces = core.take_write(key);
    let bytes: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
    core.complete_write(key, bytes.len());
    core.recycle(pieces);
    bytes
}

#[test]
fn publish_reaches_matching_subscriptions_with_their_names() {
    let mut c = core();
    let (a, id_a) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    let (b, id_b) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    c.set_subscriptions(
        &id_a,
        a,
        LOCAL,
        vec!["chat".into(), "chat?x=1".into()],
        None,
    )
    .unwrap();
    c.set_subscriptions(&id_b, b, LOCAL, vec!["other".into()], None)
        .unwrap();
    assert_eq!(c.publish(&[Message::custom("chat", *b"1")]), 2);
    let out = String::from_utf8(render(&mut c, a)).unwrap();
    let id = std::str::from_utf8(&id_a).unwrap();
    assert_eq!(
        out,
        format!("id:{id}\nevent:chat\ndata:1\n\nid:{id}\nevent:chat?x=1\ndata:1\n\n")
    );
    assert_eq!(c.stats().frames_written, 2);
}

fn user(id: &str, superuser: bool) -> Option<Auth> {
    Some(Auth {
        id: id.into(),
        collection_id: if superuser {
            "pbc_3142635823"
        } else {
            "_pb_users_auth_"
        }
        .into(),
        collection_name: if superuser { "_superusers" } else { "users" }.into(),
        superuser,
        record: None,
    })
}

#[test]
fn auth_changes_follow_pocketbase() {
    let mut c = core();
    let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec!["a".into()], None)
        .unwrap();
    // Guest → user once; the same user again; anything else is refused and changes nothing.
    c.set_subscriptions(&id, k, LOCAL, vec!["b".into()], user("u1", false))
        .unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec!["c".into()], user("u1", false))
        .unwrap();
    for other in [None, user("u2", false), user("u1", true)] {
        assert_eq!(
            c.set_subscriptions(&id, k, LOCAL, vec!["d".into()], other),
            Err(CoreError::AuthChanged)
        );
    }
    assert_eq!(c.client_info(&id, k).unwrap().subscriptions, ["c"]);
}

#[test]
fn audiences_and_messages_to_one_user() {
    let mut c = core();
    let mut keys = Vec::new();
    for auth in [
        None,
        user("u1", false),
        user("u1", false),
        user("u2", false),
        user("su", true),
    ] {
        let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
        c.set_subscriptions(&id, k, LOCAL, vec!["notes/*".into()], auth)
            .unwrap();
        keys.push((k, id));
    }
    let note = |audience| {
        Message::record("notes", None, Action::Create, "n1", br#"{"id":"n1"}"#)
            .for_audience(audience)
    };
    assert_eq!(c.publish(&[note(Audience::Public)]), 5);
    assert_eq!(c.publish(&[note(Audience::Superusers)]), 1);
    let users = |ids: &[&str]| Audience::Users(UserIds::new(ids.to_vec()));
    assert_eq!(c.publish(&[note(users(&["u1"]))]), 3);
    assert_eq!(c.publish(&[note(users(&[]))]), 1);
    assert_eq!(
        c.publish(&[Message::to_user("u1", None, "inbox", *b"1")]),
        2
    );
    assert_eq!(
        c.publish(&[Message::to_user("u1", Some("other"), "inbox", *b"1")]),
        0
    );
    assert_eq!(
        c.publish(&[Message::to_user(
            "u1",
            Some("_pb_users_auth_"),
            "inbox",
            *b"1"
        )]),
        2
    );
    // The index forgets clients that leave.
    c.unregister(keys[1].0, EndReason::ClientClosed);
    assert_eq!(
        c.publish(&[Message::to_user("u1", None, "inbox", *b"1")]),
        1
    );
    c.unregister(keys[2].0, EndReason::ClientClosed);
    assert_eq!(
        c.publish(&[Message::to_user("u1", None, "inbox", *b"1")]),
        0
    );
    assert!(c.pubsub.users().clients("u1").is_empty());
}

#[test]
fn subscribe_checks_id_and_ip() {
    let mut c = core();
    let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Chunked).unwrap();
    let mut wrong = id.to_vec();
    wrong[39] = if wrong[39] == b'a' { b'b' } else { b'a' };
    assert!(matches!(
        c.set_subscriptions(&wrong, k, LOCAL, vec![], None),
        Err(CoreError::NotFound(_))
    ));
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(
        c.set_subscriptions(&id, k, other, vec![], None),
        Err(CoreError::ForeignAddress)
    );
    c.set_subscriptions(&id, k, LOCAL, vec!["a".into(), "b".into()], None)
        .unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec!["b".into()], None)
        .unwrap();
    assert_eq!((c.stats().subscriptions, c.stats().topics), (1, 1));
    c.unregister(k, EndReason::ClientClosed);
    assert_eq!(
        (c.stats().subscriptions, c.stats().topics, c.stats().clients),
        (0, 0, 0)
    );
}

#[test]
fn partial_writes_resume_mid_frame() {
    let mut c = core();
    let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Chunked).unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec!["t".into()], None)
        .unwrap();
    c.publish(&[Message::custom("t", *b"abc"), Message::custom("t", *b"def")]);
    let mut all = Vec::new();
    loop {
        let pieces = c.take_write(k);
        if pieces.is_empty() {
            break;
        }
        let first: Vec<u8> = pieces
            .iter()
            .flat_map(|p| p.iter().copied())
            .take(7)
            .collect();
        all.extend_from_slice(&first);
        c.complete_write(k, first.len());
        c.recycle(pieces);
    }
    let text = String::from_utf8(all).unwrap();
    assert!(
        text.contains("data:abc\n\n\r\n") && text.ends_with("data:def\n\n\r\n"),
        "{text}"
    );
    assert_eq!(c.stats().queued_bytes, 0);
}

#[test]
fn flush_writes_directly_and_hands_full_sockets_to_the_task() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut c = core();
    let (mut peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
    let (k, id) = c
        .register(LOCAL, SocketRef::new(ours.as_raw_fd()), BodyMode::Raw)
        .unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec!["t".into()], None)
        .unwrap();
    c.publish(&[Message::custom("t", *b"1"), Message::custom("t", *b"2")]);
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(c.poll_flush(&mut cx), Poll::Ready(()));
    c.flush_some(16);
    assert_eq!(c.poll_flush(&mut cx), Poll::Pending);
    let mut got = vec![0u8; 4096];
    let n = peer.read(&mut got).unwrap();
    let id = std::str::from_utf8(&id).unwrap();
    assert_eq!(
        std::str::from_utf8(&got[..n]).unwrap(),
        format!("id:{id}\nevent:t\ndata:1\n\nid:{id}\nevent:t\ndata:2\n\n")
    );
    let s = c.stats();
    assert_eq!((s.frames_written, s.writes, s.queued_bytes), (2, 1, 0));
    // A peer that does not read: the socket fills and the task takes over.
    let big = vec![b'x'; 64 * 1024];
    while !c.registry.client(k).blocked {
        c.publish(&[Message::custom("t", big.clone())]);
        c.flush_some(16);
    }
    assert_eq!(c.poll_client(k, &mut cx), Poll::Ready(ClientEvent::Write));
    assert!(c.stats().queued_bytes > 0);
}

#[test]
fn a_socket_stalled_for_the_write_timeout_is_dropped() {
    use std::os::fd::AsRawFd;
    let settings = Settings {
        write_timeout: Duration::ZERO,
        ..settings()
    };
    let mut c = core_with(settings, Hooks::new());
    let (_peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
    let (k, id) = c
        .register(LOCAL, SocketRef::new(ours.as_raw_fd()), BodyMode::Raw)
        .unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec!["t".into()], None)
        .unwrap();
    while !c.registry.client(k).blocked {
        c.publish(&[Message::custom("t", vec![b'x'; 64 * 1024])]);
        c.flush_some(16);
    }
    c.expire();
    let s = c.stats();
    assert_eq!((s.dropped_clients, s.queued_bytes), (1, 0));
    assert!(s.dropped_frames >= 1);
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(
        c.poll_client(k, &mut cx),
        Poll::Ready(ClientEvent::End(EndReason::SlowConsumer))
    );
}

#[test]
fn slow_consumer_is_dropped_and_counted() {
    let mut c = core_with(
        Settings {
            max_queue_bytes: 200,
            ..settings()
        },
        Hooks::new(),
    );
    let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Chunked).unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec!["t".into()], None)
        .unwrap();
    let msgs: Vec<_> = (0..5)
        .map(|_| Message::custom("t", vec![b'x'; 50]))
        .collect();
    // Its socket takes nothing: dropped, and what this publish had queued
    // for it is not counted as delivered.
    let delivered = c.publish(&msgs);
    assert_eq!(delivered, 0);
    let s = c.stats();
    assert!(s.dropped_frames >= 2, "{s:?}");
    assert_eq!((s.dropped_clients, s.deliveries, s.queued_bytes), (1, 0, 0));
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(
        c.poll_client(k, &mut cx),
        Poll::Ready(ClientEvent::End(EndReason::SlowConsumer))
    );
}

#[test]
fn graceful_end_flushes_first_and_stops_new_frames() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut c = core();
    let (mut peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
    let (k, id) = c
        .register(LOCAL, SocketRef::new(ours.as_raw_fd()), BodyMode::Chunked)
        .unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec!["t".into()], None)
        .unwrap();
    c.publish(&[Message::custom("t", *b"1")]);
    c.begin_shutdown();
    assert_eq!(c.publish(&[Message::custom("t", *b"2")]), 0);
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(
        c.poll_client(k, &mut cx),
        Poll::Pending,
        "queued frames go first"
    );
    c.flush_some(16);
    assert_eq!(
        c.poll_client(k, &mut cx),
        Poll::Ready(ClientEvent::End(EndReason::Shutdown))
    );
    let mut got = vec![0u8; 4096];
    let n = peer.read(&mut got).unwrap();
    assert!(got[..n].ends_with(b"event:t\ndata:1\n\n\r\n"));
}

#[test]
fn send_reaches_one_client_and_refuses_when_full() {
    let settings = Settings {
        max_queue_bytes: 300,
        ..settings()
    };
    let mut c = core_with(settings, Hooks::new());
    let (a, id_a) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    let (_b, _) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    assert_eq!(c.send(&id_a, a, "hello", b"1"), Ok(true));
    assert_eq!(c.stats().deliveries, 1);
    let big = vec![b'x'; 200];
    assert!(matches!(
        c.send(&id_a, a, "big", &big),
        Err(CoreError::QueueFull(_))
    ));
    // Refused, not dropped: the client is still there.
    assert_eq!((c.stats().clients, c.stats().dropped_clients), (2, 0));
    let mut wrong = id_a;
    wrong[39] ^= 1;
    assert!(matches!(
        c.send(&wrong, a, "x", b"1"),
        Err(CoreError::NotFound(_))
    ));
}

#[test]
fn broadcast_store_and_end() {
    let mut c = core_with(settings(), Hooks::new());
    let (a, id_a) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    let (b, id_b) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    c.set_subscriptions(&id_b, b, LOCAL, vec!["t".into()], None)
        .unwrap();
    assert_eq!(c.publish(&[Message::broadcast("all", *b"{}")]), 2);
    assert_eq!(
        c.store(&id_a, a, StoreOp::Set("k".into(), Value::from(1))),
        Ok(None)
    );
    assert_eq!(
        c.store(&id_a, a, StoreOp::Get("k".into())),
        Ok(Some(Value::from(1)))
    );
    assert_eq!(
        c.store(&id_a, a, StoreOp::Unset("k".into())),
        Ok(Some(Value::from(1)))
    );
    let info = c.client_info(&id_b, b).unwrap();
    assert_eq!(info.subscriptions, ["t"]);
    assert_eq!(info.id.as_bytes(), id_b);
    let (total, page) = c.client_page(1, 10);
    assert_eq!((total, page.len()), (2, 1));
    c.end_client(&id_a, a).unwrap();
    assert!(matches!(
        c.end_client(&id_a, a),
        Err(CoreError::NotFound(_))
    ));
    assert_eq!(c.client_page(0, 10).0, 1);
    // Its stream still ends only after its queue is written.
    assert_eq!(c.publish(&[Message::custom("t", *b"1")]), 1);
}

#[test]
fn a_skipped_pb_connect_is_counted() {
    let hooks = Hooks::new().on_message(|e| {
        if e.name() == "PB_CONNECT" {
            e.skip();
        }
    });
    let mut c = core_with(settings(), hooks);
    let (k, _) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    assert_eq!(c.hook_message(k, "PB_CONNECT", b"{}"), Outcome::Skip);
    assert_eq!(c.hook_message(k, "other", b"{}"), Outcome::Deliver);
    assert_eq!(c.stats().hook_skipped, 1);
}

#[test]
fn message_hook_skips_and_rewrites_per_client() {
    let hooks = Hooks::new().on_message(|e| {
        if e.client().get("mute").is_some() {
            e.skip();
        } else if e.name() == "t" {
            e.set_data(format!("{{\"for\":\"{}\"}}", &e.client().id()[..4]));
        }
    });
    let mut c = core_with(settings(), hooks);
    let (a, id_a) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    let (b, id_b) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    for (k, id) in [(a, id_a), (b, id_b)] {
        c.set_subscriptions(&id, k, LOCAL, vec!["t".into()], None)
            .unwrap();
    }
    c.store(&id_b, b, StoreOp::Set("mute".into(), Value::Bool(true)))
        .unwrap();
    assert_eq!(c.publish(&[Message::custom("t", *b"1")]), 1);
    assert_eq!(c.stats().hook_skipped, 1);
    let pieces = c.take_write(a);
    let text: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
    let text = String::from_utf8(text).unwrap();
    let id = std::str::from_utf8(&id_a).unwrap();
    assert_eq!(
        text,
        format!("id:{id}\nevent:t\ndata:{{\"for\":\"{}\"}}\n\n", &id[..4])
    );
}

#[test]
fn the_disconnect_hook_sees_what_the_client_held() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let hooks = Hooks::new().on_disconnect(move |e| {
        log.lock()
            .unwrap()
            .push((e.reason(), e.subscriptions().to_vec()));
    });
    let mut c = core_with(settings(), hooks);
    let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec!["a".into(), "b?x".into()], None)
        .unwrap();
    c.unregister(k, EndReason::IdleTimeout);
    assert_eq!(
        *seen.lock().unwrap(),
        [(
            EndReason::IdleTimeout,
            vec!["a".to_owned(), "b?x".to_owned()]
        )]
    );
    assert_eq!((c.stats().subscriptions, c.stats().topics), (0, 0));
}

#[test]
fn a_reading_client_is_written_to_rather_than_dropped_in_a_large_batch() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut c = core_with(
        Settings {
            max_queue_bytes: 1024,
            ..settings()
        },
        Hooks::new(),
    );
    let (mut peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
    let (k, id) = c
        .register(LOCAL, SocketRef::new(ours.as_raw_fd()), BodyMode::Raw)
        .unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec!["t".into()], None)
        .unwrap();
    // 200 events of ~150 bytes in one batch: 30 KB for a 1 KB queue.
    let msgs: Vec<_> = (0..200)
        .map(|i| Message::custom("t", format!("{i:0>96}").into_bytes()))
        .collect();
    assert_eq!(c.publish(&msgs), 200);
    while c.flush_some(16) {}
    let s = c.stats();
    assert_eq!(
        (s.dropped_clients, s.dropped_frames, s.deliveries),
        (0, 0, 200)
    );
    peer.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let _ = peer.read_to_end(&mut got);
    let text = String::from_utf8(got).unwrap();
    assert_eq!(text.matches("event:t\n").count(), 200);
    assert!(text.ends_with(&format!("data:{:0>96}\n\n", 199)));
}

#[test]
fn recipients_leave_out_a_client_dropped_in_the_same_batch() {
    use std::os::fd::AsRawFd;
    let mut c = core_with(
        Settings {
            max_queue_bytes: 1024,
            ..settings()
        },
        Hooks::new(),
    );
    // A peer that never reads: its socket fills, then its queue.
    let (_stuck_peer, stuck) = std::os::unix::net::UnixStream::pair().unwrap();
    let (s, sid) = c
        .register(LOCAL, SocketRef::new(stuck.as_raw_fd()), BodyMode::Raw)
        .unwrap();
    c.set_subscriptions(&sid, s, LOCAL, vec!["t".into()], None)
        .unwrap();
    while !c.registry.client(s).blocked {
        c.publish(&[Message::custom("t", vec![b'x'; 900])]);
        c.flush_some(16);
    }
    // A healthy client without a socket of its own, never over its cap.
    let (h, hid) = c.register(LOCAL, NO_SOCKET, BodyMode::Discard).unwrap();
    c.set_subscriptions(&hid, h, LOCAL, vec!["t".into()], None)
        .unwrap();
    let before = c.stats().deliveries;
    let msgs: Vec<_> = (0..20)
        .map(|_| Message::custom("t", vec![b'y'; 100]))
        .collect();
    // The stuck client takes a few before its queue is full and it is
    // dropped: those are not counted, the healthy client's 20 are.
    assert_eq!(c.publish(&msgs), 20);
    assert_eq!(c.stats().deliveries - before, 20);
    assert_eq!(c.stats().dropped_clients, 1);
}

#[test]
fn per_address_and_topic_caps() {
    let mut c = core();
    let far: IpAddr = "203.0.113.9".parse().unwrap();
    let (a, _) = c.register(far, NO_SOCKET, BodyMode::Raw).unwrap();
    c.register(far, NO_SOCKET, BodyMode::Raw).unwrap();
    assert_eq!(
        c.register(far, NO_SOCKET, BodyMode::Raw),
        Err(CoreError::TooManyStreams)
    );
    // Loopback is not limited; a stream that leaves frees its place.
    for _ in 0..5 {
        c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    }
    c.unregister(a, EndReason::ClientClosed);
    c.register(far, NO_SOCKET, BodyMode::Raw).unwrap();

    let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    let many: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
    c.set_subscriptions(&id, k, LOCAL, many.clone(), None)
        .unwrap();
    let (k2, id2) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    // Existing strings cost nothing more; a new one is over the cap.
    c.set_subscriptions(&id2, k2, LOCAL, many[..10].to_vec(), None)
        .unwrap();
    assert_eq!(
        c.set_subscriptions(&id2, k2, LOCAL, vec!["new".into()], None),
        Err(CoreError::TooManyTopics)
    );
    assert_eq!(c.client_info(&id2, k2).unwrap().subscriptions.len(), 10);
}

/// A record event with the collection's rules, as the forwarder sends it.
fn post(id: &str, owner: &str, status: &str, list: Option<&str>, view: Option<&str>) -> Message {
    use crate::message::{CollectionRules, RecordEvent};
    let record = serde_json::json!({"id": id, "owner": owner, "status": status, "title": "T"});
    let json = record.to_string();
    let schema = serde_json::json!({"fields": [
        {"name": "id", "type": "text"}, {"name": "owner", "type": "text"},
        {"name": "status", "type": "text"}, {"name": "title", "type": "text"}
    ]});
    Message::record_event(
        RecordEvent {
            collection: "posts".into(),
            collection_id: Some("pbc_1".into()),
            record_id: id.into(),
            action: Action::Create,
            record,
            rules: Some(CollectionRules::new(
                RuleTexts {
                    list,
                    view,
                    manage: None,
                },
                Some(schema),
            )),
            private: None,
        },
        json.as_bytes(),
    )
}

#[test]
fn hidden_fields_reach_superusers_and_the_email_owners_and_managers() {
    use crate::message::{CollectionRules, PrivateFields, RecordEvent};
    let record = serde_json::json!({"id": "u1", "name": "N", "verified": true});
    let json = record.to_string();
    let event = |manage| {
        Message::record_event(
            RecordEvent {
                collection: "users".into(),
                collection_id: Some("_pb_users_auth_".into()),
                record_id: "u1".into(),
                action: Action::Update,
                record: record.clone(),
                rules: Some(CollectionRules::new(
                    RuleTexts {
                        list: Some(""),
                        view: Some(""),
                        manage,
                    },
                    None,
                )),
                private: Some(PrivateFields {
                    hidden: serde_json::from_str(r#"{"secret":"s"}"#).unwrap(),
                    email: Some("u1@example.com".into()),
                }),
            },
            json.as_bytes(),
        )
    };
    let mut c = core();
    let projected = format!(
        "users/*?options={}",
        options(r#"{"query":{"fields":"id,email,secret"}}"#)
    );
    let mut keys = Vec::new();
    for auth in [user("u1", false), user("u2", false), user("su", true), None] {
        let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
        let subs = vec!["users/*".to_owned(), projected.clone()];
        c.set_subscriptions(&id, k, LOCAL, subs, auth).unwrap();
        keys.push(k);
    }
    assert_eq!(c.publish(&[event(None)]), 8);
    let seen: Vec<String> = keys
        .iter()
        .map(|&k| String::from_utf8(render(&mut c, k)).unwrap())
        .collect();
    let public = r#"{"record":{"id":"u1","name":"N","verified":true},"action":"update"}"#;
    let own = r#"{"record":{"email":"u1@example.com","id":"u1","name":"N","verified":true},"action":"update"}"#;
    let all = r#"{"record":{"email":"u1@example.com","id":"u1","name":"N","secret":"s","verified":true},"action":"update"}"#;
    let own_projected = r#"{"record":{"email":"u1@example.com","id":"u1"},"action":"update"}"#;
    let all_projected =
        r#"{"record":{"email":"u1@example.com","id":"u1","secret":"s"},"action":"update"}"#;
    assert!(
        seen[0].contains(own) && seen[0].contains(own_projected),
        "the user themself: {}",
        seen[0]
    );
    assert!(
        seen[1].contains(public) && !seen[1].contains("\"email\":"),
        "another user: {}",
        seen[1]
    );
    assert!(
        seen[2].contains(all) && seen[2].contains(all_projected),
        "a superuser: {}",
        seen[2]
    );
    assert!(
        seen[3].contains(public) && !seen[3].contains("\"email\":"),
        "a guest: {}",
        seen[3]
    );
    // Whoever passes the manage rule sees the email too.
    assert_eq!(c.publish(&[event(Some("@request.auth.id = 'u2'"))]), 8);
    let managed = String::from_utf8(render(&mut c, keys[1])).unwrap();
    assert!(managed.contains(own), "a manager: {managed}");
}

fn options(json: &str) -> String {
    form_urlencoded::byte_serialize(json.as_bytes()).collect()
}

#[test]
fn record_rules_and_subscription_filters_decide_per_subscriber() {
    let mut c = core();
    let mut who = Vec::new();
    let filtered = format!(
        "posts/*?options={}",
        options(r#"{"query":{"filter":"status = 'published'"}}"#)
    );
    for (auth, subs) in [
        (None, vec!["posts/*".to_owned()]),
        (
            user("u1", false),
            vec!["posts/*".to_owned(), "posts/p1".to_owned()],
        ),
        (user("u2", false), vec![filtered.clone()]),
        (user("su", true), vec!["posts".to_owned()]),
    ] {
        let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
        c.set_subscriptions(&id, k, LOCAL, subs, auth).unwrap();
        who.push(k);
    }
    // List rule: owners only; view rule: everyone; superusers bypass rules.
    let owner_only = Some("owner = @request.auth.id");
    assert_eq!(
        c.publish(&[post("p1", "u1", "draft", owner_only, Some(""))]),
        3
    );
    // u1 (owner) on posts/* and posts/p1 (view rule ""), the superuser.
    // A draft owned by u2: u2's own filter wants published posts only.
    assert_eq!(
        c.publish(&[post("p2", "u2", "draft", owner_only, Some(""))]),
        1
    );
    assert_eq!(
        c.publish(&[post("p3", "u2", "published", owner_only, Some(""))]),
        2
    );
    // null rules: superusers only; "" everyone (the filter still applies).
    assert_eq!(c.publish(&[post("p4", "u9", "draft", None, None)]), 1);
    assert_eq!(
        c.publish(&[post("p5", "u9", "published", Some(""), None)]),
        4
    );
    // A rule the edge cannot evaluate: the audience decides (public here).
    let joined = Some("@collection.members.user ?= @request.auth.id");
    assert_eq!(c.publish(&[post("p6", "u9", "published", joined, None)]), 4);
    let superusers = post("p7", "u9", "published", joined, None).for_audience(Audience::Superusers);
    assert_eq!(c.publish(&[superusers]), 1);
}

#[test]
fn request_and_collection_fields_in_a_filter_are_for_superusers_only() {
    let mut c = core();
    let subs = [
        r#"{"query":{"filter":"owner = @request.auth.id"}}"#,
        r#"{"query":{"filter":"owner != ''","sort":"@collection.x.y"}}"#,
        // Joins the auth collection: PocketBase's realtime never matches it.
        r#"{"query":{"filter":"@request.auth.name = 'x' || owner != ''"}}"#,
    ]
    .map(|o| format!("posts/*?options={}", options(o)));
    for superuser in [false, true] {
        let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
        c.set_subscriptions(&id, k, LOCAL, subs.to_vec(), user("u1", superuser))
            .unwrap();
    }
    // The first two pass for u1, but PocketBase only lets the superuser use them.
    assert_eq!(
        c.publish(&[post("p1", "u1", "draft", Some(""), Some(""))]),
        2
    );
}

#[test]
fn fields_trim_the_record_once_per_subscription() {
    let mut c = core();
    let sub = format!(
        "posts/*?options={}",
        options(r#"{"query":{"fields":"id,title"}}"#)
    );
    let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    c.set_subscriptions(&id, k, LOCAL, vec![sub.clone(), "posts/p1".into()], None)
        .unwrap();
    assert_eq!(
        c.publish(&[post("p1", "u1", "draft", Some(""), Some(""))]),
        2
    );
    let out = String::from_utf8(render(&mut c, k)).unwrap();
    assert!(
        out.contains(&format!("event:{sub}\ndata:{{\"record\":{{\"id\":\"p1\",\"title\":\"T\"}},\"action\":\"create\"}}")),
        "{out}"
    );
    assert!(
        out.contains("event:posts/p1\ndata:{\"record\":{\"id\":\"p1\",\"owner\""),
        "{out}"
    );
}

#[test]
fn ends_are_counted_by_reason() {
    let mut c = core();
    let reasons = [
        EndReason::ClientClosed,
        EndReason::IdleTimeout,
        EndReason::Lifetime,
        EndReason::Shutdown,
        EndReason::SlowConsumer,
        EndReason::Unregistered,
        EndReason::ClientClosed,
    ];
    for reason in reasons {
        let (k, _) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
        c.unregister(k, reason);
    }
    // A client whose connect was refused never was a stream: not an end.
    let (k, _) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    c.discard(k);
    let s = c.stats();
    assert_eq!(
        [
            s.ended_client_closed,
            s.ended_idle_timeout,
            s.ended_lifetime,
            s.ended_shutdown,
            s.ended_slow_consumer,
            s.ended_unregistered,
        ],
        [2, 1, 1, 1, 1, 1]
    );
}

#[test]
fn hook_refusals_and_panics_are_counted() {
    let hooks = Hooks::new()
        .on_connect(|e| match e.header("x-no") {
            Some(_) => Err(crate::hooks::Reject::new(401, "no")),
            None => Ok(()),
        })
        .on_subscribe(|e| {
            if e.subscriptions().iter().any(|s| s == "boom") {
                panic!("subscribe hook");
            }
            Ok(())
        })
        .on_message(|e| {
            if e.name() == "boom" {
                panic!("message hook");
            }
        })
        .on_disconnect(|_| panic!("disconnect hook"));
    let mut c = core_with(settings(), hooks);
    let refused = [("x-no".to_owned(), "1".to_owned())];
    let request = |headers| Request {
        remote_addr: std::net::SocketAddr::new(LOCAL, 1),
        path: "/api/realtime",
        query: "",
        headers,
    };
    let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    assert!(c.connect(k, &request(&refused)).is_err());
    assert!(c.connect(k, &request(&[])).is_ok());
    assert!(
        c.set_subscriptions(&id, k, LOCAL, vec!["boom".into()], None)
            .is_err()
    );
    c.set_subscriptions(&id, k, LOCAL, vec!["ok".into()], None)
        .unwrap();
    // A panicking message hook delivers the message unchanged.
    assert_eq!(c.send(&id, k, "boom", b"1"), Ok(true));
    c.unregister(k, EndReason::ClientClosed);
    let s = c.stats();
    assert_eq!((s.hook_rejected, s.hook_panicked), (1, 3));
}

#[test]
fn token_outcomes_are_counted() {
    let mut c = core();
    for outcome in [
        AuthOutcome::Verified,
        AuthOutcome::Guest,
        AuthOutcome::Guest,
        AuthOutcome::Busy,
        AuthOutcome::Unavailable,
    ] {
        c.note_auth(outcome);
    }
    let s = c.stats();
    assert_eq!(
        [
            s.auth_verified,
            s.auth_guest,
            s.auth_busy,
            s.auth_unavailable
        ],
        [1, 2, 1, 1]
    );
}

#[test]
fn a_fanout_is_timed_until_its_last_copy_is_written() {
    let mut c = core();
    let mut keys = Vec::new();
    for _ in 0..3 {
        let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
        c.set_subscriptions(&id, k, LOCAL, vec!["t".into()], None)
            .unwrap();
        keys.push(k);
    }
    assert_eq!(c.publish(&[Message::custom("t", *b"1")]), 3);
    render(&mut c, keys[0]);
    render(&mut c, keys[1]);
    assert_eq!(c.stats().latency.count, 0, "one copy still queued");
    let bytes = render(&mut c, keys[2]);
    let s = c.stats();
    assert_eq!(s.latency.count, 1);
    assert_eq!(s.bytes_written, 3 * bytes.len() as u64);
    // A fan-out nobody receives is not observed; a dropped copy ends its clock too.
    c.publish(&[Message::custom("nobody", *b"1")]);
    c.publish(&[Message::custom("t", *b"2")]);
    render(&mut c, keys[0]);
    render(&mut c, keys[1]);
    c.unregister(keys[2], EndReason::ClientClosed);
    assert_eq!(c.stats().latency.count, 2);
}

#[test]
fn a_cursor_ahead_of_this_core_skips_what_the_client_saw_elsewhere() {
    let settings = Settings {
        history: Some(HistorySettings {
            topics: vec!["t=10".parse().unwrap()],
            max_bytes: 1 << 20,
            epoch: 9,
            sse_ids: false,
            cursor_field: None,
        }),
        ..settings()
    };
    let mut c = core_with(settings, Hooks::new());
    let publish = |c: &mut Core, n: u8| c.publish(&[Message::custom("t", vec![b'0' + n])]);
    publish(&mut c, 1);
    let (k, id) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    // Another core already delivered 2 and 3 (this one has yet to).
    c.resume_subscriptions(&id, k, LOCAL, vec!["t".into()], None, Some("9:3"))
        .unwrap();
    assert!(render(&mut c, k).is_empty());
    for n in 2..=4 {
        publish(&mut c, n);
    }
    let out = String::from_utf8(render(&mut c, k)).unwrap();
    let id = std::str::from_utf8(&id).unwrap();
    assert_eq!(out, format!("id:{id}\nevent:t\ndata:4\n\n"));
    // Behind: replayed from the core's own copy.
    let (k2, id2) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    c.resume_subscriptions(&id2, k2, LOCAL, vec!["t".into()], None, Some("9:2"))
        .unwrap();
    let out = String::from_utf8(render(&mut c, k2)).unwrap();
    let id2 = std::str::from_utf8(&id2).unwrap();
    assert_eq!(
        out,
        format!("id:{id2}\nevent:t\ndata:3\n\nid:{id2}\nevent:t\ndata:4\n\n")
    );
    assert_eq!(c.stats().history_replayed, 2);
}

#[test]
fn a_heartbeat_is_one_comment_for_each_quiet_stream_and_no_fanout() {
    let mut c = core();
    let (a, id_a) = c.register(LOCAL, NO_SOCKET, BodyMode::Chunked).unwrap();
    let (b, id_b) = c.register(LOCAL, NO_SOCKET, BodyMode::Raw).unwrap();
    c.set_subscriptions(&id_b, b, LOCAL, vec!["t".into()], None)
        .unwrap();
    c.publish(&[Message::custom("t", *b"1")]);
    c.heartbeat();
    let id_a = std::str::from_utf8(&id_a).unwrap();
    assert_eq!(
        String::from_utf8(render(&mut c, a)).unwrap(),
        format!("2c\r\n: {id_a}\n\n\r\n")
    );
    // b had an event queued: no heartbeat on top of it.
    let id_b = std::str::from_utf8(&id_b).unwrap();
    assert_eq!(
        String::from_utf8(render(&mut c, b)).unwrap(),
        format!("id:{id_b}\nevent:t\ndata:1\n\n")
    );
    let stats = c.stats();
    assert_eq!((stats.heartbeats, stats.latency.count), (1, 1));
}
