//! The AWS bill of a mix, per million API requests, at the list prices of
//! `load/aws-prices.json` (one file, with its date): what `make cost` prints from the last
//! `make load`.

use serde::{Deserialize, Serialize};

/// The price table (`load/aws-prices.json`), US dollars per unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    pub region: String,
    pub as_of: String,
    pub source: String,
    pub lambda_arm64_gb_second: f64,
    pub lambda_request: f64,
    pub http_api_request: f64,
    pub websocket_message: f64,
    pub websocket_connection_minute: f64,
    pub dynamodb_read_request_unit: f64,
    pub dynamodb_write_request_unit: f64,
    pub dynamodb_stream_read_request_unit: f64,
    pub sqs_request: f64,
    pub cloudwatch_logs_ingested_gb: f64,
    pub cloudwatch_custom_metric_month: f64,
}

impl Prices {
    /// The table shipped with the crate (read at build time, so `make cost` needs no path).
    pub fn shipped() -> Prices {
        serde_json::from_str(include_str!("../aws-prices.json"))
            .expect("load/aws-prices.json is a price table")
    }
}

/// One function's share of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionUsage {
    pub name: String,
    pub invocations: f64,
    pub billed_ms: f64,
    /// Measured duration (REPORT's Duration), for concurrency.
    pub duration_ms: f64,
    pub memory_size_mb: f64,
    pub max_memory_mb: f64,
}

impl FunctionUsage {
    pub fn gb_seconds(&self) -> f64 {
        self.billed_ms / 1000.0 * self.memory_size_mb / 1024.0
    }

    pub fn mean_billed_ms(&self) -> f64 {
        self.billed_ms / self.invocations.max(1.0)
    }
}

/// What a run used, in total, for `api_requests` API requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub api_requests: f64,
    pub functions: Vec<FunctionUsage>,
    /// DynamoDB read and write request units (tables and GSIs, as consumed capacity reports).
    pub read_units: f64,
    pub write_units: f64,
    /// Stream records the stream consumers read (free when a Lambda trigger reads them).
    pub stream_records: f64,
    pub sqs_requests: f64,
    pub websocket_messages: f64,
    pub websocket_connection_minutes: f64,
    pub log_bytes: f64,
}

/// One line of the bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub item: String,
    /// Units per million API requests.
    pub quantity: f64,
    pub unit: String,
    pub usd: f64,
}

/// The bill per million API requests, itemised, most expensive first.
pub fn per_million(prices: &Prices, usage: &Usage) -> Vec<Line> {
    let scale = 1e6 / usage.api_requests.max(1.0);
    let line = |item: &str, quantity: f64, unit: &str, price: f64| Line {
        item: item.to_owned(),
        quantity: quantity * scale,
        unit: unit.to_owned(),
        usd: quantity * scale * price,
    };
    let mut lines = Vec::new();
    for f in &usage.functions {
        lines.push(line(
            &format!("Lambda {} compute ({} MB arm64)", f.name, f.memory_size_mb),
            f.gb_seconds(),
            "GB-s",
            prices.lambda_arm64_gb_second,
        ));
    }
    let invocations: f64 = usage.functions.iter().map(|f| f.invocations).sum();
    lines.extend([
        line(
            "Lambda requests",
            invocations,
            "requests",
            prices.lambda_request,
        ),
        line(
            "HTTP API requests",
            usage.api_requests,
            "requests",
            prices.http_api_request,
        ),
        line(
            "DynamoDB on-demand reads (incl. GSIs)",
            usage.read_units,
            "RRU",
            prices.dynamodb_read_request_unit,
        ),
        line(
            "DynamoDB on-demand writes (incl. GSIs)",
            usage.write_units,
            "WRU",
            prices.dynamodb_write_request_unit,
        ),
        // Lambda triggers read DynamoDB Streams free of charge.
        line(
            "DynamoDB Streams reads (Lambda trigger: free)",
            usage.stream_records,
            "records",
            0.0,
        ),
        line(
            "SQS requests",
            usage.sqs_requests,
            "requests",
            prices.sqs_request,
        ),
        line(
            "WebSocket messages",
            usage.websocket_messages,
            "messages",
            prices.websocket_message,
        ),
        line(
            "WebSocket connection minutes",
            usage.websocket_connection_minutes,
            "minutes",
            prices.websocket_connection_minute,
        ),
        line(
            "CloudWatch Logs ingested (incl. EMF)",
            usage.log_bytes / 1e9,
            "GB",
            prices.cloudwatch_logs_ingested_gb,
        ),
    ]);
    lines.sort_by(|a, b| b.usd.total_cmp(&a.usd));
    lines
}

