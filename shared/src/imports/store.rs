//! The Jobs table's import items: the one place they are written or read (see [`super`]
//! for the items and how each row is counted once).

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, Put, PutRequest, Update, WriteRequest};

use super::keys::{
    chunk_sk, creator_pk, item_key, row_sk, CHUNK_PREFIX, IMPORT_SK, LIST_PK, ROW_PREFIX,
};
use super::model::{import_visible_to, Counts, Import, ImportState, RowError};
use crate::accounts::keys::reference_pk;
use crate::audit::{Stamp, Stamped};
use crate::auth::Scope;
use crate::bulk::store::newest_first;
use crate::config::TableName;
use crate::domain::{Id, Timestamp};
use crate::dynamo::attributes::{n, s, text, StringKey};
use crate::dynamo::condition_held;
use crate::dynamo::retry::{backoff, count_once};
use crate::dynamo::DataError;
use crate::dynamo::{for_each_page, read_page, Item};
use crate::error::ApiError;

/// How long an import and its row items are kept (TTL).
pub const IMPORT_TTL_DAYS: i64 = 90;
/// `BatchWriteItem`'s most items per call.
const BATCH_WRITE: usize = 25;
/// Attempts at writing what `BatchWriteItem` left unprocessed.
const BATCH_ATTEMPTS: u32 = 8;

/// Imports in the Jobs table.
#[derive(Debug, Clone)]
pub struct ImportStore {
    dynamodb: aws_sdk_dynamodb::Client,
    table: TableName,
    accounts: TableName,
}

impl ImportStore {
    pub fn new(dynamodb: aws_sdk_dynamodb::Client, jobs: TableName, accounts: TableName) -> Self {
        Self {
            dynamodb,
            table: jobs,
            accounts,
        }
    }

    fn expires_at(now: Timestamp) -> AttributeValue {
        n(now.unix_seconds() + IMPORT_TTL_DAYS * 86_400)
    }

