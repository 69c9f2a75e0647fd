//! Command line. Options shared by all modes are global (they may appear before or after the mode).

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::payload::Clock;
use crate::shard::ShardSpec;

/// Default publish body for ringcast / the baseline (`POST /api/publish`) and PocketBase's notify hook
/// (`POST /api/notify`): both take `{"topic","data"}`.
pub const DEFAULT_BODY: &str =
    r#"{"topic":"{topic}","data":{"seq":{seq},"ts":{ts_ns},"pad":"{pad}"}}"#;

const ABOUT: &str =
    "Load generator and delivery checker for PocketBase-style realtime (SSE) servers";

const LONG_ABOUT: &str = r#"Load generator and delivery checker for PocketBase-style realtime (SSE) servers
(ringcast, the tokio+axum baseline, PocketBase itself), loopback only.

Each client: GET /api/realtime (chunked SSE), reads PB_CONNECT for its client id, then POST /api/realtime
{"clientId", "subscriptions"} from the same source address. Client i subscribes to topic i mod --topics
(and the next --subs-per-client - 1 topics). Messages are published with the --publish-* templates;
message k goes to topic k mod --topics and carries a per-topic "seq" and a timestamp "ts" in its data.
Every event is checked: id equals the client's id, event name is one of its subscriptions, seq arrives
once, in order, and within the subscription's window (lost/duplicated/reordered/unexpected).

Publish templates: placeholders {topic}, {seq}, {ts_ns} (alias {ts}), {pad} (--pad-bytes 'x's), {index}
(global message number) in --publish-path, --publish-header values and --publish-body; everything else,
braces included, is literal. The event data must contain "seq":N (and "ts":N for latency).

MODES
  idle        N connections held for --hold; server RSS per connection, connect cost and rate
  fanout      N subscribers, --messages M (spread over the topics), at most --in-flight publishes
              outstanding; waits for every delivery: time to last delivery, deliveries/s, CPU/delivery
  throughput  publishes at --rate for --duration (0 = as fast as --in-flight allows); sustained
              deliveries/s and latency
  churn       like throughput while --churn-rate clients/s leave and as many join

EXAMPLES
  # PocketBase with a copy of notify.pb.js without the superuser guard
  ringcast-loadgen --target 127.0.0.1:39090 --publish-path /api/notify --check fanout -n 1000 --messages 10
  # ringcast / baseline, with server measurements
  ringcast-loadgen --target 127.0.0.1:39100 --server-pid $PID --check fanout -n 10000 --messages 100
  ringcast-loadgen --target 127.0.0.1:39100 --server-pid $PID idle -n 10000 --hold 10s
  ringcast-loadgen --target 127.0.0.1:39100 throughput -n 2000 --rate 2000 --duration 10s
  ringcast-loadgen --target 127.0.0.1:39100 --check churn -n 2000 --rate 500 --duration 10s --churn-rate 200
  # PocketBase with the guarded hook: superuser token in a header
  ringcast-loadgen --publish-path /api/notify --publish-header 'Authorization: Bearer TOKEN' fanout"#;

#[derive(Debug, Parser)]
#[command(name = "ringcast-loadgen", version, about = ABOUT, long_about = LONG_ABOUT,
          after_long_help = crate::report::SCHEMA)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Debug, Args)]
pub struct Common {
    /// Server address (loopback only): IP:PORT, localhost:PORT or http://IP:PORT.
    #[arg(long, global = true, default_value = "127.0.0.1:8090")]
    pub target: String,

    /// PID of the server: sample its RSS and CPU time around each phase.
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,

    /// Number of SSE clients. More than one process's fd limit allows are spread over shard
    /// processes (see --processes).
    #[arg(short = 'n', long, global = true, default_value_t = 1000)]
    pub connections: u64,

    /// Processes holding the clients: 0 = as few as RLIMIT_NOFILE allows (1 = this one while the
    /// clients fit); K > 1 = K shard processes of --threads workers each, this one then only
    /// coordinates, publishes and samples the server.
    #[arg(long, global = true, default_value_t = 0)]
    pub processes: usize,

    /// Internal: run as a shard of a coordinator (FD:FIRST_SLOT:SLOTS of the shared mapping).
    #[arg(long, global = true, hide = true)]
    pub shard: Option<ShardSpec>,

    /// Scrape the server's Prometheus histogram --server-histogram from this path before and after
    /// each publish phase, e.g. /metrics for ringcast (its publish → last-write split).
    #[arg(long, global = true)]
    pub metrics_path: Option<String>,

