//! Which accounts a filter job pages: the Query of each partition on a sparse Accounts
//! index (never a Scan).

use aws_sdk_dynamodb::types::AttributeValue;

use super::model::Filter;
use crate::dynamo::attributes::{n, s};

/// Ids per page of a filter's Query.
pub const PAGE_SIZE: i32 = 1000;

/// How a filter job pages its accounts: one Query per partition value on a sparse
/// Accounts index (never a Scan), sorted by a key the job's changes never move
/// (`created`, `balance` or `due`), so keyset paging neither skips nor repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterQuery {
    pub index: String,
    pub pk_attribute: &'static str,
    pub pk_values: Vec<String>,
    /// `sk BETWEEN lo AND hi`.
    pub sort_range: Option<(&'static str, String, String)>,
    /// Filter expression, its values (`:f…`) and names (`#f…`).
    pub filter_expression: Option<String>,
    pub values: Vec<(String, AttributeValue)>,
    pub names: Vec<(String, String)>,
}

impl FilterQuery {
    pub fn new(filter: &Filter, today: time::Date) -> Self {
        use crate::accounts::keys::{balance_key, list_index, Partition, SortKey};
        use crate::accounts::model::format_date;
        let partition = match (filter.agent_id, filter.status) {
            (Some(agent), _) => Partition::Agent(agent),
            (None, Some(status)) => Partition::Status(status),
            (None, None) => Partition::All,
        };
        let due = filter.dpd_bucket.map(|bucket| {
            let (earliest, latest) = bucket.due_range(today);
            (
                earliest
                    .map(format_date)
                    .unwrap_or_else(|| "0000-00-00".into()),
                latest
                    .map(format_date)
                    .unwrap_or_else(|| "9999-99-99".into()),
            )
        });
        let balance = (filter.min_balance.is_some() || filter.max_balance.is_some()).then(|| {
            (
                filter.min_balance.map(|b| b.0).unwrap_or(0),
                filter.max_balance.map(|b| b.0).unwrap_or(i64::MAX),
            )
        });
        let (sort, sort_range) = match (&due, balance) {
            (Some((lo, hi)), _) => (
                SortKey::Due,
                Some(("due_sk", lo.clone(), format!("{hi}#~"))),
            ),
            (None, Some((lo, hi))) => (
                SortKey::Balance,
                Some((
                    "balance_sk",
                    balance_key(lo),
                    format!("{}#~", balance_key(hi)),
                )),
            ),
            (None, None) => (SortKey::Created, None),
        };
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        let mut names = Vec::new();
        if let (Partition::Agent(_), Some(status)) = (&partition, filter.status) {
            conditions.push("#fstatus = :fstatus".to_owned());
            names.push(("#fstatus".to_owned(), "status".to_owned()));
            values.push((":fstatus".to_owned(), s(status.as_str())));
        }
        if let (Some((lo, hi)), true) = (balance, sort != SortKey::Balance) {
            conditions.push("balance BETWEEN :fblo AND :fbhi".to_owned());
            values.push((":fblo".to_owned(), n(lo)));
            values.push((":fbhi".to_owned(), n(hi)));
        }
        if let (Some((lo, hi)), true) = (&due, sort != SortKey::Due) {
            conditions.push("due_date BETWEEN :fdlo AND :fdhi".to_owned());
            values.push((":fdlo".to_owned(), s(lo.clone())));
            values.push((":fdhi".to_owned(), s(hi.clone())));
        }
        for (i, tag) in filter.tags.iter().flatten().enumerate() {
            conditions.push(format!("contains(tags, :ftag{i})"));
            values.push((format!(":ftag{i}"), s(tag.clone())));
        }
        FilterQuery {
            index: list_index(&partition, sort),
            pk_attribute: partition.pk_attribute(),
            pk_values: partition.pk_values(),
            sort_range,
            filter_expression: (!conditions.is_empty()).then(|| conditions.join(" AND ")),
            values,
            names,
        }
    }

    /// How many partitions the planner pages (one chain of planner messages each).
    pub fn partitions(&self) -> u32 {
        self.pk_values.len() as u32
    }
}
