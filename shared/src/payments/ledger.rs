//! The [`Ledger`]: the one place a payment and the balance it changes are written, always
//! in one `TransactWriteItems`, and payments are read.

use aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

use super::balance::{balance_update, AccountUpdate, BalanceChange};
use super::keys::payment_key;
use super::model::{Payment, PaymentStatus, AGENT_ATTRIBUTE};
use super::plans::store::active_key;
use super::plans::store::{plan_end, plan_put};
use super::plans::{schedule, Plan, PlanStatus, PlanStore};
use crate::accounts::keys::{account_key, account_pk, index_key};
use crate::accounts::{Account, AccountRepo, AccountStatus};
use crate::activities::{account_live_check, activity_put, status_change, Activity};
use crate::audit::Stamped;
use crate::config::TableName;
use crate::domain::{Id, MinorUnits, Timestamp};
use crate::dynamo::attributes::{n, s};
use crate::dynamo::retry::{
    backoff, cancellation_codes, is_conflict, CONDITION_FAILED, CONFLICT_RETRIES,
};
use crate::dynamo::{batch_get_consistent, condition_held, DataError};
use crate::error::ApiError;

/// A transaction ready to send, the account status move it makes, and whether `balance_sk`
/// needs a refresh after it.
type Prepared = (
    TransactWriteItemsFluentBuilder,
    Option<(AccountStatus, AccountStatus)>,
    bool,
);

/// Index of the first payment-plan item in a ledger transaction (after the payment and the
/// account items).
const PLAN_ITEM: usize = 2;

/// What a balance change does to the account's active plan (`plan` at its stored version):
/// the plan's next state, or `None` when the plan is not concerned (a credit of a payment
/// it never received, a replay). A debit records a receipt and completes the plan when the
/// receipts cover it or the debit pays the balance off; a credit removes the payment's
/// receipt, re-opening what it paid.
fn plan_after(
    plan: &Plan,
    payment: Id,
    change: BalanceChange,
    observed: &Account,
    now: Timestamp,
) -> Option<Plan> {
    let mut next = plan.clone();
    let changed = match change {
        BalanceChange::Debit(amount) => schedule::receive(&mut next, payment, amount),
        BalanceChange::Credit(_) => schedule::refund(&mut next, payment),
        BalanceChange::None => false,
    };
    if !changed {
        return None;
    }
    next.version += 1;
    next.updated_at = now;
    if matches!(change, BalanceChange::Debit(amount) if schedule::fully_paid(&next) || observed.balance == amount)
    {
        next.status = PlanStatus::Completed;
        next.ended_at = Some(now);
    }
    Some(next)
}

