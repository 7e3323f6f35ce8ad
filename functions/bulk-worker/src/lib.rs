//! The bulk queue's consumer (and the dead-letter queue's).
//!
//! Messages (`shared::bulk::BulkMessage`):
//!
//! - `plan_ids`: up to 500 ids of a job → chunk messages of 40 (`SendMessageBatch`), or,
//!   when the job was cancelled first, those chunks counted as cancelled at once.
//! - `plan_filter`: one page of one partition of a filter job's Query (never a Scan): the
//!   page is frozen in a `PAGE#` item (first writer wins, so a redelivery enqueues the very
//!   same chunks), its chunks enqueued, `total` grown once per page (conditional on the
//!   partition's sequence number), then the next page's message sent.
//! - `chunk`: reads the job, the chunk marker, each account and its failure marker in one
//!   `BatchGetItem`, applies each account's change as one write conditional on its version
//!   and on the job not being applied yet (`bulk_jobs`), records failures, and counts the
//!   chunk once (see `shared::bulk`).
//!
//! Errors that may pass (throttling, timeouts, a busy item) fail only their message, which
//! goes back in `batchItemFailures`; after `maxReceiveCount` receives SQS moves it to the
//! dead-letter queue, whose mapping calls this same handler: a dead-lettered chunk's
//! accounts that were not changed are failures with reason `dead_lettered`, so
//! `processed` always reaches `total`. A message that does not parse is logged and dropped.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use shared::accounts::keys::MARKER_DAYS;
use shared::bulk::{
    chunks_of, AgentChange, BulkMessage, ChunkRead, ChunkStore, Counts, Failure, FailureReason,
    FilterQuery, FrozenPage, JobRecord, JobState, JobStore, StoredAccount, MAX_TAGS,
};
use shared::config::Config;
use shared::domain::{Id, Timestamp};
use shared::dynamo::retry::backoff;
use shared::dynamo::DataError;
use shared::metrics::{self, names};

/// Accounts of one chunk written concurrently.
const ACCOUNT_CONCURRENCY: usize = 16;
/// Messages of one batch processed concurrently.
const MESSAGE_CONCURRENCY: usize = 4;
/// Re-reads of an account that changed between read and write.
const VERSION_RETRIES: u32 = 5;

/// Configuration and clients, built once per cold start.
pub struct App {
    pub store: JobStore,
    pub chunks: ChunkStore,
    /// Shortens a failed message's visibility (`shared::queue`).
    pub sqs: aws_sdk_sqs::Client,
    /// The bulk queue's URL.
    pub queue_url: String,
    /// The dead-letter queue's URL: messages from it are accounted, not applied.
    pub dlq_url: String,
}

pub type InitError = Box<dyn std::error::Error + Send + Sync>;

/// The queue's name: the last segment of its URL (and of its ARN).
fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

impl App {
    pub fn new(config: &Config, clients: &shared::clients::Clients) -> Self {
        Self {
            store: JobStore::new(
                clients.dynamodb.clone(),
                clients.sqs.clone(),
                config.tables.jobs.clone(),
                config.queues.bulk.clone(),
            ),
            chunks: ChunkStore::new(
                clients.dynamodb.clone(),
                config.tables.jobs.clone(),
                config.tables.accounts.clone(),
                config.tables.activities.clone(),
            ),
            sqs: clients.sqs.clone(),
            queue_url: config.queues.bulk.clone(),
            dlq_url: config.queues.bulk_dlq.clone(),
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let config = Config::from_env()?;
        let clients = shared::clients::Clients::from_env().await;
        clients.prime(&config.tables, |tables| &tables.jobs).await;
        Ok(Self::new(&config, &clients))
    }
}

/// Handles one SQS batch; the messages that should be retried are returned, each first
/// made visible again after its `shared::queue::redelivery_delay` (seconds, not the queue's
/// six-minute visibility timeout).
pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let failures: Vec<BatchItemFailure> = stream::iter(event.records)
        .map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            let dead = from_dead_letter_queue(app, &record);
            match handle_record(app, &record, dead).await {
                Ok(()) => None,
                Err(err) => {
                    tracing::warn!(message_id = %id, error = %err, "bulk message failed; SQS will retry it");
                    let queue_url = if dead {
                        &app.dlq_url
                    } else {
                        &app.queue_url
                    };
                    shared::queue::redeliver_soon(&app.sqs, queue_url, &record).await;
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    Some(failure)
                }
            }
        })
        .buffer_unordered(MESSAGE_CONCURRENCY)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

