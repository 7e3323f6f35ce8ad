//! The job resource: what a job changes (validated from the request), its state, its
//! stored record and the failures it reports.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::accounts::{AccountStatus, DpdBucket};
use crate::auth::Scope;
use crate::domain::{Id, MinorUnits, Timestamp};
use crate::dynamo::DataError;

/// The most ids one job takes.
pub const MAX_IDS: usize = 100_000;
/// Tags an account may carry (as on `PATCH /accounts/{id}`).
pub const MAX_TAGS: usize = 20;

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
    /// The creator's role when the job was created: the worker acts on the creator's
    /// behalf, and the audit trail names both (`shared::audit::Actor::on_behalf`).
    #[serde(default)]
    pub created_by_role: Option<String>,
}

impl JobRecord {
    /// Who the worker's changes of this job are made by: its creator, via the job.
    pub fn actor(&self) -> crate::audit::Actor {
        crate::audit::Actor::on_behalf(
            self.created_by,
            self.created_by_role.as_deref(),
            format!("bulk:{}", self.id),
        )
    }

    pub fn from_item(item: HashMap<String, AttributeValue>) -> Result<Self, DataError> {
        Ok(serde_dynamo::from_item(item)?)
    }

    pub fn spec(&self) -> Result<JobSpec, DataError> {
        serde_json::from_str(&self.spec).map_err(DataError::corrupt)
    }

    pub fn to_job(&self) -> Result<Job, DataError> {
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
