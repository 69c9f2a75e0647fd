//! The machine description printed in the report: every figure depends on it (2 shared cores, the
//! fd limit, loopback TCP costs of this kernel), so it is recorded with the run, not written by hand.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: String,
    pub cpu_model: String,
    pub kernel: String,
    pub memory: String,
    pub nofile_soft: u64,
    pub nofile_hard: u64,
    pub somaxconn: String,
    pub ip_local_port_range: String,
    pub rustc: String,
    pub pocketbase: String,
    pub git_commit: String,
    /// `/proc/loadavg` when the run started and ended: the machine is shared, and this shows
    /// whether something else was running.
    #[serde(default)]
    pub loadavg_start: String,
    #[serde(default)]
    pub loadavg_end: String,
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    read("/proc/loadavg")
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Describes this machine; `pocketbase` is asked for its version, the repository at `repo` for its
/// commit (read only).
pub fn describe(pocketbase: Option<&Path>, repo: &Path) -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let kb: u64 = s
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "?".into());
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `lim`.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    let repo_s = repo.display().to_string();
    let commit = sh("git", &["-C", &repo_s, "rev-parse", "--short=12", "HEAD"]);
    let dirty = !sh(
        "git",
        &[
            "-C",
            &repo_s,
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_empty();
    Machine {
        nproc: sh("nproc", &[]),
        cpu_model,
        kernel: sh("uname", &["-r"]),
        memory,
        nofile_soft: lim.rlim_cur,
        nofile_hard: lim.rlim_max,
        somaxconn: read("/proc/sys/net/core/somaxconn"),
        ip_local_port_range: read("/proc/sys/net/ipv4/ip_local_port_range"),
        rustc: sh("rustc", &["--version"]),
        pocketbase: pocketbase
            .map(|p| sh(&p.display().to_string(), &["--version"]))
            .unwrap_or_else(|| "not used".into()),
        git_commit: if dirty {
            format!("{commit} (with uncommitted changes)")
        } else {
            commit
        },
        loadavg_start: loadavg(),
        loadavg_end: String::new(),
    }
}
