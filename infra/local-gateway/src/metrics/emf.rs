//! Reads CloudWatch Embedded Metric Format records out of function log lines, as CloudWatch
//! Logs does on AWS
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//!
//! A record is a JSON object whose `_aws.CloudWatchMetrics` lists directives; each directive
//! names a `Namespace`, `Dimensions` (dimension sets, each a list of root member names) and
//! `Metrics` (`Name`, optional `Unit`). A metric's value is the root member of its name: a
//! number, or an array of numbers (one datum per element). Each metric is published once per
//! dimension set; an empty set publishes it without dimensions.
//!
//! Parsing is lenient, as a log line is only sometimes a record: anything that is not a
//! record is a plain log line, and a directive's parts that do not follow the spec (a
//! dimension without a string value, a metric without a numeric value) are skipped.

use serde_json::{Map, Value};

/// One metric under one dimension set, with the values the record gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub namespace: String,
    pub name: String,
    /// As EMF spells it (`Milliseconds`, `Count`, ...); `None` when the directive gives none.
    pub unit: String,
    /// Dimension name and value, in the order of the dimension set.
    pub dimensions: Vec<(String, String)>,
    pub values: Vec<f64>,
}

/// The metrics of an EMF record, or nothing when `line` is not one.
pub fn parse(line: &str) -> Vec<Datum> {
    let line = line.trim();
    // Most lines are plain logs (or JSON logs): skip them before parsing JSON.
    if !line.starts_with('{') || !line.contains("\"_aws\"") {
        return Vec::new();
    }
    let Ok(Value::Object(root)) = serde_json::from_str::<Value>(line) else {
        return Vec::new();
    };
    let Some(directives) = root
        .get("_aws")
        .and_then(|aws| aws.get("CloudWatchMetrics"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    directives
        .iter()
        .flat_map(|directive| from_directive(directive, &root))
        .collect()
}

fn from_directive(directive: &Value, root: &Map<String, Value>) -> Vec<Datum> {
    let Some(namespace) = directive.get("Namespace").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut sets: Vec<Vec<(String, String)>> = directive
        .get("Dimensions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|set| dimension_set(set, root))
        .collect();
    if sets.is_empty() {
        // `"Dimensions": []`: the metric without dimensions.
        sets.push(Vec::new());
    }
    let mut out = Vec::new();
    for metric in directive
        .get("Metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = metric.get("Name").and_then(Value::as_str) else {
            continue;
        };
        let values = values(root.get(name));
        if values.is_empty() {
            continue;
        }
        let unit = metric.get("Unit").and_then(Value::as_str).unwrap_or("None");
        for dimensions in &sets {
            out.push(Datum {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                unit: unit.to_owned(),
                dimensions: dimensions.clone(),
                values: values.clone(),
            });
        }
    }
    out
}

/// A dimension set with the record's values, `None` when a dimension has no string value.
fn dimension_set(set: &Value, root: &Map<String, Value>) -> Option<Vec<(String, String)>> {
    set.as_array()?
        .iter()
        .map(|name| {
            let name = name.as_str()?;
            let value = root.get(name)?.as_str()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

fn values(value: Option<&Value>) -> Vec<f64> {
    match value {
        Some(Value::Number(n)) => n.as_f64().into_iter().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_f64).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|v| v.is_finite())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_metric_is_published_under_every_dimension_set() {
        let line = r#"{"_aws":{"Timestamp":1764583200000,"CloudWatchMetrics":[{"Namespace":"CollectPro","Dimensions":[["Function","Route"],["Function"],[]],"Metrics":[{"Name":"ApiLatency","Unit":"Milliseconds"},{"Name":"ApiRequests","Unit":"Count"}]}]},"Function":"accounts","Route":"GET /accounts/{id}","ApiLatency":12.5,"ApiRequests":1,"request_id":"r1","message":"served"}"#;
        let data = parse(line);
        assert_eq!(data.len(), 6, "{data:?}");
        let latency: Vec<_> = data.iter().filter(|d| d.name == "ApiLatency").collect();
        assert_eq!(
            latency[0].dimensions,
            dims(&[("Function", "accounts"), ("Route", "GET /accounts/{id}")])
        );
        assert_eq!(latency[1].dimensions, dims(&[("Function", "accounts")]));
        assert_eq!(latency[2].dimensions, dims(&[]));
        assert!(latency.iter().all(|d| d.values == [12.5]
            && d.unit == "Milliseconds"
            && d.namespace == "CollectPro"));
    }

    #[test]
    fn arrays_of_values_and_several_directives() {
        let line = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[
            {"Namespace":"CollectPro","Dimensions":[["Table"]],"Metrics":[{"Name":"DynamoDbLatency","Unit":"Milliseconds"}]},
            {"Namespace":"Other","Dimensions":[],"Metrics":[{"Name":"Things"}]}]},
            "Table":"Accounts","DynamoDbLatency":[1.5,2,3.25],"Things":4}"#
            .replace('\n', "");
        let data = parse(&line);
        assert_eq!(
            data,
            vec![
                Datum {
                    namespace: "CollectPro".into(),
                    name: "DynamoDbLatency".into(),
                    unit: "Milliseconds".into(),
                    dimensions: dims(&[("Table", "Accounts")]),
                    values: vec![1.5, 2.0, 3.25],
                },
                Datum {
                    namespace: "Other".into(),
                    name: "Things".into(),
                    unit: "None".into(),
                    dimensions: vec![],
                    values: vec![4.0],
                },
            ]
        );
    }

    #[test]
    fn plain_and_malformed_lines_are_log_lines() {
        for line in [
            "",
            "START RequestId: 1 Version: $LATEST",
            r#"{"level":"INFO","message":"hello"}"#,
            r#"{"_aws": {"CloudWatchMetrics": [ "#,
            r#"{"_aws":{"Timestamp":1}}"#,
            r#"{"_aws":{"CloudWatchMetrics":"no"}}"#,
            r#"["_aws"]"#,
        ] {
            assert_eq!(parse(line), vec![], "{line}");
        }
    }

    #[test]
    fn parts_that_break_the_spec_are_skipped() {
        // A dimension without a string value drops its set; a metric without a numeric
        // value is not published; a directive without a namespace is ignored.
        let line = r#"{"_aws":{"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["Missing"],["Code"],["Good"]],"Metrics":[{"Name":"A"},{"Name":"B"},{"Name":"C"}]},{"Dimensions":[],"Metrics":[{"Name":"A"}]}]},"Code":500,"Good":"yes","A":[1,"x",2],"B":"7"}"#;
        let data = parse(line);
        assert_eq!(data.len(), 1, "{data:?}");
        assert_eq!(data[0].dimensions, dims(&[("Good", "yes")]));
        assert_eq!(data[0].values, [1.0, 2.0]);
    }
}
