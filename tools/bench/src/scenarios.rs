//! What is measured: the scenarios, their sizes on this machine, and the load tool's command line for
//! each.
//!
//! Sizing (2 cores, 20,000 fds per process, `somaxconn` 4096):
//! * the largest point (`idle-largest`, `fanout-largest`) is bounded by the *server's* descriptors:
//!   one server process holds N client streams + the load tool's control and publish connections
//!   while they connect + its own ~20–40 descriptors, all under 20,000. [`LARGEST`] = 19,900 with
//!   [`LARGEST_CONTROL_CONNS`] pooled control connections per load-tool worker leaves ≥ 60
//!   descriptors of headroom for every server (measured: ringcast 19,937, PocketBase 19,936, baseline
//!   19,928, floor 19,923 open after connecting). The load tool itself is not the limit any more: it
//!   spreads the clients over shard processes (`ringcast-loadgen --processes`); the largest point
//!   uses 2 of them, in the quick run too, so CI exercises that path;
//! * the servers get 2 workers (ringcast, baseline) on the same 2 cores as the load tool, so every
//!   CPU figure is taken while the load tool competes for the cores;
//! * the one-message fan-outs are the `idle` runs' final check (after the hold, one message goes to
//!   every subscriber), so the slow part of a large point — connecting 10,000 clients to PocketBase —
//!   is paid once for both the memory and the fan-out figure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::servers::ServerKind;

/// The run sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// The real benchmark (≈ 12 minutes for 3 rounds on this machine).
    Full,
    /// A smoke run: ≤ 2,000 connections, a few messages, short holds.
    Quick,
}

/// One load-tool invocation per (round, server).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    /// Stable name, used by `--only` and in file names.
    pub name: String,
    pub kind: Kind,
    /// How long the load tool may wait for its clients to connect.
    pub connect_timeout_s: u64,
    /// How long the load tool may wait for outstanding deliveries.
    pub delivery_timeout_s: u64,
    #[serde(default)]
    pub extra: Extra,
}

/// The largest client count, for the server's 20,000 descriptors (see the module docs).
pub const LARGEST: u64 = 19_900;
/// Pooled control connections per load-tool worker at the largest point (default 64): they are
/// connections to the server too while the clients subscribe.
pub const LARGEST_CONTROL_CONNS: u64 = 16;
/// The fixed-rate latency point: deliveries per second (100 messages/s to 1,000 subscribers; the
/// quick run keeps the deliveries with fewer subscribers).
pub const FIXED_DELIVERIES: u64 = 100_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Kind {
    /// `idle`: connect + subscribe `n` clients, hold, then one message to all of them.
    Idle { n: u64, hold_s: u64 },
    /// `fanout`: `messages` published to `n` subscribers, `in_flight` at a time.
    Fanout {
        n: u64,
        messages: u64,
        in_flight: u64,
    },
    /// `throughput --rate 0`: as fast as 16 publishes in flight allow, for `duration_s`.
    ThroughputMax { n: u64, duration_s: u64 },
    /// `throughput` at `percent` % of the same server's maximum, measured just before in the same
    /// round.
    ThroughputShare {
        n: u64,
        duration_s: u64,
        percent: u32,
    },
    /// `throughput` at a fixed `rate` messages/s, the same for every server; skipped for a server
    /// whose maximum of the round is below half of it (see `runs::rate_for`). (An integer: serde_json's `arbitrary_precision`,
    /// enabled by the workspace, cannot read a float back inside an internally tagged enum.)
    FixedRate { n: u64, duration_s: u64, rate: u64 },
}

/// Load-tool options beyond the mode's own.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Extra {
    /// `--processes K` (0: the load tool's choice).
    #[serde(default)]
    pub processes: u32,
    /// `--control-conns C` (0: the load tool's default).
    #[serde(default)]
    pub control_conns: u64,
}

impl Scenario {
    pub fn connections(&self) -> u64 {
        match self.kind {
            Kind::Idle { n, .. }
            | Kind::Fanout { n, .. }
            | Kind::ThroughputMax { n, .. }
            | Kind::ThroughputShare { n, .. }
            | Kind::FixedRate { n, .. } => n,
        }
    }

    /// A human title, e.g. "idle, 10,000 connections".
    pub fn title(&self) -> String {
        match self.kind {
            Kind::Idle { n, hold_s } => {
                format!("idle {} connections, {hold_s} s hold", thousands(n))
            }
            Kind::Fanout {
                n,
                messages,
                in_flight,
            } => format!(
                "fan-out of {messages} messages to {} subscribers, {in_flight} in flight",
                thousands(n)
            ),
            Kind::ThroughputMax { n, duration_s } => format!(
                "max throughput, {} subscribers, {duration_s} s",
                thousands(n)
            ),
            Kind::ThroughputShare {
                n,
                duration_s,
                percent,
            } => format!(
                "{percent} % of max throughput, {} subscribers, {duration_s} s",
                thousands(n)
            ),
            Kind::FixedRate {
                n,
                duration_s,
                rate,
            } => format!(
                "fixed {rate} messages/s to {} subscribers ({} deliveries/s), {duration_s} s",
                thousands(n),
                thousands(rate * n)
            ),
        }
    }

