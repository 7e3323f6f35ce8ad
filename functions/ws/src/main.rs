//! Wires the ws function: logging, configuration, clients, the key set (SSM, once); the
//! logic is in `lib.rs`.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{service_fn, LambdaEvent};

// One thread: an instance serves one event at a time (docs/performance.md, "One thread").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let app = match ws::App::from_env().await {
        Ok(app) => app,
        Err(err) => shared::telemetry::exit_on_init_error(&err),
    };
    // The app lives as long as the process.
    let app: &'static ws::App = Box::leak(Box::new(app));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, std::convert::Infallible>(
                shared::metrics::emit_after(ws::handle(app, event.payload)).await,
            )
        },
    ))
    .await
}
