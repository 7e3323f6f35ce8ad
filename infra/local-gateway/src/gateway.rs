//! The gateway as a whole: provisions, starts the HTTP and WebSocket APIs, the event
//! sources and the schedules, and stops every function process when it stops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use axum::body::Bytes;
use tokio::task::JoinHandle;

use crate::model::Model;
use crate::provision::{provision, sdk_config, Provisioned};
use crate::runtime::{FunctionPool, LogSink, Outcome, RuntimeSettings};
use crate::template::Template;
use crate::websocket::WsState;

/// How to start a gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub template_path: PathBuf,
    /// 0 picks a free port.
    pub http_port: u16,
    /// 0 picks a free port.
    pub ws_port: u16,
    /// Where the function binaries are; default `$CARGO_TARGET_DIR/debug` or
    /// `<template dir>/target/debug`.
    pub bin_dir: Option<PathBuf>,
    /// Prefix of table and queue names.
    pub prefix: String,
    pub max_instances: usize,
    /// HTTP invocations of a function (without reserved concurrency) that may wait for an
    /// instance when `max_instances` are busy; beyond, they are throttled
    /// ([`crate::runtime::Admission::Bounded`]).
    pub max_queued: usize,
    /// How long such an invocation waits before it is throttled.
    pub queue_wait: Duration,
    /// Template parameter overrides (`Stage` defaults to `local`).
    pub params: BTreeMap<String, String>,
    /// Divides `rate(...)` intervals (tests set e.g. 60 so `rate(1 minute)` fires every second).
    pub schedule_speedup: f64,
    /// Where function output and START/END/REPORT lines go.
    pub logs: LogSink,
    /// Create tables and queues (false: only compute their local names, for `invoke`
    /// without a running stack).
    pub provision: bool,
    /// Start the SQS / stream pollers and schedules (the `invoke` subcommand does not).
    pub event_sources: bool,
    /// DynamoDB (and Streams) endpoint of this gateway instead of the environment's
    /// `AWS_ENDPOINT_URL_DYNAMODB` (a test that stops and restarts its own DynamoDB Local).
    pub dynamodb_endpoint: Option<String>,
    /// Put a fault-injecting proxy between the functions and DynamoDB
    /// ([`crate::fault_proxy`]); the gateway's own clients bypass it.
    pub dynamodb_faults: Option<crate::fault_proxy::FaultConfig>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            template_path: PathBuf::from("template.yaml"),
            http_port: 3000,
            ws_port: 3001,
            bin_dir: None,
            prefix: "collectpro-local-".into(),
            max_instances: 8,
            max_queued: 256,
            queue_wait: Duration::from_secs(10),
            params: BTreeMap::new(),
            schedule_speedup: 1.0,
            logs: LogSink::Stdout,
            provision: true,
            event_sources: true,
            dynamodb_endpoint: None,
            dynamodb_faults: None,
        }
    }
}

/// What every server task shares.
pub struct Shared {
    pub model: Model,
    pub pools: BTreeMap<String, Arc<FunctionPool>>,
    pub ws: WsState,
    /// The HTTP API stage's token buckets.
    pub throttle: crate::http_api::StageThrottle,
    pub region: String,
    pub ws_addr: SocketAddr,
    /// The local figures (`/_local/metrics`, `/_local/dashboard`).
    pub metrics: Arc<crate::metrics::Registry>,
    /// Whether the DynamoDB Streams mappings read their streams (see
    /// [`RunningGateway::enable_stream_mappings`]).
    pub stream_mappings_enabled: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// Invokes a function by logical id.
    pub async fn invoke(&self, function: &str, payload: Bytes) -> Outcome {
        match self.pools.get(function) {
            Some(pool) => pool.invoke(payload).await,
            None => Outcome::InitError(format!("no function {function}")),
        }
    }
}

/// The gateway entry point.
pub struct Gateway;

/// A started gateway. Dropping it stops everything (use [`RunningGateway::shutdown`] to wait).
pub struct RunningGateway {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    provisioned: Provisioned,
    tasks: Vec<JoinHandle<()>>,
    scheduler: Option<crate::schedule::Scheduler>,
    fault_proxy: Option<crate::fault_proxy::FaultProxy>,
}

/// The default directory of function binaries for a workspace: `COLLECTPRO_BIN_DIR` when set
/// (the benchmarks run another build profile's binaries), else the dev profile's output.
pub fn default_bin_dir(workspace: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("COLLECTPRO_BIN_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("debug"),
        None => workspace.join("target").join("debug"),
    }
}

