//! `GET /metrics`: every core's counters in the Prometheus text format
//! (0.0.4), each sample labelled with its core (`core="0"`).
//!
//! The exposition is written by the `prometheus-client` crate, not by hand:
//! the counters already live on the cores (`core::stats`, plain integers
//! touched without atomics), so a scrape takes a snapshot of every core
//! through the broker, as `/api/stats` does, and hands it to the crate as a
//! [`Collector`] of constant metrics. Nothing on the hot path knows this
//! endpoint exists. (The `metrics` crate with an exporter would put a global
//! recorder behind every increment: atomics or thread-local handles on the
//! fan-out path, for values the cores count anyway.)
//!
//! Names follow Centrifugo's scheme — `<namespace>_<subsystem>_<name>`, a
//! subsystem per concern: `ringcast_node_*` (the core's state and its
//! fan-out), `ringcast_transport_*` (socket writes), `ringcast_client_*`
//! (streams: how they end, slow consumers, auth), `ringcast_hook_*`. The
//! README's operations section lists them all.

use super::caller::Caller;
use crate::core::latency::BUCKETS;
use crate::core::{CoreStats, Counters};
use crate::http::error::ApiError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

pub async fn handle(caller: &Caller<'_>) -> Result<Vec<u8>, ApiError> {
    let cores = caller.broker.stats().await?;
    render(cores)
        .map(String::into_bytes)
        .map_err(|_| ApiError::new(500, "Could not encode the metrics."))
}

/// The exposition of these cores' snapshots.
pub fn render(cores: Vec<CoreStats>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(cores)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// What a metric is read from: one counter of a core.
type Read = fn(&Counters) -> u64;

/// A family with one sample per core: name (a counter gets `_total` from the
/// encoder), help, type, counter.
const PER_CORE: &[(&str, &str, MetricType, Read)] = &[
    (
        "ringcast_node_connections",
        "Open TCP connections.",
        MetricType::Gauge,
        |c| c.connections,
    ),
    (
        "ringcast_node_clients",
        "Open realtime streams (registered clients).",
        MetricType::Gauge,
        |c| c.clients,
    ),
    (
        "ringcast_node_subscriptions",
        "(client, subscription) pairs.",
        MetricType::Gauge,
        |c| c.subscriptions,
    ),
    (
        "ringcast_node_topics",
        "Distinct subscription strings held by the core.",
        MetricType::Gauge,
        |c| c.topics,
    ),
    (
        "ringcast_node_queued_bytes",
        "Bytes queued for clients and not yet written.",
        MetricType::Gauge,
        |c| c.queued_bytes,
    ),
    (
        "ringcast_node_messages_published",
        "Messages fanned out by the core (publishes, sends, broadcasts).",
        MetricType::Counter,
        |c| c.messages,
    ),
    (
        "ringcast_node_deliveries",
        "Frames queued for a client.",
        MetricType::Counter,
        |c| c.deliveries,
    ),
    (
        "ringcast_node_accept_errors",
        "Accepts that failed (out of file descriptors, most likely).",
        MetricType::Counter,
        |c| c.accept_errors,
    ),
    (
        "ringcast_transport_frames_written",
        "Frames fully written to a socket.",
        MetricType::Counter,
        |c| c.frames_written,
    ),
    (
        "ringcast_transport_bytes_written",
        "Bytes of frames written to sockets.",
        MetricType::Counter,
        |c| c.bytes_written,
    ),
    (
        "ringcast_transport_writes",
        "Write operations (frames_written / writes: frames per write).",
        MetricType::Counter,
        |c| c.writes,
    ),
    (
        "ringcast_transport_oversized_frames",
        "Deliveries refused because the event alone is over --max-queue-bytes.",
        MetricType::Counter,
        |c| c.oversized_frames,
    ),
    (
        "ringcast_history_events",
        "Messages kept in the core's copy of the history (--history).",
        MetricType::Gauge,
        |c| c.history_events,
    ),
    (
        "ringcast_history_bytes",
        "Bytes the core's history counts against its share of --history-max-bytes.",
        MetricType::Gauge,
        |c| c.history_bytes,
    ),
    (
        "ringcast_history_evicted",
        "Messages evicted from the history (a topic's limit or the byte cap).",
        MetricType::Counter,
        |c| c.history_evicted,
    ),
    (
        "ringcast_history_replayed",
        "Events replayed from the history to resuming clients.",
        MetricType::Counter,
        |c| c.history_replayed,
    ),
    (
        "ringcast_history_gaps",
        "history_gap events: a cursor too old or from another epoch.",
        MetricType::Counter,
        |c| c.history_gaps,
    ),
    (
        "ringcast_transport_heartbeats",
        "Heartbeat comments queued (--heartbeat).",
        MetricType::Counter,
        |c| c.heartbeats,
    ),
    (
        "ringcast_client_dropped",
        "Clients disconnected as slow consumers (dropped_clients).",
        MetricType::Counter,
        |c| c.dropped_clients,
    ),
    (
        "ringcast_client_dropped_frames",
        "Frames discarded with slow consumers (dropped_frames).",
        MetricType::Counter,
        |c| c.dropped_frames,
    ),
];

/// The label values of a family and the counter of each.
type Values = &'static [(&'static str, Read)];

