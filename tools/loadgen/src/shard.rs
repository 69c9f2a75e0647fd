//! Holding more clients than one process may open descriptors: the clients are spread over shard
//! processes, each with its own `RLIMIT_NOFILE`.
//!
//! Design: the process started by the user stays the coordinator and the publisher (and samples the
//! server, once); it re-executes itself K times with the same command line plus a hidden
//! `--shard FD:FIRST:SLOTS`. A shard runs `--threads` ordinary connection workers and nothing else.
//! To the coordinator each shard worker is just another worker slot:
//! * live counters (connected, events, last event time, …) are in the run's shared mapping (`shm`),
//!   whose descriptor the shard inherits, so progress and phase ends are read exactly as for a local
//!   thread;
//! * the publisher's per-topic counters are in the same mapping, so a shard's delivery accounting
//!   reads the same values at the same moments as a local worker would — the lost / duplicated /
//!   reordered verdicts stay exact;
//! * the coordinator's commands ([`Cmd`]) go to the shard as JSON lines on its stdin, and the two that
//!   expect an answer (`Status`, `Finish`) get it as a JSON line on its stdout. A worker's final
//!   report carries its histograms as raw bucket counts ([`Counts`]), so the coordinator merges
//!   shards exactly as it merges threads (`Histogram::add`, `Totals::add`): the merged percentiles
//!   are those of one histogram that saw every sample.
//!
//! A shard exits when its workers have finished, when its stdin closes, or when the parent dies
//! (`PR_SET_PDEATHSIG`), so a killed run leaves no shard behind.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::RawFd;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::accounting::Totals;
use crate::cli::Cli;
use crate::shm::{Layout, Region};
use crate::worker::{self, Cmd, Status, WorkerReport};
use crate::{modes, net, procstat};

/// Descriptors a process needs besides its client sockets: ~64 for the runtime, stdio, the shared
/// mapping, `/proc` reads and the pipes to its shards.
pub const FD_RESERVE: u64 = 64;

/// Most shard processes one run starts.
pub const MAX_PROCESSES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error(
        "{clients} connections need about {needed} file descriptors but RLIMIT_NOFILE is {nofile}; \
         use more --processes, fewer connections or fewer --control-conns"
    )]
    TooManyClients {
        clients: u64,
        needed: u64,
        nofile: u64,
    },
    #[error("--processes must be at most {MAX_PROCESSES}")]
    TooManyProcesses,
    #[error("--shard expects FD:FIRST_SLOT:SLOTS, got {0:?}")]
    BadSpec(String),
    #[error("cannot start shard process {index}: {source}")]
    Spawn {
        index: usize,
        source: std::io::Error,
    },
    #[error("cannot find this executable to start shards: {0}")]
    CurrentExe(std::io::Error),
}

/// What one process must hold, for sizing.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// Client sockets at the peak (initial clients plus churn joins in flight).
    pub clients: u64,
    /// Pooled control connections over a process's worker threads.
    pub control: u64,
    /// Publish connections (the coordinator's process only).
    pub publish: u64,
}

/// How many processes hold the clients: 1 = this process (no shards), K > 1 = K shards (this
/// process then holds none). `requested` 0 = as few as the descriptor limit allows.
pub fn processes(requested: usize, need: Need, nofile: u64) -> Result<usize, ShardError> {
    if requested > MAX_PROCESSES {
        return Err(ShardError::TooManyProcesses);
    }
    let single = need.clients + need.control + need.publish + FD_RESERVE;
    let per_shard = nofile.saturating_sub(need.control + FD_RESERVE);
    let k = match requested {
        0 if single <= nofile => 1,
        0 => (need.clients.div_ceil(per_shard.max(1)) as usize).max(2),
        k => k,
    };
    let needed = if k == 1 {
        single
    } else {
        need.clients.div_ceil(k as u64) + need.control + FD_RESERVE
    };
    if needed > nofile || k > MAX_PROCESSES {
        return Err(ShardError::TooManyClients {
            clients: need.clients,
            needed,
            nofile,
        });
    }
    Ok(k)
}

