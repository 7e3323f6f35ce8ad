//! Wires the bulk worker: logging, configuration, clients built once; the logic is in
//! `lib.rs`.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, LambdaEvent};

// One thread: an instance serves one event at a time (docs/performance.md, "One thread").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let app = match bulk_worker::App::from_env().await {
        Ok(app) => app,
        Err(err) => shared::telemetry::exit_on_init_error(&err),
    };
    let app: &'static bulk_worker::App = Box::leak(Box::new(app));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(
            shared::metrics::emit_after(bulk_worker::handle(app, event.payload)).await,
        )
    }))
    .await
}
