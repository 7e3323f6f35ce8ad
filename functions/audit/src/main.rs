//! Wires the audit API: logging, configuration, clients, the key set (SSM, once); the logic
//! is in `lib.rs`.

// One thread: an instance serves one event at a time (docs/performance.md, "One thread").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let app = match audit::App::from_env().await {
        Ok(app) => app,
        Err(err) => shared::telemetry::exit_on_init_error(&err),
    };
    shared::http::run(app, audit::handle).await
}
