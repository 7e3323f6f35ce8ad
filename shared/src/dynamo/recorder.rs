//! The one wrapper every DynamoDB call goes through: an SDK interceptor installed on the
//! client in `clients::Clients::new`, so no call site can forget it and none has to change.
//!
//! For each call it
//! - asks DynamoDB for the capacity consumed (`ReturnConsumedCapacity::Total`, unless the
//!   caller already asked for something);
//! - measures the call from first attempt to answer (SDK retries included);
//! - counts throttled attempts, and tells a refused condition (optimistic concurrency doing
//!   its job) from an error;
//! - records all of it in the invocation's metrics (`metrics::record_dynamodb_call`), which
//!   also sum the calls and units for the request's log line.
//!
//! The `Table` dimension is the table's name, `table/index` for a Query or Scan of an index
//! (which index is hot is the question an operator asks), and the sorted, comma-joined
//! names for a batch or transaction over several tables.

use std::time::Instant;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::{
    batch_get_item::{BatchGetItemError, BatchGetItemInput, BatchGetItemOutput},
    batch_write_item::{BatchWriteItemError, BatchWriteItemInput, BatchWriteItemOutput},
    delete_item::{DeleteItemError, DeleteItemInput, DeleteItemOutput},
    get_item::{GetItemError, GetItemInput, GetItemOutput},
    put_item::{PutItemError, PutItemInput, PutItemOutput},
    query::{QueryError, QueryInput, QueryOutput},
    scan::{ScanError, ScanInput, ScanOutput},
    transact_get_items::{TransactGetItemsError, TransactGetItemsInput, TransactGetItemsOutput},
    transact_write_items::{
        TransactWriteItemsError, TransactWriteItemsInput, TransactWriteItemsOutput,
    },
    update_item::{UpdateItemError, UpdateItemInput, UpdateItemOutput},
};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{Error as ErasedError, Input, Output};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

use crate::metrics::{record_dynamodb_call, CallOutcome, DynamoDbCall};

/// The interceptor; install it with `aws_sdk_dynamodb::config::Builder::interceptor`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CallRecorder;

/// When the call started and what it is about, kept in the call's config bag.
#[derive(Debug, Clone)]
struct CallStarted {
    at: Instant,
    table: String,
}

impl Storable for CallStarted {
    type Storer = StoreReplace<Self>;
}

/// Attempts refused for throughput so far.
#[derive(Debug, Clone, Copy, Default)]
struct ThrottledAttempts(u32);

impl Storable for ThrottledAttempts {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CallRecorder {
    fn name(&self) -> &'static str {
        "CollectProDynamoDbCallRecorder"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let table = ask_for_capacity(context.input_mut());
        cfg.interceptor_state().store_put(CallStarted {
            at: Instant::now(),
            table,
        });
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Err(error)) = context.output_or_error() {
            if error
                .as_operation_error()
                .is_some_and(|error| classify(error) == CallOutcome::Throttled)
            {
                let so_far = cfg.load::<ThrottledAttempts>().copied().unwrap_or_default();
                cfg.interceptor_state()
                    .store_put(ThrottledAttempts(so_far.0 + 1));
            }
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(started) = cfg.load::<CallStarted>() else {
            return Ok(());
        };
        let operation = cfg.load::<Metadata>().map_or("Unknown", Metadata::name);
        let (outcome, capacity) = match context.output_or_error() {
            Some(Ok(output)) => (CallOutcome::Ok, consumed(output)),
            Some(Err(error)) => (
                error
                    .as_operation_error()
                    .map_or(CallOutcome::Error, classify),
                Vec::new(),
            ),
            None => (CallOutcome::Error, Vec::new()),
        };
        let (read_units, write_units) = units(operation, &capacity);
        let call = DynamoDbCall {
            operation,
            table: &started.table,
            latency_ms: started.at.elapsed().as_secs_f64() * 1000.0,
            read_units,
            write_units,
            throttled_attempts: cfg.load::<ThrottledAttempts>().map_or(0, |t| t.0),
            outcome,
        };
        tracing::debug!(
            operation = call.operation,
            table = call.table,
            latency_ms = call.latency_ms,
            read_units,
            write_units,
            outcome = ?call.outcome,
            "dynamodb call"
        );
        record_dynamodb_call(&call);
        Ok(())
    }
}