/// Families with a second label: name, help, label, and (value, counter).
const LABELLED: &[(&str, &str, &str, Values)] = &[
    (
        "ringcast_client_disconnects",
        "Streams ended, by reason.",
        "reason",
        &[
            ("client_closed", |c| c.ended_client_closed),
            ("idle_timeout", |c| c.ended_idle_timeout),
            ("lifetime", |c| c.ended_lifetime),
            ("shutdown", |c| c.ended_shutdown),
            ("slow_consumer", |c| c.ended_slow_consumer),
            ("unregistered", |c| c.ended_unregistered),
        ],
    ),
    (
        "ringcast_client_auth",
        "Subscription requests by how their token was taken (on the core that checked it).",
        "outcome",
        &[
            ("verified", |c| c.auth_verified),
            ("guest", |c| c.auth_guest),
            ("busy", |c| c.auth_busy),
            ("unavailable", |c| c.auth_unavailable),
        ],
    ),
    (
        "ringcast_hook_outcomes",
        "Hook decisions: messages skipped, requests rejected, hooks that panicked.",
        "outcome",
        &[
            ("skipped", |c| c.hook_skipped),
            ("rejected", |c| c.hook_rejected),
            ("panicked", |c| c.hook_panicked),
        ],
    ),
];

/// The publish → last write histogram's name.
pub const LATENCY: &str = "ringcast_node_publish_last_write_seconds";

/// Every core's snapshot, encoded as constant metrics on each scrape.
#[derive(Debug)]
struct Snapshot(Vec<CoreStats>);

impl Snapshot {
    fn core(stats: &CoreStats) -> [(&'static str, String); 1] {
        [("core", stats.core.to_string())]
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for &(name, help, kind, read) in PER_CORE {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for stats in &self.0 {
                let labels = Self::core(stats);
                let mut sample = family.encode_family(&labels)?;
                let value = read(&stats.counters);
                match kind {
                    MetricType::Gauge => sample.encode_gauge(&value)?,
                    _ => sample.encode_counter::<NoLabelSet, _, u64>(&value, None)?,
                }
            }
        }
        for &(name, help, label, values) in LABELLED {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for stats in &self.0 {
                for &(value, read) in values {
                    let labels = [("core", stats.core.to_string()), (label, value.to_owned())];
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&read(&stats.counters), None)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            LATENCY,
            "Time from a message entering a core's fan-out to the write that completes (or the drop that discards) its last queued copy on that core; observed once per fan-out.",
            None,
            MetricType::Histogram,
        )?;
        for stats in &self.0 {
            let h = &stats.latency;
            // Per bucket, as the crate's own histogram keeps them: the encoder
            // makes them cumulative.
            let buckets: Vec<(f64, u64)> = BUCKETS
                .iter()
                .chain([f64::INFINITY].iter())
                .copied()
                .zip(h.counts)
                .collect();
            let labels = Self::core(stats);
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum_seconds(), h.count, &buckets, None)?;
        }
        let mut family = encoder.encode_descriptor(
            "ringcast_node_fanouts_untracked",
            "Fan-outs left out of the latency histogram: more were in flight than the core tracks.",
            None,
            MetricType::Counter,
        )?;
        for stats in &self.0 {
            let labels = Self::core(stats);
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&stats.latency.untracked, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_core_and_reason_is_a_labelled_sample() {
        let mut one = CoreStats {
            core: 1,
            ..CoreStats::default()
        };
        one.counters.clients = 3;
        one.counters.deliveries = 7;
        one.counters.ended_idle_timeout = 2;
        one.latency.observe(Duration::from_millis(3));
        let text = render(vec![CoreStats::default(), one]).unwrap();
        for line in [
            "# TYPE ringcast_node_clients gauge",
            "ringcast_node_clients{core=\"1\"} 3",
            "ringcast_node_deliveries_total{core=\"1\"} 7",
            "ringcast_client_disconnects_total{core=\"1\",reason=\"idle_timeout\"} 2",
            "ringcast_client_disconnects_total{core=\"0\",reason=\"shutdown\"} 0",
            "ringcast_node_publish_last_write_seconds_bucket{core=\"1\",le=\"0.0025\"} 0",
            "ringcast_node_publish_last_write_seconds_bucket{core=\"1\",le=\"0.005\"} 1",
            "ringcast_node_publish_last_write_seconds_bucket{core=\"1\",le=\"10\"} 1",
            "ringcast_node_publish_last_write_seconds_bucket{core=\"1\",le=\"+Inf\"} 1",
            "ringcast_node_publish_last_write_seconds_count{core=\"1\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
