//! The coordinator: sets up the threads, runs the phases of each mode, samples the server between phases
//! and builds the report.
//!
//! Phases are measured as `Mark`s (server and tool counters at an instant); the per-connection and
//! per-delivery figures divide a phase's deltas by what happened in it. The coordinator runs on the main
//! thread in its own small runtime and only polls: worker counters every 10–20 ms (atomics), worker
//! delivery status (an O(clients) scan in each worker) only while waiting for the last deliveries.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{mpsc, oneshot};

use crate::accounting::Totals;
use crate::cli::{Cli, Mode};
use crate::payload::{self, HeaderTemplate, Template, mono_ns};
use crate::procstat::{self, Mark, ProcSample};
use crate::publisher::{self, Plan};
use crate::report::{self, *};
use crate::shard::{self, Shards};
use crate::shared::{PublishTemplates, RunConfig, Shared, WorkerStats};
use crate::shm::{Layout, Region};
use crate::worker::{self, Cmd, Status, WorkerReport};
use crate::{kmem, net, promhist};

/// Runs the mode given on the command line.
pub fn run(cli: Cli) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(cli))
}

fn parse_target(s: &str) -> anyhow::Result<SocketAddr> {
    let s = s.trim_start_matches("http://").trim_end_matches('/');
    let addr = s
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --target {s:?}"))?
        .find(|a| a.is_ipv4())
        .or_else(|| s.to_socket_addrs().ok()?.next())
        .with_context(|| format!("--target {s:?} has no address"))?;
    if !addr.ip().is_loopback() {
        bail!(
            "--target must be a loopback address (got {addr}): this tool only drives local servers"
        );
    }
    Ok(addr)
}

fn validate_topic_prefix(p: &str) -> anyhow::Result<()> {
    if p.is_empty() || p.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        bail!(
            "--topic-prefix must be non-empty and free of quotes, backslashes and control characters"
        );
    }
    Ok(())
}

struct Coord {
    shared: Arc<Shared>,
    stats: Vec<&'static WorkerStats>,
    workers: Vec<mpsc::UnboundedSender<Cmd>>,
    handles: Vec<std::thread::JoinHandle<()>>,
    /// The shard processes holding the clients (`None`: this process holds them).
    shards: Option<Shards>,
    /// Where to scrape the server's own latency histogram (`--metrics-path`).
    metrics: Option<(String, String)>,
    publisher: mpsc::UnboundedSender<publisher::Run>,
    server_pid: Option<u32>,
    samples: Vec<LabeledSample>,
    timeline: Vec<TimelinePoint>,
    quiet: bool,
    last_tick: (f64, u64),
    /// Previous (t, server CPU ns) for the timeline's per-second CPU share.
    cpu_base: Option<(f64, u64)>,
}

impl Coord {
    fn t(&self) -> f64 {
        (mono_ns() - self.shared.t0_ns) as f64 / 1e9
    }

    fn sum(&self, f: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.stats.iter().map(|s| WorkerStats::get(f(s))).sum()
    }

    fn max(&self, f: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.stats
            .iter()
            .map(|s| WorkerStats::get(f(s)))
            .max()
            .unwrap_or(0)
    }

    /// CPU of the load tool so far: this process and its shards.
    fn tool_cpu(&self) -> (u64, u64) {
        let (u, s) = procstat::self_cpu_ns();
        let (su, ss) = self.shards.as_ref().map_or((0, 0), Shards::cpu_ns);
        (u + su, s + ss)
    }

    fn sample_server(&self) -> Option<ProcSample> {
        let pid = self.server_pid?;
        procstat::sample(&pid.to_string(), self.t()).ok()
    }

    /// Samples the server and the tool; keeps the server sample in the report under `label`.
    fn mark(&mut self, label: &str) -> Mark {
        let server = self.sample_server();
        if let Some(s) = server {
            self.samples.push(LabeledSample {
                label: label.to_string(),
                sample: s,
            });
        }
        Mark {
            t_s: self.t(),
            tool: self.tool_cpu(),
            server,
        }
    }

