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

use std::collections::{HashMap, HashSet};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use futures::stream::{self, StreamExt};
use shared::accounts::keys::account_pk;
use shared::accounts::Account;
use shared::bulk::{
    chunk_sk, chunks_of, fail_sk, page_sk, plan_attribute, AgentChange, BulkMessage, Counts,
    Failure, FailureReason, FilterQuery, JobRecord, JobState, JobStore, MARKER_ATTRIBUTE,
    MARKER_DAYS, MAX_TAGS, PAGE_SIZE,
};
use shared::config::{Config, TableName};
use shared::domain::{Id, Timestamp};
use shared::dynamo::attributes::{n, s};
use shared::dynamo::retry::{backoff, cancellation_codes};
use shared::error::condition_held;
use shared::ApiError;

/// Accounts of one chunk written concurrently.
const ACCOUNT_CONCURRENCY: usize = 16;
/// Messages of one batch processed concurrently.
const MESSAGE_CONCURRENCY: usize = 4;
/// Re-reads of an account that changed between read and write.
const VERSION_RETRIES: u32 = 5;

/// Configuration and clients, built once per cold start.
pub struct App {
    pub store: JobStore,
    pub accounts: TableName,
    pub activities: TableName,
    /// The dead-letter queue's name: messages from it are accounted, not applied.
    pub dlq_name: String,
}

pub type InitError = Box<dyn std::error::Error + Send + Sync>;

fn queue_name(url: &str) -> String {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
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
            accounts: config.tables.accounts.clone(),
            activities: config.tables.activities.clone(),
            dlq_name: queue_name(&config.queues.bulk_dlq),
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let config = Config::from_env()?;
        let clients = shared::clients::Clients::from_env().await;
        clients.prime(&config.tables.jobs).await;
        Ok(Self::new(&config, &clients))
    }

    fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.store.dynamodb
    }
}

/// Handles one SQS batch; the messages that should be retried are returned.
pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let failures: Vec<BatchItemFailure> = stream::iter(event.records)
        .map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            match handle_record(app, &record).await {
                Ok(()) => None,
                Err(err) => {
                    tracing::warn!(message_id = %id, error = %err, "bulk message failed; SQS will retry it");
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
        .is_some_and(|arn| arn.rsplit(':').next() == Some(app.dlq_name.as_str()))
}

async fn handle_record(app: &App, record: &SqsMessage) -> Result<(), ApiError> {
    let body = record.body.as_deref().unwrap_or_default();
    let message: BulkMessage = match serde_json::from_str(body) {
        Ok(message) => message,
        Err(err) => {
            // Retrying cannot help; nothing in it can be accounted.
            tracing::error!(error = %err, message_id = ?record.message_id, "dropping a bulk message that does not parse");
            return Ok(());
        }
    };
    let dead = from_dead_letter_queue(app, record);
    if dead {
        tracing::warn!(job_id = %message.job_id(), "accounting for a dead-lettered bulk message");
    }
    process(app, &message, dead).await
}

/// Processes one message (`dead`: it was dead-lettered; account for it, change nothing).
pub async fn process(app: &App, message: &BulkMessage, dead: bool) -> Result<(), ApiError> {
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

type Cursor = HashMap<String, String>;

/// A frozen page: its ids and the cursor of the next page (`None`: the last page).
struct Page {
    ids: Vec<Id>,
    next: Option<Cursor>,
}

fn page_from_item(item: &HashMap<String, AttributeValue>) -> Result<Page, ApiError> {
    let ids = match item.get("ids") {
        Some(AttributeValue::L(list)) => list
            .iter()
            .filter_map(|v| v.as_s().ok())
            .map(|v| v.parse::<Id>().map_err(ApiError::internal))
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    let next = match item.get("next") {
        Some(AttributeValue::M(map)) => Some(
            map.iter()
                .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), v.clone())))
                .collect(),
        ),
        _ => None,
    };
    Ok(Page { ids, next })
}

