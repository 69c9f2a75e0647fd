use clap::{Parser, Subcommand};
use ringcast::Server;
use ringcast::config::file::{self, ServeArgs};
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
    Serve(ServeArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("RINGCAST_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve(args) = Cli::parse().command;
    let config = if args.config_file.is_some() {
        // Parsed again with the file's values under the flags and variables.
        let after_serve: Vec<_> = std::env::args_os()
            .skip(1)
            .skip_while(|a| a != "serve")
            .skip(1)
            .collect();
        match file::load(&after_serve) {
            Ok(config) => config,
            Err(file::ConfigError::Args(e)) => e.exit(),
            Err(e) => {
                tracing::error!("{e}");
                return std::process::ExitCode::from(2);
            }
        }
    } else {
        args.options
    };
    match Server::builder().config(config).serve() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
