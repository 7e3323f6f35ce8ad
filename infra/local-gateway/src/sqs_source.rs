//! SQS event source mapping: long-polls a queue, invokes the consumer with batches in the
//! SQS event shape, deletes what succeeded (honouring `ReportBatchItemFailures`), leaves
//! failures to come back after the visibility timeout (and to the DLQ after
//! `maxReceiveCount`), and scales pollers with the queue depth up to the function's cap.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use axum::body::Bytes;
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

use crate::gateway::Shared;
use crate::model::SqsMapping;
use crate::runtime::Outcome;

/// Starts the mapping; the handle owns every poller (aborting it stops them).
pub fn start(shared: Arc<Shared>, sqs: aws_sdk_sqs::Client, mapping: SqsMapping) -> JoinHandle<()> {
    tokio::spawn(async move {
        let cap = shared
            .pools
            .get(&mapping.function)
            .map(|_| shared_cap(&shared, &mapping.function))
            .unwrap_or(1);
        if cap == 0 {
            // `ReservedConcurrentExecutions: 0`: the function is switched off, and Lambda
            // does not poll for it.
            eprintln!(
                "[{}] reserved concurrency 0: not polling {}",
                mapping.function, mapping.queue_logical_id
            );
            return;
        }
        let target = Arc::new(AtomicUsize::new(1));
        let mapping = Arc::new(mapping);
        let pollers = futures::stream::FuturesUnordered::new();
        for i in 0..cap {
            pollers.push(tokio::spawn(poller(
                i,
                target.clone(),
                shared.clone(),
                sqs.clone(),
                mapping.clone(),
            )));
        }
        // Scale: one poller per batch waiting, at least one, at most the cap.
        let guard = AbortOnDrop(pollers.iter().map(|p| p.abort_handle()).collect());
        loop {
            let depth = sqs
                .get_queue_attributes()
                .queue_url(&mapping.queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await
                .ok()
                .and_then(|o| {
                    o.attributes()
                        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
                        .and_then(|v| v.parse::<usize>().ok())
                })
                .unwrap_or(0);
            let wanted = depth.div_ceil(mapping.batch_size).clamp(1, cap);
            target.store(wanted, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            if pollers.is_empty() {
                break;
            }
        }
        drop(guard);
    })
}

struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

fn shared_cap(shared: &Shared, function: &str) -> usize {
    shared
        .pools
        .get(function)
        .map(|p| p.max_instances())
        .unwrap_or(1)
}

async fn poller(
    index: usize,
    target: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    sqs: aws_sdk_sqs::Client,
    mapping: Arc<SqsMapping>,
) {
    loop {
        if index >= target.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let batch = receive_batch(&sqs, &mapping).await;
        if batch.is_empty() {
            continue;
        }
        process(&shared, &sqs, &mapping, batch).await;
    }
}

/// Collects up to `batch_size` messages within the batching window (one long poll when the
/// window is 0).
async fn receive_batch(sqs: &aws_sdk_sqs::Client, mapping: &SqsMapping) -> Vec<Message> {
    let mut batch: Vec<Message> = Vec::new();
    let started = Instant::now();
    loop {
        let remaining = mapping.batching_window.saturating_sub(started.elapsed());
        let wait = if batch.is_empty() {
            2
        } else {
            remaining.as_secs().min(20) as i32
        };
        let want = (mapping.batch_size - batch.len()).min(10) as i32;
        let result = sqs
            .receive_message()
            .queue_url(&mapping.queue_url)
            .max_number_of_messages(want)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        match result {
            Ok(out) => batch.extend(out.messages().iter().cloned()),
            Err(err) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&err), queue = %mapping.queue_url, "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return batch;
            }
        }
        if batch.len() >= mapping.batch_size
            || started.elapsed() >= mapping.batching_window
            || (batch.is_empty() && mapping.batching_window.is_zero())
        {
            return batch;
        }
        if batch.is_empty() {
            continue;
        }
    }
}

