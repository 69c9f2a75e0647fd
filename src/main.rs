use clap::{Parser, Subcommand};
use ringcast::{Config, Server};
use tracing_subscriber::EnvFilter;

/// A PocketBase-compatible realtime (SSE) server: one io_uring loop per core.
#[derive(Parser)]
#[command(name = "ringcast", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (PocketBase's `serve`).
    Serve(Config),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("RINGCAST_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve(config) = Cli::parse().command;
    match Server::builder().config(config).serve() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
