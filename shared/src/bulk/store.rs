//! The Jobs table: the one place a job's items are written or read (see [`super`] for the
//! items and how each is counted exactly once).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, Update};

use super::keys::{
    chunk_sk, creator_pk, fail_sk, item_key, page_sk, plan_attribute, FAIL_PREFIX,
    INDEX_BY_CREATED, INDEX_BY_CREATOR, JOB_SK, LIST_PK,
};
use super::messages::{BulkMessage, JobQueue};
use super::model::{job_visible_to, Counts, Failure, JobRecord, JobSpec, JobState};
use crate::audit::{Stamp, Stamped};
use crate::auth::Scope;
use crate::config::TableName;
use crate::domain::{Id, Timestamp};
use crate::dynamo::attributes::{key_item, n, number, s, string_key, StringKey};
use crate::dynamo::condition_held;
use crate::dynamo::retry::count_once;
use crate::dynamo::DataError;
use crate::dynamo::{read_page, Item};
use crate::error::ApiError;

/// How long a job and its markers are kept (TTL).
pub const JOB_TTL_DAYS: i64 = 90;

/// Jobs on DynamoDB and their messages on SQS.
#[derive(Debug, Clone)]
pub struct JobStore {
    dynamodb: aws_sdk_dynamodb::Client,
    table: TableName,
    queue: JobQueue,
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
            table,
            queue: JobQueue::new(sqs, queue_url),
        }
    }

    /// When an item of a job written `now` expires (TTL).
    pub fn expires_at(now: Timestamp) -> i64 {
        now.unix_seconds() + JOB_TTL_DAYS * 86_400
    }

    /// Sends messages to the bulk queue (see [`JobQueue::send`]).
    pub async fn send(&self, messages: &[BulkMessage]) -> Result<(), DataError> {
        self.queue.send(messages).await
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
    ) -> Result<JobRecord, DataError> {
        let spec_json = serde_json::to_string(spec).map_err(DataError::failed)?;
        // The API request creating the job acts for its caller (`shared::audit`).
        let creator_role = crate::audit::Actor::current().role;
        let source = if spec.filter.is_some() {
            "filter"
        } else {
            "ids"
        };
        let mut item: HashMap<String, AttributeValue> = [
            ("pk", s(id.to_string())),
            ("sk", s(JOB_SK)),
            ("id", s(id.to_string())),
            ("state", s(JobState::Queued.as_str())),
            ("total", n(total)),
            ("processed", n(0)),
            ("succeeded", n(0)),
            ("failed", n(0)),
            ("cancelled", n(0)),
            ("created_by", s(caller.to_string())),
            ("created_by_role", s(creator_role.clone())),
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
        crate::audit::stamp().put_into(&mut item);
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
            created_by_role: Some(creator_role),
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
    pub async fn get(&self, id: Id) -> Result<Option<JobRecord>, DataError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(id, JOB_SK)))
            .consistent_read(true)
            .send()
            .await?;
        output.item.map(JobRecord::from_item).transpose()
    }

    /// Marks a job running (once; later calls change nothing).
    pub async fn mark_running(&self, id: Id) -> Result<(), DataError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(id, JOB_SK)))
            .update_expression(format!("SET #state = :running, {}", Stamp::SET))
            .stamped(&crate::audit::stamp())
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
    pub async fn end(&self, id: Id, state: JobState) -> Result<bool, DataError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(id, JOB_SK)))
            .update_expression(format!(
                "SET #state = :state, finished_at = :now, {}",
                Stamp::SET
            ))
            .stamped(&crate::audit::stamp())
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
    pub async fn try_finish(&self, id: Id) -> Result<Option<JobState>, DataError> {
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
    /// `ADD` in one transaction ([`count_once`]). `false` when the chunk was already counted
    /// or the job is gone (expired).
    pub async fn commit_chunk(
        &self,
        job: Id,
        chunk: &str,
        counts: Counts,
    ) -> Result<bool, DataError> {
        let marker = Put::builder()
            .table_name(self.table.as_str())
            .item("pk", s(job.to_string()))
            .item("sk", s(chunk_sk(chunk)))
            .item("succeeded", n(counts.succeeded))
            .item("failed", n(counts.failed))
            .item("cancelled", n(counts.cancelled))
            .item("expires_at", n(Self::expires_at(Timestamp::now())))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(DataError::failed)?;
        let add = Update::builder()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(job, JOB_SK)))
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
            .map_err(DataError::failed)?;
        count_once(
            &self.dynamodb,
            marker,
            add,
            "the job is busy; the chunk will be retried",
        )
        .await
    }

    /// Records a failure (the first reason recorded for an account stays).
    pub async fn record_failure(&self, job: Id, failure: &Failure) -> Result<(), DataError> {
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

    /// A page of jobs, newest first: every job, or for [`Scope::Own`] the jobs its user
    /// created; with the key the next page starts after.
    pub async fn list(
        &self,
        scope: &Scope,
        limit: i32,
        start: Option<StringKey>,
    ) -> Result<(Vec<JobRecord>, Option<StringKey>), DataError> {
        let request = newest_first(
            &self.dynamodb,
            &self.table,
            scope,
            creator_pk,
            LIST_PK,
            limit,
        );
        read_page(request, start, JobRecord::from_item).await
    }

    /// A page of a job's failures, by account id; with the key the next page starts after.
    pub async fn failures(
        &self,
        job: Id,
        limit: i32,
        start: Option<StringKey>,
    ) -> Result<(Vec<Failure>, Option<StringKey>), DataError> {
        let request = self
            .dynamodb
            .query()
            .table_name(self.table.as_str())
            .key_condition_expression("pk = :pk AND begins_with(sk, :fail)")
            .expression_attribute_values(":pk", s(job.to_string()))
            .expression_attribute_values(":fail", s(FAIL_PREFIX))
            .limit(limit);
        read_page(request, start, |item| Ok(serde_dynamo::from_item(item)?)).await
    }

    /// Page `seq` of a filter partition, if it is frozen.
    pub async fn frozen_page(
        &self,
        job: Id,
        partition: u32,
        seq: u32,
    ) -> Result<Option<FrozenPage>, DataError> {
        self.dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(job, page_sk(partition, seq))))
            .consistent_read(true)
            .send()
            .await?
            .item
            .map(|item| FrozenPage::from_item(&item))
            .transpose()
    }

    /// Freezes page `seq` of a filter partition, unless another delivery froze it first;
    /// answers the page that is frozen (first writer wins).
    pub async fn freeze_page(
        &self,
        job: Id,
        partition: u32,
        seq: u32,
        page: FrozenPage,
    ) -> Result<FrozenPage, DataError> {
        let mut item = item_key(job, page_sk(partition, seq));
        item.insert(
            "ids".to_owned(),
            AttributeValue::L(page.ids.iter().map(|id| s(id.to_string())).collect()),
        );
        item.insert(
            "expires_at".to_owned(),
            n(Self::expires_at(Timestamp::now())),
        );
        if let Some(next) = &page.next {
            item.insert("next".to_owned(), AttributeValue::M(key_item(next.clone())));
        }
        let put = self
            .dynamodb
            .put_item()
            .table_name(self.table.as_str())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        if condition_held(put)? {
            return Ok(page);
        }
        // Another delivery froze this page first: use its page.
        self.frozen_page(job, partition, seq)
            .await?
            .ok_or_else(|| DataError::corrupt("frozen page vanished"))
    }

    /// Counts frozen page `seq` of a filter partition once: adds its `count` ids to `total`
    /// and moves the partition on to page `seq + 1` (the `last` page: one partition fewer
    /// pending), conditional on the partition being at `seq`. `false` when an earlier
    /// delivery counted it.
    pub async fn count_page(
        &self,
        job: Id,
        partition: u32,
        seq: u32,
        count: usize,
        last: bool,
    ) -> Result<bool, DataError> {
        let update = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(job, JOB_SK)))
            .condition_expression("#plan = :seq")
            .expression_attribute_names("#plan", plan_attribute(partition))
            .expression_attribute_values(":seq", n(seq))
            .expression_attribute_values(":next", n(seq + 1))
            .expression_attribute_names("#total", "total")
            .expression_attribute_values(":count", n(count));
        let update = if last {
            update
                .update_expression("SET #plan = :next ADD #total :count, plans_pending :minus")
                .expression_attribute_values(":minus", n(-1))
        } else {
            update.update_expression("SET #plan = :next ADD #total :count")
        };
        condition_held(update.send().await)
    }

    /// The sequence number of the next page of a filter partition to be counted (0 when
    /// the job is gone).
    pub async fn plan_position(&self, job: Id, partition: u32) -> Result<u32, DataError> {
        let attribute = plan_attribute(partition);
        Ok(self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(job, JOB_SK)))
            .projection_expression("#plan")
            .expression_attribute_names("#plan", &attribute)
            .consistent_read(true)
            .send()
            .await?
            .item
            .and_then(|item| number(&item, &attribute))
            .and_then(|position| u32::try_from(position).ok())
            .unwrap_or(0))
    }
}