/// Sets `ReturnConsumedCapacity` on the operations that have it (where the caller left it
/// unset) and answers the `Table` dimension's value.
fn ask_for_capacity(input: &mut Input) -> String {
    fn total(field: &mut Option<ReturnConsumedCapacity>) {
        field.get_or_insert(ReturnConsumedCapacity::Total);
    }
    fn with_index(table: &Option<String>, index: &Option<String>) -> String {
        let table = table.as_deref().unwrap_or_default();
        match index {
            Some(index) => format!("{table}/{index}"),
            None => table.to_owned(),
        }
    }
    fn joined<'a>(tables: impl Iterator<Item = &'a str>) -> String {
        let mut tables: Vec<&str> = tables.collect();
        tables.sort_unstable();
        tables.dedup();
        tables.join(",")
    }
    if let Some(i) = input.downcast_mut::<GetItemInput>() {
        total(&mut i.return_consumed_capacity);
        return i.table_name.clone().unwrap_or_default();
    }
    if let Some(i) = input.downcast_mut::<PutItemInput>() {
        total(&mut i.return_consumed_capacity);
        return i.table_name.clone().unwrap_or_default();
    }
    if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
        total(&mut i.return_consumed_capacity);
        return i.table_name.clone().unwrap_or_default();
    }
    if let Some(i) = input.downcast_mut::<DeleteItemInput>() {
        total(&mut i.return_consumed_capacity);
        return i.table_name.clone().unwrap_or_default();
    }
    if let Some(i) = input.downcast_mut::<QueryInput>() {
        total(&mut i.return_consumed_capacity);
        return with_index(&i.table_name, &i.index_name);
    }
    if let Some(i) = input.downcast_mut::<ScanInput>() {
        total(&mut i.return_consumed_capacity);
        return with_index(&i.table_name, &i.index_name);
    }
    if let Some(i) = input.downcast_mut::<BatchGetItemInput>() {
        total(&mut i.return_consumed_capacity);
        return joined(i.request_items.iter().flatten().map(|(t, _)| t.as_str()));
    }
    if let Some(i) = input.downcast_mut::<BatchWriteItemInput>() {
        total(&mut i.return_consumed_capacity);
        return joined(i.request_items.iter().flatten().map(|(t, _)| t.as_str()));
    }
    if let Some(i) = input.downcast_mut::<TransactWriteItemsInput>() {
        total(&mut i.return_consumed_capacity);
        return joined(i.transact_items.iter().flatten().filter_map(|item| {
            item.put()
                .map(|p| p.table_name())
                .or_else(|| item.update().map(|u| u.table_name()))
                .or_else(|| item.delete().map(|d| d.table_name()))
                .or_else(|| item.condition_check().map(|c| c.table_name()))
        }));
    }
    if let Some(i) = input.downcast_mut::<TransactGetItemsInput>() {
        total(&mut i.return_consumed_capacity);
        return joined(
            i.transact_items
                .iter()
                .flatten()
                .filter_map(|item| item.get().map(|g| g.table_name())),
        );
    }
    // Control-plane calls (DescribeTable, CreateTable, ...) consume no capacity.
    String::new()
}

/// The consumed capacity an answer reports.
fn consumed(output: &Output) -> Vec<ConsumedCapacity> {
    macro_rules! single {
        ($($ty:ty),+) => {$(
            if let Some(o) = output.downcast_ref::<$ty>() {
                return o.consumed_capacity.iter().cloned().collect();
            }
        )+};
    }
    macro_rules! many {
        ($($ty:ty),+) => {$(
            if let Some(o) = output.downcast_ref::<$ty>() {
                return o.consumed_capacity.clone().unwrap_or_default();
            }
        )+};
    }
    single!(
        GetItemOutput,
        PutItemOutput,
        UpdateItemOutput,
        DeleteItemOutput,
        QueryOutput,
        ScanOutput
    );
    many!(
        BatchGetItemOutput,
        BatchWriteItemOutput,
        TransactWriteItemsOutput,
        TransactGetItemsOutput
    );
    Vec::new()
}

/// Read and write units: DynamoDB gives the split where it knows it, else one total, which
/// is reads for a read operation and writes for a write.
fn units(operation: &str, capacity: &[ConsumedCapacity]) -> (f64, f64) {
    let reads = matches!(
        operation,
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems"
    );
    capacity.iter().fold((0.0, 0.0), |(read, write), c| {
        match (c.read_capacity_units, c.write_capacity_units) {
            (None, None) => {
                let total = c.capacity_units.unwrap_or(0.0);
                if reads {
                    (read + total, write)
                } else {
                    (read, write + total)
                }
            }
            (r, w) => (read + r.unwrap_or(0.0), write + w.unwrap_or(0.0)),
        }
    })
}

