//! DynamoDB Streams event source mapping: reads every shard of a table's stream from the
//! mapping's starting position, invokes in order with the stream event shape, retries a
//! failed batch (maximum retries, bisect, `batchItemFailures`), sends what exhausted its
//! retries to the mapping's `OnFailure` queue and moves on, checkpoints each shard in a
//! table (so a restarted gateway resumes after the last record it delivered) and follows
//! new shards (a child shard starts after its parent is drained).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as DdbValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use axum::body::Bytes;
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

use crate::gateway::Shared;
use crate::model::StreamMapping;
use crate::runtime::Outcome;

const POLL: Duration = Duration::from_millis(250);

/// The sort key of the marker that says a mapping has run before.
const STARTED: &str = "#STARTED";

/// Where the stream mappings keep their checkpoints: the table `{prefix}GatewayCheckpoints`
/// on the same DynamoDB (Local) as the template's tables, one item per mapping and shard
/// (`pk` = function and stream ARN, `sk` = shard id, `seq` = the last sequence number
/// delivered or given up on).
///
/// Lambda keeps an event source mapping's position itself, across anything that happens to
/// the function; the local gateway is that service here, so its position must survive the
/// gateway's own restart. It lives next to the data it points into, so it persists exactly
/// when the data does: with `make run PERSIST=1` (DynamoDB Local on `.local/data`) a
/// restarted gateway resumes after the last checkpoint, neither re-delivering what the
/// notifier already handled nor skipping what was written while it was down; without
/// PERSIST the tables, their streams and the checkpoints start empty together.
///
/// A checkpoint is written after each page of records is done with (delivered, or sent to
/// the `OnFailure` destination), so a gateway stopped mid-page re-delivers that page:
/// at least once, as on AWS.
#[derive(Clone)]
pub struct Checkpoints {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Checkpoints {
    /// The checkpoint table's name under a prefix.
    pub fn table_name(prefix: &str) -> String {
        format!("{prefix}GatewayCheckpoints")
    }

    /// The key of a mapping's items.
    pub fn mapping_key(mapping: &StreamMapping) -> String {
        format!("{}|{}", mapping.function, mapping.stream_arn)
    }

    /// Creates the table if it does not exist yet and waits until it is active.
    pub async fn ensure(client: aws_sdk_dynamodb::Client, prefix: &str) -> Result<Self> {
        let table = Self::table_name(prefix);
        let created = client
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("sk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("sk")
                    .key_type(KeyType::Range)
                    .build()?,
            )
            .send()
            .await;
        if let Err(err) = created {
            let exists = err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception());
            if !exists {
                return Err(anyhow::Error::new(err)).context(format!("creating {table}"));
            }
        }
        for _ in 0..100 {
            let status = client
                .describe_table()
                .table_name(&table)
                .send()
                .await
                .ok()
                .and_then(|d| d.table().and_then(|t| t.table_status().cloned()));
            if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { client, table })
    }

    /// The checkpoints of a mapping (shard id → sequence number) and whether it ran before.
    pub async fn load(&self, mapping: &StreamMapping) -> Result<(BTreeMap<String, String>, bool)> {
        let mut shards = BTreeMap::new();
        let mut started = false;
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", DdbValue::S(Self::mapping_key(mapping)))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .with_context(|| format!("reading checkpoints from {}", self.table))?;
            for item in page.items() {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                match (text("sk"), text("seq")) {
                    (Some(sk), _) if sk == STARTED => started = true,
                    (Some(shard), Some(seq)) => {
                        shards.insert(shard, seq);
                    }
                    _ => {}
                }
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                let ran_before = started || !shards.is_empty();
                return Ok((shards, ran_before));
            }
        }
    }

    /// Records that the mapping has started (so a restart reads shards it has no
    /// checkpoint for from their beginning rather than from `LATEST`).
    async fn mark_started(&self, mapping: &StreamMapping) {
        self.put(mapping, STARTED, None).await;
    }

    /// Records `seq` as the last sequence number done with in `shard`.
    pub async fn save(&self, mapping: &StreamMapping, shard: &str, seq: &str) {
        self.put(mapping, shard, Some(seq)).await;
    }

    async fn put(&self, mapping: &StreamMapping, sk: &str, seq: Option<&str>) {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", DdbValue::S(Self::mapping_key(mapping)))
            .item("sk", DdbValue::S(sk.to_owned()));
        if let Some(seq) = seq {
            request = request.item("seq", DdbValue::S(seq.to_owned()));
        }
        // A lost checkpoint only means re-delivery after a restart; keep serving.
        if let Err(err) = request.send().await {
            tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err), shard = %sk, "checkpoint failed");
        }
    }
}