impl Gateway {
    /// Provisions the template's resources and starts serving. Function binaries must be
    /// built before (`cargo build --bins`).
    pub async fn start(options: GatewayOptions) -> Result<RunningGateway> {
        let mut template = Template::load(&options.template_path)?;
        for (k, v) in &options.params {
            template.set_param(k, v);
        }
        let sdk = sdk_config().await;
        let endpoints = crate::fault_proxy::Endpoints::resolve(&options).await?;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let dynamodb = endpoints.dynamodb_client(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let provisioned = if options.provision {
            provision(&template, &options.prefix, &dynamodb, &sqs)
                .await
                .context("provisioning tables and queues")?
        } else {
            crate::provision::offline(&template, &options.prefix, &region)?
        };
        let model = Model::build(&template, &provisioned)?;

        let http_listener = tokio::net::TcpListener::bind(("127.0.0.1", options.http_port))
            .await
            .with_context(|| format!("binding the HTTP API on port {}", options.http_port))?;
        let ws_listener = tokio::net::TcpListener::bind(("127.0.0.1", options.ws_port))
            .await
            .with_context(|| format!("binding the WebSocket API on port {}", options.ws_port))?;
        let http_addr = http_listener.local_addr()?;
        let ws_addr = ws_listener.local_addr()?;

        let workspace = options
            .template_path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let bin_dir = options
            .bin_dir
            .clone()
            .unwrap_or_else(|| default_bin_dir(&workspace));
        let mut extra_env = BTreeMap::new();
        for (key, value) in std::env::vars() {
            if key.starts_with("AWS_ENDPOINT_URL") {
                extra_env.insert(key, value);
            }
        }
        endpoints.set_function_env(&mut extra_env);
        extra_env.insert(
            "WEBSOCKET_MANAGEMENT_ENDPOINT".into(),
            format!("http://{ws_addr}"),
        );
        let metrics = Arc::new(crate::metrics::Registry::default());
        let settings = Arc::new(RuntimeSettings {
            bin_dir,
            max_instances: options.max_instances.max(1),
            max_queued: options.max_queued,
            queue_wait: options.queue_wait,
            region: region.clone(),
            extra_env,
            logs: options.logs,
            metrics: metrics.clone(),
        });
        let pools = model
            .functions
            .values()
            .map(|f| {
                (
                    f.logical_id.clone(),
                    FunctionPool::new(f.clone(), settings.clone()),
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            model,
            pools,
            ws: WsState::default(),
            throttle: Default::default(),
            region: region.clone(),
            ws_addr,
            metrics: metrics.clone(),
            stream_mappings_enabled: tokio::sync::watch::Sender::new(true),
        });

        let mut tasks = Vec::new();
        let pages = Arc::new(crate::metrics::routes::LocalPages {
            registry: metrics.clone(),
            dead_letter_queues: dead_letter_queues(&template, &provisioned, &shared.model),
            name_prefix: options.prefix.clone(),
        });
        let http_app = axum::Router::new()
            .merge(crate::metrics::routes::router(pages))
            .fallback(crate::http_api::handle)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(shared.clone());
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(
                http_listener,
                http_app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        }));
        let ws_app = crate::websocket::router(shared.clone());
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(
                ws_listener,
                ws_app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        }));
        let mut scheduler = None;
        if options.provision {
            let queues = provisioned
                .queues
                .values()
                .map(|q| crate::metrics::sampler::SampledQueue {
                    name: q.name.clone(),
                    url: q.url.clone(),
                })
                .collect();
            tasks.push(crate::metrics::sampler::start(
                shared.clone(),
                sqs.clone(),
                queues,
            ));
        }
        if options.event_sources {
            let sqs_client = sqs.clone();
            for mapping in shared.model.sqs.clone() {
                tasks.push(crate::sqs_source::start(
                    shared.clone(),
                    sqs_client.clone(),
                    mapping,
                ));
            }
            let checkpoints = if options.provision && !shared.model.streams.is_empty() {
                Some(
                    crate::stream_source::Checkpoints::ensure(dynamodb.clone(), &options.prefix)
                        .await
                        .context("provisioning the stream checkpoint table")?,
                )
            } else {
                None
            };
            let clients = crate::stream_source::StreamClients {
                streams: endpoints.streams_client(&sdk),
                sqs: sqs.clone(),
                checkpoints,
            };
            for mapping in shared.model.streams.clone() {
                tasks.push(crate::stream_source::start(
                    shared.clone(),
                    clients.clone(),
                    mapping,
                ));
            }
            scheduler = Some(crate::schedule::Scheduler::start(
                shared.clone(),
                options.schedule_speedup,
            ));
        }
        Ok(RunningGateway {
            shared,
            http_addr,
            provisioned,
            tasks,
            scheduler,
            fault_proxy: endpoints.proxy,
        })
    }
}

/// The queues failures end up in, for the dashboard's dead-letter widget: every queue a
/// `RedrivePolicy` names as its `deadLetterTargetArn`, and every stream mapping's
/// `OnFailure` destination.
fn dead_letter_queues(
    template: &Template,
    provisioned: &Provisioned,
    model: &Model,
) -> Vec<String> {
    let targets: Vec<String> = template
        .of_kind("AWS::SQS::Queue")
        .filter_map(|q| {
            let policy = provisioned
                .resolver
                .resolve(q.properties.get("RedrivePolicy")?);
            policy
                .ok()?
                .get("deadLetterTargetArn")
                .map(crate::template::scalar)
        })
        .collect();
    provisioned
        .queues
        .values()
        .filter(|q| {
            targets.contains(&q.arn)
                || model
                    .streams
                    .iter()
                    .any(|m| m.on_failure.as_deref() == Some(q.url.as_str()))
        })
        .map(|q| q.name.clone())
        .collect()
}

