//! The import resource: its state, counters and column mapping, the columns a placement
//! file may have, and the rows it reports.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Scope;
use crate::domain::{Id, Timestamp};
use crate::dynamo::attributes::{number, text};
use crate::dynamo::DataError;

/// The largest file an import takes (declared at `POST /imports`, signed into the upload
/// URL): 256 MiB is well over a million rows of a placement file.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// How long the upload URL is valid.
pub const UPLOAD_URL_SECONDS: u64 = 15 * 60;

/// What a row whose reference another account already has does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Nothing is written; the row is reported as `duplicate`.
    #[default]
    Create,
    /// The existing account takes the row's debtor details (name, email, phone, time zone),
    /// due date, tags and agent, where the file has those columns. Balances, currency and
    /// status never change through an import: they move through payments and PATCH, which
    /// keep their ledgers.
    Upsert,
}

impl ImportMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            ImportMode::Create => "create",
            ImportMode::Upsert => "upsert",
        }
    }
}

impl FromStr for ImportMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "create" => Ok(ImportMode::Create),
            "upsert" => Ok(ImportMode::Upsert),
            _ => Err("must be create or upsert".to_owned()),
        }
    }
}

/// Where an import is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportState {
    /// Waiting for the file.
    AwaitingUpload,
    Running,
    /// Every row created.
    Completed,
    /// Every row read; some failed or were duplicates.
    CompletedWithErrors,
    /// The file as a whole was refused (`error` says why); no account was written.
    Failed,
}

impl ImportState {
    pub const ALL: [ImportState; 5] = [
        ImportState::AwaitingUpload,
        ImportState::Running,
        ImportState::Completed,
        ImportState::CompletedWithErrors,
        ImportState::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ImportState::AwaitingUpload => "awaiting_upload",
            ImportState::Running => "running",
            ImportState::Completed => "completed",
            ImportState::CompletedWithErrors => "completed_with_errors",
            ImportState::Failed => "failed",
        }
    }

    pub fn is_final(&self) -> bool {
        !matches!(self, ImportState::AwaitingUpload | ImportState::Running)
    }
}

impl fmt::Display for ImportState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ImportState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown import state {s}"))
    }
}

/// A field of `POST /accounts` a column may fill.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Reference,
    DebtorName,
    DebtorEmail,
    DebtorPhone,
    DebtorTimezone,
    Currency,
    OriginalBalance,
    DueDate,
    Status,
    AssignedAgentId,
    /// Tags separated by `;`.
    Tags,
}

impl Field {
    pub const ALL: [Field; 11] = [
        Field::Reference,
        Field::DebtorName,
        Field::DebtorEmail,
        Field::DebtorPhone,
        Field::DebtorTimezone,
        Field::Currency,
        Field::OriginalBalance,
        Field::DueDate,
        Field::Status,
        Field::AssignedAgentId,
        Field::Tags,
    ];

    /// The body member of `POST /accounts` this field fills (and its validation errors name).
    pub fn as_str(&self) -> &'static str {
        match self {
            Field::Reference => "reference",
            Field::DebtorName => "debtor_name",
            Field::DebtorEmail => "debtor_email",
            Field::DebtorPhone => "debtor_phone",
            Field::DebtorTimezone => "debtor_timezone",
            Field::Currency => "currency",
            Field::OriginalBalance => "original_balance",
            Field::DueDate => "due_date",
            Field::Status => "status",
            Field::AssignedAgentId => "assigned_agent_id",
            Field::Tags => "tags",
        }
    }

    /// Whether every file must have a column for it (what `POST /accounts` requires).
    pub fn required(&self) -> bool {
        !matches!(self, Field::Status | Field::AssignedAgentId | Field::Tags)
    }

    /// The field a validation error of `POST /accounts` names (`tags[3]` → `tags`).
    pub fn of_error(name: &str) -> Option<Field> {
        let base = name.split('[').next().unwrap_or(name);
        base.parse().ok()
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Field {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|field| field.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(Field::as_str).collect();
                format!("must be one of {}", names.join(", "))
            })
    }
}

/// Which column of the file fills which field: resolved from the header row and the
/// import's `column_mapping` before any row is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// Per field, its column's position and its name in the file.
    by_field: BTreeMap<Field, (usize, String)>,
    /// How many columns the header has.
    pub width: usize,
}

