//! Payments: the Payment resource, its item in the Payments table (`pk` = account id,
//! `sk` = payment id), and the [`Ledger`], the one place a payment and the balance it
//! changes are written — always in one `TransactWriteItems`.
//!
//! # No read-modify-write of the balance
//!
//! The ledger reads the account only to *choose* the shape of the write, never to compute
//! the stored balance:
//!
//! - a debit of `a` on an observed balance `b > a` is `SET balance = balance - :a` under
//!   `balance > :a` (the account stays open);
//! - a debit with `b == a` is the pay-off: `SET balance = 0, status = paid` under
//!   `balance = :a` (so `paid` is set exactly when the balance reaches 0);
//! - a credit (refund, reversal) is `SET balance = balance + :a` under `status <> paid`,
//!   or, on a paid account, the same plus `status = active` under `status = paid`.
//!
//! Every variant also requires `attribute_not_exists(deleted_at)` and adds 1 to `version`.
//! When the observation was stale the condition fails, the ledger reads again and picks
//! again (in practice at most once more per state change that crossed it). So N concurrent
//! debits on one account each apply exactly once or are refused — never a lost update.
//!
//! The balance sort key of the accounts indexes (`balance_sk`) is derived data the update
//! expression cannot compute; after a successful non-pay-off write the ledger refreshes it
//! with a conditional update on the version it reads ([`Ledger::refresh_balance_key`]):
//! the writer of the last version always succeeds, so the key converges to the balance.
//!
//! `TransactionCanceledException` with `TransactionConflict` (another transaction on the
//! same item in flight) is retried with jittered exponential backoff, [`CONFLICT_RETRIES`]
//! times, before the caller gets a `409`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::keys::{account_pk, index_key};
use crate::accounts::{Account, AccountStatus};
use crate::activities::{status_change, Activity, ActivityType};
use crate::config::TableName;
use crate::domain::{Currency, Id, MinorUnits, Timestamp};
use crate::error::{condition_held, ApiError};

/// How many times a transaction that lost a conflict is tried again before a `409`.
pub const CONFLICT_RETRIES: u32 = 8;

/// The payment item attribute naming the agent the account was assigned to when the payment
/// was recorded (see `dashboard::tally`).
pub const AGENT_ATTRIBUTE: &str = "agent_id";

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Card,
    Ach,
    Check,
    Cash,
    Wire,
}

impl PaymentMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentMethod::Card => "card",
            PaymentMethod::Ach => "ach",
            PaymentMethod::Check => "check",
            PaymentMethod::Cash => "cash",
            PaymentMethod::Wire => "wire",
        }
    }
}

/// Where a payment is in its life cycle. Only `completed` payments count against the
/// balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Completed,
    Failed,
    Refunded,
    Reversed,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        PaymentStatus::Pending,
        PaymentStatus::Completed,
        PaymentStatus::Failed,
        PaymentStatus::Refunded,
        PaymentStatus::Reversed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Completed => "completed",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Reversed => "reversed",
        }
    }

    /// The status machine: pending → completed | failed; completed → refunded | reversed.
    pub fn can_become(self, next: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, next),
            (Pending, Completed)
                | (Pending, Failed)
                | (Completed, Refunded)
                | (Completed, Reversed)
        )
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                "must be one of pending, completed, failed, refunded, reversed".to_owned()
            })
    }
}

/// A payment on an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    pub id: Id,
    pub account_id: Id,
    /// Minor units, 1..=balance when recorded.
    pub amount: MinorUnits,
    pub currency: Currency,
    pub method: PaymentMethod,
    pub status: PaymentStatus,
    #[serde(default)]
    pub reference: Option<String>,
    pub received_at: Timestamp,
    pub created_by: Id,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Payment {
    pub fn to_item(&self) -> Result<HashMap<String, AttributeValue>, ApiError> {
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(self)?;
        item.retain(|_, value| !matches!(value, AttributeValue::Null(_)));
        item.insert("pk".into(), AttributeValue::S(self.account_id.to_string()));
        item.insert("sk".into(), AttributeValue::S(self.id.to_string()));
        Ok(item)
    }

    pub fn from_item(mut item: HashMap<String, AttributeValue>) -> Result<Self, ApiError> {
        item.remove("pk");
        item.remove("sk");
        item.remove(AGENT_ATTRIBUTE);
        Ok(serde_dynamo::from_item(item)?)
    }

    /// The strong `ETag` of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    /// The `payment` activity of an event of this payment.
    pub fn activity(&self, what: &str, actor: Id, at: Timestamp) -> Activity {
        Activity {
            id: Id::generate(),
            account_id: self.account_id,
            activity_type: ActivityType::Payment,
            note: format!(
                "payment {} of {} {} by {} {what}",
                self.id,
                self.amount,
                self.currency,
                self.method.as_str()
            ),
            promise_amount: None,
            promise_date: None,
            outcome: None,
            actor_id: actor,
            created_at: at,
        }
    }
}