    /// Histogram family read from --metrics-path (summed over its label sets, e.g. cores).
    #[arg(
        long,
        global = true,
        default_value = "ringcast_node_publish_last_write_seconds"
    )]
    pub server_histogram: String,

    /// Number of topics; client i subscribes to topic i mod T, message k goes to topic k mod T.
    #[arg(long, global = true, default_value_t = 1)]
    pub topics: u64,

    /// Subscriptions per client (consecutive topics; at most --topics).
    #[arg(long, global = true, default_value_t = 1)]
    pub subs_per_client: u64,

    /// Topic names are PREFIX0, PREFIX1, …
    #[arg(long, global = true, default_value = "lg")]
    pub topic_prefix: String,

    /// Spread client source addresses over 127.0.0.1..=127.0.0.N (0: kernel default).
    #[arg(long, global = true, default_value_t = 16)]
    pub source_ips: u32,

    /// Handshakes (connect + PB_CONNECT + subscribe) in flight at once, over all threads.
    #[arg(long, global = true, default_value_t = 512)]
    pub connect_concurrency: usize,

    /// Connection worker threads (each a single-threaded runtime owning 1/threads of the clients).
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,

    /// Keep-alive connections per worker for subscription POSTs.
    #[arg(long, global = true, default_value_t = 64)]
    pub control_conns: usize,

    /// Path of the realtime endpoint.
    #[arg(long, global = true, default_value = "/api/realtime")]
    pub realtime_path: String,

    /// Publish request path (template).
    #[arg(long, global = true, default_value = "/api/publish")]
    pub publish_path: String,

    /// Publish request body (template).
    #[arg(long, global = true, default_value = DEFAULT_BODY)]
    pub publish_body: String,

    /// Extra publish request header `Name: value` (template); repeatable. Content-Type defaults to
    /// application/json.
    #[arg(long, global = true)]
    pub publish_header: Vec<String>,

    /// Length of the {pad} placeholder.
    #[arg(long, global = true, default_value_t = 0)]
    pub pad_bytes: usize,

    /// Publish requests outstanding at once (one keep-alive connection each).
    #[arg(long, global = true, default_value_t = 16)]
    pub in_flight: usize,

    /// Clock for {ts_ns} and latency.
    #[arg(long, global = true, value_enum, default_value_t = Clock::Monotonic)]
    pub clock: Clock,

    /// Longest wait for outstanding deliveries after publishing ends.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Longest wait for the initial connections.
    #[arg(long, global = true, default_value = "120s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Exit with status 1 unless the run is clean (no lost/duplicated/reordered/unexpected events, no
    /// wrong ids, no failed connects/streams/publishes, everything delivered in time).
    #[arg(long, global = true)]
    pub check: bool,

    /// Pretty-print the JSON report.
    #[arg(long, global = true)]
    pub pretty: bool,

    /// No progress lines on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Per-connection read buffer shared by all clients of a worker, bytes.
    #[arg(long, global = true, default_value_t = 65536, hide = true)]
    pub read_buffer: usize,
}

#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Hold N subscribed connections; measure server memory per connection and connect cost.
    Idle(IdleArgs),
    /// Publish M messages to N subscribers and wait for every delivery.
    Fanout(FanoutArgs),
    /// Publish at a fixed rate for a duration; sustained deliveries/s and latency.
    Throughput(ThroughputArgs),
    /// Throughput while clients leave and join.
    Churn(ChurnArgs),
}

#[derive(Debug, Args)]
pub struct IdleArgs {
    /// How long to hold the connections before the final memory sample.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// Skip the final check that every client still receives (one message per topic).
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Messages to publish (spread round-robin over the topics).
    #[arg(short, long, default_value_t = 100)]
    pub messages: u64,
}

#[derive(Debug, Args)]
pub struct ThroughputArgs {
    /// Publish rate over all topics, messages/s (0 = as fast as --in-flight allows).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

#[derive(Debug, Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub throughput: ThroughputArgs,
    /// Clients leaving per second (and as many joining), over all threads.
    #[arg(long, default_value_t = 100.0)]
    pub churn_rate: f64,
    /// How long a leaving client waits for messages the server acknowledged before it left.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub leave_drain_timeout: Duration,
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Idle(_) => "idle",
            Mode::Fanout(_) => "fanout",
            Mode::Throughput(_) => "throughput",
            Mode::Churn(_) => "churn",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_after_the_mode() {
        let c = Cli::try_parse_from([
            "x",
            "fanout",
            "-n",
            "5",
            "--messages",
            "3",
            "--check",
            "--target",
            "127.0.0.1:1",
        ])
        .unwrap();
        assert_eq!(c.common.connections, 5);
        assert!(c.common.check);
        assert!(matches!(c.mode, Mode::Fanout(FanoutArgs { messages: 3 })));
    }
}
