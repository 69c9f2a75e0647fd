//! The publisher: one OS thread with a current_thread runtime and `in_flight` keep-alive connections,
//! each a task sending one request at a time — so at most `in_flight` publishes are outstanding.
//!
//! Sequence numbers are assigned per topic at the moment a request is about to be written (after any rate
//! pacing), which keeps "seq order = send order" per topic; the per-topic counters in [`Shared`] (`next`:
//! sent, `acked`: contiguous prefix answered) are what the accounting windows are built from.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::net::HttpConn;
use crate::payload::{self, Vars};
use crate::shared::Shared;

/// What to publish.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Stop after this many messages (over all topics).
    pub count: Option<u64>,
    /// Stop starting new messages after this long.
    pub duration: Option<Duration>,
    /// Messages per second over all topics; 0 = as fast as `in_flight` allows.
    pub rate: f64,
    pub in_flight: usize,
}

/// Outcome of one publish run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// Sum of `recipients` (ringcast / baseline) or `messages` (notify.pb.js) from the responses, if any
    /// response carried one.
    pub recipients: Option<u64>,
    /// Monotonic ns of the first request written / the last response read.
    pub first_send_ns: u64,
    pub last_ack_ns: u64,
    /// Request round trip, µs.
    pub rtt_us: Histogram<u64>,
    pub error_samples: Vec<String>,
}

pub struct Run {
    pub plan: Plan,
    pub reply: oneshot::Sender<Outcome>,
}

pub fn spawn(
    shared: Arc<Shared>,
) -> io::Result<(mpsc::UnboundedSender<Run>, std::thread::JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Run>();
    let handle = std::thread::Builder::new()
        .name("loadgen-publisher".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let topics = Rc::new(RefCell::new(
                    (0..shared.topics.len())
                        .map(|_| TopicState::default())
                        .collect::<Vec<_>>(),
                ));
                while let Some(run) = rx.recv().await {
                    let out = publish(shared.clone(), topics.clone(), run.plan).await;
                    let _ = run.reply.send(out);
                }
            });
        })?;
    Ok((tx, handle))
}

/// Per-topic seq bookkeeping, persistent across runs.
#[derive(Debug, Default)]
struct TopicState {
    next: u64,
    acked: u64,
    /// Answered flags for seqs `acked..next`.
    window: VecDeque<bool>,
}

struct Run0 {
    shared: Arc<Shared>,
    topics: Rc<RefCell<Vec<TopicState>>>,
    plan: Plan,
    start: Instant,
    next_index: Cell<u64>,
    sent: Cell<u64>,
    ok: Cell<u64>,
    errors: Cell<u64>,
    recipients: Cell<Option<u64>>,
    first_send_ns: Cell<u64>,
    last_ack_ns: Cell<u64>,
    rtt: RefCell<Histogram<u64>>,
    error_samples: RefCell<Vec<String>>,
}

