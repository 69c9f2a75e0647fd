//! The JSON report printed on stdout. Its schema is documented once, in [`SCHEMA`], which is also shown by
//! `ringcast-loadgen --help`; a report generator should key on `"schema": "ringcast-loadgen/1"`.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::accounting::Totals;
use crate::kmem::KernelPerConn;
use crate::procstat::{ProcSample, ServerDelta, ToolDelta};
use crate::promhist::PhaseHistogram;

pub const SCHEMA_ID: &str = "ringcast-loadgen/1";

/// Human-readable schema of the report (shown by `--help`).
pub const SCHEMA: &str = r#"OUTPUT (stdout): one JSON object, schema "ringcast-loadgen/1". Progress lines go to stderr.
Units are in the key names (_s seconds, _ns/_us nanoseconds/microseconds, _kb KiB, _bytes bytes,
_per_s per second, _cores share of one CPU core). Every key listed is always present; sections that do
not apply to the mode are null. Server figures are null without --server-pid.

{
  "schema": "ringcast-loadgen/1",
  "mode": "idle" | "fanout" | "throughput" | "churn",
  "ok": bool,                      // no accounting error, no publish error, all deliveries in time
  "failures": [string],            // why ok is false (what --check reports); [] when ok
  "target": "127.0.0.1:8090",
  "started_unix_ms": int,
  "config": { "connections", "topics", "subs_per_client", "source_ips", "threads",
              "connect_concurrency", "in_flight", "messages" (fanout, else null),
              "rate_per_s" (throughput/churn; 0 = unbounded), "duration_s", "hold_s" (idle),
              "churn_per_s" (churn), "pad_bytes", "clock": "monotonic"|"realtime",
              "publish_path", "publish_body", "timeout_s" },
  "connect": {                     // initial connect+PB_CONNECT+subscribe of all clients
    "requested", "connected", "failed": int,
    "wall_s": float,               // first connect started -> last handshake finished
    "rate_per_s": float,           // connected / wall_s
    "handshake_us": PERCENTILES,   // connect -> subscription 204, per client
    "server": SERVER_DELTA|null,
    "server_cpu_us_per_conn": float|null,   // server CPU over the phase / connected
    "server_rss_bytes_per_conn": float|null,// RSS growth over the phase / connected (includes the
                                            // tool's pooled control connections; see hold)
    "listen_overflows": int|null,  // TcpExt ListenOverflows delta over the phase (namespace-wide):
                                   // SYNs dropped on a full accept queue -> 1 s connect outliers
    "tool": TOOL_DELTA },
  "hold": null | {                 // idle mode
    "wall_s", "server": SERVER_DELTA|null,  // from before connect to after the hold
    "server_rss_bytes_per_conn": float|null,// (RSS after hold - RSS before connect) / connected,
                                            // control connections closed
    "server_pss_bytes_per_conn": float|null,
    "server_cpu_ns_idle": int|null },       // server CPU during the hold itself
  "kernel": null | {               // idle mode: machine-wide kernel memory, before connect -> after hold
    "connections": int, "before", "after": KMEM,
    "slab_bytes_per_conn", "sunreclaim_bytes_per_conn": float,   // per client+server pair (loopback:
    "tcp_mem_bytes_per_conn": float|null,                        // both ends are in this kernel)
    "caches_bytes_per_conn": { cache: float } },                 // from /proc/slabinfo when readable
  "publish": null | {
    "planned": int|null, "sent", "ok", "errors": int,
    "recipients_reported": int|null,  // sum of "recipients" (ringcast/baseline) or "messages"
                                      // (notify.pb.js) in publish responses
    "wall_s", "rate_per_s": float,    // first request sent -> last response read
    "rtt_us": PERCENTILES },          // publish request round trip
  "delivery": null | {
    "expected": int,               // required deliveries (sum over client x topic), = accounting.required
    "delivered": int,              // events received during the phase
    "complete": bool,              // every required delivery seen before --timeout
    "remaining": int,              // required deliveries still missing when the wait ended
    "time_to_last_delivery_s": float, // first publish sent -> last event received
    "deliveries_per_s": float,     // delivered / time_to_last_delivery_s
    "sustained_deliveries_per_s": float|null, // throughput/churn: events received while publishing
                                              // / publish duration
    "server": SERVER_DELTA|null,   // first publish -> all delivered (or timeout)
    "server_cpu_ns_per_delivery": float|null,
    "tool": TOOL_DELTA, "tool_cpu_ns_per_delivery": float,
    "server_histogram": null | {   // --metrics-path: the server's histogram over the phase
      "name": string, "count": int, "buckets": [[le_s|null (+Inf), cumulative count]],
      "p50_le_s", "p90_le_s", "p99_le_s", "p999_le_s": float|null,   // bucket upper bounds
      "p50_gt_s", "p99_gt_s": float|null } },  // their buckets' lower edges
  "latency_ns": PERCENTILES|null,  // receive time - "ts" in the payload, first deliveries only
  "churn": null | { "per_s": float, "joined", "left", "leave_drain_timeouts": int },
  "accounting": {                  // over all (client, topic) pairs, whole run
    "events", "delivered", "required", "lost", "duplicated",
    "reordered",                   // arrived after a seq published after it had been acknowledged
    "late",                        // arrived after a seq published concurrently (allowed; 0 with --in-flight 1)
    "unexpected", "unexpected_name", "unexpected_seq", "unexpected_connect",
    "bad_payload", "wrong_id", "no_timestamp", "stream_errors", "connect_failures",
    "clients_with_errors": int },
  "server": null | { "pid": int, "samples": [ { "label": string, PROC_SAMPLE fields } ] },
  "tool": { "processes": int (1, or K shard processes holding the clients; CPU, threads and
            max_rss_kb are over all of them), "threads": int, "cpu_user_s", "cpu_sys_s": float,
            "cpu_cores": float (whole run), "max_rss_kb": int, "nofile_limit": int (per process) },
  "timeline": [ { "t_s", "phase", "connected", "events", "events_per_s", "published",
                  "server_rss_kb": int|null, "server_cpu_cores": float|null } ],   // ~1 per second
  "error_samples": [string]        // first few error messages (connects, streams, publishes)
}
PERCENTILES  = { "count", "min", "p50", "p90", "p99", "p999", "max": int, "mean": float }
SERVER_DELTA = { "rss_before_kb", "rss_after_kb", "rss_delta_kb", "pss_delta_kb"|null,
                 "cpu_ns" (schedstat sum of all threads, else utime+stime), "cpu_stat_ns" (utime+stime),
                 "cpu_cores", "fds_after", "threads_after" }
