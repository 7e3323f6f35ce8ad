//! The local stand-in for the AWS managed services CollectPro runs on (no Docker, no AWS).
//!
//! It reads `template.yaml`, and nothing else, to learn the functions, routes, tables,
//! queues, event source mappings, schedules and the WebSocket API, then:
//!
//! - **provisions** every table (keys, GSIs, TTL, streams) and queue (with redrive) on
//!   DynamoDB Local and the SQS emulator, idempotently, under a name prefix (a table or queue
//!   with logical id `X` is named `{prefix}X`), and resolves the functions' environment;
//! - runs each function's **real binary** (built by `cargo build --bins`) as its own process
//!   per instance and speaks the **Lambda Runtime API** to it (`/2018-06-01/runtime/...`),
//!   scaling out to `max_instances` per function, reusing warm instances, enforcing the
//!   template's `Timeout`, replacing crashed instances;
//! - serves the **HTTP API** (payload format 2.0, CORS from `CorsConfiguration`), the
//!   **WebSocket API** and its `@connections` management endpoint, polls **SQS** and
//!   **DynamoDB Streams** like event source mappings, and fires **schedules**.
//!
//! # Tables for another crate's tests
//!
//! Run under `infra/stack.sh` (which exports `AWS_ENDPOINT_URL_DYNAMODB`, `_SQS`, region and
//! dummy credentials):
//!
//! ```ignore
//! let provisioned = local_gateway::provision_for_test().await?;
//! let config = shared::config::Config::from_lookup(&|name| provisioned.env.get(name).cloned())?;
//! ```
//!
//! [`provision_for_test`] reads the workspace's `template.yaml`, provisions it under a fresh
//! random prefix and returns the `Globals` environment resolved (`STAGE=local`,
//! `USERS_TABLE=t01j...-UsersTable`, `BULK_QUEUE_URL=http://...`). [`provision()`] is the same
//! with your own template, prefix and clients.
//!
//! # The whole gateway in a test
//!
//! Build the function binaries first (`cargo build --bins`), then:
//!
//! ```ignore
//! let gw = local_gateway::Gateway::start(local_gateway::GatewayOptions {
//!     template_path: "template.yaml".into(),
//!     http_port: 0,
//!     ws_port: 0,
//!     prefix: local_gateway::provision::random_prefix(),
//!     ..Default::default()
//! })
//! .await?;
//! let url = format!("http://{}/health", gw.http_addr());
//! // ... gw.ws_addr(), gw.env(); dropping gw (or gw.shutdown().await) stops every process.
//! ```
//!
//! Binaries are looked up in `--bin-dir` / [`GatewayOptions::bin_dir`], by default
//! `$CARGO_TARGET_DIR/debug` or `<workspace>/target/debug`.

pub mod fault_proxy;
pub mod gateway;
pub mod http_api;
pub mod metrics;
pub mod model;
pub mod provision;
pub mod request_log;
pub mod runtime;
pub mod schedule;
pub mod sqs_source;
pub mod stream_source;
pub mod template;
pub mod websocket;

pub use gateway::{Gateway, GatewayOptions, RunningGateway};
pub use provision::{provision, provision_for_test, Provisioned};
pub use runtime::Outcome;
pub use template::Template;
