//! The Audit table: written only by the audit writer (one conditional `PutItem` per stream
//! record), read only by `GET /audit` through Queries.
//!
//! # Items and indexes
//!
//! | attribute | value | why |
//! | --- | --- | --- |
//! | `pk` | `EVT#<stream eventID>` | `attribute_not_exists(pk)`: a redelivered record writes nothing |
//! | `subject_pk` | `account:<id>`, `user:<id>`, `job:<id>`, `import:<id>` | GSI `audit-by-subject`: one entity's trail (an account's includes its payments) |
//! | `actor_pk` | the actor id | GSI `audit-by-actor`: what one user (or job) changed |
//! | `day_pk` | `DAY#<YYYY-MM-DD>` (UTC) | GSI `audit-by-day`: a time range alone is a Query per day, newest day first |
//! | `at_sk` | `<µs since the epoch, 16 digits>#<eventID>` | every index's sort key: newest first, `BETWEEN` for from/to, unique |
//! | `expires_at` | epoch seconds, `at` + the retention | TTL (`AuditRetentionYears`); reads skip expired entries themselves |
//!
//! The entry's own fields ([`AuditEntry`]) are stored as they are, `changes` as a list of
//! maps. Every index projects everything: entries are written once and read whole.
//!
//! A day partition takes every audited write of that day: about 1,000 writes per second
//! before the `audit-by-day` index throttles (the writer then retries; nothing is lost,
//! the stream's iterator age grows). Beyond that, shard the day key.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use super::entry::AuditEntry;
use crate::config::TableName;
use crate::domain::Timestamp;
use crate::dynamo::attributes::{key_item, n, s, string_key, StringKey};
use crate::dynamo::DataError;

pub const INDEX_BY_SUBJECT: &str = "audit-by-subject";
pub const INDEX_BY_ACTOR: &str = "audit-by-actor";
pub const INDEX_BY_DAY: &str = "audit-by-day";
/// The variable naming the Audit table (only the audit functions have it).
pub const TABLE_VARIABLE: &str = "AUDIT_TABLE";
/// The variable holding the retention in years (`AuditRetentionYears`).
pub const RETENTION_VARIABLE: &str = "AUDIT_RETENTION_YEARS";
/// The retention without `AUDIT_RETENTION_YEARS` (the template's default too).
pub const DEFAULT_RETENTION_YEARS: u32 = 7;
/// Queries one page request makes at most (a sparse day range stops early with a cursor).
pub const MAX_QUERIES_PER_PAGE: usize = 20;

/// Which entries a list reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One subject's trail (`account:<id>`...).
    Subject(String),
    /// One actor's changes.
    Actor(String),
    /// Every entry of the time range (`from` is then required).
    Time,
}

/// A list: a selector and an inclusive time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub selector: Selector,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// Where a list resumes (the signed cursor's payload): the day partition being read (time
/// lists) and the key after which that Query continues.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StringKey>,
}

fn micros(at: Timestamp) -> i128 {
    at.as_offset_date_time().unix_timestamp_nanos() / 1000
}

/// The sort key of an entry.
pub fn at_sk(at: Timestamp, event_id: &str) -> String {
    format!("{:016}#{event_id}", micros(at).max(0))
}

/// The day partition of an instant.
pub fn day_pk(day: time::Date) -> String {
    format!("DAY#{}", crate::accounts::model::format_date(day))
}

/// Writes and reads the Audit table.
#[derive(Debug, Clone)]
pub struct AuditStore {
    dynamodb: Client,
    table: TableName,
    retention_years: u32,
}

impl AuditStore {
    pub fn new(dynamodb: Client, table: TableName, retention_years: u32) -> Self {
        Self {
            dynamodb,
            table,
            retention_years,
        }
    }

    /// The store the environment names: [`TABLE_VARIABLE`] and [`RETENTION_VARIABLE`]
    /// (years, default [`DEFAULT_RETENTION_YEARS`]).
    pub fn from_lookup(
        dynamodb: Client,
        lookup: crate::config::Lookup<'_>,
    ) -> Result<Self, crate::config::ConfigError> {
        let table = crate::config::required_from(lookup, TABLE_VARIABLE)?;
        let years =
            crate::config::optional_from(lookup, RETENTION_VARIABLE, DEFAULT_RETENTION_YEARS)?;
        Ok(Self::new(dynamodb, TableName::new(table), years))
    }

    /// When an entry written at `at` expires.
    fn expiry(&self, at: Timestamp) -> i64 {
        let days = i64::from(self.retention_years) * 365 + i64::from(self.retention_years) / 4;
        at.plus(time::Duration::days(days)).unix_seconds()
    }

