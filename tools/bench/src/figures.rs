//! The figures the report shows, each read from one scenario's load-tool JSON
//! (schema `ringcast-loadgen/1`, see `tools/loadgen/src/report.rs`), and the table of their values
//! by server and round.
//!
//! A figure is taken only from a run that measured it properly: delivery figures need every
//! delivery to have arrived (`delivery.complete`), memory figures need every client connected. A
//! run that is not clean for another reason still contributes, and is listed in the report's
//! "run health" section.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::runs::Loaded;
use crate::scenarios::{FANOUT, FIXED, IDLE, SHARES};
use crate::servers::ServerKind;
use crate::stats::{self, Better, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Micros,
    Millis,
    PerSecond,
    /// CPU time / wall time: 1.0 = one core busy for the whole phase. Context, not a score.
    Cores,
    /// A plain count.
    Count,
}

impl Unit {
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Bytes => "B",
            Unit::Micros => "µs",
            Unit::Millis => "ms",
            Unit::PerSecond => "/s",
            Unit::Cores => "cores",
            Unit::Count => "",
        }
    }
}

/// One figure: where it comes from and how to read it.
pub struct Metric {
    pub id: &'static str,
    pub scenario: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    pub better: Better,
    get: fn(&Value) -> Option<f64>,
}

fn f(v: &Value, p: &str) -> Option<f64> {
    v.pointer(p)?.as_f64()
}

fn connected_all(v: &Value) -> bool {
    f(v, "/connect/connected") == f(v, "/config/connections")
}

fn complete(v: &Value) -> bool {
    v.pointer("/delivery/complete").and_then(Value::as_bool) == Some(true)
}

fn rss(v: &Value) -> Option<f64> {
    connected_all(v)
        .then(|| f(v, "/hold/server_rss_bytes_per_conn"))
        .flatten()
}
fn connect_cpu(v: &Value) -> Option<f64> {
    connected_all(v)
        .then(|| f(v, "/connect/server_cpu_us_per_conn"))
        .flatten()
}
fn connect_rate(v: &Value) -> Option<f64> {
    connected_all(v)
        .then(|| f(v, "/connect/rate_per_s"))
        .flatten()
}
fn handshake_p50(v: &Value) -> Option<f64> {
    f(v, "/connect/handshake_us/p50").map(|us| us / 1e3)
}
fn handshake_p99(v: &Value) -> Option<f64> {
    f(v, "/connect/handshake_us/p99").map(|us| us / 1e3)
}
fn ttl_ms(v: &Value) -> Option<f64> {
    complete(v)
        .then(|| f(v, "/delivery/time_to_last_delivery_s").map(|s| s * 1e3))
        .flatten()
}
fn cpu_us_per_delivery(v: &Value) -> Option<f64> {
    complete(v)
        .then(|| f(v, "/delivery/server_cpu_ns_per_delivery").map(|ns| ns / 1e3))
        .flatten()
}
fn deliveries_per_cpu_s(v: &Value) -> Option<f64> {
    complete(v)
        .then(|| f(v, "/delivery/server_cpu_ns_per_delivery").map(|ns| 1e9 / ns))
        .flatten()
}
fn deliveries_per_s(v: &Value) -> Option<f64> {
    complete(v)
        .then(|| f(v, "/delivery/deliveries_per_s"))
        .flatten()
}
fn publish_rate(v: &Value) -> Option<f64> {
    complete(v).then(|| f(v, "/publish/rate_per_s")).flatten()
}
fn listen_overflows(v: &Value) -> Option<f64> {
    f(v, "/connect/listen_overflows")
}
fn server_cores(v: &Value) -> Option<f64> {
    f(v, "/delivery/server/cpu_cores")
}
fn tool_cores(v: &Value) -> Option<f64> {
    f(v, "/delivery/tool/cpu_cores")
}
fn lat(v: &Value, p: &str) -> Option<f64> {
    complete(v)
        .then(|| f(v, &format!("/latency_ns/{p}")).map(|ns| ns / 1e6))
        .flatten()
}
fn lat_p50(v: &Value) -> Option<f64> {
    lat(v, "p50")
}
fn lat_p90(v: &Value) -> Option<f64> {
    lat(v, "p90")
}
fn lat_p99(v: &Value) -> Option<f64> {
    lat(v, "p99")
}
fn lat_p999(v: &Value) -> Option<f64> {
    lat(v, "p999")
}
fn lat_max(v: &Value) -> Option<f64> {
    lat(v, "max")
}

