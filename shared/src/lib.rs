//! The library every CollectPro function uses.
//!
//! - [`auth`]: roles, the caller, the RBAC table (tokens and passwords join it).
//! - [`config`]: configuration read once from the environment, typed table names.
//! - [`clients`]: AWS clients built once per cold start.
//! - [`error`]: the one error type and its mapping to `application/problem+json`.
//! - [`http`]: the glue on top of `lambda_http` (routing by route key, JSON bodies, query and
//!   path parameters, responses, one log line per request).
//! - [`telemetry`]: JSON logging and init failure.
//! - [`domain`]: ids, timestamps, money.

pub mod auth;
pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod telemetry;

pub use error::{ApiError, FieldError};
