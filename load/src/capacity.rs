//! The capacity plan: the measured per-request costs scaled to the seed's figures (50,000 API
//! requests a minute, 100,000 connected users), set against the AWS account quotas they
//! come near.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cost::Usage;

/// The load the plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub requests_per_second: f64,
    pub connected_users: f64,
    /// New WebSocket connections per second (users reconnect as their tokens expire).
    pub connections_per_second: f64,
}

impl Target {
    /// 50,000 requests a minute; 100,000 users connected, each reconnecting once an hour
    /// (the access token's lifetime) on average.
    pub const SEED: Target = Target {
        requests_per_second: 50_000.0 / 60.0,
        connected_users: 100_000.0,
        connections_per_second: 100_000.0 / 3600.0,
    };
}

/// Account quotas (defaults, per region) the plan is checked against.
pub const LAMBDA_CONCURRENCY: f64 = 1_000.0;
pub const PARTITION_WCU: f64 = 1_000.0;
pub const PARTITION_RCU: f64 = 3_000.0;
pub const HTTP_API_RPS: f64 = 10_000.0;
pub const WEBSOCKET_NEW_CONNECTIONS_PER_SECOND: f64 = 500.0;
pub const TABLE_ON_DEMAND_UNITS: f64 = 40_000.0;

