//! The Account resource, its enums, and its item in the Accounts table.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dpd::{days_past_due, today_utc};
use super::keys;
use crate::domain::{Currency, Id, MinorUnits, Timestamp};
use crate::dynamo::DataError;

time::serde::format_description!(ymd, Date, "[year]-[month]-[day]");

/// Serde for `time::Date` as `YYYY-MM-DD` (the account's `due_date`, a promise date).
pub mod date_format {
    pub use super::ymd::*;
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<time::Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format).map_err(|_| "must be a date, YYYY-MM-DD".to_owned())
}

/// `YYYY-MM-DD` of a date.
pub fn format_date(date: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Where an account is in its collection life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    PromiseToPay,
    PaymentPlan,
    Disputed,
    Paid,
    Closed,
}

impl AccountStatus {
    pub const ALL: [AccountStatus; 6] = [
        AccountStatus::Active,
        AccountStatus::PromiseToPay,
        AccountStatus::PaymentPlan,
        AccountStatus::Disputed,
        AccountStatus::Paid,
        AccountStatus::Closed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::PromiseToPay => "promise_to_pay",
            AccountStatus::PaymentPlan => "payment_plan",
            AccountStatus::Disputed => "disputed",
            AccountStatus::Paid => "paid",
            AccountStatus::Closed => "closed",
        }
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                "must be one of active, promise_to_pay, payment_plan, disputed, paid, closed"
                    .to_owned()
            })
    }
}

/// Days-past-due bucket, derived from `due_date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum DpdBucket {
    #[serde(rename = "current")]
    Current,
    #[serde(rename = "1-30")]
    D1To30,
    #[serde(rename = "31-60")]
    D31To60,
    #[serde(rename = "61-90")]
    D61To90,
    #[serde(rename = "90+")]
    D90Plus,
}

impl DpdBucket {
    pub const ALL: [DpdBucket; 5] = [
        DpdBucket::Current,
        DpdBucket::D1To30,
        DpdBucket::D31To60,
        DpdBucket::D61To90,
        DpdBucket::D90Plus,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            DpdBucket::Current => "current",
            DpdBucket::D1To30 => "1-30",
            DpdBucket::D31To60 => "31-60",
            DpdBucket::D61To90 => "61-90",
            DpdBucket::D90Plus => "90+",
        }
    }

    /// The bucket of a number of days past due (negative or 0: `current`).
    pub fn for_days(days: i64) -> Self {
        match days {
            i64::MIN..=0 => DpdBucket::Current,
            1..=30 => DpdBucket::D1To30,
            31..=60 => DpdBucket::D31To60,
            61..=90 => DpdBucket::D61To90,
            _ => DpdBucket::D90Plus,
        }
    }

    /// The inclusive range of days past due of this bucket (`None`: unbounded).
    pub fn days(&self) -> (Option<i64>, Option<i64>) {
        match self {
            DpdBucket::Current => (None, Some(0)),
            DpdBucket::D1To30 => (Some(1), Some(30)),
            DpdBucket::D31To60 => (Some(31), Some(60)),
            DpdBucket::D61To90 => (Some(61), Some(90)),
            DpdBucket::D90Plus => (Some(91), None),
        }
    }

    /// The inclusive range of due dates that fall in this bucket on `today`: a bucket filter
    /// is a due-date range, so it can be a key condition on the due-date indexes.
    pub fn due_range(&self, today: time::Date) -> (Option<time::Date>, Option<time::Date>) {
        let (min_days, max_days) = self.days();
        let earliest = max_days.map(|d| today - time::Duration::days(d));
        let latest = min_days.map(|d| today - time::Duration::days(d));
        (earliest, latest)
    }
}

impl fmt::Display for DpdBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DpdBucket {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|bucket| bucket.as_str() == s)
            .ok_or_else(|| "must be one of current, 1-30, 31-60, 61-90, 90+".to_owned())
    }
}

/// A debtor account, as the API returns it and as it is stored (plus index keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: Id,
    /// The agency's own account number; unique.
    pub reference: String,
    pub debtor_name: String,
    pub debtor_email: String,
    /// E.164, e.g. `+14155550123`.
    pub debtor_phone: String,
    /// IANA time zone, e.g. `America/New_York`.
    pub debtor_timezone: String,
    pub currency: Currency,
    pub original_balance: MinorUnits,
    pub balance: MinorUnits,
    pub status: AccountStatus,
    #[serde(default)]
    pub assigned_agent_id: Option<Id>,
    #[serde(with = "ymd")]
    #[schema(value_type = String, format = Date, example = "2026-10-01")]
    pub due_date: time::Date,
    /// Computed from `due_date` on every read.
    pub days_past_due: i64,
    /// Computed from `due_date` on every read.
    pub dpd_bucket: DpdBucket,
    #[serde(default)]
    pub tags: Vec<String>,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
    /// The bulk jobs already applied to this account (`shared::bulk`'s exactly-once
    /// markers). Stored with the item and carried through every rewrite of it, so a PATCH
    /// between two deliveries of a bulk chunk cannot make the chunk apply twice; never sent
    /// to clients.
    #[serde(skip)]
    pub applied_bulk_jobs: std::collections::BTreeSet<String>,
}

impl Account {
    /// Recomputes `days_past_due` / `dpd_bucket` for `today`.
    pub fn refresh_dpd(&mut self, today: time::Date) {
        self.days_past_due = days_past_due(self.due_date, today);
        self.dpd_bucket = DpdBucket::for_days(self.days_past_due);
    }

