//! Bulk account updates: the job resource, its items in the Jobs table, the SQS messages
//! and the store both bulk functions use (`bulk-api` writes jobs and plans, `bulk-worker`
//! applies chunks and counts them).
//!
//! # Items (Jobs table, `pk` = job id)
//!
//! | `sk` | what | written by |
//! | --- | --- | --- |
//! | `JOB` | the job: state, `total`, counters, spec (changes + filter), list keys | api; counters by the worker (atomic `ADD`) |
//! | `CHUNK#<chunk>` | a chunk was counted (condition `attribute_not_exists`) | worker, in the same transaction as the counters' `ADD` |
//! | `FAIL#<account>` | `{account_id, reason, message}` (first writer wins) | worker |
//! | `PAGE#<partition>#<seq>` | one page of a filter's Query, frozen: ids + next cursor | planner |
//!
//! # Exactly once
//!
//! - Per (job, account): the account item carries the set `bulk_jobs` of the jobs applied
//!   to it; the write is conditional on the version read (and on not being deleted), and a
//!   job already in the set is never applied again. So a change is one conditional write
//!   (a transaction only when a status change logs its activity) and never applies twice,
//!   whatever SQS redelivers. Entries older than [`MARKER_DAYS`] are pruned on each write.
//! - Per chunk: chunks have deterministic ids and contents (id lists are sliced by
//!   position; a filter's pages are frozen in `PAGE#` items before they are enqueued), and
//!   a chunk is counted by one transaction `Put CHUNK#<chunk>` (condition not exists) +
//!   `ADD processed, succeeded, failed, cancelled` on the job. A redelivered or duplicated
//!   chunk re-derives each account's outcome from the markers (already applied →
//!   succeeded, `FAIL#` present → failed) and its commit is refused: counted once.
//! - `finished_at` and the final state are set by one conditional update when
//!   `processed >= total` and every filter partition is planned.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::accounts::{AccountStatus, DpdBucket};
use crate::auth::Scope;
use crate::config::TableName;
use crate::domain::{Id, MinorUnits, Timestamp};
use crate::dynamo::attributes::{n, s};
use crate::dynamo::retry::{backoff, cancellation_codes};
use crate::error::{condition_held, ApiError};

/// Accounts per chunk message: a chunk's keys (accounts, failure markers, the job and the
/// chunk marker) fit one `BatchGetItem` (100 keys).
pub const CHUNK_SIZE: usize = 40;
/// Ids per planner message (about 15 KB; ten fit one `SendMessageBatch`).
pub const PLAN_IDS: usize = 500;
/// The most ids one job takes.
pub const MAX_IDS: usize = 100_000;
/// Ids per page of a filter's Query.
pub const PAGE_SIZE: i32 = 1000;
/// Tags an account may carry (as on `PATCH /accounts/{id}`).
pub const MAX_TAGS: usize = 20;
/// How long a job and its markers are kept (TTL).
pub const JOB_TTL_DAYS: i64 = 90;
/// How long a job's marker stays on an account (longer than any redelivery: queue
/// retention 4 days, DLQ 14 days).
pub const MARKER_DAYS: u64 = 30;
/// The attribute of the account item holding the jobs applied to it.
pub const MARKER_ATTRIBUTE: &str = "bulk_jobs";
/// The partition of the all-jobs list index.
pub const LIST_PK: &str = "JOBS";
pub const INDEX_BY_CREATED: &str = "jobs-by-created";
pub const INDEX_BY_CREATOR: &str = "jobs-by-creator";

pub fn creator_pk(user: Id) -> String {
    format!("USER#{user}")
}

pub fn chunk_sk(chunk: &str) -> String {
    format!("CHUNK#{chunk}")
}

pub fn fail_sk(account: Id) -> String {
    format!("FAIL#{account}")
}

pub fn page_sk(partition: u32, seq: u32) -> String {
    format!("PAGE#{partition}#{seq}")
}

