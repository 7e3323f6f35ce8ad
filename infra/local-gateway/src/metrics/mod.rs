//! The figures an operator watches on AWS, kept locally: what the functions publish as
//! Embedded Metric Format records on stdout ([`emf`]), and what AWS itself would publish
//! from what the gateway knows ([`aws`]: Lambda invocations, errors, throttles, duration,
//! cold starts, memory, concurrency; SQS depth; stream iterator age; WebSocket traffic).
//!
//! They are served on the HTTP API's port, which binds loopback only, under `/_local/`
//! (a prefix API Gateway never routes, so it cannot shadow an API route): `/_local/metrics`
//! in the Prometheus text format and `/_local/dashboard`, a page drawing the CloudWatch
//! dashboard's widgets from `/_local/metrics.json` ([`routes`]).
//!
//! Every series keeps 10-second buckets for the last 15 minutes (count, sum, min, max, last
//! value and, for distributions, a [`sketch::Sketch`] for percentiles) and its totals since
//! the gateway started. As in CloudWatch, a metric published under several dimension sets
//! is several series, one per set.

pub mod aws;
pub mod emf;
pub mod json;
pub mod prometheus;
pub mod routes;
pub mod sampler;
pub mod sketch;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sketch::Sketch;

/// Width of a time bucket, seconds.
pub const BUCKET_SECS: u64 = 10;
/// How far back buckets are kept, seconds.
pub const RETENTION_SECS: u64 = 15 * 60;

/// How a series' values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Values add up (requests, errors, capacity units): the figure is their sum.
    Counter,
    /// A level sampled now and then (concurrency, queue depth): the figure is the latest
    /// value, or a bucket's maximum.
    Gauge,
    /// A distribution (latencies): count, sum and percentiles.
    Summary,
}

impl Kind {
    /// How an EMF metric of `unit` is kept: counts (and unit-less amounts) add up, anything
    /// measured (time, sizes) is a distribution.
    pub fn of_emf_unit(unit: &str) -> Kind {
        match unit {
            "Count" | "None" => Kind::Counter,
            _ => Kind::Summary,
        }
    }
}

/// A series' identity: namespace, metric name and dimension values (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

impl SeriesKey {
    pub fn new(namespace: &str, name: &str, dimensions: &[(&str, &str)]) -> Self {
        Self::owned(
            namespace,
            name,
            dimensions
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    pub fn owned(namespace: &str, name: &str, mut dimensions: Vec<(String, String)>) -> Self {
        dimensions.sort();
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            dimensions,
        }
    }
}

/// The values recorded in one time bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Start, Unix seconds (a multiple of [`BUCKET_SECS`]).
    pub start: u64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    /// Percentiles, for [`Kind::Summary`] only.
    pub sketch: Option<Sketch>,
}

impl Bucket {
    fn new(start: u64, kind: Kind) -> Self {
        Self {
            start,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: 0.0,
            sketch: (kind == Kind::Summary).then(Sketch::default),
        }
    }

    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.last = value;
        if let Some(s) = &mut self.sketch {
            s.add(value);
        }
    }
}

/// One series: totals since the start and recent buckets, oldest first.
#[derive(Debug, Clone)]
pub struct Series {
    pub kind: Kind,
    pub unit: String,
    pub count: u64,
    pub sum: f64,
    pub last: f64,
    pub buckets: VecDeque<Bucket>,
}

impl Series {
    fn add(&mut self, values: &[f64], at: u64) {
        let start = at - at % BUCKET_SECS;
        if self.buckets.back().is_none_or(|b| b.start < start) {
            self.buckets.push_back(Bucket::new(start, self.kind));
            while self
                .buckets
                .front()
                .is_some_and(|b| b.start + RETENTION_SECS <= start)
            {
                self.buckets.pop_front();
            }
        }
        // Values are stamped on arrival, so they come in time order; a thread that lost the
        // race by a bucket boundary adds to the newest bucket.
        let Some(bucket) = self.buckets.back_mut() else {
            return;
        };
        for &value in values {
            bucket.add(value);
            self.count += 1;
            self.sum += value;
            self.last = value;
        }
    }

    /// The percentiles of the values of the buckets that started at or after `since`.
    pub fn sketch_since(&self, since: u64) -> Sketch {
        let mut merged = Sketch::default();
        for b in self.buckets.iter().filter(|b| b.start >= since) {
            if let Some(s) = &b.sketch {
                merged.merge(s);
            }
        }
        merged
    }
}

/// Every series the gateway keeps.
#[derive(Default)]
pub struct Registry {
    series: Mutex<BTreeMap<SeriesKey, Series>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.series.lock().map(|s| s.len()).unwrap_or_default();
        write!(f, "Registry {{ {n} series }}")
    }
}

/// Now, Unix seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Three decimals: plenty for a chart or a scrape (percentiles are within 1% anyway), and
/// the JSON for the page stays small.
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

