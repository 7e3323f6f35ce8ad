//! The one error type of the HTTP API and its one mapping to HTTP.
//!
//! Every handler returns `Result<_, ApiError>`; [`ApiError::into_response`] turns it into an
//! RFC 9457 `application/problem+json` body. Server-side causes are logged with the request's
//! span and never leak into the body: a caller sees a stable `type`, a `title`, and for bad
//! input the list of fields and reasons.

use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::dynamo::DataError;

/// The base of every problem `type` URI; the suffix is a stable, documented code.
pub const PROBLEM_TYPE_BASE: &str = "https://collectpro.dev/problems/";

/// The most field errors one problem lists; `error_count` says how many there were. A
/// request with 100,000 bad items would otherwise answer megabytes of errors (over Lambda's
/// 6 MB response limit); the first 50 are enough to fix a client.
pub const MAX_REPORTED_ERRORS: usize = 50;

/// One invalid field of a request: `field` is a JSON pointer-like dotted path
/// (`changes.status`, `account_ids[3]`), `message` says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document, as it goes on the wire.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// How many field errors the request had (when it had any); `errors` lists at most the
    /// first [`MAX_REPORTED_ERRORS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_count: Option<usize>,
}

/// An error a handler answers with. Construct it with the named constructors so the same
/// situation always gets the same status and `type` across functions.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    /// The stable suffix of the problem `type` URI, e.g. `validation`, `not-found`.
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// How many field errors there were before `errors` was capped.
    pub error_count: usize,
    /// Seconds a client should wait before retrying (`Retry-After`), for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            code,
            title,
            detail,
            errors: Vec::new(),
            error_count: 0,
            retry_after: None,
        }
    }

    /// 400 for a request that cannot be understood at all (bad JSON, bad encoding).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail.into(),
        )
    }

    /// 400 listing each invalid field and why (the first [`MAX_REPORTED_ERRORS`]).
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many if many.len() > MAX_REPORTED_ERRORS => format!(
                "{} fields are invalid; the first {MAX_REPORTED_ERRORS} are listed",
                many.len()
            ),
            many => format!("{} fields are invalid", many.len()),
        };
        Self::new(
            StatusCode::BAD_REQUEST,
            "validation",
            "Invalid request",
            detail,
        )
        .with_errors(errors)
    }

    /// The same error naming `errors` (capped at [`MAX_REPORTED_ERRORS`], the count kept):
    /// a `403` or `422` can say which fields it is about, like a `400`.
    pub fn with_errors(mut self, mut errors: Vec<FieldError>) -> Self {
        self.error_count = errors.len();
        errors.truncate(MAX_REPORTED_ERRORS);
        self.errors = errors;
        self
    }

    /// 400 for one invalid field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail.into(),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            detail.into(),
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            detail.into(),
        )
    }

    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            detail.into(),
        )
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail.into())
    }

    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
            "Precondition failed",
            detail.into(),
        )
    }

    pub fn precondition_required(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition-required",
            "Precondition required",
            detail.into(),
        )
    }

    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            detail.into(),
        )
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail.into(),
        )
    }

    /// 422: the request is well formed but breaks a business rule (`code` names the rule).
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            "Unprocessable request",
            detail.into(),
        )
    }

    pub fn locked(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::LOCKED, "locked", "Locked", detail.into())
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!(
                    "rate limit exceeded; retry in {} s",
                    retry_after_secs.max(1)
                ),
            )
        }
    }

    /// 503: a dependency is down or throttling; the client may retry.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                detail.into(),
            )
        }
    }

    /// 500. The cause is logged here, with the current request span, and never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "an unexpected error occurred; it has been logged".to_owned(),
        )
    }

    /// The problem document this error is sent as.
    pub fn problem(&self) -> Problem {
        Problem {
            type_uri: format!("{PROBLEM_TYPE_BASE}{}", self.code),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
            error_count: (self.error_count > 0).then_some(self.error_count),
        }
    }
}

/// What a store could not do, as the API answers it: retryable → 503 with `Retry-After`
/// (logged as a warning), anything else → a logged 500.
impl From<DataError> for ApiError {
    fn from(err: DataError) -> Self {
        if err.is_retryable() {
            tracing::warn!(error = %err, "dependency unavailable");
            Self::unavailable("a dependency is busy or unreachable; retry shortly")
        } else {
            Self::internal(err)
        }
    }
}

/// DynamoDB and SQS errors, classified once by [`DataError`]. Handlers that expect a specific
/// service error (a failed condition) match it before falling back to this.
impl<E, R> From<aws_sdk_dynamodb::error::SdkError<E, R>> for ApiError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    fn from(err: aws_sdk_dynamodb::error::SdkError<E, R>) -> Self {
        DataError::from(err).into()
    }
}

impl From<serde_dynamo::Error> for ApiError {
    fn from(err: serde_dynamo::Error) -> Self {
        DataError::from(err).into()
    }
}
