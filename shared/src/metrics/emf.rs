//! CloudWatch Embedded Metric Format: one JSON object per log line that CloudWatch Logs turns
//! into metrics with no API call and no agent.
//!
//! Written here rather than taken from a crate: `metrics_cloudwatch_embedded` works through the
//! global `metrics` recorder (one process-wide registry, so a request's figures cannot be
//! told apart from a concurrent one's, and it keeps at most 100 histogram values per flush),
//! and awslabs' `metrique` is a 0.x family of ten crates. What EMF needs is small: the
//! `_aws` metadata, the dimension values and the metric values as top-level members.
//!
//! The specification this follows:
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>
//! - `_aws.Timestamp`: milliseconds since the epoch;
//! - `_aws.CloudWatchMetrics`: directives, each with a `Namespace`, `Dimensions` (an array
//!   of dimension sets, each an array of at most 30 member names, which may be empty) and
//!   `Metrics` (at most 100 `{Name, Unit}`);
//! - every dimension a directive names and every metric it lists is a top-level member; a
//!   metric's value is a number or an array of at most 100 numbers.

use serde_json::{Map, Number, Value};

use super::names::{Unit, NAMESPACE};

/// The most values one metric may carry in one record (the specification's limit).
pub const MAX_VALUES_PER_METRIC: usize = 100;

/// The values of one metric in a record.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValues {
    pub name: &'static str,
    pub unit: Unit,
    pub values: Vec<f64>,
}

/// One EMF record: the metrics that share a set of dimension sets and dimension values, plus
/// properties that are logged but are not dimensions (a request id, a status).
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Dimension sets, each a list of dimension names.
    pub dimension_sets: Vec<Vec<&'static str>>,
    /// The value of every dimension the sets name.
    pub dimensions: super::DimensionValues,
    pub metrics: Vec<MetricValues>,
    /// Extra members, written as they are.
    pub properties: Map<String, Value>,
}

impl Record {
    /// The record as JSON lines: usually one; more when a metric carries more than
    /// [`MAX_VALUES_PER_METRIC`] values (the later lines repeat the dimensions, not the
    /// properties). Values that are not finite numbers are left out: JSON cannot carry them
    /// and CloudWatch would reject the record.
    pub fn to_lines(&self, timestamp_ms: i64) -> Vec<String> {
        let chunks = self
            .metrics
            .iter()
            .map(|metric| metric.values.len().div_ceil(MAX_VALUES_PER_METRIC))
            .max()
            .unwrap_or(0)
            .max(1);
        (0..chunks)
            .map(|chunk| self.line(timestamp_ms, chunk))
            .collect()
    }

