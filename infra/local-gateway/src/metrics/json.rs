//! The recent buckets of every series as JSON, for the dashboard page
//! (`GET /_local/metrics.json?minutes=N`):
//!
//! ```json
//! {"bucket_seconds": 10, "from": 1764583200, "to": 1764584090,
//!  "series": [{"namespace": "CollectPro", "name": "ApiLatency", "unit": "Milliseconds",
//!              "kind": "summary", "dimensions": {"Function": "accounts"},
//!              "points": [[1764584080, 12, 310.5, 3.1, 80.2, 20.0, 18.4, 60.1, 79.9]]}]}
//! ```
//!
//! A point is `[bucket start, count, sum, min, max, last, p50, p90, p99]` (percentiles
//! `null` but for summaries); buckets without values are left out.

use serde_json::{json, Map, Value};

use super::{now_secs, round3 as round, Kind, Registry, BUCKET_SECS, RETENTION_SECS};

/// The last `minutes` (at most the retention) of every series that has values in them.
pub fn render(registry: &Registry, minutes: u64) -> Value {
    let to = {
        let now = now_secs();
        now - now % BUCKET_SECS
    };
    let span = (minutes * 60).clamp(BUCKET_SECS, RETENTION_SECS);
    let from = to + BUCKET_SECS - span;
    let series: Vec<Value> = registry.read(|all| {
        all.iter()
            .filter_map(|(key, series)| {
                let points: Vec<Value> = series
                    .buckets
                    .iter()
                    .filter(|b| b.start >= from && b.count > 0)
                    .map(|b| {
                        let q = |q: f64| b.sketch.as_ref().and_then(|s| s.quantile(q)).map(round);
                        json!([
                            b.start,
                            b.count,
                            round(b.sum),
                            round(b.min),
                            round(b.max),
                            round(b.last),
                            q(0.5),
                            q(0.9),
                            q(0.99)
                        ])
                    })
                    .collect();
                if points.is_empty() {
                    return None;
                }
                let dimensions: Map<String, Value> = key
                    .dimensions
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                Some(json!({
                    "namespace": key.namespace,
                    "name": key.name,
                    "unit": series.unit,
                    "kind": match series.kind {
                        Kind::Counter => "counter",
                        Kind::Gauge => "gauge",
                        Kind::Summary => "summary",
                    },
                    "dimensions": dimensions,
                    "points": points,
                }))
            })
            .collect()
    });
    json!({
        "bucket_seconds": BUCKET_SECS,
        "from": from,
        "to": to,
        "series": series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SeriesKey;

    #[test]
    fn recent_buckets_with_percentiles_for_summaries() {
        let r = Registry::default();
        let now = now_secs();
        let key = SeriesKey::new("CollectPro", "ApiLatency", &[("Function", "f")]);
        r.record_at(
            key.clone(),
            Kind::Summary,
            "Milliseconds",
            &[9.0],
            now - 20 * 60,
        );
        r.record_at(
            key,
            Kind::Summary,
            "Milliseconds",
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            now,
        );
        r.record("AWS/Lambda", "Throttles", &[], Kind::Counter, "Count", 1.0);
        let v = render(&r, 15);
        assert_eq!(v["bucket_seconds"], 10);
        let series = v["series"].as_array().unwrap();
        assert_eq!(series.len(), 2);
        let latency = series.iter().find(|s| s["name"] == "ApiLatency").unwrap();
        assert_eq!(latency["dimensions"], json!({"Function": "f"}));
        assert_eq!(latency["kind"], "summary");
        let start = now - now % 10;
        let points = latency["points"].as_array().unwrap();
        assert_eq!(
            points.len(),
            1,
            "the value of 20 minutes ago is out of the window"
        );
        let point = points[0].as_array().unwrap();
        assert_eq!(
            point[..6],
            json!([start, 5, 15.0, 1.0, 5.0, 5.0]).as_array().unwrap()[..]
        );
        let p50 = point[6].as_f64().unwrap();
        assert!((p50 - 3.0).abs() < 0.03, "p50 {p50}");
        let p99 = point[8].as_f64().unwrap();
        assert!(
            (p99 - 4.0).abs() < 0.04,
            "p99 {p99} (the 4th of 5 values, nearest rank below)"
        );
        let throttles = series.iter().find(|s| s["name"] == "Throttles").unwrap();
        assert_eq!(throttles["points"][0][6], Value::Null);
    }
}
