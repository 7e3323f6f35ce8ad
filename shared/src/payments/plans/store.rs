//! The Plans table: reads, and the transactions that create and end a plan together with
//! the account's status move and its `status_change` activity. The ledger builds its own
//! transaction with [`plan_put`] and [`plan_end`] (a payment that changes or completes the
//! plan); see the module documentation of [`super`] for the item layout.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use super::model::{Plan, ACTIVE_SK, DUE_SHARDS};
use crate::accounts::keys::{account_pk, index_key};
use crate::accounts::model::format_date;
use crate::accounts::{Account, AccountStatus};
use crate::activities::Activity;
use crate::audit::Stamped;
use crate::config::TableName;
use crate::domain::{Id, Timestamp};
use crate::dynamo::attributes::{n, s, text};
use crate::dynamo::retry::{cancellation_codes, CONDITION_FAILED};
use crate::dynamo::{condition_held, read_all, DataError};

/// The `plans-by-due` index.
pub const DUE_INDEX: &str = "plans-by-due";

/// How a plan transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Everything written.
    Done,
    /// The plan is not as expected: another active plan exists (creation), or the plan
    /// changed or ended since it was read.
    PlanChanged,
    /// The account changed since it was read: read it again and decide again.
    AccountChanged,
    /// Lost to another transaction in flight: try again after a backoff.
    Conflict,
}

/// The item of `plan` stamped with the current actor (`shared::audit`).
fn stamped(plan: &Plan) -> Result<crate::dynamo::Item, DataError> {
    let mut item = plan.to_item()?;
    crate::audit::stamp().put_into(&mut item);
    Ok(item)
}

/// The transaction item that writes `plan` as the account's active plan: new (`expected`
/// `None`: no active plan may exist) or replacing the version `expected`.
pub fn plan_put(
    table: &TableName,
    plan: &Plan,
    expected: Option<u64>,
) -> Result<TransactWriteItem, DataError> {
    let put = Put::builder()
        .table_name(table.as_str())
        .set_item(Some(stamped(plan)?));
    let put = match expected {
        None => put.condition_expression("attribute_not_exists(pk)"),
        Some(version) => put
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":expected", n(version)),
    };
    Ok(TransactWriteItem::builder()
        .put(put.build().map_err(DataError::failed)?)
        .build())
}

/// The two transaction items that end the active plan at version `expected`: the `ACTIVE`
/// item goes, `ended` (status completed / cancelled / broken) is put under its id.
pub fn plan_end(
    table: &TableName,
    ended: &Plan,
    expected: u64,
) -> Result<[TransactWriteItem; 2], DataError> {
    let delete = Delete::builder()
        .table_name(table.as_str())
        .key("pk", s(ended.account_id.to_string()))
        .key("sk", s(ACTIVE_SK))
        .condition_expression("#v = :expected AND id = :id")
        .expression_attribute_names("#v", "version")
        .expression_attribute_values(":expected", n(expected))
        .expression_attribute_values(":id", s(ended.id.to_string()))
        .build()
        .map_err(DataError::failed)?;
    let put = Put::builder()
        .table_name(table.as_str())
        .set_item(Some(stamped(ended)?))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(DataError::failed)?;
    Ok([
        TransactWriteItem::builder().delete(delete).build(),
        TransactWriteItem::builder().put(put).build(),
    ])
}

/// The transaction item that moves the account from its observed status to `to` (status,
/// its index key, version, `updated_at`) conditional on the observed version; when the
/// status does not move, only the condition (so the decision made on the observation
/// holds).
pub fn account_move(
    table: &TableName,
    observed: &Account,
    to: AccountStatus,
    now: Timestamp,
) -> Result<TransactWriteItem, DataError> {
    if observed.status == to {
        let check = ConditionCheck::builder()
            .table_name(table.as_str())
            .key("pk", s(account_pk(observed.id)))
            .condition_expression("#v = :v AND attribute_not_exists(deleted_at)")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(observed.version))
            .build()
            .map_err(DataError::failed)?;
        return Ok(TransactWriteItem::builder().condition_check(check).build());
    }
    let mut next = observed.clone();
    next.status = to;
    next.updated_at = now;
    let key = |name: &str| index_key(&next, name).unwrap_or_default();
    let update = Update::builder()
        .table_name(table.as_str())
        .key("pk", s(account_pk(observed.id)))
        .update_expression(format!(
            "SET #s = :to, status_pk = :spk, #v = #v + :one, updated_at = :now, updated_sk = :usk, {}",
            crate::audit::Stamp::SET
        ))
        .stamped(&crate::audit::stamp())
        .condition_expression("#v = :v AND attribute_not_exists(deleted_at)")
        .expression_attribute_names("#s", "status")
        .expression_attribute_names("#v", "version")
        .expression_attribute_values(":to", s(to.as_str()))
        .expression_attribute_values(":spk", s(key("status_pk")))
        .expression_attribute_values(":usk", s(key("updated_sk")))
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":now", s(now.to_string()))
        .expression_attribute_values(":v", n(observed.version))
        .build()
        .map_err(DataError::failed)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// The transaction item that logs an activity (new).