/// Share of a table's traffic its hottest partition takes. The aggregates' global counters
/// are one item each, which every change updates (all of it); the accounts' list GSIs are
/// written over `SHARDS` (8) key values (`shared::accounts::keys`); other tables are keyed by
/// account, user, job or connection and spread with the keys.
pub fn hottest_share(table: &str) -> f64 {
    match table {
        t if t.contains("Aggregates") => 1.0,
        t if t.contains("Accounts") => 1.0 / 8.0,
        _ => 0.0,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionPlan {
    pub function: String,
    pub invocations_per_second: f64,
    pub mean_duration_ms: f64,
    pub concurrency: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TablePlan {
    pub table: String,
    pub rcu_per_second: f64,
    pub wcu_per_second: f64,
    pub hottest_partition_rcu: f64,
    pub hottest_partition_wcu: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub target: Target,
    pub functions: Vec<FunctionPlan>,
    pub total_concurrency: f64,
    pub tables: Vec<TablePlan>,
    pub websocket_messages_per_second: f64,
    /// Quota findings: what comes near a default and what to ask AWS for.
    pub findings: Vec<String>,
}

/// Per-table units of a run: table → (read units, write units).
pub type TableUnits = BTreeMap<String, (f64, f64)>;

/// The plan for `target` from a run's `usage` and `tables`; `messages_per_payment_per_subscriber`
/// and `payments_per_request` scale the WebSocket fan-out to the connected users.
pub fn plan(
    target: Target,
    usage: &Usage,
    tables: &TableUnits,
    payments_per_request: f64,
    messages_per_payment_per_subscriber: f64,
) -> Plan {
    let per_request = |x: f64| x / usage.api_requests.max(1.0) * target.requests_per_second;
    let functions: Vec<FunctionPlan> = usage
        .functions
        .iter()
        .map(|f| {
            let rate = per_request(f.invocations);
            let mean = f.duration_ms / f.invocations.max(1.0);
            FunctionPlan {
                function: f.name.clone(),
                invocations_per_second: rate,
                mean_duration_ms: mean,
                concurrency: rate * mean / 1000.0,
            }
        })
        .collect();
    let total_concurrency = functions.iter().map(|f| f.concurrency).sum();
    let tables: Vec<TablePlan> = tables
        .iter()
        .map(|(table, (rcu, wcu))| {
            let (r, w) = (per_request(*rcu), per_request(*wcu));
            let share = hottest_share(table);
            TablePlan {
                table: table.clone(),
                rcu_per_second: r,
                wcu_per_second: w,
                hottest_partition_rcu: r * share,
                hottest_partition_wcu: w * share,
            }
        })
        .collect();
    let websocket_messages_per_second = target.requests_per_second
        * payments_per_request
        * messages_per_payment_per_subscriber
        * target.connected_users;
    let mut findings = Vec::new();
    // "Near" a quota: at 70% of it or more.
    let near = |used: f64, quota: f64| used >= 0.7 * quota;
    if near(total_concurrency, LAMBDA_CONCURRENCY) {
        findings.push(format!(
            "Lambda concurrency {total_concurrency:.0} of the regional {LAMBDA_CONCURRENCY:.0}: ask for a higher concurrent-executions quota"
        ));
    } else {
        findings.push(format!(
            "Lambda concurrency {total_concurrency:.0} of the regional {LAMBDA_CONCURRENCY:.0}: within the default (bursts and retries add to it)"
        ));
    }
    for t in &tables {
        if near(t.hottest_partition_wcu, PARTITION_WCU)
            || near(t.hottest_partition_rcu, PARTITION_RCU)
        {
            findings.push(format!(
                "{}: hottest partition {:.0} WCU/s, {:.0} RCU/s against 1,000 WCU / 3,000 RCU per partition: no quota raises this; shard the hot key or batch its updates",
                t.table, t.hottest_partition_wcu, t.hottest_partition_rcu
            ));
        }
        if near(
            t.rcu_per_second.max(t.wcu_per_second),
            TABLE_ON_DEMAND_UNITS,
        ) {
            findings.push(format!(
                "{}: {:.0} units/s near the on-demand table quota of 40,000: ask for a raise",
                t.table,
                t.rcu_per_second.max(t.wcu_per_second)
            ));
        }
    }
    findings.push(format!(
        "HTTP API {:.0} requests/s of the account's {HTTP_API_RPS:.0}: {}",
        target.requests_per_second,
        if near(target.requests_per_second, HTTP_API_RPS) {
            "ask for a raise"
        } else {
            "within the default"
        }
    ));
    findings.push(format!(
        "WebSocket: {:.0} connections, {:.0} new/s of the default {WEBSOCKET_NEW_CONNECTIONS_PER_SECOND:.0}/s ({}), {websocket_messages_per_second:.0} messages/s",
        target.connected_users,
        target.connections_per_second,
        if near(target.connections_per_second, WEBSOCKET_NEW_CONNECTIONS_PER_SECOND) {
            "ask for a raise before a mass reconnect"
        } else {
            "a mass reconnect of all users takes 100,000 / 500 = 200 s at the default"
        }
    ));
    Plan {
        target,
        functions,
        total_concurrency,
        tables,
        websocket_messages_per_second,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::FunctionUsage;

    #[test]
    fn concurrency_is_rate_times_duration_and_hot_partitions_are_flagged() {
        let usage = Usage {
            api_requests: 100.0,
            functions: vec![FunctionUsage {
                name: "payments".into(),
                invocations: 50.0,
                duration_ms: 50.0 * 20.0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let tables = TableUnits::from([
            ("Aggregates".to_owned(), (0.0, 200.0)),
            ("Payments".to_owned(), (100.0, 300.0)),
        ]);
        let target = Target {
            requests_per_second: 1000.0,
            connected_users: 10.0,
            connections_per_second: 1.0,
        };
        let plan = plan(target, &usage, &tables, 0.1, 0.5);
        // 500 invocations/s x 20 ms = 10 concurrent.
        assert!((plan.functions[0].concurrency - 10.0).abs() < 1e-9);
        assert_eq!(plan.tables[0].hottest_partition_wcu, 2000.0);
        assert_eq!(plan.tables[1].hottest_partition_wcu, 0.0);
        assert!(plan
            .findings
            .iter()
            .any(|f| f.starts_with("Aggregates: hottest partition 2000 WCU/s")));
        assert!(!plan.findings.iter().any(|f| f.starts_with("Payments")));
        // 100 payments/s x 0.5 messages per subscriber x 10 users.
        assert_eq!(plan.websocket_messages_per_second, 500.0);
    }
}
