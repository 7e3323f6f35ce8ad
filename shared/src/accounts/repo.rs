//! The Accounts table: the one place an account item is written or read.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::keys::{account_pk, reference_pk};
use super::model::Account;
use crate::activities::Activity;
use crate::config::TableName;
use crate::domain::Id;
use crate::dynamo::retry::failed_conditions;
use crate::dynamo::DataError;

/// Reads and writes accounts (and the activities written with them).
#[derive(Debug, Clone)]
pub struct AccountRepo {
    pub(crate) dynamodb: Client,
    pub(crate) table: TableName,
    activities: TableName,
}

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
        let put = TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(self.table.as_str())
                    .set_item(Some(account.to_stamped_item()?))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(DataError::failed)?,
            )
            .build();
        let result = self
            .dynamodb
            .transact_write_items()
            .transact_items(put)
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
