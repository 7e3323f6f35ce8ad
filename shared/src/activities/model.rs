//! The Activity resource and its item (`pk` = account id, `sk` = activity id), and the
//! activities other writes log in their own transaction (`status_change`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::AccountStatus;
use crate::domain::{Id, MinorUnits, Timestamp};
use crate::dynamo::DataError;

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
    /// A change of a compliance-relevant account field other than the status (debtor
    /// time zone, phone, email, assigned agent), logged by `PATCH /accounts/{id}` in the
    /// same transaction as the change: see `shared::accounts::rules`.
    FieldChange,
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
    pub fn to_item(&self) -> Result<HashMap<String, AttributeValue>, DataError> {
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(self)?;
        item.retain(|_, value| !matches!(value, AttributeValue::Null(_)));
        item.insert("pk".into(), AttributeValue::S(self.account_id.to_string()));
        item.insert("sk".into(), AttributeValue::S(self.id.to_string()));
        Ok(item)
    }

    pub fn from_item(item: HashMap<String, AttributeValue>) -> Result<Self, DataError> {
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

/// How a call went (required for the compliance rules: a right-party contact stops calls
/// for 7 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    RightPartyContact,
    NoAnswer,
    LeftMessage,
    WrongNumber,
}

impl CallOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            CallOutcome::RightPartyContact => "right_party_contact",
            CallOutcome::NoAnswer => "no_answer",
            CallOutcome::LeftMessage => "left_message",
            CallOutcome::WrongNumber => "wrong_number",
        }
    }
}

impl ActivityType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActivityType::Call => "call",
            ActivityType::Email => "email",
            ActivityType::Sms => "sms",
            ActivityType::Letter => "letter",
            ActivityType::Note => "note",
            ActivityType::PromiseToPay => "promise_to_pay",
            ActivityType::Dispute => "dispute",
            ActivityType::StatusChange => "status_change",
            ActivityType::Payment => "payment",
            ActivityType::FieldChange => "field_change",
        }
    }

    /// Every type, in the order the API documents them.
    pub const ALL: [ActivityType; 10] = [
        ActivityType::Call,
        ActivityType::Email,
        ActivityType::Sms,
        ActivityType::Letter,
        ActivityType::Note,
        ActivityType::PromiseToPay,
        ActivityType::Dispute,
        ActivityType::StatusChange,
        ActivityType::Payment,
        ActivityType::FieldChange,
    ];

    /// Types only the system writes (with the change they record).
    pub fn is_system(&self) -> bool {
        matches!(
            self,
            ActivityType::StatusChange | ActivityType::Payment | ActivityType::FieldChange
        )
    }
}

impl std::str::FromStr for ActivityType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActivityType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                "must be one of call, email, sms, letter, note, promise_to_pay, dispute, status_change, payment, field_change"
                    .to_owned()
            })
    }
}