async fn get_page(
    app: &App,
    job: Id,
    partition: u32,
    seq: u32,
) -> Result<Option<HashMap<String, AttributeValue>>, ApiError> {
    Ok(app
        .dynamodb()
        .get_item()
        .table_name(app.store.table.as_str())
        .key("pk", s(job.to_string()))
        .key("sk", s(page_sk(partition, seq)))
        .consistent_read(true)
        .send()
        .await?
        .item)
}

/// Queries one page of `partition` from `cursor` and freezes it (first writer wins).
async fn freeze_page(
    app: &App,
    job: &JobRecord,
    partition: u32,
    seq: u32,
    cursor: Option<Cursor>,
) -> Result<Page, ApiError> {
    let spec = job.spec()?;
    let filter = spec.filter.unwrap_or_default();
    let query = FilterQuery::new(&filter, job.created_at.as_offset_date_time().date());
    let pk_value = query
        .pk_values
        .get(partition as usize)
        .ok_or_else(|| ApiError::internal("partition out of range"))?;
    let mut request = app
        .dynamodb()
        .query()
        .table_name(app.accounts.as_str())
        .index_name(&query.index)
        .projection_expression("id")
        .limit(PAGE_SIZE)
        .expression_attribute_names("#pk", query.pk_attribute)
        .expression_attribute_values(":pk", s(pk_value.clone()));
    let mut key = "#pk = :pk".to_owned();
    if let Some((attribute, lo, hi)) = &query.sort_range {
        key.push_str(" AND #sk BETWEEN :lo AND :hi");
        request = request
            .expression_attribute_names("#sk", *attribute)
            .expression_attribute_values(":lo", s(lo.clone()))
            .expression_attribute_values(":hi", s(hi.clone()));
    }
    request = request.key_condition_expression(key);
    if let Some(filter) = &query.filter_expression {
        request = request.filter_expression(filter);
        for (k, v) in &query.values {
            request = request.expression_attribute_values(k, v.clone());
        }
        for (k, v) in &query.names {
            request = request.expression_attribute_names(k, v);
        }
    }
    if let Some(cursor) = cursor {
        request = request
            .set_exclusive_start_key(Some(cursor.into_iter().map(|(k, v)| (k, s(v))).collect()));
    }
    let output = request.send().await?;
    let ids: Vec<Id> = output
        .items()
        .iter()
        .filter_map(|item| item.get("id").and_then(|v| v.as_s().ok()))
        .filter_map(|id| id.parse().ok())
        .collect();
    let next: Option<Cursor> = output.last_evaluated_key().map(|key| {
        key.iter()
            .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), v.clone())))
            .collect()
    });
    let mut item: HashMap<String, AttributeValue> = [
        ("pk".to_owned(), s(job.id.to_string())),
        ("sk".to_owned(), s(page_sk(partition, seq))),
        (
            "ids".to_owned(),
            AttributeValue::L(ids.iter().map(|id| s(id.to_string())).collect()),
        ),
        (
            "expires_at".to_owned(),
            n(JobStore::expires_at(Timestamp::now())),
        ),
    ]
    .into_iter()
    .collect();
    if let Some(next) = &next {
        item.insert(
            "next".to_owned(),
            AttributeValue::M(
                next.iter()
                    .map(|(k, v)| (k.clone(), s(v.clone())))
                    .collect(),
            ),
        );
    }
    let put = app
        .dynamodb()
        .put_item()
        .table_name(app.store.table.as_str())
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    if condition_held(put)? {
        return Ok(Page { ids, next });
    }
    // Another delivery froze this page first: use its page.
    let item = get_page(app, job.id, partition, seq)
        .await?
        .ok_or_else(|| ApiError::internal("frozen page vanished"))?;
    page_from_item(&item)
}