const THROTTLE_CODES: [&str; 4] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingError",
];

/// How an operation error ends a call.
fn classify(error: &ErasedError) -> CallOutcome {
    let by_code = |code: Option<&str>| match code {
        Some("ConditionalCheckFailedException") => CallOutcome::ConditionalCheckFailed,
        Some(code) if THROTTLE_CODES.contains(&code) => CallOutcome::Throttled,
        _ => CallOutcome::Error,
    };
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        error.downcast_ref::<TransactWriteItemsError>()
    {
        return by_reasons(
            cancelled
                .cancellation_reasons()
                .iter()
                .filter_map(|r| r.code()),
        );
    }
    if let Some(TransactGetItemsError::TransactionCanceledException(cancelled)) =
        error.downcast_ref::<TransactGetItemsError>()
    {
        return by_reasons(
            cancelled
                .cancellation_reasons()
                .iter()
                .filter_map(|r| r.code()),
        );
    }
    macro_rules! by_type {
        ($($ty:ty),+) => {$(
            if let Some(e) = error.downcast_ref::<$ty>() {
                return by_code(e.code());
            }
        )+};
    }
    by_type!(
        GetItemError,
        PutItemError,
        UpdateItemError,
        DeleteItemError,
        QueryError,
        ScanError,
        BatchGetItemError,
        BatchWriteItemError,
        TransactWriteItemsError,
        TransactGetItemsError
    );
    CallOutcome::Error
}

/// A cancelled transaction: refused by a condition if any item's condition failed, throttled
/// if an item was throttled, else an error (a conflict with another transaction, a
/// validation error).
fn by_reasons<'a>(codes: impl Iterator<Item = &'a str> + Clone) -> CallOutcome {
    if codes.clone().any(|code| code == "ConditionalCheckFailed") {
        CallOutcome::ConditionalCheckFailed
    } else if codes
        .clone()
        .any(|code| code == "ProvisionedThroughputExceeded" || code == "ThrottlingError")
    {
        CallOutcome::Throttled
    } else {
        CallOutcome::Error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(total: f64) -> ConsumedCapacity {
        ConsumedCapacity::builder().capacity_units(total).build()
    }

    #[test]
    fn units_follow_the_operation_when_only_a_total_is_given() {
        assert_eq!(units("GetItem", &[capacity(0.5)]), (0.5, 0.0));
        assert_eq!(units("Query", &[capacity(2.0)]), (2.0, 0.0));
        assert_eq!(units("UpdateItem", &[capacity(1.0)]), (0.0, 1.0));
        assert_eq!(
            units("TransactWriteItems", &[capacity(4.0), capacity(2.0)]),
            (0.0, 6.0)
        );
        let split = ConsumedCapacity::builder()
            .capacity_units(3.0)
            .read_capacity_units(1.0)
            .write_capacity_units(2.0)
            .build();
        assert_eq!(units("UpdateItem", &[split]), (1.0, 2.0));
        assert_eq!(units("DescribeTable", &[]), (0.0, 0.0));
    }

    #[test]
    fn cancelled_transactions_are_told_apart() {
        let codes = |c: &'static [&'static str]| c.iter().copied();
        assert_eq!(
            by_reasons(codes(&["None", "ConditionalCheckFailed"])),
            CallOutcome::ConditionalCheckFailed
        );
        assert_eq!(
            by_reasons(codes(&["ThrottlingError", "None"])),
            CallOutcome::Throttled
        );
        assert_eq!(
            by_reasons(codes(&["TransactionConflict"])),
            CallOutcome::Error
        );
    }

    #[test]
    fn capacity_is_asked_for_and_the_table_named() {
        let mut input = Input::erase(
            QueryInput::builder()
                .table_name("accounts")
                .index_name("by-status")
                .build()
                .unwrap(),
        );
        assert_eq!(ask_for_capacity(&mut input), "accounts/by-status");
        let query = input.downcast_ref::<QueryInput>().unwrap();
        assert_eq!(
            query.return_consumed_capacity,
            Some(ReturnConsumedCapacity::Total)
        );

        let mut input = Input::erase(
            GetItemInput::builder()
                .table_name("users")
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .build()
                .unwrap(),
        );
        assert_eq!(ask_for_capacity(&mut input), "users");
        assert_eq!(
            input
                .downcast_ref::<GetItemInput>()
                .unwrap()
                .return_consumed_capacity,
            Some(ReturnConsumedCapacity::Indexes),
            "the caller's choice stands"
        );
    }
}