pub fn plan_attribute(partition: u32) -> String {
    format!("plan_{partition}")
}

// ------------------------------------------------------------------ resource

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Completed,
    CompletedWithErrors,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::CompletedWithErrors => "completed_with_errors",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_final(&self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The agent a job assigns: an id, or `null` to unassign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentChange {
    Assign(Id),
    Unassign,
}

fn agent_change<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AgentChange>, D::Error> {
    Ok(Some(match Option::<Id>::deserialize(d)? {
        Some(id) => AgentChange::Assign(id),
        None => AgentChange::Unassign,
    }))
}

/// What a job changes on every account (at least one field).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangesBody {
    /// `paid` is refused per account (`invalid_change`) while its balance is above 0.
    pub status: Option<AccountStatus>,
    /// An enabled agent's user id (`shared::accounts::check_assignable`); `null` unassigns.
    #[serde(default, deserialize_with = "agent_change")]
    #[schema(value_type = Option<String>)]
    pub assigned_agent_id: Option<AgentChange>,
    /// At most 20.
    #[schema(max_items = 20)]
    pub add_tags: Option<Vec<String>>,
    /// At most 20.
    #[schema(max_items = 20)]
    pub remove_tags: Option<Vec<String>>,
}

/// Validated changes, as stored with the job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AccountStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_agent: Option<AgentChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_tags: Vec<String>,
}

impl Changes {
    /// The changes as the API shows them (`assigned_agent_id` null = unassign).
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        if let Some(status) = self.status {
            out.insert("status".into(), serde_json::json!(status));
        }
        match self.assigned_agent {
            Some(AgentChange::Assign(id)) => {
                out.insert("assigned_agent_id".into(), serde_json::json!(id));
            }
            Some(AgentChange::Unassign) => {
                out.insert("assigned_agent_id".into(), serde_json::Value::Null);
            }
            None => {}
        }
        if !self.add_tags.is_empty() {
            out.insert("add_tags".into(), serde_json::json!(self.add_tags));
        }
        if !self.remove_tags.is_empty() {
            out.insert("remove_tags".into(), serde_json::json!(self.remove_tags));
        }
        serde_json::Value::Object(out)
    }

    /// The tags of an account after these changes (lower-cased, sorted, unique).
    pub fn tags_after(&self, tags: &[String]) -> Vec<String> {
        let mut out: std::collections::BTreeSet<String> = tags.iter().cloned().collect();
        out.extend(self.add_tags.iter().cloned());
        for tag in &self.remove_tags {
            out.remove(tag);
        }
        out.into_iter().collect()
    }
}

/// Which accounts a filter-based job changes (all optional; all given must match).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AccountStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpd_bucket: Option<DpdBucket>,
    /// Minor units, 0..=10^12 (`shared::validation::MAX_AMOUNT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::domain::AmountOrZero>)]
    pub min_balance: Option<MinorUnits>,
    /// Minor units, 0..=10^12.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::domain::AmountOrZero>)]
    pub max_balance: Option<MinorUnits>,
    /// Accounts carrying every one of these tags (at most 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 20)]
    pub tags: Option<Vec<String>>,
}

/// What a job does: stored with the job as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub changes: Changes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

/// A bulk job, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: Id,
    pub state: JobState,
    /// Accounts in the job (for a filter, grows while the filter is being paged).
    pub total: u64,
    /// succeeded + failed + cancelled.
    pub processed: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Accounts not changed because the job was cancelled first.
    pub cancelled: u64,
    pub created_by: Id,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// `ids` or `filter`.
    pub source: String,
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

/// A job as stored (the resource plus what the worker needs).
#[derive(Debug, Clone, Deserialize)]
pub struct JobRecord {
    pub id: Id,
    pub state: JobState,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub processed: u64,
    #[serde(default)]
    pub succeeded: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub cancelled: u64,
    pub created_by: Id,
    pub created_at: Timestamp,
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    pub source: String,
    pub spec: String,
    #[serde(default)]
    pub plans_pending: u32,
}