/// The SQS event record of a message received from the queue `queue_arn`.
pub fn record(m: &Message, queue_arn: &str, region: &str) -> Value {
    let mut attributes = Map::new();
    for (k, v) in m.attributes().into_iter().flatten() {
        attributes.insert(k.as_str().to_owned(), Value::String(v.clone()));
    }
    let mut message_attributes = Map::new();
    for (k, v) in m.message_attributes().into_iter().flatten() {
        let mut a = Map::new();
        a.insert("dataType".into(), json!(v.data_type()));
        if let Some(s) = v.string_value() {
            a.insert("stringValue".into(), json!(s));
        }
        if let Some(b) = v.binary_value() {
            use base64::Engine;
            a.insert(
                "binaryValue".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(b.as_ref())),
            );
        }
        a.insert("stringListValues".into(), json!([]));
        a.insert("binaryListValues".into(), json!([]));
        message_attributes.insert(k.clone(), Value::Object(a));
    }
    json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body().unwrap_or_default(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": m.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    })
}

async fn process(
    shared: &Shared,
    sqs: &aws_sdk_sqs::Client,
    mapping: &SqsMapping,
    batch: Vec<Message>,
) {
    record_oldest_age(shared, mapping, &batch);
    let records: Vec<Value> = batch
        .iter()
        .map(|m| record(m, &mapping.queue_arn, &shared.region))
        .collect();
    let event = json!({ "Records": records });
    let outcome = shared
        .invoke(&mapping.function, Bytes::from(event.to_string()))
        .await;
    let failed: HashSet<String> = match &outcome {
        Outcome::Success(body) if mapping.report_failures => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            match v.get("batchItemFailures").and_then(Value::as_array) {
                Some(items) => {
                    let ids: HashSet<String> = items
                        .iter()
                        .filter_map(|i| i.get("itemIdentifier").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect();
                    let known = ids
                        .iter()
                        .all(|id| batch.iter().any(|m| m.message_id() == Some(id.as_str())));
                    if known {
                        ids
                    } else {
                        // An identifier that is not in the batch fails the whole batch.
                        all_ids(&batch)
                    }
                }
                None => HashSet::new(),
            }
        }
        Outcome::Success(_) => HashSet::new(),
        _ => all_ids(&batch),
    };
    let succeeded: Vec<&Message> = batch
        .iter()
        .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
        .collect();
    for chunk in succeeded.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        if let Err(err) = sqs
            .delete_message_batch()
            .queue_url(&mapping.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "delete failed");
        }
    }
    // Failures are left alone: neither deleted nor made visible again. They come back when
    // the queue's visibility timeout expires, and after `maxReceiveCount` receives SQS moves
    // them to the dead-letter queue. That is Lambda's SQS event source: "if Lambda encounters
    // an error at any point while processing a batch, all messages in that batch return to
    // the queue. After the visibility timeout, the messages become visible to Lambda again";
    // partial batch responses return "only the failed messages back to the queue"
    // (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html>). Retries
    // are therefore as slow locally as on AWS: a queue's `VisibilityTimeout` is part of what
    // a local run tests.
}

/// `ApproximateAgeOfOldestMessage`, as far as a poller sees it: the age of the oldest
/// message of a batch it received (`SentTimestamp`, Unix milliseconds).
fn record_oldest_age(shared: &Shared, mapping: &SqsMapping, batch: &[Message]) {
    let oldest = batch
        .iter()
        .filter_map(|m| {
            m.attributes()?
                .get(&MessageSystemAttributeName::SentTimestamp)?
                .parse::<u64>()
                .ok()
        })
        .min();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if let Some(sent) = oldest {
        let queue = mapping.queue_url.rsplit('/').next().unwrap_or_default();
        let age_secs = now_ms.saturating_sub(sent) as f64 / 1000.0;
        shared.metrics.queue_oldest_age(queue, age_secs);
    }
}

fn all_ids(batch: &[Message]) -> HashSet<String> {
    batch
        .iter()
        .filter_map(|m| m.message_id().map(str::to_owned))
        .collect()
}
