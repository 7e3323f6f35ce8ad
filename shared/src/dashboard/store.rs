//! The Aggregates table: applying stream changes exactly once, and reading counters.
//!
//! # Exactly once per stream record
//!
//! A stream batch can be delivered again (a failed invocation, a bisected retry, a
//! `batchItemFailures` resume), so every change that moves a counter writes a marker item
//! `MARK#<eventID>` under `attribute_not_exists` in the same `TransactWriteItems` as its
//! `ADD`s. Changes are grouped (up to 100 items: the markers plus the aggregate items the
//! group touches, with the group's deltas summed per item), which also keeps the few hot
//! items (`STATE`/`ALL`, today's `DAY`/`ALL`) at one write per group instead of one per
//! record. When a group is cancelled because some markers exist, those records were applied
//! by an earlier delivery: they are dropped and the rest is written again. Markers expire
//! after [`MARKER_TTL_DAYS`] (streams keep records for 24 hours).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use super::tally::{contribution, AggregateKey, Counters, Item, Period, Scope, Tally, Tracked};
use crate::config::TableName;
use crate::dynamo::attributes::{s, text};
use crate::dynamo::for_each_page;
use crate::dynamo::retry::{backoff, cancellation_codes, is_conflict, CONFLICT_RETRIES};
use crate::dynamo::DataError;

/// How long an applied record's marker is kept.
pub const MARKER_TTL_DAYS: i64 = 3;
/// `TransactWriteItems` takes at most 100 items.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Attributes of an aggregate item that are not counters.
const KEY_ATTRIBUTES: [&str; 3] = ["pk", "sk", "expires_at"];

/// One stream record of a tracked table.
#[derive(Debug, Clone)]
pub struct Change {
    /// The stream record's `eventID`: what makes applying it idempotent.
    pub event_id: String,
    pub table: Tracked,
    pub old: Option<Item>,
    pub new: Option<Item>,
}

impl Change {
    /// What this change does to the aggregates.
    pub fn delta(&self) -> Tally {
        let of = |image: &Option<Item>| {
            image
                .as_ref()
                .map(|item| contribution(self.table, item))
                .unwrap_or_default()
        };
        Tally::change(&of(&self.old), &of(&self.new))
    }
}

/// What [`AggregateStore::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Records whose deltas were written now.
    pub applied: usize,
    /// Records an earlier delivery had already applied (skipped).
    pub duplicates: usize,
    /// The scopes whose counters moved (whom `dashboard.changed` concerns).
    pub scopes: BTreeSet<Scope>,
}

fn marker_pk(event_id: &str) -> String {
    format!("MARK#{event_id}")
}

fn key_of(key: &AggregateKey) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(key.period.key())),
        ("sk".to_owned(), s(key.scope.key())),
    ])
}

/// A stored counter that is no 64-bit integer (DynamoDB numbers have 38 digits, so `ADD`
/// can carry a counter past `i64`): the aggregates read it saturated, the reconciliation
/// reports it as impossible with the stored text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impossible {
    pub key: AggregateKey,
    pub counter: String,
    /// The number as DynamoDB holds it.
    pub stored: String,
}

/// A stored number as an `i64`: beyond the range it saturates (and is logged), so a total
/// never silently vanishes from the dashboard. `None` only for text that is no number.
fn counter_value(text: &str) -> Option<(i64, bool)> {
    if let Ok(n) = text.parse::<i64>() {
        return Some((n, false));
    }
    // DynamoDB numbers: up to 38 significant digits, maybe a fraction or an exponent.
    let value: f64 = text.parse().ok()?;
    let saturated = if value.is_sign_negative() {
        i64::MIN
    } else {
        i64::MAX
    };
    Some((saturated, true))
}

/// The counters of an aggregate item; `None` for other items (markers).
fn parse_item(item: &Item) -> Option<(AggregateKey, Counters)> {
    parse_checked(item).map(|(key, counters, _)| (key, counters))
}

/// [`parse_item`] and the counters of the item that are no `i64` (saturated in the
/// counters, logged).
fn parse_checked(item: &Item) -> Option<(AggregateKey, Counters, Vec<Impossible>)> {
    let key = AggregateKey {
        period: Period::parse(text(item, "pk")?)?,
        scope: Scope::parse(text(item, "sk")?)?,
    };
    let mut impossible = Vec::new();
    let counters = item
        .iter()
        .filter(|(name, _)| !KEY_ATTRIBUTES.contains(&name.as_str()))
        .filter_map(|(name, value)| match value {
            AttributeValue::N(n) => {
                let (value, saturated) = counter_value(n)?;
                if saturated {
                    tracing::error!(
                        period = %key.period.key(),
                        scope = %key.scope.key(),
                        counter = %name,
                        stored = %n,
                        "stored dashboard counter is beyond i64; read saturated"
                    );
                    impossible.push(Impossible {
                        key,
                        counter: name.clone(),
                        stored: n.clone(),
                    });
                }
                Some((name.clone(), value))
            }
            _ => None,
        })
        .collect();
    Some((key, counters, impossible))
}

/// The Aggregates table.
#[derive(Debug, Clone)]
pub struct AggregateStore {
    dynamodb: Client,
    table: TableName,
}

impl AggregateStore {
    pub fn new(dynamodb: Client, table: TableName) -> Self {
        Self { dynamodb, table }
    }