/// What a stream mapping needs besides the shared gateway state.
#[derive(Clone)]
pub struct StreamClients {
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// `None`: positions are kept in memory only (the `invoke` subcommand, no provisioning).
    pub checkpoints: Option<Checkpoints>,
}

/// Starts the mapping; aborting the handle stops every shard reader.
pub fn start(
    shared: Arc<Shared>,
    clients: StreamClients,
    mapping: StreamMapping,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if shared
            .pools
            .get(&mapping.function)
            .is_some_and(|p| p.max_instances() == 0)
        {
            // `ReservedConcurrentExecutions: 0`: the function is switched off, and Lambda
            // does not read the stream for it.
            eprintln!(
                "[{}] reserved concurrency 0: not reading {}",
                mapping.function, mapping.stream_arn
            );
            return;
        }
        let mapping = Arc::new(mapping);
        let (resume, resumed) = match &clients.checkpoints {
            Some(c) => match c.load(&mapping).await {
                Ok(loaded) => loaded,
                Err(err) => {
                    eprintln!(
                        "[{}] {err:#}; starting without checkpoints",
                        mapping.function
                    );
                    (BTreeMap::new(), false)
                }
            },
            None => (BTreeMap::new(), false),
        };
        if let Some(c) = &clients.checkpoints {
            c.mark_started(&mapping).await;
        }
        let finished: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut started: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
        let mut first_round = true;
        let guard = Guard(Arc::new(Mutex::new(Vec::new())));
        loop {
            let shards = list_shards(&clients.streams, &mapping.stream_arn).await;
            for (shard_id, parent) in shards {
                if started.contains_key(&shard_id) {
                    continue;
                }
                // A child waits for its parent to be drained (if we are reading the parent).
                if let Some(p) = &parent {
                    let parent_done = finished.lock().map(|f| f.contains(p)).unwrap_or(true);
                    if started.contains_key(p) && !parent_done {
                        continue;
                    }
                }
                // A checkpointed shard resumes after its checkpoint. Otherwise shards that
                // exist when a mapping first starts use its starting position; later ones (and
                // every shard of a mapping that ran before) are read from their beginning.
                let position = match resume.get(&shard_id) {
                    Some(seq) => Position::After(seq.clone()),
                    None if first_round && !resumed => {
                        if mapping.starting_position == "LATEST" {
                            Position::Latest
                        } else {
                            Position::TrimHorizon
                        }
                    }
                    None => Position::TrimHorizon,
                };
                let handle = tokio::spawn(read_shard(
                    shared.clone(),
                    clients.clone(),
                    mapping.clone(),
                    shard_id.clone(),
                    position,
                    finished.clone(),
                ));
                if let Ok(mut g) = guard.0.lock() {
                    g.push(handle.abort_handle());
                }
                started.insert(shard_id, handle);
            }
            first_round = false;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

/// Where a shard reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    /// After the records present at start (read and skipped, see [`read_shard`]).
    Latest,
    TrimHorizon,
    /// After this sequence number (a checkpoint).
    After(String),
}

struct Guard(Arc<Mutex<Vec<tokio::task::AbortHandle>>>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(g) = self.0.lock() {
            for h in g.iter() {
                h.abort();
            }
        }
    }
}

async fn list_shards(
    client: &aws_sdk_dynamodbstreams::Client,
    arn: &str,
) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let resp = client
            .describe_stream()
            .stream_arn(arn)
            .set_exclusive_start_shard_id(start.clone())
            .send()
            .await;
        let Ok(resp) = resp else {
            return out;
        };
        let Some(desc) = resp.stream_description() else {
            return out;
        };
        for s in desc.shards() {
            if let Some(id) = s.shard_id() {
                out.push((id.to_owned(), s.parent_shard_id().map(str::to_owned)));
            }
        }
        match desc.last_evaluated_shard_id() {
            Some(last) => start = Some(last.to_owned()),
            None => return out,
        }
    }
}

