//! `GET /metrics` against the binary: scraped after some traffic and parsed
//! with a Prometheus text parser (`prometheus-parse`), every value checked to
//! move as the traffic says; the admin API's access rule applies.
//!
//! Run: `cargo test --test metrics`.

use prometheus_parse::{Scrape, Value};
use ringcast_testkit::{http::*, server::*, sse::*, wait::wait_for};
use std::time::Duration;

/// One scrape, parsed.
struct Metrics(Scrape);

impl Metrics {
    #[track_caller]
    fn scrape(srv: &Server) -> Metrics {
        let r = srv.get("/metrics");
        assert_eq!(r.status(), 200, "{}{}", r.head.text(), r.body_str());
        assert_eq!(
            r.head.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = r.body_str();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        Metrics(Scrape::parse(lines).expect("a valid Prometheus exposition"))
    }

    /// The sum over cores of the samples of `name` whose labels include `with`.
    #[track_caller]
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let samples: Vec<_> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| with.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect();
        assert!(!samples.is_empty(), "no sample of {name} {with:?}");
        samples
            .iter()
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name} is {other:?}"),
            })
            .sum()
    }

    /// The cores that have a sample of `name`.
    fn cores(&self, name: &str) -> Vec<String> {
        let mut cores: Vec<String> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| s.labels.get("core").map(str::to_owned))
            .collect();
        cores.sort();
        cores.dedup();
        cores
    }

    /// The latency histogram's observations, over cores, and whether its
    /// buckets are cumulative and end in `+Inf` = count.
    fn latency_count(&self) -> f64 {
        let mut total = 0.0;
        for s in &self.0.samples {
            if s.metric != "ringcast_node_publish_last_write_seconds" {
                continue;
            }
            let Value::Histogram(buckets) = &s.value else {
                panic!("the latency is {:?}", s.value);
            };
            assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
            let last = buckets.last().expect("buckets");
            assert!(last.less_than.is_infinite());
            total += last.count;
        }
        total
    }

    fn help(&self, name: &str) -> Option<&str> {
        self.0.docs.get(name).map(String::as_str)
    }
}

