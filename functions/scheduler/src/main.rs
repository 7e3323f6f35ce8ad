//! Wires the scheduler: logging, configuration, clients built once; the jobs are in
//! `lib.rs`.

use lambda_runtime::{service_fn, LambdaEvent};
use shared::domain::Timestamp;

// One thread: an instance serves one event at a time (docs/performance.md, "One thread").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let app = match scheduler::App::from_env().await {
        Ok(app) => app,
        Err(err) => shared::telemetry::exit_on_init_error(&err),
    };
    // The app lives as long as the process.
    let app: &'static scheduler::App = Box::leak(Box::new(app));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            shared::metrics::emit_after(scheduler::handle(app, &event.payload, Timestamp::now()))
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