impl Columns {
    /// Resolves `header` with `mapping` (file column name → field). A column is matched by
    /// the mapping first, else by its own name being a field's name (case and surrounding
    /// space ignored). An unknown column, a field given twice or a required field missing
    /// fails the whole file, with every problem named.
    pub fn resolve(header: &[String], mapping: &BTreeMap<String, Field>) -> Result<Self, String> {
        let mut by_field: BTreeMap<Field, (usize, String)> = BTreeMap::new();
        let mut problems = Vec::new();
        for (position, name) in header.iter().enumerate() {
            let field = mapping.get(name).copied().or_else(|| {
                name.trim()
                    .to_ascii_lowercase()
                    .parse::<Field>()
                    .ok()
                    .filter(|field| !mapping.values().any(|mapped| mapped == field))
            });
            let column = position + 1;
            match field {
                None if name.trim().is_empty() => {
                    problems.push(format!("column {column} has no name"))
                }
                None => problems.push(format!(
                    "unknown column \"{name}\" (column {column}): name it after a field or map it in column_mapping"
                )),
                Some(field) => {
                    if let Some((_, other)) = by_field.insert(field, (position, name.clone())) {
                        problems.push(format!(
                            "columns \"{other}\" and \"{name}\" both fill {field}"
                        ));
                    }
                }
            }
        }
        let missing: Vec<&str> = Field::ALL
            .iter()
            .filter(|field| field.required() && !by_field.contains_key(field))
            .map(Field::as_str)
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "missing required column(s): {}",
                missing.join(", ")
            ));
        }
        if header.len() == 1 && [';', '\t', '|'].iter().any(|d| header[0].contains(*d)) {
            problems.insert(
                0,
                "the header is one column: the file must be comma-separated".to_owned(),
            );
        }
        if problems.is_empty() {
            Ok(Self {
                by_field,
                width: header.len(),
            })
        } else {
            Err(problems.join("; "))
        }
    }

    /// The cell of `field` in `row` (`None`: the file has no such column).
    pub fn cell<'r>(&self, row: &'r [String], field: Field) -> Option<&'r str> {
        self.by_field
            .get(&field)
            .and_then(|(position, _)| row.get(*position))
            .map(String::as_str)
    }

    /// The file's name of the column that fills `field`.
    pub fn column_name(&self, field: Field) -> Option<&str> {
        self.by_field.get(&field).map(|(_, name)| name.as_str())
    }
}

/// What became of a row that was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowReason {
    /// A value failed the checks of `POST /accounts`.
    Invalid,
    /// Another account already has this reference; nothing was written.
    Duplicate,
}

impl RowReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            RowReason::Invalid => "invalid",
            RowReason::Duplicate => "duplicate",
        }
    }
}

/// One row of the file that was not created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RowError {
    /// The line in the file (the header is line 1).
    pub line: u64,
    /// The file's name of the column at fault (empty when the row as a whole is).
    pub column: String,
    pub reason: RowReason,
    pub message: String,
}

/// The counters of an import (each row counted once, see [`super`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    /// Rows read and decided (created, updated, duplicate or failed).
    pub rows_read: u64,
    pub created: u64,
    /// Existing accounts brought up to date by their row (mode `upsert`).
    #[serde(default)]
    pub updated: u64,
    pub duplicates: u64,
    pub failed: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.rows_read += other.rows_read;
        self.created += other.created;
        self.updated += other.updated;
        self.duplicates += other.duplicates;
        self.failed += other.failed;
    }
}

/// An import as stored and as `GET /imports/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Import {
    pub id: Id,
    pub state: ImportState,
    /// The file's size in bytes, as declared when the import was created.
    pub size: u64,
    /// The file's name as the client gave it (informative only).
    pub file_name: String,
    /// File column name → field.
    pub column_mapping: BTreeMap<String, Field>,
    /// What a row whose reference is taken does.
    #[serde(default)]
    pub mode: ImportMode,
    /// Data rows in the file (known once the file has been checked).
    #[serde(default)]
    pub total_rows: Option<u64>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Why the file as a whole was refused (state `failed`).
    #[serde(default)]
    pub error: Option<String>,
    pub created_by: Id,
    pub created_at: Timestamp,
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
}