impl JobRecord {
    pub fn from_item(item: HashMap<String, AttributeValue>) -> Result<Self, ApiError> {
        Ok(serde_dynamo::from_item(item)?)
    }

    pub fn spec(&self) -> Result<JobSpec, ApiError> {
        serde_json::from_str(&self.spec).map_err(ApiError::internal)
    }

    pub fn to_job(&self) -> Result<Job, ApiError> {
        let spec = self.spec()?;
        Ok(Job {
            id: self.id,
            state: self.state,
            total: self.total,
            processed: self.processed,
            succeeded: self.succeeded,
            failed: self.failed,
            cancelled: self.cancelled,
            created_by: self.created_by,
            created_at: self.created_at,
            finished_at: self.finished_at,
            source: self.source.clone(),
            changes: spec.changes.to_json(),
            filter: spec.filter,
        })
    }

    /// The state a job ends in once every account is processed.
    pub fn final_state(&self) -> JobState {
        if self.failed == 0 {
            JobState::Completed
        } else if self.succeeded == 0 && self.cancelled == 0 {
            JobState::Failed
        } else {
            JobState::CompletedWithErrors
        }
    }
}

/// Why an account was not changed (a stable code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    NotFound,
    Deleted,
    InvalidChange,
    DeadLettered,
}

impl FailureReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureReason::NotFound => "not_found",
            FailureReason::Deleted => "deleted",
            FailureReason::InvalidChange => "invalid_change",
            FailureReason::DeadLettered => "dead_lettered",
        }
    }
}

/// One account a job could not change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Failure {
    pub account_id: Id,
    pub reason: FailureReason,
    pub message: String,
}

// ------------------------------------------------------------------ messages

/// A message on the bulk queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BulkMessage {
    /// Up to [`PLAN_IDS`] ids of an id-list job: the worker slices them into chunks.
    PlanIds { job_id: Id, part: u32, ids: Vec<Id> },
    /// Page `seq` of one partition of a filter job's Query.
    PlanFilter {
        job_id: Id,
        partition: u32,
        seq: u32,
    },
    /// Accounts to change, counted together.
    Chunk {
        job_id: Id,
        chunk: String,
        ids: Vec<Id>,
    },
}

impl BulkMessage {
    pub fn job_id(&self) -> Id {
        match self {
            BulkMessage::PlanIds { job_id, .. }
            | BulkMessage::PlanFilter { job_id, .. }
            | BulkMessage::Chunk { job_id, .. } => *job_id,
        }
    }
}

/// The chunk messages of a planner message's ids: deterministic ids `<prefix>.<index>`.
pub fn chunks_of(job_id: Id, prefix: &str, ids: &[Id]) -> Vec<BulkMessage> {
    ids.chunks(CHUNK_SIZE)
        .enumerate()
        .map(|(i, ids)| BulkMessage::Chunk {
            job_id,
            chunk: format!("{prefix}.{i}"),
            ids: ids.to_vec(),
        })
        .collect()
}

/// The planner messages of an id list.
pub fn plan_ids(job_id: Id, ids: &[Id]) -> Vec<BulkMessage> {
    ids.chunks(PLAN_IDS)
        .enumerate()
        .map(|(part, ids)| BulkMessage::PlanIds {
            job_id,
            part: part as u32,
            ids: ids.to_vec(),
        })
        .collect()
}

// ------------------------------------------------------------------ filter queries

/// How a filter job pages its accounts: one Query per partition value on a sparse
/// Accounts index (never a Scan), sorted by a key the job's changes never move
/// (`created`, `balance` or `due`), so keyset paging neither skips nor repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterQuery {
    pub index: String,
    pub pk_attribute: &'static str,
    pub pk_values: Vec<String>,
    /// `sk BETWEEN lo AND hi`.
    pub sort_range: Option<(&'static str, String, String)>,
    /// Filter expression, its values (`:f…`) and names (`#f…`).
    pub filter_expression: Option<String>,
    pub values: Vec<(String, AttributeValue)>,
    pub names: Vec<(String, String)>,
}