    fn line(&self, timestamp_ms: i64, chunk: usize) -> String {
        let mut object = if chunk == 0 {
            self.properties.clone()
        } else {
            Map::new()
        };
        for (name, value) in &self.dimensions {
            object.insert((*name).to_owned(), Value::String(value.clone()));
        }
        let mut listed = Vec::new();
        for metric in &self.metrics {
            let values: Vec<Value> = metric
                .values
                .iter()
                .skip(chunk * MAX_VALUES_PER_METRIC)
                .take(MAX_VALUES_PER_METRIC)
                .filter_map(|value| Number::from_f64(*value).map(Value::Number))
                .collect();
            let value = match values.len() {
                0 => continue,
                1 => values.into_iter().next().unwrap_or(Value::Null),
                _ => Value::Array(values),
            };
            object.insert(metric.name.to_owned(), value);
            listed.push(serde_json::json!({ "Name": metric.name, "Unit": metric.unit.as_str() }));
        }
        if listed.is_empty() {
            // No metric: a plain log line (an empty directive would be refused).
            return Value::Object(object).to_string();
        }
        object.insert(
            "_aws".to_owned(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": self.dimension_sets,
                    "Metrics": listed,
                }],
            }),
        );
        Value::Object(object).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(values: Vec<f64>) -> Record {
        let mut properties = Map::new();
        properties.insert("request_id".into(), "r-1".into());
        Record {
            dimension_sets: vec![vec!["Function", "Route"], vec!["Function"], vec![]],
            dimensions: vec![
                ("Function", "accounts".into()),
                ("Route", "GET /accounts/{id}".into()),
            ],
            metrics: vec![
                MetricValues {
                    name: "ApiLatency",
                    unit: Unit::Milliseconds,
                    values,
                },
                MetricValues {
                    name: "ApiRequests",
                    unit: Unit::Count,
                    values: vec![1.0],
                },
            ],
            properties,
        }
    }

    /// The checks AWS's specification makes of a record, applied to what we write.
    fn assert_valid_emf(line: &str) -> Value {
        let value: Value = serde_json::from_str(line).expect("one JSON object");
        let aws = &value["_aws"];
        assert!(
            aws["Timestamp"].as_i64().is_some(),
            "Timestamp in ms: {line}"
        );
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        assert!(!directives.is_empty());
        for directive in directives {
            let namespace = directive["Namespace"].as_str().expect("Namespace");
            assert!(!namespace.is_empty() && namespace.len() <= 1024);
            for set in directive["Dimensions"].as_array().expect("Dimensions") {
                let set = set.as_array().expect("a dimension set is an array");
                assert!(set.len() <= 30);
                for name in set {
                    let name = name.as_str().expect("dimension names are strings");
                    assert!(
                        value[name].is_string(),
                        "dimension {name} has a string value"
                    );
                }
            }
            let metrics = directive["Metrics"].as_array().expect("Metrics");
            assert!(metrics.len() <= 100);
            for metric in metrics {
                let name = metric["Name"].as_str().expect("Name");
                let member = &value[name];
                match member {
                    Value::Number(_) => {}
                    Value::Array(values) => {
                        assert!(values.len() <= MAX_VALUES_PER_METRIC);
                        assert!(values.iter().all(Value::is_number));
                    }
                    other => panic!("metric {name} is {other}"),
                }
                let unit = metric["Unit"].as_str().expect("Unit");
                assert!(["Count", "Milliseconds", "None"].contains(&unit));
            }
        }
        value
    }

    #[test]
    fn a_record_follows_the_specification() {
        let lines = record(vec![12.5]).to_lines(1_700_000_000_123);
        assert_eq!(lines.len(), 1);
        let value = assert_valid_emf(&lines[0]);
        assert_eq!(value["_aws"]["Timestamp"], 1_700_000_000_123_i64);
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "CollectPro"
        );
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Function", "Route"], ["Function"], []])
        );
        assert_eq!(value["ApiLatency"], 12.5);
        assert_eq!(value["ApiRequests"], 1.0);
        assert_eq!(value["Route"], "GET /accounts/{id}");
        assert_eq!(value["request_id"], "r-1");
        assert!(!lines[0].contains('\n'), "one line");
    }

    #[test]
    fn many_values_become_arrays_of_at_most_a_hundred() {
        let values: Vec<f64> = (0..250).map(f64::from).collect();
        let lines = record(values).to_lines(1);
        assert_eq!(lines.len(), 3);
        let parsed: Vec<Value> = lines.iter().map(|line| assert_valid_emf(line)).collect();
        let sizes: Vec<usize> = parsed
            .iter()
            .map(|v| v["ApiLatency"].as_array().map_or(1, Vec::len))
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        // The single-valued metric is written once, not once per line.
        assert_eq!(
            parsed
                .iter()
                .filter(|v| v.get("ApiRequests").is_some())
                .count(),
            1
        );
        assert!(parsed[1].get("request_id").is_none());
        assert_eq!(parsed[2]["Function"], "accounts");
    }

    #[test]
    fn values_json_cannot_carry_are_left_out() {
        let lines = record(vec![f64::NAN]).to_lines(1);
        let value = assert_valid_emf(&lines[0]);
        assert!(value.get("ApiLatency").is_none());
        let names: Vec<_> = value["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["ApiRequests"]);
    }
}