/// A transaction ready to send, the account status move it makes, and whether `balance_sk`
/// needs a refresh after it.
type Prepared = (
    aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder,
    Option<(AccountStatus, AccountStatus)>,
    bool,
);

/// What a balance change does to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceChange {
    /// A completed payment: the balance goes down.
    Debit(MinorUnits),
    /// A refund or reversal: the balance goes back up.
    Credit(MinorUnits),
    /// No balance change (pending or failed payments); the account must still exist.
    None,
}

/// Why the ledger refused a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerRefusal {
    /// The account does not exist or is deleted (`404`).
    AccountGone,
    /// The amount is more than the balance (`422`).
    ExceedsBalance { balance: MinorUnits },
    /// The payment item already exists (a replay of a crashed, committed request).
    PaymentExists,
    /// The payment changed since it was read (`412`).
    PaymentChanged,
    /// Lost every conflict retry (`409`).
    Contended,
}

/// One write of the ledger: the payment item (`put` for a new payment, or an update of its
/// status conditional on its version and status), the balance change, the activities.
#[derive(Debug, Clone)]
pub enum PaymentWrite {
    Record(Payment),
    Transition {
        payment: Payment,
        from: PaymentStatus,
        expected_version: u64,
    },
}

/// Writes payments with their balance changes and activities, atomically.
#[derive(Debug, Clone)]
pub struct Ledger {
    dynamodb: Client,
    accounts: TableName,
    payments: TableName,
    activities: TableName,
}

