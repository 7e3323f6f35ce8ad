//! Percentiles of a stream of values in little memory: a log-bucketed histogram (the idea of
//! DDSketch). A value lands in the bin `ceil(log_γ v)`; every quantile read back is within
//! about 1% of a value that was recorded, however many values there are, and two sketches
//! merge by adding their bins (a minute's p99 is the merge of six 10-second buckets).
//! CloudWatch's own percentiles are approximations of the same kind.

use std::collections::BTreeMap;

/// Bin growth: bins are 2% wide, so the midpoint estimate is within 1%.
const GAMMA: f64 = 1.02;
/// Values at or below this (and negative ones) are counted as zero.
const MIN_POSITIVE: f64 = 1e-3;

/// The histogram of a set of values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sketch {
    zeros: u64,
    bins: BTreeMap<i32, u64>,
    count: u64,
    min: f64,
    max: f64,
}

impl Sketch {
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        if value <= MIN_POSITIVE {
            self.zeros += 1;
        } else {
            let bin = (value.ln() / GAMMA.ln()).ceil() as i32;
            *self.bins.entry(bin).or_default() += 1;
        }
        self.note_extremes(value, value);
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        self.zeros += other.zeros;
        for (bin, n) in &other.bins {
            *self.bins.entry(*bin).or_default() += n;
        }
        self.note_extremes(other.min, other.max);
        self.count += other.count;
    }

    fn note_extremes(&mut self, min: f64, max: f64) {
        if self.count == 0 {
            self.min = min;
            self.max = max;
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
    }

    /// The `q` quantile (0 ≤ q ≤ 1) of the values added, `None` when there are none. The
    /// smallest and the largest value are exact.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        if rank == 0 {
            return Some(self.min);
        }
        if rank == self.count - 1 {
            return Some(self.max);
        }
        let mut seen = self.zeros;
        if seen > rank {
            return Some(self.min.clamp(0.0, MIN_POSITIVE));
        }
        for (bin, n) in &self.bins {
            seen += n;
            if seen > rank {
                let estimate = 2.0 * GAMMA.powi(*bin) / (GAMMA + 1.0);
                return Some(estimate.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within_one_percent(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() <= expected * 0.01,
            "{actual} is not within 1% of {expected}"
        );
    }

    #[test]
    fn quantiles_are_within_one_percent_of_the_exact_ones() {
        let mut s = Sketch::default();
        for v in 1..=1000 {
            s.add(f64::from(v));
        }
        within_one_percent(s.quantile(0.5).unwrap(), 500.0);
        within_one_percent(s.quantile(0.9).unwrap(), 900.0);
        within_one_percent(s.quantile(0.99).unwrap(), 990.0);
        assert_eq!(s.quantile(0.0), Some(1.0));
        assert_eq!(s.quantile(1.0), Some(1000.0));
        assert_eq!(Sketch::default().quantile(0.5), None);
    }

    #[test]
    fn merged_sketches_answer_for_all_their_values() {
        let (mut a, mut b) = (Sketch::default(), Sketch::default());
        for v in 0..100 {
            a.add(f64::from(v) * 0.5);
            b.add(1000.0 + f64::from(v));
        }
        a.merge(&b);
        assert_eq!(a.quantile(0.0), Some(0.0));
        assert_eq!(a.quantile(1.0), Some(1099.0));
        within_one_percent(a.quantile(0.75).unwrap(), 1049.0);
        within_one_percent(a.quantile(0.25).unwrap(), 24.5);
    }
}