    /// Wall-clock limit of one load-tool run; past it the tool is killed and the run recorded as
    /// failed, so a stuck server cannot hang the benchmark.
    pub fn hard_timeout(&self) -> Duration {
        let body = match self.kind {
            Kind::Idle { hold_s, .. } => hold_s,
            Kind::Fanout { .. } => 0,
            Kind::ThroughputMax { duration_s, .. }
            | Kind::ThroughputShare { duration_s, .. }
            | Kind::FixedRate { duration_s, .. } => duration_s,
        };
        Duration::from_secs(self.connect_timeout_s + body + self.delivery_timeout_s + 30)
    }

    /// The load tool's arguments against `server` (`rate` = messages/s for `ThroughputShare`).
    pub fn loadgen_args(&self, server: ServerKind, port: u16, pid: u32, rate: f64) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--target".into(),
            format!("127.0.0.1:{port}"),
            "--server-pid".into(),
            pid.to_string(),
            "--publish-path".into(),
            server.publish_path().into(),
            "--connect-timeout".into(),
            format!("{}s", self.connect_timeout_s),
            "--timeout".into(),
            format!("{}s", self.delivery_timeout_s),
        ];
        if let Some(path) = server.metrics_path() {
            a.extend(["--metrics-path".into(), path.into()]);
        }
        if self.extra.processes > 0 {
            a.extend(["--processes".into(), self.extra.processes.to_string()]);
        }
        if self.extra.control_conns > 0 {
            a.extend([
                "--control-conns".into(),
                self.extra.control_conns.to_string(),
            ]);
        }
        let mode: Vec<String> = match self.kind {
            Kind::Idle { n, hold_s } => vec![
                "idle".into(),
                "-n".into(),
                n.to_string(),
                "--hold".into(),
                format!("{hold_s}s"),
            ],
            Kind::Fanout {
                n,
                messages,
                in_flight,
            } => vec![
                "fanout".into(),
                "-n".into(),
                n.to_string(),
                "--messages".into(),
                messages.to_string(),
                "--in-flight".into(),
                in_flight.to_string(),
            ],
            Kind::ThroughputMax { n, duration_s } => vec![
                "throughput".into(),
                "-n".into(),
                n.to_string(),
                "--rate".into(),
                "0".into(),
                "--duration".into(),
                format!("{duration_s}s"),
            ],
            Kind::ThroughputShare { n, duration_s, .. } => vec![
                "throughput".into(),
                "-n".into(),
                n.to_string(),
                "--rate".into(),
                format!("{rate:.0}"),
                "--duration".into(),
                format!("{duration_s}s"),
            ],
            Kind::FixedRate {
                n,
                duration_s,
                rate,
            } => vec![
                "throughput".into(),
                "-n".into(),
                n.to_string(),
                "--rate".into(),
                rate.to_string(),
                "--duration".into(),
                format!("{duration_s}s"),
            ],
        };
        a.extend(mode);
        a
    }
}

/// The idle points, smallest first (the last is the largest the server's fd limit allows).
pub const IDLE: [&str; 3] = ["idle-1k", "idle-10k", "idle-largest"];
/// The 100-message fan-out points.
pub const FANOUT: [&str; 3] = ["fanout-1k", "fanout-10k", "fanout-largest"];
/// The sustained-load latency points at a share of each server's own max.
pub const SHARES: [(&str, u32); 3] = [
    ("throughput-25", 25),
    ("throughput-50", 50),
    ("throughput-75", 75),
];
/// The fixed-rate latency point.
pub const FIXED: &str = "latency-100k";