/// The codes of a cancelled transaction's items (`None` when it was not cancelled).
pub fn cancellation_codes(
    err: &SdkError<TransactWriteItemsError, impl fmt::Debug>,
) -> Option<Vec<String>> {
    match err {
        SdkError::ServiceError(service) => match service.err() {
            TransactWriteItemsError::TransactionCanceledException(cancel) => Some(
                cancel
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None").to_owned())
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the error is a transaction lost to another one in flight (retry it).
pub fn is_conflict(err: &SdkError<TransactWriteItemsError, impl fmt::Debug>) -> bool {
    match err {
        SdkError::ServiceError(service) => match service.err() {
            TransactWriteItemsError::TransactionCanceledException(_) => cancellation_codes(err)
                .is_some_and(|codes| {
                    codes.iter().any(|c| c == "TransactionConflict")
                        && !codes.iter().any(|c| c == "ConditionalCheckFailed")
                }),
            TransactWriteItemsError::TransactionInProgressException(_) => true,
            _ => false,
        },
        _ => false,
    }
}

/// Jittered exponential backoff: attempt 0 → up to 10 ms, doubling to at most 400 ms.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 10_u64.saturating_mul(1 << attempt.min(6)).min(400);
    let jitter = rand::random_range(cap / 2..=cap);
    Duration::from_millis(jitter)
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// An account update the ledger (or the activities function) applies in a transaction.
pub struct AccountUpdate {
    pub update: Update,
    /// The status the account moves to, when it changes.
    pub status_change: Option<(AccountStatus, AccountStatus)>,
    /// Whether `balance_sk` must be refreshed after the write.
    pub refresh_balance_key: bool,
}

/// The conditional update of the balance for `change` on the `observed` account, or the
/// refusal the observation already implies (`None` for [`BalanceChange::None`]).
pub fn balance_update(
    table: &TableName,
    observed: &Account,
    change: BalanceChange,
    now: Timestamp,
) -> Result<Result<Option<AccountUpdate>, LedgerRefusal>, ApiError> {
    let mut next = observed.clone();
    next.updated_at = now;
    let updated_sk = index_key(&next, "updated_sk").unwrap_or_default();
    let base = Update::builder()
        .table_name(table.as_str())
        .key("pk", s(account_pk(observed.id)))
        .expression_attribute_names("#v", "version")
        .expression_attribute_names("#b", "balance")
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":now", s(now.to_string()))
        .expression_attribute_values(":usk", s(updated_sk));
    let common = "#v = #v + :one, updated_at = :now, updated_sk = :usk";
    let alive = "attribute_exists(pk) AND attribute_not_exists(deleted_at)";
    let update = match change {
        BalanceChange::None => return Ok(Ok(None)),
        BalanceChange::Debit(amount) => {
            if observed.balance < amount {
                return Ok(Err(LedgerRefusal::ExceedsBalance {
                    balance: observed.balance,
                }));
            }
            if observed.balance == amount {
                next.balance = MinorUnits(0);
                next.status = AccountStatus::Paid;
                AccountUpdate {
                    update: base
                        .update_expression(format!(
                            "SET #b = :zero, balance_sk = :bsk, #s = :paid, status_pk = :spk, {common}"
                        ))
                        .condition_expression(format!("{alive} AND #b = :amount"))
                        .expression_attribute_names("#s", "status")
                        .expression_attribute_values(":zero", n(0))
                        .expression_attribute_values(
                            ":bsk",
                            s(index_key(&next, "balance_sk").unwrap_or_default()),
                        )
                        .expression_attribute_values(":paid", s(AccountStatus::Paid.as_str()))
                        .expression_attribute_values(
                            ":spk",
                            s(index_key(&next, "status_pk").unwrap_or_default()),
                        )
                        .expression_attribute_values(":amount", n(amount.0))
                        .build()
                        .map_err(ApiError::internal)?,
                    status_change: (observed.status != AccountStatus::Paid)
                        .then_some((observed.status, AccountStatus::Paid)),
                    refresh_balance_key: false,
                }
            } else {
                AccountUpdate {
                    update: base
                        .update_expression(format!("SET #b = #b - :amount, {common}"))
                        .condition_expression(format!("{alive} AND #b > :amount"))
                        .expression_attribute_values(":amount", n(amount.0))
                        .build()
                        .map_err(ApiError::internal)?,
                    status_change: None,
                    refresh_balance_key: true,
                }
            }
        }
        BalanceChange::Credit(amount) => {
            if observed.status == AccountStatus::Paid {
                next.status = AccountStatus::Active;
                AccountUpdate {
                    update: base
                        .update_expression(format!(
                            "SET #b = #b + :amount, #s = :active, status_pk = :spk, {common}"
                        ))
                        .condition_expression(format!("{alive} AND #s = :paid"))
                        .expression_attribute_names("#s", "status")
                        .expression_attribute_values(":active", s(AccountStatus::Active.as_str()))
                        .expression_attribute_values(":paid", s(AccountStatus::Paid.as_str()))
                        .expression_attribute_values(
                            ":spk",
                            s(index_key(&next, "status_pk").unwrap_or_default()),
                        )
                        .expression_attribute_values(":amount", n(amount.0))
                        .build()
                        .map_err(ApiError::internal)?,
                    status_change: Some((AccountStatus::Paid, AccountStatus::Active)),
                    refresh_balance_key: true,
                }
            } else {
                AccountUpdate {
                    update: base
                        .update_expression(format!("SET #b = #b + :amount, {common}"))
                        .condition_expression(format!("{alive} AND #s <> :paid"))
                        .expression_attribute_names("#s", "status")
                        .expression_attribute_values(":paid", s(AccountStatus::Paid.as_str()))
                        .expression_attribute_values(":amount", n(amount.0))
                        .build()
                        .map_err(ApiError::internal)?,
                    status_change: None,
                    refresh_balance_key: true,
                }
            }
        }
    };
    Ok(Ok(Some(update)))
}

/// A `Put` of an activity that must be new.
pub fn activity_put(table: &TableName, activity: &Activity) -> Result<TransactWriteItem, ApiError> {
    Ok(TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table.as_str())
                .set_item(Some(activity.to_item()?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(ApiError::internal)?,
        )
        .build())
}

impl Ledger {
    pub fn new(
        dynamodb: Client,
        accounts: TableName,
        payments: TableName,
        activities: TableName,
    ) -> Self {
        Self {
            dynamodb,
            accounts,
            payments,
            activities,
        }
    }

    pub fn client(&self) -> &Client {
        &self.dynamodb
    }

    /// The account (deleted or not), strongly consistent.
    pub async fn account(&self, id: Id) -> Result<Option<Account>, ApiError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.accounts.as_str())
            .key("pk", s(account_pk(id)))
            .consistent_read(true)
            .send()
            .await?;
        output.item.map(Account::from_item).transpose()
    }

    /// One payment, strongly consistent.
    pub async fn payment(&self, account: Id, payment: Id) -> Result<Option<Payment>, ApiError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.payments.as_str())
            .key("pk", s(account.to_string()))
            .key("sk", s(payment.to_string()))
            .consistent_read(true)
            .send()
            .await?;
        output.item.map(Payment::from_item).transpose()
    }

    /// The payment's part of the transaction. A new payment's item also records the agent
    /// the account is assigned to (`agent_id`, never sent to clients): the dashboard credits
    /// the collection to that agent even if the account is reassigned later.
    fn payment_item(
        &self,
        write: &PaymentWrite,
        agent: Option<Id>,
    ) -> Result<TransactWriteItem, ApiError> {
        Ok(match write {
            PaymentWrite::Record(payment) => TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(self.payments.as_str())
                        .set_item(Some({
                            let mut item = payment.to_item()?;
                            if let Some(agent) = agent {
                                item.insert(AGENT_ATTRIBUTE.into(), s(agent.to_string()));
                            }
                            item
                        }))
                        .condition_expression("attribute_not_exists(sk)")
                        .build()
                        .map_err(ApiError::internal)?,
                )
                .build(),
            PaymentWrite::Transition {
                payment,
                from,
                expected_version,
            } => TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(self.payments.as_str())
                        .key("pk", s(payment.account_id.to_string()))
                        .key("sk", s(payment.id.to_string()))
                        .update_expression("SET #s = :to, #v = :next, updated_at = :now")
                        .condition_expression("#v = :expected AND #s = :from")
                        .expression_attribute_names("#s", "status")
                        .expression_attribute_names("#v", "version")
                        .expression_attribute_values(":to", s(payment.status.as_str()))
                        .expression_attribute_values(":next", n(payment.version))
                        .expression_attribute_values(":now", s(payment.updated_at.to_string()))
                        .expression_attribute_values(":expected", n(*expected_version))
                        .expression_attribute_values(":from", s(from.as_str()))
                        .build()
                        .map_err(ApiError::internal)?,
                )
                .build(),
        })
    }

    /// The one `TransactWriteItems` of a write: the payment item, the account update (or a
    /// condition that the account is live), the activity, and a `status_change` activity when
    /// the account's status moves. Answers it unsent, with the status move and whether
    /// `balance_sk` needs a refresh afterwards.
    fn transaction(
        &self,
        write: &PaymentWrite,
        update: Option<AccountUpdate>,
        observed: &Account,
        activity: &Activity,
        now: Timestamp,
    ) -> Result<Prepared, ApiError> {
        let mut transaction = self
            .dynamodb
            .transact_write_items()
            .transact_items(self.payment_item(write, observed.assigned_agent_id)?);
        let refresh = update.as_ref().is_some_and(|u| u.refresh_balance_key);
        let mut status_moved = None;
        match update {
            Some(update) => {
                status_moved = update.status_change;
                transaction = transaction
                    .transact_items(TransactWriteItem::builder().update(update.update).build());
            }
            None => {
                transaction = transaction.transact_items(
                    TransactWriteItem::builder()
                        .condition_check(
                            ConditionCheck::builder()
                                .table_name(self.accounts.as_str())
                                .key("pk", s(account_pk(observed.id)))
                                .condition_expression(
                                    "attribute_exists(pk) AND attribute_not_exists(deleted_at)",
                                )
                                .return_values_on_condition_check_failure(
                                    ReturnValuesOnConditionCheckFailure::None,
                                )
                                .build()
                                .map_err(ApiError::internal)?,
                        )
                        .build(),
                );
            }
        }
        transaction = transaction.transact_items(activity_put(&self.activities, activity)?);
        if let Some((from, to)) = status_moved {
            let mut logged = status_change(observed.id, from, to, activity.actor_id, now);
            logged.note = format!("{} (payment)", logged.note);
            transaction = transaction.transact_items(activity_put(&self.activities, &logged)?);
        }
        Ok((transaction, status_moved, refresh))
    }

    /// Sends the transaction of recording `payment` (completed) once, as [`Ledger::apply`]
    /// would on its first try, with nothing around it (no retries, no re-read, no key
    /// refresh): the raw call benchmarks compare the handler with. `Ok(false)` when
    /// DynamoDB refused it.
    pub async fn send_record_once(
        &self,
        payment: &Payment,
        observed: &Account,
        activity: &Activity,
        now: Timestamp,
    ) -> Result<bool, ApiError> {
        let update = match balance_update(
            &self.accounts,
            observed,
            BalanceChange::Debit(payment.amount),
            now,
        )? {
            Ok(update) => update,
            Err(_) => return Ok(false),
        };
        let (transaction, _, _) = self.transaction(
            &PaymentWrite::Record(payment.clone()),
            update,
            observed,
            activity,
            now,
        )?;
        Ok(transaction.send().await.is_ok())
    }

    /// Writes `write` with `change` applied to the account and `activity` logged, in one
    /// transaction; re-reads the account and chooses again when its observation was stale.
    /// `observed` is the account as the caller read it.
    pub async fn apply(
        &self,
        write: &PaymentWrite,
        change: BalanceChange,
        observed: Account,
        activity: &Activity,
        now: Timestamp,
    ) -> Result<Result<Account, LedgerRefusal>, ApiError> {
        let applied = self
            .apply_deferred(write, change, observed, activity, now)
            .await?;
        Ok(match applied {
            Ok((account, refresh)) => {
                if let Some(id) = refresh {
                    self.refresh_balance_key(id).await;
                }
                Ok(account)
            }
            Err(refusal) => Err(refusal),
        })
    }

    /// [`Ledger::apply`] without the `balance_sk` refresh: answers the account to refresh
    /// (if any), so the caller can run [`Ledger::refresh_balance_key`] next to its other
    /// post-write calls instead of after them.
    pub async fn apply_deferred(
        &self,
        write: &PaymentWrite,
        change: BalanceChange,
        observed: Account,
        activity: &Activity,
        now: Timestamp,
    ) -> Result<Result<(Account, Option<Id>), LedgerRefusal>, ApiError> {
        let mut observed = observed;
        let mut conflicts = 0_u32;
        let mut stale = 0_u32;
        loop {
            if observed.deleted_at.is_some() {
                return Ok(Err(LedgerRefusal::AccountGone));
            }
            let update = match balance_update(&self.accounts, &observed, change, now)? {
                Ok(update) => update,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let (transaction, status_moved, refresh) =
                self.transaction(write, update, &observed, activity, now)?;
            match transaction.send().await {
                Ok(_) => {
                    let mut account = observed.clone();
                    account.version += 1;
                    account.updated_at = now;
                    match change {
                        BalanceChange::Debit(a) => {
                            account.balance = MinorUnits(account.balance.0 - a.0)
                        }
                        BalanceChange::Credit(a) => {
                            account.balance = MinorUnits(account.balance.0 + a.0)
                        }
                        BalanceChange::None => account.version -= 1,
                    }
                    if let Some((_, to)) = status_moved {
                        account.status = to;
                    }
                    return Ok(Ok((account, refresh.then_some(observed.id))));
                }
                Err(err) if is_conflict(&err) => {
                    conflicts += 1;
                    tracing::debug!(account = %observed.id, conflicts, "transaction conflict; retrying");
                    if conflicts > CONFLICT_RETRIES {
                        tracing::info!(account = %observed.id, "transaction conflicts exhausted");
                        return Ok(Err(LedgerRefusal::Contended));
                    }
                    tokio::time::sleep(backoff(conflicts)).await;
                }
                Err(err) => {
                    let Some(codes) = cancellation_codes(&err) else {
                        return Err(err.into());
                    };
                    let failed =
                        |i: usize| codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed");
                    if failed(0) {
                        return Ok(Err(match write {
                            PaymentWrite::Record(_) => LedgerRefusal::PaymentExists,
                            PaymentWrite::Transition { .. } => LedgerRefusal::PaymentChanged,
                        }));
                    }
                    if failed(1) {
                        stale += 1;
                        tracing::debug!(account = %observed.id, stale, "stale account observation; reading again");
                        if stale > CONFLICT_RETRIES {
                            return Ok(Err(LedgerRefusal::Contended));
                        }
                        match self.account(observed.id).await? {
                            Some(account) => observed = account,
                            None => return Ok(Err(LedgerRefusal::AccountGone)),
                        }
                        continue;
                    }
                    if codes.iter().any(|c| c == "TransactionConflict") {
                        conflicts += 1;
                        if conflicts > CONFLICT_RETRIES {
                            return Ok(Err(LedgerRefusal::Contended));
                        }
                        tokio::time::sleep(backoff(conflicts)).await;
                        continue;
                    }
                    return Err(err.into());
                }
            }
        }
    }

    /// Sets `balance_sk` from the stored balance, conditional on the version read: whoever
    /// wrote the last version converges the key. Failures are logged only (derived data).
    pub async fn refresh_balance_key(&self, account: Id) {
        let result = async {
            let Some(stored) = self.account(account).await? else {
                return Ok::<(), ApiError>(());
            };
            if stored.deleted_at.is_some() {
                return Ok(());
            }
            let key = index_key(&stored, "balance_sk").unwrap_or_default();
            let outcome = self
                .dynamodb
                .update_item()
                .table_name(self.accounts.as_str())
                .key("pk", s(account_pk(account)))
                .update_expression("SET balance_sk = :k")
                .condition_expression("#v = :v AND attribute_not_exists(deleted_at)")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":k", s(key))
                .expression_attribute_values(":v", n(stored.version))
                .send()
                .await;
            condition_held(outcome).map(drop)
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(%account, error = %err, "refreshing balance_sk failed");
        }
    }

    /// A page of an account's payments, newest first, optionally one status, starting
    /// after `after` (a payment id). Answers the items and the id to continue after.
    pub async fn history(
        &self,
        account: Id,
        status: Option<PaymentStatus>,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Payment>, Option<String>), ApiError> {
        let status = status.map(|status| status.as_str());
        crate::paging::NewestFirst {
            dynamodb: &self.dynamodb,
            table: &self.payments,
            partition: account.to_string(),
            below: None,
            only: status.map(|status| ("status", status)),
        }
        .page(after, limit, Payment::from_item)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_machine_is_the_designs() {
        use PaymentStatus::*;
        let allowed: Vec<(PaymentStatus, PaymentStatus)> = PaymentStatus::ALL
            .into_iter()
            .flat_map(|from| PaymentStatus::ALL.into_iter().map(move |to| (from, to)))
            .filter(|(from, to)| from.can_become(*to))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Pending, Completed),
                (Pending, Failed),
                (Completed, Refunded),
                (Completed, Reversed)
            ]
        );
        assert_eq!("refunded".parse::<PaymentStatus>(), Ok(Refunded));
        assert!("lost".parse::<PaymentStatus>().is_err());
    }

    #[test]
    fn backoff_is_jittered_and_bounded() {
        for attempt in 0..20 {
            let wait = backoff(attempt);
            assert!(wait <= Duration::from_millis(400), "{attempt}: {wait:?}");
            assert!(wait >= Duration::from_millis(5), "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn payments_round_trip_through_their_item() {
        let now = Timestamp::now();
        let payment = Payment {
            id: Id::generate(),
            account_id: Id::generate(),
            amount: MinorUnits(1234),
            currency: "USD".parse().unwrap(),
            method: PaymentMethod::Ach,
            status: PaymentStatus::Pending,
            reference: None,
            received_at: now,
            created_by: Id::generate(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let item = payment.to_item().unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), &payment.account_id.to_string());
        assert_eq!(item["sk"].as_s().unwrap(), &payment.id.to_string());
        assert!(!item.contains_key("reference"));
        assert_eq!(Payment::from_item(item).unwrap(), payment);
    }
}
