//! `ringcast-loadgen`: drives a PocketBase-style realtime (SSE) server on loopback and checks every
//! delivery. See `--help` for the modes and the JSON report schema (`report::SCHEMA`).
//!
//! Layout: `cli` (options) → `modes` (coordinator, phases, report assembly) → `worker` (SSE clients, one
//! thread each) and `publisher` (publish requests); `sse` decodes chunked SSE streams (it is
//! `ringcast-testkit`'s, shared with the tests), `accounting` classifies deliveries, `payload` holds
//! templates/clock/seq extraction, `procstat` samples /proc, `net` holds sockets and the tiny HTTP client,
//! `report` the output types. `shm` is the memory every process of a run shares (publisher and worker
//! counters), `shard` spreads the clients over several processes when one process's fd limit is too
//! small. `kmem` samples the kernel's memory around the idle hold, `promhist` scrapes the server's own
//! latency histogram.

mod accounting;
mod cli;
mod kmem;
mod modes;
mod net;
mod payload;
mod procstat;
mod promhist;
mod publisher;
mod report;
mod shard;
mod shared;
mod shm;
mod worker;

/// The SSE decoder is the test kit's (one implementation for the tool and the tests).
use ringcast_testkit::sse;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Some(spec) = cli.common.shard {
        return shard::child_main(&cli, spec);
    }
    let check = cli.common.check;
    let pretty = cli.common.pretty;
    let report = match modes::run(cli) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringcast-loadgen: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if pretty {
        serde_json::to_writer_pretty(&mut out, &report)
    } else {
        serde_json::to_writer(&mut out, &report)
    };
    if let Err(e) = written
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
    {
        eprintln!("ringcast-loadgen: cannot write the report: {e}");
        return ExitCode::from(2);
    }
    if !report.ok {
        eprintln!(
            "ringcast-loadgen: run not clean: {}",
            report.failures.join("; ")
        );
        if check {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
