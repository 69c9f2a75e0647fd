//! The server's own view of a publish: one Prometheus histogram scraped before and after a publish
//! phase (`--metrics-path`, `--server-histogram`), its buckets summed over label sets (ringcast has
//! one per core) and diffed, so the report can put the server-side part of the latency
//! (ringcast: publish → last write of each fan-out) next to the end-to-end one.
//!
//! Percentiles of a bucketed histogram are bucket upper bounds ("p99 ≤ 2.5 ms"), which is all a
//! Prometheus histogram can say.

use std::io;
use std::net::SocketAddr;

use serde::Serialize;

use crate::net::HttpConn;

/// Cumulative bucket counts, by upper bound in seconds (`+Inf` last), summed over label sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(pub Vec<(f64, u64)>);

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("GET {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("GET {path}: HTTP {status}")]
    Status { path: String, status: u16 },
    #[error("GET {path}: no {name}_bucket samples")]
    Missing { path: String, name: String },
}

/// The diff of one phase, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseHistogram {
    pub name: String,
    /// Observations in the phase (ringcast: fan-outs, one per message and core).
    pub count: u64,
    /// (upper bound s, cumulative count) of the phase; `null` bound = +Inf.
    pub buckets: Vec<(Option<f64>, u64)>,
    /// Smallest bucket bound holding the quantile (s); `null` when it is in +Inf or nothing was seen.
    pub p50_le_s: Option<f64>,
    pub p90_le_s: Option<f64>,
    pub p99_le_s: Option<f64>,
    pub p999_le_s: Option<f64>,
    /// The lower edge of the p50 / p99 bucket (s): the quantile is in `(gt, le]`.
    pub p50_gt_s: Option<f64>,
    pub p99_gt_s: Option<f64>,
}

/// Parses the `<name>_bucket{…,le="…"} N` lines of a Prometheus text exposition and sums them per
/// `le` over the other labels.
pub fn parse(text: &str, name: &str) -> Buckets {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, u64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Some(le) = labels
            .split(',')
            .find_map(|l| l.trim().strip_prefix("le=\""))
            .and_then(|v| v.strip_suffix('"'))
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse::<f64>() {
                Ok(b) => b,
                Err(_) => continue,
            }
        };
        // Counts may be written as floats ("3.0") by some encoders.
        let Some(count) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        match out.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, c)) => *c += count as u64,
            None => out.push((bound, count as u64)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Buckets(out)
}

/// `GET path` on the server, parsed.
pub async fn scrape(
    target: SocketAddr,
    host: &str,
    path: &str,
    name: &str,
) -> Result<Buckets, ScrapeError> {
    let io = |source| ScrapeError::Io {
        path: path.to_string(),
        source,
    };
    let mut conn = HttpConn::open(None, target).await.map_err(io)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain\r\n\r\n");
    let resp = conn.request(req.as_bytes()).await.map_err(io)?;
    if !resp.is_success() {
        return Err(ScrapeError::Status {
            path: path.to_string(),
            status: resp.status,
        });
    }
    let b = parse(&String::from_utf8_lossy(&resp.body), name);
    if b.0.is_empty() {
        return Err(ScrapeError::Missing {
            path: path.to_string(),
            name: name.to_string(),
        });
    }
    Ok(b)
}

impl Buckets {
    /// What was observed between `self` (before) and `later`.
    pub fn diff(&self, later: &Buckets, name: &str) -> PhaseHistogram {
        let buckets: Vec<(f64, u64)> = later
            .0
            .iter()
            .map(|&(b, c)| {
                let before = self.0.iter().find(|(x, _)| *x == b).map_or(0, |x| x.1);
                (b, c.saturating_sub(before))
            })
            .collect();
        let count = buckets.last().map_or(0, |b| b.1);
        // The bucket holding quantile q: its index.
        let at = |q: f64| -> Option<usize> {
            if count == 0 {
                return None;
            }
            let rank = (q * count as f64).ceil() as u64;
            buckets.iter().position(|(_, c)| *c >= rank)
        };
        let q = |q: f64| at(q).map(|i| buckets[i].0).filter(|b| b.is_finite());
        let gt = |q: f64| at(q).map(|i| if i == 0 { 0.0 } else { buckets[i - 1].0 });
        PhaseHistogram {
            name: name.to_string(),
            count,
            p50_le_s: q(0.5),
            p90_le_s: q(0.9),
            p99_le_s: q(0.99),
            p999_le_s: q(0.999),
            p50_gt_s: gt(0.5),
            p99_gt_s: gt(0.99),
            buckets: buckets
                .into_iter()
                .map(|(b, c)| (b.is_finite().then_some(b), c))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "ringcast_node_publish_last_write_seconds";

    fn text(c0: [u64; 4], c1: [u64; 4]) -> String {
        let mut t = String::from("# TYPE ringcast_node_publish_last_write_seconds histogram\n");
        for (core, c) in [(0, c0), (1, c1)] {
            for (le, n) in ["0.001", "0.0025", "0.005", "+Inf"].iter().zip(c) {
                t.push_str(&format!(
                    "{NAME}_bucket{{core=\"{core}\",le=\"{le}\"}} {n}\n"
                ));
            }
            t.push_str(&format!("{NAME}_count{{core=\"{core}\"}} {}\n", c[3]));
        }
        t.push_str("ringcast_node_clients{core=\"0\"} 3\n");
        t
    }

    #[test]
    fn buckets_summed_over_cores() {
        let b = parse(&text([1, 2, 3, 3], [0, 5, 5, 6]), NAME);
        assert_eq!(
            b.0,
            vec![(0.001, 1), (0.0025, 7), (0.005, 8), (f64::INFINITY, 9)]
        );
        assert!(parse("nothing here", NAME).0.is_empty());
    }

    #[test]
    fn phase_diff_and_quantile_bounds() {
        let before = parse(&text([1, 1, 1, 1], [0, 0, 0, 0]), NAME);
        // 100 new observations: 50 ≤ 1 ms, 49 in (1, 2.5] ms, 1 in (2.5, 5] ms
        let after = parse(&text([51, 100, 101, 101], [0, 0, 0, 0]), NAME);
        let d = before.diff(&after, NAME);
        assert_eq!(d.count, 100);
        assert_eq!(d.p50_le_s, Some(0.001));
        assert_eq!(d.p90_le_s, Some(0.0025));
        assert_eq!(d.p99_le_s, Some(0.0025));
        assert_eq!(d.p999_le_s, Some(0.005));
        assert_eq!(d.p50_gt_s, Some(0.0));
        assert_eq!(d.p99_gt_s, Some(0.001));
        assert_eq!(d.buckets.last(), Some(&(None, 100)));
        // Nothing observed: no quantiles.
        assert_eq!(before.diff(&before, NAME).p99_le_s, None);
        // Beyond the last finite bound: no finite answer.
        let slow = parse(&text([1, 1, 1, 11], [0, 0, 0, 0]), NAME);
        assert_eq!(before.diff(&slow, NAME).p50_le_s, None);
    }
}
