//! Every server option, with PocketBase's defaults, from flags, `RINGCAST_*`
//! environment variables or a TOML file ([`file`]).

pub mod file;

use crate::auth::AuthArgs;
use crate::core::HistoryTopic;
use clap::{Args, CommandFactory};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on (PocketBase's flag name and default).
    #[arg(long, env = "RINGCAST_HTTP", default_value = "127.0.0.1:8090")]
    pub http: SocketAddr,

    /// Worker threads, one io_uring loop each [default: available cores].
    #[arg(long, env = "RINGCAST_WORKERS")]
    pub workers: Option<usize>,

    /// A stream with no message delivered for this long is ended (zero chunk).
    #[arg(long, env = "RINGCAST_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// A stream is ended this long after it started, whatever its traffic.
    #[arg(long, env = "RINGCAST_MAX_LIFETIME", default_value = "30m", value_parser = humantime::parse_duration)]
    pub max_lifetime: Duration,

    /// A request must arrive completely within this time of its first byte.
    #[arg(long, env = "RINGCAST_HEAD_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub head_timeout: Duration,

    /// A peer that takes nothing of a write for this long is cut off: an
    /// answer, a stream's opening or end, or a stream's queued events.
    #[arg(long, env = "RINGCAST_WRITE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// An idle keep-alive connection (no stream, no request) is closed after this.
    #[arg(long, env = "RINGCAST_KEEPALIVE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Duration,

    /// Allowed CORS origins, comma separated; `*` allows any.
    #[arg(
        long,
        env = "RINGCAST_ORIGINS",
        default_value = "*",
        value_delimiter = ','
    )]
    pub origins: Vec<String>,

    /// Token for the publish and stats APIs (`Authorization: Bearer <token>`).
    /// Without one, only loopback peers may publish.
    #[arg(long, env = "RINGCAST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Bytes that may wait in one client's queue; a client over it is disconnected.
    #[arg(long, env = "RINGCAST_MAX_QUEUE_BYTES", default_value_t = 1 << 20)]
    pub max_queue_bytes: usize,

    /// Realtime streams one client address may hold (loopback addresses are
    /// not limited: local proxies and tools share them); 0: no limit.
    #[arg(long, env = "RINGCAST_MAX_STREAMS_PER_IP", default_value_t = 1000)]
    pub max_streams_per_ip: usize,

    /// Distinct subscription strings one core holds at most; a subscription
    /// request that would add more is refused (503) until some are freed.
    #[arg(
        long,
        env = "RINGCAST_MAX_TOPICS_PER_CORE",
        default_value_t = 1_000_000
    )]
    pub max_topics_per_core: usize,

    /// Largest request body accepted (PocketBase's default: 32 MiB).
    #[arg(long, env = "RINGCAST_MAX_BODY_BYTES", default_value_t = 32 << 20)]
    pub max_body_bytes: usize,

    /// Largest request head (request line and headers) accepted.
    #[arg(long, env = "RINGCAST_MAX_HEADER_BYTES", default_value_t = 64 << 10)]
    pub max_header_bytes: usize,

    /// Capacity of each core's inbox in the cross-core ring; a full ring makes
    /// publishers wait rather than drop.
    #[arg(long, env = "RINGCAST_RING_CAPACITY", default_value_t = 4096)]
    pub ring_capacity: usize,

    /// Serve the demo page at /_/ (live topics, a publish form, the stats);
    /// without an admin token, the page may publish when opened from this
    /// machine (a loopback address or localhost).
    #[arg(long, env = "RINGCAST_DEMO")]
    pub demo: bool,

    /// Topics that keep their recent messages for clients that reconnect,
    /// `PATTERN=N` comma separated: a topic (or a prefix ending in `*`)
    /// keeps its last N custom messages, e.g. `chat*=1000,news=100`.
    #[arg(long, env = "RINGCAST_HISTORY", value_delimiter = ',')]
    pub history: Vec<HistoryTopic>,

    /// Bytes all history may take (split evenly over the cores, each of
    /// which keeps its copy); the oldest messages are evicted first.
    #[arg(long, env = "RINGCAST_HISTORY_MAX_BYTES", default_value_t = 64 << 20)]
    pub history_max_bytes: usize,

    /// What the SSE `id:` of an event says: `client` (PocketBase's: the
    /// client id) or `topic`, where events with history carry their cursor
    /// in a second `id:` line, so that a reconnecting EventSource sends it
    /// back as `Last-Event-ID`.
    #[arg(long, env = "RINGCAST_SSE_IDS", value_enum, default_value_t = SseIds::Client)]
    pub sse_ids: SseIds,

    /// A field added first to the data of every event with history whose
    /// data is a JSON object, holding its cursor: what the JS SDK, which
    /// only sees data, can resume from (e.g. `_cursor`). Off by default:
    /// the data stays as published.
    #[arg(long, env = "RINGCAST_HISTORY_CURSOR_FIELD")]
    pub history_cursor_field: Option<String>,

    /// Write an SSE comment to every stream that has nothing queued this
    /// often (e.g. `25s`), keeping proxies and the idle timeout from ending
    /// quiet streams; off by default, as in PocketBase.
    #[arg(long, env = "RINGCAST_HEARTBEAT", value_parser = humantime::parse_duration)]
    pub heartbeat: Option<Duration>,

    /// Subscriber auth, topic rules and trusted proxies.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Joining a cluster of nodes through Redis.
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

