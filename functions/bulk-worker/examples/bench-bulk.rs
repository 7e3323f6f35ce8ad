//! `make bench-bulk N=10000`: in one run on the same DynamoDB Local, the time of a bulk job
//! of N accounts from `202` to `completed` (the real bulk-worker binary driven by the local
//! gateway's SQS event source; progress polled every 50 ms) against a raw, parallel
//! `UpdateItem` loop over the same N accounts, run before and after the job (the ratio is
//! against their mean), and against the worker's own account reads and writes made raw
//! through the store it uses (what the job costs beyond them is the job's own), with the
//! stream mappings disabled throughout. Prints figures and the ratios; never fails on a timer.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures::stream::{self, StreamExt};
use shared::accounts::Account;
use shared::auth::{AuthSettings, Caller, KeySet, Role};
use shared::bulk::ChunkStore;
use shared::clients::Clients;
use shared::config::Config;
use shared::domain::{Id, Timestamp};
use shared::rate_limit::RateLimits;
use shared::testing::TestRequest;

fn account(currency: shared::domain::Currency) -> Account {
    Account {
        currency,
        due_date: time::macros::date!(2026 - 01 - 15),
        tags: vec!["seed".into()],
        ..shared::testing::account(10_000, Timestamp::now())
    }
    .fresh()
}

