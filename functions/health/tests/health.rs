//! The health function against the real local stack (run under `infra/stack.sh`):
//! liveness from the sample event in `events/`, readiness with every dependency up, and
//! readiness with DynamoDB unreachable or hanging.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_config::SdkConfig;
use health::{handle, App};
use http::StatusCode;
use serde_json::Value;
use shared::config::Config;

fn sample_event(name: &str) -> lambda_http::Request {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    lambda_http::request::from_str(&text).unwrap()
}

fn with_route(route_key: &str) -> lambda_http::Request {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events/apigw-http-health.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let raw_path = route_key.split_once(' ').unwrap().1;
    event["routeKey"] = route_key.into();
    event["requestContext"]["routeKey"] = route_key.into();
    event["rawPath"] = raw_path.into();
    event["requestContext"]["http"]["path"] = raw_path.into();
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn body(response: &lambda_http::Response<lambda_http::Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

async fn provisioned() -> (Config, BTreeMap<String, String>) {
    let provisioned = local_gateway::provision::provision_for_test()
        .await
        .unwrap();
    let env = provisioned.env.clone();
    let config = Config::from_lookup(&|name| env.get(name).cloned()).unwrap();
    (config, provisioned.env)
}

/// The environment's service configuration, except that DynamoDB's endpoint variable names
/// `endpoint`: the same override `AWS_ENDPOINT_URL_DYNAMODB` makes, for this client only.
#[derive(Debug)]
struct DynamoDbAt(String);

impl aws_types::service_config::LoadServiceConfig for DynamoDbAt {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        // The SDK asks for the generic variable and the service id; the service-specific
        // variable is AWS_ENDPOINT_URL_<SERVICE ID>, as aws-config's own loader builds it.
        let specific = format!(
            "{}_{}",
            key.env(),
            key.service_id().to_uppercase().replace(' ', "_")
        );
        if specific == "AWS_ENDPOINT_URL_DYNAMODB" {
            return Some(self.0.clone());
        }
        std::env::var(&specific)
            .or_else(|_| std::env::var(key.env()))
            .ok()
    }
}

/// The SDK configuration the function would load, with DynamoDB pointed at `endpoint`.
async fn sdk_with_dynamodb_at(endpoint: &str) -> SdkConfig {
    shared::clients::sdk_config()
        .await
        .into_builder()
        .service_config(DynamoDbAt(endpoint.to_owned()))
        .build()
}

#[tokio::test]
async fn liveness_answers_the_sample_event_without_io() {
    // Endpoints nobody listens on: /health must not touch them.
    let (config, _) = provisioned().await;
    let app = App::new(config, &sdk_with_dynamodb_at("http://127.0.0.1:9").await);
    let response = handle(&app, sample_event("apigw-http-health.json"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = body(&response);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["stage"], "local");
}

#[tokio::test]
async fn ready_lists_every_table_and_queue_up() {
    let (config, env) = provisioned().await;
    let app = App::new(config, &shared::clients::sdk_config().await);
    let response = handle(&app, with_route("GET /health/ready")).await.unwrap();
    let body = body(&response);
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    let checks = body["checks"].as_array().unwrap();
    assert_eq!(checks.len(), shared::config::Tables::VARIABLES.len() + 2);
    for check in checks {
        assert_eq!(check["status"], "up", "{check}");
        assert!(check["latency_ms"].as_f64().unwrap() >= 0.0);
    }
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&env["ACCOUNTS_TABLE"].as_str()), "{names:?}");
}

#[tokio::test]
async fn not_ready_names_dynamodb_when_it_is_down() {
    let (config, env) = provisioned().await;
    // A port that was free a moment ago: connections are refused, as with DynamoDB stopped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sdk = sdk_with_dynamodb_at(&format!("http://127.0.0.1:{port}")).await;
    // Only DynamoDB is down: SQS keeps its own endpoint variable.
    let app = App::new(config, &sdk);
    let started = std::time::Instant::now();
    let response = handle(&app, with_route("GET /health/ready")).await.unwrap();
    println!(
        "readiness with DynamoDB down answered in {:?}",
        started.elapsed()
    );
    let body = body(&response);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not_ready");
    let down: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "down")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        down.len(),
        shared::config::Tables::VARIABLES.len(),
        "{body}"
    );
    assert!(down.contains(&env["USERS_TABLE"].as_str()));
}

#[tokio::test]
async fn not_ready_when_dynamodb_accepts_but_never_answers() {
    let (config, _) = provisioned().await;
    // Accepts connections and holds them open without a byte of answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let app = App::new(
        config,
        &sdk_with_dynamodb_at(&format!("http://127.0.0.1:{port}")).await,
    );
    let response = handle(&app, with_route("GET /health/ready")).await.unwrap();
    let body = body(&response);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let first_down = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "down")
        .unwrap();
    assert!(
        first_down["latency_ms"].as_f64().unwrap()
            >= health::CHECK_TIMEOUT.as_millis() as f64 * 0.9,
        "a hanging dependency is cut at the check timeout: {first_down}"
    );
    holder.abort();
}

#[tokio::test]
async fn an_unknown_route_is_a_problem_404() {
    let (config, _) = provisioned().await;
    let app = App::new(config, &shared::clients::sdk_config().await);
    let err = handle(&app, with_route("GET /nope")).await.unwrap_err();
    assert_eq!(err.status, StatusCode::NOT_FOUND);
}