    /// The server's own latency histogram now (`--metrics-path`); a failed scrape is a warning, not
    /// a failed run.
    async fn scrape_histogram(&self) -> Option<promhist::Buckets> {
        let (path, name) = self.metrics.as_ref()?;
        let cfg = &self.shared.cfg;
        match promhist::scrape(cfg.target, &cfg.host, path, name).await {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("warning: {e}");
                None
            }
        }
    }

    fn broadcast(&self, mk: impl Fn() -> Cmd) {
        for w in &self.workers {
            let _ = w.send(mk());
        }
    }

    async fn status(&self, targets: &[u64]) -> Status {
        let mut total = Status::default();
        for w in &self.workers {
            let (tx, rx) = oneshot::channel();
            let _ = w.send(Cmd::Status {
                targets: targets.to_vec(),
                reply: tx,
            });
            if let Ok(s) = rx.await {
                total.remaining += s.remaining;
                total.clients_behind += s.clients_behind;
            }
        }
        total
    }

    /// Called often while waiting; once a second appends a timeline point and prints a progress line.
    fn tick(&mut self, phase: &'static str) {
        let t = self.t();
        if t - self.last_tick.0 < 1.0 {
            return;
        }
        let events = self.sum(|s| &s.events);
        let rate = (events - self.last_tick.1) as f64 / (t - self.last_tick.0);
        let prev_cpu = self.cpu_base;
        let server = self.sample_server();
        let server_cpu_cores = match (server, prev_cpu) {
            (Some(s), Some((t0, c0))) => {
                Some(s.cpu_ns().saturating_sub(c0) as f64 / 1e9 / (t - t0))
            }
            _ => None,
        };
        if let Some(s) = server {
            self.cpu_base = Some((t, s.cpu_ns()));
        }
        let published: u64 = self.shared.sent_per_topic().iter().sum();
        let point = TimelinePoint {
            t_s: t,
            phase,
            connected: self.sum(|s| &s.active),
            events,
            events_per_s: rate,
            published,
            server_rss_kb: server.map(|s| s.rss_kb),
            server_cpu_cores,
        };
        if !self.quiet {
            eprintln!(
                "[{t:7.1}s] {phase:<10} clients {} (+{} connecting, {} failed) | events {} ({:.0}/s) | published {}{}",
                point.connected,
                self.sum(|s| &s.connecting),
                self.sum(|s| &s.connect_failed),
                events,
                rate,
                published,
                server
                    .map(|s| format!(" | server rss {} KiB", s.rss_kb))
                    .unwrap_or_default()
                    + &server_cpu_cores
                        .map(|c| format!(" cpu {c:.2} cores"))
                        .unwrap_or_default()
            );
        }
        self.timeline.push(point);
        self.last_tick = (t, events);
    }
}