/// The payment a ledger write is about.
fn payment_of(write: &PaymentWrite) -> &Payment {
    match write {
        PaymentWrite::Record(payment) | PaymentWrite::Transition { payment, .. } => payment,
    }
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
    /// The idempotency claim the write was to complete is no longer this request's: its
    /// lock lapsed and a retry of the same request took it over (`409`; nothing written).
    ClaimLost,
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

/// Writes payments with their balance changes and activities, atomically, and applies
/// completed payments, refunds and reversals to the account's active payment plan in the
/// same transaction.
#[derive(Debug, Clone)]
pub struct Ledger {
    dynamodb: Client,
    accounts: AccountRepo,
    plans: PlanStore,
    accounts_table: TableName,
    payments: TableName,
    activities: TableName,
}

impl Ledger {
    pub fn new(
        dynamodb: Client,
        accounts: TableName,
        payments: TableName,
        activities: TableName,
        plans: TableName,
    ) -> Self {
        Self {
            accounts: AccountRepo::new(dynamodb.clone(), accounts.clone(), activities.clone()),
            plans: PlanStore::new(
                dynamodb.clone(),
                plans,
                accounts.clone(),
                activities.clone(),
            ),
            dynamodb,
            accounts_table: accounts,
            payments,
            activities,
        }
    }

    /// The account (deleted or not), strongly consistent.
    pub async fn account(&self, id: Id) -> Result<Option<Account>, DataError> {
        self.accounts.get(id).await
    }

    /// The payment plans of the account (see [`PlanStore`]).
    pub fn plans(&self) -> &PlanStore {
        &self.plans
    }

    /// One payment, strongly consistent.
    pub async fn payment(&self, account: Id, payment: Id) -> Result<Option<Payment>, DataError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.payments.as_str())
            .set_key(Some(payment_key(account, payment)))
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
                            crate::audit::stamp().put_into(&mut item);
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
                        .set_key(Some(payment_key(payment.account_id, payment.id)))
                        .update_expression(format!(
                            "SET #s = :to, #v = :next, updated_at = :now, {}",
                            crate::audit::Stamp::SET
                        ))
                        .stamped(&crate::audit::stamp())
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
    /// condition that the account is live), the plan's change (`plan`: its next state and
    /// the version it replaces; one conditional Put, or Delete + Put when it ends), the
    /// activity, a `status_change` activity when the account's status moves, and last the
    /// caller's `completion` (its idempotency record's) if any. Answers it unsent, with the
    /// status move and whether `balance_sk` needs a refresh afterwards.
    #[allow(clippy::too_many_arguments)]
    fn transaction(
        &self,
        write: &PaymentWrite,
        update: Option<AccountUpdate>,
        plan: Option<(&Plan, u64)>,
        observed: &Account,
        activity: &Activity,
        completion: Option<&TransactWriteItem>,
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
                transaction = transaction
                    .transact_items(account_live_check(&self.accounts_table, observed.id)?);
            }
        }
        if let Some((next, expected)) = plan {
            let table = self.plans.table();
            if next.status == PlanStatus::Active {
                transaction = transaction.transact_items(plan_put(table, next, Some(expected))?);
            } else {
                let [delete, put] = plan_end(table, next, expected)?;
                transaction = transaction.transact_items(delete).transact_items(put);
            }
        }
        transaction = transaction.transact_items(activity_put(&self.activities, activity)?);
        if let Some((from, to)) = status_moved {
            let mut logged = status_change(observed.id, from, to, activity.actor_id, now);
            logged.note = format!("{} (payment)", logged.note);
            transaction = transaction.transact_items(activity_put(&self.activities, &logged)?);
        }
        if let Some(completion) = completion {
            transaction = transaction.transact_items(completion.clone());
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
            &self.accounts_table,
            observed,
            BalanceChange::Debit(payment.amount),
            false,
            // Unpinned: a benchmark sends it again and again on one observation.
            false,
            now,
        )? {
            Ok(update) => update,
            Err(_) => return Ok(false),
        };
        let (transaction, _, _) = self.transaction(
            &PaymentWrite::Record(payment.clone()),
            update,
            None,
            observed,
            activity,
            None,
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
        let plan = self.plan_for(change, observed.id).await?;
        let applied = self
            .apply_observed(write, change, observed, plan, activity, None, now)
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

    /// The account (deleted or not) and the active plan `change` must apply to (none for a
    /// change of no balance), strongly consistent: both in one `BatchGetItem`. One request
    /// where two would queue on DynamoDB Local's single thread; one round trip either way.
    pub async fn observe(
        &self,
        account: Id,
        change: BalanceChange,
    ) -> Result<(Option<Account>, Option<Plan>), DataError> {
        if matches!(change, BalanceChange::None) {
            return Ok((self.account(account).await?, None));
        }
        let (accounts, plans) = (self.accounts_table.as_str(), self.plans.table().as_str());
        let mut read = batch_get_consistent(
            &self.dynamodb,
            HashMap::from([
                (accounts.to_owned(), vec![account_key(account)]),
                (plans.to_owned(), vec![active_key(account)]),
            ]),
        )
        .await?;
        let mut first = |table: &str| {
            read.remove(table)
                .and_then(|items| items.into_iter().next())
        };
        let observed = first(accounts).map(Account::from_item).transpose()?;
        let plan = first(plans).map(Plan::from_item).transpose()?;
        Ok((observed, plan))
    }

    /// The active plan `change` must apply to: none is read for a change of no balance.
    async fn plan_for(
        &self,
        change: BalanceChange,
        account: Id,
    ) -> Result<Option<Plan>, DataError> {
        match change {
            BalanceChange::None => Ok(None),
            _ => self.plans.active(account).await,
        }
    }

    /// [`Ledger::apply`] on the account and plan ([`Ledger::plan_for`]) the caller read,
    /// so it can read them at once with its other reads; with `completion` (the caller's
    /// idempotency record completed with its response) written in the same transaction, so
    /// the payment and the answer a retry replays commit together or not at all; and
    /// without the `balance_sk` refresh: answers the account to refresh, if any (none when
    /// the first, pinned try went through), so the caller runs it next to its other
    /// post-write calls.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_observed(
        &self,
        write: &PaymentWrite,
        change: BalanceChange,
        observed: Account,
        plan: Option<Plan>,
        activity: &Activity,
        completion: Option<TransactWriteItem>,
        now: Timestamp,
    ) -> Result<Result<(Account, Option<Id>), LedgerRefusal>, ApiError> {
        let mut observed = observed;
        let mut plan = plan;
        let mut conflicts = 0_u32;
        let mut stale = 0_u32;
        // Pinned to the observed version until an observation turns out stale; from then on
        // the balance moves relatively and `balance_sk` is refreshed after (see
        // `balance_update`).
        let mut pinned = true;
        let payment = payment_of(write).id;
        loop {
            if observed.deleted_at.is_some() {
                return Ok(Err(LedgerRefusal::AccountGone));
            }
            let next_plan = plan.as_ref().and_then(|p| {
                plan_after(p, payment, change, &observed, now).map(|n| (n, p.version))
            });
            let ends_plan = next_plan
                .as_ref()
                .is_some_and(|(next, _)| next.status != PlanStatus::Active);
            let update = match balance_update(
                &self.accounts_table,
                &observed,
                change,
                ends_plan,
                pinned,
                now,
            )? {
                Ok(update) => update,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let plan_items = match &next_plan {
                Some((next, _)) if next.status == PlanStatus::Active => 1,
                Some(_) => 2,
                None => 0,
            };
            let (transaction, status_moved, refresh) = self.transaction(
                write,
                update,
                next_plan.as_ref().map(|(next, version)| (next, *version)),
                &observed,
                activity,
                completion.as_ref(),
                now,
            )?;
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
                    let failed = |i: usize| codes.get(i).is_some_and(|c| c == CONDITION_FAILED);
                    if failed(0) {
                        return Ok(Err(match write {
                            PaymentWrite::Record(_) => LedgerRefusal::PaymentExists,
                            PaymentWrite::Transition { .. } => LedgerRefusal::PaymentChanged,
                        }));
                    }
                    if completion.is_some() && failed(codes.len().saturating_sub(1)) {
                        return Ok(Err(LedgerRefusal::ClaimLost));
                    }
                    let plan_failed = (PLAN_ITEM..PLAN_ITEM + plan_items).any(failed);
                    if failed(1) || plan_failed {
                        stale += 1;
                        pinned = false;
                        tracing::debug!(account = %observed.id, stale, plan_failed, "stale account or plan observation; reading again");
                        if stale > CONFLICT_RETRIES {
                            return Ok(Err(LedgerRefusal::Contended));
                        }
                        let (account, active) = self.observe(observed.id, change).await?;
                        plan = active;
                        match account {
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
                .table_name(self.accounts_table.as_str())
                .key("pk", s(account_pk(account)))
                .update_expression("SET balance_sk = :k")
                .condition_expression("#v = :v AND attribute_not_exists(deleted_at)")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":k", s(key))
                .expression_attribute_values(":v", n(stored.version))
                .send()
                .await;
            Ok(condition_held(outcome).map(drop)?)
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
    ) -> Result<(Vec<Payment>, Option<String>), DataError> {
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