async fn plan_filter(app: &App, job_id: Id, partition: u32, seq: u32) -> Result<(), ApiError> {
    let Some(job) = app.store.get(job_id).await? else {
        return Ok(());
    };
    if job.state.is_final() {
        return Ok(());
    }
    app.store.mark_running(job_id).await?;
    let page = match get_page(app, job_id, partition, seq).await? {
        Some(item) => page_from_item(&item)?,
        None => {
            let cursor = if seq == 0 {
                None
            } else {
                let previous = get_page(app, job_id, partition, seq - 1)
                    .await?
                    .ok_or_else(|| ApiError::internal("the previous page is missing"))?;
                page_from_item(&previous)?.next
            };
            freeze_page(app, &job, partition, seq, cursor).await?
        }
    };
    app.store
        .send(&chunks_of(
            job_id,
            &format!("f{partition}.{seq}"),
            &page.ids,
        ))
        .await?;
    // Count the page once: conditional on this partition's sequence number.
    let last = page.next.is_none();
    let attribute = plan_attribute(partition);
    let mut update = app
        .dynamodb()
        .update_item()
        .table_name(app.store.table.as_str())
        .key("pk", s(job_id.to_string()))
        .key("sk", s("JOB"))
        .condition_expression("#plan = :seq")
        .expression_attribute_names("#plan", &attribute)
        .expression_attribute_values(":seq", n(seq))
        .expression_attribute_values(":next", n(seq + 1))
        .expression_attribute_names("#total", "total")
        .expression_attribute_values(":count", n(page.ids.len()));
    update = if last {
        update
            .update_expression("SET #plan = :next ADD #total :count, plans_pending :minus")
            .expression_attribute_values(":minus", n(-1))
    } else {
        update.update_expression("SET #plan = :next ADD #total :count")
    };
    let advanced = condition_held(update.send().await)?;
    if !advanced {
        // Counted by an earlier delivery. If the partition is further along than the
        // next page, the next message was processed already: stop this chain.
        let current = app
            .dynamodb()
            .get_item()
            .table_name(app.store.table.as_str())
            .key("pk", s(job_id.to_string()))
            .key("sk", s("JOB"))
            .projection_expression("#plan")
            .expression_attribute_names("#plan", &attribute)
            .consistent_read(true)
            .send()
            .await?
            .item
            .and_then(|item| item.get(&attribute).cloned())
            .and_then(|v| v.as_n().ok().and_then(|n| n.parse::<u32>().ok()))
            .unwrap_or(0);
        if current > seq + 1 {
            return Ok(());
        }
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

/// An account item as read: the account (if it parses) and the jobs applied to it.
struct Read {
    account: Option<Account>,
    applied: HashSet<String>,
}

fn read_item(item: Option<HashMap<String, AttributeValue>>) -> Result<Option<Read>, ApiError> {
    let Some(item) = item else {
        return Ok(None);
    };
    let applied = match item.get(MARKER_ATTRIBUTE) {
        Some(AttributeValue::Ss(set)) => set.iter().cloned().collect(),
        _ => HashSet::new(),
    };
    // Reference-uniqueness items share the table; an account item has an `id`.
    let account = if item.contains_key("id") {
        Some(Account::from_item(item)?)
    } else {
        None
    };
    Ok(Some(Read { account, applied }))
}

/// Reads every key of a chunk in `BatchGetItem`s (strongly consistent), retrying
/// unprocessed keys.
async fn batch_get(
    app: &App,
    requests: HashMap<String, Vec<HashMap<String, AttributeValue>>>,
) -> Result<HashMap<String, Vec<HashMap<String, AttributeValue>>>, ApiError> {
    let mut out: HashMap<String, Vec<HashMap<String, AttributeValue>>> = HashMap::new();
    let mut pending: HashMap<String, KeysAndAttributes> = HashMap::new();
    for (table, keys) in requests {
        if keys.is_empty() {
            continue;
        }
        pending.insert(
            table,
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(ApiError::internal)?,
        );
    }
    let mut attempt = 0;
    while !pending.is_empty() {
        let output = app
            .dynamodb()
            .batch_get_item()
            .set_request_items(Some(pending))
            .send()
            .await?;
        for (table, items) in output.responses.unwrap_or_default() {
            out.entry(table).or_default().extend(items);
        }
        pending = output.unprocessed_keys.unwrap_or_default();
        if !pending.is_empty() {
            if attempt > 8 {
                return Err(ApiError::unavailable("reads are throttled; retry"));
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }
    Ok(out)
}

fn key_of(pk: String, sk: Option<String>) -> HashMap<String, AttributeValue> {
    let mut key: HashMap<String, AttributeValue> = [("pk".to_owned(), s(pk))].into();
    if let Some(sk) = sk {
        key.insert("sk".to_owned(), s(sk));
    }
    key
}

fn attr_s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Applies (or accounts for) one chunk and counts it once.
pub async fn process_chunk(
    app: &App,
    job_id: Id,
    chunk: &str,
    ids: &[Id],
    dead: bool,
) -> Result<(), ApiError> {
    let jobs = app.store.table.as_str().to_owned();
    let accounts = app.accounts.as_str().to_owned();
    let mut job_keys = vec![
        key_of(job_id.to_string(), Some("JOB".into())),
        key_of(job_id.to_string(), Some(chunk_sk(chunk))),
    ];
    job_keys.extend(
        ids.iter()
            .map(|id| key_of(job_id.to_string(), Some(fail_sk(*id)))),
    );
    let account_keys: Vec<_> = ids.iter().map(|id| key_of(account_pk(*id), None)).collect();
    let mut items = batch_get(
        app,
        [(jobs.clone(), job_keys), (accounts.clone(), account_keys)].into(),
    )
    .await?;
    let job_items = items.remove(&jobs).unwrap_or_default();
    let account_items = items.remove(&accounts).unwrap_or_default();

    let mut job = None;
    let mut counted = false;
    let mut failed_before: HashSet<String> = HashSet::new();
    for item in job_items {
        match attr_s(&item, "sk") {
            Some("JOB") => job = Some(JobRecord::from_item(item)?),
            Some(sk) if sk.starts_with("CHUNK#") => counted = true,
            Some(sk) => {
                if let Some(account) = sk.strip_prefix("FAIL#") {
                    failed_before.insert(account.to_owned());
                }
            }
            None => {}
        }
    }
    let Some(job) = job else {
        tracing::warn!(job_id = %job_id, "no such job (expired?); dropping its chunk");
        return Ok(());
    };
    if counted {
        tracing::info!(job_id = %job_id, chunk, "chunk already counted (duplicate delivery)");
        return Ok(());
    }
    let mut by_id: HashMap<String, HashMap<String, AttributeValue>> = HashMap::new();
    for item in account_items {
        if let Some(id) = attr_s(&item, "id") {
            by_id.insert(id.to_owned(), item);
        }
    }
    let spec = job.spec()?;
    let cancelled = job.state == JobState::Cancelled;
    let job_key = job_id.to_string();
    let outcomes: Vec<Result<Outcome, ApiError>> = stream::iter(ids.iter().copied())
        .map(|id| {
            let read = by_id.remove(&id.to_string());
            let failed_before = failed_before.contains(&id.to_string());
            let job = &job;
            let spec = &spec;
            let job_key = &job_key;
            async move {
                let read = read_item(read)?;
                if read.as_ref().is_some_and(|r| r.applied.contains(job_key)) {
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
        .collect()
        .await;
    let mut counts = Counts::default();
    for outcome in outcomes {
        match outcome? {
            Outcome::Succeeded => counts.succeeded += 1,
            Outcome::Failed => counts.failed += 1,
            Outcome::Cancelled => counts.cancelled += 1,
        }
    }
    if app.store.commit_chunk(job_id, chunk, counts).await? {
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
) -> Result<(), ApiError> {
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

async fn reread(app: &App, id: Id) -> Result<Option<Read>, ApiError> {
    let item = app
        .dynamodb()
        .get_item()
        .table_name(app.accounts.as_str())
        .key("pk", s(account_pk(id)))
        .consistent_read(true)
        .send()
        .await?
        .item;
    read_item(item)
}

/// Applies the job's changes to one account, exactly once.
async fn apply(
    app: &App,
    job: &JobRecord,
    changes: &shared::bulk::Changes,
    id: Id,
    mut read: Option<Read>,
) -> Result<Outcome, ApiError> {
    let job_key = job.id.to_string();
    for attempt in 0..VERSION_RETRIES {
        let Some(current) = read.as_ref() else {
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
        if current.applied.contains(&job_key) {
            return Ok(Outcome::Succeeded);
        }
        let Some(account) = current.account.as_ref() else {
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
        let mut item = next.to_item()?;
        // The jobs applied to this account: this one, and the recent others.
        let horizon = now
            .unix_seconds()
            .saturating_sub((MARKER_DAYS * 86_400) as i64) as u64
            * 1000;
        let mut markers: Vec<String> = current
            .applied
            .iter()
            .filter(|j| {
                j.parse::<Id>()
                    .map(|j| j.timestamp_ms() >= horizon)
                    .unwrap_or(false)
            })
            .cloned()
            .collect();
        markers.push(job_key.clone());
        item.insert(MARKER_ATTRIBUTE.to_owned(), AttributeValue::Ss(markers));
        // The audit entries PATCH writes for the same change (shared::accounts::rules): a
        // status_change, and a field_change when the job reassigns the account.
        let activities = shared::accounts::rules::audit(account, &next, job.created_by, now);
        let written = write(app, item, account.version, &activities).await?;
        if written {
            return Ok(Outcome::Succeeded);
        }
        // Changed (or deleted) since read: read again and decide again.
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        read = reread(app, id).await?;
    }
    Err(ApiError::unavailable(
        "the account keeps changing; the chunk will be retried",
    ))
}

/// Writes an account conditional on its version and on not being deleted; with a status
/// change (or a reassignment), its activities in the same transaction. `false`: the
/// condition failed.
async fn write(
    app: &App,
    item: HashMap<String, AttributeValue>,
    expected: u64,
    activities: &[shared::activities::Activity],
) -> Result<bool, ApiError> {
    const CONDITION: &str = "#v = :expected AND attribute_not_exists(deleted_at)";
    if activities.is_empty() {
        let result = app
            .dynamodb()
            .put_item()
            .table_name(app.accounts.as_str())
            .set_item(Some(item))
            .condition_expression(CONDITION)
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":expected", n(expected))
            .send()
            .await;
        return condition_held(result);
    }
    let account = Put::builder()
        .table_name(app.accounts.as_str())
        .set_item(Some(item))
        .condition_expression(CONDITION)
        .expression_attribute_names("#v", "version")
        .expression_attribute_values(":expected", n(expected))
        .build()
        .map_err(ApiError::internal)?;
    let mut transaction = app
        .dynamodb()
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(account).build());
    for activity in activities {
        let log = Put::builder()
            .table_name(app.activities.as_str())
            .set_item(Some(activity.to_item()?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(ApiError::internal)?;
        transaction = transaction.transact_items(TransactWriteItem::builder().put(log).build());
    }
    let result = transaction.send().await;
    match result {
        Ok(_) => Ok(true),
        Err(err) => match cancellation_codes(&err).as_deref() {
            Some([first, ..]) if first == "ConditionalCheckFailed" => Ok(false),
            Some(codes) if codes.iter().any(|c| c == "TransactionConflict") => Ok(false),
            _ => Err(err.into()),
        },
    }
}
