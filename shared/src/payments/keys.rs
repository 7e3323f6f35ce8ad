//! The key of a payment item: the account's partition (`pk` = account id), sorted by
//! payment id (`sk`, a ULID), so an account's history is one Query, newest first.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::Id;
use crate::dynamo::attributes::s;

/// The key of `account`'s payment `payment`.
pub fn payment_key(account: Id, payment: Id) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(account.to_string())),
        ("sk".to_owned(), s(payment.to_string())),
    ])
}
