//! The template's dashboard, alarms and log groups against the code.
//!
//! Neither `cfn-lint` nor `sam validate --lint` parses a dashboard's `DashboardBody` (a body
//! with a missing comma lints clean, and CloudFormation only finds out at deploy time), and
//! nothing ties a widget's or an alarm's metric name to what the functions emit. So these
//! tests substitute the body's `${...}` references, parse it as JSON, and check every metric
//! the dashboard and the alarms name: a `CollectPro` metric must be one of
//! `shared::metrics::names::ALL` with one of its dimension sets (also inside `SEARCH`
//! expressions), an AWS metric one of the few this template is known to use.
//!
//! No stack needed: the template is read from disk.

use std::collections::BTreeSet;

use local_gateway::template::{scalar, Template};
use serde_json::{json, Value};
use shared::metrics::names::{self, NAMESPACE};

/// A metric a widget or an alarm names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct MetricRef {
    namespace: String,
    name: String,
    /// Dimension names (their values do not matter here).
    dimensions: BTreeSet<String>,
}

impl MetricRef {
    fn new(namespace: &str, name: &str, dimensions: &[&str]) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            dimensions: dimensions.iter().map(|d| (*d).to_owned()).collect(),
        }
    }
}

/// AWS-published metrics of one namespace: their names and the dimension sets AWS
/// documents for them.
struct AwsMetrics {
    namespace: &'static str,
    names: &'static [&'static str],
    dimension_sets: &'static [&'static [&'static str]],
}

/// The AWS metrics the template uses. A typo (`ApproximateNumberOfMessageVisible`) would
/// otherwise graph nothing, silently.
const AWS_METRICS: &[AwsMetrics] = &[
    AwsMetrics {
        namespace: "AWS/Lambda",
        names: &[
            "Duration",
            "Errors",
            "Throttles",
            "ConcurrentExecutions",
            "IteratorAge",
            "Invocations",
        ],
        dimension_sets: &[&["FunctionName"]],
    },
    AwsMetrics {
        namespace: "AWS/SQS",
        names: &[
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateAgeOfOldestMessage",
        ],
        dimension_sets: &[&["QueueName"]],
    },
    // The HTTP API (ApiId) and the WebSocket API (ApiId, Stage).
    AwsMetrics {
        namespace: "AWS/ApiGateway",
        names: &[
            "Count",
            "4xx",
            "5xx",
            "Latency",
            "ConnectCount",
            "MessageCount",
        ],
        dimension_sets: &[&["ApiId"], &["ApiId", "Stage"]],
    },
];

/// Whether the code (or AWS) publishes `metric` under these dimensions.
fn check_metric(metric: &MetricRef) -> Result<(), String> {
    let dims = |sets: &[&[&str]]| -> bool {
        sets.iter().any(|set| {
            set.iter().map(|d| (*d).to_owned()).collect::<BTreeSet<_>>() == metric.dimensions
        })
    };
    if metric.namespace == NAMESPACE {
        let known = names::find(&metric.name)
            .ok_or_else(|| format!("{}: not a metric the code emits (names.rs)", metric.name))?;
        return if dims(known.dimensions) {
            Ok(())
        } else {
            Err(format!(
                "{} with dimensions {:?}: the code emits it with {:?}",
                metric.name, metric.dimensions, known.dimensions
            ))
        };
    }
    let aws = AWS_METRICS
        .iter()
        .find(|aws| aws.namespace == metric.namespace)
        .ok_or_else(|| format!("{}: namespace not known to this test", metric.namespace))?;
    if !aws.names.contains(&metric.name.as_str()) {
        return Err(format!(
            "{}/{}: not a metric known to this test",
            metric.namespace, metric.name
        ));
    }
    if !dims(aws.dimension_sets) {
        return Err(format!(
            "{}/{} with dimensions {:?}: AWS publishes it with {:?}",
            metric.namespace, metric.name, metric.dimensions, aws.dimension_sets
        ));
    }
    Ok(())
}

