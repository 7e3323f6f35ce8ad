//! DynamoDB Local's own ceiling for the mix's calls: the operations the run's functions made
//! (counted by the call recorder, per table and operation), in the same proportions and with
//! the same read/write units per call, sent straight to DynamoDB Local on a scratch table
//! (no gateway, no function), at rising concurrency. The best rate whose p99 stays under
//! the bound is the ceiling the API's sustained rate is compared with.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use crate::stacklog::CallFigures;
use crate::stats::Latency;

/// One kind of call of the mix and its share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub operation: String,
    pub share: f64,
    /// Items a call reads or writes, from its units per call (1 KB items: 8 per read unit
    /// eventually consistent, 1 per write unit; a transaction's units are doubled).
    pub items: usize,
}

/// The calls of a run in proportion, from `table operation` → figures.
pub fn mix_of(calls: &BTreeMap<String, CallFigures>) -> Vec<Call> {
    let mut by_operation: BTreeMap<String, CallFigures> = BTreeMap::new();
    for (key, f) in calls {
        let operation = key.rsplit(' ').next().unwrap_or(key).to_owned();
        let e = by_operation.entry(operation).or_default();
        e.calls += f.calls;
        e.read_units += f.read_units;
        e.write_units += f.write_units;
    }
    let total: f64 = by_operation.values().map(|f| f.calls).sum();
    by_operation
        .into_iter()
        .filter(|(_, f)| f.calls > 0.0)
        .map(|(operation, f)| {
            let rcu = f.read_units / f.calls;
            let wcu = f.write_units / f.calls;
            let items = match operation.as_str() {
                "Query" | "Scan" | "BatchGetItem" => (rcu * 8.0).round(),
                "TransactWriteItems" => (wcu / 2.0).round(),
                "BatchWriteItem" => wcu.round(),
                _ => 1.0,
            };
            Call {
                share: f.calls / total.max(1.0),
                items: items.clamp(1.0, 25.0) as usize,
                operation,
            }
        })
        .collect()
}

/// The ceiling found: at each concurrency, calls per second and latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub concurrency: usize,
    pub calls_per_second: f64,
    pub latency: Latency,
    pub errors: u64,
}

