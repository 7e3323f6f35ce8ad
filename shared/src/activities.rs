//! The Activity item (Activities table: `pk` = account id, `sk` = activity id) and the
//! activities other writes log in their own transaction (`status_change`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::AccountStatus;
use crate::domain::{Id, MinorUnits, Timestamp};
use crate::error::ApiError;

/// What kind of contact or event an activity records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityType {
    Call,
    Email,
    Sms,
    Letter,
    Note,
    PromiseToPay,
    Dispute,
    StatusChange,
    Payment,
}

/// One entry of an account's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    pub id: Id,
    pub account_id: Id,
    #[serde(rename = "type")]
    pub activity_type: ActivityType,
    pub note: String,
    #[serde(default)]
    pub promise_amount: Option<MinorUnits>,
    #[serde(default, with = "crate::accounts::model::date_format::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub promise_date: Option<time::Date>,
    #[serde(default)]
    pub outcome: Option<String>,
    pub actor_id: Id,
    pub created_at: Timestamp,
}

impl Activity {
    /// The item: the activity's attributes plus `pk` (account id) and `sk` (activity id).
    pub fn to_item(&self) -> Result<HashMap<String, AttributeValue>, ApiError> {
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(self)?;
        item.retain(|_, value| !matches!(value, AttributeValue::Null(_)));
        item.insert("pk".into(), AttributeValue::S(self.account_id.to_string()));
        item.insert("sk".into(), AttributeValue::S(self.id.to_string()));
        Ok(item)
    }

    pub fn from_item(item: HashMap<String, AttributeValue>) -> Result<Self, ApiError> {
        Ok(serde_dynamo::from_item(item)?)
    }
}

/// The activity a status change logs, in the same transaction as the change.
pub fn status_change(
    account_id: Id,
    from: AccountStatus,
    to: AccountStatus,
    actor_id: Id,
    at: Timestamp,
) -> Activity {
    Activity {
        id: Id::generate(),
        account_id,
        activity_type: ActivityType::StatusChange,
        note: format!("status changed from {from} to {to}"),
        promise_amount: None,
        promise_date: None,
        outcome: None,
        actor_id,
        created_at: at,
    }
}
