//! DynamoDB Streams event source mapping: reads every shard of a table's stream from the
//! mapping's starting position, invokes in order with the stream event shape, retries a
//! failed batch (maximum retries, bisect, `batchItemFailures`), checkpoints in memory and
//! follows new shards (a child shard starts after its parent is drained).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use axum::body::Bytes;
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

use crate::gateway::Shared;
use crate::model::StreamMapping;
use crate::runtime::Outcome;

const POLL: Duration = Duration::from_millis(250);

/// Starts the mapping; aborting the handle stops every shard reader.
pub fn start(
    shared: Arc<Shared>,
    client: aws_sdk_dynamodbstreams::Client,
    mapping: StreamMapping,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mapping = Arc::new(mapping);
        let finished: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut started: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
        let mut first_round = true;
        let guard = Guard(Arc::new(Mutex::new(Vec::new())));
        loop {
            let shards = list_shards(&client, &mapping.stream_arn).await;
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
                // Shards that exist at start use the mapping's position; later ones are
                // read from their beginning.
                let position = if first_round {
                    mapping.starting_position.clone()
                } else {
                    "TRIM_HORIZON".to_owned()
                };
                let handle = tokio::spawn(read_shard(
                    shared.clone(),
                    client.clone(),
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
    last: Option<&str>,
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
                tracing::warn!(error = %aws_sdk_dynamodbstreams::error::DisplayErrorContext(&err), shard = %shard_id, "get_shard_iterator failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Reads one shard from `position` (`LATEST` or `TRIM_HORIZON`) and delivers its records.
///
/// DynamoDB Local hands out iterators that go stale: one taken on an empty shard (or chained
/// from an empty read) fails with `TrimmedDataAccessException` once *any other* table is
/// written, so a reader that waited on a quiet table would never deliver again. The reader
/// therefore remembers the last sequence number it has read and, on that error (or an
/// expired iterator), takes a fresh iterator after it. `LATEST` is implemented the same way,
/// without a `LATEST` iterator: the records present at start are read and skipped.
async fn read_shard(
    shared: Arc<Shared>,
    client: aws_sdk_dynamodbstreams::Client,
    mapping: Arc<StreamMapping>,
    shard_id: String,
    position: String,
    finished: Arc<Mutex<HashSet<String>>>,
) {
    let mut last: Option<String> = None;
    let mut iterator = fresh_iterator(&client, &mapping, &shard_id, None).await;
    let mut skipping = position == "LATEST";
    while let Some(it) = iterator.clone() {
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
                    iterator = fresh_iterator(&client, &mapping, &shard_id, last.as_deref()).await;
                    tokio::time::sleep(POLL).await;
                } else {
                    tracing::warn!(error = %aws_sdk_dynamodbstreams::error::DisplayErrorContext(&err), shard = %shard_id, "get_records failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        if let Some(seq) = resp
            .records()
            .last()
            .and_then(|r| r.dynamodb())
            .and_then(|d| d.sequence_number())
        {
            last = Some(seq.to_owned());
        }
        if resp.records().is_empty() {
            // Caught up: from here on every record is new.
            skipping = false;
        } else if !skipping {
            let records: Vec<Value> = resp
                .records()
                .iter()
                .map(|r| record_json(r, &mapping.stream_arn, &shared.region))
                .collect();
            deliver(&shared, &mapping, records).await;
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
/// or given up on. Order is kept: a retry starts at the first failed record.
async fn deliver(shared: &Shared, mapping: &StreamMapping, records: Vec<Value>) {
    // Work list of batches still to deliver, in order.
    let mut pending: std::collections::VecDeque<(Vec<Value>, u32)> =
        std::collections::VecDeque::from([(records, 0)]);
    while let Some((batch, attempts)) = pending.pop_front() {
        let event = json!({ "Records": batch });
        let outcome = shared
            .invoke(&mapping.function, Bytes::from(event.to_string()))
            .await;
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
                "[{}] stream batch of {} record(s) dropped after {} attempt(s) (MaximumRetryAttempts)",
                mapping.function,
                retry.len(),
                attempts
            );
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