/// Whether a record comes from the dead-letter queue.
pub fn from_dead_letter_queue(app: &App, record: &SqsMessage) -> bool {
    record
        .event_source_arn
        .as_deref()
        .is_some_and(|arn| arn.rsplit(':').next() == Some(queue_name(&app.dlq_url)))
}

/// Handles one record (`dead`: it came from the dead-letter queue).
async fn handle_record(app: &App, record: &SqsMessage, dead: bool) -> Result<(), DataError> {
    let body = record.body.as_deref().unwrap_or_default();
    let message: BulkMessage = match serde_json::from_str(body) {
        Ok(message) => message,
        Err(err) => {
            // Retrying cannot help; nothing in it can be accounted.
            tracing::error!(error = %err, message_id = ?record.message_id, "dropping a bulk message that does not parse");
            return Ok(());
        }
    };
    if dead {
        tracing::warn!(job_id = %message.job_id(), "accounting for a dead-lettered bulk message");
    }
    // The job's own state moves (running, finished, failed) are the worker's.
    let actor = shared::audit::Actor {
        via: Some(format!("bulk:{}", message.job_id())),
        ..shared::audit::Actor::system("bulk-worker")
    };
    shared::audit::acting(actor, process(app, &message, dead)).await
}

/// Processes one message (`dead`: it was dead-lettered; account for it, change nothing).
pub async fn process(app: &App, message: &BulkMessage, dead: bool) -> Result<(), DataError> {
    match message {
        BulkMessage::Chunk { job_id, chunk, ids } => {
            process_chunk(app, *job_id, chunk, ids, dead).await
        }
        BulkMessage::PlanIds { job_id, part, ids } => {
            let chunks = chunks_of(*job_id, &part.to_string(), ids);
            let job = app.store.get(*job_id).await?;
            let Some(job) = job else {
                tracing::warn!(job_id = %job_id, "no such job; dropping its plan");
                return Ok(());
            };
            if dead || job.state == JobState::Cancelled {
                // Never enqueued (or cancelled): account for each chunk here.
                for chunk in &chunks {
                    if let BulkMessage::Chunk { chunk, ids, .. } = chunk {
                        process_chunk(app, *job_id, chunk, ids, dead).await?;
                    }
                }
                return Ok(());
            }
            app.store.mark_running(*job_id).await?;
            app.store.send(&chunks).await
        }
        BulkMessage::PlanFilter {
            job_id,
            partition,
            seq,
        } => {
            if dead {
                // The rest of this partition cannot be planned: the job fails (the
                // accounts already enqueued are still processed and counted).
                app.store.end(*job_id, JobState::Failed).await?;
                return Ok(());
            }
            plan_filter(app, *job_id, *partition, *seq).await
        }
    }
}

// ------------------------------------------------------------------ filter planning

/// Page `seq` of `partition`, frozen by this call or an earlier delivery.
async fn frozen_page(
    app: &App,
    job: &JobRecord,
    partition: u32,
    seq: u32,
) -> Result<FrozenPage, DataError> {
    if let Some(page) = app.store.frozen_page(job.id, partition, seq).await? {
        return Ok(page);
    }
    let start = if seq == 0 {
        None
    } else {
        app.store
            .frozen_page(job.id, partition, seq - 1)
            .await?
            .ok_or_else(|| DataError::corrupt("the previous page is missing"))?
            .next
    };
    let filter = job.spec()?.filter.unwrap_or_default();
    let query = FilterQuery::new(&filter, job.created_at.as_offset_date_time().date());
    let (ids, next) = app.chunks.page(&query, partition, start).await?;
    app.store
        .freeze_page(job.id, partition, seq, FrozenPage { ids, next })
        .await
}

