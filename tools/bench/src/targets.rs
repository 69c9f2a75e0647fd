//! The targets the benchmark issue sets for ringcast, evaluated against the measured figures:
//! met or missed, and by how much (the issue asks for an honest account of misses).

use crate::figures::Table;
use crate::scenarios::{Kind, Scenario, thousands};
use crate::servers::ServerKind;
use crate::stats::{self, Better, Summary};

/// Which side of the threshold is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// value ≤ threshold
    AtMost,
    /// value < threshold
    Below,
    /// value ≥ threshold
    AtLeast,
}

pub struct Target {
    pub what: String,
    /// Where the figure comes from (scenario and how it is computed).
    pub source: String,
    pub threshold: f64,
    pub bound: Bound,
    pub unit: &'static str,
    /// Per-round values (None: not measured in that round).
    pub rounds: Vec<Option<f64>>,
}

impl Target {
    pub fn summary(&self) -> Option<Summary> {
        let v: Vec<f64> = self.rounds.iter().flatten().copied().collect();
        stats::summarize(&v)
    }

    fn ok(&self, v: f64) -> bool {
        match self.bound {
            Bound::AtMost => v <= self.threshold,
            Bound::Below => v < self.threshold,
            Bound::AtLeast => v >= self.threshold,
        }
    }

    /// Whether the median meets the target; None when nothing was measured.
    pub fn met(&self) -> Option<bool> {
        self.summary().map(|s| self.ok(s.median))
    }

    /// "2 of 3" rounds meeting the target.
    pub fn rounds_meeting(&self) -> (usize, usize) {
        let measured: Vec<f64> = self.rounds.iter().flatten().copied().collect();
        (
            measured.iter().filter(|v| self.ok(**v)).count(),
            measured.len(),
        )
    }

    pub fn threshold_text(&self) -> String {
        let op = match self.bound {
            Bound::AtMost => "≤",
            Bound::Below => "<",
            Bound::AtLeast => "≥",
        };
        format!("{op} {}{}", fmt_num(self.threshold), self.unit)
    }

    /// "missed by 23 %" / "met, 40 % headroom": relative distance of the median to the threshold.
    pub fn margin_text(&self) -> String {
        let Some(s) = self.summary() else {
            return "not measured".into();
        };
        let (v, t) = (s.median, self.threshold);
        match self.bound {
            Bound::AtMost | Bound::Below => {
                if self.ok(v) {
                    format!("{:.0} % under the limit", (t - v) / t * 100.0)
                } else {
                    format!(
                        "missed by {}{} ({:.0} % over, {:.2}× the limit)",
                        fmt_num(v - t),
                        self.unit,
                        (v - t) / t * 100.0,
                        v / t
                    )
                }
            }
            Bound::AtLeast => {
                if self.ok(v) {
                    format!("{:.0} % above the minimum", (v - t) / t * 100.0)
                } else {
                    format!(
                        "missed: {:.0} % short ({}{} of the {}{} needed)",
                        (t - v) / t * 100.0,
                        fmt_num(v),
                        self.unit,
                        fmt_num(t),
                        self.unit
                    )
                }
            }
        }
    }
}

