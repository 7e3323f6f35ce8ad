//! Wires the health function: logging, configuration, clients; the logic is in `lib.rs`.

// One thread: an instance serves one event at a time (docs/performance.md, "One thread").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let app = match shared::config::Config::from_env() {
        Ok(config) => health::App::new(config, &shared::clients::sdk_config().await),
        Err(err) => shared::telemetry::exit_on_init_error(&err),
    };
    shared::http::run(app, health::handle).await
}
