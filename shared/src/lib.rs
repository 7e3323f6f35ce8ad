//! The library every CollectPro function uses.
//!
//! - [`audit`]: the audit trail: the actor stamped on every write, entries from the streams.
//! - [`auth`]: roles, the caller, the RBAC table (tokens and passwords join it).
//! - [`config`]: configuration read once from the environment, typed table names.
//! - [`clients`]: AWS clients built once per cold start.
//! - [`error`]: the one error type and its mapping to `application/problem+json`.
//! - [`http`]: the glue on top of `lambda_http` (routing by route key, JSON bodies, query and
//!   path parameters, responses, one log line per request).
//! - [`telemetry`]: JSON logging and init failure.
//! - [`domain`]: ids, timestamps, money.
//! - [`dynamo`]: DynamoDB plumbing: paging, attribute helpers, the retry rules of
//!   transactions, and the call recorder every call goes through.
//! - [`metrics`]: per-invocation metrics written as CloudWatch Embedded Metric Format.
//! - [`cursor`]: opaque, HMAC-signed list cursors.
//! - [`validation`]: garde-based body/query validation (trimmed, capped, no control chars).
//! - [`queue`]: a failed SQS message brought back in seconds, not after the visibility timeout.
//! - [`rate_limit`]: cross-instance fixed-window limits on DynamoDB (429 + Retry-After).
//! - `testing` (feature `test-support`): API Gateway v2 request builder for tests.

pub mod accounts;
pub mod activities;
pub mod audit;
pub mod auth;
pub mod bulk;
pub mod clients;
pub mod config;
pub mod cursor;
pub mod dashboard;
pub mod domain;
pub mod dynamo;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod imports;
pub mod metrics;
pub mod paging;
pub mod payments;
pub mod platform;
pub mod promises;
pub mod queue;
pub mod rate_limit;
pub mod realtime;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod validation;

pub use error::{ApiError, FieldError};