/// Every scenario at `size`, in running order (the throughput shares and the fixed rate right after
/// `throughput-max`, whose result they need).
pub fn all(size: Size) -> Vec<Scenario> {
    // (idle sizes, hold, fan-out sizes, messages, throughput subscribers, duration, load-tool
    // processes at the largest point). 19,900 clients would just fit one load-tool process
    // (19,996 of 20,000 fds); 2 shards leave it headroom, and the quick run's 2 exercise the path.
    let (idle, hold, fan, messages, tput, dur, processes) = match size {
        Size::Full => (
            [1_000, 10_000, LARGEST],
            5,
            [1_000, 10_000, LARGEST],
            100,
            1_000,
            10,
            2,
        ),
        Size::Quick => ([200, 1_000, 2_000], 1, [200, 1_000, 2_000], 20, 500, 1, 2),
    };
    let largest = |i: usize| {
        if i == 2 {
            Extra {
                processes,
                control_conns: LARGEST_CONTROL_CONNS,
            }
        } else {
            Extra::default()
        }
    };
    // PocketBase needs ~1 ms of CPU per connect; 19k of them on 2 shared cores is minutes.
    let connect_timeout = |n: u64| if n > 5_000 { 240 } else { 60 };
    let mut v = Vec::new();
    for (i, (name, n)) in IDLE.into_iter().zip(idle).enumerate() {
        v.push(Scenario {
            name: name.into(),
            kind: Kind::Idle { n, hold_s: hold },
            connect_timeout_s: connect_timeout(n),
            delivery_timeout_s: 60,
            extra: largest(i),
        });
    }
    for (i, (name, n)) in FANOUT.into_iter().zip(fan).enumerate() {
        v.push(Scenario {
            name: name.into(),
            kind: Kind::Fanout {
                n,
                messages,
                in_flight: 4,
            },
            connect_timeout_s: connect_timeout(n),
            // PocketBase: ~35 s for 100 messages to 10,000; twice that at the largest point.
            delivery_timeout_s: if n > 10_000 { 180 } else { 120 },
            extra: largest(i),
        });
    }
    v.push(Scenario {
        name: "throughput-max".into(),
        kind: Kind::ThroughputMax {
            n: tput,
            duration_s: dur,
        },
        connect_timeout_s: 60,
        delivery_timeout_s: 60,
        extra: Extra::default(),
    });
    for (name, percent) in SHARES {
        v.push(Scenario {
            name: name.into(),
            kind: Kind::ThroughputShare {
                n: tput,
                duration_s: dur,
                percent,
            },
            connect_timeout_s: 60,
            delivery_timeout_s: 60,
            extra: Extra::default(),
        });
    }
    v.push(Scenario {
        name: FIXED.into(),
        kind: Kind::FixedRate {
            n: tput,
            duration_s: dur,
            rate: FIXED_DELIVERIES / tput,
        },
        connect_timeout_s: 60,
        delivery_timeout_s: 60,
        extra: Extra::default(),
    });
    v
}

/// The scenarios selected by `--only` (prefix match, so `idle` selects all three idle points);
/// a throughput share or the fixed rate pulls in `throughput-max`, which sets their rate (or,
/// for the fixed rate, says whether the server can sustain it).
pub fn select(all: Vec<Scenario>, only: &[String]) -> Vec<Scenario> {
    if only.is_empty() {
        return all;
    }
    let wanted = |name: &str| only.iter().any(|o| name.starts_with(o.as_str()));
    let need_max = all.iter().any(|s| {
        wanted(&s.name)
            && matches!(
                s.kind,
                Kind::ThroughputShare { .. } | Kind::FixedRate { .. }
            )
    });
    all.into_iter()
        .filter(|s| wanted(&s.name) || (need_max && s.name == "throughput-max"))
        .collect()
}

/// 19000 → "19,000".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(19_000), "19,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn only_selects_by_prefix_and_pulls_in_the_max_run() {
        let s = select(all(Size::Quick), &["idle".into()]);
        assert_eq!(s.len(), 3);
        let s = select(all(Size::Quick), &["throughput-50".into()]);
        let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["throughput-max", "throughput-50"]);
        let s = select(all(Size::Quick), &["latency".into()]);
        let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["throughput-max", "latency-100k"]);
    }

    #[test]
    fn largest_point_fits_the_servers_fd_limit() {
        // N + control connections of 2 load-tool shards + 4 publishes in flight + the server's own
        // (PocketBase has the most, ~40) < 20,000.
        let full = all(Size::Full);
        let n = full.iter().map(Scenario::connections).max().unwrap();
        assert_eq!(n, LARGEST);
        assert!(n + 2 * LARGEST_CONTROL_CONNS + 4 + 40 < 20_000);
        let quick = all(Size::Quick);
        let largest = quick.iter().find(|s| s.name == "idle-largest").unwrap();
        assert_eq!(largest.extra.processes, 2, "quick runs exercise the shards");
        let full_largest = full.iter().find(|s| s.name == "fanout-largest").unwrap();
        assert_eq!(full_largest.extra.processes, 2);
        let args = largest.loadgen_args(ServerKind::Ringcast, 1, 2, 0.0);
        for flag in ["--processes", "--control-conns", "--metrics-path"] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
    }

    #[test]
    fn fixed_rate_is_100k_deliveries_per_second() {
        let s = all(Size::Full);
        let f = s.iter().find(|s| s.name == FIXED).unwrap();
        assert!(matches!(f.kind, Kind::FixedRate { n, rate, .. } if n * rate == 100_000));
    }
}
