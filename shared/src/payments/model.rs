//! The Payment resource and its item in the Payments table.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::keys::payment_key;
use crate::activities::{Activity, ActivityType};
use crate::domain::{Currency, Id, MinorUnits, Timestamp};
use crate::dynamo::DataError;

/// The payment item attribute naming the agent the account was assigned to when the payment
/// was recorded (see `dashboard::tally`).
pub const AGENT_ATTRIBUTE: &str = "agent_id";

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Card,
    Ach,
    Check,
    Cash,
    Wire,
}

impl PaymentMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentMethod::Card => "card",
            PaymentMethod::Ach => "ach",
            PaymentMethod::Check => "check",
            PaymentMethod::Cash => "cash",
            PaymentMethod::Wire => "wire",
        }
    }
}

/// Where a payment is in its life cycle. Only `completed` payments count against the
/// balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Completed,
    Failed,
    Refunded,
    Reversed,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        PaymentStatus::Pending,
        PaymentStatus::Completed,
        PaymentStatus::Failed,
        PaymentStatus::Refunded,
        PaymentStatus::Reversed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Completed => "completed",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Reversed => "reversed",
        }
    }

    /// The status machine: pending → completed | failed; completed → refunded | reversed.
    pub fn can_become(self, next: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, next),
            (Pending, Completed)
                | (Pending, Failed)
                | (Completed, Refunded)
                | (Completed, Reversed)
        )
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                "must be one of pending, completed, failed, refunded, reversed".to_owned()
            })
    }
}

/// A payment on an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    pub id: Id,
    pub account_id: Id,
    /// Minor units, 1..=balance when recorded.
    pub amount: MinorUnits,
    pub currency: Currency,
    pub method: PaymentMethod,
    pub status: PaymentStatus,
    #[serde(default)]
    pub reference: Option<String>,
    pub received_at: Timestamp,
    pub created_by: Id,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Payment {
    pub fn to_item(&self) -> Result<HashMap<String, AttributeValue>, DataError> {
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(self)?;
        item.retain(|_, value| !matches!(value, AttributeValue::Null(_)));
        item.extend(payment_key(self.account_id, self.id));
        Ok(item)
    }

    pub fn from_item(mut item: HashMap<String, AttributeValue>) -> Result<Self, DataError> {
        item.remove("pk");
        item.remove("sk");
        item.remove(AGENT_ATTRIBUTE);
        Ok(serde_dynamo::from_item(item)?)
    }

    /// The strong `ETag` of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    /// The `payment` activity of an event of this payment.
    pub fn activity(&self, what: &str, actor: Id, at: Timestamp) -> Activity {
        Activity {
            id: Id::generate(),
            account_id: self.account_id,
            activity_type: ActivityType::Payment,
            note: format!(
                "payment {} of {} {} by {} {what}",
                self.id,
                self.amount,
                self.currency,
                self.method.as_str()
            ),
            promise_amount: None,
            promise_date: None,
            outcome: None,
            actor_id: actor,
            created_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_machine_is_the_designs() {
        use PaymentStatus::*;
        let allowed: Vec<(PaymentStatus, PaymentStatus)> = PaymentStatus::ALL
            .into_iter()
            .flat_map(|from| PaymentStatus::ALL.into_iter().map(move |to| (from, to)))
            .filter(|(from, to)| from.can_become(*to))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Pending, Completed),
                (Pending, Failed),
                (Completed, Refunded),
                (Completed, Reversed)
            ]
        );
        assert_eq!("refunded".parse::<PaymentStatus>(), Ok(Refunded));
        assert!("lost".parse::<PaymentStatus>().is_err());
    }

    #[test]
    fn payments_round_trip_through_their_item() {
        let now = Timestamp::now();
        let payment = Payment {
            id: Id::generate(),
            account_id: Id::generate(),
            amount: MinorUnits(1234),
            currency: "USD".parse().unwrap(),
            method: PaymentMethod::Ach,
            status: PaymentStatus::Pending,
            reference: None,
            received_at: now,
            created_by: Id::generate(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let item = payment.to_item().unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), &payment.account_id.to_string());
        assert_eq!(item["sk"].as_s().unwrap(), &payment.id.to_string());
        assert!(!item.contains_key("reference"));
        assert_eq!(Payment::from_item(item).unwrap(), payment);
    }
}
