//! The template's schedules fire the real `scheduler` binary through the local gateway
//! (Lambda Runtime API, the schedule's `Input` as the event), under `infra/stack.sh`.

use std::path::Path;

use local_gateway::model::Model;
use local_gateway::provision::{offline, random_prefix, workspace_template_path};
use local_gateway::runtime::LogSink;
use local_gateway::{Gateway, GatewayOptions, Outcome, Template};
use serde_json::json;
use shared::auth::{Caller, Role};
use shared::config::TableName;
use shared::domain::{Id, Timestamp};
use shared::realtime::{ConnectionItem, ConnectionRepo};

/// The template declares the four schedules with their inputs, as the local gateway reads
/// them (and as EventBridge gets them).
#[test]
fn the_template_schedules_each_job() {
    let template = Template::load(workspace_template_path()).unwrap();
    let provisioned = offline(&template, "t-", "us-east-1").unwrap();
    let model = Model::build(&template, &provisioned).unwrap();
    let mut schedules: Vec<(String, String, serde_json::Value)> = model
        .schedules
        .iter()
        .filter(|s| s.function == "SchedulerFunction")
        .map(|s| {
            assert!(s.enabled);
            (
                s.name.clone(),
                s.expression.clone(),
                s.input.clone().unwrap_or_default(),
            )
        })
        .collect();
    schedules.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        schedules,
        [
            (
                "SchedulerFunction.Aging".to_owned(),
                "cron(5 0 * * ? *)".to_owned(),
                json!({"job": "aging"})
            ),
            (
                "SchedulerFunction.BrokenPromises".to_owned(),
                "cron(15 0 * * ? *)".to_owned(),
                json!({"job": "broken_promises"})
            ),
            (
                "SchedulerFunction.Cleanup".to_owned(),
                "rate(1 hour)".to_owned(),
                json!({"job": "cleanup"})
            ),
            (
                "SchedulerFunction.MissedInstallments".to_owned(),
                "cron(25 0 * * ? *)".to_owned(),
                json!({"job": "missed_installments"})
            ),
        ]
    );
    for (_, _, input) in &schedules {
        assert!(scheduler::Job::of_event(input).is_ok());
    }
}

#[tokio::test]
async fn each_schedule_fires_the_function_through_the_local_gateway() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_scheduler"))
        .parent()
        .unwrap()
        .to_path_buf();
    let gw = Gateway::start(GatewayOptions {
        template_path: workspace_template_path(),
        http_port: 0,
        ws_port: 0,
        bin_dir: Some(bin_dir),
        prefix: random_prefix(),
        logs: LogSink::None,
        event_sources: false,
        ..Default::default()
    })
    .await
    .expect("starting the gateway (run under infra/stack.sh)");
    // One expired connection for the cleanup to find.
    let sdk = shared::clients::sdk_config().await;
    let connections = ConnectionRepo::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        TableName::new(gw.env()["CONNECTIONS_TABLE"].clone()),
    );
    let caller = Caller {
        user_id: Id::generate(),
        role: Role::Viewer,
    };
    let now = Timestamp::now().unix_seconds();
    connections
        .put_connection(&ConnectionItem::new("gone", &caller, now * 1000, now - 1))
        .await
        .unwrap();

    let fire = |name: &'static str| {
        let gw = &gw;
        async move {
            let outcome = gw.trigger_schedule(name).await.unwrap();
            assert!(
                matches!(outcome, Outcome::Success(_)),
                "{name}: {outcome:?}"
            );
            outcome.to_json()
        }
    };
    assert_eq!(
        fire("SchedulerFunction.Cleanup").await,
        json!({"job": "cleanup", "connections_removed": 1, "idempotency_keys_deleted": 0, "idempotency_keys_kept": 0})
    );
    assert!(connections.connection("gone").await.unwrap().is_none());
    assert_eq!(
        fire("SchedulerFunction.Aging").await,
        json!({"job": "aging", "examined": 0, "updated": 0, "unchanged": 0, "skipped": 0})
    );
    assert_eq!(
        fire("SchedulerFunction.BrokenPromises").await["job"],
        "broken_promises"
    );

    // An event naming no job is a function error, not a silent success.
    let outcome = gw.invoke("SchedulerFunction", json!({"job": "nope"})).await;
    assert!(matches!(outcome, Outcome::FunctionError(_)), "{outcome:?}");
    gw.shutdown().await;
}
