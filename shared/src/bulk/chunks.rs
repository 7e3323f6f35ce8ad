//! What applying a chunk reads and writes: the job's items (the job, the chunk's marker,
//! its accounts' failures) and the accounts in one `BatchGetItem`, each account updated
//! (only what the job changed) conditional on its version, and the accounts a filter job
//! pages.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

use super::filter::{FilterQuery, PAGE_SIZE};
use super::keys::{chunk_sk, fail_sk, item_key, CHUNK_PREFIX, FAIL_PREFIX, JOB_SK};
use super::model::JobRecord;
use crate::accounts::keys::{account_key, account_pk};
use crate::accounts::Account;
use crate::activities::Activity;
use crate::config::TableName;
use crate::domain::Id;
use crate::dynamo::attributes::{n, s, text, StringKey};
use crate::dynamo::condition_held;
use crate::dynamo::retry::cancellation_codes;
use crate::dynamo::update::ItemUpdate;
use crate::dynamo::{batch_get_consistent, read_page};
use crate::dynamo::{DataError, Item};

/// The Jobs and Accounts tables as the chunks of a job use them.
#[derive(Debug, Clone)]
pub struct ChunkStore {
    dynamodb: aws_sdk_dynamodb::Client,
    jobs: TableName,
    accounts: TableName,
    activities: TableName,
}

/// What a chunk finds before it applies anything.
#[derive(Debug, Default)]
pub struct ChunkRead {
    /// The job (`None`: gone, expired).
    pub job: Option<JobRecord>,
    /// Whether the chunk was counted already (a duplicate delivery).
    pub counted: bool,
    /// The accounts of the chunk that already have a failure recorded.
    pub failed_before: HashSet<Id>,
    /// The accounts of the chunk that exist, by id.
    pub accounts: HashMap<Id, StoredAccount>,
}

/// An account as read, with the item it was read from: the write sends only what differs
/// from that item ([`ItemUpdate`]).
#[derive(Debug, Clone)]
pub struct StoredAccount {
    pub account: Account,
    item: Item,
}

impl StoredAccount {
    fn from_item(item: Item) -> Result<Self, DataError> {
        Ok(Self {
            account: Account::from_item(item.clone())?,
            item,
        })
    }
}

