//! Every metric CollectPro emits, in one place: its name, its unit and the dimension sets it
//! is published under. The code records metrics only through these constants, and the
//! template's dashboard and alarms are checked against [`ALL`] by a test, so a renamed
//! metric cannot leave a widget or an alarm watching nothing.
//!
//! Dimensions are kept few on purpose: every distinct combination of dimension values is a
//! separate CloudWatch metric (billed monthly), so a dimension is a function, a route, a
//! table, an operation, a currency, an activity type or a job, never a user or an account.

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "CollectPro";

/// A CloudWatch unit, as EMF spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    /// A plain number (an amount of money in minor units).
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::None => "None",
        }
    }
}

/// A metric: its name, unit and the dimension sets each value is published under (each set
/// a list of dimension names; an empty set publishes the metric without dimensions, the
/// service-wide figure the alarms watch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub dimensions: &'static [&'static [&'static str]],
}

/// Dimension names.
pub mod dimension {
    /// The function's crate name (`env!("CARGO_PKG_NAME")`, e.g. `accounts`, `bulk-worker`),
    /// which is also its directory under `functions/` and its binary: stable across stacks,
    /// unlike the physical name CloudFormation gives the function.
    pub const FUNCTION: &str = "Function";
    /// The API Gateway route key, e.g. `GET /accounts/{id}`.
    pub const ROUTE: &str = "Route";
    /// A DynamoDB table's name.
    pub const TABLE: &str = "Table";
    /// A DynamoDB operation, e.g. `GetItem`.
    pub const OPERATION: &str = "Operation";
    /// An ISO 4217 currency code.
    pub const CURRENCY: &str = "Currency";
    /// An activity type (`call`, `email`, ...).
    pub const ACTIVITY_TYPE: &str = "ActivityType";
    /// A scheduler job (`promises`, `aging`, `cleanup`, ...).
    pub const JOB: &str = "Job";
}

use dimension::{ACTIVITY_TYPE, CURRENCY, FUNCTION, JOB, OPERATION, ROUTE, TABLE};

const BY_ROUTE: &[&[&str]] = &[&[FUNCTION, ROUTE], &[FUNCTION], &[]];
const BY_TABLE_OPERATION: &[&[&str]] = &[&[TABLE, OPERATION], &[TABLE], &[]];
const BY_FUNCTION: &[&[&str]] = &[&[FUNCTION], &[]];
const SERVICE_WIDE: &[&[&str]] = &[&[]];

