//! `bench-accounts`: in one run against one DynamoDB Local, p50/p99 of
//! `GET /accounts/{id}` through the local gateway vs a raw `GetItem`, and of a filtered,
//! sorted list page (limit 25) vs the raw `Query` it issues, with ratios. Never fails on
//! a timer. `BENCH_ACCOUNTS` (default 100000) accounts are seeded first; `BENCH_REQUESTS`
//! (default 300) requests per measurement after a warm-up of the same size, the gateway
//! and the raw calls interleaved.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use local_gateway::request_log::TimeSplit;
use local_gateway::runtime::{LogCapture, LogSink};
use local_gateway::{Gateway, GatewayOptions};
use shared::accounts::keys::{account_pk, SHARDS};
use shared::auth::users::{NewUser, UserRepo};
use shared::auth::{AuthSettings, KeySet, Role};
use shared::config::TableName;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples
        .get(index)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// p50 and p99 of `samples`, milliseconds.
fn p50_p99(mut samples: Vec<Duration>) -> (f64, f64) {
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    )
}

/// One measured call: how long it took and, through the gateway, the request id it was
/// answered with (`apigw-requestid`), which finds its log line.
struct Timed {
    latency: Duration,
    request_id: Option<String>,
}

/// `requests` warm-up rounds, then `requests` timed ones; each round makes one call through
/// the gateway (`via`) and then the raw one (`raw`), so both see the same engine state
/// (DynamoDB Local's JIT keeps warming up for minutes: measured one after the other, the
/// first side pays for it). A call answers the request id of a gateway response, `None`
/// for a raw DynamoDB call.
async fn measure_pair<F, Fut, G, Gut>(
    requests: u64,
    mut via: F,
    mut raw: G,
) -> Result<(Vec<Timed>, Vec<Timed>)>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
    G: FnMut(u64) -> Gut,
    Gut: std::future::Future<Output = Result<Option<String>>>,
{
    for i in 0..requests {
        // Warm-up: JIT, connections, the function's instance.
        via(i).await?;
        raw(i).await?;
    }
    let (mut via_timed, mut raw_timed) = (Vec::new(), Vec::new());
    for i in 0..requests {
        let started = Instant::now();
        let request_id = via(i).await?;
        via_timed.push(Timed {
            latency: started.elapsed(),
            request_id,
        });
        let started = Instant::now();
        let request_id = raw(i).await?;
        raw_timed.push(Timed {
            latency: started.elapsed(),
            request_id,
        });
    }
    Ok((via_timed, raw_timed))
}

fn latencies(timed: &[Timed]) -> (f64, f64) {
    p50_p99(timed.iter().map(|t| t.latency).collect())
}

fn row(name: &str, via: &[Timed], raw: &[Timed]) {
    let (via, raw) = (latencies(via), latencies(raw));
    println!(
        "{name:<44} gateway p50 {:>7.2} ms p99 {:>7.2} ms | raw p50 {:>7.2} ms p99 {:>7.2} ms | ratio p50 {:>5.1}x p99 {:>5.1}x",
        via.0,
        via.1,
        raw.0,
        raw.1,
        via.0 / raw.0.max(1e-6),
        via.1 / raw.1.max(1e-6)
    );
}

/// Each gateway request's time split by its log line (see `TimeSplit`).
fn split(name: &str, via: &[Timed], logs: &LogCapture) {
    let timed: Vec<_> = via
        .iter()
        .map(|t| (t.latency, t.request_id.clone()))
        .collect();
    let split = TimeSplit::of(&timed, &logs.lines());
    let (p50, p99) = (split.quantile(0.5), split.quantile(0.99));
    println!(
        "{name:<44} of which DynamoDB p50 {:>7.2} ms p99 {:>7.2} ms | ours p50 {:>7.2} ms p99 {:>7.2} ms | {:.1} calls/request ({} of {} requests' lines found)",
        p50.dynamodb,
        p99.dynamodb,
        p50.ours,
        p99.ours,
        split.calls_per_request,
        split.len(),
        via.len()
    );
    println!(
        "{name:<44} ours: the handler p50 {:>7.2} ms p99 {:>7.2} ms | outside it (gateway hops, runtime, log line) p50 {:>7.2} ms p99 {:>7.2} ms",
        p50.handler, p99.handler, p50.outside_handler, p99.outside_handler
    );
}

