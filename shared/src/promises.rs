//! Settling promises to pay: the open promises due (the sparse `promises-by-date` index of
//! the Activities table, see [`crate::activities::promise_keys`]), the payments that may
//! keep them, and the settlement write — alone, or with a broken promise's account back
//! to `active` in the same transaction.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use crate::accounts::keys::{account_pk, index_key};
use crate::accounts::model::format_date;
use crate::accounts::Account;
use crate::activities::Activity;
use crate::audit::Stamped;
use crate::config::TableName;
use crate::domain::{Id, Timestamp};
use crate::dynamo::attributes::{n, s};
use crate::dynamo::condition_held;
use crate::dynamo::retry::{cancellation_codes, CONDITION_FAILED};
use crate::dynamo::DataError;
use crate::dynamo::{for_each_page, read_all};
use crate::payments::{Payment, PaymentStatus};

/// The promises-by-date index.
pub const INDEX: &str = "promises-by-date";

/// How much earlier than a promise a payment's id (its recording time) may be while its
/// `received_at` is still after the promise: `received_at` may lie up to a minute in the
/// future of the recording (client clock skew); five minutes is a safe bound. Only narrows
/// the payments Query; the decision uses `received_at`.
const RECORDING_SKEW_MS: u64 = 5 * 60 * 1000;

/// How a promise was settled (the `promise_state` attribute; part of the contract with the
/// dashboard aggregates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromiseState {
    Kept,
    Broken,
}

impl PromiseState {
    pub fn as_str(&self) -> &'static str {
        match self {
            PromiseState::Kept => "kept",
            PromiseState::Broken => "broken",
        }
    }
}

/// How a settlement that also returns the account to `active` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reactivation {
    /// Both written.
    Done,
    /// Another run removed the promise's keys first: nothing written.
    AlreadySettled,
    /// The account changed since it was read: read it again and decide again.
    AccountChanged,
    /// The transaction lost to another one in flight: try again after a backoff.
    Conflict,
}

/// The Activities, Payments and Accounts tables as settling promises uses them.
#[derive(Debug, Clone)]
pub struct PromiseStore {
    dynamodb: Client,
    accounts: TableName,
    activities: TableName,
    payments: TableName,
}

impl PromiseStore {
    pub fn new(
        dynamodb: Client,
        accounts: TableName,
        activities: TableName,
        payments: TableName,
    ) -> Self {
        Self {
            dynamodb,
            accounts,
            activities,
            payments,
        }
    }

