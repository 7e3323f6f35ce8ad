//! Cold starts of every function of the template, release build (`make bench-cold`): each
//! function is started cold `BENCH_COLD_RUNS` times (default 20) and serves one realistic
//! first request (an authenticated API call, or the SQS, stream, schedule or WebSocket event
//! its trigger delivers); per function it prints, from the gateway's REPORT lines, the Init
//! Duration, the first request's Duration and the Max Memory Used (p50 and max), and the
//! stripped binary's size.
//!
//! Run under `infra/stack.sh` with `COLLECTPRO_BIN_DIR` naming the release binaries (the
//! functions and `collectpro-admin`, which seeds the admin). Targets (issue 17): Init ≤ 25 ms
//! and Max Memory ≤ 32 MB; a function over either is marked `MISS`. Figures are printed,
//! never asserted: a loaded machine must not fail a build.
//!
//! A cold start here is a fresh process: the function's instances are killed and the next
//! invocation spawns one, as Lambda does after an idle period or a deployment. The gateway
//! measures Init Duration from the spawn to the first `/next`, Duration from `/next` handing
//! the event out to `/response`, and Max Memory Used as the process's peak RSS (VmHWM) after
//! the first request (`infra/local-gateway/src/runtime.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::{account_body, Stack, StackOptions};
use local_gateway::runtime::Outcome;
use serde_json::{json, Value};

/// Cold starts per function unless `BENCH_COLD_RUNS` says otherwise.
const DEFAULT_RUNS: usize = 20;
/// Targets of issue 17.
const INIT_TARGET_MS: f64 = 25.0;
const MEMORY_TARGET_MB: f64 = 32.0;

/// One function's figures from one cold start.
#[derive(Debug, Clone, Copy)]
struct Sample {
    init_ms: f64,
    duration_ms: f64,
    memory_mb: f64,
}

/// The figures of a REPORT line that carries an Init Duration (a cold start's first
/// invocation): `REPORT RequestId: <id> Duration: 4.10 ms Billed Duration: 5 ms Memory Size:
/// 128 MB Max Memory Used: 12 MB Init Duration: 18.20 ms`.
fn parse_report(line: &str) -> Option<Sample> {
    let report = line.split_once("REPORT RequestId: ")?.1;
    let number = |label: &str| -> Option<f64> {
        let rest = report.split_once(label)?.1;
        rest.split_whitespace().next()?.parse().ok()
    };
    Some(Sample {
        // The first " Duration: " is the invocation's (Billed and Init come after it).
        duration_ms: number(" Duration: ")?,
        memory_mb: number("Max Memory Used: ")?,
        init_ms: number("Init Duration: ")?,
    })
}

/// The first request a function serves after its cold start.
enum FirstRequest {
    /// Through the HTTP API, as the seeded admin unless `anonymous`.
    Http {
        method: &'static str,
        path: String,
        body: Option<Value>,
        anonymous: bool,
    },
    /// A payment POST (a fresh Idempotency-Key each time).
    Payment { account: String },
    /// A placement file uploaded through `POST /imports`, then the S3 notification the
    /// imports queue delivers for it (an SQS event).
    Import,
    /// The event its trigger delivers, straight to the function.
    Event(Value),
    /// A schedule fired as EventBridge would (`Function.EventName`).
    Schedule(String),
}

fn http(method: &'static str, path: impl Into<String>, body: Option<Value>) -> FirstRequest {
    FirstRequest::Http {
        method,
        path: path.into(),
        body,
        anonymous: false,
    }
}