impl Config {
    /// The number of worker cores this config asks for.
    pub fn workers(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, crate::core::MAX_CORES)
    }

    /// What each core of node `node` needs of this config.
    pub fn core_settings(&self, node: crate::core::NodeId) -> crate::core::Settings {
        crate::core::Settings {
            node,
            workers: self.workers(),
            idle_timeout: self.idle_timeout,
            max_lifetime: self.max_lifetime,
            max_queue_bytes: self.max_queue_bytes,
            write_timeout: self.write_timeout,
            // Connections from one address spread over the cores (SO_REUSEPORT).
            max_streams_per_ip: self.max_streams_per_ip.div_ceil(self.workers()),
            max_topics: self.max_topics_per_core,
            history: (!self.history.is_empty()).then(|| crate::core::HistorySettings {
                topics: self.history.clone(),
                max_bytes: self.history_max_bytes / self.workers(),
                epoch: crate::core::history::epoch_for(node.as_str()),
                sse_ids: self.sse_ids == SseIds::Topic,
                cursor_field: self.history_cursor_field.as_deref().map(Into::into),
            }),
        }
    }

    /// What `ringcast serve` uses with no flags: the defaults, changed by any
    /// `RINGCAST_*` environment variables (an invalid one is an error).
    pub fn from_env() -> Result<Config, clap::Error> {
        Self::parse(Wrapper::command())
    }

    fn parse(command: clap::Command) -> Result<Config, clap::Error> {
        use clap::FromArgMatches;
        let matches = command.try_get_matches_from(["ringcast"])?;
        Ok(Wrapper::from_arg_matches(&matches)?.config)
    }
}

/// The flags' defaults, with the environment ignored (an embedding app
/// decides its own settings; see [`Config::from_env`]).
impl Default for Config {
    fn default() -> Config {
        let command = Wrapper::command().mut_args(|arg| arg.env(None::<&'static str>));
        // Every option has a default or is optional: parsing no arguments cannot fail.
        Self::parse(command).expect("the defaults of every option parse")
    }
}

/// What the SSE `id:` of an event says (`--sse-ids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SseIds {
    /// The recipient's client id, as PocketBase writes it.
    Client,
    /// For events with history, their cursor too (a second `id:` line).
    Topic,
}

#[derive(clap::Parser)]
struct Wrapper {
    #[command(flatten)]
    config: Config,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ignores_the_environment() {
        // SAFETY: this test alone touches this variable.
        unsafe { std::env::set_var("RINGCAST_MAX_QUEUE_BYTES", "12345") };
        assert_eq!(Config::from_env().unwrap().max_queue_bytes, 12345);
        assert_eq!(Config::default().max_queue_bytes, 1 << 20);
        unsafe { std::env::set_var("RINGCAST_MAX_QUEUE_BYTES", "lots") };
        assert!(Config::from_env().is_err());
        unsafe { std::env::remove_var("RINGCAST_MAX_QUEUE_BYTES") };
        assert_eq!(Config::default().http.to_string(), "127.0.0.1:8090");
    }
}
