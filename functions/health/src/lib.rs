//! Health checks.
//!
//! - `GET /health`: liveness. No I/O: it answers whenever the function can run at all.
//! - `GET /health/ready`: readiness. `DescribeTable` on every table and `GetQueueAttributes`
//!   on every queue, all at once, each bounded by [`CHECK_TIMEOUT`]; `503` naming the
//!   dependency when one is down. The whole answer comes within about that bound, so a
//!   load balancer or a deploy script can poll it.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use http::StatusCode;
use lambda_http::Request;
use serde::Serialize;
use shared::config::Config;
use shared::http::{json, route_key, unknown_route, HttpResult};
use utoipa::{OpenApi, ToSchema};

/// Each dependency check gives up after this long; the answer then names it `down`.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// Configuration and clients, built once per cold start.
pub struct App {
    config: Config,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
}

impl App {
    /// Readiness clients do not retry and time out fast: a dependency that does not answer
    /// at once is what the check exists to report.
    pub fn new(config: Config, sdk: &SdkConfig) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(CHECK_TIMEOUT)
            .operation_timeout(CHECK_TIMEOUT)
            .build();
        let retries = aws_config::retry::RetryConfig::disabled();
        let dynamodb = shared::clients::dynamodb_with(sdk, |builder| {
            builder
                .timeout_config(timeouts.clone())
                .retry_config(retries.clone())
        });
        let sqs = aws_sdk_sqs::config::Builder::from(sdk)
            .timeout_config(timeouts)
            .retry_config(retries)
            .build();
        Self {
            config,
            dynamodb,
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
        }
    }
}

/// The HTTP API of this function, merged into `/openapi.json` by the docs function.
#[derive(OpenApi)]
#[openapi(
    paths(live, ready),
    components(schemas(Liveness, Readiness, DependencyCheck))
)]
pub struct ApiDoc;

/// Routes a request by the route key API Gateway matched.
pub async fn handle(app: &App, req: Request) -> HttpResult {
    match route_key(&req).as_str() {
        "GET /health" => live(app),
        "GET /health/ready" => ready(app).await,
        other => Err(unknown_route(other)),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    status: &'static str,
    stage: String,
    version: &'static str,
}

/// Liveness: the function runs.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The function runs", body = Liveness)))]
fn live(app: &App) -> HttpResult {
    json(
        StatusCode::OK,
        &Liveness {
            status: "ok",
            stage: app.config.stage.clone(),
            version: env!("CARGO_PKG_VERSION"),
        },
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyCheck {
    /// The table name or the queue's name.
    name: String,
    /// `dynamodb` or `sqs`.
    kind: &'static str,
    /// `up` or `down`.
    status: &'static str,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` when every dependency is up, else `not_ready`.
    status: &'static str,
    checks: Vec<DependencyCheck>,
}

/// Readiness: every table and queue answers.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Every dependency is up", body = Readiness),
        (status = 503, description = "At least one dependency is down; `checks` names it", body = Readiness)))]
async fn ready(app: &App) -> HttpResult {
    let tables = app.config.tables.all().into_iter().map(|table| {
        check(
            table.to_string(),
            "dynamodb",
            describe_table(app, table.as_str()),
        )
    });
    let queues = app.config.queues.all().into_iter().map(|url| {
        let name = url.rsplit('/').next().unwrap_or(url).to_owned();
        check(name, "sqs", queue_attributes(app, url))
    });
    let (mut checks, queue_checks) = futures::join!(
        futures::future::join_all(tables),
        futures::future::join_all(queues)
    );
    checks.extend(queue_checks);
    let all_up = checks.iter().all(|check| check.status == "up");
    for down in checks.iter().filter(|check| check.status == "down") {
        tracing::warn!(dependency = %down.name, error = ?down.error, "dependency down");
    }
    let (status, body_status) = if all_up {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    json(
        status,
        &Readiness {
            status: body_status,
            checks,
        },
    )
}

async fn describe_table(app: &App, table: &str) -> Result<(), String> {
    app.dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map(drop)
        .map_err(|err| aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string())
}

async fn queue_attributes(app: &App, url: &str) -> Result<(), String> {
    app.sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map(drop)
        .map_err(|err| aws_sdk_sqs::error::DisplayErrorContext(err).to_string())
}

/// Times one dependency call, bounded by [`CHECK_TIMEOUT`] even if the client's own
/// timeouts do not fire (a half-open connection).
async fn check(
    name: String,
    kind: &'static str,
    call: impl std::future::Future<Output = Result<(), String>>,
) -> DependencyCheck {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())));
    DependencyCheck {
        name,
        kind,
        status: if outcome.is_ok() { "up" } else { "down" },
        latency_ms: (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        error: outcome.err(),
    }
}
