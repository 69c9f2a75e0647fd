//! Running the plan: rounds × scenarios × servers, one fresh server and one load-tool process per
//! cell, each bounded in time; the load tool's JSON goes to `bench/raw/`, and a manifest
//! (`bench/raw/runs.json`) records what ran, so the report can be rebuilt from the files alone
//! (`ringcast-bench --report-only`).
//!
//! Order: within a round, scenario by scenario, the servers one after the other (ringcast, baseline,
//! PocketBase, floor). So the servers compared in a ratio ran minutes apart under the same machine
//! conditions, and a disturbance (the machine is shared) hits one round rather than one server.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::machine::Machine;
use crate::scenarios::{Kind, Scenario, Size, thousands};
use crate::servers::{Ports, Programs, Server, ServerKind};

/// Everything about one benchmark run: written as `bench/raw/runs.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    /// The command that produced this run, as given to `ringcast-bench --command-line`.
    pub command_line: String,
    pub size: Size,
    pub rounds: u32,
    pub servers: Vec<ServerKind>,
    pub scenarios: Vec<Scenario>,
    pub only: Vec<String>,
    pub started: String,
    pub finished: String,
    pub wall_s: f64,
    pub machine: Machine,
    /// Server start commands with `PORT` / `DIR` placeholders.
    pub server_commands: Vec<(ServerKind, String)>,
    pub runs: Vec<RunRecord>,
}

/// One (round, scenario, server) cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub round: u32,
    pub scenario: String,
    pub server: ServerKind,
    /// File under `bench/raw/` with the load tool's JSON, when it produced one.
    pub file: Option<String>,
    pub server_command: Option<String>,
    pub loadgen_command: Option<String>,
    pub wall_s: f64,
    pub exit_code: Option<i32>,
    /// The load tool's `ok` (no lost/duplicated/… events, every delivery in time).
    pub ok: bool,
    /// Why the run is not clean: the load tool's `failures`, a timeout, a server that died.
    pub problems: Vec<String>,
}

/// A run whose JSON is loaded: what the statistics work on.
pub struct Loaded {
    pub record: RunRecord,
    pub json: Option<Value>,
}

pub const MANIFEST_SCHEMA: &str = "ringcast-bench/1";

pub struct Plan<'a> {
    pub programs: &'a Programs,
    pub scenarios: &'a [Scenario],
    pub servers: &'a [ServerKind],
    pub rounds: u32,
    pub raw_dir: &'a Path,
    pub work_dir: &'a Path,
}

/// Runs every cell of the plan; returns the records in running order. `on_record` sees the records
/// so far after each run (the caller saves the manifest there).
pub fn run_all(
    plan: &Plan,
    on_record: &mut dyn FnMut(&[RunRecord]),
) -> anyhow::Result<Vec<RunRecord>> {
    let logs = plan.work_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    std::fs::create_dir_all(plan.raw_dir)?;
    let mut ports = Ports::new(37000, 37999);
    let mut records = Vec::new();
    let total = plan.rounds as usize * plan.scenarios.len() * plan.servers.len();
    let started = Instant::now();
    for round in 1..=plan.rounds {
        for sc in plan.scenarios {
            for &server in plan.servers {
                let done = records.len();
                eprintln!(
                    "[bench {:>5.0}s] {}/{total} round {round} {} {}",
                    started.elapsed().as_secs_f64(),
                    done + 1,
                    sc.name,
                    server.name()
                );
                let rate = rate_for(&records, plan.raw_dir, round, sc, server);
                let rec = run_one(plan, &mut ports, &logs, round, sc, server, rate);
                for p in &rec.problems {
                    eprintln!("    ! {p}");
                }
                records.push(rec);
                on_record(&records);
            }
        }
    }
    Ok(records)
}

/// The message rate of a scenario that depends on this round's `throughput-max` run of the same
/// server: a share of its max message rate (its deliveries/s over its subscribers), or the fixed
/// rate unless the server's max was below half of it. `Err` = skip the run, with the reason.
fn rate_for(
    records: &[RunRecord],
    raw_dir: &Path,
    round: u32,
    sc: &Scenario,
    server: ServerKind,
) -> Result<f64, String> {
    let max = || -> Option<f64> {
        let max = records.iter().find(|r| {
            r.round == round && r.scenario == "throughput-max" && r.server == server && r.ok
        })?;
        let json = load_json(raw_dir, max.file.as_deref()?)?;
        json.pointer("/delivery/deliveries_per_s")?.as_f64()
    };
    match sc.kind {
        Kind::ThroughputShare { n, percent, .. } => {
            // Each message goes to every one of the n subscribers (one topic).
            let rate = max()
                .map(|per_s| f64::from(percent) / 100.0 * per_s / n as f64)
                .ok_or("skipped: no clean throughput-max run of this server in this round")?;
            if rate >= 1.0 {
                Ok(rate)
            } else {
                Err(format!(
                    "skipped: {percent} % of its max is under 1 message/s"
                ))
            }
        }
        // A server far below the rate (PocketBase: a third of it) would only queue for the whole
        // run; one closer to it runs, and its row shows what falling behind does to latency.
        Kind::FixedRate { n, rate, .. } => match max() {
            Some(per_s) if per_s < 0.5 * (rate * n) as f64 => Err(format!(
                "{SKIP_CANNOT_SUSTAIN} {} deliveries/s (its max this round: {}/s)",
                thousands(rate * n),
                thousands(per_s as u64)
            )),
            // Without a max to go by, run it: the run's time limit bounds a server that falls behind.
            _ => Ok(rate as f64),
        },
        _ => Ok(0.0),
    }
}

