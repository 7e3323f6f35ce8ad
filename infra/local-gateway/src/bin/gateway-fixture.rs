//! A Lambda function for the gateway's own tests. `FIXTURE_MODE` (set per function in
//! `tests/fixtures/template.yaml`) picks the behaviour; `FIXTURE_OUT` names a file that
//! event-source modes append what they received to (one JSON line per record).

use std::io::Write;
use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

/// A SigV4 `Authorization` header of the right shape for the local `@connections` API.
const FAKE_SIGV4: &str = "AWS4-HMAC-SHA256 Credential=local/20261201/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn append(value: &Value) {
    if let Ok(path) = std::env::var("FIXTURE_OUT") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{value}");
        }
    }
}

fn echo(event: &Value) -> Value {
    let body = json!({
        "routeKey": event["routeKey"],
        "pathParameters": event["pathParameters"],
        "rawQueryString": event["rawQueryString"],
        "queryStringParameters": event["queryStringParameters"],
        "body": event["body"],
        "isBase64Encoded": event["isBase64Encoded"],
        "headers": event["headers"],
        "cookies": event["cookies"],
        "function": std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
        "pid": std::process::id(),
    });
    json!({
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-fixture": "yes"},
        "body": body.to_string(),
    })
}

async fn websocket(event: &Value) -> Result<Value, Error> {
    let ctx = &event["requestContext"];
    match ctx["eventType"].as_str().unwrap_or_default() {
        "CONNECT" => {
            let ok = event["queryStringParameters"]["token"] == "ok";
            Ok(json!({ "statusCode": if ok { 200 } else { 401 } }))
        }
        "DISCONNECT" => {
            append(&json!({"disconnected": ctx["connectionId"]}));
            Ok(json!({ "statusCode": 200 }))
        }
        _ => {
            let body: Value = serde_json::from_str(event["body"].as_str().unwrap_or("null"))
                .unwrap_or(Value::Null);
            if body["action"] == "post" {
                // Post to a connection through the @connections API, as the notifier does.
                let endpoint = std::env::var("WEBSOCKET_MANAGEMENT_ENDPOINT")?;
                let target = body["to"].as_str().unwrap_or_default();
                let url = format!(
                    "{endpoint}/{}/@connections/{target}",
                    ctx["stage"].as_str().unwrap_or("local")
                );
                // The gateway checks the shape of a SigV4 header, not the signature (the
                // real functions sign with the SDK); a fixed, well-formed one stands in.
                let status = reqwest::Client::new()
                    .post(url)
                    .header("authorization", FAKE_SIGV4)
                    .header("x-amz-date", "20261201T000000Z")
                    .body(body["data"].to_string())
                    .send()
                    .await?
                    .status()
                    .as_u16();
                return Ok(
                    json!({"statusCode": 200, "body": json!({"posted": status}).to_string()}),
                );
            }
            Ok(json!({
                "statusCode": 200,
                "body": json!({
                    "route": ctx["routeKey"],
                    "connectionId": ctx["connectionId"],
                    "echo": body,
                }).to_string(),
            }))
        }
    }
}

/// `?emf=<ms>`: an Embedded Metric Format record on stdout, as CollectPro's functions print
/// one per request (the gateway's metrics tests read it back).
fn emit_metrics(event: &Value, latency: &str) {
    let latency: f64 = latency.parse().unwrap_or(1.0);
    let record = json!({
        "_aws": {
            "Timestamp": now_ms(),
            "CloudWatchMetrics": [{
                "Namespace": "CollectPro",
                "Dimensions": [["Function", "Route"], ["Function"], []],
                "Metrics": [
                    {"Name": "ApiLatency", "Unit": "Milliseconds"},
                    {"Name": "ApiRequests", "Unit": "Count"},
                ],
            }],
        },
        "Function": "fixture",
        "Route": event["routeKey"],
        "ApiLatency": [latency, latency * 2.0],
        "ApiRequests": 1,
        "message": "request served",
    });
    println!("{record}");
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (event, _ctx) = event.into_parts();
    let mode = std::env::var("FIXTURE_MODE").unwrap_or_else(|_| "echo".into());
    let sleep_ms: u64 = std::env::var("FIXTURE_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if let Some(latency) = event["queryStringParameters"]["emf"].as_str() {
        emit_metrics(&event, latency);
    }
    match mode.as_str() {
        "echo" => Ok(echo(&event)),
        "error" => Err("the fixture failed on purpose".into()),
        "sleep" => {
            tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
            Ok(echo(&event))
        }
        "crash" => {
            eprintln!("fixture: exiting mid-request");
            std::process::exit(3)
        }
        "raw" => Ok(json!({"hello": "world"})),
        "big" => {
            // A text body of `?size=N` bytes (Lambda's response quota tests).
            let size: usize = event["queryStringParameters"]["size"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Ok(json!({
                "statusCode": 200,
                "headers": {"content-type": "text/plain"},
                "body": "a".repeat(size),
            }))
        }
        "websocket" => websocket(&event).await,
        "sqs" => {
            let mut failures = Vec::new();
            for r in event["Records"].as_array().into_iter().flatten() {
                append(&json!({
                    "messageId": r["messageId"],
                    "body": r["body"],
                    "receiveCount": r["attributes"]["ApproximateReceiveCount"],
                    "firstReceivedAt": r["attributes"]["ApproximateFirstReceiveTimestamp"],
                    "invokedAt": now_ms(),
                    "eventSource": r["eventSource"],
                }));
                if r["body"].as_str().unwrap_or_default().contains("fail") {
                    failures.push(json!({"itemIdentifier": r["messageId"]}));
                }
            }
            Ok(json!({ "batchItemFailures": failures }))
        }
        "stream" => {
            let mut poisoned = false;
            for r in event["Records"].as_array().into_iter().flatten() {
                append(r);
                poisoned |= !r["dynamodb"]["NewImage"]["poison"].is_null();
            }
            if poisoned {
                // A record this function can never process: the whole batch fails.
                return Err("the fixture cannot process a poison record".into());
            }
            Ok(json!({}))
        }
        "schedule" => {
            append(&event);
            Ok(Value::Null)
        }
        other => Err(format!("unknown FIXTURE_MODE {other}").into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if std::env::var("FIXTURE_MODE").as_deref() == Ok("initfail") {
        eprintln!("fixture: failing init on purpose");
        std::process::exit(1);
    }
    // A slow init (`FIXTURE_INIT_SLEEP_MS`): the cold start a loaded machine gives.
    if let Some(ms) = std::env::var("FIXTURE_INIT_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    lambda_runtime::run(service_fn(handler)).await
}