async fn plan_filter(app: &App, job_id: Id, partition: u32, seq: u32) -> Result<(), DataError> {
    let Some(job) = app.store.get(job_id).await? else {
        return Ok(());
    };
    if job.state.is_final() {
        return Ok(());
    }
    app.store.mark_running(job_id).await?;
    let page = frozen_page(app, &job, partition, seq).await?;
    app.store
        .send(&chunks_of(
            job_id,
            &format!("f{partition}.{seq}"),
            &page.ids,
        ))
        .await?;
    // Count the page once: conditional on this partition's sequence number.
    let last = page.next.is_none();
    let advanced = app
        .store
        .count_page(job_id, partition, seq, page.ids.len(), last)
        .await?;
    // Counted by an earlier delivery. If the partition is further along than the next
    // page, the next message was processed already: stop this chain.
    if !advanced && app.store.plan_position(job_id, partition).await? > seq + 1 {
        return Ok(());
    }
    if last {
        app.store.try_finish(job_id).await?;
    } else {
        app.store
            .send(&[BulkMessage::PlanFilter {
                job_id,
                partition,
                seq: seq + 1,
            }])
            .await?;
    }
    Ok(())
}

// ------------------------------------------------------------------ chunks

/// What happened to one account of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

/// Applies (or accounts for) one chunk and counts it once.
pub async fn process_chunk(
    app: &App,
    job_id: Id,
    chunk: &str,
    ids: &[Id],
    dead: bool,
) -> Result<(), DataError> {
    let ChunkRead {
        job,
        counted,
        failed_before,
        mut accounts,
    } = app.chunks.read(job_id, chunk, ids).await?;
    let Some(job) = job else {
        tracing::warn!(job_id = %job_id, "no such job (expired?); dropping its chunk");
        return Ok(());
    };
    if counted {
        tracing::info!(job_id = %job_id, chunk, "chunk already counted (duplicate delivery)");
        return Ok(());
    }
    let spec = job.spec()?;
    let cancelled = job.state == JobState::Cancelled;
    // The accounts change on behalf of the job's creator (the audit trail's actor).
    let actor = job.actor();
    let job_key = job_id.to_string();
    let outcomes = stream::iter(ids.iter().copied())
        .map(|id| {
            let read = accounts.remove(&id);
            let failed_before = failed_before.contains(&id);
            let job = &job;
            let spec = &spec;
            let job_key = &job_key;
            async move {
                if read
                    .as_ref()
                    .is_some_and(|stored| stored.account.applied_bulk_jobs.contains(job_key))
                {
                    return Ok(Outcome::Succeeded);
                }
                if failed_before {
                    return Ok(Outcome::Failed);
                }
                if cancelled {
                    return Ok(Outcome::Cancelled);
                }
                if dead {
                    fail(app, job.id, id, FailureReason::DeadLettered, "the message carrying this account was dead-lettered after repeated failures").await?;
                    return Ok(Outcome::Failed);
                }
                apply(app, job, &spec.changes, id, read).await
            }
        })
        .buffer_unordered(ACCOUNT_CONCURRENCY)
        .collect();
    let outcomes: Vec<Result<Outcome, DataError>> = shared::audit::acting(actor, outcomes).await;
    let mut counts = Counts::default();
    for outcome in outcomes {
        match outcome? {
            Outcome::Succeeded => counts.succeeded += 1,
            Outcome::Failed => counts.failed += 1,
            Outcome::Cancelled => counts.cancelled += 1,
        }
    }
    if app.store.commit_chunk(job_id, chunk, counts).await? {
        // Counted once, with the chunk: a redelivered chunk commits nothing twice.
        metrics::record(&names::BULK_ITEMS_PROCESSED, &[], counts.succeeded as f64);
        metrics::record(&names::BULK_ITEMS_FAILED, &[], counts.failed as f64);
        if dead {
            metrics::record(&names::BULK_ITEMS_DEAD_LETTERED, &[], counts.failed as f64);
        }
        tracing::info!(job_id = %job_id, chunk, succeeded = counts.succeeded, failed = counts.failed, cancelled = counts.cancelled, "chunk counted");
    }
    app.store.try_finish(job_id).await?;
    Ok(())
}

