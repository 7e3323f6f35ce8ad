//! Metrics, gathered per invocation and written as CloudWatch Embedded Metric Format records
//! when the invocation ends.
//!
//! An invocation runs inside [`scope`]; anything it does records into that scope
//! ([`record`], [`count`], and every DynamoDB call through `dynamo::recorder`), and the
//! scope's [`Invocation`] is written at the end with [`Invocation::emit`]: one JSON line per
//! group of metrics sharing their dimensions. The scope is a tokio task-local, so two
//! invocations served at once by one process never mix their figures. A record made outside
//! any scope (a test calling a store directly, a call at init) is not a metric of any
//! request and is dropped.
//!
//! What is emitted is listed once, in [`names`].

pub mod emf;
pub mod names;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use emf::{MetricValues, Record};
use names::{dimension, Metric};

static FUNCTION: OnceLock<&'static str> = OnceLock::new();

/// Names this process's function (the `Function` dimension), once, at init.
pub fn set_function(name: &'static str) {
    let _ = FUNCTION.set(name);
}

/// The function this process serves, as [`set_function`] named it.
pub fn function() -> &'static str {
    FUNCTION.get().copied().unwrap_or("unknown")
}

tokio::task_local! {
    static INVOCATION: RefCell<Invocation>;
}

/// The DynamoDB calls of one invocation, for its log line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallTotals {
    pub calls: u32,
    pub read_units: f64,
    pub write_units: f64,
    /// The calls' latencies added up, milliseconds: the request's time in DynamoDB, which
    /// the benchmarks subtract to get our own (gateway and function). Calls made at once
    /// (`tokio::join!`) each count in full, so for such a request this is more than the wall
    /// time they took and "ours" comes out smaller than it is; the benchmarks say so.
    pub latency_ms: f64,
}