impl FilterQuery {
    pub fn new(filter: &Filter, today: time::Date) -> Self {
        use crate::accounts::keys::{balance_key, list_index, Partition, SortKey};
        use crate::accounts::model::format_date;
        let partition = match (filter.agent_id, filter.status) {
            (Some(agent), _) => Partition::Agent(agent),
            (None, Some(status)) => Partition::Status(status),
            (None, None) => Partition::All,
        };
        let due = filter.dpd_bucket.map(|bucket| {
            let (earliest, latest) = bucket.due_range(today);
            (
                earliest
                    .map(format_date)
                    .unwrap_or_else(|| "0000-00-00".into()),
                latest
                    .map(format_date)
                    .unwrap_or_else(|| "9999-99-99".into()),
            )
        });
        let balance = (filter.min_balance.is_some() || filter.max_balance.is_some()).then(|| {
            (
                filter.min_balance.map(|b| b.0).unwrap_or(0),
                filter.max_balance.map(|b| b.0).unwrap_or(i64::MAX),
            )
        });
        let (sort, sort_range) = match (&due, balance) {
            (Some((lo, hi)), _) => (
                SortKey::Due,
                Some(("due_sk", lo.clone(), format!("{hi}#~"))),
            ),
            (None, Some((lo, hi))) => (
                SortKey::Balance,
                Some((
                    "balance_sk",
                    balance_key(lo),
                    format!("{}#~", balance_key(hi)),
                )),
            ),
            (None, None) => (SortKey::Created, None),
        };
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        let mut names = Vec::new();
        if let (Partition::Agent(_), Some(status)) = (&partition, filter.status) {
            conditions.push("#fstatus = :fstatus".to_owned());
            names.push(("#fstatus".to_owned(), "status".to_owned()));
            values.push((":fstatus".to_owned(), s(status.as_str())));
        }
        if let (Some((lo, hi)), true) = (balance, sort != SortKey::Balance) {
            conditions.push("balance BETWEEN :fblo AND :fbhi".to_owned());
            values.push((":fblo".to_owned(), n(lo)));
            values.push((":fbhi".to_owned(), n(hi)));
        }
        if let (Some((lo, hi)), true) = (&due, sort != SortKey::Due) {
            conditions.push("due_date BETWEEN :fdlo AND :fdhi".to_owned());
            values.push((":fdlo".to_owned(), s(lo.clone())));
            values.push((":fdhi".to_owned(), s(hi.clone())));
        }
        for (i, tag) in filter.tags.iter().flatten().enumerate() {
            conditions.push(format!("contains(tags, :ftag{i})"));
            values.push((format!(":ftag{i}"), s(tag.clone())));
        }
        FilterQuery {
            index: list_index(&partition, sort),
            pk_attribute: partition.pk_attribute(),
            pk_values: partition.pk_values(),
            sort_range,
            filter_expression: (!conditions.is_empty()).then(|| conditions.join(" AND ")),
            values,
            names,
        }
    }

    /// How many partitions the planner pages (one chain of planner messages each).
    pub fn partitions(&self) -> u32 {
        self.pk_values.len() as u32
    }
}

// ------------------------------------------------------------------ store

/// The outcome counts of one chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl Counts {
    pub fn processed(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled
    }
}

/// Whether a caller with `scope` may see (over REST) or follow (over WebSocket) `job`: an
/// admin every job, a manager ([`Scope::Own`]) only the jobs it created. A job hidden from a
/// caller is answered like a missing one (`404` / `not_found`), so its existence leaks
/// neither way.
pub fn job_visible_to(scope: &Scope, job: &JobRecord) -> bool {
    !matches!(scope, Scope::Own(user) if *user != job.created_by)
}