/// Replaces every `${...}` of a `Fn::Sub` string with a plausible value: a parameter's
/// default, a pseudo parameter's usual value, `Resource` or `Resource.Attribute` for a
/// resource (so an alarm's ARN names its logical id). A name that is none of these is an
/// error, as it would be for CloudFormation.
fn substitute(text: &str, template: &Template) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {}", &rest[start..]))?;
        let name = &after[..end];
        let value = if let Some(literal) = name.strip_prefix('!') {
            format!("${{{literal}}}")
        } else if let Some(parameter) = template.parameters.get(name) {
            parameter
                .default
                .as_ref()
                .map(scalar)
                .ok_or_else(|| format!("parameter {name} has no default"))?
        } else if let Some(pseudo) = name.strip_prefix("AWS::") {
            match pseudo {
                "Region" => "us-east-1".to_owned(),
                "StackName" => "collectpro-test".to_owned(),
                "AccountId" => "123456789012".to_owned(),
                "Partition" => "aws".to_owned(),
                "URLSuffix" => "amazonaws.com".to_owned(),
                other => return Err(format!("pseudo parameter AWS::{other}")),
            }
        } else {
            let resource = name.split_once('.').map_or(name, |(resource, _)| resource);
            if !template.resources.contains_key(resource) {
                return Err(format!("${{{name}}}: no such parameter or resource"));
            }
            name.to_owned()
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The metrics a `SEARCH('{Namespace,Dim1,Dim2} MetricName="X"', ...)` expression graphs.
/// Each SEARCH must pin both the schema and the metric name, so it can be checked.
fn search_metrics(expression: &str) -> Result<Vec<MetricRef>, String> {
    let mut found = Vec::new();
    for (i, _) in expression.match_indices("SEARCH(") {
        let query = expression[i + "SEARCH(".len()..]
            .trim_start()
            .strip_prefix('\'')
            .and_then(|q| q.split_once('\''))
            .map(|(query, _)| query)
            .ok_or_else(|| format!("{expression}: SEARCH without a quoted query"))?;
        let schema = query
            .split_once('{')
            .and_then(|(_, s)| s.split_once('}'))
            .map(|(schema, _)| schema)
            .ok_or_else(|| format!("{query}: no {{Namespace,dimensions}} schema"))?;
        let mut parts = schema.split(',').map(|p| p.trim().trim_matches('"'));
        let namespace = parts.next().unwrap_or_default();
        let dimensions: Vec<&str> = parts.collect();
        let name = query
            .split_once("MetricName=")
            .map(|(_, n)| {
                let n = n.trim_start();
                match n.strip_prefix('"') {
                    Some(quoted) => quoted.split('"').next().unwrap_or_default(),
                    None => n.split_whitespace().next().unwrap_or_default(),
                }
            })
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("{query}: no MetricName=\"...\""))?;
        found.push(MetricRef::new(namespace, name, &dimensions));
    }
    Ok(found)
}

/// What a dashboard body names: the metrics of its metric widgets and the alarms of its
/// alarm widgets (as the substituted ARNs, `LogicalId.Arn`).
#[derive(Debug, Default)]
struct DashboardRefs {
    metrics: Vec<MetricRef>,
    alarms: Vec<String>,
}

/// Parses a substituted dashboard body: JSON errors and metric rows CloudWatch would not
/// understand are errors.
fn dashboard_refs(body: &str) -> Result<DashboardRefs, String> {
    let body: Value = serde_json::from_str(body).map_err(|e| format!("DashboardBody: {e}"))?;
    let widgets = body["widgets"]
        .as_array()
        .ok_or("DashboardBody: no widgets array")?;
    let mut refs = DashboardRefs::default();
    for widget in widgets {
        let properties = &widget["properties"];
        match widget["type"].as_str() {
            Some("metric") => {
                let rows = properties["metrics"]
                    .as_array()
                    .ok_or_else(|| format!("metric widget without metrics: {widget}"))?;
                for row in rows {
                    refs.metrics.extend(row_metrics(row)?);
                }
            }
            Some("alarm") => {
                for alarm in properties["alarms"].as_array().into_iter().flatten() {
                    refs.alarms.push(scalar(alarm));
                }
            }
            Some("text" | "log") => {}
            other => return Err(format!("unexpected widget type {other:?}")),
        }
    }
    Ok(refs)
}