/// The request id a gateway response carries.
fn request_id(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("apigw-requestid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::main]
async fn main() -> Result<()> {
    let n = env_or("BENCH_ACCOUNTS", 100_000);
    let requests = env_or("BENCH_REQUESTS", 300);
    let workspace = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    let prefix = local_gateway::provision::random_prefix();
    let key_parameter = format!("/collectpro/bench/{prefix}jwt-keys");
    let sdk = shared::clients::sdk_config().await;
    let keys_json = KeySet::generate_json();
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&key_parameter)
        .value(&keys_json)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .context("storing the key set in SSM (moto)")?;
    // The request lines give each request's DynamoDB time (see `split`).
    let logs: &'static LogCapture = Box::leak(Box::default());
    let gateway = Gateway::start(GatewayOptions {
        template_path: workspace.join("template.yaml"),
        http_port: 0,
        ws_port: 0,
        prefix: prefix.clone(),
        params: [
            ("JwtKeysParameterName".to_owned(), key_parameter.clone()),
            ("WriteLimitPerUser".to_owned(), "off".to_owned()),
        ]
        .into_iter()
        .collect(),
        logs: LogSink::Capture(logs),
        event_sources: false,
        ..Default::default()
    })
    .await?;
    let env = gateway.env().clone();
    let accounts_table = env.get("ACCOUNTS_TABLE").context("ACCOUNTS_TABLE")?.clone();
    let users_table = env.get("USERS_TABLE").context("USERS_TABLE")?.clone();
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);

    println!("seeding {n} accounts into {accounts_table} ...");
    let stats = seed::seed(&dynamodb, &accounts_table, n, &seed::agents(20), 16, |_| {}).await?;
    println!(
        "seeded {} accounts in {:.1} s ({:.0} accounts/s)",
        stats.accounts,
        stats.elapsed.as_secs_f64(),
        stats.per_second()
    );

    // A manager and its token (the authenticator checks the user's state).
    let users = UserRepo::new(dynamodb.clone(), TableName::new(users_table));
    let manager = users
        .create(NewUser {
            email: format!("bench-{}@example.com", prefix.to_lowercase()),
            name: "Bench manager".into(),
            role: Role::Manager,
            password_hash: "$argon2id$unused".into(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = KeySet::parse(&keys_json)?;
    let settings = AuthSettings::from_lookup(&|name| env.get(name).cloned())?;
    let (token, _) = settings
        .token_service(&keys)
        .issue(manager.id, Role::Manager, manager.token_version)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    // Sample ids from one shard's newest accounts (a Query, not a Scan).
    let sample = dynamodb
        .query()
        .table_name(&accounts_table)
        .index_name("acc-all-created")
        .key_condition_expression("all_pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("ALL#0".into()))
        .limit(200)
        .send()
        .await?;
    let ids: Vec<String> = sample
        .items()
        .iter()
        .filter_map(|i| i.get("id").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    anyhow::ensure!(!ids.is_empty(), "no accounts seeded");
    let http = reqwest::Client::new();
    let base = format!("http://{}", gateway.http_addr());

    let (via, raw) = measure_pair(
        requests,
        |i| {
            let url = format!("{base}/accounts/{}", ids[i as usize % ids.len()]);
            let request = http.get(url).bearer_auth(&token);
            async move {
                let response = request.send().await?;
                anyhow::ensure!(response.status().is_success(), "GET {}", response.status());
                let id = request_id(&response);
                response.bytes().await?;
                Ok(id)
            }
        },
        |i| {
            let request = dynamodb
                .get_item()
                .table_name(&accounts_table)
                .key(
                    "pk",
                    AttributeValue::S(account_pk(
                        ids[i as usize % ids.len()]
                            .parse()
                            .unwrap_or_else(|_| shared::domain::Id::generate()),
                    )),
                )
                .consistent_read(true);
            async move {
                request.send().await?;
                Ok(None)
            }
        },
    )
    .await?;
    row("GET /accounts/{id} vs GetItem", &via, &raw);
    split("GET /accounts/{id}", &via, logs);

    // A filtered, sorted list: status=active, sorted by balance descending, limit 25:
    // 8 shard Queries merged. The raw side issues the same 8 Queries concurrently.
    let query = "status=active&sort=-balance&min_balance=10000&limit=25";
    let (via, raw) = measure_pair(
        requests,
        |_| {
            let request = http
                .get(format!("{base}/accounts?{query}"))
                .bearer_auth(&token);
            async move {
                let response = request.send().await?;
                anyhow::ensure!(response.status().is_success(), "list {}", response.status());
                let id = request_id(&response);
                response.bytes().await?;
                Ok(id)
            }
        },
        |_| {
            let queries = (0..SHARDS).map(|shard| {
                dynamodb
                    .query()
                    .table_name(&accounts_table)
                    .index_name("acc-status-balance")
                    .key_condition_expression("status_pk = :pk AND balance_sk >= :lo")
                    .expression_attribute_values(
                        ":pk",
                        AttributeValue::S(format!("ST#active#{shard}")),
                    )
                    .expression_attribute_values(
                        ":lo",
                        AttributeValue::S(format!("{:019}#", 10_000)),
                    )
                    .scan_index_forward(false)
                    .limit(6)
                    .send()
            });
            async move {
                for result in futures::future::join_all(queries).await {
                    result?;
                }
                Ok(None)
            }
        },
    )
    .await?;
    row(
        "GET /accounts?status&sort=-balance (25) vs 8 Queries",
        &via,
        &raw,
    );
    split("GET /accounts?status&sort=-balance (25)", &via, logs);
    gateway.shutdown().await;
    Ok(())
}