impl Registry {
    /// Records `values` at `at` (Unix seconds). A series keeps the kind and unit it was
    /// first recorded with.
    pub fn record_at(&self, key: SeriesKey, kind: Kind, unit: &str, values: &[f64], at: u64) {
        let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return;
        }
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series
            .entry(key)
            .or_insert_with(|| Series {
                kind,
                unit: unit.to_owned(),
                count: 0,
                sum: 0.0,
                last: 0.0,
                buckets: VecDeque::new(),
            })
            .add(&values, at);
    }

    /// Records one value now.
    pub fn record(
        &self,
        namespace: &str,
        name: &str,
        dimensions: &[(&str, &str)],
        kind: Kind,
        unit: &str,
        value: f64,
    ) {
        self.record_at(
            SeriesKey::new(namespace, name, dimensions),
            kind,
            unit,
            &[value],
            now_secs(),
        );
    }

    /// Records the metrics of a function's log line when it is an EMF record (see [`emf`]);
    /// any other line is left alone.
    pub fn record_log_line(&self, line: &str) {
        let data = emf::parse(line);
        if data.is_empty() {
            return;
        }
        let at = now_secs();
        for d in data {
            let kind = Kind::of_emf_unit(&d.unit);
            let key = SeriesKey::owned(&d.namespace, &d.name, d.dimensions);
            self.record_at(key, kind, &d.unit, &d.values, at);
        }
    }

    /// Runs `read` on every series, in key order, under the registry's lock.
    pub fn read<R>(&self, read: impl FnOnce(&BTreeMap<SeriesKey, Series>) -> R) -> R {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        read(&series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_roll_and_totals_stay() {
        let r = Registry::default();
        let key = SeriesKey::new("N", "Latency", &[("Route", "GET /"), ("Function", "f")]);
        let t0 = 1_764_583_200; // a multiple of 10
        r.record_at(key.clone(), Kind::Summary, "Milliseconds", &[1.0, 3.0], t0);
        r.record_at(key.clone(), Kind::Summary, "Milliseconds", &[5.0], t0 + 9);
        r.record_at(key.clone(), Kind::Summary, "Milliseconds", &[7.0], t0 + 10);
        r.record_at(
            key.clone(),
            Kind::Summary,
            "Milliseconds",
            &[9.0],
            t0 + RETENTION_SECS + 10,
        );
        r.read(|all| {
            assert_eq!(all.len(), 1);
            let (k, s) = all.iter().next().unwrap();
            assert_eq!(k.dimensions[0].0, "Function", "dimensions are sorted");
            assert_eq!((s.count, s.sum, s.last), (5, 25.0, 9.0));
            let starts: Vec<u64> = s.buckets.iter().map(|b| b.start).collect();
            assert_eq!(starts, [t0 + RETENTION_SECS + 10], "older buckets expired");
        });
        let r = Registry::default();
        r.record_at(key.clone(), Kind::Summary, "Milliseconds", &[1.0, 3.0], t0);
        r.record_at(
            key.clone(),
            Kind::Summary,
            "Milliseconds",
            &[5.0, f64::NAN],
            t0 + 9,
        );
        r.record_at(key, Kind::Summary, "Milliseconds", &[7.0], t0 + 10);
        r.read(|all| {
            let s = all.values().next().unwrap();
            let b: Vec<(u64, u64, f64, f64, f64)> = s
                .buckets
                .iter()
                .map(|b| (b.start, b.count, b.sum, b.min, b.max))
                .collect();
            assert_eq!(b, [(t0, 3, 9.0, 1.0, 5.0), (t0 + 10, 1, 7.0, 7.0, 7.0)]);
            assert_eq!(s.sketch_since(t0).quantile(1.0), Some(7.0));
            assert_eq!(s.sketch_since(t0 + 10).quantile(0.0), Some(7.0));
        });
    }

    #[test]
    fn emf_lines_become_series_per_dimension_set() {
        let r = Registry::default();
        let line = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"CollectPro","Dimensions":[["Function"],[]],"Metrics":[{"Name":"ApiLatency","Unit":"Milliseconds"},{"Name":"ApiRequests","Unit":"Count"}]}]},"Function":"accounts","ApiLatency":[10,20],"ApiRequests":2}"#;
        r.record_log_line(line);
        r.record_log_line("REPORT RequestId: x Duration: 1.00 ms");
        r.read(|all| {
            let got: Vec<(String, usize, Kind, u64, f64)> = all
                .iter()
                .map(|(k, s)| (k.name.clone(), k.dimensions.len(), s.kind, s.count, s.sum))
                .collect();
            assert_eq!(
                got,
                [
                    ("ApiLatency".to_owned(), 0, Kind::Summary, 2, 30.0),
                    ("ApiLatency".to_owned(), 1, Kind::Summary, 2, 30.0),
                    ("ApiRequests".to_owned(), 0, Kind::Counter, 1, 2.0),
                    ("ApiRequests".to_owned(), 1, Kind::Counter, 1, 2.0),
                ]
            );
        });
    }
}