const fn metric(
    name: &'static str,
    unit: Unit,
    dimensions: &'static [&'static [&'static str]],
) -> Metric {
    Metric {
        name,
        unit,
        dimensions,
    }
}

// HTTP API, one value per request.
/// Requests served.
pub const API_REQUESTS: Metric = metric("ApiRequests", Unit::Count, BY_ROUTE);
/// Time from the request reaching the function to its response, milliseconds.
pub const API_LATENCY: Metric = metric("ApiLatency", Unit::Milliseconds, BY_ROUTE);
/// Requests answered 4xx (1 or 0 per request, so the average is the rate).
pub const API_4XX: Metric = metric("Api4xx", Unit::Count, BY_ROUTE);
/// Requests answered 5xx (1 or 0 per request, so the average is the rate).
pub const API_5XX: Metric = metric("Api5xx", Unit::Count, BY_ROUTE);
/// DynamoDB calls one request made (the same dimension sets as the request's other
/// figures, so all of them ride in the request's one line).
pub const REQUEST_DYNAMODB_CALLS: Metric = metric("RequestDynamoDbCalls", Unit::Count, BY_ROUTE);
/// Read capacity units one request consumed (all tables and indexes).
pub const REQUEST_READ_UNITS: Metric = metric("RequestReadUnits", Unit::Count, BY_ROUTE);
/// Write capacity units one request consumed (all tables and indexes).
pub const REQUEST_WRITE_UNITS: Metric = metric("RequestWriteUnits", Unit::Count, BY_ROUTE);

// DynamoDB, one value per call (through the call recorder, `shared::dynamo::recorder`).
/// Calls made.
pub const DYNAMODB_CALLS: Metric = metric("DynamoDbCalls", Unit::Count, BY_TABLE_OPERATION);
/// A call's latency as the SDK saw it (retries included), milliseconds.
pub const DYNAMODB_LATENCY: Metric =
    metric("DynamoDbLatency", Unit::Milliseconds, BY_TABLE_OPERATION);
/// Read capacity units consumed (`ReturnConsumedCapacity`).
pub const DYNAMODB_READ_UNITS: Metric =
    metric("DynamoDbReadUnits", Unit::Count, BY_TABLE_OPERATION);
/// Write capacity units consumed.
pub const DYNAMODB_WRITE_UNITS: Metric =
    metric("DynamoDbWriteUnits", Unit::Count, BY_TABLE_OPERATION);
/// Calls refused for throughput (throttling, provisioned throughput or request limit).
pub const DYNAMODB_THROTTLES: Metric = metric("DynamoDbThrottles", Unit::Count, BY_TABLE_OPERATION);
/// Calls refused by a condition (a conditional check, or a transaction cancelled by one):
/// expected outcomes of optimistic concurrency, counted apart from errors.
pub const DYNAMODB_CONDITIONAL_FAILURES: Metric = metric(
    "DynamoDbConditionalFailures",
    Unit::Count,
    BY_TABLE_OPERATION,
);
/// Calls that failed for any other reason.
pub const DYNAMODB_ERRORS: Metric = metric("DynamoDbErrors", Unit::Count, BY_TABLE_OPERATION);

// Business.
/// Payments recorded (refunds not included).
pub const PAYMENTS_RECORDED: Metric = metric("PaymentsRecorded", Unit::Count, &[&[CURRENCY], &[]]);
/// The amount of the payments recorded, minor units of the currency.
pub const PAYMENT_AMOUNT: Metric = metric("PaymentAmount", Unit::None, &[&[CURRENCY]]);
/// Refunds recorded.
pub const REFUNDS: Metric = metric("Refunds", Unit::Count, &[&[CURRENCY], &[]]);
/// Requests answered from an idempotency record instead of being done again.
pub const IDEMPOTENT_REPLAYS: Metric = metric("IdempotentReplays", Unit::Count, BY_FUNCTION);
/// Activities logged.
pub const ACTIVITIES_LOGGED: Metric =
    metric("ActivitiesLogged", Unit::Count, &[&[ACTIVITY_TYPE], &[]]);
/// Contact attempts refused by Regulation F (7 calls in 7 days, 7 days after a conversation).
pub const REGULATION_F_REFUSALS: Metric = metric("RegulationFRefusals", Unit::Count, SERVICE_WIDE);
/// Bulk job items applied.
pub const BULK_ITEMS_PROCESSED: Metric = metric("BulkItemsProcessed", Unit::Count, SERVICE_WIDE);
/// Bulk job items that failed (reported on the job).
pub const BULK_ITEMS_FAILED: Metric = metric("BulkItemsFailed", Unit::Count, SERVICE_WIDE);
/// Bulk messages that reached the dead-letter queue's last try.
pub const BULK_ITEMS_DEAD_LETTERED: Metric =
    metric("BulkItemsDeadLettered", Unit::Count, SERVICE_WIDE);
/// WebSocket messages delivered.
pub const WEBSOCKET_MESSAGES_SENT: Metric =
    metric("WebSocketMessagesSent", Unit::Count, SERVICE_WIDE);
/// WebSocket connections found gone (410) and removed.
pub const WEBSOCKET_CONNECTIONS_GONE: Metric =
    metric("WebSocketConnectionsGone", Unit::Count, SERVICE_WIDE);
/// Age of the oldest stream record in a notifier batch when the batch started, milliseconds.
pub const NOTIFIER_BATCH_AGE: Metric = metric("NotifierBatchAge", Unit::Milliseconds, SERVICE_WIDE);
/// Scheduler runs, per job.
pub const SCHEDULER_RUNS: Metric = metric("SchedulerRuns", Unit::Count, &[&[JOB]]);
/// Items a scheduler run changed (promises kept or broken, accounts aged, rows removed).
pub const SCHEDULER_ITEMS: Metric = metric("SchedulerItems", Unit::Count, &[&[JOB]]);
/// Logins refused by the rate limit.
pub const LOGINS_RATE_LIMITED: Metric = metric("LoginsRateLimited", Unit::Count, SERVICE_WIDE);
/// Logins refused because the user is locked out.
pub const LOGINS_LOCKED_OUT: Metric = metric("LoginsLockedOut", Unit::Count, SERVICE_WIDE);

/// Every metric, for the checks that compare the template with the code.
pub const ALL: &[Metric] = &[
    API_REQUESTS,
    API_LATENCY,
    API_4XX,
    API_5XX,
    REQUEST_DYNAMODB_CALLS,
    REQUEST_READ_UNITS,
    REQUEST_WRITE_UNITS,
    DYNAMODB_CALLS,
    DYNAMODB_LATENCY,
    DYNAMODB_READ_UNITS,
    DYNAMODB_WRITE_UNITS,
    DYNAMODB_THROTTLES,
    DYNAMODB_CONDITIONAL_FAILURES,
    DYNAMODB_ERRORS,
    PAYMENTS_RECORDED,
    PAYMENT_AMOUNT,
    REFUNDS,
    IDEMPOTENT_REPLAYS,
    ACTIVITIES_LOGGED,
    REGULATION_F_REFUSALS,
    BULK_ITEMS_PROCESSED,
    BULK_ITEMS_FAILED,
    BULK_ITEMS_DEAD_LETTERED,
    WEBSOCKET_MESSAGES_SENT,
    WEBSOCKET_CONNECTIONS_GONE,
    NOTIFIER_BATCH_AGE,
    SCHEDULER_RUNS,
    SCHEDULER_ITEMS,
    LOGINS_RATE_LIMITED,
    LOGINS_LOCKED_OUT,
];

/// The metric named `name`, if the code emits one.
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|metric| metric.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_dimension_sets_small() {
        let mut names: Vec<_> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a metric name is listed twice");
        for metric in ALL {
            assert!(
                !metric.dimensions.is_empty(),
                "{} has no dimension set",
                metric.name
            );
            for set in metric.dimensions {
                // EMF allows 30; CloudWatch bills each combination, so keep to two.
                assert!(set.len() <= 2, "{}: {set:?}", metric.name);
            }
        }
        assert_eq!(find("ApiLatency"), Some(&API_LATENCY));
        assert_eq!(find("Latency"), None);
    }
}
