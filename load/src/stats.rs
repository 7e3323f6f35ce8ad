//! Latency and status figures per step and endpoint. Exact percentiles from every sample
//! (a step of 60 s at 833 requests/s is 50,000 samples, a few hundred kB): no histogram
//! resolution to argue about.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Percentiles of a set of latencies, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (any order).
    pub fn of(samples: &[f64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let index = (q * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1]
        };
        Latency {
            count: sorted.len(),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// What one endpoint answered during one step.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub latencies_ms: Vec<f64>,
    /// HTTP status (0 for a transport error) → count.
    pub statuses: BTreeMap<u16, u64>,
}

impl Samples {
    pub fn add(&mut self, status: u16, latency_ms: f64) {
        self.latencies_ms.push(latency_ms);
        *self.statuses.entry(status).or_default() += 1;
    }
}

/// An endpoint's figures for a step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointFigures {
    pub endpoint: String,
    pub latency: Latency,
    pub per_second: f64,
    /// Answers that are not what the scenario expects (5xx, 429, transport errors; a 304 or
    /// an idempotent replay's 200 are expected answers), by status.
    pub errors: BTreeMap<u16, u64>,
    pub statuses: BTreeMap<u16, u64>,
}

/// Whether `status` is an error for the load's purposes: throttled, failed or unanswered.
/// The scenario's 4xx answers (a 409 on a conflicting payment, a 412) are outcomes, not
/// failures of the stack.
pub fn is_error(status: u16) -> bool {
    status == 0 || status == 429 || status >= 500
}

/// Figures per endpoint from what each endpoint answered over `seconds`, and the total.
pub fn summarise(
    samples: &BTreeMap<String, Samples>,
    seconds: f64,
) -> (Vec<EndpointFigures>, EndpointFigures) {
    let figures = |name: &str, s: &Samples| EndpointFigures {
        endpoint: name.to_owned(),
        latency: Latency::of(&s.latencies_ms),
        per_second: s.latencies_ms.len() as f64 / seconds.max(f64::EPSILON),
        errors: s
            .statuses
            .iter()
            .filter(|(status, _)| is_error(**status))
            .map(|(s, n)| (*s, *n))
            .collect(),
        statuses: s.statuses.clone(),
    };
    let mut all = Samples::default();
    let per_endpoint = samples
        .iter()
        .map(|(name, s)| {
            all.latencies_ms.extend_from_slice(&s.latencies_ms);
            for (status, n) in &s.statuses {
                *all.statuses.entry(*status).or_default() += n;
            }
            figures(name, s)
        })
        .collect();
    (per_endpoint, figures("all", &all))
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let l = Latency::of(&samples);
        assert_eq!(
            (l.count, l.p50, l.p95, l.p99, l.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(l.mean, 50.5);
        let one = Latency::of(&[7.0]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert_eq!(Latency::of(&[]), Latency::default());
    }

    #[test]
    fn errors_are_throttles_failures_and_transport_errors() {
        let mut samples = BTreeMap::new();
        let get = samples
            .entry("GET /a".to_owned())
            .or_insert_with(Samples::default);
        for status in [200, 200, 304, 429, 503, 0] {
            get.add(status, 10.0);
        }
        samples
            .entry("POST /b".to_owned())
            .or_insert_with(Samples::default)
            .add(409, 20.0);
        let (each, all) = summarise(&samples, 2.0);
        assert_eq!(each[0].errors, BTreeMap::from([(0, 1), (429, 1), (503, 1)]));
        assert!(each[1].errors.is_empty(), "a conflict is an outcome");
        assert_eq!(all.per_second, 3.5);
        assert_eq!(all.statuses.values().sum::<u64>(), 7);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