fn sustained(v: &Value) -> Option<f64> {
    complete(v)
        .then(|| f(v, "/delivery/sustained_deliveries_per_s"))
        .flatten()
}
/// The server's own publish → last write histogram (ringcast), bucket upper bounds in ms.
fn srv(v: &Value, p: &str) -> Option<f64> {
    complete(v)
        .then(|| f(v, &format!("/delivery/server_histogram/{p}")).map(|s| s * 1e3))
        .flatten()
}
fn srv_p50(v: &Value) -> Option<f64> {
    srv(v, "p50_le_s")
}
fn srv_p99(v: &Value) -> Option<f64> {
    srv(v, "p99_le_s")
}
fn srv_p99_gt(v: &Value) -> Option<f64> {
    srv(v, "p99_gt_s")
}
/// Kernel slab growth over the idle hold per client–server pair (both ends are in this kernel).
fn kernel_slab(v: &Value) -> Option<f64> {
    connected_all(v)
        .then(|| f(v, "/kernel/slab_bytes_per_conn"))
        .flatten()
}
fn kernel_unreclaim(v: &Value) -> Option<f64> {
    connected_all(v)
        .then(|| f(v, "/kernel/sunreclaim_bytes_per_conn"))
        .flatten()
}
fn kernel_tcp_mem(v: &Value) -> Option<f64> {
    connected_all(v)
        .then(|| f(v, "/kernel/tcp_mem_bytes_per_conn"))
        .flatten()
}
/// The server's RSS before any client connected (its base for the projection).
fn rss_base(v: &Value) -> Option<f64> {
    f(v, "/hold/server/rss_before_kb").map(|kb| kb * 1024.0)
}
fn tool_processes(v: &Value) -> Option<f64> {
    f(v, "/tool/processes")
}

macro_rules! m {
    ($id:expr, $sc:expr, $label:expr, $unit:ident, $better:ident, $get:expr) => {
        Metric {
            id: $id,
            scenario: $sc,
            label: $label,
            unit: Unit::$unit,
            better: Better::$better,
            get: $get,
        }
    };
}

