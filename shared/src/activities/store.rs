//! The Activities table: every write of an activity the activities API makes (a plain
//! activity, a call with its call log, a promise or dispute with the account's status
//! move), the timeline reads, and the account reads of the batch timeline.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ConditionCheck, KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use super::calls::CallLog;
use super::keys::{promise_keys, CALL_LOG_SK, TIMELINE_SK_END};
use super::model::{status_change, Activity, ActivityType, CallOutcome};
use crate::accounts::keys::{account_key, account_pk, index_key};
use crate::accounts::{not_found, Account, AccountRepo, AccountStatus};
use crate::audit::Stamped;
use crate::config::TableName;
use crate::domain::{Id, Timestamp};
use crate::dynamo::attributes::{n, s, text};
use crate::dynamo::retry::{backoff, failed_conditions, is_conflict, CONFLICT_RETRIES};
use crate::dynamo::Item;
use crate::dynamo::{condition_held, DataError};
use crate::error::ApiError;

/// `BatchGetItem` rounds of unprocessed keys [`ActivityStore::live_accounts`] asks again
/// before it answers `503`.
const BATCH_ROUNDS: u32 = 8;

/// The item of a new activity: its attributes, plus the `promises-by-date` keys when it
/// is a promise to pay.
fn new_item(activity: &Activity) -> Result<Item, ApiError> {
    let mut item = activity.to_item()?;
    if let Some((pk, sk)) = promise_keys(activity) {
        item.insert("promise_pk".into(), s(pk));
        item.insert("promise_sk".into(), s(sk));
    }
    Ok(item)
}

/// A transaction's `Put` of an activity that must be new (every write that changes an
/// account logs its activity this way, in the same transaction).
pub fn activity_put(table: &TableName, activity: &Activity) -> Result<TransactWriteItem, ApiError> {
    Ok(TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table.as_str())
                .set_item(Some(new_item(activity)?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(ApiError::internal)?,
        )
        .build())
}

/// A transaction's check that the account exists and is not deleted.
pub fn account_live_check(accounts: &TableName, id: Id) -> Result<TransactWriteItem, ApiError> {
    Ok(TransactWriteItem::builder()
        .condition_check(
            ConditionCheck::builder()
                .table_name(accounts.as_str())
                .key("pk", s(account_pk(id)))
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(deleted_at)")
                .build()
                .map_err(ApiError::internal)?,
        )
        .build())
}

/// The `409` of a write that lost every retry to other writers: retry after a second.
fn contended(message: &str) -> ApiError {
    let mut err = ApiError::conflict(message);
    err.retry_after = Some(1);
    err
}

/// Writes and reads activities (and the account changes logged with them).
#[derive(Debug, Clone)]
pub struct ActivityStore {
    dynamodb: Client,
    accounts: AccountRepo,
    accounts_table: TableName,
    activities: TableName,
}

impl ActivityStore {
    pub fn new(dynamodb: Client, accounts: TableName, activities: TableName) -> Self {
        Self {
            accounts: AccountRepo::new(dynamodb.clone(), accounts.clone(), activities.clone()),
            dynamodb,
            accounts_table: accounts,
            activities,
        }
    }

    /// Writes an activity that changes nothing else.
    pub async fn put(&self, activity: &Activity) -> Result<(), ApiError> {
        // A fresh ULID: a failed condition can only be this same write, retried by the
        // SDK after its response was lost (the `LostResponse` fault, docs/faults.md).
        condition_held(
            self.dynamodb
                .put_item()
                .table_name(self.activities.as_str())
                .set_item(Some(new_item(activity)?))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await,
        )?;
        Ok(())
    }