fn activity_put(table: &TableName, activity: &Activity) -> Result<TransactWriteItem, DataError> {
    let put = Put::builder()
        .table_name(table.as_str())
        .set_item(Some(activity.to_item()?))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(DataError::failed)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// The Plans table and the Accounts and Activities tables its transactions touch.
#[derive(Debug, Clone)]
pub struct PlanStore {
    dynamodb: Client,
    plans: TableName,
    accounts: TableName,
    activities: TableName,
}

/// The key of an account's active plan.
pub fn active_key(account: Id) -> crate::dynamo::Item {
    HashMap::from([
        ("pk".to_owned(), s(account.to_string())),
        ("sk".to_owned(), s(ACTIVE_SK)),
    ])
}

impl PlanStore {
    pub fn new(
        dynamodb: Client,
        plans: TableName,
        accounts: TableName,
        activities: TableName,
    ) -> Self {
        Self {
            dynamodb,
            plans,
            accounts,
            activities,
        }
    }

    pub fn table(&self) -> &TableName {
        &self.plans
    }

    /// The account's active plan, strongly consistent.
    pub async fn active(&self, account: Id) -> Result<Option<Plan>, DataError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.plans.as_str())
            .set_key(Some(active_key(account)))
            .consistent_read(true)
            .send()
            .await?;
        output.item.map(Plan::from_item).transpose()
    }

    /// Every plan of the account: the active one first, then the ended ones newest first
    /// (an account has a handful; one Query, strongly consistent).
    pub async fn list(&self, account: Id) -> Result<Vec<Plan>, DataError> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.plans.as_str())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(account.to_string()))
            .scan_index_forward(false)
            .consistent_read(true);
        read_all(query, Plan::from_item).await
    }

    /// The accounts of one shard whose active plan has an open installment due before
    /// `cutoff` (the sparse `plans-by-due` index, all pages).
    pub async fn due(&self, shard: u32, cutoff: time::Date) -> Result<Vec<Id>, DataError> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.plans.as_str())
            .index_name(DUE_INDEX)
            // `<date>#<account>` sorts below `<cutoff>` exactly when the date is before it.
            .key_condition_expression("due_pk = :pk AND due_sk < :cutoff")
            .expression_attribute_values(":pk", s(format!("PLANDUE#{}", shard % DUE_SHARDS)))
            .expression_attribute_values(":cutoff", s(format_date(cutoff)));
        read_all(query, |item| {
            text(&item, "pk")
                .ok_or_else(|| DataError::corrupt("a plans-by-due entry without pk"))?
                .parse::<Id>()
                .map_err(DataError::corrupt)
        })
        .await
    }

    /// Replaces the active plan at version `expected` by `plan` (no account change);
    /// `false` when it changed or ended since.
    pub async fn save(&self, plan: &Plan, expected: u64) -> Result<bool, DataError> {
        let result = self
            .dynamodb
            .put_item()
            .table_name(self.plans.as_str())
            .set_item(Some(stamped(plan)?))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":expected", n(expected))
            .send()
            .await;
        condition_held(result)
    }

    /// Creates `plan` as the account's active plan and moves the account from `observed`
    /// to `payment_plan`, logging `moved` (its `status_change`), in one transaction.
    pub async fn create(
        &self,
        plan: &Plan,
        observed: &Account,
        moved: Option<&Activity>,
    ) -> Result<WriteOutcome, DataError> {
        let mut items = vec![
            plan_put(&self.plans, plan, None)?,
            account_move(
                &self.accounts,
                observed,
                AccountStatus::PaymentPlan,
                plan.created_at,
            )?,
        ];
        if let Some(moved) = moved {
            items.push(activity_put(&self.activities, moved)?);
        }
        self.send(items).await
    }

    /// Ends the active plan at version `expected` (`ended` carries its final status) and,
    /// when `observed` is given, moves that account back to `active` logging `moved`, in
    /// one transaction.
    pub async fn end(
        &self,
        ended: &Plan,
        expected: u64,
        observed: Option<&Account>,
        moved: Option<&Activity>,
    ) -> Result<WriteOutcome, DataError> {
        let [delete, put] = plan_end(&self.plans, ended, expected)?;
        let mut items = vec![delete, put];
        if let Some(observed) = observed {
            let now = ended.ended_at.unwrap_or(ended.updated_at);
            items.push(account_move(
                &self.accounts,
                observed,
                AccountStatus::Active,
                now,
            )?);
        }
        if let Some(moved) = moved {
            items.push(activity_put(&self.activities, moved)?);
        }
        self.send(items).await
    }

    /// Sends a plan transaction whose first item is the plan's and whose account item is
    /// the second (creation) or third (end) and tells the outcomes apart.
    async fn send(&self, items: Vec<TransactWriteItem>) -> Result<WriteOutcome, DataError> {
        let account_index = items
            .iter()
            .position(|item| {
                item.update()
                    .is_some_and(|u| u.table_name() == self.accounts.as_str())
                    || item
                        .condition_check()
                        .is_some_and(|c| c.table_name() == self.accounts.as_str())
            })
            .unwrap_or(usize::MAX);
        let result = self
            .dynamodb
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Err(err) = result else {
            return Ok(WriteOutcome::Done);
        };
        let Some(codes) = cancellation_codes(&err) else {
            return Err(err.into());
        };
        let failed = |i: usize| codes.get(i).is_some_and(|c| c == CONDITION_FAILED);
        if failed(0) || (failed(1) && account_index != 1) {
            Ok(WriteOutcome::PlanChanged)
        } else if failed(account_index) {
            Ok(WriteOutcome::AccountChanged)
        } else if codes.iter().any(|c| c == "TransactionConflict") {
            Ok(WriteOutcome::Conflict)
        } else {
            Err(err.into())
        }
    }
}