impl RunningGateway {
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn ws_addr(&self) -> SocketAddr {
        self.shared.ws_addr
    }

    /// The resolved `Globals` environment (table names, queue URLs, stage).
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.provisioned.env
    }

    /// Names of everything provisioned.
    pub fn provisioned(&self) -> &Provisioned {
        &self.provisioned
    }

    pub fn model(&self) -> &Model {
        &self.shared.model
    }

    /// The instances of a function (stats: instances started, invocations).
    pub fn pool(&self, function: &str) -> Option<&Arc<FunctionPool>> {
        self.shared.pools.get(function)
    }

    /// Enables or disables every DynamoDB Streams event source mapping, as
    /// `UpdateEventSourceMapping --enabled` / `--no-enabled` does on AWS: a disabled mapping
    /// stops reading where it is and, enabled again, goes on from there (the records wait in
    /// the stream). A benchmark that compares a write path with a raw loop disables them, so
    /// that the consumers (on AWS separate invocations on the table's stream, not on its
    /// write capacity) do not share the one local DynamoDB with the writes being measured.
    pub fn enable_stream_mappings(&self, enabled: bool) {
        self.shared.stream_mappings_enabled.send_replace(enabled);
    }

    /// The process ids of a function's live instances (a fault test kills one with SIGKILL).
    pub fn instance_pids(&self, function: &str) -> Vec<u32> {
        self.pool(function).map(|p| p.pids()).unwrap_or_default()
    }

    /// The fault-injecting DynamoDB proxy, when [`GatewayOptions::dynamodb_faults`] set one.
    pub fn fault_proxy(&self) -> Option<&crate::fault_proxy::FaultProxy> {
        self.fault_proxy.as_ref()
    }

    /// Invokes a function once, directly (as `aws lambda invoke` would).
    pub async fn invoke(&self, function: &str, payload: serde_json::Value) -> Outcome {
        self.shared
            .invoke(function, Bytes::from(payload.to_string()))
            .await
    }

    /// Fires a schedule now (`Function.EventName`), as EventBridge would.
    pub async fn trigger_schedule(&self, name: &str) -> Result<Outcome> {
        let spec = self
            .shared
            .model
            .schedules
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| anyhow!("no schedule {name}"))?
            .clone();
        Ok(crate::schedule::fire(&self.shared, &spec).await)
    }

    /// A summary of what listens where, for the console.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let m = &self.shared.model;
        let mut out = String::new();
        let _ = writeln!(out, "HTTP API        http://{}", self.http_addr);
        let _ = writeln!(
            out,
            "figures         http://{0}/_local/dashboard  (Prometheus: http://{0}/_local/metrics)",
            self.http_addr
        );
        let ws = &self.shared.ws_addr;
        let stage = m
            .websocket
            .as_ref()
            .map(|w| w.stage.as_str())
            .unwrap_or("local");
        let _ = writeln!(out, "WebSocket API   ws://{ws}  (also ws://{ws}/{stage})");
        let _ = writeln!(
            out,
            "@connections    http://{ws}/@connections/{{connectionId}}"
        );
        for f in m.functions.values() {
            let _ = writeln!(
                out,
                "function {} (binary {}, {} MB, timeout {} s)",
                f.logical_id,
                f.binary,
                f.memory_mb,
                f.timeout.as_secs()
            );
            for r in m.http_routes.iter().filter(|r| r.function == f.logical_id) {
                let _ = writeln!(out, "    {}", r.route_key());
            }
            if let Some(w) = &m.websocket {
                for (k, _) in w.routes.iter().filter(|(_, v)| **v == f.logical_id) {
                    let _ = writeln!(out, "    websocket {k}");
                }
            }
            for s in m.sqs.iter().filter(|s| s.function == f.logical_id) {
                let _ = writeln!(
                    out,
                    "    sqs {} (batch {}, window {} s)",
                    s.queue_logical_id,
                    s.batch_size,
                    s.batching_window.as_secs()
                );
            }
            for s in m.streams.iter().filter(|s| s.function == f.logical_id) {
                let _ = writeln!(out, "    stream {} ({})", s.stream_arn, s.starting_position);
            }
            for s in m.schedules.iter().filter(|s| s.function == f.logical_id) {
                let _ = writeln!(out, "    schedule {} {}", s.name, s.expression);
            }
        }
        out
    }

    /// Stops serving and stops every function process, waiting for them to exit.
    pub async fn shutdown(mut self) {
        self.stop();
        // Give the monitors a moment to reap the killed processes.
        for _ in 0..50 {
            if self.shared.pools.values().all(|p| p.instances() == 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(s) = self.scheduler.take() {
            s.stop();
        }
        self.shared.ws.close_all();
        for pool in self.shared.pools.values() {
            pool.kill_all();
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.stop();
    }
}