    /// The item of an entry: its fields, key, index keys and expiry.
    pub fn to_item(
        &self,
        entry: &AuditEntry,
    ) -> Result<HashMap<String, AttributeValue>, DataError> {
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(entry)?;
        item.retain(|_, value| !matches!(value, AttributeValue::Null(_)));
        item.insert("pk".into(), s(format!("EVT#{}", entry.id)));
        item.insert("subject_pk".into(), s(entry.subject.clone()));
        item.insert("actor_pk".into(), s(entry.actor_id.clone()));
        item.insert(
            "day_pk".into(),
            s(day_pk(entry.at.as_offset_date_time().date())),
        );
        item.insert("at_sk".into(), s(at_sk(entry.at, &entry.id)));
        item.insert("expires_at".into(), n(self.expiry(entry.at)));
        Ok(item)
    }

    /// Writes an entry once: `false` when its stream record was already written.
    pub async fn put(&self, entry: &AuditEntry) -> Result<bool, DataError> {
        let outcome = self
            .dynamodb
            .put_item()
            .table_name(self.table.as_str())
            .set_item(Some(self.to_item(entry)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        crate::dynamo::condition_held(outcome)
    }

    /// The index, partition key name and first partition of a list.
    fn partition(
        &self,
        query: &AuditQuery,
        day: Option<&str>,
    ) -> (&'static str, &'static str, String) {
        match &query.selector {
            Selector::Subject(subject) => (INDEX_BY_SUBJECT, "subject_pk", subject.clone()),
            Selector::Actor(actor) => (INDEX_BY_ACTOR, "actor_pk", actor.clone()),
            Selector::Time => {
                let first = query
                    .to
                    .unwrap_or_else(Timestamp::now)
                    .as_offset_date_time()
                    .date();
                let day = day.map_or_else(|| day_pk(first), str::to_owned);
                (INDEX_BY_DAY, "day_pk", day)
            }
        }
    }

    /// The day partition before `day` that the range still covers.
    fn previous_day(query: &AuditQuery, day: &str) -> Option<String> {
        let date = crate::accounts::model::parse_date(day.strip_prefix("DAY#")?).ok()?;
        let previous = date.previous_day()?;
        let from = query.from?.as_offset_date_time().date();
        (previous >= from).then(|| day_pk(previous))
    }

    /// Up to `limit` entries from `position`, newest first, and where the next page starts
    /// (`None`: the end). A page may hold fewer than `limit` with a next position when a
    /// sparse time range took [`MAX_QUERIES_PER_PAGE`] Queries.
    pub async fn page(
        &self,
        query: &AuditQuery,
        position: Option<Position>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<Position>), DataError> {
        let position = position.unwrap_or_default();
        let (index, pk_name, mut partition) = self.partition(query, position.day.as_deref());
        let low = query.from.map_or_else(
            || "0".to_owned(),
            |from| format!("{:016}", micros(from).max(0)),
        );
        let high = query.to.map_or_else(
            || "~".to_owned(),
            |to| format!("{:016}#~", micros(to).max(0)),
        );
        let now = Timestamp::now().unix_seconds();
        let mut start = position.start.map(key_item);
        let mut entries = Vec::new();
        for _ in 0..MAX_QUERIES_PER_PAGE {
            let output = self
                .dynamodb
                .query()
                .table_name(self.table.as_str())
                .index_name(index)
                .key_condition_expression("#pk = :pk AND at_sk BETWEEN :low AND :high")
                .expression_attribute_names("#pk", pk_name)
                .expression_attribute_values(":pk", s(partition.clone()))
                .expression_attribute_values(":low", s(low.clone()))
                .expression_attribute_values(":high", s(high.clone()))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - entries.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await?;
            for item in output.items.unwrap_or_default() {
                let live = crate::dynamo::attributes::number(&item, "expires_at")
                    .is_none_or(|at| at > now);
                if live {
                    entries.push(serde_dynamo::from_item(item)?);
                }
            }
            let day = (query.selector == Selector::Time).then(|| partition.clone());
            match output.last_evaluated_key {
                Some(key) if entries.len() >= limit => {
                    return Ok((
                        entries,
                        Some(Position {
                            day,
                            start: Some(string_key(&key)),
                        }),
                    ));
                }
                Some(key) => start = Some(key),
                None => match day.and_then(|day| Self::previous_day(query, &day)) {
                    Some(previous) if entries.len() >= limit => {
                        return Ok((
                            entries,
                            Some(Position {
                                day: Some(previous),
                                start: None,
                            }),
                        ));
                    }
                    Some(previous) => partition = previous,
                    None => return Ok((entries, None)),
                },
            }
        }
        let day = (query.selector == Selector::Time).then(|| partition.clone());
        Ok((
            entries,
            Some(Position {
                day,
                start: start.as_ref().map(string_key),
            }),
        ))
    }
}