impl Import {
    /// The import from its item.
    pub fn from_item(item: HashMap<String, AttributeValue>) -> Result<Self, DataError> {
        let required = |name: &str| {
            text(&item, name)
                .ok_or_else(|| DataError::corrupt(format!("import item without {name}")))
        };
        let count = |name: &str| number(&item, name).unwrap_or(0).max(0) as u64;
        let column_mapping = serde_json::from_str(text(&item, "column_mapping").unwrap_or("{}"))
            .map_err(DataError::corrupt)?;
        Ok(Self {
            id: required("id")?.parse().map_err(DataError::corrupt)?,
            state: required("state")?.parse().map_err(DataError::corrupt)?,
            size: count("size"),
            file_name: text(&item, "file_name").unwrap_or_default().to_owned(),
            column_mapping,
            mode: text(&item, "mode")
                .map(str::parse)
                .transpose()
                .map_err(DataError::corrupt)?
                .unwrap_or_default(),
            total_rows: number(&item, "total_rows").map(|n| n.max(0) as u64),
            counts: Counts {
                rows_read: count("rows_read"),
                created: count("created"),
                updated: count("updated"),
                duplicates: count("duplicates"),
                failed: count("failed"),
            },
            error: text(&item, "error").map(str::to_owned),
            created_by: required("created_by")?
                .parse()
                .map_err(DataError::corrupt)?,
            created_at: required("created_at")?
                .parse()
                .map_err(DataError::corrupt)?,
            finished_at: text(&item, "finished_at")
                .map(str::parse)
                .transpose()
                .map_err(DataError::corrupt)?,
        })
    }
}

/// Who may see an import: every import for `Scope::All` (admin), its creator's own for
/// `Scope::Own` (a manager), nothing else.
pub fn import_visible_to(scope: &Scope, import: &Import) -> bool {
    match scope {
        Scope::All => true,
        Scope::Own(user) => import.created_by == *user,
        Scope::Assigned(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    const STANDARD: [&str; 8] = [
        "reference",
        "debtor_name",
        "debtor_email",
        "debtor_phone",
        "debtor_timezone",
        "currency",
        "original_balance",
        "due_date",
    ];

    #[test]
    fn field_names_match_columns_without_a_mapping() {
        let mut names = STANDARD.to_vec();
        names.push(" Tags ");
        let columns = Columns::resolve(&header(&names), &BTreeMap::new()).unwrap();
        assert_eq!(columns.width, 9);
        let row = header(&[
            "R1",
            "Dana",
            "d@x.io",
            "+1415",
            "UTC",
            "USD",
            "10",
            "2026-01-01",
            "a;b",
        ]);
        assert_eq!(columns.cell(&row, Field::Reference), Some("R1"));
        assert_eq!(columns.cell(&row, Field::Tags), Some("a;b"));
        assert_eq!(columns.cell(&row, Field::Status), None);
        assert_eq!(columns.column_name(Field::Tags), Some(" Tags "));
    }

    #[test]
    fn a_mapping_names_the_creditors_columns() {
        let mut names = STANDARD.to_vec();
        names[0] = "Acct No";
        names[6] = "Amount Owed";
        let mapping: BTreeMap<String, Field> = [
            ("Acct No".to_owned(), Field::Reference),
            ("Amount Owed".to_owned(), Field::OriginalBalance),
        ]
        .into();
        let columns = Columns::resolve(&header(&names), &mapping).unwrap();
        let row = header(&["A-1", "n", "e", "p", "t", "USD", "99", "d"]);
        assert_eq!(columns.cell(&row, Field::Reference), Some("A-1"));
        assert_eq!(columns.cell(&row, Field::OriginalBalance), Some("99"));
        assert_eq!(columns.column_name(Field::Reference), Some("Acct No"));
    }

    #[test]
    fn unknown_missing_and_doubled_columns_fail_with_every_problem_named() {
        let mut names = STANDARD[..6].to_vec();
        names.push("balance");
        names.push("Reference");
        let err = Columns::resolve(&header(&names), &BTreeMap::new()).unwrap_err();
        assert!(
            err.contains("unknown column \"balance\" (column 7)"),
            "{err}"
        );
        assert!(err.contains("both fill reference"), "{err}");
        assert!(
            err.contains("missing required column(s): original_balance, due_date"),
            "{err}"
        );
    }

    #[test]
    fn a_file_with_another_delimiter_is_named_as_such() {
        let err = Columns::resolve(&header(&[&STANDARD.join(";")]), &BTreeMap::new()).unwrap_err();
        assert!(
            err.starts_with("the header is one column: the file must be comma-separated"),
            "{err}"
        );
    }

    #[test]
    fn validation_errors_name_their_field() {
        assert_eq!(Field::of_error("tags[3]"), Some(Field::Tags));
        assert_eq!(Field::of_error("debtor_email"), Some(Field::DebtorEmail));
        assert_eq!(Field::of_error("If-Match"), None);
    }
}
