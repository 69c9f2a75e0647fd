//! What is measured: the scenarios, their sizes on this machine, and the load tool's command line for
//! each.
//!
//! Sizing (2 cores, 20,000 fds per process, `somaxconn` 4096):
//! * the load tool holds N client sockets + 64 pooled control connections + its publish connections
//!   + ~64 others in one process, so the largest idle point is 19,000 connections (≈ 19,150 fds);
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
}

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
    /// `throughput` at half of the same server's maximum, measured just before in the same round.
    ThroughputHalf { n: u64, duration_s: u64 },
}

impl Scenario {
    pub fn connections(&self) -> u64 {
        match self.kind {
            Kind::Idle { n, .. }
            | Kind::Fanout { n, .. }
            | Kind::ThroughputMax { n, .. }
            | Kind::ThroughputHalf { n, .. } => n,
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
            Kind::ThroughputHalf { n, duration_s } => format!(
                "50 % of max throughput, {} subscribers, {duration_s} s",
                thousands(n)
            ),
        }
    }

    /// Wall-clock limit of one load-tool run; past it the tool is killed and the run recorded as
    /// failed, so a stuck server cannot hang the benchmark.
    pub fn hard_timeout(&self) -> Duration {
        let body = match self.kind {
            Kind::Idle { hold_s, .. } => hold_s,
            Kind::Fanout { .. } => 0,
            Kind::ThroughputMax { duration_s, .. } | Kind::ThroughputHalf { duration_s, .. } => {
                duration_s
            }
        };
        Duration::from_secs(self.connect_timeout_s + body + self.delivery_timeout_s + 30)
    }

    /// The load tool's arguments against `server` (`rate` = messages/s for `ThroughputHalf`).
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
            Kind::ThroughputHalf { n, duration_s } => vec![
                "throughput".into(),
                "-n".into(),
                n.to_string(),
                "--rate".into(),
                format!("{rate:.0}"),
                "--duration".into(),
                format!("{duration_s}s"),
            ],
        };
        a.extend(mode);
        a
    }
}

/// Every scenario at `size`, in running order (`throughput-half` right after `throughput-max`,
/// whose result it needs).
pub fn all(size: Size) -> Vec<Scenario> {
    let (idle, hold, fan, messages, tput, dur) = match size {
        Size::Full => ([1_000, 10_000, 19_000], 5, [1_000, 10_000], 100, 1_000, 10),
        Size::Quick => ([200, 1_000, 2_000], 1, [200, 2_000], 20, 500, 2),
    };
    let names = ["idle-1k", "idle-10k", "idle-19k"];
    let mut v = Vec::new();
    for (name, n) in names.into_iter().zip(idle) {
        v.push(Scenario {
            name: name.into(),
            kind: Kind::Idle { n, hold_s: hold },
            // PocketBase needs ~1 ms of CPU per connect; 19k of them on 2 shared cores is minutes.
            connect_timeout_s: if n > 5_000 { 240 } else { 60 },
            delivery_timeout_s: 60,
        });
    }
    for (name, n) in ["fanout-1k", "fanout-10k"].into_iter().zip(fan) {
        v.push(Scenario {
            name: name.into(),
            kind: Kind::Fanout {
                n,
                messages,
                in_flight: 4,
            },
            connect_timeout_s: if n > 5_000 { 240 } else { 60 },
            delivery_timeout_s: 120,
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
    });
    v.push(Scenario {
        name: "throughput-half".into(),
        kind: Kind::ThroughputHalf {
            n: tput,
            duration_s: dur,
        },
        connect_timeout_s: 60,
        delivery_timeout_s: 60,
    });
    v
}

/// The scenarios selected by `--only` (prefix match, so `idle` selects all three idle points);
/// `throughput-half` pulls in `throughput-max`, which sets its rate.
pub fn select(all: Vec<Scenario>, only: &[String]) -> Vec<Scenario> {
    if only.is_empty() {
        return all;
    }
    let wanted = |name: &str| only.iter().any(|o| name.starts_with(o.as_str()));
    let need_max = wanted("throughput-half");
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
        let s = select(all(Size::Quick), &["throughput-half".into()]);
        let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["throughput-max", "throughput-half"]);
    }

    #[test]
    fn largest_idle_point_fits_the_fd_limit() {
        // N + 64 control connections + 16 publishers + 64 others < 20,000 (loadgen's own check)
        let n = all(Size::Full)
            .iter()
            .map(Scenario::connections)
            .max()
            .unwrap();
        assert!(n + 64 + 16 + 64 < 20_000);
    }
}