#[test]
fn metrics_move_with_the_traffic() {
    let Some(srv) =
        Server::ringcast_only("metrics", "ringcast's own endpoint", &["--workers", "2"])
    else {
        return;
    };
    let before = Metrics::scrape(&srv);
    assert_eq!(before.cores("ringcast_node_clients"), ["0", "1"]);
    assert_eq!(before.sum("ringcast_node_clients", &[]), 0.0);
    for name in [
        "ringcast_node_connections",
        "ringcast_node_subscriptions",
        "ringcast_node_topics",
        "ringcast_node_queued_bytes",
        "ringcast_node_messages_published_total",
        "ringcast_node_deliveries_total",
        "ringcast_node_accept_errors_total",
        "ringcast_transport_frames_written_total",
        "ringcast_transport_bytes_written_total",
        "ringcast_transport_writes_total",
        "ringcast_client_dropped_total",
        "ringcast_client_dropped_frames_total",
    ] {
        assert_eq!(before.cores(name), ["0", "1"], "{name}");
        assert!(
            before.help(name).is_some_and(|h| !h.is_empty()),
            "{name} has no help"
        );
    }
    for reason in [
        "client_closed",
        "idle_timeout",
        "lifetime",
        "shutdown",
        "slow_consumer",
        "unregistered",
    ] {
        let with = [("reason", reason)];
        assert_eq!(before.sum("ringcast_client_disconnects_total", &with), 0.0);
    }
    for outcome in ["verified", "guest", "busy", "unavailable"] {
        assert_eq!(
            before.sum("ringcast_client_auth_total", &[("outcome", outcome)]),
            0.0
        );
    }
    for outcome in ["skipped", "rejected", "panicked"] {
        assert_eq!(
            before.sum("ringcast_hook_outcomes_total", &[("outcome", outcome)]),
            0.0
        );
    }
    assert_eq!(before.latency_count(), 0.0);

    // Traffic: 3 subscribers of "chat", one of "other"; 4 messages to chat.
    let mut chat: Vec<SseClient> = (0..3).map(|_| srv.open_stream()).collect();
    for c in &chat {
        srv.subscribe(c, &["chat"]);
    }
    let other = srv.open_stream();
    srv.subscribe(&other, &["other", "chat?x=1"]);
    for i in 0..4 {
        srv.publish("chat", &format!(r#"{{"n":{i}}}"#));
    }
    for c in &mut chat {
        for i in 0..4 {
            c.expect_event("chat", &format!(r#"{{"n":{i}}}"#));
        }
    }

    let during = Metrics::scrape(&srv);
    assert_eq!(during.sum("ringcast_node_clients", &[]), 4.0);
    assert!(during.sum("ringcast_node_connections", &[]) >= 4.0);
    assert_eq!(during.sum("ringcast_node_subscriptions", &[]), 5.0);
    // "chat" on both cores or one, "other" and "chat?x=1" on one.
    let topics = during.sum("ringcast_node_topics", &[]);
    assert!((3.0..=4.0).contains(&topics), "{topics}");
    // Each core fans out each message.
    assert_eq!(
        during.sum("ringcast_node_messages_published_total", &[]),
        8.0
    );
    assert_eq!(during.sum("ringcast_node_deliveries_total", &[]), 16.0);
    assert_eq!(
        during.sum("ringcast_client_auth_total", &[("outcome", "guest")]),
        4.0
    );
    // Written: the 12 read above for sure, the other stream's 4 soon.
    let written = wait_for(Duration::from_secs(5), || {
        let m = Metrics::scrape(&srv);
        (m.sum("ringcast_transport_frames_written_total", &[]) == 16.0).then_some(m)
    })
    .expect("16 frames written");
    let bytes = written.sum("ringcast_transport_bytes_written_total", &[]);
    assert!(bytes > 16.0 * 40.0, "{bytes} bytes for 16 frames");
    assert!(written.sum("ringcast_transport_writes_total", &[]) >= 4.0);
    assert_eq!(written.sum("ringcast_node_queued_bytes", &[]), 0.0);
    // Every fan-out with a recipient was observed once, on its core.
    let observed = written.latency_count();
    assert!(
        (4.0..=8.0).contains(&observed),
        "{observed} fan-outs observed"
    );

    // Ends: one client leaves, one is unregistered by the admin API.
    let gone = chat.pop().unwrap();
    let unregistered = chat.pop().unwrap();
    drop(gone);
    let r = srv.request(&curl_request(
        &srv.host(),
        "DELETE",
        &format!("/api/clients/{}", unregistered.id),
        &[],
        None,
        &[],
    ));
    assert_eq!(r.status(), 204);
    let after = wait_for(Duration::from_secs(5), || {
        let m = Metrics::scrape(&srv);
        let closed = m.sum(
            "ringcast_client_disconnects_total",
            &[("reason", "client_closed")],
        );
        let ended = m.sum(
            "ringcast_client_disconnects_total",
            &[("reason", "unregistered")],
        );
        (closed == 1.0 && ended == 1.0).then_some(m)
    })
    .expect("one client_closed and one unregistered disconnect");
    assert_eq!(after.sum("ringcast_node_clients", &[]), 2.0);
    assert_eq!(after.sum("ringcast_client_dropped_total", &[]), 0.0);
}

#[test]
fn metrics_take_the_admin_apis_access_rule() {
    let Some(open) = Server::ringcast_only("metrics access", "ringcast only", &[]) else {
        return;
    };
    // A web page may not read them without a token.
    let r = open.request(&curl_request(
        &open.host(),
        "GET",
        "/metrics",
        &[("Origin", "http://example.com")],
        None,
        &[],
    ));
    assert_eq!(r.status(), 403, "{}", r.body_str());

    let Some(srv) = Server::ringcast_only(
        "metrics token",
        "ringcast only",
        &["--admin-token", "s3cret"],
    ) else {
        return;
    };
    assert_eq!(srv.get("/metrics").status(), 401);
    let r = srv.request(&curl_request(
        &srv.host(),
        "GET",
        "/metrics",
        &[("Authorization", "Bearer nope")],
        None,
        &[],
    ));
    assert_eq!(r.status(), 403);
    let r = srv.request(&curl_request(
        &srv.host(),
        "GET",
        "/metrics",
        &[("Authorization", "Bearer s3cret")],
        None,
        &[],
    ));
    assert_eq!(r.status(), 200);
    assert!(r.body_str().contains("# TYPE ringcast_node_clients gauge"));
}
