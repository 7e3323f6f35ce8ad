//! The registry in the Prometheus text exposition format (version 0.0.4,
//! <https://prometheus.io/docs/instrumenting/exposition_formats/>), for `GET /_local/metrics`.
//!
//! A series `Namespace/MetricName` becomes the family `namespace_metric_name` (snake case,
//! the unit as a suffix: `collectpro_api_latency_milliseconds`), its dimensions labels
//! (`Route` → `route`). Counters are `<family>_total` (the sum since the gateway started),
//! gauges their latest value, distributions summaries: `_count`, `_sum` since the start and
//! the quantiles 0.5, 0.9 and 0.99 of the last [`QUANTILE_WINDOW_SECS`].
//!
//! As in CloudWatch, a metric published under several dimension sets is one series per set
//! (`collectpro_api_requests_total{function="accounts"}` and `collectpro_api_requests_total`
//! without labels are the same requests counted twice): select a set by its labels rather
//! than summing across them.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{now_secs, round3, Kind, Registry, Series, SeriesKey};

/// The window of a summary's quantiles, seconds.
pub const QUANTILE_WINDOW_SECS: u64 = 60;

const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")];

/// The `text/plain; version=0.0.4` body.
pub fn render(registry: &Registry) -> String {
    let since = now_secs().saturating_sub(QUANTILE_WINDOW_SECS);
    // Family name → (HELP and TYPE lines, sample lines); a BTreeMap keeps each family's
    // samples together even when two metric names map to one family.
    let mut families: BTreeMap<String, (String, String)> = BTreeMap::new();
    registry.read(|all| {
        for (key, series) in all {
            let family = family_name(key, series);
            let (_, samples) = families.entry(family.clone()).or_insert_with(|| {
                let kind = match series.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                    Kind::Summary => "summary",
                };
                let dims: Vec<&str> = key.dimensions.iter().map(|(k, _)| k.as_str()).collect();
                let by = if dims.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", dims.join(", "))
                };
                let help = format!(
                    "CloudWatch {}/{} ({}){by}",
                    key.namespace, key.name, series.unit
                );
                let head = format!(
                    "# HELP {family} {}\n# TYPE {family} {kind}\n",
                    escape_help(&help)
                );
                (head, String::new())
            });
            write_samples(samples, &family, key, series, since);
        }
    });
    let mut out = String::new();
    for (head, samples) in families.values() {
        out.push_str(head);
        out.push_str(samples);
    }
    out
}

fn write_samples(out: &mut String, family: &str, key: &SeriesKey, series: &Series, since: u64) {
    let labels = labels_of(key, None);
    match series.kind {
        Kind::Counter => {
            let _ = writeln!(out, "{family}_total{labels} {}", number(series.sum));
        }
        Kind::Gauge => {
            let _ = writeln!(out, "{family}{labels} {}", number(series.last));
        }
        Kind::Summary => {
            let recent = series.sketch_since(since);
            for (q, text) in QUANTILES {
                let value = recent.quantile(q).map_or(f64::NAN, round3);
                let with_quantile = labels_of(key, Some(text));
                let _ = writeln!(out, "{family}{with_quantile} {}", number(value));
            }
            let _ = writeln!(out, "{family}_sum{labels} {}", number(series.sum));
            let _ = writeln!(out, "{family}_count{labels} {}", series.count);
        }
    }
}