/// Jobs on DynamoDB and their messages on SQS.
#[derive(Debug, Clone)]
pub struct JobStore {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub table: TableName,
    pub queue_url: String,
}

impl JobStore {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        table: TableName,
        queue_url: String,
    ) -> Self {
        Self {
            dynamodb,
            sqs,
            table,
            queue_url,
        }
    }

    pub fn expires_at(now: Timestamp) -> i64 {
        now.unix_seconds() + JOB_TTL_DAYS * 86_400
    }

    /// Writes a new job (`queued`). A filter job plans `partitions` partitions.
    pub async fn create(
        &self,
        id: Id,
        caller: Id,
        spec: &JobSpec,
        total: u64,
        partitions: u32,
        now: Timestamp,
    ) -> Result<JobRecord, ApiError> {
        let spec_json = serde_json::to_string(spec).map_err(ApiError::internal)?;
        let source = if spec.filter.is_some() {
            "filter"
        } else {
            "ids"
        };
        let mut item: HashMap<String, AttributeValue> = [
            ("pk", s(id.to_string())),
            ("sk", s("JOB")),
            ("id", s(id.to_string())),
            ("state", s(JobState::Queued.as_str())),
            ("total", n(total)),
            ("processed", n(0)),
            ("succeeded", n(0)),
            ("failed", n(0)),
            ("cancelled", n(0)),
            ("created_by", s(caller.to_string())),
            ("created_at", s(now.to_string())),
            ("source", s(source)),
            ("spec", s(spec_json.clone())),
            ("plans_pending", n(partitions)),
            ("creator_pk", s(creator_pk(caller))),
            ("list_pk", s(LIST_PK)),
            ("created_sk", s(id.to_string())),
            ("expires_at", n(Self::expires_at(now))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for p in 0..partitions {
            item.insert(plan_attribute(p), n(0));
        }
        // The id is a fresh ULID: a failed condition can only be this same write, applied
        // once and retried by the SDK after its response was lost (a 500 after the commit:
        // the `LostResponse` fault, docs/faults.md), so it counts as written.
        condition_held(
            self.dynamodb
                .put_item()
                .table_name(self.table.as_str())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await,
        )?;
        Ok(JobRecord {
            id,
            state: JobState::Queued,
            total,
            processed: 0,
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            created_by: caller,
            created_at: now,
            finished_at: None,
            source: source.to_owned(),
            spec: spec_json,
            plans_pending: partitions,
        })
    }

    /// The job `id` if `scope` (the caller's for [`crate::auth::Action::ManageBulkJobs`])
    /// covers it, else `404`, the same answer as for no job at all. The one rule of who may
    /// see a job, used by every `/bulk/jobs/{id}*` route and by the WebSocket `job:{id}`
    /// subscription: see [`job_visible_to`].
    pub async fn visible(&self, scope: &Scope, id: Id) -> Result<JobRecord, ApiError> {
        match self.get(id).await? {
            Some(job) if job_visible_to(scope, &job) => Ok(job),
            _ => Err(ApiError::not_found(format!("no bulk job {id}"))),
        }
    }

    /// One job (strongly consistent).
    pub async fn get(&self, id: Id) -> Result<Option<JobRecord>, ApiError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .key("pk", s(id.to_string()))
            .key("sk", s("JOB"))
            .consistent_read(true)
            .send()
            .await?;
        output.item.map(JobRecord::from_item).transpose()
    }

    /// Marks a job running (once; later calls change nothing).
    pub async fn mark_running(&self, id: Id) -> Result<(), ApiError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .key("pk", s(id.to_string()))
            .key("sk", s("JOB"))
            .update_expression("SET #state = :running")
            .condition_expression("#state = :queued")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .expression_attribute_values(":queued", s(JobState::Queued.as_str()))
            .send()
            .await;
        condition_held(result).map(drop)
    }

    /// Ends a job as `state` with `finished_at` now, unless it already ended. `true` if
    /// this call ended it.
    pub async fn end(&self, id: Id, state: JobState) -> Result<bool, ApiError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .key("pk", s(id.to_string()))
            .key("sk", s("JOB"))
            .update_expression("SET #state = :state, finished_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(finished_at) AND #state IN (:queued, :running)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":now", s(Timestamp::now().to_string()))
            .expression_attribute_values(":queued", s(JobState::Queued.as_str()))
            .expression_attribute_values(":running", s(JobState::Running.as_str()))
            .send()
            .await;
        condition_held(result)
    }

    /// Sets the final state once every account is processed (and every filter
    /// partition planned). Safe to call any number of times, from any worker.
    pub async fn try_finish(&self, id: Id) -> Result<Option<JobState>, ApiError> {
        let Some(job) = self.get(id).await? else {
            return Ok(None);
        };
        if job.state.is_final() || job.plans_pending > 0 || job.processed < job.total {
            return Ok(None);
        }
        let state = job.final_state();
        Ok(self.end(id, state).await?.then_some(state))
    }

    /// Counts a chunk once: `Put CHUNK#<chunk>` (condition not exists) and the counters'
    /// `ADD` in one transaction. `false` when the chunk was already counted.
    pub async fn commit_chunk(
        &self,
        job: Id,
        chunk: &str,
        counts: Counts,
    ) -> Result<bool, ApiError> {
        let now = Timestamp::now();
        for attempt in 0..8 {
            let marker = Put::builder()
                .table_name(self.table.as_str())
                .item("pk", s(job.to_string()))
                .item("sk", s(chunk_sk(chunk)))
                .item("succeeded", n(counts.succeeded))
                .item("failed", n(counts.failed))
                .item("cancelled", n(counts.cancelled))
                .item("expires_at", n(Self::expires_at(now)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(ApiError::internal)?;
            let add = Update::builder()
                .table_name(self.table.as_str())
                .key("pk", s(job.to_string()))
                .key("sk", s("JOB"))
                .update_expression("ADD #processed :p, #succeeded :s, #failed :f, #cancelled :c")
                .expression_attribute_names("#processed", "processed")
                .expression_attribute_names("#succeeded", "succeeded")
                .expression_attribute_names("#failed", "failed")
                .expression_attribute_names("#cancelled", "cancelled")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":p", n(counts.processed()))
                .expression_attribute_values(":s", n(counts.succeeded))
                .expression_attribute_values(":f", n(counts.failed))
                .expression_attribute_values(":c", n(counts.cancelled))
                .build()
                .map_err(ApiError::internal)?;
            let result = self
                .dynamodb
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(marker).build())
                .transact_items(TransactWriteItem::builder().update(add).build())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(true),
                Err(err) => {
                    let codes = cancellation_codes(&err);
                    match codes.as_deref() {
                        Some([first, ..]) if first == "ConditionalCheckFailed" => return Ok(false),
                        Some([_, second]) if second == "ConditionalCheckFailed" => {
                            // The job is gone (expired): nothing to count.
                            return Ok(false);
                        }
                        Some(codes)
                            if codes
                                .iter()
                                .any(|c| c == "TransactionConflict" || c == "ThrottlingError") =>
                        {
                            tokio::time::sleep(backoff(attempt)).await;
                        }
                        _ => return Err(err.into()),
                    }
                }
            }
        }
        Err(ApiError::unavailable(
            "the job is busy; the chunk will be retried",
        ))
    }

    /// Records a failure (the first reason recorded for an account stays).
    pub async fn record_failure(&self, job: Id, failure: &Failure) -> Result<(), ApiError> {
        let result = self
            .dynamodb
            .put_item()
            .table_name(self.table.as_str())
            .item("pk", s(job.to_string()))
            .item("sk", s(fail_sk(failure.account_id)))
            .item("account_id", s(failure.account_id.to_string()))
            .item("reason", s(failure.reason.as_str()))
            .item("message", s(failure.message.clone()))
            .item("expires_at", n(Self::expires_at(Timestamp::now())))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        condition_held(result).map(drop)
    }

    /// Sends messages with `SendMessageBatch` (ten per call, calls concurrently); entries
    /// that fail on their own are sent again, with backoff.
    pub async fn send(&self, messages: &[BulkMessage]) -> Result<(), ApiError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let bodies: Vec<String> = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()
            .map_err(ApiError::internal)?;
        let batches: Vec<Vec<String>> = bodies.chunks(10).map(<[String]>::to_vec).collect();
        let sends: Vec<_> = batches
            .into_iter()
            .map(|batch| self.send_batch(batch))
            .collect();
        stream::iter(sends)
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn send_batch(&self, bodies: Vec<String>) -> Result<(), ApiError> {
        let mut pending: Vec<(usize, String)> = bodies.into_iter().enumerate().collect();
        for attempt in 0..6 {
            let entries = pending
                .iter()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body.clone())
                        .build()
                        .map_err(ApiError::internal)
                })
                .collect::<Result<Vec<_>, _>>()?;
            match self
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    let failed: Vec<&str> = output.failed().iter().map(|f| f.id()).collect();
                    if failed.is_empty() {
                        return Ok(());
                    }
                    tracing::warn!(
                        failed = failed.len(),
                        attempt,
                        "SendMessageBatch entries failed; retrying them"
                    );
                    pending.retain(|(i, _)| failed.contains(&i.to_string().as_str()));
                }
                Err(err) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&err), attempt, "SendMessageBatch failed; retrying");
                }
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(ApiError::unavailable(
            "the bulk queue is not accepting messages; retry",
        ))
    }
}