async fn run_async(cli: Cli) -> anyhow::Result<Report> {
    let c = &cli.common;
    parse_target(&c.target)?;
    validate_topic_prefix(&c.topic_prefix)?;
    if c.topics == 0 || c.subs_per_client == 0 || c.subs_per_client > c.topics {
        bail!("need 1 <= --subs-per-client <= --topics");
    }
    if c.source_ips > 254 {
        bail!("--source-ips must be at most 254");
    }
    if c.threads == 0 || c.threads > 64 {
        bail!("--threads must be 1..=64");
    }
    let body = Template::parse(&c.publish_body);
    if !body.uses_seq() {
        bail!("--publish-body must contain {{seq}}: delivery accounting relies on it");
    }
    let nofile = net::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    let churn_extra = match &cli.mode {
        Mode::Churn(a) => (a.churn_rate * 3.0) as u64,
        _ => 0,
    };
    let processes = shard::processes(
        c.processes,
        shard::Need {
            clients: c.connections + churn_extra,
            control: (c.control_conns * c.threads) as u64,
            publish: c.in_flight as u64,
        },
        nofile,
    )?;
    if let Some(pid) = c.server_pid {
        procstat::sample(&pid.to_string(), 0.0)
            .with_context(|| format!("cannot read /proc/{pid} (--server-pid)"))?;
    }
    if !body.uses_ts() && !c.quiet {
        eprintln!("warning: --publish-body has no {{ts_ns}}: no latency figures");
    }
    let slots = if processes > 1 {
        processes * c.threads
    } else {
        c.threads
    };
    let region = Region::create(Layout::new(slots, c.topics as usize))
        .context("creating the shared counters")?;
    region
        .next_client()
        .store(c.connections, std::sync::atomic::Ordering::Relaxed);
    let shared = shared_state(&cli, region)?;
    let started_unix_ms = payload::Clock::Realtime.now_ns() / 1_000_000;

    let stats: Vec<&'static WorkerStats> = (0..slots).map(|i| region.worker_stats(i)).collect();
    let mut workers = Vec::new();
    let mut handles = Vec::new();
    let mut shards = None;
    if processes > 1 {
        let (s, senders) = Shards::spawn(processes, c.threads, region)?;
        if !c.quiet {
            eprintln!(
                "{} clients over {processes} shard processes (pids {})",
                c.connections,
                s.pids()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        shards = Some(s);
        workers = senders;
    } else {
        for st in &stats {
            let (tx, h) = worker::spawn(shared.clone(), st, slots)?;
            workers.push(tx);
            handles.push(h);
        }
    }
    let (publisher, pub_handle) = publisher::spawn(shared.clone())?;
    handles.push(pub_handle);
    let mut co = Coord {
        shared: shared.clone(),
        stats,
        workers,
        handles,
        shards,
        metrics: c
            .metrics_path
            .clone()
            .map(|p| (p, c.server_histogram.clone())),
        publisher,
        server_pid: c.server_pid,
        samples: Vec::new(),
        timeline: Vec::new(),
        quiet: c.quiet,
        last_tick: (0.0, 0),
        cpu_base: None,
    };
    let tool_start = Mark {
        t_s: 0.0,
        tool: co.tool_cpu(),
        server: None,
    };
    let out = co.run_mode(&cli).await?;
    co.finish(&cli, out, nofile, started_unix_ms, tool_start)
        .await
}

/// The run's settings and shared counters as every worker needs them, built from the command line
/// (by the coordinator and, from the same command line, by each shard).
pub fn shared_state(cli: &Cli, region: &'static Region) -> anyhow::Result<Arc<Shared>> {
    let c = &cli.common;
    let target = parse_target(&c.target)?;
    let headers = c
        .publish_header
        .iter()
        .map(|h| HeaderTemplate::parse(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let host = match target.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", target.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", target.port()),
    };
    let topics: Vec<String> = (0..c.topics)
        .map(|i| format!("{}{i}", c.topic_prefix))
        .collect();
    let source_ips = if target.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) || target.is_ipv4() {
        c.source_ips
    } else {
        0
    };
    let leave_drain_timeout = match &cli.mode {
        Mode::Churn(a) => a.leave_drain_timeout,
        _ => Duration::from_secs(2),
    };
    let cfg = RunConfig {
        target,
        host,
        source_ips,
        realtime_path: c.realtime_path.clone(),
        connect_concurrency: c.connect_concurrency.max(1),
        control_conns: c.control_conns,
        subs_per_client: c.subs_per_client as usize,
        clock: c.clock,
        leave_drain_timeout,
        read_buffer: c.read_buffer.max(512),
        publish: PublishTemplates {
            path: Template::parse(&c.publish_path),
            headers,
            body: Template::parse(&c.publish_body),
            pad: "x".repeat(c.pad_bytes),
        },
    };
    Ok(Arc::new(Shared {
        cfg,
        topics,
        region,
        t0_ns: mono_ns(),
    }))
}

/// Results of a mode's phases, before the workers' final accounting is merged in.
struct ModeOut {
    connect: ConnectReport,
    /// Machine kernel memory before connecting (see `kmem`), for the idle hold's per-connection figure.
    kernel_before: kmem::KernelMem,
    kernel: Option<kmem::KernelPerConn>,
    hold: Option<HoldReport>,
    publish: Option<(PublishReport, Vec<String>)>,
    delivery: Option<DeliveryReport>,
    churn_per_s: Option<f64>,
}

/// Publish-and-deliver phase settings.
struct PublishSpec {
    plan: Plan,
    label: &'static str,
    churn_per_s: Option<f64>,
    timeout: Duration,
}

impl Coord {
    async fn run_mode(&mut self, cli: &Cli) -> anyhow::Result<ModeOut> {
        let c = &cli.common;
        let kernel_before = kmem::sample();
        let connect = self.connect_phase(c.connections, c.connect_timeout).await;
        let mut out = ModeOut {
            connect,
            kernel_before,
            kernel: None,
            hold: None,
            publish: None,
            delivery: None,
            churn_per_s: None,
        };
        let plan = |count: Option<u64>, duration: Option<Duration>, rate: f64| Plan {
            count,
            duration,
            rate,
            in_flight: c.in_flight.max(1),
        };
        match &cli.mode {
            Mode::Idle(a) => {
                // Pooled control connections are not part of "a subscribed client": close them before
                // the memory figure is taken after the hold.
                self.broadcast(|| Cmd::DropControlConns);
                let before = self.samples.first().map(|s| s.sample);
                let after_connect = self.mark("hold_start");
                let end = self.t() + a.hold.as_secs_f64();
                while self.t() < end {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.tick("hold");
                }
                let m = self.mark("after_hold");
                out.kernel = Some(kmem::KernelPerConn::between(
                    std::mem::take(&mut out.kernel_before),
                    kmem::sample(),
                    out.connect.connected,
                ));
                let connected = out.connect.connected.max(1) as f64;
                let server = before
                    .zip(m.server)
                    .map(|(b, a)| procstat::ServerDelta::between(&b, &a));
                out.hold = Some(HoldReport {
                    wall_s: m.t_s - after_connect.t_s,
                    server,
                    server_rss_bytes_per_conn: server
                        .map(|d| d.rss_delta_kb as f64 * 1024.0 / connected),
                    server_pss_bytes_per_conn: server
                        .and_then(|d| d.pss_delta_kb)
                        .map(|p| p as f64 * 1024.0 / connected),
                    server_cpu_ns_idle: after_connect.server_delta(&m).map(|d| d.cpu_ns),
                });
                if !a.no_verify {
                    let n = c.topics;
                    let spec = PublishSpec {
                        plan: Plan {
                            in_flight: c.in_flight.clamp(1, n as usize),
                            ..plan(Some(n), None, 0.0)
                        },
                        label: "verify",
                        churn_per_s: None,
                        timeout: c.timeout,
                    };
                    self.publish_phase(spec, &mut out).await?;
                }
            }
            Mode::Fanout(a) => {
                let spec = PublishSpec {
                    plan: plan(Some(a.messages), None, 0.0),
                    label: "fanout",
                    churn_per_s: None,
                    timeout: c.timeout,
                };
                self.publish_phase(spec, &mut out).await?;
            }
            Mode::Throughput(a) => {
                let spec = PublishSpec {
                    plan: plan(None, Some(a.duration), a.rate.max(0.0)),
                    label: "throughput",
                    churn_per_s: None,
                    timeout: c.timeout,
                };
                self.publish_phase(spec, &mut out).await?;
            }
            Mode::Churn(a) => {
                let spec = PublishSpec {
                    plan: plan(
                        None,
                        Some(a.throughput.duration),
                        a.throughput.rate.max(0.0),
                    ),
                    label: "churn",
                    churn_per_s: Some(a.churn_rate.max(0.0)),
                    timeout: c.timeout,
                };
                out.churn_per_s = spec.churn_per_s;
                self.publish_phase(spec, &mut out).await?;
            }
        }
        Ok(out)
    }

    async fn connect_phase(&mut self, n: u64, timeout: Duration) -> ConnectReport {
        let m0 = self.mark("before_connect");
        let overflows0 = procstat::tcp_ext_counter("ListenOverflows");
        let start = mono_ns();
        let threads = self.workers.len();
        for (w, tx) in self.workers.iter().enumerate() {
            let indices: Vec<u64> = (w as u64..n).step_by(threads).collect();
            let _ = tx.send(Cmd::Connect(indices));
        }
        let deadline = start + timeout.as_nanos() as u64;
        loop {
            let done = self.sum(|s| &s.connect_ok) + self.sum(|s| &s.connect_failed);
            if done >= n || mono_ns() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.tick("connect");
        }
        let end = self.max(|s| &s.last_connect_ns).max(start);
        let m1 = self.mark("after_connect");
        let listen_overflows = overflows0
            .zip(procstat::tcp_ext_counter("ListenOverflows"))
            .map(|(a, b)| b.saturating_sub(a));
        let ok = self.sum(|s| &s.connect_ok);
        let failed = self.sum(|s| &s.connect_failed);
        let wall_s = (end - start) as f64 / 1e9;
        let server = m0.server_delta(&m1);
        let per = ok.max(1) as f64;
        ConnectReport {
            requested: n,
            connected: ok,
            failed,
            wall_s,
            rate_per_s: if wall_s > 0.0 {
                ok as f64 / wall_s
            } else {
                0.0
            },
            handshake_us: Percentiles::default(),
            server,
            server_cpu_us_per_conn: server.map(|d| d.cpu_ns as f64 / 1000.0 / per),
            server_rss_bytes_per_conn: server.map(|d| d.rss_delta_kb as f64 * 1024.0 / per),
            listen_overflows,
            tool: m0.tool_delta(&m1),
        }
    }

    /// Publishes per `spec` (optionally with churn), then waits until every streaming client has all
    /// required deliveries or `spec.timeout` passes.
    async fn publish_phase(&mut self, spec: PublishSpec, out: &mut ModeOut) -> anyhow::Result<()> {
        let threads = self.workers.len() as f64;
        let hist0 = self.scrape_histogram().await;
        let ev0 = self.sum(|s| &s.events);
        let m0 = self.mark(&format!("{}_start", spec.label));
        if let Some(r) = spec.churn_per_s.filter(|r| *r > 0.0) {
            self.broadcast(|| Cmd::StartChurn {
                per_sec: r / threads,
            });
        }
        let (tx, mut rx) = oneshot::channel();
        self.publisher
            .send(publisher::Run {
                plan: spec.plan,
                reply: tx,
            })
            .map_err(|_| anyhow::anyhow!("publisher thread is gone"))?;
        let outcome = loop {
            tokio::select! {
                r = &mut rx => break r.context("publisher thread died")?,
                _ = tokio::time::sleep(Duration::from_millis(20)) => self.tick(spec.label),
            }
        };
        let publish_end_t = self.t();
        let ev1 = self.sum(|s| &s.events);
        if spec.churn_per_s.is_some() {
            self.broadcast(|| Cmd::StopChurn);
            let deadline = self.t() + spec.timeout.as_secs_f64();
            while (self.sum(|s| &s.connecting) > 0 || self.sum(|s| &s.leaving) > 0)
                && self.t() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
                self.tick("churn-stop");
            }
        }
        let targets = self.shared.sent_per_topic();
        let deadline = self.t() + spec.timeout.as_secs_f64();
        let (complete, remaining) = loop {
            let st = self.status(&targets).await;
            if st.remaining == 0 {
                break (true, 0);
            }
            if self.t() > deadline {
                break (false, st.remaining);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.tick("drain");
        };
        let last_event = self.max(|s| &s.last_event_ns);
        let m1 = self.mark(&format!("{}_end", spec.label));
        let server_histogram = match (hist0, self.scrape_histogram().await) {
            (Some(a), Some(b)) => self.metrics.as_ref().map(|(_, name)| a.diff(&b, name)),
            _ => None,
        };
        let delivered = self.sum(|s| &s.events) - ev0;
        let ttl = last_event.saturating_sub(outcome.first_send_ns) as f64 / 1e9;
        let server = m0.server_delta(&m1);
        let tool = m0.tool_delta(&m1);
        let per = delivered.max(1) as f64;
        let pub_wall = outcome.last_ack_ns.saturating_sub(outcome.first_send_ns) as f64 / 1e9;
        out.publish = Some((
            PublishReport {
                planned: spec.plan.count,
                sent: outcome.sent,
                ok: outcome.ok,
                errors: outcome.errors,
                recipients_reported: outcome.recipients,
                wall_s: pub_wall,
                rate_per_s: if pub_wall > 0.0 {
                    outcome.sent as f64 / pub_wall
                } else {
                    0.0
                },
                rtt_us: Percentiles::of(&outcome.rtt_us),
            },
            outcome.error_samples,
        ));
        let sustained = spec.plan.duration.map(|_| {
            let d = (publish_end_t - m0.t_s).max(1e-9);
            (ev1 - ev0) as f64 / d
        });
        out.delivery = Some(DeliveryReport {
            expected: 0, // filled from the final accounting
            delivered,
            complete,
            remaining,
            time_to_last_delivery_s: ttl,
            deliveries_per_s: if ttl > 0.0 {
                delivered as f64 / ttl
            } else {
                0.0
            },
            sustained_deliveries_per_s: sustained,
            server,
            server_cpu_ns_per_delivery: server.map(|d| d.cpu_ns as f64 / per),
            tool,
            tool_cpu_ns_per_delivery: (tool.cpu_user_ns + tool.cpu_sys_ns) as f64 / per,
            server_histogram,
        });
        Ok(())
    }

    async fn finish(
        mut self,
        cli: &Cli,
        mut out: ModeOut,
        nofile: u64,
        started_unix_ms: u64,
        tool_start: Mark,
    ) -> anyhow::Result<Report> {
        self.tick("finish");
        let targets = self.shared.sent_per_topic();
        // Read before the shards exit with their workers' Finish.
        let shard_rss_kb = self.shards.as_ref().map_or(0, Shards::peak_rss_kb);
        let processes = self.shards.as_ref().map_or(1, Shards::len);
        let mut reports: Vec<WorkerReport> = Vec::new();
        for w in &self.workers {
            let (tx, rx) = oneshot::channel();
            let _ = w.send(Cmd::Finish {
                targets: targets.clone(),
                reply: tx,
            });
            reports.push(rx.await.context("worker thread died")?);
        }
        let (joined, left) = (self.sum(|s| &s.joined), self.sum(|s| &s.left));
        self.workers.clear();
        let (dead_tx, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.publisher, dead_tx));
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        if let Some(s) = self.shards.take() {
            s.wait();
        }
        let tool_end = Mark {
            t_s: self.t(),
            tool: self.tool_cpu(),
            server: None,
        };

        let mut totals = Totals::default();
        let mut latency = worker::histogram();
        let mut handshake = worker::histogram();
        let mut drain_timeouts = 0;
        let mut error_samples = Vec::new();
        for r in &reports {
            totals.add(&r.totals);
            latency.add(&r.latency)?;
            handshake.add(&r.handshake)?;
            drain_timeouts += r.leave_drain_timeouts;
            error_samples.extend(r.error_samples.iter().cloned());
        }
        out.connect.handshake_us = Percentiles::of(&handshake);
        if let Some(d) = out.delivery.as_mut() {
            d.expected = totals.required;
        }

        let mut failures = Vec::new();
        let c = &cli.common;
        if out.connect.connected < c.connections {
            failures.push(format!(
                "{} of {} initial clients connected",
                out.connect.connected, c.connections
            ));
        }
        for (name, v) in [
            ("lost", totals.lost),
            ("duplicated", totals.duplicated),
            ("reordered", totals.reordered),
            ("unexpected", totals.unexpected),
            ("bad_payload", totals.bad_payload),
            ("wrong_id", totals.wrong_id),
            ("stream_errors", totals.stream_errors),
            ("connect_failures", totals.connect_failures),
        ] {
            if v > 0 {
                failures.push(format!("{name}: {v}"));
            }
        }
        if let Some((p, samples)) = &out.publish {
            if p.errors > 0 {
                failures.push(format!("publish errors: {} of {}", p.errors, p.sent));
            }
            error_samples.extend(samples.iter().cloned());
        }
        if let Some(d) = &out.delivery
            && !d.complete
        {
            failures.push(format!(
                "deliveries incomplete after --timeout: {} required deliveries missing",
                d.remaining
            ));
        }
        error_samples.truncate(20);

        let (mode_messages, rate, duration, hold, churn) = match &cli.mode {
            Mode::Idle(a) => (None, None, None, Some(a.hold.as_secs_f64()), None),
            Mode::Fanout(a) => (Some(a.messages), None, None, None, None),
            Mode::Throughput(a) => (
                None,
                Some(a.rate),
                Some(a.duration.as_secs_f64()),
                None,
                None,
            ),
            Mode::Churn(a) => (
                None,
                Some(a.throughput.rate),
                Some(a.throughput.duration.as_secs_f64()),
                None,
                Some(a.churn_rate),
            ),
        };
        let tool_delta = tool_start.tool_delta(&tool_end);
        Ok(Report {
            schema: report::SCHEMA_ID,
            mode: cli.mode.name(),
            ok: failures.is_empty(),
            failures,
            target: self.shared.cfg.host.clone(),
            started_unix_ms,
            config: ConfigEcho {
                connections: c.connections,
                topics: c.topics,
                subs_per_client: c.subs_per_client,
                source_ips: self.shared.cfg.source_ips,
                threads: c.threads as u64,
                connect_concurrency: c.connect_concurrency as u64,
                in_flight: c.in_flight as u64,
                messages: mode_messages,
                rate_per_s: rate,
                duration_s: duration,
                hold_s: hold,
                churn_per_s: churn,
                pad_bytes: c.pad_bytes as u64,
                clock: c.clock,
                publish_path: c.publish_path.clone(),
                publish_body: c.publish_body.clone(),
                timeout_s: c.timeout.as_secs_f64(),
            },
            connect: out.connect,
            hold: out.hold,
            kernel: out.kernel,
            publish: out.publish.map(|(p, _)| p),
            delivery: out.delivery,
            latency_ns: (!latency.is_empty()).then(|| Percentiles::of(&latency)),
            churn: out.churn_per_s.map(|per_s| ChurnReport {
                per_s,
                joined,
                left,
                leave_drain_timeouts: drain_timeouts,
            }),
            accounting: totals,
            server: self.server_pid.map(|pid| ServerInfo {
                pid,
                samples: std::mem::take(&mut self.samples),
            }),
            tool: ToolInfo {
                processes: processes as u64,
                threads: (c.threads * processes) as u64 + 2,
                cpu_user_s: tool_delta.cpu_user_ns as f64 / 1e9,
                cpu_sys_s: tool_delta.cpu_sys_ns as f64 / 1e9,
                cpu_cores: tool_delta.cpu_cores,
                max_rss_kb: procstat::self_max_rss_kb() + shard_rss_kb,
                nofile_limit: nofile,
            },
            timeline: std::mem::take(&mut self.timeline),
            error_samples,
        })
    }
}