/// A number with 3 significant digits and thousands separators for large values.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        thousands(v.round().max(0.0) as u64)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The targets for ringcast, with the figures of this run. `scenarios` gives the sizes that
/// actually ran (a quick run is smaller than the targets' wording).
pub fn evaluate(t: &Table, largest_idle: &str, scenarios: &[Scenario]) -> Vec<Target> {
    let rc = ServerKind::Ringcast;
    let n = |name: &str| {
        scenarios
            .iter()
            .find(|s| s.name == name)
            .map(|s| thousands(s.connections()))
            .unwrap_or_else(|| "?".into())
    };
    let burst = scenarios
        .iter()
        .find_map(|s| match s.kind {
            Kind::Fanout {
                messages,
                in_flight,
                ..
            } => Some((messages, in_flight)),
            _ => None,
        })
        .unwrap_or((100, 4));
    let mut v = Vec::new();
    let rss = t.rounds_of(largest_idle, "rss", rc);
    v.push(Target {
        what: "RSS per idle subscribed connection".into(),
        source: format!("`{largest_idle}`: (RSS after hold − RSS before connecting) / clients"),
        threshold: 1024.0,
        bound: Bound::AtMost,
        unit: " B",
        rounds: rss.clone(),
    });
    v.push(Target {
        what: "… goal".into(),
        source: "same figure".into(),
        threshold: 512.0,
        bound: Bound::AtMost,
        unit: " B",
        rounds: rss,
    });
    v.push(Target {
        what: format!(
            "server CPU per delivery, {}-message burst to {} subscribers, {} publishes in flight",
            burst.0,
            n("fanout-10k"),
            burst.1
        ),
        source: "`fanout-10k`: server CPU (all threads) first publish → last delivery / deliveries"
            .into(),
        threshold: 3.0,
        bound: Bound::AtMost,
        unit: " µs",
        rounds: t.rounds_of("fanout-10k", "cpu_per_delivery", rc),
    });
    v.push(Target {
        what: format!(
            "1 message to {} subscribers: fully delivered sooner than PocketBase",
            n("idle-10k")
        ),
        source:
            "`idle-10k` final message: PocketBase's time to last delivery ÷ ringcast's, per round"
                .into(),
        threshold: 2.0,
        bound: Bound::AtLeast,
        unit: "×",
        rounds: t.advantage_rounds("idle-10k", "ttl", ServerKind::Pocketbase, Better::Lower),
    });
    v.push(Target {
        what: format!(
            "1 message to {} subscribers: within 1.3× of the machine's floor",
            n("idle-10k")
        ),
        source: "`idle-10k` final message: ringcast's time to last delivery ÷ the floor server's, per round"
            .into(),
        threshold: 1.3,
        bound: Bound::AtMost,
        unit: "×",
        // "Higher" turns the advantage into ours / theirs = ringcast ÷ floor.
        rounds: t.advantage_rounds("idle-10k", "ttl", ServerKind::Floor, Better::Higher),
    });
    v.push(Target {
        what: "deliveries per server CPU second vs the baseline".into(),
        source: "`fanout-10k`: ringcast's deliveries per CPU second ÷ the baseline's, per round"
            .into(),
        threshold: 2.0,
        bound: Bound::AtLeast,
        unit: "×",
        rounds: t.advantage_rounds(
            "fanout-10k",
            "per_cpu_s",
            ServerKind::Baseline,
            Better::Higher,
        ),
    });
    v.push(Target {
        what: "less memory per idle connection than the baseline".into(),
        source: format!("`{largest_idle}`: baseline's RSS per connection ÷ ringcast's, per round"),
        threshold: 3.0,
        bound: Bound::AtLeast,
        unit: "×",
        rounds: t.advantage_rounds(largest_idle, "rss", ServerKind::Baseline, Better::Lower),
    });
    v.push(Target {
        what: "p99 publish → receive at 50 % of ringcast's max sustained rate".into(),
        source: format!(
            "`throughput-50` ({} subscribers): latency p99",
            n("throughput-50")
        ),
        threshold: 5.0,
        bound: Bound::Below,
        unit: " ms",
        rounds: t.rounds_of("throughput-50", "lat_p99", rc),
    });
    let fixed = scenarios.iter().find_map(|s| match s.kind {
        Kind::FixedRate { n, rate, .. } => Some((n, rate)),
        _ => None,
    });
    let (fixed_n, fixed_rate) = fixed.unwrap_or((1_000, 100));
    v.push(Target {
        what: format!(
            "p99 publish → receive at a fixed {} deliveries/s ({fixed_rate} msgs/s × {} subscribers)",
            thousands(fixed_rate * fixed_n),
            thousands(fixed_n)
        ),
        source: format!("`{}`: latency p99", crate::scenarios::FIXED),
        threshold: 5.0,
        bound: Bound::Below,
        unit: " ms",
        rounds: t.rounds_of(crate::scenarios::FIXED, "lat_p99", rc),
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(bound: Bound, threshold: f64, rounds: &[f64]) -> Target {
        Target {
            what: String::new(),
            source: String::new(),
            threshold,
            bound,
            unit: " B",
            rounds: rounds.iter().map(|v| Some(*v)).collect(),
        }
    }

    #[test]
    fn upper_bound_margins() {
        let t = target(Bound::AtMost, 1000.0, &[1200.0, 1300.0, 800.0]);
        assert_eq!(t.met(), Some(false));
        assert_eq!(t.rounds_meeting(), (1, 3));
        assert!(t.margin_text().starts_with("missed by 200 B (20 % over"));
        let t = target(Bound::AtMost, 1000.0, &[600.0]);
        assert_eq!(t.margin_text(), "40 % under the limit");
    }

    #[test]
    fn lower_bound_margins() {
        let t = target(Bound::AtLeast, 2.0, &[1.5]);
        assert_eq!(t.met(), Some(false));
        assert!(t.margin_text().starts_with("missed: 25 % short"));
        assert_eq!(target(Bound::AtLeast, 2.0, &[3.0]).met(), Some(true));
        assert_eq!(target(Bound::AtLeast, 2.0, &[]).met(), None);
    }

    #[test]
    fn number_format() {
        assert_eq!(fmt_num(19_000.4), "19,000");
        assert_eq!(fmt_num(512.3), "512");
        assert_eq!(fmt_num(2.345), "2.35");
        assert_eq!(fmt_num(0.1234), "0.123");
    }
}
