//! The error of the stores: what can go wrong reading and writing DynamoDB (and sending to
//! SQS), apart from HTTP.
//!
//! The workers (bulk-worker, notifier, scheduler, importer) answer to a Lambda event source,
//! not to a client: their failures are retried, dead-lettered or logged, never sent as a
//! problem document. So the stores they share with the API speak [`DataError`], and only the
//! API turns it into an [`ApiError`](crate::ApiError) (one `From`, in `crate::error`):
//! retryable → 503 with `Retry-After`, anything else → a logged 500.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// A store could not do its work.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DataError {
    /// Throttled, timed out, unreachable, or a transaction that lost a conflict and changed
    /// nothing: the same call may succeed if retried.
    #[error("a dependency is busy or unreachable: {0}")]
    Unavailable(String),
    /// A call failed in a way retrying will not mend (a bad request, a missing table,
    /// permissions).
    #[error("a call failed: {0}")]
    Failed(String),
    /// What is stored cannot be: an item that does not match its type, a record a state
    /// needs that is not there.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

impl DataError {
    /// Stored data that does not hold together (`what` says how).
    pub fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }

    /// A dependency that is busy (`what` says which and why): retry later.
    pub fn unavailable(what: impl std::fmt::Display) -> Self {
        Self::Unavailable(what.to_string())
    }

    /// A request that could not even be built or sent (a builder's missing field).
    pub fn failed(what: impl std::fmt::Display) -> Self {
        Self::Failed(what.to_string())
    }

    /// Whether retrying the same work may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Throttling, timeouts, dispatch failures and transactions cancelled only by a conflict are
/// [`DataError::Unavailable`]; anything else is [`DataError::Failed`]. Callers that expect a
/// specific service error (a failed condition) match it before falling back to this.
impl<E, R> From<SdkError<E, R>> for DataError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    fn from(err: SdkError<E, R>) -> Self {
        let retryable = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
            SdkError::ServiceError(service) => match service.err().code() {
                Some(
                    "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "TransactionConflictException"
                    | "TransactionInProgressException",
                ) => true,
                // A transaction lost to another in flight (or throttled) and changed nothing:
                // retryable, unless a condition failed too (that one the caller answers).
                // Found by the fault run (`tests/tests/chaos_e2e.rs`): POST /accounts
                // answered 500.
                Some("TransactionCanceledException") => {
                    super::retry::is_retryable_cancellation(service.err())
                }
                _ => false,
            },
            _ => false,
        };
        let cause = DisplayErrorContext(&err).to_string();
        if retryable {
            Self::Unavailable(cause)
        } else {
            Self::Failed(cause)
        }
    }
}

impl From<serde_dynamo::Error> for DataError {
    fn from(err: serde_dynamo::Error) -> Self {
        Self::corrupt(format!("stored item does not match its type: {err}"))
    }
}

/// The outcome of a conditional write: `Ok(true)` when it happened, `Ok(false)` when its
/// condition did not hold (the state it guards against is already there: a redelivery, a
/// state already moved on), any other error mapped as usual.
pub fn condition_held<O, E, R>(result: Result<O, SdkError<E, R>>) -> Result<bool, DataError>
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(err)
            if err.as_service_error().and_then(ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    fn service_error(code: &str) -> SdkError<GetItemError, Response> {
        let err = GetItemError::generic(ErrorMetadata::builder().code(code).build());
        SdkError::service_error(
            err,
            Response::new(StatusCode::try_from(400).unwrap(), SdkBody::empty()),
        )
    }

    #[test]
    fn throttling_is_retryable_and_a_bad_request_is_not() {
        assert!(DataError::from(service_error("ThrottlingException")).is_retryable());
        assert!(
            DataError::from(service_error("ProvisionedThroughputExceededException")).is_retryable()
        );
        let failed = DataError::from(service_error("ValidationException"));
        assert!(matches!(failed, DataError::Failed(_)), "{failed:?}");
    }

    #[test]
    fn a_failed_condition_is_an_answer_not_an_error() {
        assert!(
            !condition_held::<(), _, _>(Err(service_error("ConditionalCheckFailedException")))
                .unwrap()
        );
        assert!(condition_held::<(), GetItemError, Response>(Ok(())).unwrap());
        assert!(matches!(
            condition_held::<(), _, _>(Err(service_error("ResourceNotFoundException"))),
            Err(DataError::Failed(_))
        ));
    }
}