/// The metrics of one row of a metric widget: `[Namespace, MetricName, Dim, Value, ...,
/// {options}]`, or `[{"expression": ...}]` (whose SEARCH calls are read).
fn row_metrics(row: &Value) -> Result<Vec<MetricRef>, String> {
    let items = row
        .as_array()
        .ok_or_else(|| format!("metric row {row} is not an array"))?;
    if let Some(expression) = items.first().and_then(|first| first.get("expression")) {
        return search_metrics(expression.as_str().unwrap_or_default());
    }
    let strings: Vec<&str> = items.iter().map_while(Value::as_str).collect();
    if strings.iter().any(|s| *s == "." || *s == "...") {
        return Err(format!(
            "{row}: write metric rows out in full (no '.' shorthand)"
        ));
    }
    match strings.as_slice() {
        [namespace, name, dimensions @ ..] if dimensions.len() % 2 == 0 => {
            let dimension_names: Vec<&str> = dimensions.iter().step_by(2).copied().collect();
            Ok(vec![MetricRef::new(namespace, name, &dimension_names)])
        }
        _ => Err(format!(
            "{row}: expected [Namespace, MetricName, (Name, Value)*, {{options}}]"
        )),
    }
}

/// The metrics an alarm watches: its single metric, or each metric of its `Metrics` math.
fn alarm_metrics(properties: &Value) -> Result<Vec<MetricRef>, String> {
    let one = |metric: &Value| -> Result<MetricRef, String> {
        let dimensions: Vec<&str> = metric["Dimensions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["Name"].as_str().unwrap_or_default())
            .collect();
        match (metric["Namespace"].as_str(), metric["MetricName"].as_str()) {
            (Some(namespace), Some(name)) => Ok(MetricRef::new(namespace, name, &dimensions)),
            _ => Err(format!(
                "alarm metric without Namespace and MetricName: {metric}"
            )),
        }
    };
    match properties["Metrics"].as_array() {
        None => Ok(vec![one(properties)?]),
        Some(queries) => queries
            .iter()
            .filter(|query| query.get("Expression").is_none())
            .map(|query| one(&query["MetricStat"]["Metric"]))
            .collect(),
    }
}

fn template() -> Template {
    Template::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap()
}

fn dashboard(template: &Template) -> DashboardRefs {
    let dashboards: Vec<_> = template.of_kind("AWS::CloudWatch::Dashboard").collect();
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let body = dashboards[0].properties["DashboardBody"]["Fn::Sub"]
        .as_str()
        .expect("DashboardBody is a !Sub string");
    let body = substitute(body, template).unwrap();
    dashboard_refs(&body).unwrap()
}

#[test]
fn the_dashboard_names_only_metrics_the_code_emits_and_shows_each_of_them() {
    let template = template();
    let refs = dashboard(&template);
    let errors: Vec<String> = refs
        .metrics
        .iter()
        .filter_map(|m| check_metric(m).err())
        .collect();
    assert!(errors.is_empty(), "dashboard: {errors:#?}");
    let shown: BTreeSet<&str> = refs
        .metrics
        .iter()
        .filter(|m| m.namespace == NAMESPACE)
        .map(|m| m.name.as_str())
        .collect();
    let missing: Vec<&str> = names::ALL
        .iter()
        .map(|m| m.name)
        .filter(|name| !shown.contains(name))
        .collect();
    assert!(missing.is_empty(), "emitted but on no widget: {missing:?}");
}

#[test]
fn every_alarm_watches_emitted_metrics_has_a_parameter_threshold_and_notifies_the_topic() {
    let template = template();
    let on_dashboard = dashboard(&template).alarms;
    let alarms: Vec<_> = template.of_kind("AWS::CloudWatch::Alarm").collect();
    assert!(alarms.len() >= 10, "alarms: {}", alarms.len());
    for alarm in alarms {
        let id = &alarm.logical_id;
        let p = &alarm.properties;
        let metrics = alarm_metrics(p).unwrap();
        for metric in &metrics {
            check_metric(metric).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
        // CloudWatch's limit for a math alarm.
        assert!(metrics.len() <= 10, "{id}: {} metrics", metrics.len());
        let threshold = p["Threshold"]["Ref"].as_str().unwrap_or_default();
        assert!(
            threshold.starts_with("Alarm") && template.parameters.contains_key(threshold),
            "{id}: the threshold is not an Alarm* parameter: {}",
            p["Threshold"]
        );
        let topic = json!({ "Ref": "AlarmTopic" });
        for actions in ["AlarmActions", "OKActions"] {
            assert!(
                p[actions].as_array().is_some_and(|a| a.contains(&topic)),
                "{id}: {actions} does not notify AlarmTopic"
            );
        }
        assert!(
            on_dashboard.contains(&format!("{id}.Arn")),
            "{id} is not on the dashboard's alarm widget"
        );
    }
}

#[test]
fn every_function_logs_with_retention_is_traced_and_has_error_and_throttle_alarms() {
    let template = template();
    let watched = |metric: &str| -> BTreeSet<String> {
        template
            .of_kind("AWS::CloudWatch::Alarm")
            .flat_map(|alarm| {
                let p = &alarm.properties;
                let queries = match p["Metrics"].as_array() {
                    Some(queries) => queries
                        .iter()
                        .map(|q| q["MetricStat"]["Metric"].clone())
                        .collect(),
                    None => vec![p.clone()],
                };
                queries
                    .into_iter()
                    .filter(|m| m["Namespace"] == "AWS/Lambda" && m["MetricName"] == metric)
                    .filter_map(|m| {
                        m["Dimensions"][0]["Value"]["Ref"]
                            .as_str()
                            .map(str::to_owned)
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (errors, throttles) = (watched("Errors"), watched("Throttles"));
    let functions: Vec<_> = template.of_kind("AWS::Serverless::Function").collect();
    assert_eq!(functions.len(), 17);
    for function in functions {
        let id = &function.logical_id;
        let p = &function.properties;
        assert_eq!(p["Tracing"], "Active", "{id}: X-Ray");
        assert!(errors.contains(id), "{id}: no Errors alarm");
        assert!(throttles.contains(id), "{id}: no Throttles alarm");
        // The Function dimension is the crate's name (telemetry::init(CARGO_PKG_NAME)), which
        // is the binary the template builds; the log group is named after it too.
        let binary = function.metadata["BuildProperties"]["Binary"]
            .as_str()
            .unwrap();
        let manifest = std::fs::read_to_string(format!(
            "{}/../functions/{binary}/Cargo.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap_or_else(|e| panic!("{id}: functions/{binary}: {e}"));
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{id}: crate {binary}"
        );
        let group_id = p["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: LoggingConfig.LogGroup is not a !Ref"));
        let group = &template.resources[group_id];
        assert_eq!(group.kind, "AWS::Logs::LogGroup", "{id}");
        assert_eq!(
            group.properties["RetentionInDays"],
            json!({ "Ref": "LogRetentionDays" }),
            "{id}"
        );
        let name = group.properties["LogGroupName"]["Fn::Sub"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            name,
            format!("/aws/lambda/${{AWS::StackName}}/{binary}"),
            "{id}"
        );
    }
}

// The checker itself, on small bad inputs: each must be refused.

fn tiny_template() -> Template {
    Template::parse(
        r#"
Parameters:
  Limit: { Type: Number, Default: 5 }
Resources:
  Queue: { Type: AWS::SQS::Queue }
"#,
    )
    .unwrap()
}

fn check_body(body: &str) -> Result<(), String> {
    let body = substitute(body, &tiny_template())?;
    let refs = dashboard_refs(&body)?;
    refs.metrics.iter().try_for_each(check_metric)
}

#[test]
fn the_checker_accepts_a_good_body() {
    let body = r#"{ "widgets": [
        { "type": "metric", "properties": { "annotations": { "horizontal": [ { "value": ${Limit} } ] }, "metrics": [
            ["CollectPro", "ApiLatency", "Function", "accounts", "Route", "GET /accounts", { "stat": "p99" }],
            ["CollectPro", "ApiLatency"],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "${Queue.QueueName}"],
            [{ "expression": "SEARCH('{CollectPro,Table,Operation} MetricName=\"DynamoDbLatency\"', 'p99', 60)" }]
        ] } },
        { "type": "alarm", "properties": { "alarms": ["${Queue.Arn}"] } }
    ] }"#;
    assert_eq!(check_body(body), Ok(()));
}

#[test]
fn the_checker_refuses_a_missing_comma() {
    let body = r#"{ "widgets": [ { "type": "metric" "properties": { "metrics": [] } } ] }"#;
    assert!(check_body(body).unwrap_err().contains("DashboardBody"));
}

#[test]
fn the_checker_refuses_an_unknown_metric_plain_or_in_a_search() {
    let plain = r#"{ "widgets": [ { "type": "metric", "properties": { "metrics": [
        ["CollectPro", "ApiLatencyMs"] ] } } ] }"#;
    assert!(check_body(plain).unwrap_err().contains("ApiLatencyMs"));
    let search = r#"{ "widgets": [ { "type": "metric", "properties": { "metrics": [
        [{ "expression": "SEARCH('{CollectPro,Function,Route} MetricName=\"Latency\"', 'p99', 60)" }] ] } } ] }"#;
    assert!(check_body(search).unwrap_err().contains("Latency"));
    let aws = r#"{ "widgets": [ { "type": "metric", "properties": { "metrics": [
        ["AWS/SQS", "ApproximateNumberOfMessageVisible", "QueueName", "q"] ] } } ] }"#;
    assert!(check_body(aws).is_err());
}

