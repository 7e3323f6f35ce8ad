//! The Accounts table: the one place an account item is written or read.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::keys::{account_pk, reference_pk};
use super::model::Account;
use crate::activities::Activity;
use crate::config::TableName;
use crate::domain::Id;
use crate::dynamo::retry::{backoff, failed_conditions, is_conflict, CONFLICT_RETRIES};
use crate::dynamo::DataError;

/// Reads and writes accounts (and the activities written with them).
#[derive(Debug, Clone)]
pub struct AccountRepo {
    pub(crate) dynamodb: Client,
    pub(crate) table: TableName,
    activities: TableName,
}

/// Accounts per transaction of [`AccountRepo::create_many`]. A transaction holds at most
/// 100 items and each account is two (the account and its reference claim); 25 keeps each
/// call short where DynamoDB serialises transactions (DynamoDB Local: a 50-account
/// transaction of the Accounts table with its GSIs took seconds under load, 25 halves
/// that at the same throughput), and still saves 24 round trips of 25.
pub const MAX_CREATE_BATCH: usize = 25;

/// Why a conditional write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteConflict {
    /// The reference is taken (`409`).
    Reference,
    /// The account changed or was deleted since it was read (`412`).
    Version,
}

impl AccountRepo {
    pub fn new(dynamodb: Client, accounts: TableName, activities: TableName) -> Self {
        Self {
            dynamodb,
            table: accounts,
            activities,
        }
    }

    pub fn client(&self) -> &Client {
        &self.dynamodb
    }

    pub fn table(&self) -> &TableName {
        &self.table
    }