/// One frozen page of a filter's partition: its ids and the key the next page starts after
/// (`None`: the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenPage {
    pub ids: Vec<Id>,
    pub next: Option<StringKey>,
}

impl FrozenPage {
    fn from_item(item: &Item) -> Result<Self, DataError> {
        let ids = match item.get("ids") {
            Some(AttributeValue::L(list)) => list
                .iter()
                .filter_map(|v| v.as_s().ok())
                .map(|v| v.parse::<Id>().map_err(DataError::corrupt))
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        let next = match item.get("next") {
            Some(AttributeValue::M(map)) => Some(string_key(map)),
            _ => None,
        };
        Ok(Self { ids, next })
    }
}

/// A Query of the Jobs table's list indexes, newest first: for [`Scope::Own`] the partition
/// `own(user)` of [`INDEX_BY_CREATOR`], else the partition `all` of [`INDEX_BY_CREATED`]. Bulk
/// jobs and imports keep their lists in partitions of their own of the same two indexes.
pub(crate) fn newest_first(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &TableName,
    scope: &Scope,
    own: fn(Id) -> String,
    all: &str,
    limit: i32,
) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
    let (index, attribute, value) = match scope {
        Scope::Own(user) => (INDEX_BY_CREATOR, "creator_pk", own(*user)),
        _ => (INDEX_BY_CREATED, "list_pk", all.to_owned()),
    };
    dynamodb
        .query()
        .table_name(table.as_str())
        .index_name(index)
        .key_condition_expression("#pk = :pk")
        .expression_attribute_names("#pk", attribute)
        .expression_attribute_values(":pk", s(value))
        .scan_index_forward(false)
        .limit(limit)
}