impl ChunkStore {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        jobs: TableName,
        accounts: TableName,
        activities: TableName,
    ) -> Self {
        Self {
            dynamodb,
            jobs,
            accounts,
            activities,
        }
    }

    /// Reads the job, the chunk's marker, each account and its failure marker in one
    /// `BatchGetItem` (strongly consistent; unprocessed keys asked again after a backoff).
    pub async fn read(&self, job: Id, chunk: &str, ids: &[Id]) -> Result<ChunkRead, DataError> {
        let mut job_keys = vec![item_key(job, JOB_SK), item_key(job, chunk_sk(chunk))];
        job_keys.extend(ids.iter().map(|id| item_key(job, fail_sk(*id))));
        let account_keys = ids.iter().map(|id| account_key(*id)).collect();
        let mut items = batch_get_consistent(
            &self.dynamodb,
            HashMap::from([
                (self.jobs.as_str().to_owned(), job_keys),
                (self.accounts.as_str().to_owned(), account_keys),
            ]),
        )
        .await?;
        let mut read = ChunkRead::default();
        for item in items.remove(self.jobs.as_str()).unwrap_or_default() {
            match text(&item, "sk") {
                Some(JOB_SK) => read.job = Some(JobRecord::from_item(item)?),
                Some(sk) if sk.starts_with(CHUNK_PREFIX) => read.counted = true,
                Some(sk) => {
                    if let Some(account) = sk.strip_prefix(FAIL_PREFIX) {
                        read.failed_before.extend(account.parse::<Id>());
                    }
                }
                None => {}
            }
        }
        for item in items.remove(self.accounts.as_str()).unwrap_or_default() {
            // Reference-uniqueness items share the table; an account item has an `id`.
            if let Some(id) = text(&item, "id").and_then(|id| id.parse::<Id>().ok()) {
                read.accounts.insert(id, StoredAccount::from_item(item)?);
            }
        }
        Ok(read)
    }

    /// One account, strongly consistent (`None`: no such account).
    pub async fn account(&self, id: Id) -> Result<Option<StoredAccount>, DataError> {
        self.dynamodb
            .get_item()
            .table_name(self.accounts.as_str())
            .key("pk", s(account_pk(id)))
            .consistent_read(true)
            .send()
            .await?
            .item
            .map(StoredAccount::from_item)
            .transpose()
    }

    /// Turns `stored` into `next` conditional on the stored version still being the one
    /// read and on not being deleted; with `activities` (a status change, a reassignment),
    /// in one transaction with them. Only the attributes that differ are sent (an
    /// `UpdateItem`, the item a Put of `next` would leave). `false`: the condition failed
    /// (or the transaction lost a conflict): read again and decide again.
    pub async fn write(
        &self,
        stored: &StoredAccount,
        next: &Account,
        activities: &[Activity],
    ) -> Result<bool, DataError> {
        const CONDITION: &str = "#v = :expected AND attribute_not_exists(deleted_at)";
        let change = ItemUpdate::between(&stored.item, &next.to_stamped_item()?, &["pk"]);
        let mut names = change.names;
        names.insert("#v".to_owned(), "version".to_owned());
        let mut values = change.values;
        values.insert(":expected".to_owned(), n(stored.account.version));
        let key = account_key(stored.account.id);
        if activities.is_empty() {
            let result = self
                .dynamodb
                .update_item()
                .table_name(self.accounts.as_str())
                .set_key(Some(key))
                .update_expression(change.expression)
                .condition_expression(CONDITION)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await;
            return condition_held(result);
        }
        let account = Update::builder()
            .table_name(self.accounts.as_str())
            .set_key(Some(key))
            .update_expression(change.expression)
            .condition_expression(CONDITION)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(DataError::failed)?;
        let mut transaction = self
            .dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(account).build());
        for activity in activities {
            let log = Put::builder()
                .table_name(self.activities.as_str())
                .set_item(Some(activity.to_item()?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(DataError::failed)?;
            transaction = transaction.transact_items(TransactWriteItem::builder().put(log).build());
        }
        match transaction.send().await {
            Ok(_) => Ok(true),
            Err(err) => match cancellation_codes(&err).as_deref() {
                Some([first, ..]) if first == "ConditionalCheckFailed" => Ok(false),
                Some(codes) if codes.iter().any(|c| c == "TransactionConflict") => Ok(false),
                _ => Err(err.into()),
            },
        }
    }

    /// One page ([`PAGE_SIZE`]) of the ids of partition `partition` of `query`, after
    /// `start`; with the key the next page starts after (`None`: the last page).
    pub async fn page(
        &self,
        query: &FilterQuery,
        partition: u32,
        start: Option<StringKey>,
    ) -> Result<(Vec<Id>, Option<StringKey>), DataError> {
        let pk_value = query
            .pk_values
            .get(partition as usize)
            .ok_or_else(|| DataError::corrupt("partition out of range"))?;
        let mut request = self
            .dynamodb
            .query()
            .table_name(self.accounts.as_str())
            .index_name(&query.index)
            .projection_expression("id")
            .limit(PAGE_SIZE)
            .expression_attribute_names("#pk", query.pk_attribute)
            .expression_attribute_values(":pk", s(pk_value.clone()));
        let mut key = "#pk = :pk".to_owned();
        if let Some((attribute, lo, hi)) = &query.sort_range {
            key.push_str(" AND #sk BETWEEN :lo AND :hi");
            request = request
                .expression_attribute_names("#sk", *attribute)
                .expression_attribute_values(":lo", s(lo.clone()))
                .expression_attribute_values(":hi", s(hi.clone()));
        }
        request = request.key_condition_expression(key);
        if let Some(filter) = &query.filter_expression {
            request = request.filter_expression(filter);
            for (k, v) in &query.values {
                request = request.expression_attribute_values(k, v.clone());
            }
            for (k, v) in &query.names {
                request = request.expression_attribute_names(k, v);
            }
        }
        let (ids, next) = read_page(request, start, |item| {
            Ok(text(&item, "id").and_then(|id| id.parse::<Id>().ok()))
        })
        .await?;
        Ok((ids.into_iter().flatten().collect(), next))
    }
}
