//! AWS clients, built once per cold start in `main` and shared by every invocation.
//!
//! Endpoints come only from the SDK's standard variables (`AWS_ENDPOINT_URL_DYNAMODB`,
//! `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL` ...), so the same binary talks to DynamoDB Local
//! and moto on a laptop and to AWS in a deployment, with no `if local` branch anywhere.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::config::{TableName, Tables};

/// The roots every AWS service endpoint chains to (Amazon Trust Services: Amazon Root CA 1
/// to 4, and Starfield Services Root G2, which cross-signs them), as PEM.
const AWS_ROOTS: &[u8] = include_bytes!("aws-roots.pem");

/// The SDK's default HTTPS client (hyper, rustls with aws-lc, proxy from the environment)
/// trusting [`AWS_ROOTS`] only. The default reads and parses the system's whole store
/// (about 150 certificates, hundreds of files under `/etc/ssl/certs`) at the first
/// connection of every cold start: 10 to 30 ms of Init Duration on this machine for roots
/// an AWS endpoint never uses (issue 17).
fn https_client() -> SharedHttpClient {
    let trust = TrustStore::empty().with_pem_certificate(AWS_ROOTS);
    let tls = TlsContext::builder().with_trust_store(trust);
    // Building a context only stores its parts: it cannot fail (were it to, the default
    // context, the system's roots, would still connect).
    let tls = tls.build().unwrap_or_default();
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// Loads the shared SDK configuration from the environment (region, credentials, endpoints).
///
/// Timeouts are explicit: a Lambda behind API Gateway has 29 s at most, and a hung
/// connection must fail fast enough for a retry to fit.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
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
    pub async fn prime(&self, tables: &Tables, table: fn(&Tables) -> &TableName) {
        if let Err(err) = self.try_prime(tables, table(tables)).await {
            tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err), "priming the DynamoDB connection failed");
        }
    }

    /// The priming call: a `GetItem` of a key no item has, on `table`. A data-plane read
    /// costs the same whatever the table's shape; the `DescribeTable` it replaces is a
    /// control-plane call whose answer grows with the table's indexes (Accounts has 16
    /// GSIs: 24 ms on DynamoDB Local against 5 ms for a table without, which made the
    /// three functions priming Accounts the slowest to start, issue 17).
    pub async fn try_prime(
        &self,
        tables: &Tables,
        table: &TableName,
    ) -> Result<(), aws_sdk_dynamodb::error::SdkError<GetItemError>> {
        let unused = || AttributeValue::S(PRIME_KEY.to_owned());
        let mut request = self
            .dynamodb
            .get_item()
            .table_name(table.as_str())
            .key("pk", unused());
        if tables.has_sort_key(table) {
            request = request.key("sk", unused());
        }
        request.send().await.map(drop)
    }
}

/// The key value the priming read asks for: no item is ever stored under it.
const PRIME_KEY: &str = "#prime";

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    /// The SDK parses the roots with this very function at the first connection and panics
    /// on a bad one: a broken file must fail here, not in a deployed function.
    #[test]
    fn the_aws_roots_are_five_certificates() {
        let roots = CertificateDer::pem_slice_iter(super::AWS_ROOTS)
            .collect::<Result<Vec<_>, _>>()
            .expect("valid PEM");
        assert_eq!(roots.len(), 5);
    }
}