    /// The account with its aging as of now (UTC).
    pub fn fresh(self) -> Self {
        self.aged(today_utc())
    }

    /// The account with its aging as of `today`.
    pub fn aged(mut self, today: time::Date) -> Self {
        self.refresh_dpd(today);
        self
    }

    /// The table item: the account's attributes, its key and its index keys
    /// (see [`super::keys`]). A deleted account keeps no list or search keys.
    pub fn to_item(&self) -> Result<HashMap<String, AttributeValue>, DataError> {
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(self)?;
        // Absent optional values are not stored as NULL: `attribute_not_exists` works on them.
        item.retain(|_, value| !matches!(value, AttributeValue::Null(_)));
        item.insert("pk".into(), AttributeValue::S(keys::account_pk(self.id)));
        if !self.applied_bulk_jobs.is_empty() {
            item.insert(
                keys::MARKER_ATTRIBUTE.into(),
                AttributeValue::Ss(self.applied_bulk_jobs.iter().cloned().collect()),
            );
        }
        if self.deleted_at.is_none() {
            for (name, value) in keys::index_keys(self) {
                item.insert(name.to_owned(), AttributeValue::S(value));
            }
        }
        Ok(item)
    }

    /// [`Account::to_item`] stamped with the current actor: what every writer of a whole
    /// account item Puts (see `shared::audit`).
    pub fn to_stamped_item(&self) -> Result<HashMap<String, AttributeValue>, DataError> {
        let mut item = self.to_item()?;
        crate::audit::stamp().put_into(&mut item);
        Ok(item)
    }

    /// The account of a stored item, with fresh aging.
    pub fn from_item(item: HashMap<String, AttributeValue>) -> Result<Self, DataError> {
        let applied_bulk_jobs = match item.get(keys::MARKER_ATTRIBUTE) {
            Some(AttributeValue::Ss(jobs)) => jobs.iter().cloned().collect(),
            _ => Default::default(),
        };
        let account: Account = serde_dynamo::from_item(item)?;
        Ok(Account {
            applied_bulk_jobs,
            ..account
        }
        .fresh())
    }

    /// The strong `ETag` of the account as the API shows it: `"<version>-<days_past_due>"`.
    /// The version covers every stored change; `days_past_due` (and `dpd_bucket`, which
    /// follows from it) changes with the calendar without a version bump, so it is part of
    /// the tag: a client never gets a `304` for yesterday's aging. Refresh the aging
    /// ([`Account::refresh_dpd`]) for the day of the answer before taking the tag.
    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.version, self.days_past_due)
    }

    /// The version an `ETag` of [`Account::etag`] names (`W/` and quotes allowed); a bare
    /// `"<version>"`, the form before aging was part of the tag, is accepted too. `If-Match`
    /// compares only this: the aging part is derived from the date of the read, not from
    /// stored state, so it cannot make a write conflict.
    pub fn version_of_etag(tag: &str) -> Option<u64> {
        let bare = tag.trim().trim_start_matches("W/").trim_matches('"');
        let version = bare.split_once('-').map_or(bare, |(version, _)| version);
        version.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        let now = Timestamp::now();
        Account {
            id: Id::generate(),
            reference: "REF-1".into(),
            debtor_name: "Dana Debtor".into(),
            debtor_email: "dana@example.com".into(),
            debtor_phone: "+14155550123".into(),
            debtor_timezone: "America/New_York".into(),
            currency: "USD".parse().unwrap(),
            original_balance: MinorUnits(10_000),
            balance: MinorUnits(10_000),
            status: AccountStatus::Active,
            assigned_agent_id: None,
            due_date: time::macros::date!(2026 - 01 - 15),
            days_past_due: 0,
            dpd_bucket: DpdBucket::Current,
            tags: vec![],
            version: 1,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            applied_bulk_jobs: ["01JOB".to_owned()].into_iter().collect(),
        }
    }

    #[test]
    fn etags_carry_the_version_and_the_aging() {
        let mut a = account();
        a.version = 7;
        a.refresh_dpd(time::macros::date!(2026 - 01 - 20));
        assert_eq!(a.etag(), "\"7-5\"");
        let next_day = a.etag();
        a.refresh_dpd(time::macros::date!(2026 - 01 - 21));
        assert_ne!(a.etag(), next_day);
        for tag in ["\"7-6\"", "W/\"7-6\"", "\"7\"", " \"7-0\" "] {
            assert_eq!(Account::version_of_etag(tag), Some(7), "{tag}");
        }
        assert_eq!(Account::version_of_etag("\"x-1\""), None);
    }

    #[test]
    fn bulk_markers_survive_a_rewrite_and_stay_out_of_the_api() {
        let stored = account();
        let item = stored.to_item().unwrap();
        assert!(matches!(
            item.get(keys::MARKER_ATTRIBUTE),
            Some(AttributeValue::Ss(jobs)) if jobs == &vec!["01JOB".to_owned()]
        ));
        // A PATCH reads the item, changes a clone and writes the clone back.
        let read = Account::from_item(item).unwrap();
        let mut next = read.clone();
        next.debtor_name = "Renamed".into();
        assert!(next.to_item().unwrap().contains_key(keys::MARKER_ATTRIBUTE));
        let json = serde_json::to_value(&next).unwrap();
        assert!(json.get("applied_bulk_jobs").is_none());
        assert!(json.get(keys::MARKER_ATTRIBUTE).is_none());
    }
}
