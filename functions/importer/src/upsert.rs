//! Mode `upsert` (`shared::imports::ImportMode::Upsert`): the account that already has a
//! row's reference takes the row's values, through the same conditional replace and the
//! same audit activities as `PATCH /accounts/{id}`.
//!
//! Only the fields the file has a column for change, and only those an import may change:
//! the debtor's details, the due date, the tags and the agent. A balance, currency or status
//! in the file is ignored for an existing account: balances move through payments and
//! status through `PATCH`, which keep their ledgers. A row that changes nothing writes
//! nothing, so a redelivered chunk or a re-uploaded file updates each account once.

use shared::accounts::{rules, Account, AccountRepo, WriteConflict};
use shared::domain::{Id, Timestamp};
use shared::dynamo::retry::{backoff, CONFLICT_RETRIES};
use shared::dynamo::DataError;
use shared::imports::{Columns, Field};

/// The fields an import may change on an existing account.
pub const UPDATABLE: [Field; 7] = [
    Field::DebtorName,
    Field::DebtorEmail,
    Field::DebtorPhone,
    Field::DebtorTimezone,
    Field::DueDate,
    Field::Tags,
    Field::AssignedAgentId,
];

/// How an upsert ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// The account has the row's values (now, or already: nothing was written then).
    Updated,
    /// The account with the reference is deleted: nothing was written.
    Deleted,
}

/// `current` with the row's values of the [`UPDATABLE`] fields `columns` has, as of `now`;
/// `None` when none of them differs.
pub fn merged(
    current: &Account,
    row: &Account,
    columns: &Columns,
    now: Timestamp,
) -> Option<Account> {
    let mut next = current.clone();
    for field in UPDATABLE {
        if columns.column_name(field).is_none() {
            continue;
        }
        match field {
            Field::DebtorName => next.debtor_name.clone_from(&row.debtor_name),
            Field::DebtorEmail => next.debtor_email.clone_from(&row.debtor_email),
            Field::DebtorPhone => next.debtor_phone.clone_from(&row.debtor_phone),
            Field::DebtorTimezone => next.debtor_timezone.clone_from(&row.debtor_timezone),
            Field::DueDate => {
                next.due_date = row.due_date;
                next.refresh_dpd(now.as_offset_date_time().date());
            }
            Field::Tags => next.tags.clone_from(&row.tags),
            Field::AssignedAgentId => next.assigned_agent_id = row.assigned_agent_id,
            _ => {}
        }
    }
    if next == *current {
        return None;
    }
    next.version = current.version + 1;
    next.updated_at = now;
    Some(next)
}

/// Brings account `owner` up to date with `row`, as `actor` (the import's creator); re-reads
/// and decides again when another writer moved it in between.
pub async fn update(
    accounts: &AccountRepo,
    owner: Id,
    row: &Account,
    columns: &Columns,
    actor: Id,
) -> Result<Upserted, DataError> {
    for attempt in 0..CONFLICT_RETRIES {
        let Some(current) = accounts.get(owner).await? else {
            return Ok(Upserted::Deleted);
        };
        if current.deleted_at.is_some() {
            return Ok(Upserted::Deleted);
        }
        let now = Timestamp::now();
        let Some(next) = merged(&current, row, columns, now) else {
            return Ok(Upserted::Updated);
        };
        let activities = rules::audit(&current, &next, actor, now);
        match accounts
            .replace(&current, &next, current.version, &activities)
            .await?
        {
            Ok(()) => return Ok(Upserted::Updated),
            Err(WriteConflict::Version | WriteConflict::Reference) => {
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
    Err(DataError::unavailable(format!(
        "account {owner} kept changing while its row was applied; the chunk will be retried"
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn columns(names: &[&str]) -> Columns {
        let header: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        Columns::resolve(&header, &BTreeMap::new()).unwrap()
    }

    #[test]
    fn only_the_files_updatable_columns_change_and_the_same_values_change_nothing() {
        let now = Timestamp::now();
        let current = shared::testing::account(10_000, now);
        let mut row = current.clone();
        row.debtor_name = "New Name".to_owned();
        row.debtor_email = "new@example.com".to_owned();
        row.balance = shared::domain::MinorUnits(1);
        row.tags = vec!["re-placed".to_owned()];
        let with_name = columns(&[
            "reference",
            "debtor_name",
            "debtor_email",
            "debtor_phone",
            "debtor_timezone",
            "currency",
            "original_balance",
            "due_date",
        ]);
        let next = merged(&current, &row, &with_name, now).unwrap();
        assert_eq!(next.debtor_name, "New Name");
        assert_eq!(next.debtor_email, "new@example.com");
        assert_eq!(
            next.balance, current.balance,
            "balances never move through an import"
        );
        assert_eq!(next.tags, current.tags, "no tags column: tags are kept");
        assert_eq!(next.version, current.version + 1);
        // Applying the same row again changes nothing (a redelivery writes nothing).
        assert!(merged(&next, &row, &with_name, now).is_none());
    }
}
