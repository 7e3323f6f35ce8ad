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
        line_of(&[self], timestamp_ms, chunk)
    }

    /// Whether the record fits in one line (no metric has more values than one may carry).
    fn fits_one_line(&self) -> bool {
        self.metrics
            .iter()
            .all(|metric| metric.values.len() <= MAX_VALUES_PER_METRIC)
    }

    /// Whether the record can share a line with `other`: no dimension of both with different
    /// values, and no metric or property member of the same name.
    fn can_share_with(&self, other: &Record) -> bool {
        let members = |record: &Record| -> Vec<String> {
            record
                .metrics
                .iter()
                .map(|m| m.name.to_owned())
                .chain(record.properties.keys().cloned())
                .collect()
        };
        let dimensions_agree = self.dimensions.iter().all(|(name, value)| {
            other
                .dimensions
                .iter()
                .all(|(n, v)| n != name || v == value)
        });
        let theirs = members(other);
        let dimension_names = |record: &Record| -> Vec<String> {
            record
                .dimensions
                .iter()
                .map(|(n, _)| (*n).to_owned())
                .collect()
        };
        let mine = members(self);
        dimensions_agree
            && !mine.iter().any(|m| theirs.contains(m))
            && !mine.iter().any(|m| dimension_names(other).contains(m))
            && !theirs.iter().any(|m| dimension_names(self).contains(m))
    }
}

/// The records of one invocation as few log lines as EMF allows: records that can share a
/// line (see [`Record::can_share_with`]) are written as one object with a directive each
/// (the specification allows several), which saves each merged record its own `_aws`
/// envelope and timestamp and CloudWatch Logs its per-event overhead. Order is kept: the
/// first record's directive comes first in its line. A record that needs several lines
/// ([`Record::to_lines`]) is written alone.
pub fn pack_lines(records: &[Record], timestamp_ms: i64) -> Vec<String> {
    let mut lines: Vec<Vec<&Record>> = Vec::new();
    let mut out = Vec::new();
    for record in records {
        if !record.fits_one_line() {
            out.extend(record.to_lines(timestamp_ms));
            continue;
        }
        match lines
            .iter_mut()
            .find(|line| line.iter().all(|other| record.can_share_with(other)))
        {
            Some(line) => line.push(record),
            None => lines.push(vec![record]),
        }
    }
    let mut packed: Vec<String> = lines
        .iter()
        .map(|line| line_of(line, timestamp_ms, 0))
        .collect();
    packed.extend(out);
    packed
}

/// One JSON line of `records` (their `chunk`-th slice of values), a directive per record
/// that has a value to carry.
fn line_of(records: &[&Record], timestamp_ms: i64, chunk: usize) -> String {
    let mut object = Map::new();
    let mut directives = Vec::new();
    for record in records {
        if chunk == 0 {
            object.extend(record.properties.clone());
        }
        for (name, value) in &record.dimensions {
            object.insert((*name).to_owned(), Value::String(value.clone()));
        }
        let mut listed = Vec::new();
        for metric in &record.metrics {
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
        // A record with no metric left adds no directive (an empty one would be refused).
        if !listed.is_empty() {
            directives.push(serde_json::json!({
                "Namespace": NAMESPACE,
                "Dimensions": record.dimension_sets,
                "Metrics": listed,
            }));
        }
    }
    if !directives.is_empty() {
        object.insert(
            "_aws".to_owned(),
            serde_json::json!({ "Timestamp": timestamp_ms, "CloudWatchMetrics": directives }),
        );
    }
    Value::Object(object).to_string()
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

    fn dynamodb_record(table: &str, operation: &str) -> Record {
        Record {
            dimension_sets: vec![vec!["Table", "Operation"], vec!["Table"], vec![]],
            dimensions: vec![("Operation", operation.into()), ("Table", table.into())],
            metrics: vec![MetricValues {
                name: "DynamoDbCalls",
                unit: Unit::Count,
                values: vec![1.0],
            }],
            properties: Map::new(),
        }
    }

    #[test]
    fn records_that_do_not_clash_share_a_line() {
        let records = [
            record(vec![12.5]),
            dynamodb_record("Accounts", "GetItem"),
            dynamodb_record("Accounts", "UpdateItem"),
            dynamodb_record("Payments", "PutItem"),
        ];
        let lines = pack_lines(&records, 7);
        // Each (table, operation) needs a line of its own; the request rides on the first.
        assert_eq!(lines.len(), 3);
        let first = assert_valid_emf(&lines[0]);
        let directives = first["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(
            directives[0]["Dimensions"],
            serde_json::json!([["Function", "Route"], ["Function"], []]),
            "the first record's directive first"
        );
        assert_eq!(first["request_id"], "r-1");
        assert_eq!(first["Operation"], "GetItem");
        assert_eq!(first["DynamoDbCalls"], 1.0);
        let rest: Vec<Value> = lines[1..].iter().map(|l| assert_valid_emf(l)).collect();
        assert_eq!(rest[0]["Operation"], "UpdateItem");
        assert_eq!(rest[1]["Table"], "Payments");
        assert!(rest.iter().all(|v| v.get("request_id").is_none()));
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