/// Every figure, grouped by scenario in report order.
pub fn metrics() -> Vec<Metric> {
    let mut v = Vec::new();
    for sc in IDLE {
        v.push(m!(
            "rss",
            sc,
            "RSS per idle subscribed connection",
            Bytes,
            Lower,
            rss
        ));
        v.push(m!(
            "connect_cpu",
            sc,
            "server CPU per connect+subscribe",
            Micros,
            Lower,
            connect_cpu
        ));
        v.push(m!(
            "connect_rate",
            sc,
            "connects per second",
            PerSecond,
            Higher,
            connect_rate
        ));
        v.push(m!(
            "handshake_p50",
            sc,
            "handshake p50 (connect → 204)",
            Millis,
            Lower,
            handshake_p50
        ));
        v.push(m!(
            "listen_overflows",
            sc,
            "SYNs dropped on a full accept queue",
            Count,
            Lower,
            listen_overflows
        ));
        v.push(m!(
            "handshake_p99",
            sc,
            "handshake p99",
            Millis,
            Lower,
            handshake_p99
        ));
        v.push(m!(
            "ttl",
            sc,
            "1 message: time to last delivery",
            Millis,
            Lower,
            ttl_ms
        ));
        v.push(m!(
            "cpu_per_delivery",
            sc,
            "1 message: server CPU per delivery",
            Micros,
            Lower,
            cpu_us_per_delivery
        ));
        v.push(m!(
            "lat_p50",
            sc,
            "1 message: latency p50",
            Millis,
            Lower,
            lat_p50
        ));
        v.push(m!(
            "lat_p99",
            sc,
            "1 message: latency p99",
            Millis,
            Lower,
            lat_p99
        ));
        v.push(m!(
            "kernel_slab",
            sc,
            "kernel slab per connection (client + server end)",
            Bytes,
            Lower,
            kernel_slab
        ));
        v.push(m!(
            "kernel_unreclaim",
            sc,
            "… of which unreclaimable",
            Bytes,
            Lower,
            kernel_unreclaim
        ));
        v.push(m!(
            "kernel_tcp_mem",
            sc,
            "TCP socket buffers per connection (both ends)",
            Bytes,
            Lower,
            kernel_tcp_mem
        ));
        v.push(m!(
            "rss_base",
            sc,
            "server RSS before connecting",
            Bytes,
            Lower,
            rss_base
        ));
        v.push(m!(
            "tool_processes",
            sc,
            "load-tool processes holding the clients",
            Count,
            Lower,
            tool_processes
        ));
    }
    for sc in FANOUT {
        cores(&mut v, sc);
        v.push(m!(
            "ttl",
            sc,
            "time to last delivery",
            Millis,
            Lower,
            ttl_ms
        ));
        v.push(m!(
            "cpu_per_delivery",
            sc,
            "server CPU per delivery",
            Micros,
            Lower,
            cpu_us_per_delivery
        ));
        v.push(m!(
            "per_cpu_s",
            sc,
            "deliveries per server CPU second",
            PerSecond,
            Higher,
            deliveries_per_cpu_s
        ));
        v.push(m!(
            "deliveries_per_s",
            sc,
            "deliveries per second (wall)",
            PerSecond,
            Higher,
            deliveries_per_s
        ));
        v.push(m!("lat_p50", sc, "latency p50", Millis, Lower, lat_p50));
        v.push(m!("lat_p90", sc, "latency p90", Millis, Lower, lat_p90));
        v.push(m!("lat_p99", sc, "latency p99", Millis, Lower, lat_p99));
        v.push(m!("lat_max", sc, "latency max", Millis, Lower, lat_max));
    }
    let sc = "throughput-max";
    cores(&mut v, sc);
    v.push(m!(
        "deliveries_per_s",
        sc,
        "max sustained deliveries per second",
        PerSecond,
        Higher,
        deliveries_per_s
    ));
    v.push(m!(
        "publish_rate",
        sc,
        "messages published per second",
        PerSecond,
        Higher,
        publish_rate
    ));
    v.push(m!(
        "cpu_per_delivery",
        sc,
        "server CPU per delivery",
        Micros,
        Lower,
        cpu_us_per_delivery
    ));
    v.push(m!(
        "per_cpu_s",
        sc,
        "deliveries per server CPU second",
        PerSecond,
        Higher,
        deliveries_per_cpu_s
    ));
    v.push(m!("lat_p50", sc, "latency p50", Millis, Lower, lat_p50));
    v.push(m!("lat_p99", sc, "latency p99", Millis, Lower, lat_p99));
    for sc in SHARES.iter().map(|(s, _)| *s).chain([FIXED]) {
        cores(&mut v, sc);
        v.push(m!(
            "publish_rate",
            sc,
            "messages published per second",
            PerSecond,
            Higher,
            publish_rate
        ));
        v.push(m!(
            "sustained",
            sc,
            "deliveries per second while publishing",
            PerSecond,
            Higher,
            sustained
        ));
        v.push(m!(
            "cpu_per_delivery",
            sc,
            "server CPU per delivery",
            Micros,
            Lower,
            cpu_us_per_delivery
        ));
        v.push(m!("lat_p50", sc, "latency p50", Millis, Lower, lat_p50));
        v.push(m!("lat_p90", sc, "latency p90", Millis, Lower, lat_p90));
        v.push(m!("lat_p99", sc, "latency p99", Millis, Lower, lat_p99));
        v.push(m!("lat_p999", sc, "latency p99.9", Millis, Lower, lat_p999));
        v.push(m!("lat_max", sc, "latency max", Millis, Lower, lat_max));
        v.push(m!(
            "srv_p50",
            sc,
            "server publish → last write p50 (≤ bucket)",
            Millis,
            Lower,
            srv_p50
        ));
        v.push(m!(
            "srv_p99",
            sc,
            "server publish → last write p99 (≤ bucket)",
            Millis,
            Lower,
            srv_p99
        ));
        v.push(m!(
            "srv_p99_gt",
            sc,
            "server publish → last write p99 (> bucket's lower edge)",
            Millis,
            Lower,
            srv_p99_gt
        ));
    }
    v
}

/// How busy the server and the load tool were during the delivery phase: both share the same two
/// cores, so these say how much of the machine each had.
fn cores(v: &mut Vec<Metric>, sc: &'static str) {
    v.push(m!(
        "server_cores",
        sc,
        "server CPU busy (cores)",
        Cores,
        Lower,
        server_cores
    ));
    v.push(m!(
        "tool_cores",
        sc,
        "load tool CPU busy (cores)",
        Cores,
        Lower,
        tool_cores
    ));
}

