//! Transactions that lost to another one, and waiting before trying again.
//!
//! A `TransactWriteItems` is cancelled as a whole; its `CancellationReasons` hold one code
//! per item, in the order of the items (`None` for an item that was fine,
//! `ConditionalCheckFailed`, `TransactionConflict` when another transaction held the item,
//! `ThrottlingError`, ...). Callers read the codes to tell which condition failed; a
//! cancellation with no failed condition changed nothing and may be sent again after a
//! [`backoff`].

use std::any::Any;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

use super::DataError;

/// How many times a transaction that lost a conflict is tried again before giving up.
pub const CONFLICT_RETRIES: u32 = 8;

/// The code of an item whose condition did not hold.
pub const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// The reason codes of a cancelled transaction, one per item in the order of its items;
/// `None` when `err` is not a cancelled transaction.
pub fn cancellation_codes<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<String>> {
    err.as_service_error().and_then(codes_of)
}

fn codes_of(err: &TransactWriteItemsError) -> Option<Vec<String>> {
    match err {
        TransactWriteItemsError::TransactionCanceledException(cancel) => Some(
            cancel
                .cancellation_reasons()
                .iter()
                .map(|reason| reason.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

/// For each item of a cancelled transaction, whether its condition failed; `None` when
/// `err` is not a cancelled transaction.
pub fn failed_conditions<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<bool>> {
    cancellation_codes(err).map(|codes| codes.iter().map(|c| c == CONDITION_FAILED).collect())
}

/// Whether the error is a transaction lost to another one in flight, with no condition
/// failed: sending it again may succeed.
pub fn is_conflict<R>(err: &SdkError<TransactWriteItemsError, R>) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionInProgressException(_)) => true,
        Some(service) => codes_of(service).is_some_and(|codes| {
            codes.iter().any(|c| c == "TransactionConflict")
                && !codes.iter().any(|c| c == CONDITION_FAILED)
        }),
        None => false,
    }
}

/// Whether a service error of any operation is a cancelled transaction that changed
/// nothing only because it lost a conflict or was throttled (no condition failed), so the
/// caller may retry it. The generic error mapping (`ApiError: From<SdkError<E, _>>`) asks
/// this of every error; only `TransactWriteItems` errors carry the reasons.
pub fn is_retryable_cancellation<E: Any>(err: &E) -> bool {
    (err as &dyn Any)
        .downcast_ref::<TransactWriteItemsError>()
        .and_then(codes_of)
        .is_some_and(|codes| {
            codes
                .iter()
                .any(|c| c == "TransactionConflict" || c == "ThrottlingError")
                && !codes.iter().any(|c| c == CONDITION_FAILED)
        })
}

/// Counts a piece of work exactly once: `marker` (a put conditioned on its absence) and `add`
/// (the counters' `ADD` on the item counted into, conditioned on that item existing) in one
/// transaction, sent again after a [`backoff`] while it loses conflicts or is throttled (the
/// counters' item is hot: every worker of a job adds to it). `Ok(true)` when counted now;
/// `Ok(false)` when the marker was there (counted before: a redelivery) or the item is gone
/// (expired); either way nothing is added twice. `busy` is the 503's text when every try lost.
pub async fn count_once(
    dynamodb: &aws_sdk_dynamodb::Client,
    marker: Put,
    add: Update,
    busy: &'static str,
) -> Result<bool, DataError> {
    for attempt in 0..CONFLICT_RETRIES {
        let result = dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(marker.clone()).build())
            .transact_items(TransactWriteItem::builder().update(add.clone()).build())
            .send()
            .await;
        let Err(err) = result else { return Ok(true) };
        match cancellation_codes(&err) {
            Some(codes) if codes.iter().any(|c| c == CONDITION_FAILED) => return Ok(false),
            Some(codes)
                if codes
                    .iter()
                    .any(|c| c == "TransactionConflict" || c == "ThrottlingError") =>
            {
                tokio::time::sleep(backoff(attempt)).await;
            }
            _ => return Err(err.into()),
        }
    }
    Err(DataError::unavailable(busy))
}

/// Jittered exponential backoff: attempt 0 waits 5–10 ms, each attempt doubles that, up to
/// 200–400 ms. The jitter keeps writers that lost the same conflict from colliding again.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 10_u64.saturating_mul(1 << attempt.min(6)).min(400);
    Duration::from_millis(rand::random_range(cap / 2..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    use aws_sdk_dynamodb::types::error::{
        TransactionCanceledException, TransactionInProgressException,
    };
    use aws_sdk_dynamodb::types::CancellationReason;

    fn cancelled(codes: &[&str]) -> SdkError<TransactWriteItemsError, ()> {
        let reasons = codes
            .iter()
            .map(|code| CancellationReason::builder().code(*code).build())
            .collect();
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(
                TransactionCanceledException::builder()
                    .set_cancellation_reasons(Some(reasons))
                    .build(),
            ),
            (),
        )
    }

    #[test]
    fn codes_follow_the_items() {
        let err = cancelled(&["None", "ConditionalCheckFailed"]);
        assert_eq!(
            cancellation_codes(&err),
            Some(vec!["None".to_owned(), "ConditionalCheckFailed".to_owned()])
        );
        assert_eq!(failed_conditions(&err), Some(vec![false, true]));
        let other = SdkError::<TransactWriteItemsError, ()>::timeout_error("slow");
        assert_eq!(cancellation_codes(&other), None);
        assert_eq!(failed_conditions(&other), None);
    }

    #[test]
    fn a_conflict_is_retried_unless_a_condition_failed() {
        assert!(is_conflict(&cancelled(&["None", "TransactionConflict"])));
        assert!(!is_conflict(&cancelled(&[
            "ConditionalCheckFailed",
            "TransactionConflict"
        ])));
        assert!(!is_conflict(&cancelled(&["ThrottlingError"])));
        let in_progress = SdkError::<_, ()>::service_error(
            TransactWriteItemsError::TransactionInProgressException(
                TransactionInProgressException::builder().build(),
            ),
            (),
        );
        assert!(is_conflict(&in_progress));
    }

    #[test]
    fn the_generic_mapping_retries_conflicts_and_throttling_only() {
        let service = |codes: &[&str]| cancelled(codes).into_service_error();
        assert!(is_retryable_cancellation(&service(&[
            "None",
            "TransactionConflict"
        ])));
        assert!(is_retryable_cancellation(&service(&["ThrottlingError"])));
        assert!(!is_retryable_cancellation(&service(&[
            "TransactionConflict",
            "ConditionalCheckFailed"
        ])));
        let unhandled = TransactWriteItemsError::generic(ErrorMetadata::builder().build());
        assert!(!is_retryable_cancellation(&unhandled));
        assert!(!is_retryable_cancellation(&"not a DynamoDB error"));
    }

    #[test]
    fn backoff_is_jittered_and_bounded() {
        for attempt in 0..20 {
            let wait = backoff(attempt);
            assert!(wait <= Duration::from_millis(400), "{attempt}: {wait:?}");
            assert!(wait >= Duration::from_millis(5), "{attempt}: {wait:?}");
        }
    }
}