/// A sample event from `events/`.
fn sample_event(file: &str) -> Value {
    let path = e2e::workspace().join("events").join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// What each function of the template serves first. A function missing here stops the
/// bench (a new function must say what its first request is).
fn first_requests(stack: &Stack, account: &str) -> BTreeMap<&'static str, FirstRequest> {
    let mut connect = sample_event("websocket-connect.json");
    connect["queryStringParameters"]["token"] = json!(stack.admin());
    connect["multiValueQueryStringParameters"]["token"] = json!([stack.admin()]);
    let aging = stack
        .gateway
        .model()
        .schedules
        .iter()
        .find(|s| s.function == "SchedulerFunction")
        .map(|s| s.name.clone())
        .expect("the template schedules the scheduler");
    BTreeMap::from([
        (
            "HealthFunction",
            FirstRequest::Http {
                method: "GET",
                path: "/health".into(),
                body: None,
                anonymous: true,
            },
        ),
        (
            "DocsFunction",
            FirstRequest::Http {
                method: "GET",
                path: "/openapi.json".into(),
                body: None,
                anonymous: true,
            },
        ),
        (
            "AuthFunction",
            FirstRequest::Http {
                method: "POST",
                path: "/auth/login".into(),
                body: Some(json!({"email": e2e::ADMIN_EMAIL, "password": e2e::ADMIN_PASSWORD})),
                anonymous: true,
            },
        ),
        ("UsersFunction", http("GET", "/users", None)),
        (
            "AccountsFunction",
            http("GET", format!("/accounts/{account}"), None),
        ),
        (
            "PaymentsFunction",
            FirstRequest::Payment {
                account: account.to_owned(),
            },
        ),
        (
            "ActivitiesFunction",
            http(
                "POST",
                format!("/accounts/{account}/activities"),
                Some(json!({"type": "note", "note": "promised to call back on Friday"})),
            ),
        ),
        ("DashboardFunction", http("GET", "/dashboard/summary", None)),
        ("BulkApiFunction", http("GET", "/bulk/jobs", None)),
        (
            "ImportsFunction",
            http(
                "POST",
                "/imports",
                Some(json!({"size": placement_file().len(), "file_name": "placement.csv"})),
            ),
        ),
        ("ImporterFunction", FirstRequest::Import),
        (
            "BulkWorkerFunction",
            FirstRequest::Event(sample_event("sqs-bulk-batch.json")),
        ),
        ("SchedulerFunction", FirstRequest::Schedule(aging)),
        ("WsFunction", FirstRequest::Event(connect)),
        (
            "NotifierFunction",
            FirstRequest::Event(sample_event("dynamodb-stream-payment.json")),
        ),
        (
            "AuditWriterFunction",
            FirstRequest::Event(sample_event("dynamodb-stream-payment.json")),
        ),
        (
            "AuditFunction",
            http("GET", format!("/audit?entity=account:{account}"), None),
        ),
    ])
}

/// A two-row placement file of the imports API's default columns.
fn placement_file() -> String {
    let reference = ulid::Ulid::new();
    format!(
        "reference,debtor_name,debtor_email,debtor_phone,debtor_timezone,currency,original_balance,due_date,tags\n\
         COLD-{reference}-1,Ann Debtor,ann@example.com,+14155550101,America/New_York,USD,1000,2026-10-01,vip\n\
         COLD-{reference}-2,Bob Debtor,bob@example.com,+14155550102,America/Chicago,USD,2500,2026-11-01,\n"
    )
}

/// Creates an import and uploads its file (both through the stack, warm); answers the SQS
/// event of the S3 notification for the uploaded object.
async fn uploaded_import(stack: &Stack) -> Value {
    let file = placement_file();
    let size = file.len();
    let (status, body) = stack
        .send(
            "POST",
            "/imports",
            Some(stack.admin()),
            Some(json!({"size": size, "file_name": "placement.csv"})),
        )
        .await;
    assert!(status.is_success(), "POST /imports: {status} {body}");
    let url = body["upload"]["url"].as_str().expect("an upload URL");
    let put = stack.http.put(url).body(file).send().await.expect("upload");
    assert!(put.status().is_success(), "upload: {}", put.status());
    // moto's presigned URLs are path-style: /<bucket>/<key>?<signature>.
    let path = reqwest::Url::parse(url).expect("a URL").path().to_owned();
    let (bucket, key) = path
        .trim_start_matches('/')
        .split_once('/')
        .expect("a path-style URL");
    let mut event = sample_event("sqs-s3-object-created.json");
    let mut notification: Value =
        serde_json::from_str(event["Records"][0]["body"].as_str().expect("a body"))
            .expect("the sample's body is JSON");
    notification["Records"][0]["s3"]["bucket"]["name"] = json!(bucket);
    notification["Records"][0]["s3"]["object"]["key"] = json!(key);
    notification["Records"][0]["s3"]["object"]["size"] = json!(size);
    event["Records"][0]["body"] = json!(notification.to_string());
    event
}