    /// Applies every change exactly once (see the module documentation). Changes that move
    /// no counter write nothing. An error leaves each group either applied or not, so the
    /// caller may retry the whole batch.
    pub async fn apply(&self, changes: &[Change]) -> Result<Applied, DataError> {
        let mut applied = Applied::default();
        // A record delivered twice in one call is applied once (one transaction cannot
        // write the same marker twice).
        let mut seen = BTreeSet::new();
        let mut deltas: Vec<(&str, Tally)> = Vec::with_capacity(changes.len());
        for change in changes {
            if !seen.insert(change.event_id.as_str()) {
                applied.duplicates += 1;
                continue;
            }
            let delta = change.delta();
            if !delta.is_empty() {
                deltas.push((change.event_id.as_str(), delta));
            }
        }
        let mut group: Vec<&(&str, Tally)> = Vec::new();
        let mut touched: BTreeSet<AggregateKey> = BTreeSet::new();
        for entry in &deltas {
            applied.scopes.extend(entry.1.scopes());
            let keys: BTreeSet<AggregateKey> = entry.1.items().keys().copied().collect();
            let grown = touched.union(&keys).count();
            if !group.is_empty() && group.len() + 1 + grown > MAX_TRANSACTION_ITEMS {
                self.apply_group(std::mem::take(&mut group), &mut applied)
                    .await?;
                touched.clear();
            }
            touched.extend(keys);
            group.push(entry);
        }
        if !group.is_empty() {
            self.apply_group(group, &mut applied).await?;
        }
        Ok(applied)
    }

    /// One transaction: a marker per record and the summed deltas; records found already
    /// applied are dropped and the rest tried again.
    async fn apply_group(
        &self,
        mut group: Vec<&(&str, Tally)>,
        applied: &mut Applied,
    ) -> Result<(), DataError> {
        let expires_at =
            time::OffsetDateTime::now_utc().unix_timestamp() + MARKER_TTL_DAYS * 86_400;
        let mut conflicts = 0;
        while !group.is_empty() {
            let mut sum = Tally::default();
            for (_, delta) in &group {
                sum.merge(delta, 1);
            }
            let mut items = Vec::with_capacity(group.len() + sum.items().len());
            for (event_id, _) in &group {
                let marker = HashMap::from([
                    ("pk".to_owned(), s(marker_pk(event_id))),
                    ("sk".to_owned(), s("-")),
                    (
                        "expires_at".to_owned(),
                        AttributeValue::N(expires_at.to_string()),
                    ),
                ]);
                let put = Put::builder()
                    .table_name(self.table.as_str())
                    .set_item(Some(marker))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(DataError::failed)?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            for (key, counters) in sum.items() {
                let mut update = Update::builder()
                    .table_name(self.table.as_str())
                    .set_key(Some(key_of(key)));
                let mut clauses = Vec::with_capacity(counters.len());
                for (i, (counter, n)) in counters.iter().enumerate() {
                    clauses.push(format!("#c{i} :v{i}"));
                    update = update
                        .expression_attribute_names(format!("#c{i}"), counter)
                        .expression_attribute_values(
                            format!(":v{i}"),
                            AttributeValue::N(n.to_string()),
                        );
                }
                let update = update
                    .update_expression(format!("ADD {}", clauses.join(", ")))
                    .build()
                    .map_err(DataError::failed)?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            if sum.is_empty() {
                // The deltas cancel out: only the markers are written.
                tracing::debug!(records = group.len(), "deltas cancel out");
            }
            let result = self
                .dynamodb
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let err = match result {
                Ok(_) => {
                    applied.applied += group.len();
                    return Ok(());
                }
                Err(err) => err,
            };
            if let Some(codes) = cancellation_codes(&err) {
                let before = group.len();
                let mut index = 0;
                group.retain(|_| {
                    let seen =
                        codes.get(index).map(String::as_str) == Some("ConditionalCheckFailed");
                    index += 1;
                    !seen
                });
                if group.len() < before {
                    applied.duplicates += before - group.len();
                    continue;
                }
            }
            if is_conflict(&err) && conflicts < CONFLICT_RETRIES {
                tokio::time::sleep(backoff(conflicts)).await;
                conflicts += 1;
                continue;
            }
            return Err(err.into());
        }
        Ok(())
    }

    /// The counters of `keys` (absent items are absent from the answer).
    pub async fn get(
        &self,
        keys: &[AggregateKey],
    ) -> Result<BTreeMap<AggregateKey, Counters>, DataError> {
        let items = crate::dynamo::batch_get_all(
            &self.dynamodb,
            self.table.as_str(),
            keys.iter().map(key_of).collect(),
        )
        .await?;
        Ok(items.iter().filter_map(parse_item).collect())
    }

    /// Every scope's counters of one period (a Query on its partition).
    pub async fn period(&self, period: Period) -> Result<BTreeMap<Scope, Counters>, DataError> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.table.as_str())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(period.key()));
        let mut found = BTreeMap::new();
        for_each_page(query, |items| {
            for item in items {
                if let Some((key, counters)) = parse_item(&item) {
                    found.insert(key.scope, counters);
                }
            }
            Ok(true)
        })
        .await?;
        Ok(found)
    }

    /// Every aggregate item (markers left out): what the reconciliation compares. A Scan,
    /// for the offline command only.
    pub async fn scan(&self) -> Result<Tally, DataError> {
        Ok(self.scan_checked().await?.0)
    }

    /// [`AggregateStore::scan`] and every stored counter that is no `i64` (read saturated
    /// into the tally).
    pub async fn scan_checked(&self) -> Result<(Tally, Vec<Impossible>), DataError> {
        let scan = self.dynamodb.scan().table_name(self.table.as_str());
        let mut tally = Tally::default();
        let mut impossible = Vec::new();
        for_each_page(scan, |items| {
            for item in items {
                if let Some((key, counters, out_of_range)) = parse_checked(&item) {
                    for (counter, n) in counters {
                        tally.add(key, &counter, n);
                    }
                    impossible.extend(out_of_range);
                }
            }
            Ok(true)
        })
        .await?;
        Ok((tally, impossible))
    }
}
