//! What the stack logged during a step: `make run`'s gateway writes every function's output
//! and its START/END/REPORT lines, each prefixed with `[function] `, to its log (the file the
//! `load` target sends it to). The load reads the bytes a step added and keeps, per function,
//! the request lines (route, DynamoDB calls and units), the REPORT figures (duration, memory,
//! cold starts) and the log bytes (CloudWatch Logs ingestion), and per table and operation the
//! DynamoDB calls and units of the EMF records the call recorder wrote (`shared::dynamo`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// DynamoDB figures of one table and operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallFigures {
    pub calls: f64,
    pub read_units: f64,
    pub write_units: f64,
    pub latency_ms_sum: f64,
}

/// One function's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionFigures {
    pub invocations: u64,
    pub duration_ms_sum: f64,
    pub billed_ms_sum: f64,
    pub cold_starts: u64,
    pub init_ms_sum: f64,
    pub max_memory_mb: u64,
    pub memory_size_mb: u64,
    /// Bytes of the function's log, START/END/REPORT lines included (what CloudWatch Logs
    /// ingests).
    pub log_bytes: u64,
    /// The function's own lines (START/END/REPORT left out).
    pub log_lines: u64,
}

/// Per-route figures from the API functions' request lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteFigures {
    pub requests: u64,
    pub dynamodb_calls: f64,
    pub read_units: f64,
    pub write_units: f64,
    pub duration_ms_sum: f64,
}

/// Everything a stretch of the log says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StackFigures {
    pub functions: BTreeMap<String, FunctionFigures>,
    pub routes: BTreeMap<String, RouteFigures>,
    /// `table operation` → figures. Tables are named without the stack's prefix.
    pub calls: BTreeMap<String, CallFigures>,
}

impl StackFigures {
    /// Adds the figures of the log lines in `text`; `prefix` is the tables' name prefix.
    pub fn add_text(&mut self, text: &str, prefix: &str) {
        for line in text.lines() {
            self.add_line(line, prefix);
        }
    }

    fn add_line(&mut self, line: &str, prefix: &str) {
        let Some((function, rest)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) else {
            return;
        };
        let figures = self.functions.entry(function.to_owned()).or_default();
        figures.log_bytes += rest.len() as u64 + 1;
        if let Some(report) = rest.strip_prefix("REPORT ") {
            add_report(figures, report);
            return;
        }
        if rest.starts_with("START ") || rest.starts_with("END ") {
            return;
        }
        figures.log_lines += 1;
        let Ok(record) = serde_json::from_str::<Value>(rest) else {
            return;
        };
        if record["message"] == "request" {
            let route = self
                .routes
                .entry(record["route"].as_str().unwrap_or("?").to_owned())
                .or_default();
            route.requests += 1;
            route.dynamodb_calls += record["dynamodb_calls"].as_f64().unwrap_or(0.0);
            route.read_units += record["dynamodb_read_units"].as_f64().unwrap_or(0.0);
            route.write_units += record["dynamodb_write_units"].as_f64().unwrap_or(0.0);
            route.duration_ms_sum += record["duration_ms"].as_f64().unwrap_or(0.0);
        }
        if let (Some(table), Some(operation)) =
            (record["Table"].as_str(), record["Operation"].as_str())
        {
            // A transaction over several tables names them all, comma-separated.
            let table = table
                .split(',')
                .map(|t| t.strip_prefix(prefix).unwrap_or(t))
                .collect::<Vec<_>>()
                .join(",");
            let call = self
                .calls
                .entry(format!("{table} {operation}"))
                .or_default();
            call.calls += sum(&record["DynamoDbCalls"]);
            call.read_units += sum(&record["DynamoDbReadUnits"]);
            call.write_units += sum(&record["DynamoDbWriteUnits"]);
            call.latency_ms_sum += sum(&record["DynamoDbLatency"]);
        }
    }

    /// All API requests the functions answered.
    pub fn requests(&self) -> u64 {
        self.routes.values().map(|r| r.requests).sum()
    }

    /// DynamoDB calls of every function (API and workers alike).
    pub fn dynamodb_calls(&self) -> f64 {
        self.calls.values().map(|c| c.calls).sum()
    }
}

/// An EMF value: a number or an array of numbers, summed.
fn sum(value: &Value) -> f64 {
    match value {
        Value::Array(values) => values.iter().filter_map(Value::as_f64).sum(),
        other => other.as_f64().unwrap_or(0.0),
    }
}

/// `RequestId: .. Duration: 1.23 ms Billed Duration: 2 ms Memory Size: 128 MB Max Memory
/// Used: 20 MB[ Init Duration: 5.00 ms]`.
fn add_report(figures: &mut FunctionFigures, report: &str) {
    let field = |name: &str| {
        report
            .split_once(name)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    figures.invocations += 1;
    figures.duration_ms_sum += field(" Duration: ").unwrap_or(0.0);
    figures.billed_ms_sum += field("Billed Duration: ").unwrap_or(0.0);
    figures.memory_size_mb = field("Memory Size: ").unwrap_or(0.0) as u64;
    figures.max_memory_mb = figures
        .max_memory_mb
        .max(field("Max Memory Used: ").unwrap_or(0.0) as u64);
    if let Some(init) = field("Init Duration: ") {
        figures.cold_starts += 1;
        figures.init_ms_sum += init;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"[payments] START RequestId: a
[payments] {"message":"request","route":"POST /accounts/{id}/payments","status":201,"duration_ms":12.5,"dynamodb_calls":3,"dynamodb_read_units":1.0,"dynamodb_write_units":6.0,"_aws":{}}
[payments] {"Table":"collectpro-local-Payments,collectpro-local-Accounts","Operation":"TransactWriteItems","DynamoDbCalls":1,"DynamoDbReadUnits":0,"DynamoDbWriteUnits":[4,2],"DynamoDbLatency":[3.5]}
[payments] END RequestId: a
[payments] REPORT RequestId: a Duration: 14.20 ms Billed Duration: 15 ms Memory Size: 128 MB Max Memory Used: 21 MB Init Duration: 40.00 ms
[payments] REPORT RequestId: b Duration: 5.80 ms Billed Duration: 6 ms Memory Size: 128 MB Max Memory Used: 19 MB
gateway: listening
"#;

    #[test]
    fn request_lines_reports_and_call_records() {
        let mut figures = StackFigures::default();
        figures.add_text(LOG, "collectpro-local-");
        let payments = &figures.functions["payments"];
        assert_eq!(payments.invocations, 2);
        assert_eq!(payments.cold_starts, 1);
        assert!((payments.duration_ms_sum - 20.0).abs() < 1e-9);
        assert_eq!(payments.billed_ms_sum, 21.0);
        assert_eq!((payments.max_memory_mb, payments.memory_size_mb), (21, 128));
        assert_eq!(
            payments.log_lines, 2,
            "START/END/REPORT are not the function's own"
        );
        let route = &figures.routes["POST /accounts/{id}/payments"];
        assert_eq!(
            (route.requests, route.dynamodb_calls, route.write_units),
            (1, 3.0, 6.0)
        );
        let call = &figures.calls["Payments,Accounts TransactWriteItems"];
        assert_eq!(
            (call.calls, call.write_units, call.latency_ms_sum),
            (1.0, 6.0, 3.5)
        );
        assert_eq!(figures.requests(), 1);
        assert_eq!(
            figures.functions.len(),
            1,
            "unprefixed lines are the gateway's"
        );
    }
}