/// The hidden `--shard` argument: the inherited descriptor of the shared mapping, the shard's first
/// worker slot and the run's number of slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    pub fd: RawFd,
    pub first_slot: usize,
    pub slots: usize,
}

impl FromStr for ShardSpec {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ShardError::BadSpec(s.to_string());
        let mut it = s.split(':');
        let mut next = || it.next().ok_or_else(bad);
        let spec = ShardSpec {
            fd: next()?.parse().map_err(|_| bad())?,
            first_slot: next()?.parse().map_err(|_| bad())?,
            slots: next()?.parse().map_err(|_| bad())?,
        };
        if it.next().is_some() || spec.first_slot >= spec.slots {
            return Err(bad());
        }
        Ok(spec)
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.fd, self.first_slot, self.slots)
    }
}

/// A histogram as its non-empty buckets: (lowest value of the bucket, count). Rebuilding from them
/// gives the same buckets, so every percentile, the min, the max and the mean come out unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts(pub Vec<(u64, u64)>);

impl Counts {
    pub fn of(h: &Histogram<u64>) -> Counts {
        Counts(
            h.iter_recorded()
                .map(|v| {
                    (
                        h.lowest_equivalent(v.value_iterated_to()),
                        v.count_at_value(),
                    )
                })
                .collect(),
        )
    }

    /// Adds the counts into `h` (which must have the bounds of the worker histograms).
    pub fn add_to(&self, h: &mut Histogram<u64>) {
        for &(v, n) in &self.0 {
            h.saturating_record_n(v, n);
        }
    }
}

/// A worker's final report on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireReport {
    pub totals: Totals,
    pub latency: Counts,
    pub handshake: Counts,
    pub leave_drain_timeouts: u64,
    pub error_samples: Vec<String>,
}

impl WireReport {
    fn of(r: &WorkerReport) -> WireReport {
        WireReport {
            totals: r.totals,
            latency: Counts::of(&r.latency),
            handshake: Counts::of(&r.handshake),
            leave_drain_timeouts: r.leave_drain_timeouts,
            error_samples: r.error_samples.clone(),
        }
    }

    fn into_report(self) -> WorkerReport {
        let mut latency = worker::histogram();
        let mut handshake = worker::histogram();
        self.latency.add_to(&mut latency);
        self.handshake.add_to(&mut handshake);
        WorkerReport {
            totals: self.totals,
            latency,
            handshake,
            leave_drain_timeouts: self.leave_drain_timeouts,
            error_samples: self.error_samples,
        }
    }
}

/// A [`Cmd`] without its reply channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum WireCmd {
    Connect(Vec<u64>),
    DropControlConns,
    StartChurn { per_sec: f64 },
    StopChurn,
    Status { targets: Vec<u64> },
    Finish { targets: Vec<u64> },
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    slot: usize,
    cmd: WireCmd,
}

#[derive(Debug, Serialize, Deserialize)]
enum WireReply {
    Status(Status),
    Finish(WireReport),
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    slot: usize,
    reply: WireReply,
}

/// The reply channel a command waits on, kept by the proxy while the shard answers.
enum Pending {
    None,
    Status(oneshot::Sender<Status>),
    Finish(oneshot::Sender<WorkerReport>),
}

fn split(cmd: Cmd) -> (WireCmd, Pending) {
    match cmd {
        Cmd::Connect(v) => (WireCmd::Connect(v), Pending::None),
        Cmd::DropControlConns => (WireCmd::DropControlConns, Pending::None),
        Cmd::StartChurn { per_sec } => (WireCmd::StartChurn { per_sec }, Pending::None),
        Cmd::StopChurn => (WireCmd::StopChurn, Pending::None),
        Cmd::Status { targets, reply } => (WireCmd::Status { targets }, Pending::Status(reply)),
        Cmd::Finish { targets, reply } => (WireCmd::Finish { targets }, Pending::Finish(reply)),
    }
}