    /// Writes a new import (`awaiting_upload`).
    pub async fn create(&self, import: &Import) -> Result<(), DataError> {
        let mapping = serde_json::to_string(&import.column_mapping).map_err(DataError::failed)?;
        let item: Item = [
            ("pk", s(import.id.to_string())),
            ("sk", s(IMPORT_SK)),
            ("id", s(import.id.to_string())),
            ("state", s(import.state.as_str())),
            ("size", n(import.size)),
            ("file_name", s(import.file_name.clone())),
            ("column_mapping", s(mapping)),
            ("mode", s(import.mode.as_str())),
            ("rows_read", n(0)),
            ("created", n(0)),
            ("updated", n(0)),
            ("duplicates", n(0)),
            ("failed", n(0)),
            ("created_by", s(import.created_by.to_string())),
            ("created_at", s(import.created_at.to_string())),
            // The list indexes (ULIDs sort by creation time).
            ("list_pk", s(LIST_PK)),
            ("creator_pk", s(creator_pk(import.created_by))),
            ("created_sk", s(import.id.to_string())),
            ("expires_at", Self::expires_at(import.created_at)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut item = item;
        crate::audit::stamp().put_into(&mut item);
        // A fresh ULID: a failed condition is this same write retried after a lost answer.
        condition_held(
            self.dynamodb
                .put_item()
                .table_name(self.table.as_str())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await,
        )
        .map(drop)
    }

    /// One import (strongly consistent).
    pub async fn get(&self, id: Id) -> Result<Option<Import>, DataError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(id, IMPORT_SK)))
            .consistent_read(true)
            .send()
            .await?;
        output.item.map(Import::from_item).transpose()
    }

    /// A page of imports, newest first: every import, or for [`Scope::Own`] the imports its
    /// user created; with the key the next page starts after.
    pub async fn list(
        &self,
        scope: &Scope,
        limit: i32,
        start: Option<StringKey>,
    ) -> Result<(Vec<Import>, Option<StringKey>), DataError> {
        let request = newest_first(
            &self.dynamodb,
            &self.table,
            scope,
            creator_pk,
            LIST_PK,
            limit,
        );
        read_page(request, start, Import::from_item).await
    }

    /// The import `id` if `scope` (the caller's for `Action::ManageImports`) covers it, else
    /// `404`: the same answer as for no import at all.
    pub async fn visible(&self, scope: &Scope, id: Id) -> Result<Import, ApiError> {
        match self.get(id).await? {
            Some(import) if import_visible_to(scope, &import) => Ok(import),
            _ => Err(ApiError::not_found(format!("no import {id}"))),
        }
    }

    /// Moves an import to `running` with its row count, from `awaiting_upload` or from
    /// `running` (a redelivered notification resumes). `false` when it already ended.
    pub async fn start(&self, id: Id, total_rows: u64) -> Result<bool, DataError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(id, IMPORT_SK)))
            .update_expression(format!(
                "SET #state = :running, total_rows = :total, {}",
                Stamp::SET
            ))
            .stamped(&crate::audit::stamp())
            .condition_expression("#state IN (:awaiting, :running)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":running", s(ImportState::Running.as_str()))
            .expression_attribute_values(":awaiting", s(ImportState::AwaitingUpload.as_str()))
            .expression_attribute_values(":total", n(total_rows))
            .send()
            .await;
        condition_held(result)
    }

    /// Ends an import that has not ended yet: `failed` with `error`, or the final state
    /// its counters give. `true` if this call ended it.
    pub async fn end(
        &self,
        id: Id,
        state: ImportState,
        error: Option<&str>,
    ) -> Result<bool, DataError> {
        let mut request = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(id, IMPORT_SK)))
            .condition_expression("#state IN (:awaiting, :running)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":now", s(Timestamp::now().to_string()))
            .expression_attribute_values(":running", s(ImportState::Running.as_str()))
            .expression_attribute_values(":awaiting", s(ImportState::AwaitingUpload.as_str()));
        let set = format!("SET #state = :state, finished_at = :now, {}", Stamp::SET);
        request = match error {
            Some(error) => request
                .update_expression(format!("{set}, #error = :error"))
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(":error", s(error)),
            None => request.update_expression(set),
        }
        .stamped(&crate::audit::stamp());
        condition_held(request.send().await)
    }

    /// The chunks of an import already counted.
    pub async fn counted_chunks(&self, id: Id) -> Result<HashSet<String>, DataError> {
        let request = self
            .dynamodb
            .query()
            .table_name(self.table.as_str())
            .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
            .expression_attribute_values(":pk", s(id.to_string()))
            .expression_attribute_values(":chunk", s(CHUNK_PREFIX))
            .projection_expression("sk")
            .consistent_read(true);
        let mut out = HashSet::new();
        for_each_page(request, |items| {
            out.extend(
                items
                    .iter()
                    .filter_map(|item| text(item, "sk").map(str::to_owned)),
            );
            Ok(true)
        })
        .await?;
        Ok(out)
    }

    /// Whether chunk `chunk` of import `id` is counted.
    pub fn is_counted(counted: &HashSet<String>, chunk: u64) -> bool {
        counted.contains(&chunk_sk(chunk))
    }

    /// Records the rows of a chunk that were not created (each row's item is its line's:
    /// writing it again on a redelivery changes nothing).
    pub async fn record_rows(&self, id: Id, rows: &[RowError]) -> Result<(), DataError> {
        let expires_at = Self::expires_at(Timestamp::now());
        for batch in rows.chunks(BATCH_WRITE) {
            let mut requests = batch
                .iter()
                .map(|row| {
                    let mut item: Item = serde_dynamo::to_item(row)?;
                    item.extend(item_key(id, row_sk(row.line)));
                    item.insert("expires_at".to_owned(), expires_at.clone());
                    let put = PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(DataError::failed)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, DataError>>()?;
            for attempt in 0.. {
                let output = self
                    .dynamodb
                    .batch_write_item()
                    .request_items(self.table.as_str(), requests)
                    .send()
                    .await?;
                requests = output
                    .unprocessed_items
                    .and_then(|mut left| left.remove(self.table.as_str()))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt + 1 == BATCH_ATTEMPTS {
                    return Err(DataError::unavailable(
                        "the import's row outcomes could not be written",
                    ));
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        Ok(())
    }

    /// Counts chunk `chunk` of import `id`: one transaction puts its marker (condition: not
    /// there yet) and adds its counts to the import ([`count_once`]). `false` when it was
    /// counted before (a redelivery) or the import is gone (expired): nothing is added twice.
    pub async fn count_chunk(&self, id: Id, chunk: u64, counts: Counts) -> Result<bool, DataError> {
        let marker = Put::builder()
            .table_name(self.table.as_str())
            .set_item(Some({
                let mut item = item_key(id, chunk_sk(chunk));
                item.insert("expires_at".to_owned(), Self::expires_at(Timestamp::now()));
                item
            }))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(DataError::failed)?;
        let add = Update::builder()
            .table_name(self.table.as_str())
            .set_key(Some(item_key(id, IMPORT_SK)))
            .update_expression(
                "ADD rows_read :read, created :created, updated :updated, duplicates :duplicates, failed :failed",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":read", n(counts.rows_read))
            .expression_attribute_values(":created", n(counts.created))
            .expression_attribute_values(":updated", n(counts.updated))
            .expression_attribute_values(":duplicates", n(counts.duplicates))
            .expression_attribute_values(":failed", n(counts.failed))
            .build()
            .map_err(DataError::failed)?;
        count_once(
            &self.dynamodb,
            marker,
            add,
            "the import is busy; the chunk will be retried",
        )
        .await
    }

    /// One page of the rows of an import that were not created, in line order.
    pub async fn rows(
        &self,
        id: Id,
        limit: i32,
        start: Option<StringKey>,
    ) -> Result<(Vec<RowError>, Option<StringKey>), DataError> {
        read_page(self.rows_query(id).limit(limit), start, |item| {
            Ok(serde_dynamo::from_item(item)?)
        })
        .await
    }

    /// Every row of an import that was not created, in line order, handed to `row` page by
    /// page (the CSV download streams them out without a cursor). The first error of `row`
    /// stops the reading and is answered.
    pub async fn each_row<E: From<DataError>>(
        &self,
        id: Id,
        mut row: impl FnMut(RowError) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut refused = None;
        for_each_page(self.rows_query(id), |items| {
            for item in items {
                if let Err(err) = row(serde_dynamo::from_item(item)?) {
                    refused = Some(err);
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
        refused.map_or(Ok(()), Err)
    }

    fn rows_query(
        &self,
        id: Id,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.dynamodb
            .query()
            .table_name(self.table.as_str())
            .key_condition_expression("pk = :pk AND begins_with(sk, :row)")
            .expression_attribute_values(":pk", s(id.to_string()))
            .expression_attribute_values(":row", s(ROW_PREFIX))
    }

    /// The id of the account that holds `reference` (its claim `REF#<reference>` in the
    /// Accounts table), if any: tells a row this import already created (a redelivery) from
    /// a duplicate.
    pub async fn reference_owner(&self, reference: &str) -> Result<Option<Id>, DataError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.accounts.as_str())
            .key("pk", s(reference_pk(reference)))
            .consistent_read(true)
            .send()
            .await?;
        Ok(output
            .item
            .as_ref()
            .and_then(|item: &HashMap<String, AttributeValue>| text(item, "account_id"))
            .and_then(|id| id.parse().ok()))
    }
}