    /// The call log of an account as stored (`None` before its first call), strongly
    /// consistent.
    async fn call_log(&self, account: Id) -> Result<Option<CallLog>, ApiError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.activities.as_str())
            .key("pk", s(account.to_string()))
            .key("sk", s(CALL_LOG_SK))
            .consistent_read(true)
            .send()
            .await?;
        Ok(output.item.as_ref().map(CallLog::from_item))
    }

    /// Writes a call with its call-log update: the frequency rules ([`CallLog::admit`])
    /// are checked against the log read, and the new log is written in the call's
    /// transaction under a condition on the version read (and on the account being live).
    /// A lost race reads again and re-checks, so counting is exact under any concurrency.
    pub async fn log_call(
        &self,
        activity: &Activity,
        outcome: Option<CallOutcome>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let account = activity.account_id;
        let now_ms = now.as_offset_date_time().unix_timestamp_nanos() / 1_000_000;
        let now_ms = i64::try_from(now_ms).map_err(ApiError::internal)?;
        let mut attempts = 0_u32;
        loop {
            let stored = self.call_log(account).await?;
            let current = stored.clone().unwrap_or_default();
            let next = current.admit(now_ms, outcome)?;
            let put = Put::builder()
                .table_name(self.activities.as_str())
                .set_item(Some(next.to_item(account, now)));
            let put = if stored.is_some() {
                put.condition_expression("#v = :v")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":v", n(current.version))
            } else {
                put.condition_expression("attribute_not_exists(pk)")
            };
            let result = self
                .dynamodb
                .transact_write_items()
                .transact_items(
                    TransactWriteItem::builder()
                        .put(put.build().map_err(ApiError::internal)?)
                        .build(),
                )
                .transact_items(activity_put(&self.activities, activity)?)
                .transact_items(account_live_check(&self.accounts_table, account)?)
                .send()
                .await;
            let Err(err) = result else {
                return Ok(());
            };
            let failed = failed_conditions(&err).unwrap_or_default();
            if failed.get(2) == Some(&true) {
                return Err(not_found(account));
            }
            if !(failed.first() == Some(&true) || is_conflict(&err)) {
                return Err(err.into());
            }
            attempts += 1;
            if attempts > CONFLICT_RETRIES * 2 {
                return Err(contended(
                    "the account's call log is being updated by other requests; retry shortly",
                ));
            }
            tokio::time::sleep(backoff(attempts.min(4))).await;
        }
    }

    /// The conditional update that moves the `observed` account to `target` (version
    /// bump, index keys), under the observed status and, for a promise, a balance that
    /// covers it.
    fn status_move(
        &self,
        observed: &Account,
        activity: &Activity,
        target: AccountStatus,
        now: Timestamp,
    ) -> Result<Update, ApiError> {
        let mut next = observed.clone();
        next.status = target;
        next.updated_at = now;
        let key = |name: &str| index_key(&next, name).unwrap_or_default();
        Update::builder()
            .table_name(self.accounts_table.as_str())
            .key("pk", s(account_pk(observed.id)))
            .update_expression(format!(
                "SET #s = :to, status_pk = :spk, #v = #v + :one, updated_at = :now, updated_sk = :usk, {}",
                crate::audit::Stamp::SET
            ))
            .stamped(&crate::audit::stamp())
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#b", "balance")
            .expression_attribute_values(":to", s(target.as_str()))
            .expression_attribute_values(":from", s(observed.status.as_str()))
            .expression_attribute_values(":spk", s(key("status_pk")))
            .expression_attribute_values(":usk", s(key("updated_sk")))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(
                ":min",
                n(activity.promise_amount.map(|a| a.0).unwrap_or(i64::MIN)),
            )
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(deleted_at) AND #s = :from AND #b >= :min",
            )
            .build()
            .map_err(ApiError::internal)
    }

    /// Moves the account to `target` with `activity` (and a `status_change` activity when
    /// the status changes), in one transaction conditional on the observed status (and,
    /// for a promise, on the balance covering it). `allowed` checks the move against each
    /// observation: a stale observation is read again and checked again, a lost conflict
    /// waits and tries again, [`CONFLICT_RETRIES`] times in all before a `409`.
    pub async fn move_account(
        &self,
        observed: Account,
        activity: &Activity,
        target: AccountStatus,
        now: Timestamp,
        allowed: impl Fn(&Account) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut observed = observed;
        let mut attempts = 0_u32;
        loop {
            allowed(&observed)?;
            let mut transaction = self
                .dynamodb
                .transact_write_items()
                .transact_items(
                    TransactWriteItem::builder()
                        .update(self.status_move(&observed, activity, target, now)?)
                        .build(),
                )
                .transact_items(activity_put(&self.activities, activity)?);
            if observed.status != target {
                let moved =
                    status_change(observed.id, observed.status, target, activity.actor_id, now);
                transaction = transaction.transact_items(activity_put(&self.activities, &moved)?);
            }
            let Err(err) = transaction.send().await else {
                return Ok(());
            };
            let account_failed = failed_conditions(&err)
                .unwrap_or_default()
                .first()
                .is_some_and(|failed| *failed);
            if !(account_failed || is_conflict(&err)) {
                return Err(err.into());
            }
            attempts += 1;
            if attempts > CONFLICT_RETRIES {
                return Err(contended(
                    "the account is being updated by other requests; retry shortly",
                ));
            }
            if account_failed {
                observed = self
                    .accounts
                    .get(observed.id)
                    .await?
                    .filter(|a| a.deleted_at.is_none())
                    .ok_or_else(|| not_found(observed.id))?;
            } else {
                tokio::time::sleep(backoff(attempts)).await;
            }
        }
    }

    /// A page of an account's timeline, newest first, optionally one type, from after
    /// `after` (an activity id); with the id to continue after.
    pub async fn timeline(
        &self,
        account: Id,
        kind: Option<ActivityType>,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Activity>, Option<String>), DataError> {
        crate::paging::NewestFirst {
            dynamodb: &self.dynamodb,
            table: &self.activities,
            partition: account.to_string(),
            below: Some(TIMELINE_SK_END),
            only: kind.map(|kind| ("type", kind.as_str())),
        }
        .page(after, limit, Activity::from_item)
        .await
    }

    /// Which of `ids` (at most 100) are live accounts, each with its assigned agent: one
    /// strongly consistent `BatchGetItem` of the attributes that tell, unprocessed keys
    /// asked again after a backoff ([`BATCH_ROUNDS`] times, then `503`).
    pub async fn live_accounts(&self, ids: &[Id]) -> Result<HashMap<Id, Option<Id>>, ApiError> {
        let table = self.accounts_table.as_str();
        let keys: Vec<Item> = ids.iter().map(|id| account_key(*id)).collect();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .projection_expression("id, assigned_agent_id, deleted_at")
                .consistent_read(true)
                .build()
                .map_err(ApiError::internal)?,
        );
        let mut found = HashMap::new();
        let mut rounds = 0_u32;
        while let Some(request) = pending.take() {
            let output = self
                .dynamodb
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await?;
            for item in output
                .responses
                .and_then(|mut r| r.remove(table))
                .unwrap_or_default()
            {
                if item.contains_key("deleted_at") {
                    continue;
                }
                let id = |name: &str| text(&item, name).and_then(|v| v.parse::<Id>().ok());
                if let Some(account) = id("id") {
                    found.insert(account, id("assigned_agent_id"));
                }
            }
            pending = output
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys().is_empty());
            if pending.is_some() {
                rounds += 1;
                if rounds > BATCH_ROUNDS {
                    return Err(ApiError::unavailable(
                        "accounts are throttled; retry shortly",
                    ));
                }
                tokio::time::sleep(backoff(rounds)).await;
            }
        }
        Ok(found)
    }
}