/// The running shards of a run, seen from the coordinator.
pub struct Shards {
    children: Vec<Child>,
    threads: Vec<JoinHandle<()>>,
}

impl Shards {
    /// Starts `k` shards of `threads` workers each; returns them with one command channel per worker
    /// slot (slot `i` = shard `i / threads`, thread `i % threads`).
    pub fn spawn(
        k: usize,
        threads: usize,
        region: &'static Region,
    ) -> Result<(Shards, Vec<mpsc::UnboundedSender<Cmd>>), ShardError> {
        let exe = std::env::current_exe().map_err(ShardError::CurrentExe)?;
        let args: Vec<_> = std::env::args_os().skip(1).collect();
        let slots = k * threads;
        let mut shards = Shards {
            children: Vec::new(),
            threads: Vec::new(),
        };
        let mut senders = Vec::new();
        for index in 0..k {
            let spec = ShardSpec {
                fd: region.fd(),
                first_slot: index * threads,
                slots,
            };
            let mut child = Command::new(&exe)
                .args(&args)
                .arg("--shard")
                .arg(spec.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|source| ShardError::Spawn { index, source })?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                unreachable!("both pipes were requested");
            };
            shards.children.push(child);
            let stdin = Arc::new(Mutex::new(stdin));
            let mut reply_txs = Vec::new();
            for slot in spec.first_slot..spec.first_slot + threads {
                let (tx, rx) = mpsc::unbounded_channel();
                let (reply_tx, reply_rx) = std_mpsc::channel();
                reply_txs.push(reply_tx);
                senders.push(tx);
                let stdin = stdin.clone();
                shards.threads.push(std::thread::spawn(move || {
                    proxy(slot, rx, &stdin, reply_rx)
                }));
            }
            let first = spec.first_slot;
            shards.threads.push(std::thread::spawn(move || {
                route_replies(BufReader::new(stdout), first, &reply_txs);
            }));
        }
        Ok((shards, senders))
    }

    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.children.iter().map(Child::id)
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// CPU of the shards so far, (user ns, system ns): live ones from `/proc`, reaped ones from
    /// `RUSAGE_CHILDREN`.
    pub fn cpu_ns(&self) -> (u64, u64) {
        let (mut u, mut s) = procstat::children_cpu_ns();
        for pid in self.pids() {
            if let Ok(p) = procstat::sample(&pid.to_string(), 0.0) {
                u += p.utime_ns;
                s += p.stime_ns;
            }
        }
        (u, s)
    }

    /// Sum of the shards' peak RSS (read before they exit).
    pub fn peak_rss_kb(&self) -> u64 {
        self.pids().filter_map(procstat::peak_rss_kb).sum()
    }

    /// Waits for every shard to exit (after the workers' `Finish`), and for the proxy threads.
    pub fn wait(mut self) {
        for c in &mut self.children {
            let _ = c.wait();
        }
        self.children.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Shards {
    /// A coordinator that gives up early must not leave shards holding thousands of connections.
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Forwards one worker slot's commands to its shard and each answer back to the waiting coordinator.
/// A shard that died drops the reply channel: the coordinator sees the worker as gone.
fn proxy(
    slot: usize,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    stdin: &Mutex<ChildStdin>,
    replies: std_mpsc::Receiver<WireReply>,
) {
    while let Some(cmd) = rx.blocking_recv() {
        let (cmd, pending) = split(cmd);
        let finish = matches!(cmd, WireCmd::Finish { .. });
        let Ok(mut line) = serde_json::to_vec(&Request { slot, cmd }) else {
            return;
        };
        line.push(b'\n');
        let sent = {
            let mut w = stdin.lock().unwrap_or_else(|e| e.into_inner());
            w.write_all(&line).and_then(|()| w.flush())
        };
        if sent.is_err() {
            return;
        }
        // Only Status and Finish are answered; wait for the answer only then.
        match pending {
            Pending::None => continue,
            Pending::Status(tx) => match replies.recv() {
                Ok(WireReply::Status(s)) => {
                    let _ = tx.send(s);
                }
                _ => return,
            },
            Pending::Finish(tx) => match replies.recv() {
                Ok(WireReply::Finish(r)) => {
                    let _ = tx.send(r.into_report());
                }
                _ => return,
            },
        }
        if finish {
            return;
        }
    }
}

fn route_replies(stdout: impl BufRead, first: usize, txs: &[std_mpsc::Sender<WireReply>]) {
    for line in stdout.lines() {
        let Ok(line) = line else { return };
        let Ok(r) = serde_json::from_str::<Reply>(&line) else {
            eprintln!("ringcast-loadgen: unreadable line from a shard: {line:.200}");
            return;
        };
        if let Some(tx) = r.slot.checked_sub(first).and_then(|i| txs.get(i)) {
            let _ = tx.send(r.reply);
        }
    }
}

/// The shard side: `ringcast-loadgen … --shard FD:FIRST:SLOTS`.
pub fn child_main(cli: &Cli, spec: ShardSpec) -> ExitCode {
    match serve(cli, spec) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "ringcast-loadgen shard {}: error: {e:#}",
                spec.first_slot / cli.common.threads.max(1)
            );
            ExitCode::from(2)
        }
    }
}

