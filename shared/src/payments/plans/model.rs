//! The Plan resource, its item in the Plans table and its API view.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schedule;
use crate::accounts::keys::shard_of;
use crate::accounts::model::{date_format, format_date};
use crate::domain::{Currency, Id, MinorUnits, Timestamp};
use crate::dynamo::attributes::s;
use crate::dynamo::DataError;

/// Sort key of an account's active plan (ended plans are keyed by their id, a ULID,
/// which always sorts below it).
pub const ACTIVE_SK: &str = "ACTIVE";
/// Shards of the `plans-by-due` index partition.
pub const DUE_SHARDS: u32 = 8;

/// How often an installment falls due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Weekly,
    /// Every two weeks.
    Biweekly,
    /// The same day of every month (the month's last day when it is shorter).
    Monthly,
}

impl Frequency {
    pub fn as_str(&self) -> &'static str {
        match self {
            Frequency::Weekly => "weekly",
            Frequency::Biweekly => "biweekly",
            Frequency::Monthly => "monthly",
        }
    }
}

/// Where a plan is in its life: `active` until it is completed (every installment paid,
/// or the balance paid off), cancelled (by a user) or broken (too many missed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    Active,
    Completed,
    Cancelled,
    Broken,
}

impl PlanStatus {
    pub const ALL: [PlanStatus; 4] = [
        PlanStatus::Active,
        PlanStatus::Completed,
        PlanStatus::Cancelled,
        PlanStatus::Broken,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PlanStatus::Active => "active",
            PlanStatus::Completed => "completed",
            PlanStatus::Cancelled => "cancelled",
            PlanStatus::Broken => "broken",
        }
    }
}

impl fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PlanStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| "must be one of active, completed, cancelled, broken".to_owned())
    }
}

/// One installment as stored: what is due when, and whether the scheduler found it missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installment {
    #[serde(with = "date_format")]
    pub due_date: time::Date,
    pub amount: MinorUnits,
    /// Set once by the missed-installments job; stays set when it is paid late (the plan
    /// counts it toward breaking).
    #[serde(default)]
    pub missed: bool,
}

/// A completed payment the plan received, with the amount it counted (its whole amount:
/// beyond the plan's total it is simply not needed). A refund or reversal of the payment
/// removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub payment_id: Id,
    pub amount: MinorUnits,
}

/// A payment plan, as stored (one item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: Id,
    pub account_id: Id,
    pub status: PlanStatus,
    pub frequency: Frequency,
    pub currency: Currency,
    pub total_amount: MinorUnits,
    pub installments: Vec<Installment>,
    #[serde(default)]
    pub receipts: Vec<Receipt>,
    pub created_by: Id,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub ended_at: Option<Timestamp>,
}

/// The stored attributes that are keys, not plan fields.
const KEY_ATTRIBUTES: [&str; 4] = ["pk", "sk", "due_pk", "due_sk"];

impl Plan {
    /// The sort key the plan has now: `ACTIVE` while active, its id once ended.
    pub fn sort_key(&self) -> String {
        match self.status {
            PlanStatus::Active => ACTIVE_SK.to_owned(),
            _ => self.id.to_string(),
        }
    }

    /// The `plans-by-due` keys: only an active plan with an installment still open.
    pub fn due_keys(&self) -> Option<(String, String)> {
        if self.status != PlanStatus::Active {
            return None;
        }
        let open = schedule::next_open(self)?;
        let shard = shard_of(self.account_id) % DUE_SHARDS;
        Some((
            format!("PLANDUE#{shard}"),
            format!("{}#{}", format_date(open.due_date), self.account_id),
        ))
    }

    pub fn to_item(&self) -> Result<HashMap<String, AttributeValue>, DataError> {
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(self)?;
        item.retain(|_, value| !matches!(value, AttributeValue::Null(_)));
        item.insert("pk".into(), s(self.account_id.to_string()));
        item.insert("sk".into(), s(self.sort_key()));
        if let Some((pk, sk)) = self.due_keys() {
            item.insert("due_pk".into(), s(pk));
            item.insert("due_sk".into(), s(sk));
        }
        Ok(item)
    }

    pub fn from_item(mut item: HashMap<String, AttributeValue>) -> Result<Self, DataError> {
        for key in KEY_ATTRIBUTES {
            item.remove(key);
        }
        Ok(serde_dynamo::from_item(item)?)
    }

    /// The strong `ETag` of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    /// What the plan's payments add up to.
    pub fn paid_amount(&self) -> MinorUnits {
        MinorUnits(self.receipts.iter().map(|r| r.amount.0).sum())
    }

    /// Installments the scheduler found missed.
    pub fn missed_count(&self) -> u32 {
        self.installments.iter().filter(|i| i.missed).count() as u32
    }

    /// The API view: each installment with its paid amount and status.
    pub fn view(&self) -> PlanView {
        let paid = self.paid_amount();
        let installments = schedule::allocate(&self.installments, paid)
            .into_iter()
            .zip(&self.installments)
            .enumerate()
            .map(|(index, (paid_amount, installment))| InstallmentView {
                number: index as u32 + 1,
                due_date: installment.due_date,
                amount: installment.amount,
                paid_amount,
                status: schedule::status_of(installment, paid_amount),
            })
            .collect();
        PlanView {
            id: self.id,
            account_id: self.account_id,
            status: self.status,
            frequency: self.frequency,
            currency: self.currency,
            total_amount: self.total_amount,
            paid_amount: MinorUnits(paid.0.min(self.total_amount.0)),
            remaining_amount: MinorUnits((self.total_amount.0 - paid.0).max(0)),
            missed_count: self.missed_count(),
            installments,
            created_by: self.created_by,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            ended_at: self.ended_at,
        }
    }
}

/// How an installment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstallmentStatus {
    /// Nothing paid on it yet, not missed.
    Due,
    /// Some of it paid, not missed.
    PartlyPaid,
    /// Paid in full (on time or late).
    Paid,
    /// Past its due date by more than the grace period and not paid in full.
    Missed,
}

/// An installment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstallmentView {
    /// 1-based position in the schedule.
    pub number: u32,
    #[serde(with = "date_format")]
    #[schema(value_type = String, format = Date, example = "2027-01-15")]
    pub due_date: time::Date,
    pub amount: MinorUnits,
    pub paid_amount: MinorUnits,
    pub status: InstallmentStatus,
}

/// A plan as the API shows it (`GET /accounts/{id}/plans`, the `201` of a creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    pub id: Id,
    pub account_id: Id,
    pub status: PlanStatus,
    pub frequency: Frequency,
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
    pub total_amount: MinorUnits,
    /// What the plan's payments cover of `total_amount`.
    pub paid_amount: MinorUnits,
    pub remaining_amount: MinorUnits,
    pub missed_count: u32,
    pub installments: Vec<InstallmentView>,
    pub created_by: Id,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub ended_at: Option<Timestamp>,
}