async fn publish(shared: Arc<Shared>, topics: Rc<RefCell<Vec<TopicState>>>, plan: Plan) -> Outcome {
    let run = Rc::new(Run0 {
        shared,
        topics,
        plan,
        start: Instant::now(),
        next_index: Cell::new(0),
        sent: Cell::new(0),
        ok: Cell::new(0),
        errors: Cell::new(0),
        recipients: Cell::new(None),
        first_send_ns: Cell::new(0),
        last_ack_ns: Cell::new(0),
        rtt: RefCell::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram")),
        error_samples: RefCell::new(Vec::new()),
    });
    let tasks: Vec<_> = (0..plan.in_flight.max(1))
        .map(|_| tokio::task::spawn_local(publish_task(run.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    Outcome {
        sent: run.sent.get(),
        ok: run.ok.get(),
        errors: run.errors.get(),
        recipients: run.recipients.get(),
        first_send_ns: run.first_send_ns.get(),
        last_ack_ns: run.last_ack_ns.get(),
        rtt_us: run.rtt.borrow().clone(),
        error_samples: run.error_samples.borrow().clone(),
    }
}

impl Run0 {
    fn expired(&self) -> bool {
        self.plan
            .duration
            .is_some_and(|d| self.start.elapsed() >= d)
    }

    /// Takes the next seq of topic `t` and publishes the new `next` counter.
    fn assign(&self, t: usize) -> u64 {
        let mut topics = self.topics.borrow_mut();
        let ts = &mut topics[t];
        let seq = ts.next;
        ts.next += 1;
        ts.window.push_back(false);
        let region = self.shared.region;
        if let Some(slot) = region.lag(t, seq) {
            let lag = u32::try_from(seq - ts.acked).unwrap_or(u32::MAX);
            slot.store(lag, Ordering::Relaxed);
        }
        // Release: a worker that sees the new `next` sees the lag entry too (see `Shared::floor`).
        region.topic(t).next.store(ts.next, Ordering::Release);
        seq
    }

    /// Marks `seq` of topic `t` answered and advances the contiguous `acked` prefix.
    fn ack(&self, t: usize, seq: u64) {
        let mut topics = self.topics.borrow_mut();
        let ts = &mut topics[t];
        let i = (seq - ts.acked) as usize;
        ts.window[i] = true;
        while ts.window.front() == Some(&true) {
            ts.window.pop_front();
            ts.acked += 1;
        }
        self.shared
            .region
            .topic(t)
            .acked
            .store(ts.acked, Ordering::Release);
    }

    fn error(&self, msg: String) {
        self.errors.set(self.errors.get() + 1);
        let mut s = self.error_samples.borrow_mut();
        if s.len() < 10 {
            s.push(msg);
        }
    }
}

async fn publish_task(run: Rc<Run0>) {
    let shared = run.shared.clone();
    let cfg = &shared.cfg;
    let tpl = &cfg.publish;
    let n_topics = shared.topics.len() as u64;
    let mut conn: Option<HttpConn> = None;
    let mut body = String::with_capacity(256);
    let mut req = String::with_capacity(512);
    loop {
        let i = run.next_index.get();
        if run.plan.count.is_some_and(|c| i >= c) || run.expired() {
            return;
        }
        run.next_index.set(i + 1);
        if run.plan.rate > 0.0 {
            tokio::time::sleep_until(run.start + Duration::from_secs_f64(i as f64 / run.plan.rate))
                .await;
            if run.expired() {
                return;
            }
        }
        let t = (i % n_topics) as usize;
        let seq = run.assign(t);
        let vars = Vars {
            topic: &shared.topics[t],
            seq,
            ts_ns: cfg.clock.now_ns(),
            pad: &tpl.pad,
            index: i,
        };
        body.clear();
        tpl.body.render_into(&mut body, &vars);
        req.clear();
        req.push_str("POST ");
        tpl.path.render_into(&mut req, &vars);
        req.push_str(" HTTP/1.1\r\nHost: ");
        req.push_str(&cfg.host);
        req.push_str("\r\n");
        let mut has_ct = false;
        for h in &tpl.headers {
            has_ct |= h.name.eq_ignore_ascii_case("content-type");
            req.push_str(&h.name);
            req.push_str(": ");
            h.value.render_into(&mut req, &vars);
            req.push_str("\r\n");
        }
        if !has_ct {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str("Content-Length: ");
        req.push_str(&body.len().to_string());
        req.push_str("\r\n\r\n");
        req.push_str(&body);

        let send_ns = payload::mono_ns();
        if run.first_send_ns.get() == 0 {
            run.first_send_ns.set(send_ns);
        }
        run.sent.set(run.sent.get() + 1);
        let result = async {
            if conn.is_none() {
                conn = Some(HttpConn::open(None, cfg.target).await?);
            }
            conn.as_mut()
                .expect("just set")
                .request(req.as_bytes())
                .await
        }
        .await;
        let ack_ns = payload::mono_ns();
        run.last_ack_ns.set(run.last_ack_ns.get().max(ack_ns));
        let _ = run
            .rtt
            .borrow_mut()
            .record(((ack_ns - send_ns) / 1000).max(1));
        match result {
            Ok(resp) => {
                if !resp.keep_alive {
                    conn = None;
                }
                if resp.is_success() {
                    run.ok.set(run.ok.get() + 1);
                    let n = payload::member_u64(&resp.body, b"\"recipients\"")
                        .or_else(|| payload::member_u64(&resp.body, b"\"messages\""));
                    if let Some(n) = n {
                        run.recipients
                            .set(Some(run.recipients.get().unwrap_or(0) + n));
                    }
                } else {
                    run.error(format!(
                        "publish seq {seq} topic {}: HTTP {} {}",
                        shared.topics[t],
                        resp.status,
                        String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
                    ));
                }
            }
            Err(e) => {
                conn = None;
                run.error(format!("publish seq {seq} topic {}: {e}", shared.topics[t]));
                // Do not spin if the server is gone.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        run.ack(t, seq);
    }
}