/// Cleans a tag as `PATCH /accounts/{id}` does (trimmed, lower-cased, 1..=40 characters,
/// no control characters).
pub fn clean_tag(tag: &str) -> Result<String, String> {
    let tag = tag.trim().to_lowercase();
    if tag.is_empty() {
        Err("must not be empty".into())
    } else if tag.chars().count() > 40 {
        Err("must be at most 40 characters".into())
    } else if tag.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_deterministic_and_small() {
        let job = Id::generate();
        let ids: Vec<Id> = (0..1234).map(|_| Id::generate()).collect();
        let plans = plan_ids(job, &ids);
        assert_eq!(plans.len(), 3);
        let chunks = chunks_of(job, "0", &ids[..PLAN_IDS]);
        assert_eq!(chunks.len(), PLAN_IDS.div_ceil(CHUNK_SIZE));
        assert_eq!(chunks, chunks_of(job, "0", &ids[..PLAN_IDS]));
        let body = serde_json::to_string(&plans[0]).unwrap();
        assert!(body.len() * 10 < 256 * 1024, "{}", body.len());
        let back: BulkMessage = serde_json::from_str(&body).unwrap();
        assert_eq!(back, plans[0]);
    }

    #[test]
    fn tags_after_adds_and_removes() {
        let changes = Changes {
            add_tags: vec!["vip".into(), "b".into()],
            remove_tags: vec!["old".into()],
            ..Default::default()
        };
        assert_eq!(
            changes.tags_after(&["old".into(), "vip".into(), "a".into()]),
            vec!["a", "b", "vip"]
        );
    }

    #[test]
    fn agent_null_unassigns() {
        let body: ChangesBody = serde_json::from_str(r#"{"assigned_agent_id":null}"#).unwrap();
        assert_eq!(body.assigned_agent_id, Some(AgentChange::Unassign));
        let body: ChangesBody = serde_json::from_str(r#"{"status":"paid"}"#).unwrap();
        assert_eq!(body.assigned_agent_id, None);
    }
}