/// How a fixed-rate run skipped for a server too slow for it starts its problem line (the report
/// shows those cells as "cannot sustain").
pub const SKIP_CANNOT_SUSTAIN: &str = "skipped: cannot sustain";

fn run_one(
    plan: &Plan,
    ports: &mut Ports,
    logs: &Path,
    round: u32,
    sc: &Scenario,
    server: ServerKind,
    rate: Result<f64, String>,
) -> RunRecord {
    let stem = format!("r{round}-{}-{}", sc.name, server.name());
    let mut rec = RunRecord {
        round,
        scenario: sc.name.clone(),
        server,
        file: None,
        server_command: None,
        loadgen_command: None,
        wall_s: 0.0,
        exit_code: None,
        ok: false,
        problems: Vec::new(),
    };
    let rate = match rate {
        Ok(r) => r,
        Err(why) => {
            rec.problems.push(why);
            return rec;
        }
    };
    let t0 = Instant::now();
    let mut srv = match Server::start(
        plan.programs,
        server,
        ports,
        plan.work_dir,
        &logs.join(format!("{stem}.server.log")),
    ) {
        Ok(s) => s,
        Err(e) => {
            rec.problems.push(format!("server did not start: {e:#}"));
            return rec;
        }
    };
    rec.server_command = Some(srv.command.clone());
    let args = sc.loadgen_args(server, srv.port, srv.pid(), rate);
    rec.loadgen_command = Some(format!(
        "{} {}",
        plan.programs.loadgen.display(),
        args.join(" ")
    ));
    let file = format!("{stem}.json");
    let out_path = plan.raw_dir.join(&file);
    match run_loadgen(
        &plan.programs.loadgen,
        &args,
        &out_path,
        &logs.join(format!("{stem}.loadgen.log")),
        sc.hard_timeout(),
    ) {
        Ok(code) => rec.exit_code = code,
        Err(e) => rec.problems.push(format!("{e:#}")),
    }
    if srv.stop() {
        rec.problems
            .push("the server had exited before the end of the run".into());
    }
    drop(srv);
    rec.wall_s = t0.elapsed().as_secs_f64();
    match load_json(plan.raw_dir, &file) {
        Some(json) => {
            rec.ok = json.get("ok").and_then(Value::as_bool).unwrap_or(false);
            if let Some(f) = json.get("failures").and_then(Value::as_array) {
                rec.problems
                    .extend(f.iter().filter_map(|v| v.as_str().map(String::from)));
            }
            rec.file = Some(file);
        }
        None => {
            let _ = std::fs::remove_file(&out_path);
            if rec.problems.is_empty() {
                rec.problems.push(format!(
                    "the load tool wrote no report (exit {:?}); see bench/work/logs/{stem}.loadgen.log",
                    rec.exit_code
                ));
            }
        }
    }
    // Pause so that the closed connections' teardown is not charged to the next server.
    std::thread::sleep(Duration::from_millis(500));
    rec
}

/// Runs the load tool with its stdout in `out`, killing it after `limit`. Returns its exit code.
/// Its stderr (a progress line a second, warnings, errors) goes to `log` and, indented, to ours,
/// so that a long scenario shows progress while it runs.
fn run_loadgen(
    bin: &Path,
    args: &[String],
    out: &Path,
    log: &Path,
    limit: Duration,
) -> anyhow::Result<Option<i32>> {
    let stdout = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let tee = child.stderr.take().map(|pipe| tee_lines(pipe, log_file));
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            if let Some(tee) = tee {
                let _ = tee.join();
            }
            anyhow::bail!("the load tool was killed after the scenario's limit of {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every line the tool wrote is in the log (and on screen) before its output is read.
    if let Some(tee) = tee {
        let _ = tee.join();
    }
    Ok(code)
}

/// Copies `pipe` line by line into `log` and, indented, to our stderr, until it closes.
fn tee_lines(
    pipe: impl std::io::Read + Send + 'static,
    mut log: File,
) -> std::thread::JoinHandle<()> {
    use std::io::{BufRead, Write};
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(pipe);
        let mut line = Vec::new();
        // Byte lines: a stray non-UTF-8 byte must not end the copy.
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let _ = log.write_all(&line);
            let text = String::from_utf8_lossy(&line);
            eprint!("      {text}");
            if !text.ends_with('\n') {
                eprintln!();
            }
            line.clear();
        }
    })
}

pub fn load_json(raw_dir: &Path, file: &str) -> Option<Value> {
    let text = std::fs::read_to_string(raw_dir.join(file)).ok()?;
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    (v.get("schema")?.as_str()? == "ringcast-loadgen/1").then_some(v)
}

/// Loads the manifest and every run's JSON from `raw_dir`.
pub fn load(raw_dir: &Path) -> anyhow::Result<(Manifest, Vec<Loaded>)> {
    let path: PathBuf = raw_dir.join("runs.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let m: Manifest = serde_json::from_str(&text).context("parsing runs.json")?;
    let loaded = m
        .runs
        .iter()
        .map(|r| Loaded {
            record: r.clone(),
            json: r.file.as_deref().and_then(|f| load_json(raw_dir, f)),
        })
        .collect();
    Ok((m, loaded))
}

/// Removes a previous run's files from `raw_dir` (only ours: `r<round>-*.json` and `runs.json`).
pub fn clear_raw(raw_dir: &Path) -> anyhow::Result<()> {
    if !raw_dir.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(raw_dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        let ours = name == "runs.json"
            || (name.starts_with('r')
                && name.ends_with(".json")
                && name[1..].starts_with(|c: char| c.is_ascii_digit()));
        if ours {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}
