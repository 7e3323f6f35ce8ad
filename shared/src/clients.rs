//! AWS clients, built once per cold start in `main` and shared by every invocation.
//!
//! Endpoints come only from the SDK's standard variables (`AWS_ENDPOINT_URL_DYNAMODB`,
//! `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL` ...), so the same binary talks to DynamoDB Local
//! and moto on a laptop and to AWS in a deployment, with no `if local` branch anywhere.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the shared SDK configuration from the environment (region, credentials, endpoints).
///
/// Timeouts are explicit: a Lambda behind API Gateway has 29 s at most, and a hung
/// connection must fail fast enough for a retry to fit.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(12))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

/// The clients a function may use. Cloning is cheap (each client is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

/// A DynamoDB client whose every call goes through the call recorder
/// ([`crate::dynamo::recorder`]): consumed capacity, latency and outcome in the invocation's
/// metrics. `tune` adjusts the configuration first (the health check's short timeouts).
pub fn dynamodb_with(
    config: &SdkConfig,
    tune: impl FnOnce(aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder,
) -> aws_sdk_dynamodb::Client {
    let builder = tune(aws_sdk_dynamodb::config::Builder::from(config))
        .interceptor(crate::dynamo::recorder::CallRecorder);
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

/// [`dynamodb_with`] the shared configuration as it is.
pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    dynamodb_with(config, |builder| builder)
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            dynamodb: dynamodb(config),
            sqs: aws_sdk_sqs::Client::new(config),
        }
    }

    pub async fn from_env() -> Self {
        Self::new(&sdk_config().await)
    }

    /// Opens the DynamoDB connection during init, so the first user request does not pay
    /// for the TLS handshake (on AWS most of a fresh container's first call). A failure is
    /// only logged: init must not fail because a dependency blinked.
    pub async fn prime(&self, table: &crate::config::TableName) {
        if let Err(err) = self
            .dynamodb
            .describe_table()
            .table_name(table.as_str())
            .send()
            .await
        {
            tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err), "priming the DynamoDB connection failed");
        }
    }
}