async fn fail(
    app: &App,
    job: Id,
    account: Id,
    reason: FailureReason,
    message: &str,
) -> Result<(), DataError> {
    app.store
        .record_failure(
            job,
            &Failure {
                account_id: account,
                reason,
                message: message.to_owned(),
            },
        )
        .await
}

/// Applies the job's changes to one account, exactly once.
async fn apply(
    app: &App,
    job: &JobRecord,
    changes: &shared::bulk::Changes,
    id: Id,
    mut read: Option<StoredAccount>,
) -> Result<Outcome, DataError> {
    let job_key = job.id.to_string();
    for attempt in 0..VERSION_RETRIES {
        let Some(stored) = read.as_ref() else {
            fail(
                app,
                job.id,
                id,
                FailureReason::NotFound,
                "no account with this id",
            )
            .await?;
            return Ok(Outcome::Failed);
        };
        let account = &stored.account;
        if account.applied_bulk_jobs.contains(&job_key) {
            return Ok(Outcome::Succeeded);
        }
        if account.deleted_at.is_some() {
            fail(
                app,
                job.id,
                id,
                FailureReason::Deleted,
                "the account is deleted",
            )
            .await?;
            return Ok(Outcome::Failed);
        }
        let now = Timestamp::now();
        let mut next = account.clone();
        if let Some(status) = changes.status {
            next.status = status;
        }
        match changes.assigned_agent {
            Some(AgentChange::Assign(agent)) => next.assigned_agent_id = Some(agent),
            Some(AgentChange::Unassign) => next.assigned_agent_id = None,
            None => {}
        }
        next.tags = changes.tags_after(&account.tags);
        if next.tags.len() > MAX_TAGS {
            fail(
                app,
                job.id,
                id,
                FailureReason::InvalidChange,
                &format!(
                    "the account would carry {} tags; at most {MAX_TAGS}",
                    next.tags.len()
                ),
            )
            .await?;
            return Ok(Outcome::Failed);
        }
        // `paid` follows from a zero balance (shared::accounts::rules): a job cannot set it
        // on an account that still owes.
        if let Err(refusal) = shared::accounts::rules::check_paid(&next) {
            fail(
                app,
                job.id,
                id,
                FailureReason::InvalidChange,
                &refusal.detail,
            )
            .await?;
            return Ok(Outcome::Failed);
        }
        next.version = account.version + 1;
        next.updated_at = now;
        // The jobs applied to this account: this one, and the recent others.
        let horizon = now
            .unix_seconds()
            .saturating_sub((MARKER_DAYS * 86_400) as i64) as u64
            * 1000;
        next.applied_bulk_jobs = account
            .applied_bulk_jobs
            .iter()
            .filter(|j| {
                j.parse::<Id>()
                    .map(|j| j.timestamp_ms() >= horizon)
                    .unwrap_or(false)
            })
            .cloned()
            .collect();
        next.applied_bulk_jobs.insert(job_key.clone());
        // The audit entries PATCH writes for the same change (shared::accounts::rules): a
        // status_change, and a field_change when the job reassigns the account.
        let activities = shared::accounts::rules::audit(account, &next, job.created_by, now);
        let written = app.chunks.write(stored, &next, &activities).await?;
        if written {
            return Ok(Outcome::Succeeded);
        }
        // Changed (or deleted) since read: read again and decide again.
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        read = app.chunks.account(id).await?;
    }
    Err(DataError::unavailable(
        "the account keeps changing; the chunk will be retried",
    ))
}
