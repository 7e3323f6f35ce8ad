//! Newest-first pages of one partition whose sort keys are ULIDs (an account's payments,
//! its activities): the history lists of the API.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::config::TableName;
use crate::dynamo::DataError;

/// DynamoDB pages one list request reads at most while filling a page through a filter,
/// so a sparse filter cannot make one request read a whole partition; the cursor then
/// carries on from where reading stopped.
pub const MAX_READS_PER_PAGE: usize = 20;

/// Which items of which partition a page lists.
pub struct NewestFirst<'a> {
    pub dynamodb: &'a aws_sdk_dynamodb::Client,
    pub table: &'a TableName,
    /// The partition key value (`pk`).
    pub partition: String,
    /// Only sort keys below this (keeps other kinds of item in the partition out).
    pub below: Option<&'a str>,
    /// Only items whose attribute has this value: `(name, value)`.
    pub only: Option<(&'a str, &'a str)>,
}

impl NewestFirst<'_> {
    /// Up to `limit` items after the sort key `after`, newest first, each parsed by
    /// `parse`; with the sort key to continue after, `None` at the end of the partition.
    pub async fn page<T>(
        &self,
        after: Option<String>,
        limit: usize,
        parse: impl Fn(HashMap<String, AttributeValue>) -> Result<T, DataError>,
    ) -> Result<(Vec<T>, Option<String>), DataError> {
        let partition = AttributeValue::S(self.partition.clone());
        let mut items = Vec::new();
        let mut last_sk: Option<String> = None;
        let mut start = after;
        for _ in 0..MAX_READS_PER_PAGE {
            let mut query = self
                .dynamodb
                .query()
                .table_name(self.table.as_str())
                .expression_attribute_values(":pk", partition.clone())
                .scan_index_forward(false)
                // One more than the page needs tells whether there is a next page.
                .limit(i32::try_from(limit - items.len() + 1).unwrap_or(i32::MAX));
            query = match self.below {
                Some(end) => query
                    .key_condition_expression("pk = :pk AND sk < :end")
                    .expression_attribute_values(":end", AttributeValue::S(end.to_owned())),
                None => query.key_condition_expression("pk = :pk"),
            };
            if let Some((name, value)) = self.only {
                query = query
                    .filter_expression("#only = :only")
                    .expression_attribute_names("#only", name)
                    .expression_attribute_values(":only", AttributeValue::S(value.to_owned()));
            }
            if let Some(sk) = &start {
                query = query
                    .exclusive_start_key("pk", partition.clone())
                    .exclusive_start_key("sk", AttributeValue::S(sk.clone()));
            }
            let output = query.send().await?;
            for item in output.items.unwrap_or_default() {
                if items.len() == limit {
                    return Ok((items, last_sk));
                }
                last_sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned();
                items.push(parse(item)?);
            }
            match output
                .last_evaluated_key
                .and_then(|key| key.get("sk").and_then(|v| v.as_s().ok()).cloned())
            {
                None => return Ok((items, None)),
                Some(sk) => start = Some(sk),
            }
        }
        Ok((items, start))
    }
}
