//! Every sample event in `events/` parses as the event type its Lambda receives, so a
//! sample that drifts from AWS's shape fails here. Handlers' own tests feed them in too
//! (health: `apigw-http-health.json`; later functions: their SQS, stream, WebSocket and
//! schedule samples).

use std::path::PathBuf;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use serde::de::DeserializeOwned;

fn load<T: DeserializeOwned>(name: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
}

#[test]
fn every_sample_event_is_covered() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "apigw-http-health.json",
            "dynamodb-stream-payment.json",
            "eventbridge-schedule.json",
            "sqs-bulk-batch.json",
            "sqs-s3-object-created.json",
            "websocket-connect.json",
            "websocket-subscribe.json",
        ],
        "a new sample needs a parse test here"
    );
}

#[test]
fn http_api_sample_is_payload_format_2() {
    let event: ApiGatewayV2httpRequest = load("apigw-http-health.json");
    assert_eq!(event.route_key.as_deref(), Some("GET /health"));
    assert_eq!(event.request_context.http.method, http::Method::GET);
    let request = lambda_http::request::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
    assert_eq!(shared::http::route_key(&request), "GET /health");
    assert_eq!(shared::http::request_id(&request), "JKJaXmPLvHcESHA=");
}

#[test]
fn websocket_samples_carry_route_and_connection() {
    let connect: ApiGatewayWebsocketProxyRequest = load("websocket-connect.json");
    assert_eq!(
        connect.request_context.route_key.as_deref(),
        Some("$connect")
    );
    assert!(connect.query_string_parameters.first("token").is_some());
    let subscribe: ApiGatewayWebsocketProxyRequest = load("websocket-subscribe.json");
    assert_eq!(
        subscribe.request_context.route_key.as_deref(),
        Some("subscribe")
    );
    let body: serde_json::Value = serde_json::from_str(subscribe.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["action"], "subscribe");
    assert_eq!(
        connect.request_context.connection_id,
        subscribe.request_context.connection_id
    );
}

#[test]
fn s3_notification_sample_is_an_object_created_in_the_imports_prefix() {
    let event: SqsEvent = load("sqs-s3-object-created.json");
    assert_eq!(event.records.len(), 1);
    let body: serde_json::Value =
        serde_json::from_str(event.records[0].body.as_deref().unwrap()).unwrap();
    let record = &body["Records"][0];
    assert_eq!(record["eventSource"], "aws:s3");
    assert!(record["eventName"]
        .as_str()
        .unwrap()
        .starts_with("ObjectCreated:"));
    assert!(record["s3"]["bucket"]["name"].is_string());
    let key = record["s3"]["object"]["key"].as_str().unwrap();
    assert!(
        key.starts_with("imports/") && key.ends_with(".csv"),
        "{key}"
    );
    assert!(record["s3"]["object"]["size"].as_u64().unwrap() > 0);
}

#[test]
fn sqs_sample_is_a_bulk_chunk() {
    let event: SqsEvent = load("sqs-bulk-batch.json");
    assert_eq!(event.records.len(), 1);
    let record = &event.records[0];
    assert_eq!(record.event_source.as_deref(), Some("aws:sqs"));
    let body: serde_json::Value = serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
    let job: shared::domain::Id = serde_json::from_value(body["job_id"].clone()).unwrap();
    assert!(job.timestamp_ms() > 0);
}

#[test]
fn stream_sample_has_a_new_image() {
    let event: DynamoDbEvent = load("dynamodb-stream-payment.json");
    let record = &event.records[0];
    assert_eq!(record.event_name, "INSERT");
    assert!(record.change.new_image.contains_key("amount"));
}

#[test]
fn schedule_sample_is_an_eventbridge_scheduled_event() {
    let event: EventBridgeEvent = load("eventbridge-schedule.json");
    assert_eq!(event.detail_type, "Scheduled Event");
    assert_eq!(event.source, "aws.events");
}
