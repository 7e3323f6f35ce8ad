//! The reconciliation: the aggregates recomputed from the tables, offline, compared with the
//! stored ones. It Scans the accounts, payments and activities tables (parallel segments), so
//! it is a command (`make reconcile`), never a request path.

use aws_sdk_dynamodb::Client;
use futures::future::try_join_all;

use super::store::{AggregateStore, Impossible};
use super::tally::{contribution, AggregateKey, Tally, Tracked};
use crate::config::{TableName, Tables};
use crate::dynamo::for_each_page;
use crate::dynamo::DataError;

/// Parallel Scan segments per table.
const SEGMENTS: i32 = 4;

/// A counter whose stored value differs from the recomputed one, or is impossible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub key: AggregateKey,
    pub counter: String,
    pub expected: i64,
    /// The stored value (saturated when it is impossible).
    pub stored: i64,
    /// The stored number as DynamoDB holds it, when it is no 64-bit integer: a total no
    /// bounded amounts can add up to. Always reported (even if the recomputed value
    /// saturates too), never dropped; `--repair` conditions on this text.
    pub impossible: Option<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(stored) = &self.impossible {
            return write!(
                f,
                "{} / {} {}: stored {stored}, an impossible total (beyond a 64-bit integer), recomputed {}",
                self.key.period.key(),
                self.key.scope.key(),
                self.counter,
                self.expected
            );
        }
        write!(
            f,
            "{} / {} {}: stored {}, recomputed {} (off by {})",
            self.key.period.key(),
            self.key.scope.key(),
            self.counter,
            self.stored,
            self.expected,
            i128::from(self.stored) - i128::from(self.expected)
        )
    }
}

async fn scan_segment(
    dynamodb: &Client,
    table: &TableName,
    tracked: Tracked,
    segment: i32,
) -> Result<Tally, DataError> {
    let scan = dynamodb
        .scan()
        .table_name(table.as_str())
        .segment(segment)
        .total_segments(SEGMENTS);
    let mut tally = Tally::default();
    for_each_page(scan, |items| {
        for item in items {
            tally.merge(&contribution(tracked, &item), 1);
        }
        Ok(true)
    })
    .await?;
    Ok(tally)
}

/// The aggregates as the tables say they should be.
pub async fn recompute(dynamodb: &Client, tables: &Tables) -> Result<Tally, DataError> {
    let sources = [
        (&tables.accounts, Tracked::Accounts),
        (&tables.payments, Tracked::Payments),
        (&tables.activities, Tracked::Activities),
        (&tables.plans, Tracked::Plans),
    ];
    let scans = sources.iter().flat_map(|(table, tracked)| {
        (0..SEGMENTS).map(move |segment| scan_segment(dynamodb, table, *tracked, segment))
    });
    let mut total = Tally::default();
    for part in try_join_all(scans).await? {
        total.merge(&part, 1);
    }
    Ok(total)
}

/// Every counter where `stored` and `expected` differ (a counter absent on one side is 0).
pub fn drift(expected: &Tally, stored: &Tally) -> Vec<Drift> {
    let mut difference = stored.clone();
    difference.merge(expected, -1);
    let value = |tally: &Tally, key: &AggregateKey, counter: &str| {
        tally
            .items()
            .get(key)
            .and_then(|c| c.get(counter))
            .copied()
            .unwrap_or(0)
    };
    difference
        .items()
        .iter()
        .flat_map(|(key, counters)| {
            counters.keys().map(move |counter| Drift {
                key: *key,
                counter: counter.clone(),
                expected: value(expected, key, counter),
                stored: value(stored, key, counter),
                impossible: None,
            })
        })
        .collect()
}

/// Recomputes and compares: the drift of every counter (empty when the aggregates agree),
/// and every stored counter beyond `i64` as an impossible total.
pub async fn reconcile(
    dynamodb: &Client,
    tables: &Tables,
    store: &AggregateStore,
) -> Result<Vec<Drift>, DataError> {
    let (expected, (stored, impossible)) =
        futures::try_join!(recompute(dynamodb, tables), store.scan_checked())?;
    Ok(with_impossible(
        drift(&expected, &stored),
        &expected,
        impossible,
    ))
}

/// `drift` with each impossible counter reported once, as impossible.
fn with_impossible(
    mut drift: Vec<Drift>,
    expected: &Tally,
    impossible: Vec<Impossible>,
) -> Vec<Drift> {
    for found in impossible {
        drift.retain(|d| !(d.key == found.key && d.counter == found.counter));
        let recomputed = expected
            .items()
            .get(&found.key)
            .and_then(|c| c.get(&found.counter))
            .copied()
            .unwrap_or(0);
        let stored = if found.stored.trim_start().starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        };
        drift.push(Drift {
            key: found.key,
            counter: found.counter,
            expected: recomputed,
            stored,
            impossible: Some(found.stored),
        });
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::super::tally::{Period, Scope};
    use super::*;

    #[test]
    fn drift_names_each_differing_counter_with_both_values() {
        let key = AggregateKey {
            period: Period::State,
            scope: Scope::All,
        };
        let mut expected = Tally::default();
        expected.add(key, "accounts", 3);
        expected.add(key, "status:active", 3);
        let mut stored = Tally::default();
        stored.add(key, "accounts", 3);
        stored.add(key, "status:active", 2);
        stored.add(key, "status:paid", 1);
        let found = drift(&expected, &stored);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.contains(&Drift {
            key,
            counter: "status:active".into(),
            expected: 3,
            stored: 2,
            impossible: None,
        }));
        assert!(found.contains(&Drift {
            key,
            counter: "status:paid".into(),
            expected: 0,
            stored: 1,
            impossible: None,
        }));
        assert!(drift(&expected, &expected).is_empty());
    }
}