fn labels_of(key: &SeriesKey, quantile: Option<&str>) -> String {
    let mut parts: Vec<String> = key
        .dimensions
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", label_name(k), escape_value(v)))
        .collect();
    if let Some(q) = quantile {
        parts.push(format!("quantile=\"{q}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// `namespace_metric_name[_unit]`: the namespace lower-cased, the name in snake case.
fn family_name(key: &SeriesKey, series: &Series) -> String {
    let namespace: String = key
        .namespace
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let unit = match series.unit.as_str() {
        "Count" | "None" | "" => String::new(),
        unit => format!("_{}", snake_case(unit)),
    };
    let name = format!("{namespace}_{}{unit}", snake_case(&key.name));
    metric_name(&name)
}

/// `ApiLatency` → `api_latency`, `DynamoDbReadUnits` → `dynamo_db_read_units`,
/// `Api4xx` → `api4xx`, `used_memory_max` unchanged.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
        prev = Some(c);
    }
    out
}

/// A valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting `__` (reserved), not
/// `quantile` (the summary's own label).
fn label_name(dimension: &str) -> String {
    let mut out: String = snake_case(dimension)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.chars().next().is_none_or(|c| c.is_ascii_digit()) || out.starts_with("__") {
        out.insert(0, 'x');
    }
    if out == "quantile" {
        out.insert_str(0, "dimension_");
    }
    out
}

fn escape_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HELP text escapes backslashes and line feeds.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as the format spells it (`NaN`, `+Inf`, `-Inf`, else a float).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks every line against the exposition format's grammar: comments are `# HELP
    /// name text` or `# TYPE name type` (once per family, before its samples), samples are
    /// `name{label="value",...} number`, and a sample belongs to the family declared last.
    fn assert_valid(text: &str) {
        let mut declared: Vec<String> = Vec::new();
        let mut current: Option<(String, String)> = None;
        assert!(text.ends_with('\n'), "the body ends with a line feed");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (what, name) = (parts.next().unwrap(), parts.next().unwrap());
                assert!(is_metric_name(name), "{line}");
                if what == "TYPE" {
                    let kind = parts.next().unwrap();
                    assert!(["counter", "gauge", "summary"].contains(&kind), "{line}");
                    assert!(!declared.contains(&name.to_owned()), "TYPE twice: {line}");
                    declared.push(name.to_owned());
                    current = Some((name.to_owned(), kind.to_owned()));
                } else {
                    assert_eq!(what, "HELP", "{line}");
                }
                continue;
            }
            let (name, rest) = line.split_at(line.find(['{', ' ']).expect(line));
            assert!(is_metric_name(name), "{line}");
            let (family, kind) = current.clone().expect("a sample before its TYPE");
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "gauge" => &[""],
                _ => &["", "_sum", "_count"],
            };
            assert!(
                suffixes.iter().any(|s| name == format!("{family}{s}")),
                "{name} is not in family {family} ({kind})"
            );
            let value = if let Some(labels) = rest.strip_prefix('{') {
                let end = labels.rfind("} ").expect(line);
                assert_labels(&labels[..end], line);
                &labels[end + 2..]
            } else {
                rest.strip_prefix(' ').expect(line)
            };
            assert!(
                ["NaN", "+Inf", "-Inf"].contains(&value) || value.parse::<f64>().is_ok(),
                "{line}"
            );
        }
    }

    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// `name="value"` pairs separated by commas, values with `\\`, `\"` and `\n` escapes.
    fn assert_labels(mut labels: &str, line: &str) {
        while !labels.is_empty() {
            let eq = labels.find("=\"").expect(line);
            let name = &labels[..eq];
            assert!(
                is_metric_name(name) && !name.contains(':') && !name.starts_with("__"),
                "label {name} in {line}"
            );
            let mut chars = labels[eq + 2..].char_indices();
            let end = loop {
                match chars.next().expect(line) {
                    (_, '\\') => {
                        let (_, c) = chars.next().expect(line);
                        assert!(['\\', '"', 'n'].contains(&c), "{line}");
                    }
                    (i, '"') => break eq + 2 + i,
                    (_, '\n') => panic!("raw line feed in {line}"),
                    _ => {}
                }
            };
            labels = labels[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&labels[end + 1..]);
        }
    }

    #[test]
    fn renders_counters_gauges_and_summaries_in_the_exposition_format() {
        let r = Registry::default();
        let line = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"CollectPro","Dimensions":[["Function","Route"],[]],"Metrics":[{"Name":"ApiLatency","Unit":"Milliseconds"},{"Name":"Api4xx","Unit":"Count"}]}]},"Function":"accounts","Route":"GET /accounts/{id} \"q\\\" x","ApiLatency":[10,20,30],"Api4xx":1}"#;
        r.record_log_line(line);
        r.record_log_line(line);
        r.lambda_concurrency("AccountsFunction", 3);
        r.lambda_report("AccountsFunction", 12.5, Some(80.0), 21);
        r.record(
            "Odd-Namespace",
            "2fast",
            &[("__x", "1"), ("quantile", "q")],
            Kind::Gauge,
            "None",
            1.0,
        );
        let text = render(&r);
        assert_valid(&text);
        let has = |l: &str| assert!(text.lines().any(|x| x == l), "no line {l} in\n{text}");
        has("# TYPE collectpro_api_latency_milliseconds summary");
        // Quantiles are estimates within 1% (see `sketch`).
        let value = |series: &str| -> f64 {
            let prefix = format!("{series} ");
            let line = text.lines().find(|l| l.starts_with(&prefix)).expect(series);
            line[prefix.len()..].parse().unwrap()
        };
        let p50 = value("collectpro_api_latency_milliseconds{quantile=\"0.5\"}");
        let p99 = value("collectpro_api_latency_milliseconds{quantile=\"0.99\"}");
        assert!(
            (p50 - 20.0).abs() < 0.2 && (p99 - 30.0).abs() < 0.3,
            "{p50} {p99}"
        );
        has("collectpro_api_latency_milliseconds_sum 120");
        has("collectpro_api_latency_milliseconds_count 6");
        has(
            r#"collectpro_api_latency_milliseconds_count{function="accounts",route="GET /accounts/{id} \"q\\\" x"} 6"#,
        );
        has("# TYPE collectpro_api4xx counter");
        has("collectpro_api4xx_total 2");
        has("aws_lambda_concurrent_executions{function_name=\"AccountsFunction\"} 3");
        has("aws_lambda_duration_milliseconds_count{function_name=\"AccountsFunction\"} 1");
        has("lambdainsights_init_duration_milliseconds_sum{function_name=\"AccountsFunction\"} 80");
        has("lambdainsights_used_memory_max_megabytes{function_name=\"AccountsFunction\"} 21");
        has("odd_namespace_2fast{x__x=\"1\",dimension_quantile=\"q\"} 1");
    }

    #[test]
    fn names_follow_the_rules() {
        assert_eq!(snake_case("DynamoDbReadUnits"), "dynamo_db_read_units");
        assert_eq!(snake_case("Api5xx"), "api5xx");
        assert_eq!(
            snake_case("ApproximateAgeOfOldestMessage"),
            "approximate_age_of_oldest_message"
        );
        assert_eq!(label_name("ActivityType"), "activity_type");
        assert_eq!(label_name("9lives"), "x9lives");
        assert_eq!(metric_name("1a-b"), "_1a_b");
    }
}
