//! Medians over rounds, and ratios taken within a round.
//!
//! Why medians: the machine is shared and has 2 cores for the servers *and* the load tool, so a
//! single run can be disturbed; the median of ≥ 3 rounds ignores one bad round, and min–max shows
//! how much the rounds disagreed. Why ratios per round: two servers measured minutes apart in the
//! same round saw the same machine conditions, so their ratio is steadier than the ratio of two
//! medians taken from different rounds.

/// Median and range of a figure over the rounds that produced it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many rounds produced a value.
    pub n: usize,
}

/// The summary of the finite values, or `None` when there are none. The median of an even count
/// is the mean of the two middle values.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// Which way a figure is better; decides how "ringcast's advantage" is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// How many times better `ours` is than `theirs` (> 1: ours is better), for one round.
pub fn advantage(ours: f64, theirs: f64, better: Better) -> Option<f64> {
    let r = match better {
        Better::Lower => theirs / ours,
        Better::Higher => ours / theirs,
    };
    (r.is_finite() && r > 0.0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(summarize(&[f64::NAN]).is_none());
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn advantage_direction() {
        assert_eq!(advantage(1.0, 4.0, Better::Lower), Some(4.0));
        assert_eq!(advantage(4.0, 1.0, Better::Higher), Some(4.0));
        assert_eq!(advantage(0.0, 1.0, Better::Lower), None);
    }
}
