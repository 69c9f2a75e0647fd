//! Reading a process's memory and CPU time from `/proc` (the server under test, and the tool itself).
//!
//! Methods follow the tokio-uring spike: RSS from `/proc/PID/status` (`VmRSS`, split into `RssAnon` /
//! `RssFile`) and, for a second opinion that also gives PSS, `/proc/PID/smaps_rollup`; CPU from
//! `/proc/PID/stat` (`utime + stime`, clock ticks of 10 ms, includes threads that already exited) and the
//! sum of `/proc/PID/task/*/schedstat` (nanoseconds, live threads only). The schedstat sum is the precise
//! one and is what the report's per-connection / per-delivery figures use, falling back to utime+stime
//! when schedstat is not available.

use std::fs;

use serde::Serialize;

/// One sample of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// Run-relative time of the sample, seconds.
    pub t_s: f64,
    /// `VmRSS` in KiB.
    pub rss_kb: u64,
    pub rss_anon_kb: u64,
    pub rss_file_kb: u64,
    /// `Pss` from smaps_rollup in KiB (`null` when unreadable).
    pub pss_kb: Option<u64>,
    /// `(utime + stime)` from /proc/PID/stat converted to ns (10 ms resolution).
    pub cpu_stat_ns: u64,
    pub utime_ns: u64,
    pub stime_ns: u64,
    /// Sum of the first field of /proc/PID/task/*/schedstat (ns on CPU); `null` when unavailable.
    pub cpu_sched_ns: Option<u64>,
    pub threads: u64,
    /// Open file descriptors (entries of /proc/PID/fd).
    pub fds: u64,
}

impl ProcSample {
    /// Best CPU figure: schedstat when available, else utime+stime.
    pub fn cpu_ns(&self) -> u64 {
        self.cpu_sched_ns.unwrap_or(self.cpu_stat_ns)
    }
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Samples `/proc/<pid>`; `pid` may be `"self"`.
pub fn sample(pid: &str, t_s: f64) -> std::io::Result<ProcSample> {
    let mut s = ProcSample {
        t_s,
        ..Default::default()
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        let kb = |l: &str| -> u64 {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if line.starts_with("VmRSS:") {
            s.rss_kb = kb(line);
        } else if line.starts_with("RssAnon:") {
            s.rss_anon_kb = kb(line);
        } else if line.starts_with("RssFile:") {
            s.rss_file_kb = kb(line);
        } else if line.starts_with("Threads:") {
            s.threads = kb(line);
        }
    }
    if let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        s.pss_kb = rollup
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok());
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state); utime is field 14, stime field 15.
        let tick_ns = 1_000_000_000 / clk_tck();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        s.utime_ns = get(11) * tick_ns;
        s.stime_ns = get(12) * tick_ns;
        s.cpu_stat_ns = s.utime_ns + s.stime_ns;
    }
    let mut sched = 0u64;
    let mut any = false;
    if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            if let Ok(t) = fs::read_to_string(e.path().join("schedstat"))
                && let Some(v) = t
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            {
                sched += v;
                any = true;
            }
        }
    }
    s.cpu_sched_ns = any.then_some(sched);
    s.fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Ok(s)
}

/// A `TcpExt` counter from `/proc/net/netstat` (network-namespace wide, so other processes contribute),
/// e.g. `ListenOverflows`: SYNs dropped because a listener's accept queue was full, which shows up as 1 s
/// (SYN retransmit) outliers in connect times.
pub fn tcp_ext_counter(name: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// CPU used by this process so far (all threads), from getrusage: (user ns, system ns).
pub fn self_cpu_ns() -> (u64, u64) {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// CPU used by this process's reaped children (the shard processes), from getrusage: (user ns, system
/// ns).
pub fn children_cpu_ns() -> (u64, u64) {
    // SAFETY: as in `self_cpu_ns`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Peak RSS (`VmHWM`) of a live process in KiB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Peak RSS of this process in KiB.
pub fn self_max_rss_kb() -> u64 {
    // SAFETY: as above.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as u64
}

/// Difference between two samples of the server over a phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ServerDelta {
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    /// `rss_after_kb - rss_before_kb` (may be negative).
    pub rss_delta_kb: i64,
    pub pss_delta_kb: Option<i64>,
    /// CPU spent by the server in the phase (schedstat sum, else utime+stime), ns.
    pub cpu_ns: u64,
    /// Same from utime+stime (10 ms resolution), for cross-checking.
    pub cpu_stat_ns: u64,
    /// Share of one core the server used over the phase (cpu / wall).
    pub cpu_cores: f64,
    pub fds_after: u64,
    pub threads_after: u64,
}

impl ServerDelta {
    pub fn between(a: &ProcSample, b: &ProcSample) -> ServerDelta {
        let wall = (b.t_s - a.t_s).max(1e-9);
        let cpu_ns = b.cpu_ns().saturating_sub(a.cpu_ns());
        ServerDelta {
            rss_before_kb: a.rss_kb,
            rss_after_kb: b.rss_kb,
            rss_delta_kb: b.rss_kb as i64 - a.rss_kb as i64,
            pss_delta_kb: a.pss_kb.zip(b.pss_kb).map(|(x, y)| y as i64 - x as i64),
            cpu_ns,
            cpu_stat_ns: b.cpu_stat_ns.saturating_sub(a.cpu_stat_ns),
            cpu_cores: cpu_ns as f64 / 1e9 / wall,
            fds_after: b.fds,
            threads_after: b.threads,
        }
    }
}

/// The tool's own CPU over a phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ToolDelta {
    pub cpu_user_ns: u64,
    pub cpu_sys_ns: u64,
    /// Share of one core the tool used over the phase.
    pub cpu_cores: f64,
}

/// A point in time for phase deltas: run-relative seconds plus the tool's and (optionally) the server's
/// counters.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub t_s: f64,
    pub tool: (u64, u64),
    pub server: Option<ProcSample>,
}

impl Mark {
    pub fn tool_delta(&self, later: &Mark) -> ToolDelta {
        let u = later.tool.0.saturating_sub(self.tool.0);
        let s = later.tool.1.saturating_sub(self.tool.1);
        ToolDelta {
            cpu_user_ns: u,
            cpu_sys_ns: s,
            cpu_cores: (u + s) as f64 / 1e9 / (later.t_s - self.t_s).max(1e-9),
        }
    }

    pub fn server_delta(&self, later: &Mark) -> Option<ServerDelta> {
        Some(ServerDelta::between(
            self.server.as_ref()?,
            later.server.as_ref()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_self() {
        let s = sample("self", 0.0).unwrap();
        assert!(s.rss_kb > 0);
        assert!(s.threads >= 1);
        assert!(s.fds >= 3);
        let (u, sy) = self_cpu_ns();
        assert!(u + sy > 0 || s.cpu_ns() > 0);
        if std::path::Path::new("/proc/net/netstat").exists() {
            assert!(tcp_ext_counter("ListenOverflows").is_some());
        }
        assert!(tcp_ext_counter("NoSuchCounter").is_none());
    }
}
