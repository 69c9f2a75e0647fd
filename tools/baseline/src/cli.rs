//! Command line.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use clap::Parser;

/// The conventional tokio + axum implementation of PocketBase's realtime (SSE)
/// protocol, used as the benchmark baseline for ringcast.
#[derive(Debug, Parser)]
#[command(name = "ringcast-baseline", version)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8091")]
    pub http: SocketAddr,

    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<NonZeroUsize>,

    /// Messages queued per client before it counts as too slow and is evicted.
    #[arg(long, default_value = "256")]
    pub channel_capacity: NonZeroUsize,

    /// End a stream after this long without a delivered message ("0s" disables).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// End a stream this long after it started, whatever the traffic ("0s" disables).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub max_lifetime: Duration,
}

/// `0s` on the command line means "no timer".
pub fn nonzero(duration: Duration) -> Option<Duration> {
    (!duration.is_zero()).then_some(duration)
}
