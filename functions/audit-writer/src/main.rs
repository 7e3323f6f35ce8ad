//! Wires the audit writer: logging, configuration, clients built once; the logic is in `lib.rs`.

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use lambda_runtime::{service_fn, LambdaEvent};

// One thread: an instance serves one event at a time (docs/performance.md, "One thread").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let app = match audit_writer::App::from_env().await {
        Ok(app) => app,
        Err(err) => shared::telemetry::exit_on_init_error(&err),
    };
    // The app lives as long as the process.
    let app: &'static audit_writer::App = Box::leak(Box::new(app));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<DynamoDbEventResponse, lambda_runtime::Error>(
            shared::metrics::emit_after(audit_writer::handle(app, event.payload)).await,
        )
    }))
    .await
}