    /// The open promises of one shard dated before `today`, all pages.
    pub async fn due(&self, shard: u32, today: time::Date) -> Result<Vec<Activity>, DataError> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.activities.as_str())
            .index_name(INDEX)
            // `<date>#...` sorts below `<today>` exactly when the date is before today.
            .key_condition_expression("promise_pk = :pk AND promise_sk < :today")
            .expression_attribute_values(":pk", s(format!("PROMISE#{shard}")))
            .expression_attribute_values(":today", s(format_date(today)));
        read_all(query, Activity::from_item).await
    }

    /// The completed payments of an account recorded since about `since` (payment ids are
    /// ULIDs of their recording time, so this is a key range, not the whole history).
    pub async fn completed_payments(
        &self,
        account_id: Id,
        since: Timestamp,
    ) -> Result<Vec<Payment>, DataError> {
        let since_ms = since.as_offset_date_time().unix_timestamp_nanos() / 1_000_000;
        let since_ms = u64::try_from(since_ms)
            .unwrap_or(0)
            .saturating_sub(RECORDING_SKEW_MS);
        let from = ulid::Ulid::from_parts(since_ms, 0).to_string();
        let query = self
            .dynamodb
            .query()
            .table_name(self.payments.as_str())
            .key_condition_expression("pk = :pk AND sk >= :from")
            .filter_expression("#status = :completed")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pk", s(account_id.to_string()))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":completed", s(PaymentStatus::Completed.as_str()))
            .consistent_read(true);
        read_all(query, Payment::from_item).await
    }

    /// Whether the account has an open promise dated `today` or later (its own Query with
    /// a filter on the open-promise key, strongly consistent).
    pub async fn has_open_promise(
        &self,
        account_id: Id,
        today: time::Date,
    ) -> Result<bool, DataError> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.activities.as_str())
            .key_condition_expression("pk = :pk")
            // Only open promises carry `promise_sk`, which starts with the promise date.
            .filter_expression("promise_sk >= :today")
            .expression_attribute_values(":pk", s(account_id.to_string()))
            .expression_attribute_values(":today", s(format_date(today)))
            .projection_expression("sk")
            .consistent_read(true);
        let mut found = false;
        for_each_page(query, |items| {
            found = !items.is_empty();
            Ok(!found)
        })
        .await?;
        Ok(found)
    }

    /// The settlement of a promise: its index keys go, its state and day are recorded, if
    /// the keys are still there.
    fn settlement(
        &self,
        promise: &Activity,
        state: PromiseState,
        settled_on: time::Date,
    ) -> Result<Update, DataError> {
        Update::builder()
            .table_name(self.activities.as_str())
            .key("pk", s(promise.account_id.to_string()))
            .key("sk", s(promise.id.to_string()))
            .update_expression(
                "REMOVE promise_pk, promise_sk SET promise_state = :state, promise_settled_on = :today",
            )
            .condition_expression("attribute_exists(promise_pk)")
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":today", s(format_date(settled_on)))
            .build()
            .map_err(DataError::failed)
    }

    /// Settles a promise alone; `false` when another run settled it first.
    pub async fn settle(
        &self,
        promise: &Activity,
        state: PromiseState,
        settled_on: time::Date,
    ) -> Result<bool, DataError> {
        let update = self.settlement(promise, state, settled_on)?;
        let result = self
            .dynamodb
            .update_item()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_owned))
            .set_expression_attribute_values(update.expression_attribute_values().cloned())
            .send()
            .await;
        condition_held(result)
    }

    /// Settles a broken promise and, in the same transaction, moves its account from
    /// `observed` to `next` (back to `active`: status, its index key, version, `updated_at`)
    /// conditional on the version observed, logging `moved` (the `status_change`).
    pub async fn settle_and_reactivate(
        &self,
        promise: &Activity,
        settled_on: time::Date,
        observed: &Account,
        next: &Account,
        moved: &Activity,
    ) -> Result<Reactivation, DataError> {
        let update = self.settlement(promise, PromiseState::Broken, settled_on)?;
        let key = |name: &str| index_key(next, name).unwrap_or_default();
        let account_update = Update::builder()
            .table_name(self.accounts.as_str())
            .key("pk", s(account_pk(observed.id)))
            .update_expression(format!(
                "SET #s = :active, status_pk = :spk, #v = #v + :one, updated_at = :now, updated_sk = :usk, {}",
                crate::audit::Stamp::SET
            ))
            .stamped(&crate::audit::stamp())
            .condition_expression("#v = :v AND attribute_not_exists(deleted_at)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":active", s(next.status.as_str()))
            .expression_attribute_values(":spk", s(key("status_pk")))
            .expression_attribute_values(":usk", s(key("updated_sk")))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(next.updated_at.to_string()))
            .expression_attribute_values(":v", n(observed.version))
            .build()
            .map_err(DataError::failed)?;
        let log = Put::builder()
            .table_name(self.activities.as_str())
            .set_item(Some(moved.to_item()?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(DataError::failed)?;
        let result = self
            .dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(TransactWriteItem::builder().update(account_update).build())
            .transact_items(TransactWriteItem::builder().put(log).build())
            .send()
            .await;
        let Err(err) = result else {
            return Ok(Reactivation::Done);
        };
        match cancellation_codes(&err).as_deref() {
            Some([first, ..]) if first == CONDITION_FAILED => Ok(Reactivation::AlreadySettled),
            Some([_, second, ..]) if second == CONDITION_FAILED => Ok(Reactivation::AccountChanged),
            Some(codes) if codes.iter().any(|c| c == "TransactionConflict") => {
                Ok(Reactivation::Conflict)
            }
            _ => Err(err.into()),
        }
    }
}