/// The raw parallel `UpdateItem` loop, 64 in flight: the baseline (the version
/// bumped and `tag` appended, on the condition that the account exists).
async fn raw_updates(clients: &Clients, table: &str, ids: &[Id], tag: &str) -> Duration {
    let started = Instant::now();
    stream::iter(ids.iter().copied())
        .map(|id| {
            let client = clients.dynamodb.clone();
            let table = table.to_owned();
            let tag = tag.to_owned();
            async move {
                let result = client
                    .update_item()
                    .table_name(table)
                    .key("pk", AttributeValue::S(format!("ACCOUNT#{id}")))
                    .update_expression("SET #v = #v + :one, tags = list_append(tags, :tag)")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .expression_attribute_values(
                        ":tag",
                        AttributeValue::L(vec![AttributeValue::S(tag)]),
                    )
                    .send()
                    .await;
                if let Err(err) = result {
                    eprintln!("raw update failed: {err}");
                }
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    started.elapsed()
}

/// The worker's own reads and writes for the same change, made straight through the store
/// it uses: each chunk read with `ChunkStore::read` (one `BatchGetItem`: the job, the
/// chunk's marker, its failures and its accounts), then each account written with
/// `ChunkStore::write` (an `UpdateItem` conditional on the version read, of what the change
/// moves: tags, version, `updated_at` and the three "updated" indexes' keys, the
/// applied-jobs marker); four chunks at once and 16 writes at once in each (the worker's
/// `MESSAGE_CONCURRENCY` and `ACCOUNT_CONCURRENCY`). Without what a job adds around them:
/// the chunk's counting transaction, progress, SQS, the gateway and the function.
async fn worker_calls_raw(chunks: &ChunkStore, ids: &[Id], tag: &str) -> Duration {
    let started = Instant::now();
    let job = Id::generate();
    let job_key = job.to_string();
    stream::iter(ids.chunks(shared::bulk::CHUNK_SIZE).enumerate())
        .map(|(n, chunk)| {
            let job_key = &job_key;
            async move {
                let read = match chunks.read(job, &n.to_string(), chunk).await {
                    Ok(read) => read,
                    Err(err) => return eprintln!("chunk read failed: {err}"),
                };
                stream::iter(read.accounts.into_values())
                    .map(|stored| async move {
                        let mut next = stored.account.clone();
                        next.tags.push(tag.to_owned());
                        next.version += 1;
                        next.updated_at = Timestamp::now();
                        next.applied_bulk_jobs.insert(job_key.clone());
                        match chunks.write(&stored, &next, &[]).await {
                            Ok(true) => {}
                            Ok(false) => eprintln!("{}: changed since read", next.id),
                            Err(err) => eprintln!("{}: write failed: {err}", next.id),
                        }
                    })
                    .buffer_unordered(16)
                    .collect::<Vec<()>>()
                    .await;
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    started.elapsed()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let workspace = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gw = local_gateway::Gateway::start(local_gateway::GatewayOptions {
        template_path: workspace.join("template.yaml"),
        http_port: 0,
        ws_port: 0,
        bin_dir: Some(local_gateway::gateway::default_bin_dir(&workspace)),
        prefix: local_gateway::provision::random_prefix(),
        logs: local_gateway::runtime::LogSink::None,
        event_sources: true,
        ..Default::default()
    })
    .await?;
    // The stream consumers (notifier, audit-writer) are separate invocations on AWS, not on
    // the table's write capacity; here they would share the one DynamoDB Local with both
    // sides, and whichever side ran second would also pay for the first side's backlog.
    gw.enable_stream_mappings(false);
    let env = gw.env().clone();
    let lookup = move |name: &str| env.get(name).cloned();
    let config = Config::from_lookup(&lookup)?;
    let clients = Clients::from_env().await;
    let keys = KeySet::parse(&KeySet::generate_json())?;
    let auth = AuthSettings::from_lookup(&lookup)?;
    let api = bulk_api::App::new(shared::platform::Platform::new(
        config.clone(),
        clients.clone(),
        &keys,
        &auth,
        RateLimits::off(),
    ));
    let table = config.tables.accounts.as_str().to_owned();
    let chunks = ChunkStore::new(
        clients.dynamodb.clone(),
        config.tables.jobs.clone(),
        config.tables.accounts.clone(),
        config.tables.activities.clone(),
    );

    println!("bench-bulk: writing {n} accounts ...");
    let usd: shared::domain::Currency = "USD".parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let accounts: Vec<Account> = (0..n).map(|_| account(usd)).collect();
    stream::iter(accounts.chunks(25))
        .map(|chunk| {
            let requests: Vec<WriteRequest> = chunk
                .iter()
                .filter_map(|a| {
                    let item = a.to_item().ok()?;
                    Some(
                        WriteRequest::builder()
                            .put_request(PutRequest::builder().set_item(Some(item)).build().ok()?)
                            .build(),
                    )
                })
                .collect();
            let client = clients.dynamodb.clone();
            let table = table.clone();
            async move {
                let mut pending = HashMap::from([(table, requests)]);
                while !pending.is_empty() {
                    match client
                        .batch_write_item()
                        .set_request_items(Some(pending.clone()))
                        .send()
                        .await
                    {
                        Ok(out) => pending = out.unprocessed_items.unwrap_or_default(),
                        Err(err) => eprintln!("batch write failed, retrying: {err}"),
                    }
                }
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let ids: Vec<Id> = accounts.iter().map(|a| a.id).collect();

    // Warm DynamoDB Local's JIT on the same kind of write first.
    let warm = raw_updates(&clients, &table, &ids[..n.min(3000)], "warm").await;
    println!(
        "warm-up: {} raw UpdateItems in {:.2} s",
        n.min(3000),
        warm.as_secs_f64()
    );

    // The raw loop before and after the job: DynamoDB Local speeds up as its JIT warms and
    // slows as its tables grow, so the job is compared with the mean of the two.
    let raw_before = raw_updates(&clients, &table, &ids, "raw-before").await;
    let worker_raw_before = worker_calls_raw(&chunks, &ids, "rw-before").await;

    let admin = Caller {
        user_id: Id::generate(),
        role: Role::Admin,
    };
    let body = serde_json::json!({
        "account_ids": ids.iter().map(Id::to_string).collect::<Vec<_>>(),
        "changes": {"add_tags": ["bench"]},
    });
    let started = Instant::now();
    let response = bulk_api::dispatch(
        &api,
        &admin,
        TestRequest::new("POST /bulk/accounts", "/bulk/accounts")
            .json(&body)
            .build(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let accepted = started.elapsed();
    let body: serde_json::Value = serde_json::from_slice(response.body().as_ref())?;
    let job_id: Id = body["job_id"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let mut progress = BTreeSet::new();
    let job = loop {
        let Some(job) = api
            .store
            .get(job_id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        else {
            anyhow::bail!("job vanished");
        };
        progress.insert(job.processed);
        if job.finished_at.is_some() || started.elapsed() > Duration::from_secs(1800) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let bulk = started.elapsed();

    let worker_raw_after = worker_calls_raw(&chunks, &ids, "rw-after").await;
    let raw_after = raw_updates(&clients, &table, &ids, "raw-after").await;
    let raw = (raw_before + raw_after) / 2;
    let worker_raw = (worker_raw_before + worker_raw_after) / 2;
    println!("N = {n}");
    println!(
        "POST /bulk/accounts -> 202: {:.1} ms",
        accepted.as_secs_f64() * 1000.0
    );
    println!(
        "bulk job 202 -> {}: {:.2} s ({:.0} accounts/s), succeeded {}, failed {}, {} distinct progress values seen (polling every 50 ms)",
        job.state,
        bulk.as_secs_f64(),
        n as f64 / bulk.as_secs_f64(),
        job.succeeded,
        job.failed,
        progress.len()
    );
    println!(
        "raw parallel UpdateItem loop (64 in flight): {:.2} s before the job, {:.2} s after, mean {:.2} s ({:.0} updates/s)",
        raw_before.as_secs_f64(),
        raw_after.as_secs_f64(),
        raw.as_secs_f64(),
        n as f64 / raw.as_secs_f64()
    );
    println!(
        "the worker's own account reads and writes made raw (ChunkStore::read of each chunk of {}, then ChunkStore::write of each account; 64 in flight): {:.2} s before the job, {:.2} s after, mean {:.2} s ({:.2}x the UpdateItem loop)",
        shared::bulk::CHUNK_SIZE,
        worker_raw_before.as_secs_f64(),
        worker_raw_after.as_secs_f64(),
        worker_raw.as_secs_f64(),
        worker_raw.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "ratio bulk / mean raw: {:.2}x; bulk / the worker's own calls made raw: {:.2}x",
        bulk.as_secs_f64() / raw.as_secs_f64(),
        bulk.as_secs_f64() / worker_raw.as_secs_f64()
    );
    gw.shutdown().await;
    Ok(())
}