const ITEMS: usize = 2_000;
const SHARDS: usize = 8;
const PAD: usize = 900; // about 1 KB per item

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// Creates the scratch table (a GSI over 8 shard keys, like the accounts' list index) and
/// fills it with 1 KB items.
pub async fn prepare(client: &Client, table: &str) -> Result<()> {
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .attribute_definitions(attr("gpk")?)
        .attribute_definitions(attr("gsk")?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("gsi1")
                .key_schema(key("gpk", KeyType::Hash)?)
                .key_schema(key("gsk", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()?,
        )
        .send()
        .await?;
    let pad = "x".repeat(PAD);
    futures::future::try_join_all((0..8).map(|w| {
        let (client, pad) = (client.clone(), pad.clone());
        async move {
            for n in (w..ITEMS).step_by(8) {
                client
                    .put_item()
                    .table_name(table)
                    .set_item(Some(item(n, &pad)))
                    .send()
                    .await?;
            }
            Ok::<_, aws_sdk_dynamodb::Error>(())
        }
    }))
    .await?;
    Ok(())
}

fn item(n: usize, pad: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("pk", s(format!("ITEM#{n}"))),
        ("sk", s("META")),
        ("gpk", s(format!("SHARD#{}", n % SHARDS))),
        ("gsk", s(format!("{n:08}"))),
        ("pad", s(pad)),
        ("counter", AttributeValue::N("0".into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One call of `kind` on item `n`.
async fn call(
    client: &Client,
    table: &str,
    kind: &Call,
    n: usize,
    pad: &str,
) -> Result<(), aws_sdk_dynamodb::Error> {
    let k = |n: usize| {
        [
            ("pk".to_owned(), s(format!("ITEM#{}", n % ITEMS))),
            ("sk".to_owned(), s("META")),
        ]
        .into()
    };
    match kind.operation.as_str() {
        "Query" | "Scan" => {
            client
                .query()
                .table_name(table)
                .index_name("gsi1")
                .key_condition_expression("gpk = :p")
                .expression_attribute_values(":p", s(format!("SHARD#{}", n % SHARDS)))
                .limit(kind.items as i32)
                .send()
                .await?;
        }
        "PutItem" | "DeleteItem" => {
            client
                .put_item()
                .table_name(table)
                .set_item(Some(item(ITEMS + n, pad)))
                .send()
                .await?;
        }
        "UpdateItem" => {
            client
                .update_item()
                .table_name(table)
                .set_key(Some(k(n)))
                .update_expression("ADD #c :one")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#c", "counter")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .send()
                .await?;
        }
        "TransactWriteItems" | "BatchWriteItem" => {
            let mut items = vec![TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(table)
                        .set_key(Some(k(n)))
                        .update_expression("ADD #c :one")
                        .condition_expression("attribute_exists(pk)")
                        .expression_attribute_names("#c", "counter")
                        .expression_attribute_values(":one", AttributeValue::N("1".into()))
                        .build()?,
                )
                .build()];
            for extra in 1..kind.items.max(2) {
                items.push(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(table)
                                .set_item(Some(item(ITEMS * 2 + n * 25 + extra, pad)))
                                .build()?,
                        )
                        .build(),
                );
            }
            client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await?;
        }
        _ => {
            client
                .get_item()
                .table_name(table)
                .set_key(Some(k(n)))
                .send()
                .await?;
        }
    }
    Ok(())
}

/// Runs the mix at `concurrency` for `seconds`, closed loop.
pub async fn level(
    client: &Client,
    table: &str,
    mix: &[Call],
    concurrency: usize,
    seconds: f64,
) -> Level {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers = (0..concurrency).map(|w| {
        let (client, table, mix, stop) =
            (client.clone(), table.to_owned(), mix.to_vec(), stop.clone());
        tokio::spawn(async move {
            let pad = "x".repeat(PAD);
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            let mut n = w * 7919;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let kind = choose(
                    &mix,
                    (n.wrapping_mul(2654435761) % 10_000) as f64 / 10_000.0,
                );
                let t = Instant::now();
                if call(&client, &table, kind, n, &pad).await.is_err() {
                    errors += 1;
                }
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            (latencies, errors)
        })
    });
    let workers: Vec<_> = workers.collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut all, mut errors) = (Vec::new(), 0);
    for w in workers {
        if let Ok((l, e)) = w.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Level {
        concurrency,
        calls_per_second: all.len() as f64 / elapsed,
        latency: Latency::of(&all),
        errors,
    }
}

/// The call a uniform draw `u` in `[0, 1)` picks.
pub fn choose(mix: &[Call], u: f64) -> &Call {
    let mut left = u;
    for c in mix {
        if left < c.share {
            return c;
        }
        left -= c.share;
    }
    &mix[mix.len() - 1]
}

/// The best calls/s among `levels` whose p99 is under `p99_bound_ms` and without errors.
pub fn ceiling(levels: &[Level], p99_bound_ms: f64) -> Option<&Level> {
    levels
        .iter()
        .filter(|l| l.latency.p99 < p99_bound_ms && l.errors == 0)
        .max_by(|a, b| a.calls_per_second.total_cmp(&b.calls_per_second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_and_items_per_call() {
        let f = |calls, read_units, write_units| CallFigures {
            calls,
            read_units,
            write_units,
            latency_ms_sum: 0.0,
        };
        let calls = BTreeMap::from([
            ("Accounts GetItem".to_owned(), f(50.0, 25.0, 0.0)),
            ("Payments GetItem".to_owned(), f(10.0, 5.0, 0.0)),
            ("Accounts Query".to_owned(), f(20.0, 40.0, 0.0)),
            (
                "Payments TransactWriteItems".to_owned(),
                f(20.0, 0.0, 120.0),
            ),
        ]);
        let mix = mix_of(&calls);
        let by = |op: &str| mix.iter().find(|c| c.operation == op).unwrap().clone();
        assert_eq!(by("GetItem").share, 0.6);
        assert_eq!(by("Query").items, 16, "2 RCU a query: 16 KB");
        assert_eq!(by("TransactWriteItems").items, 3, "6 WCU, doubled: 3 items");
        assert_eq!(choose(&mix, 0.0).operation, "GetItem");
        assert_eq!(choose(&mix, 0.99).operation, "TransactWriteItems");
    }

    #[test]
    fn the_ceiling_is_the_best_rate_within_the_bound() {
        let l = |concurrency, calls_per_second, p99, errors| Level {
            concurrency,
            calls_per_second,
            latency: Latency {
                p99,
                ..Default::default()
            },
            errors,
        };
        let levels = [
            l(8, 500.0, 20.0, 0),
            l(32, 900.0, 120.0, 0),
            l(64, 950.0, 400.0, 0),
            l(16, 990.0, 50.0, 3),
        ];
        assert_eq!(ceiling(&levels, 250.0).unwrap().concurrency, 32);
        assert!(ceiling(&levels[2..3], 250.0).is_none());
    }
}