/// Dimension values by dimension name.
pub type DimensionValues = Vec<(&'static str, String)>;

/// Dimension sets and their values: what a group of metrics shares in one record.
type GroupKey = (Vec<Vec<&'static str>>, DimensionValues);

/// What one invocation recorded.
#[derive(Debug, Default)]
pub struct Invocation {
    /// Dimension values every metric of the invocation may use (the route).
    dimensions: DimensionValues,
    groups: BTreeMap<GroupKey, Vec<MetricValues>>,
    dynamodb: CallTotals,
}

impl Invocation {
    fn new(dimensions: DimensionValues) -> Self {
        Self {
            dimensions,
            ..Self::default()
        }
    }

    /// The DynamoDB calls made so far and the capacity they consumed.
    pub fn dynamodb(&self) -> CallTotals {
        self.dynamodb
    }

    /// Adds one value of `metric`. Its dimension values come from `dimensions`, then from
    /// the scope, then (`Function`) from the process; a dimension set whose values are not
    /// all known is left out, and so is a metric with no set left.
    pub fn add(
        &mut self,
        metric: &'static Metric,
        dimensions: &[(&'static str, &str)],
        value: f64,
    ) {
        let lookup = |name: &str| -> Option<String> {
            dimensions
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| {
                    self.dimensions
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| v.clone())
                })
                .or_else(|| (name == dimension::FUNCTION).then(|| function().to_owned()))
        };
        let sets: Vec<Vec<&'static str>> = metric
            .dimensions
            .iter()
            .filter(|set| set.iter().all(|name| lookup(name).is_some()))
            .map(|set| set.to_vec())
            .collect();
        if sets.is_empty() {
            return;
        }
        let mut values: DimensionValues = Vec::new();
        for name in sets.iter().flatten() {
            if !values.iter().any(|(n, _)| n == name) {
                values.push((name, lookup(name).unwrap_or_default()));
            }
        }
        values.sort();
        let group = self.groups.entry((sets, values)).or_default();
        match group.iter_mut().find(|m| m.name == metric.name) {
            Some(existing) => existing.values.push(value),
            None => group.push(MetricValues {
                name: metric.name,
                unit: metric.unit,
                values: vec![value],
            }),
        }
    }

    /// Counts one DynamoDB call in the invocation's totals (its metrics go through
    /// [`Invocation::add`]).
    fn add_call(&mut self, call: &DynamoDbCall<'_>) {
        self.dynamodb.calls += 1;
        self.dynamodb.read_units += call.read_units;
        self.dynamodb.write_units += call.write_units;
        self.dynamodb.latency_ms += call.latency_ms;
    }

    /// The EMF records: one per group of metrics sharing dimensions. `properties` go on the
    /// record that holds `anchor` (the request's own record, which is then its log line), or
    /// on a record of their own when no group holds it; that record comes first (its
    /// directive is then the first of the line it shares, see [`emf::pack_lines`]).
    pub fn into_records(
        self,
        anchor: Option<(&'static Metric, Map<String, Value>)>,
    ) -> Vec<Record> {
        let mut records: Vec<Record> = self
            .groups
            .into_iter()
            .map(|((dimension_sets, dimensions), metrics)| Record {
                dimension_sets,
                dimensions,
                metrics,
                properties: Map::new(),
            })
            .collect();
        if let Some((metric, properties)) = anchor {
            match records
                .iter()
                .position(|record| record.metrics.iter().any(|m| m.name == metric.name))
            {
                Some(i) => {
                    records[i].properties = properties;
                    records[..=i].rotate_right(1);
                }
                None => records.insert(
                    0,
                    Record {
                        properties,
                        ..Record::default()
                    },
                ),
            }
        }
        records
    }

    /// Writes the records to stdout, where Lambda hands them to CloudWatch Logs (and the
    /// local gateway to its metrics page). Each line is written whole, so concurrent log
    /// lines never interleave with it.
    pub fn emit(self, anchor: Option<(&'static Metric, Map<String, Value>)>) {
        let timestamp_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(i64::MAX);
        let mut out = String::new();
        for line in emf::pack_lines(&self.into_records(anchor), timestamp_ms) {
            out.push_str(&line);
            out.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        // Nowhere to report a failed write to stdout; the invocation's answer matters more.
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

/// Runs `invocation` with a metrics scope whose records carry `dimensions` (e.g. the route);
/// answers its output and what it recorded.
pub async fn scope<F: Future>(
    dimensions: DimensionValues,
    invocation: F,
) -> (F::Output, Invocation) {
    INVOCATION
        .scope(RefCell::new(Invocation::new(dimensions)), async {
            let output = invocation.await;
            let recorded = INVOCATION.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
            (output, recorded)
        })
        .await
}

/// [`scope`] for a worker invocation (an SQS batch, a stream batch, a schedule): runs it and
/// writes what it recorded.
pub async fn emit_after<F: Future>(invocation: F) -> F::Output {
    let (output, recorded) = scope(Vec::new(), invocation).await;
    recorded.emit(None);
    output
}

/// A duration in milliseconds to a tenth of a millisecond: what a latency graph or alarm
/// can use, in fewer log bytes than the 15 digits of an `f64`.
pub fn round_ms(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// Records one value of `metric` in the current invocation, with `dimensions` beyond those
/// the scope and the process give (e.g. the currency of a payment).
pub fn record(metric: &'static Metric, dimensions: &[(&'static str, &str)], value: f64) {
    let _ = INVOCATION.try_with(|cell| cell.borrow_mut().add(metric, dimensions, value));
}

/// Counts one occurrence of `metric` in the current invocation.
pub fn count(metric: &'static Metric) {
    record(metric, &[], 1.0);
}

/// One DynamoDB call as the call recorder saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoDbCall<'a> {
    pub operation: &'a str,
    pub table: &'a str,
    pub latency_ms: f64,
    pub read_units: f64,
    pub write_units: f64,
    /// Attempts refused for throughput (retried by the SDK or not).
    pub throttled_attempts: u32,
    pub outcome: CallOutcome,
}

/// How a DynamoDB call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    /// Refused by a condition: an expected outcome of optimistic concurrency.
    ConditionalCheckFailed,
    /// Refused for throughput after the SDK's retries.
    Throttled,
    Error,
}

/// Records a DynamoDB call in the current invocation: its metrics and the totals for the
/// invocation's log line.
pub fn record_dynamodb_call(call: &DynamoDbCall<'_>) {
    use names::*;
    let _ = INVOCATION.try_with(|cell| {
        let mut invocation = cell.borrow_mut();
        let dims = [
            (dimension::TABLE, call.table),
            (dimension::OPERATION, call.operation),
        ];
        invocation.add(&DYNAMODB_CALLS, &dims, 1.0);
        invocation.add(&DYNAMODB_LATENCY, &dims, round_ms(call.latency_ms));
        if call.read_units > 0.0 {
            invocation.add(&DYNAMODB_READ_UNITS, &dims, call.read_units);
        }
        if call.write_units > 0.0 {
            invocation.add(&DYNAMODB_WRITE_UNITS, &dims, call.write_units);
        }
        if call.throttled_attempts > 0 {
            invocation.add(
                &DYNAMODB_THROTTLES,
                &dims,
                f64::from(call.throttled_attempts),
            );
        }
        match call.outcome {
            CallOutcome::ConditionalCheckFailed => {
                invocation.add(&DYNAMODB_CONDITIONAL_FAILURES, &dims, 1.0)
            }
            CallOutcome::Error => invocation.add(&DYNAMODB_ERRORS, &dims, 1.0),
            CallOutcome::Ok | CallOutcome::Throttled => {}
        }
        invocation.add_call(call);
    });
}

#[cfg(test)]
mod tests {
    use super::names::*;
    use super::*;

    fn value_of(records: &[Record], metric: &str) -> Vec<(DimensionValues, Vec<f64>)> {
        records
            .iter()
            .flat_map(|r| {
                r.metrics
                    .iter()
                    .filter(|m| m.name == metric)
                    .map(|m| (r.dimensions.clone(), m.values.clone()))
            })
            .collect()
    }

    #[tokio::test]
    async fn a_scope_gathers_its_own_records_only() {
        set_function("accounts");
        let route = vec![(dimension::ROUTE, "GET /accounts/{id}".to_owned())];
        let ((), first) = scope(route.clone(), async {
            record(&API_LATENCY, &[], 3.0);
            record(&API_LATENCY, &[], 5.0);
            count(&API_REQUESTS);
            record(&PAYMENT_AMOUNT, &[(dimension::CURRENCY, "USD")], 1250.0);
            record(&PAYMENT_AMOUNT, &[(dimension::CURRENCY, "EUR")], 10.0);
        })
        .await;
        let ((), second) = scope(Vec::new(), async { count(&LOGINS_LOCKED_OUT) }).await;
        // Outside any scope nothing is recorded, and nothing fails.
        count(&LOGINS_LOCKED_OUT);

        let records = first.into_records(None);
        let latency = value_of(&records, "ApiLatency");
        assert_eq!(latency.len(), 1, "both values in one record");
        assert_eq!(latency[0].1, [3.0, 5.0]);
        assert_eq!(
            latency[0].0,
            [
                ("Function", "accounts".to_owned()),
                ("Route", "GET /accounts/{id}".to_owned())
            ]
        );
        let amounts = value_of(&records, "PaymentAmount");
        assert_eq!(amounts.len(), 2, "one record per currency");
        assert!(value_of(&records, "LoginsLockedOut").is_empty());
        assert_eq!(
            value_of(&second.into_records(None), "LoginsLockedOut").len(),
            1
        );
    }

    #[tokio::test]
    async fn sets_without_their_dimension_values_are_left_out() {
        set_function("scheduler");
        let ((), recorded) = scope(Vec::new(), async {
            // No route in a worker's scope: only the [Function] and [] sets remain.
            count(&API_REQUESTS);
            // No currency for a [Currency]-only metric: nothing.
            count(&PAYMENT_AMOUNT);
        })
        .await;
        let records = recorded.into_records(None);
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].dimension_sets,
            vec![vec!["Function"], Vec::<&str>::new()]
        );
    }

    #[tokio::test]
    async fn dynamodb_calls_add_up_for_the_log_line() {
        let call = |operation, outcome, read_units| DynamoDbCall {
            operation,
            table: "accounts",
            latency_ms: 2.0,
            read_units,
            write_units: 0.0,
            throttled_attempts: 0,
            outcome,
        };
        let ((), recorded) = scope(Vec::new(), async {
            record_dynamodb_call(&call("GetItem", CallOutcome::Ok, 0.5));
            record_dynamodb_call(&call("GetItem", CallOutcome::Ok, 1.0));
            record_dynamodb_call(&call(
                "UpdateItem",
                CallOutcome::ConditionalCheckFailed,
                0.0,
            ));
        })
        .await;
        assert_eq!(
            recorded.dynamodb(),
            CallTotals {
                calls: 3,
                read_units: 1.5,
                write_units: 0.0,
                latency_ms: 6.0,
            }
        );
        let records = recorded.into_records(None);
        let conditional = value_of(&records, "DynamoDbConditionalFailures");
        assert_eq!(conditional.len(), 1);
        assert!(conditional[0]
            .0
            .contains(&("Operation", "UpdateItem".to_owned())));
        assert!(value_of(&records, "DynamoDbErrors").is_empty());
        let reads = value_of(&records, "DynamoDbReadUnits");
        assert_eq!(reads[0].1, [0.5, 1.0]);
    }

    #[test]
    fn properties_ride_on_the_anchor_record() {
        let mut invocation = Invocation::new(vec![(dimension::ROUTE, "GET /health".into())]);
        invocation.add(&API_REQUESTS, &[], 1.0);
        invocation.add(
            &DYNAMODB_CALLS,
            &[(dimension::TABLE, "t"), (dimension::OPERATION, "GetItem")],
            1.0,
        );
        let mut properties = Map::new();
        properties.insert("message".into(), "request".into());
        let records = invocation.into_records(Some((&API_REQUESTS, properties.clone())));
        let anchored: Vec<_> = records
            .iter()
            .filter(|r| !r.properties.is_empty())
            .collect();
        assert_eq!(anchored.len(), 1);
        assert!(anchored[0].metrics.iter().any(|m| m.name == "ApiRequests"));

        let alone = Invocation::default().into_records(Some((&API_REQUESTS, properties)));
        assert_eq!(alone.len(), 1);
        assert!(alone[0].metrics.is_empty() && !alone[0].properties.is_empty());
    }
}
