//! The reconciliation: the aggregates recomputed from the tables, offline, compared with the
//! stored ones. It Scans the accounts, payments and activities tables (parallel segments), so
//! it is a command (`make reconcile`), never a request path.

use aws_sdk_dynamodb::Client;
use futures::future::try_join_all;

use super::store::AggregateStore;
use super::tally::{contribution, AggregateKey, Tally, Tracked};
use crate::config::{TableName, Tables};
use crate::dynamo::for_each_page;
use crate::error::ApiError;

/// Parallel Scan segments per table.
const SEGMENTS: i32 = 4;

/// A counter whose stored value differs from the recomputed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub key: AggregateKey,
    pub counter: String,
    pub expected: i64,
    pub stored: i64,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} / {} {}: stored {}, recomputed {} (off by {})",
            self.key.period.key(),
            self.key.scope.key(),
            self.counter,
            self.stored,
            self.expected,
            self.stored - self.expected
        )
    }
}

async fn scan_segment(
    dynamodb: &Client,
    table: &TableName,
    tracked: Tracked,
    segment: i32,
) -> Result<Tally, ApiError> {
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
pub async fn recompute(dynamodb: &Client, tables: &Tables) -> Result<Tally, ApiError> {
    let sources = [
        (&tables.accounts, Tracked::Accounts),
        (&tables.payments, Tracked::Payments),
        (&tables.activities, Tracked::Activities),
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
            })
        })
        .collect()
}

/// Recomputes and compares: the drift of every counter (empty when the aggregates agree).
pub async fn reconcile(
    dynamodb: &Client,
    tables: &Tables,
    store: &AggregateStore,
) -> Result<Vec<Drift>, ApiError> {
    let (expected, stored) = futures::try_join!(recompute(dynamodb, tables), store.scan())?;
    Ok(drift(&expected, &stored))
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
            stored: 2
        }));
        assert!(found.contains(&Drift {
            key,
            counter: "status:paid".into(),
            expected: 0,
            stored: 1
        }));
        assert!(drift(&expected, &expected).is_empty());
    }
}