/// Kills the function's instances and waits until the pool has none: the next invocation
/// starts a fresh process.
async fn make_cold(stack: &Stack, function: &str) {
    let pool = stack
        .gateway
        .pool(function)
        .expect("a function of the template");
    pool.kill_all();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.instances() > 0 {
        assert!(
            Instant::now() < deadline,
            "{function}'s instances did not exit"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Serves `request` to a cold `function`; panics if the function failed it.
async fn serve(stack: &Stack, function: &str, request: &FirstRequest) {
    let check_outcome = |outcome: Outcome| {
        assert!(
            matches!(outcome, Outcome::Success(_)),
            "{function}: {outcome:?}"
        );
    };
    match request {
        FirstRequest::Http {
            method,
            path,
            body,
            anonymous,
        } => {
            let token = (!anonymous).then(|| stack.admin());
            let response = stack
                .request(method, path, token, body.clone())
                .send()
                .await
                .expect("the stack answers");
            let status = response.status();
            assert!(status.is_success(), "{function} {method} {path}: {status}");
        }
        FirstRequest::Payment { account } => {
            let response = stack
                .pay_request(account, 100)
                .send()
                .await
                .expect("the stack answers");
            assert!(
                response.status().is_success(),
                "{function}: {}",
                response.status()
            );
        }
        FirstRequest::Import => {
            let event = uploaded_import(stack).await;
            make_cold(stack, function).await;
            check_outcome(stack.gateway.invoke(function, event).await);
        }
        FirstRequest::Event(event) => {
            check_outcome(stack.gateway.invoke(function, event.clone()).await)
        }
        FirstRequest::Schedule(name) => check_outcome(
            stack
                .gateway
                .trigger_schedule(name)
                .await
                .expect("a schedule"),
        ),
    }
}

/// The REPORT line of `binary`'s cold start among `lines`.
fn cold_report(lines: &[String], binary: &str) -> Option<Sample> {
    let prefix = format!("[{binary}] REPORT ");
    lines
        .iter()
        .filter(|l| l.starts_with(&prefix))
        .find_map(|l| parse_report(l))
}

/// Nearest-rank percentile of `values` (sorted here).
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied().unwrap_or(f64::NAN)
}

fn runs() -> usize {
    match std::env::var("BENCH_COLD_RUNS") {
        Ok(v) => v.parse().expect("BENCH_COLD_RUNS is a number"),
        Err(_) => DEFAULT_RUNS,
    }
}

#[tokio::main]
async fn main() {
    let runs = runs();
    let bin_dir = e2e::bin_dir();
    let stack = Stack::start(StackOptions::unthrottled()).await;
    let account = stack.create_account(account_body("COLD", 1_000_000)).await;
    let account = account["id"].as_str().expect("an account id").to_owned();
    let mut requests = first_requests(&stack, &account);

    println!(
        "Cold starts, {runs} per function, binaries in {} (Init ≤ {INIT_TARGET_MS} ms, Max Memory ≤ {MEMORY_TARGET_MB} MB):",
        bin_dir.display()
    );
    println!(
        "  {:<20} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8}",
        "function", "init p50", "init max", "dur p50", "dur max", "mem p50", "mem max", "size"
    );
    let mut missed = Vec::new();
    let functions: Vec<(String, String)> = stack
        .gateway
        .model()
        .functions
        .iter()
        .map(|(id, spec)| (id.clone(), spec.binary.clone()))
        .collect();
    for (function, binary) in functions {
        let request = requests
            .remove(function.as_str())
            .unwrap_or_else(|| panic!("no first request for {function}: add one"));
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            make_cold(&stack, &function).await;
            let seen = stack.log_lines().len();
            serve(&stack, &function, &request).await;
            let sample = cold_report(&stack.log_lines()[seen..], &binary)
                .unwrap_or_else(|| panic!("{function}: no cold REPORT line"));
            samples.push(sample);
        }
        let figure = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
        let (init, duration, memory) = (
            figure(|s| s.init_ms),
            figure(|s| s.duration_ms),
            figure(|s| s.memory_mb),
        );
        let size = std::fs::metadata(bin_dir.join(&binary))
            .map(|m| m.len() as f64 / 1_048_576.0)
            .unwrap_or(f64::NAN);
        let miss =
            percentile(&init, 1.0) > INIT_TARGET_MS || percentile(&memory, 1.0) > MEMORY_TARGET_MB;
        if miss {
            missed.push(function.clone());
        }
        println!(
            "  {function:<20} {:>6.1} ms {:>6.1} ms {:>6.1} ms {:>6.1} ms {:>4.0} MB {:>4.0} MB {:>5.1} MB{}",
            percentile(&init, 0.5),
            percentile(&init, 1.0),
            percentile(&duration, 0.5),
            percentile(&duration, 1.0),
            percentile(&memory, 0.5),
            percentile(&memory, 1.0),
            size,
            if miss { "  MISS" } else { "" },
        );
    }
    if missed.is_empty() {
        println!("Every function meets both targets.");
    } else {
        println!("Over a target (at max): {}", missed.join(", "));
    }
    stack.gateway.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cold_report_line_gives_its_three_figures() {
        let line = "[payments] REPORT RequestId: a Duration: 14.20 ms Billed Duration: 15 ms Memory Size: 128 MB Max Memory Used: 21 MB Init Duration: 40.00 ms";
        let sample = parse_report(line).expect("a cold report");
        assert_eq!(sample.duration_ms, 14.2);
        assert_eq!(sample.memory_mb, 21.0);
        assert_eq!(sample.init_ms, 40.0);
    }

    #[test]
    fn a_warm_report_line_is_not_a_cold_start() {
        let line = "[payments] REPORT RequestId: b Duration: 5.80 ms Billed Duration: 6 ms Memory Size: 128 MB Max Memory Used: 19 MB";
        assert!(parse_report(line).is_none());
    }
}
