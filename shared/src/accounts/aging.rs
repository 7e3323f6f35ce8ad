//! The Accounts table as the nightly aging job reads and writes it: the accounts due in a
//! date range (the sparse due-date index `acc-all-due`), and their stored bucket.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;

use super::keys::{account_pk, list_index, Partition, SortKey};
use super::model::{format_date, parse_date, DpdBucket};
use crate::audit::Stamped;
use crate::config::TableName;
use crate::domain::Id;
use crate::dynamo::attributes::{n, number, s, text};
use crate::dynamo::condition_held;
use crate::dynamo::DataError;
use crate::dynamo::{read_all, Item};

/// An account as the due-date index shows it: just what the aging decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAging {
    pub id: Id,
    pub due: time::Date,
    /// The stored bucket, verbatim (`None`: the item has none).
    pub bucket: Option<String>,
    pub version: u64,
}

impl StoredAging {
    fn from_item(item: &Item) -> Result<Self, DataError> {
        let bad = |what: &str| DataError::corrupt(format!("an account item has no valid {what}"));
        Ok(Self {
            id: text(item, "id")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("id"))?,
            due: text(item, "due_date")
                .and_then(|v| parse_date(v).ok())
                .ok_or_else(|| bad("due_date"))?,
            bucket: text(item, "dpd_bucket").map(str::to_owned),
            version: number(item, "version")
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| bad("version"))?,
        })
    }
}

/// The names behind `#id, #due, #bucket, #v`: what [`StoredAging`] reads.
fn projected_names() -> HashMap<String, String> {
    [
        ("#id", "id"),
        ("#due", "due_date"),
        ("#bucket", "dpd_bucket"),
        ("#v", "version"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Reads accounts by due date and stores their bucket.
#[derive(Debug, Clone)]
pub struct AgingStore {
    dynamodb: Client,
    table: TableName,
}

impl AgingStore {
    pub fn new(dynamodb: Client, accounts: TableName) -> Self {
        Self {
            dynamodb,
            table: accounts,
        }
    }

    /// Every live account of the `all_pk` shard `pk` due from `earliest` to `latest`
    /// (inclusive), all pages.
    pub async fn due_between(
        &self,
        pk: String,
        earliest: time::Date,
        latest: time::Date,
    ) -> Result<Vec<StoredAging>, DataError> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.table.as_str())
            .index_name(list_index(&Partition::All, SortKey::Due))
            .key_condition_expression("all_pk = :pk AND due_sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(pk))
            // Sort keys are `<date>#<ULID>`; `~` sorts after every ULID character.
            .expression_attribute_values(":lo", s(format!("{}#", format_date(earliest))))
            .expression_attribute_values(":hi", s(format!("{}#~", format_date(latest))))
            .projection_expression("#id, #due, #bucket, #v")
            .set_expression_attribute_names(Some(projected_names()));
        read_all(query, |item| StoredAging::from_item(&item)).await
    }

    /// `SET dpd_bucket, days_past_due` under the version and bucket read (and the account
    /// being live); `false` when the condition failed. Neither `version` nor `updated_at`
    /// moves: nothing a user wrote changed.
    pub async fn store_bucket(
        &self,
        current: &StoredAging,
        bucket: DpdBucket,
        days: i64,
    ) -> Result<bool, DataError> {
        let request = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .key("pk", s(account_pk(current.id)))
            .update_expression(format!(
                "SET #bucket = :bucket, days_past_due = :days, {}",
                crate::audit::Stamp::SET
            ))
            .stamped(&crate::audit::stamp())
            .expression_attribute_names("#bucket", "dpd_bucket")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":bucket", s(bucket.as_str()))
            .expression_attribute_values(":days", n(days))
            .expression_attribute_values(":v", n(current.version));
        let request = match &current.bucket {
            Some(old) => request
                .condition_expression(
                    "#v = :v AND #bucket = :old AND attribute_not_exists(deleted_at)",
                )
                .expression_attribute_values(":old", s(old.clone())),
            None => request.condition_expression(
                "#v = :v AND attribute_not_exists(#bucket) AND attribute_not_exists(deleted_at)",
            ),
        };
        condition_held(request.send().await)
    }

    /// The account as stored now (strongly consistent); `None` when it is gone or deleted.
    pub async fn get(&self, id: Id) -> Result<Option<StoredAging>, DataError> {
        let item = self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .key("pk", s(account_pk(id)))
            .consistent_read(true)
            .projection_expression("#id, #due, #bucket, #v, deleted_at")
            .set_expression_attribute_names(Some(projected_names()))
            .send()
            .await?
            .item;
        match item {
            Some(item) if !item.contains_key("deleted_at") => {
                StoredAging::from_item(&item).map(Some)
            }
            _ => Ok(None),
        }
    }
}
