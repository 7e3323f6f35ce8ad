//! Structured logging: one JSON object per line on stdout, which Lambda ships to CloudWatch
//! Logs and the local gateway prefixes with the function's name.
//!
//! The level comes from `RUST_LOG` (or Lambda's own `AWS_LAMBDA_LOG_LEVEL`), default `info`.

use tracing_subscriber::EnvFilter;

/// Installs the global JSON subscriber and names the function for its metrics (the
/// `Function` dimension: the crate's name, `env!("CARGO_PKG_NAME")`). Call once, first thing
/// in `main`.
pub fn init(function: &'static str) {
    crate::metrics::set_function(function);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .map_err(|_| ())
                .and_then(|level| EnvFilter::try_new(level.to_lowercase()).map_err(|_| ()))
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // `try_init` so a test binary that calls it twice keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

/// Ends init on a configuration error the way Lambda expects: one clear log line naming the
/// problem, the error reported to the Runtime API's `/runtime/init/error`, and exit code 1.
/// Never a panic and never a first request that fails instead.
pub fn exit_on_init_error(error: &dyn std::fmt::Display) -> ! {
    let message = error.to_string();
    tracing::error!(error = %message, "init failed");
    if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
        report_init_error(&api, &message);
    }
    std::process::exit(1)
}

/// A best-effort, blocking POST to `/runtime/init/error`: the process is about to exit, so a
/// failure here changes nothing and is ignored.
fn report_init_error(api: &str, message: &str) {
    use std::io::{Read, Write};
    let body = serde_json::json!({ "errorMessage": message, "errorType": "Runtime.ConfigError" })
        .to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\n\
         Lambda-Runtime-Function-Error-Type: Runtime.ConfigError\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Ok(mut stream) = std::net::TcpStream::connect(api) {
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        if stream.write_all(request.as_bytes()).is_ok() {
            let mut reply = [0_u8; 256];
            let _ = stream.read(&mut reply);
        }
    }
}