pub fn total(lines: &[Line]) -> f64 {
    lines.iter().map(|l| l.usd).sum()
}

/// A smaller memory size for a function whose measured peak leaves room: half again its
/// peak, rounded up to 64 MB, at least 128 MB; with what it saves per million requests if
/// the duration stayed the same (on Lambda, CPU share scales with memory, so a CPU-bound
/// function may run longer: measure before changing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryAdvice {
    pub function: String,
    pub current_mb: f64,
    pub suggested_mb: f64,
    pub usd_saved: f64,
}

pub fn memory_advice(prices: &Prices, usage: &Usage) -> Vec<MemoryAdvice> {
    let scale = 1e6 / usage.api_requests.max(1.0);
    usage
        .functions
        .iter()
        .filter_map(|f| {
            let suggested = ((f.max_memory_mb * 1.5 / 64.0).ceil() * 64.0).max(128.0);
            (suggested < f.memory_size_mb).then(|| MemoryAdvice {
                function: f.name.clone(),
                current_mb: f.memory_size_mb,
                suggested_mb: suggested,
                usd_saved: f.billed_ms / 1000.0 * (f.memory_size_mb - suggested) / 1024.0
                    * scale
                    * prices.lambda_arm64_gb_second,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage() -> Usage {
        Usage {
            api_requests: 1000.0,
            functions: vec![FunctionUsage {
                name: "auth".into(),
                invocations: 1000.0,
                billed_ms: 10_000.0, // 10 ms each
                duration_ms: 9_000.0,
                memory_size_mb: 512.0,
                max_memory_mb: 40.0,
            }],
            read_units: 2000.0,
            write_units: 500.0,
            stream_records: 100.0,
            sqs_requests: 30.0,
            websocket_messages: 400.0,
            websocket_connection_minutes: 60.0,
            log_bytes: 1_000_000.0,
        }
    }

    #[test]
    fn the_shipped_table_parses_and_is_dated() {
        let prices = Prices::shipped();
        assert!(!prices.as_of.is_empty());
        assert_eq!(prices.http_api_request, 1e-6);
    }

    #[test]
    fn a_million_requests_itemised() {
        let prices = Prices::shipped();
        let lines = per_million(&prices, &usage());
        let usd = |item: &str| lines.iter().find(|l| l.item.starts_with(item)).unwrap().usd;
        // 1,000 requests x 10 ms x 0.5 GB = 5 GB-s; x 1,000 for a million.
        let compute = 5_000.0 * prices.lambda_arm64_gb_second;
        assert!((usd("Lambda auth") - compute).abs() < 1e-9);
        assert!((usd("HTTP API") - 1.0).abs() < 1e-9);
        assert!(
            (usd("DynamoDB on-demand reads") - 2e6 * prices.dynamodb_read_request_unit).abs()
                < 1e-9
        );
        assert!(
            (usd("DynamoDB on-demand writes") - 5e5 * prices.dynamodb_write_request_unit).abs()
                < 1e-9
        );
        assert_eq!(usd("DynamoDB Streams"), 0.0);
        assert!(
            (usd("CloudWatch Logs") - 1.0 * 0.5).abs() < 1e-9,
            "1 GB per million"
        );
        assert!(
            lines.windows(2).all(|w| w[0].usd >= w[1].usd),
            "most expensive first"
        );
        assert!((total(&lines) - lines.iter().map(|l| l.usd).sum::<f64>()).abs() < 1e-12);
    }

    #[test]
    fn memory_advice_keeps_half_again_the_peak() {
        let prices = Prices::shipped();
        let advice = memory_advice(&prices, &usage());
        assert_eq!(advice.len(), 1);
        assert_eq!(advice[0].suggested_mb, 128.0);
        let saved = 10.0 * (512.0 - 128.0) / 1024.0 * 1000.0 * prices.lambda_arm64_gb_second;
        assert!((advice[0].usd_saved - saved).abs() < 1e-9);
        let mut tight = usage();
        tight.functions[0].max_memory_mb = 400.0;
        assert!(
            memory_advice(&prices, &tight).is_empty(),
            "600 MB > 512 MB: keep it"
        );
    }
}
