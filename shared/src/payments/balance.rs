//! The conditional account update of a balance change (see the module documentation of
//! [`super`]: the observed account chooses the shape of the write, never the stored
//! balance).

use aws_sdk_dynamodb::types::Update;

use super::ledger::LedgerRefusal;
use crate::accounts::keys::{account_pk, index_key};
use crate::accounts::{Account, AccountStatus};
use crate::audit::Stamped;
use crate::config::TableName;
use crate::domain::{MinorUnits, Timestamp};
use crate::dynamo::attributes::{n, s};
use crate::error::ApiError;

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

/// An account update the ledger applies in a transaction.
pub struct AccountUpdate {
    pub update: Update,
    /// The status the account moves to, when it changes.
    pub status_change: Option<(AccountStatus, AccountStatus)>,
    /// Whether `balance_sk` must be refreshed after the write.
    pub refresh_balance_key: bool,
}

/// The conditional update of the balance for `change` on the `observed` account, or the
/// refusal the observation already implies (`None` for [`BalanceChange::None`]).
/// `ends_plan`: the debit completes the account's payment plan, so an account in
/// `payment_plan` goes back to `active` (unless the debit pays it off: then `paid`).
///
/// `pinned`: the write also holds on the observed version, and so knows the balance it
/// leaves and sets `balance_sk` from it in the same write (no refresh afterwards). Unpinned,
/// the balance moves by the amount whatever other writes landed since the observation
/// (concurrent payments on one account all go through), and `balance_sk` is refreshed
/// after. The ledger tries pinned first (one agent per account is the common case) and
/// falls back to unpinned when the observation was stale.
pub fn balance_update(
    table: &TableName,
    observed: &Account,
    change: BalanceChange,
    ends_plan: bool,
    pinned: bool,
    now: Timestamp,
) -> Result<Result<Option<AccountUpdate>, LedgerRefusal>, ApiError> {
    let mut next = observed.clone();
    next.updated_at = now;
    let updated_sk = index_key(&next, "updated_sk").unwrap_or_default();
    // Every form of the update stamps the actor (`shared::audit`).
    let stamp = crate::audit::stamp();
    let base = |amount: MinorUnits| {
        Update::builder()
            .table_name(table.as_str())
            .key("pk", s(account_pk(observed.id)))
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#b", "balance")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(":usk", s(updated_sk.as_str()))
            .expression_attribute_values(":amount", n(amount.0))
            .stamped(&stamp)
    };
    let common = format!(
        "#v = #v + :one, updated_at = :now, updated_sk = :usk, {}",
        crate::audit::Stamp::SET
    );
    let alive = "attribute_exists(pk) AND attribute_not_exists(deleted_at)";
    // What a relative change (balance plus or minus the amount) adds when pinned.
    let (pinned_set, pinned_condition) = if pinned {
        (", balance_sk = :bsk", " AND #v = :observed")
    } else {
        ("", "")
    };
    let relative = |amount: MinorUnits, next: &Account| {
        let update = base(amount);
        if pinned {
            update
                .expression_attribute_values(
                    ":bsk",
                    s(index_key(next, "balance_sk").unwrap_or_default()),
                )
                .expression_attribute_values(":observed", n(observed.version))
        } else {
            update
        }
    };
    let paid = s(AccountStatus::Paid.as_str());
    let status_key = |next: &Account| s(index_key(next, "status_pk").unwrap_or_default());
    let (update, status_change, refresh_balance_key) = match change {
        BalanceChange::None => return Ok(Ok(None)),
        BalanceChange::Debit(amount) if observed.balance < amount => {
            return Ok(Err(LedgerRefusal::ExceedsBalance {
                balance: observed.balance,
            }));
        }
        BalanceChange::Debit(amount) if observed.balance == amount => {
            next.balance = MinorUnits(0);
            next.status = AccountStatus::Paid;
            let update = base(amount)
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
                .expression_attribute_values(":paid", paid)
                .expression_attribute_values(":spk", status_key(&next));
            let moved = (observed.status != AccountStatus::Paid)
                .then_some((observed.status, AccountStatus::Paid));
            (update, moved, false)
        }
        BalanceChange::Debit(amount)
            if ends_plan && observed.status == AccountStatus::PaymentPlan =>
        {
            next.balance = MinorUnits(observed.balance.0 - amount.0);
            next.status = AccountStatus::Active;
            let update = relative(amount, &next)
                .update_expression(format!(
                    "SET #b = #b - :amount, #s = :active, status_pk = :spk, {common}{pinned_set}"
                ))
                .condition_expression(format!(
                    "{alive} AND #b > :amount AND #s = :plan{pinned_condition}"
                ))
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":active", s(AccountStatus::Active.as_str()))
                .expression_attribute_values(":plan", s(AccountStatus::PaymentPlan.as_str()))
                .expression_attribute_values(":spk", status_key(&next));
            let moved = Some((AccountStatus::PaymentPlan, AccountStatus::Active));
            (update, moved, !pinned)
        }
        BalanceChange::Debit(amount) => {
            next.balance = MinorUnits(observed.balance.0 - amount.0);
            let update = relative(amount, &next)
                .update_expression(format!("SET #b = #b - :amount, {common}{pinned_set}"))
                .condition_expression(format!("{alive} AND #b > :amount{pinned_condition}"));
            (update, None, !pinned)
        }
        BalanceChange::Credit(amount) if observed.status == AccountStatus::Paid => {
            next.balance = MinorUnits(observed.balance.0 + amount.0);
            next.status = AccountStatus::Active;
            let update = relative(amount, &next)
                .update_expression(format!(
                    "SET #b = #b + :amount, #s = :active, status_pk = :spk, {common}{pinned_set}"
                ))
                .condition_expression(format!("{alive} AND #s = :paid{pinned_condition}"))
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":active", s(AccountStatus::Active.as_str()))
                .expression_attribute_values(":paid", paid)
                .expression_attribute_values(":spk", status_key(&next));
            let moved = Some((AccountStatus::Paid, AccountStatus::Active));
            (update, moved, !pinned)
        }
        BalanceChange::Credit(amount) => {
            next.balance = MinorUnits(observed.balance.0 + amount.0);
            let update = relative(amount, &next)
                .update_expression(format!("SET #b = #b + :amount, {common}{pinned_set}"))
                .condition_expression(format!("{alive} AND #s <> :paid{pinned_condition}"))
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":paid", paid);
            (update, None, !pinned)
        }
    };
    Ok(Ok(Some(AccountUpdate {
        update: update.build().map_err(ApiError::internal)?,
        status_change,
        refresh_balance_key,
    })))
}