fn serve(cli: &Cli, spec: ShardSpec) -> anyhow::Result<()> {
    // SAFETY: prctl with a signal number; no pointers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: no preconditions. The parent may have died before the prctl above.
    if unsafe { libc::getppid() } == 1 {
        anyhow::bail!("the coordinator is gone");
    }
    net::raise_nofile_limit()?;
    let region = Region::open(spec.fd, Layout::new(spec.slots, cli.common.topics as usize))?;
    let shared = modes::shared_state(cli, region)?;
    let threads = cli.common.threads;
    let mut workers = Vec::new();
    let mut handles = Vec::new();
    for j in 0..threads {
        let stats = region.worker_stats(spec.first_slot + j);
        let (tx, h) = worker::spawn(shared.clone(), stats, spec.slots)?;
        workers.push(Some(tx));
        handles.push(h);
    }
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let req: Request = serde_json::from_str(&line?)?;
        let local = req
            .slot
            .checked_sub(spec.first_slot)
            .filter(|i| *i < threads)
            .ok_or_else(|| anyhow::anyhow!("command for slot {} of another shard", req.slot))?;
        let Some(tx) = workers[local].as_ref() else {
            anyhow::bail!("command for slot {} after its Finish", req.slot);
        };
        let reply = match req.cmd {
            WireCmd::Connect(v) => {
                let _ = tx.send(Cmd::Connect(v));
                None
            }
            WireCmd::DropControlConns => {
                let _ = tx.send(Cmd::DropControlConns);
                None
            }
            WireCmd::StartChurn { per_sec } => {
                let _ = tx.send(Cmd::StartChurn { per_sec });
                None
            }
            WireCmd::StopChurn => {
                let _ = tx.send(Cmd::StopChurn);
                None
            }
            WireCmd::Status { targets } => {
                let (reply, rx) = oneshot::channel();
                let _ = tx.send(Cmd::Status { targets, reply });
                Some(WireReply::Status(rx.blocking_recv()?))
            }
            WireCmd::Finish { targets } => {
                let (reply, rx) = oneshot::channel();
                let _ = tx.send(Cmd::Finish { targets, reply });
                workers[local] = None;
                Some(WireReply::Finish(WireReport::of(&rx.blocking_recv()?)))
            }
        };
        if let Some(reply) = reply {
            serde_json::to_writer(
                &mut out,
                &Reply {
                    slot: req.slot,
                    reply,
                },
            )?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        if workers.iter().all(Option::is_none) {
            break;
        }
    }
    drop(workers);
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Percentiles;

    fn need(clients: u64) -> Need {
        Need {
            clients,
            control: 64,
            publish: 16,
        }
    }

    #[test]
    fn one_process_while_it_fits() {
        assert_eq!(processes(0, need(19_000), 20_000).unwrap(), 1);
        assert_eq!(processes(0, need(19_856), 20_000).unwrap(), 1);
        assert_eq!(processes(0, need(19_857), 20_000).unwrap(), 2);
        // Past one process's limit: as few shards as hold the clients.
        assert_eq!(processes(0, need(19_900), 20_000).unwrap(), 2);
        assert_eq!(processes(0, need(50_000), 20_000).unwrap(), 3);
        // Forced.
        assert_eq!(processes(2, need(100), 20_000).unwrap(), 2);
        assert!(matches!(
            processes(1, need(19_900), 20_000),
            Err(ShardError::TooManyClients { .. })
        ));
        assert!(matches!(
            processes(65, need(100), 20_000),
            Err(ShardError::TooManyProcesses)
        ));
    }

    #[test]
    fn spec_round_trip() {
        let s = ShardSpec {
            fd: 5,
            first_slot: 2,
            slots: 4,
        };
        assert_eq!(s.to_string().parse::<ShardSpec>().unwrap(), s);
        for bad in ["", "5:2", "5:2:4:1", "x:0:1", "5:4:4"] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
    }

    fn recorded(values: impl Iterator<Item = u64>) -> Histogram<u64> {
        let mut h = worker::histogram();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn histogram_counts_round_trip_exactly() {
        let h = recorded((1..5_000u64).map(|i| i * i * 37 + 1_000));
        let json = serde_json::to_string(&Counts::of(&h)).unwrap();
        let mut back = worker::histogram();
        serde_json::from_str::<Counts>(&json)
            .unwrap()
            .add_to(&mut back);
        let (a, b) = (Percentiles::of(&h), Percentiles::of(&back));
        assert_eq!(
            (a.count, a.min, a.p50, a.p90, a.p99, a.p999, a.max),
            (b.count, b.min, b.p50, b.p90, b.p99, b.p999, b.max)
        );
        assert!((a.mean - b.mean).abs() < 1e-6 * a.mean);
    }

    #[test]
    fn shards_merge_like_one_histogram() {
        // Two shards' samples merged after the wire = one histogram of all samples.
        let all = recorded((0..10_000u64).map(|i| 500 + i * 13));
        let even = recorded((0..10_000u64).filter(|i| i % 2 == 0).map(|i| 500 + i * 13));
        let odd = recorded((0..10_000u64).filter(|i| i % 2 == 1).map(|i| 500 + i * 13));
        let mut merged = worker::histogram();
        for part in [&even, &odd] {
            let r = WireReport {
                totals: Totals {
                    delivered: part.len(),
                    ..Totals::default()
                },
                latency: Counts::of(part),
                handshake: Counts(vec![]),
                leave_drain_timeouts: 0,
                error_samples: vec![],
            };
            let wire: WireReport =
                serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            merged.add(&wire.into_report().latency).unwrap();
        }
        let (a, b) = (Percentiles::of(&all), Percentiles::of(&merged));
        assert_eq!(
            (a.count, a.min, a.p50, a.p99, a.max),
            (b.count, b.min, b.p50, b.p99, b.max)
        );
    }

    #[test]
    fn commands_keep_their_reply_channel_locally() {
        let (tx, _rx) = oneshot::channel();
        let (w, p) = split(Cmd::Status {
            targets: vec![3],
            reply: tx,
        });
        assert!(matches!(w, WireCmd::Status { ref targets } if targets == &[3]));
        assert!(matches!(p, Pending::Status(_)));
        let line = serde_json::to_string(&Request { slot: 1, cmd: w }).unwrap();
        let back: Request = serde_json::from_str(&line).unwrap();
        assert_eq!(back.slot, 1);
        assert!(matches!(split(Cmd::StopChurn).1, Pending::None));
    }
}