TOOL_DELTA   = { "cpu_user_ns", "cpu_sys_ns", "cpu_cores" }
KMEM         = { "slab_kb", "sunreclaim_kb", "tcp_mem_pages": int|null, "caches": { cache: bytes } }
PROC_SAMPLE  = { "t_s", "rss_kb", "rss_anon_kb", "rss_file_kb", "pss_kb"|null, "cpu_stat_ns",
                 "utime_ns", "stime_ns", "cpu_sched_ns"|null, "threads", "fds" }
Exit status: 0; 1 when --check is given and ok is false; 2 on a usage or setup error."#;

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub mode: &'static str,
    pub ok: bool,
    pub failures: Vec<String>,
    pub target: String,
    pub started_unix_ms: u64,
    pub config: ConfigEcho,
    pub connect: ConnectReport,
    pub hold: Option<HoldReport>,
    pub kernel: Option<KernelPerConn>,
    pub publish: Option<PublishReport>,
    pub delivery: Option<DeliveryReport>,
    pub latency_ns: Option<Percentiles>,
    pub churn: Option<ChurnReport>,
    pub accounting: Totals,
    pub server: Option<ServerInfo>,
    pub tool: ToolInfo,
    pub timeline: Vec<TimelinePoint>,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ConfigEcho {
    pub connections: u64,
    pub topics: u64,
    pub subs_per_client: u64,
    pub source_ips: u32,
    pub threads: u64,
    pub connect_concurrency: u64,
    pub in_flight: u64,
    pub messages: Option<u64>,
    pub rate_per_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub hold_s: Option<f64>,
    pub churn_per_s: Option<f64>,
    pub pad_bytes: u64,
    pub clock: crate::payload::Clock,
    pub publish_path: String,
    pub publish_body: String,
    pub timeout_s: f64,
}

#[derive(Debug, Serialize, Clone, Copy, Default)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ConnectReport {
    pub requested: u64,
    pub connected: u64,
    pub failed: u64,
    pub wall_s: f64,
    pub rate_per_s: f64,
    pub handshake_us: Percentiles,
    pub server: Option<ServerDelta>,
    pub server_cpu_us_per_conn: Option<f64>,
    pub server_rss_bytes_per_conn: Option<f64>,
    pub listen_overflows: Option<u64>,
    pub tool: ToolDelta,
}

#[derive(Debug, Serialize)]
pub struct HoldReport {
    pub wall_s: f64,
    pub server: Option<ServerDelta>,
    pub server_rss_bytes_per_conn: Option<f64>,
    pub server_pss_bytes_per_conn: Option<f64>,
    pub server_cpu_ns_idle: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub planned: Option<u64>,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub recipients_reported: Option<u64>,
    pub wall_s: f64,
    pub rate_per_s: f64,
    pub rtt_us: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct DeliveryReport {
    pub expected: u64,
    pub delivered: u64,
    pub complete: bool,
    pub remaining: u64,
    pub time_to_last_delivery_s: f64,
    pub deliveries_per_s: f64,
    pub sustained_deliveries_per_s: Option<f64>,
    pub server: Option<ServerDelta>,
    pub server_cpu_ns_per_delivery: Option<f64>,
    pub tool: ToolDelta,
    pub tool_cpu_ns_per_delivery: f64,
    pub server_histogram: Option<PhaseHistogram>,
}

#[derive(Debug, Serialize)]
pub struct ChurnReport {
    pub per_s: f64,
    pub joined: u64,
    pub left: u64,
    pub leave_drain_timeouts: u64,
}

#[derive(Debug, Serialize)]
pub struct ServerInfo {
    pub pid: u32,
    pub samples: Vec<LabeledSample>,
}

#[derive(Debug, Serialize)]
pub struct LabeledSample {
    pub label: String,
    #[serde(flatten)]
    pub sample: ProcSample,
}

#[derive(Debug, Serialize)]
pub struct ToolInfo {
    /// Processes holding the clients (1: this one; K > 1: K shards, see `shard`).
    pub processes: u64,
    pub threads: u64,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub cpu_cores: f64,
    pub max_rss_kb: u64,
    pub nofile_limit: u64,
}

#[derive(Debug, Serialize, Clone)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub phase: &'static str,
    pub connected: u64,
    pub events: u64,
    pub events_per_s: f64,
    pub published: u64,
    pub server_rss_kb: Option<u64>,
    pub server_cpu_cores: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(p.min, 1);
        assert_eq!(p.max, 1000);
        assert!((499..=501).contains(&p.p50));
        assert_eq!(Percentiles::of(&Histogram::new(3).unwrap()).count, 0);
    }
}
