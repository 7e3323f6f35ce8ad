//! One row of a placement file as the body of `POST /accounts`, validated by the very code
//! `POST /accounts` runs (`accounts::new_account`), and its refusal as a row error naming
//! the file's column.

use accounts::{new_account, CreateAccountBody};
use sha2::{Digest, Sha256};
use shared::accounts::{Account, AccountStatus};
use shared::domain::{Id, MinorUnits, Timestamp};
use shared::imports::{Columns, Field, RowError, RowReason};
use shared::ApiError;

use crate::csv_stream::Row;

/// The account id of row `line` of import `import`: the same on every delivery, so a row
/// whose reference is taken can tell its own earlier write from another account (see
/// `shared::imports`). A ULID with the import's time and 80 bits of SHA-256(import, line).
pub fn account_id(import: Id, line: u64) -> Id {
    let digest = Sha256::new()
        .chain_update(import.to_string().as_bytes())
        .chain_update(line.to_be_bytes())
        .finalize();
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let ulid = ulid::Ulid::from_parts(import.timestamp_ms(), u128::from_be_bytes(random));
    Id::from(ulid)
}

/// A row error of `row` at `field`'s column.
fn invalid(columns: &Columns, row: &Row, field: Option<Field>, message: String) -> RowError {
    RowError {
        line: row.line,
        column: field
            .and_then(|field| columns.column_name(field))
            .unwrap_or_default()
            .to_owned(),
        reason: RowReason::Invalid,
        message,
    }
}

/// The cell of an optional field, `None` when the column is absent or the cell blank.
fn optional<'r>(columns: &Columns, row: &'r Row, field: Field) -> Option<&'r str> {
    columns
        .cell(&row.cells, field)
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
}

/// The `POST /accounts` body of a row. Cells that are not text in JSON (the balance, the
/// status, the agent id, the tags) are parsed here; everything else is left to
/// [`new_account`].
pub fn body(columns: &Columns, row: &Row) -> Result<CreateAccountBody, RowError> {
    let text = |field| {
        columns
            .cell(&row.cells, field)
            .unwrap_or_default()
            .to_owned()
    };
    let balance = text(Field::OriginalBalance);
    let original_balance = balance.trim().parse::<i64>().map(MinorUnits).map_err(|_| {
        invalid(
            columns,
            row,
            Some(Field::OriginalBalance),
            format!("original_balance: \"{balance}\" is not a whole number of minor units (cents)"),
        )
    })?;
    let status = optional(columns, row, Field::Status)
        .map(|cell| cell.parse::<AccountStatus>())
        .transpose()
        .map_err(|err| invalid(columns, row, Some(Field::Status), format!("status: {err}")))?;
    let assigned_agent_id = optional(columns, row, Field::AssignedAgentId)
        .map(|cell| cell.parse::<Id>())
        .transpose()
        .map_err(|_| {
            invalid(
                columns,
                row,
                Some(Field::AssignedAgentId),
                "assigned_agent_id: must be a user id (ULID)".to_owned(),
            )
        })?;
    let tags = optional(columns, row, Field::Tags)
        .map(|cell| {
            cell.split(';')
                .map(str::trim)
                .filter(|tag| !tag.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(CreateAccountBody {
        reference: text(Field::Reference),
        debtor_name: text(Field::DebtorName),
        debtor_email: text(Field::DebtorEmail),
        debtor_phone: text(Field::DebtorPhone),
        debtor_timezone: text(Field::DebtorTimezone),
        currency: text(Field::Currency),
        original_balance,
        status,
        assigned_agent_id,
        due_date: text(Field::DueDate),
        tags,
    })
}

/// The account row `line` of import `import` creates, validated as `POST /accounts`
/// validates, or the row's error (every problem in one message, at the first one's column).
pub fn account(
    columns: &Columns,
    row: &Row,
    import: Id,
    now: Timestamp,
) -> Result<Account, RowError> {
    let body = body(columns, row)?;
    let mut account = new_account(body, now).map_err(|err| refusal(columns, row, &err))?;
    account.id = account_id(import, row.line);
    Ok(account)
}

/// A refusal of `new_account` as a row error.
fn refusal(columns: &Columns, row: &Row, err: &ApiError) -> RowError {
    let Some(first) = err.errors.first() else {
        // A refusal of the whole body (paid with a balance above 0): the status's column.
        return invalid(columns, row, Some(Field::Status), err.detail.clone());
    };
    let message = err
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    invalid(columns, row, Field::of_error(&first.field), message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const HEADER: [&str; 10] = [
        "Acct No",
        "debtor_name",
        "debtor_email",
        "debtor_phone",
        "debtor_timezone",
        "currency",
        "original_balance",
        "due_date",
        "status",
        "tags",
    ];

    fn columns() -> Columns {
        let header: Vec<String> = HEADER.iter().map(|h| (*h).to_owned()).collect();
        let mapping = BTreeMap::from([("Acct No".to_owned(), Field::Reference)]);
        Columns::resolve(&header, &mapping).unwrap()
    }

    fn row(cells: [&str; 10]) -> Row {
        Row {
            line: 7,
            byte: 321,
            cells: cells.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    const GOOD: [&str; 10] = [
        " R-1 ",
        "Dana Debtor",
        "dana@example.com",
        "+14155550123",
        "America/New_York",
        "USD",
        "12500",
        "2026-10-01",
        "",
        "vip; new ;",
    ];

    #[test]
    fn a_good_row_is_the_account_post_accounts_would_create() {
        let import = Id::generate();
        let account = account(&columns(), &row(GOOD), import, Timestamp::now()).unwrap();
        assert_eq!(account.reference, "R-1");
        assert_eq!(account.balance, MinorUnits(12500));
        assert_eq!(account.status, AccountStatus::Active);
        assert_eq!(account.tags, ["new", "vip"]);
        assert_eq!(account.id, account_id(import, 7));
    }

    #[test]
    fn row_ids_are_stable_per_import_and_line() {
        let import = Id::generate();
        assert_eq!(account_id(import, 2), account_id(import, 2));
        assert_ne!(account_id(import, 2), account_id(import, 3));
        assert_ne!(account_id(import, 2), account_id(Id::generate(), 2));
        assert_eq!(account_id(import, 2).timestamp_ms(), import.timestamp_ms());
    }

    #[test]
    fn refusals_name_the_files_column_and_every_problem() {
        let mut cells = GOOD;
        cells[0] = " ";
        cells[2] = "not-an-email";
        let err = account(&columns(), &row(cells), Id::generate(), Timestamp::now()).unwrap_err();
        assert_eq!(err.line, 7);
        assert_eq!(err.column, "Acct No");
        assert_eq!(err.reason, RowReason::Invalid);
        assert_eq!(
            err.message,
            "reference: must not be empty; debtor_email: must be an email address"
        );

        let mut cells = GOOD;
        cells[6] = "12.50";
        let err = account(&columns(), &row(cells), Id::generate(), Timestamp::now()).unwrap_err();
        assert_eq!(err.column, "original_balance");
        assert!(
            err.message.contains("not a whole number"),
            "{}",
            err.message
        );

        let mut cells = GOOD;
        cells[8] = "paid";
        let err = account(&columns(), &row(cells), Id::generate(), Timestamp::now()).unwrap_err();
        assert_eq!(err.column, "status");
    }
}