/// Values of every figure: (scenario, metric id, server) → one value per round (None: not measured).
pub struct Table {
    pub rounds: u32,
    values: BTreeMap<(String, &'static str, ServerKind), Vec<Option<f64>>>,
}

impl Table {
    pub fn build(runs: &[Loaded], rounds: u32) -> Table {
        let metrics = metrics();
        let mut values = BTreeMap::new();
        for run in runs {
            let Some(json) = &run.json else { continue };
            for m in metrics.iter().filter(|m| m.scenario == run.record.scenario) {
                let slot: &mut Vec<Option<f64>> = values
                    .entry((m.scenario.to_string(), m.id, run.record.server))
                    .or_insert_with(|| vec![None; rounds as usize]);
                if let Some(cell) = slot.get_mut(run.record.round as usize - 1) {
                    *cell = (m.get)(json).filter(|x| x.is_finite());
                }
            }
        }
        Table { rounds, values }
    }

    /// Per-round values of a figure for one server.
    pub fn rounds_of(&self, scenario: &str, id: &str, server: ServerKind) -> Vec<Option<f64>> {
        self.values
            .iter()
            .find(|((s, m, k), _)| s == scenario && *m == id && *k == server)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| vec![None; self.rounds as usize])
    }

    pub fn summary(&self, scenario: &str, id: &str, server: ServerKind) -> Option<Summary> {
        let v: Vec<f64> = self
            .rounds_of(scenario, id, server)
            .into_iter()
            .flatten()
            .collect();
        stats::summarize(&v)
    }

    /// ringcast's advantage over `other` on a figure in each round (ratio within the round).
    pub fn advantage_rounds(
        &self,
        scenario: &str,
        id: &str,
        other: ServerKind,
        better: Better,
    ) -> Vec<Option<f64>> {
        let ours = self.rounds_of(scenario, id, ServerKind::Ringcast);
        let theirs = self.rounds_of(scenario, id, other);
        ours.into_iter()
            .zip(theirs)
            .map(|(a, b)| stats::advantage(a?, b?, better))
            .collect()
    }

    /// ringcast's advantage over `other`: median and range of the per-round ratios.
    pub fn advantage(
        &self,
        scenario: &str,
        id: &str,
        other: ServerKind,
        better: Better,
    ) -> Option<Summary> {
        let r: Vec<f64> = self
            .advantage_rounds(scenario, id, other, better)
            .into_iter()
            .flatten()
            .collect();
        stats::summarize(&r)
    }
}

pub fn metric(scenario: &str, id: &str) -> Option<Metric> {
    metrics()
        .into_iter()
        .find(|m| m.scenario == scenario && m.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::RunRecord;

    fn run(round: u32, server: ServerKind, ttl: f64, complete: bool) -> Loaded {
        let json = serde_json::json!({
            "schema": "ringcast-loadgen/1",
            "config": {"connections": 10},
            "connect": {"connected": 10},
            "delivery": {"complete": complete, "time_to_last_delivery_s": ttl,
                         "server_cpu_ns_per_delivery": 2000.0, "deliveries_per_s": 5.0},
            "publish": {"rate_per_s": 1.0},
            "latency_ns": {"p50": 1e6, "p99": 2e6, "max": 3e6, "p90": 1e6, "p999": 3e6},
        });
        Loaded {
            record: RunRecord {
                round,
                scenario: "fanout-10k".into(),
                server,
                file: None,
                server_command: None,
                loadgen_command: None,
                wall_s: 0.0,
                exit_code: Some(0),
                ok: complete,
                problems: vec![],
            },
            json: Some(json),
        }
    }

    #[test]
    fn figures_from_complete_runs_only() {
        let runs = vec![
            run(1, ServerKind::Ringcast, 0.1, true),
            run(2, ServerKind::Ringcast, 0.3, true),
            run(3, ServerKind::Ringcast, 9.9, false),
            run(1, ServerKind::Baseline, 0.2, true),
            run(2, ServerKind::Baseline, 0.9, true),
        ];
        let t = Table::build(&runs, 3);
        let s = t
            .summary("fanout-10k", "ttl", ServerKind::Ringcast)
            .unwrap();
        assert_eq!(s.n, 2);
        assert!((s.median - 200.0).abs() < 1e-9);
        let a = t
            .advantage("fanout-10k", "ttl", ServerKind::Baseline, Better::Lower)
            .unwrap();
        assert!((a.min - 2.0).abs() < 1e-9 && (a.max - 3.0).abs() < 1e-9);
        let c = t
            .summary("fanout-10k", "cpu_per_delivery", ServerKind::Baseline)
            .unwrap();
        assert!((c.median - 2.0).abs() < 1e-9);
    }
}