#[test]
fn the_checker_refuses_a_dimension_set_the_code_does_not_emit() {
    // ApiLatency has [Function, Route], [Function] and []; not [Route].
    let plain = r#"{ "widgets": [ { "type": "metric", "properties": { "metrics": [
        ["CollectPro", "ApiLatency", "Route", "GET /accounts"] ] } } ] }"#;
    assert!(check_body(plain).unwrap_err().contains("dimensions"));
    let search = r#"{ "widgets": [ { "type": "metric", "properties": { "metrics": [
        [{ "expression": "SEARCH('{CollectPro,Route} MetricName=\"ApiLatency\"', 'p99', 60)" }] ] } } ] }"#;
    assert!(check_body(search).unwrap_err().contains("dimensions"));
}

#[test]
fn the_checker_refuses_unpinned_searches_shorthand_rows_and_unknown_references() {
    let unpinned = r#"{ "widgets": [ { "type": "metric", "properties": { "metrics": [
        [{ "expression": "SEARCH('ApiLatency', 'p99', 60)" }] ] } } ] }"#;
    assert!(check_body(unpinned).is_err());
    let shorthand = r#"{ "widgets": [ { "type": "metric", "properties": { "metrics": [
        ["CollectPro", "ApiLatency"], [".", "Api5xx"] ] } } ] }"#;
    assert!(check_body(shorthand).is_err());
    let reference = r#"{ "widgets": [ { "type": "metric", "properties": { "metrics": [
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "${Queu.QueueName}"] ] } } ] }"#;
    assert!(check_body(reference)
        .unwrap_err()
        .contains("Queu.QueueName"));
}

#[test]
fn alarms_are_read_from_a_single_metric_or_metric_math() {
    let single = json!({ "Namespace": "CollectPro", "MetricName": "ApiLatency" });
    assert_eq!(
        alarm_metrics(&single),
        Ok(vec![MetricRef::new("CollectPro", "ApiLatency", &[])])
    );
    let math = json!({ "Metrics": [
        { "Id": "rate", "Expression": "100 * e / r" },
        { "Id": "e", "MetricStat": { "Metric": { "Namespace": "CollectPro", "MetricName": "Api5xx" } } },
        { "Id": "r", "MetricStat": { "Metric": { "Namespace": "CollectPro", "MetricName": "ApiRequest",
            "Dimensions": [{ "Name": "Function", "Value": "accounts" }] } } }
    ] });
    let metrics = alarm_metrics(&math).unwrap();
    assert_eq!(metrics.len(), 2);
    assert_eq!(check_metric(&metrics[0]), Ok(()));
    assert!(check_metric(&metrics[1])
        .unwrap_err()
        .contains("ApiRequest"));
}