/// A fresh iterator: after `last` (the last sequence number read), or at the shard's start.
async fn fresh_iterator(
    client: &aws_sdk_dynamodbstreams::Client,
    mapping: &StreamMapping,
    shard_id: &str,
    mut last: Option<&str>,
) -> Option<String> {
    loop {
        let request = client
            .get_shard_iterator()
            .stream_arn(&mapping.stream_arn)
            .shard_id(shard_id);
        let request = match last {
            Some(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        match request.send().await {
            Ok(r) => return r.shard_iterator().map(str::to_owned),
            Err(err) => {
                // A checkpoint older than the stream's retention (24 h) is gone: resume at
                // the oldest record there is, as Lambda does for an expired position.
                let trimmed = err
                    .as_service_error()
                    .is_some_and(|e| e.is_trimmed_data_access_exception());
                if trimmed && last.is_some() {
                    eprintln!(
                        "[{}] checkpoint of shard {shard_id} is past the stream's retention; resuming at TRIM_HORIZON",
                        mapping.function
                    );
                    last = None;
                    continue;
                }
                tracing::warn!(error = %aws_sdk_dynamodbstreams::error::DisplayErrorContext(&err), shard = %shard_id, "get_shard_iterator failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Reads one shard from `position` and delivers its records.
///
/// DynamoDB Local hands out iterators that go stale: one taken on an empty shard (or chained
/// from an empty read) fails with `TrimmedDataAccessException` once *any other* table is
/// written, so a reader that waited on a quiet table would never deliver again. The reader
/// therefore remembers the last sequence number it has read and, on that error (or an
/// expired iterator), takes a fresh iterator after it. `LATEST` is implemented the same way,
/// without a `LATEST` iterator: the records present at start are read and skipped.
async fn read_shard(
    shared: Arc<Shared>,
    clients: StreamClients,
    mapping: Arc<StreamMapping>,
    shard_id: String,
    position: Position,
    finished: Arc<Mutex<HashSet<String>>>,
) {
    let client = &clients.streams;
    let mut last: Option<String> = match &position {
        Position::After(seq) => Some(seq.clone()),
        _ => None,
    };
    let mut iterator = fresh_iterator(client, &mapping, &shard_id, last.as_deref()).await;
    let mut skipping = position == Position::Latest;
    // When the shard was last read to its end: a record read after that was written after
    // it (the iterator age's lower bound, see `record_iterator_age`).
    let mut caught_up_at = 0.0;
    let mut enabled = shared.stream_mappings_enabled.subscribe();
    while let Some(it) = iterator.clone() {
        // A disabled mapping holds its place (an iterator that expires meanwhile is renewed
        // from `last` below, as after any expiry).
        if enabled.wait_for(|on| *on).await.is_err() {
            return;
        }
        let asked_at = unix_secs();
        let resp = client
            .get_records()
            .shard_iterator(&it)
            .limit(mapping.batch_size.min(1000) as i32)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(err) => {
                let stale = err.as_service_error().is_some_and(|e| {
                    e.is_trimmed_data_access_exception() || e.is_expired_iterator_exception()
                });
                if stale {
                    iterator = fresh_iterator(client, &mapping, &shard_id, last.as_deref()).await;
                    tokio::time::sleep(POLL).await;
                } else {
                    tracing::warn!(error = %aws_sdk_dynamodbstreams::error::DisplayErrorContext(&err), shard = %shard_id, "get_records failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let page_last = resp
            .records()
            .last()
            .and_then(|r| r.dynamodb())
            .and_then(|d| d.sequence_number())
            .map(str::to_owned);
        if resp.records().is_empty() {
            // Caught up: from here on every record is new.
            skipping = false;
            caught_up_at = asked_at;
        } else if !skipping {
            let records: Vec<Value> = resp
                .records()
                .iter()
                .map(|r| record_json(r, &mapping.stream_arn, &shared.region))
                .collect();
            record_iterator_age(&shared, &mapping, &records, caught_up_at);
            deliver(&shared, &clients.sqs, &mapping, &shard_id, records).await;
        }
        if let Some(seq) = page_last {
            // Done with the page (delivered, given up on, or skipped for LATEST).
            if let Some(c) = &clients.checkpoints {
                c.save(&mapping, &shard_id, &seq).await;
            }
            last = Some(seq);
        }
        iterator = resp.next_shard_iterator().map(str::to_owned);
        if resp.records().is_empty() {
            tokio::time::sleep(POLL).await;
        }
    }
    if let Ok(mut f) = finished.lock() {
        f.insert(shard_id);
    }
}

/// Invokes with `records`, retrying as the mapping says, until every record is processed
/// or given up on. Order is kept: a retry starts at the first failed record. What is given
/// up on (`MaximumRetryAttempts` exhausted) goes to the `OnFailure` destination, if any,
/// and the shard moves on.
async fn deliver(
    shared: &Shared,
    sqs: &aws_sdk_sqs::Client,
    mapping: &StreamMapping,
    shard_id: &str,
    records: Vec<Value>,
) {
    // Work list of batches still to deliver, in order.
    let mut pending: std::collections::VecDeque<(Vec<Value>, u32)> =
        std::collections::VecDeque::from([(records, 0)]);
    while let Some((batch, attempts)) = pending.pop_front() {
        let event = json!({ "Records": batch });
        let outcome = shared
            .invoke(&mapping.function, Bytes::from(event.to_string()))
            .await;
        if matches!(outcome, Outcome::RequestTooLarge(_)) && batch.len() > 1 {
            // Lambda never hands a function a batch over its 6 MB invocation quota: it cuts
            // batches to fit. Halve it; this is no failed attempt.
            let (a, b) = batch.split_at(batch.len() / 2);
            pending.push_front((b.to_vec(), attempts));
            pending.push_front((a.to_vec(), attempts));
            continue;
        }
        let failed_from: Option<usize> = match &outcome {
            Outcome::Success(body) if mapping.report_failures => {
                let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let failures = v
                    .get("batchItemFailures")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let seqs: Vec<String> = failures
                    .iter()
                    .filter_map(|f| f.get("itemIdentifier").map(crate::template::scalar))
                    .collect();
                if seqs.is_empty() {
                    None
                } else {
                    // Resume at the lowest failed sequence number; unknown ones fail all.
                    batch
                        .iter()
                        .position(|r| {
                            let seq = r
                                .pointer("/dynamodb/SequenceNumber")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            seqs.iter().any(|s| s == seq)
                        })
                        .or(Some(0))
                }
            }
            Outcome::Success(_) => None,
            _ => Some(0),
        };
        let Some(from) = failed_from else { continue };
        let retry: Vec<Value> = batch[from..].to_vec();
        let attempts = attempts + 1;
        if mapping.max_retries.is_some_and(|max| attempts > max) {
            eprintln!(
                "[{}] stream batch of {} record(s) given up after {} attempt(s) (MaximumRetryAttempts){}",
                mapping.function,
                retry.len(),
                attempts,
                if mapping.on_failure.is_some() { "; sent to the OnFailure destination" } else { "" }
            );
            if let Some(queue) = &mapping.on_failure {
                let record = failure_record(mapping, shard_id, &retry, attempts, &outcome);
                if let Err(err) = sqs
                    .send_message()
                    .queue_url(queue)
                    .message_body(record.to_string())
                    .send()
                    .await
                {
                    eprintln!(
                        "[{}] could not send to the OnFailure destination: {}",
                        mapping.function,
                        aws_sdk_sqs::error::DisplayErrorContext(&err)
                    );
                }
            }
            continue;
        }
        let backoff = Duration::from_millis((100u64 << attempts.min(6)).min(5_000));
        tokio::time::sleep(backoff).await;
        if mapping.bisect && retry.len() > 1 && from == 0 {
            let mid = retry.len() / 2;
            let (a, b) = retry.split_at(mid);
            pending.push_front((b.to_vec(), attempts));
            pending.push_front((a.to_vec(), attempts));
        } else {
            pending.push_front((retry, attempts));
        }
    }
}

/// `IteratorAge`: how old the page's last record is as it is handed to the function.
///
/// Its age comes from `ApproximateCreationDateTime`, which DynamoDB Local rounds down to
/// the minute (AWS to the second), so alone it would read up to a minute too old. The
/// record was also written after the shard was last read to its end (`caught_up_at`): the
/// later of the two is the estimate, exact to a poll interval while the mapping keeps up,
/// and the stream's own timestamp once it falls behind.
fn record_iterator_age(
    shared: &Shared,
    mapping: &StreamMapping,
    records: &[Value],
    caught_up_at: f64,
) {
    let created = records
        .last()
        .and_then(|r| r.pointer("/dynamodb/ApproximateCreationDateTime"))
        .and_then(Value::as_f64);
    if let Some(created) = created {
        let age_secs = unix_secs() - created.max(caught_up_at);
        shared
            .metrics
            .iterator_age(&mapping.function, age_secs * 1000.0);
    }
}

fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The record Lambda sends to a stream mapping's `OnFailure` destination for a batch whose
/// retries are exhausted: metadata, not the records themselves (read them from the stream,
/// or the table, by the sequence numbers), in the shape of
/// <https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html>
/// (`requestContext` with `condition: RetryAttemptsExhausted` and `approximateInvokeCount`,
/// `responseContext`, `DDBStreamBatchInfo` with the shard, the first and last sequence
/// numbers, the arrival times, the batch size and the stream ARN).
pub fn failure_record(
    mapping: &StreamMapping,
    shard_id: &str,
    batch: &[Value],
    attempts: u32,
    outcome: &Outcome,
) -> Value {
    let seq = |r: Option<&Value>| {
        r.and_then(|r| r.pointer("/dynamodb/SequenceNumber"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let arrival = |r: Option<&Value>| {
        r.and_then(|r| r.pointer("/dynamodb/ApproximateCreationDateTime"))
            .and_then(Value::as_f64)
            .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs as i64).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .map(Value::String)
            .unwrap_or(Value::Null)
    };
    let mut response = json!({"statusCode": 200, "executedVersion": "$LATEST"});
    if !outcome.is_success() {
        response["functionError"] = json!("Unhandled");
    }
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    json!({
        "requestContext": {
            "requestId": ulid::Ulid::new().to_string(),
            "functionArn": mapping.function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": attempts,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": now,
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": seq(batch.first()),
            "endSequenceNumber": seq(batch.last()),
            "approximateArrivalOfFirstRecord": arrival(batch.first()),
            "approximateArrivalOfLastRecord": arrival(batch.last()),
            "batchSize": batch.len(),
            "streamArn": mapping.stream_arn,
        },
    })
}

/// A stream record in the Lambda event shape.
pub fn record_json(r: &Record, arn: &str, region: &str) -> Value {
    let mut ddb = Map::new();
    if let Some(s) = r.dynamodb() {
        if let Some(t) = s.approximate_creation_date_time() {
            ddb.insert(
                "ApproximateCreationDateTime".into(),
                json!(t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9),
            );
        }
        if let Some(k) = s.keys() {
            ddb.insert("Keys".into(), image(k));
        }
        if let Some(k) = s.new_image() {
            ddb.insert("NewImage".into(), image(k));
        }
        if let Some(k) = s.old_image() {
            ddb.insert("OldImage".into(), image(k));
        }
        if let Some(seq) = s.sequence_number() {
            ddb.insert("SequenceNumber".into(), json!(seq));
        }
        if let Some(size) = s.size_bytes() {
            ddb.insert("SizeBytes".into(), json!(size));
        }
        if let Some(v) = s.stream_view_type() {
            ddb.insert("StreamViewType".into(), json!(v.as_str()));
        }
    }
    json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|e| e.as_str()),
        "eventVersion": r.event_version().unwrap_or("1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "eventSourceARN": arn,
        "dynamodb": ddb,
    })
}

fn image(m: &std::collections::HashMap<String, AttributeValue>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), attr(v))).collect())
}

fn attr(v: &AttributeValue) -> Value {
    use base64::Engine;
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(b) => json!({ "NULL": b }),
        AttributeValue::Ss(l) => json!({ "SS": l }),
        AttributeValue::Ns(l) => json!({ "NS": l }),
        AttributeValue::Bs(l) => json!({ "BS": l.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(attr).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": image(m) }),
        _ => json!({ "NULL": true }),
    }
}