    fn reference_put(&self, account: &Account) -> Result<TransactWriteItem, DataError> {
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(self.table.as_str())
                    .item("pk", AttributeValue::S(reference_pk(&account.reference)))
                    .item("account_id", AttributeValue::S(account.id.to_string()))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(DataError::failed)?,
            )
            .build())
    }

    /// Creates an account and claims its reference in one transaction.
    pub async fn create(&self, account: &Account) -> Result<Result<(), WriteConflict>, DataError> {
        let result = self
            .dynamodb
            .transact_write_items()
            .transact_items(self.account_put(account)?)
            .transact_items(self.reference_put(account)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(err) => match failed_conditions(&err) {
                Some(failed) if failed.get(1) == Some(&true) => Ok(Err(WriteConflict::Reference)),
                _ => Err(err.into()),
            },
        }
    }

    /// Creates accounts, each with its reference claimed, [`MAX_CREATE_BATCH`] to a
    /// transaction, in as few transactions as their conflicts allow. The answer has one
    /// entry per account, in order: created, or why not ([`WriteConflict::Reference`]: the
    /// reference is claimed; [`WriteConflict::Version`]: an account with this id exists).
    ///
    /// Why one transaction for many accounts: a placement file creates accounts by the
    /// hundred thousand, and a transaction of 25 accounts costs the write units of 25 single
    /// ones (two per item either way) in one round trip instead of 25. It stays exactly once
    /// per account: every account and claim is still conditional, and a transaction either
    /// writes all of them or none. When conditions fail, DynamoDB names the items; their
    /// accounts are answered with the conflict and the rest are sent again.
    ///
    /// Two accounts with the same reference cannot share a transaction (DynamoDB refuses two
    /// operations on one item); the later one is sent after the earlier one's outcome is
    /// known, and so meets its claim.
    pub async fn create_many(
        &self,
        accounts: &[Account],
    ) -> Result<Vec<Result<(), WriteConflict>>, DataError> {
        let mut outcomes = Vec::with_capacity(accounts.len());
        for batch in accounts.chunks(MAX_CREATE_BATCH) {
            outcomes.extend(self.create_batch(batch).await?);
        }
        Ok(outcomes)
    }

    /// [`Self::create_many`] for at most [`MAX_CREATE_BATCH`] accounts.
    async fn create_batch(
        &self,
        accounts: &[Account],
    ) -> Result<Vec<Result<(), WriteConflict>>, DataError> {
        let mut outcomes: Vec<Option<Result<(), WriteConflict>>> = vec![None; accounts.len()];
        let mut attempt = 0;
        loop {
            let mut references = std::collections::HashSet::new();
            let pending: Vec<usize> = (0..accounts.len())
                .filter(|&i| outcomes[i].is_none())
                .filter(|&i| references.insert(reference_pk(&accounts[i].reference)))
                .collect();
            if pending.is_empty() {
                break;
            }
            let mut transaction = self.dynamodb.transact_write_items();
            for &i in &pending {
                transaction = transaction
                    .transact_items(self.account_put(&accounts[i])?)
                    .transact_items(self.reference_put(&accounts[i])?);
            }
            match transaction.send().await {
                Ok(_) => pending.iter().for_each(|&i| outcomes[i] = Some(Ok(()))),
                Err(err) => {
                    let failed = match failed_conditions(&err) {
                        Some(failed) if failed.iter().any(|f| *f) => failed,
                        // Lost a conflict, throttled, or no answer in time (it may have
                        // committed): sent again as it is, after a backoff. Every write is
                        // conditional, so one that did commit comes back as taken and is
                        // settled as the caller settles any conflict (its own account).
                        _ if attempt < CONFLICT_RETRIES && worth_resending(&err) => {
                            tokio::time::sleep(backoff(attempt)).await;
                            attempt += 1;
                            continue;
                        }
                        _ => return Err(err.into()),
                    };
                    for (n, &i) in pending.iter().enumerate() {
                        let (account_taken, reference_taken) = (
                            failed.get(2 * n) == Some(&true),
                            failed.get(2 * n + 1) == Some(&true),
                        );
                        if reference_taken {
                            outcomes[i] = Some(Err(WriteConflict::Reference));
                        } else if account_taken {
                            outcomes[i] = Some(Err(WriteConflict::Version));
                        }
                    }
                }
            }
        }
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// The put of a new account: refused if an account with its id exists.
    fn account_put(&self, account: &Account) -> Result<TransactWriteItem, DataError> {
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(self.table.as_str())
                    .set_item(Some(account.to_stamped_item()?))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(DataError::failed)?,
            )
            .build())
    }

    /// The account with this id, deleted or not (strongly consistent).
    pub async fn get(&self, id: Id) -> Result<Option<Account>, DataError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .key("pk", AttributeValue::S(account_pk(id)))
            .consistent_read(true)
            .send()
            .await?;
        output.item.map(Account::from_item).transpose()
    }

    /// Replaces `previous` by `next` if the stored version is still `expected_version` and
    /// the account is not deleted; moves the reference claim if it changed; writes
    /// `activities` (the audit entries of the change) in the same transaction.
    pub async fn replace(
        &self,
        previous: &Account,
        next: &Account,
        expected_version: u64,
        activities: &[Activity],
    ) -> Result<Result<(), WriteConflict>, DataError> {
        let item = next.to_stamped_item()?;
        let put = Put::builder()
            .table_name(self.table.as_str())
            .set_item(Some(item.clone()))
            .condition_expression("#v = :expected AND attribute_not_exists(deleted_at)")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .build()
            .map_err(DataError::failed)?;
        let reference_moves = reference_pk(&previous.reference) != reference_pk(&next.reference);
        if activities.is_empty() && !reference_moves {
            // One conditional Put: no transaction needed.
            let mut request = self
                .dynamodb
                .put_item()
                .table_name(self.table.as_str())
                .set_item(Some(item))
                .condition_expression("#v = :expected AND attribute_not_exists(deleted_at)")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(
                    ":expected",
                    AttributeValue::N(expected_version.to_string()),
                );
            request = request.return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::None,
            );
            return match request.send().await {
                Ok(_) => Ok(Ok(())),
                Err(err) => match err.as_service_error() {
                    Some(e) if e.is_conditional_check_failed_exception() => {
                        Ok(Err(WriteConflict::Version))
                    }
                    _ => Err(err.into()),
                },
            };
        }
        let mut transaction = self
            .dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build());
        if reference_moves {
            transaction = transaction
                .transact_items(self.reference_put(next)?)
                .transact_items(
                    TransactWriteItem::builder()
                        .delete(
                            Delete::builder()
                                .table_name(self.table.as_str())
                                .key("pk", AttributeValue::S(reference_pk(&previous.reference)))
                                .build()
                                .map_err(DataError::failed)?,
                        )
                        .build(),
                );
        }
        for activity in activities {
            transaction = transaction.transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(self.activities.as_str())
                            .set_item(Some(activity.to_item()?))
                            .condition_expression("attribute_not_exists(pk)")
                            .build()
                            .map_err(DataError::failed)?,
                    )
                    .build(),
            );
        }
        match transaction.send().await {
            Ok(_) => Ok(Ok(())),
            Err(err) => match failed_conditions(&err) {
                Some(failed) if failed.first() == Some(&true) => Ok(Err(WriteConflict::Version)),
                Some(failed) if reference_moves && failed.get(1) == Some(&true) => {
                    Ok(Err(WriteConflict::Reference))
                }
                _ => Err(err.into()),
            },
        }
    }
}

/// Whether a `TransactWriteItems` of [`AccountRepo::create_many`] that failed without a failed
/// condition may simply be sent again: a lost conflict, throttling, or a timeout (on a loaded
/// DynamoDB Local a transaction of many accounts can take longer than the SDK waits).
fn worth_resending<R>(
    err: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> bool {
    use aws_sdk_dynamodb::error::SdkError;
    is_conflict(err)
        || matches!(err, SdkError::TimeoutError(_))
        || err
            .as_service_error()
            .is_some_and(crate::dynamo::retry::is_retryable_cancellation)
}
