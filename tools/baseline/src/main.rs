//! `ringcast-baseline`: PocketBase's realtime protocol the conventional way —
//! tokio's multi-thread runtime, axum, a `RwLock<HashMap>` broker and one
//! bounded mpsc channel per client. It is the honest alternative ringcast is
//! benchmarked against, so it is written the way a competent Rust developer
//! would write it, not handicapped.
//!
//! Routes: `GET /api/realtime` (SSE stream), `POST /api/realtime` (replace
//! subscriptions), `POST /api/publish` (fan a message out).

mod broker;
mod cli;
mod client_id;
mod error;
mod publish;
mod rlimit;
mod server;
mod sse;
mod subscribe;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::broker::Broker;
use crate::cli::{Args, nonzero};
use crate::server::AppState;
use crate::sse::StreamConfig;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    match rlimit::raise_nofile_limit() {
        Ok(limit) => tracing::info!(before = limit.before, after = limit.after, "RLIMIT_NOFILE"),
        Err(err) => tracing::warn!(%err, "cannot raise RLIMIT_NOFILE"),
    }

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = args.workers {
        builder.worker_threads(workers.get());
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };

    let state = AppState {
        broker: Arc::new(Broker::new(args.channel_capacity.get())),
        stream: StreamConfig {
            idle_timeout: nonzero(args.idle_timeout),
            max_lifetime: nonzero(args.max_lifetime),
        },
    };
    match runtime.block_on(server::run(args.http, state)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "stopped");
            ExitCode::FAILURE
        }
    }
}
