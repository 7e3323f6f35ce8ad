//! A fault-injecting DynamoDB proxy: the errors DynamoDB Local never produces, at set rates.
//!
//! DynamoDB Local runs one transaction at a time, never throttles and never fails
//! internally, so the paths that handle `TransactionConflict` cancellations, throttling and
//! 500s (payments racing on one account, refresh-token rotation, the dashboard's hot
//! aggregate items, the bulk job's markers) would otherwise only ever run on AWS. The proxy
//! sits between the functions and DynamoDB Local (the gateway gives the functions its URL as
//! `AWS_ENDPOINT_URL_DYNAMODB`; its own clients and the stream pollers keep talking to
//! DynamoDB Local directly) and, per request, either forwards it unchanged or answers with
//! one of DynamoDB's real error responses **instead of** forwarding it (the request never
//! reaches the table, as when AWS refuses it before applying anything), except
//! `LostResponse`, which answers the error *after* the request was applied (a 500 on AWS
//! does not say whether the write happened; the SDK's automatic retry then meets its own
//! write):
//!
//! | fault | operations | answer |
//! | --- | --- | --- |
//! | `TransactionConflict` | `TransactWriteItems` | 400 `TransactionCanceledException`, `CancellationReasons` one per item, one of them `TransactionConflict`, the others `None` |
//! | `Throttling` | every operation | 400 `ThrottlingException` |
//! | `ProvisionedThroughputExceeded` | every operation | 400 `ProvisionedThroughputExceededException` |
//! | `InternalServerError` | every operation | 500 `InternalServerError` |
//! | `LostResponse` | every operation | forwarded and applied, then answered 500 `InternalServerError` (the write happened, the caller cannot know) |
//!
//! The wire shapes are DynamoDB's JSON 1.0 errors (`Content-Type: application/x-amz-json-1.0`,
//! `x-amzn-RequestId`, a body `{"__type": "com.amazonaws.dynamodb.v20120810#<Name>",
//! "message": ...}`; the cancellation carries `Message` and `CancellationReasons`
//! `[{"Code": "None"}, {"Code": "TransactionConflict", "Message": ...}]`), so the SDK parses
//! them into the same typed errors, and applies the same retry policy, as on AWS.
//!
//! Configured per run: `local-gateway run --dynamodb-faults
//! "TransactionConflict=0.05,Throttling=0.02,InternalServerError=0.01" --fault-seed 7`
//! ([`FaultConfig::parse`]). The decisions come from one seeded generator drawn once per
//! request, so a run with the same seed and the same order of requests injects the same
//! faults. Counters ([`FaultProxy::stats`]) say how many requests were forwarded and how many
//! faults of each kind were answered, so a test can show that it was exercised.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// One kind of injected error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `TransactWriteItems` cancelled with a `TransactionConflict` reason.
    TransactionConflict,
    /// 400 `ThrottlingException`.
    Throttling,
    /// 400 `ProvisionedThroughputExceededException`.
    ProvisionedThroughputExceeded,
    /// 500 `InternalServerError`.
    InternalServerError,
    /// Forwarded (and applied), then answered 500 `InternalServerError`.
    LostResponse,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::TransactionConflict,
        Fault::Throttling,
        Fault::ProvisionedThroughputExceeded,
        Fault::InternalServerError,
        Fault::LostResponse,
    ];

    /// The name used in `--dynamodb-faults` and in the figures.
    pub fn name(self) -> &'static str {
        match self {
            Fault::TransactionConflict => "TransactionConflict",
            Fault::Throttling => "Throttling",
            Fault::ProvisionedThroughputExceeded => "ProvisionedThroughputExceeded",
            Fault::InternalServerError => "InternalServerError",
            Fault::LostResponse => "LostResponse",
        }
    }

    fn index(self) -> usize {
        match self {
            Fault::TransactionConflict => 0,
            Fault::Throttling => 1,
            Fault::ProvisionedThroughputExceeded => 2,
            Fault::InternalServerError => 3,
            Fault::LostResponse => 4,
        }
    }

    fn parse(name: &str) -> Option<Fault> {
        let name = name.trim();
        Fault::ALL.into_iter().find(|f| {
            f.name().eq_ignore_ascii_case(name)
                // The exception names are accepted too.
                || format!("{}Exception", f.name()).eq_ignore_ascii_case(name)
        })
    }

    /// Whether this fault can answer `operation` (`TransactWriteItems`, `GetItem` ...).
    fn applies_to(self, operation: &str) -> bool {
        match self {
            Fault::TransactionConflict => operation == "TransactWriteItems",
            _ => true,
        }
    }
}

/// What to inject: a rate (0..=1) per fault and the generator's seed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    pub rates: Vec<(Fault, f64)>,
    pub seed: u64,
}

impl FaultConfig {
    /// Parses `"TransactionConflict=0.05,Throttling=0.02,InternalServerError=0.01"`. The rates
    /// of the faults that can answer one operation add up to at most 1.
    pub fn parse(spec: &str, seed: u64) -> Result<Self> {
        let mut rates: Vec<(Fault, f64)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, rate)) = part.split_once('=') else {
                bail!("--dynamodb-faults expects Fault=rate, got {part:?}");
            };
            let Some(fault) = Fault::parse(name) else {
                let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                bail!("unknown fault {name:?}; known: {}", known.join(", "));
            };
            let rate: f64 = rate
                .trim()
                .parse()
                .with_context(|| format!("the rate of {name}"))?;
            if !(0.0..=1.0).contains(&rate) {
                bail!("the rate of {name} must be between 0 and 1, got {rate}");
            }
            rates.retain(|(f, _)| *f != fault);
            rates.push((fault, rate));
        }
        let worst: f64 = rates.iter().map(|(_, r)| r).sum();
        if worst > 1.0 {
            bail!("the fault rates add up to {worst}, more than 1");
        }
        rates.sort_by_key(|(f, _)| *f);
        Ok(Self { rates, seed })
    }

    /// The same faults and seed written back as `--dynamodb-faults` takes them.
    pub fn describe(&self) -> String {
        let rates: Vec<String> = self
            .rates
            .iter()
            .map(|(f, r)| format!("{}={r}", f.name()))
            .collect();
        format!("{} (seed {})", rates.join(","), self.seed)
    }

    /// The fault to answer `operation` with, given a uniform draw in `[0, 1)`.
    fn pick(&self, operation: &str, draw: f64) -> Option<Fault> {
        let mut upto = 0.0;
        for (fault, rate) in &self.rates {
            if !fault.applies_to(operation) {
                continue;
            }
            upto += rate;
            if draw < upto {
                return Some(*fault);
            }
        }
        None
    }
}

/// Counters of one proxy.
#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    /// Forwards that could not reach DynamoDB Local (answered as a dropped connection).
    unreachable: AtomicU64,
    injected: [AtomicU64; 5],
}

/// A snapshot of the proxy's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests passed to DynamoDB Local.
    pub forwarded: u64,
    pub unreachable: u64,
    /// Faults answered, in [`Fault::ALL`] order.
    pub injected: [u64; 5],
}

impl FaultStats {
    pub fn injected(&self, fault: Fault) -> u64 {
        self.injected[fault.index()]
    }

    pub fn injected_total(&self) -> u64 {
        self.injected.iter().sum()
    }
}

impl std::fmt::Display for FaultStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} forwarded", self.forwarded)?;
        for fault in Fault::ALL {
            write!(f, ", {} {}", self.injected(fault), fault.name())?;
        }
        if self.unreachable > 0 {
            write!(f, ", {} unreachable", self.unreachable)?;
        }
        Ok(())
    }
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    config: FaultConfig,
    rng: Mutex<StdRng>,
    enabled: AtomicBool,
    counters: Counters,
    /// `TransactWriteItems` applied under `LostResponse`, by `ClientRequestToken`: the SDK
    /// sets a token on every transaction and its retry repeats it, and DynamoDB answers a
    /// repeated token with the first outcome instead of applying it again (for 10 minutes).
    /// DynamoDB Local does not, so the proxy does, for the transactions whose answer it lost.
    applied_tokens: Mutex<std::collections::HashMap<String, Bytes>>,
}

/// A running proxy; dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts the proxy on a free loopback port, forwarding to `upstream`
    /// (`http://127.0.0.1:8000`).
    pub async fn start(upstream: &str, config: FaultConfig) -> Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the DynamoDB fault proxy")?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(64)
            .build()
            .context("building the fault proxy's HTTP client")?;
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            enabled: AtomicBool::new(true),
            counters: Counters::default(),
            applied_tokens: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FaultProxy { addr, state, task })
    }

    /// The URL the functions get as `AWS_ENDPOINT_URL_DYNAMODB`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> &FaultConfig {
        &self.state.config
    }

    /// Turns injection on or off (off: a plain proxy), e.g. for a test's final reads.
    pub fn set_enabled(&self, on: bool) {
        self.state.enabled.store(on, Ordering::Relaxed);
    }

    pub fn stats(&self) -> FaultStats {
        let c = &self.state.counters;
        FaultStats {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            unreachable: c.unreachable.load(Ordering::Relaxed),
            injected: std::array::from_fn(|i| c.injected[i].load(Ordering::Relaxed)),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where one gateway's DynamoDB traffic goes: its own clients (provisioning, stream pollers)
/// to DynamoDB Local, directly; the functions to the fault proxy when there is one.
pub(crate) struct Endpoints {
    /// [`crate::GatewayOptions::dynamodb_endpoint`]: DynamoDB Local, when not the environment's.
    direct: Option<String>,
    pub(crate) proxy: Option<FaultProxy>,
}

impl Endpoints {
    pub(crate) async fn resolve(options: &crate::GatewayOptions) -> Result<Self> {
        let direct = options.dynamodb_endpoint.clone();
        let proxy = match &options.dynamodb_faults {
            Some(config) => {
                let upstream = direct
                    .clone()
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok())
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                    .context(
                        "the DynamoDB fault proxy needs DynamoDB Local's endpoint \
                         (AWS_ENDPOINT_URL_DYNAMODB; run under infra/stack.sh)",
                    )?;
                let proxy = FaultProxy::start(&upstream, config.clone()).await?;
                eprintln!(
                    "local-gateway: DynamoDB faults {} on {} -> {upstream}",
                    config.describe(),
                    proxy.url()
                );
                Some(proxy)
            }
            None => None,
        };
        Ok(Self { direct, proxy })
    }

    pub(crate) fn dynamodb_client(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        match &self.direct {
            Some(url) => aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(sdk)
                    .endpoint_url(url)
                    .build(),
            ),
            None => aws_sdk_dynamodb::Client::new(sdk),
        }
    }

    pub(crate) fn streams_client(
        &self,
        sdk: &aws_config::SdkConfig,
    ) -> aws_sdk_dynamodbstreams::Client {
        match &self.direct {
            Some(url) => aws_sdk_dynamodbstreams::Client::from_conf(
                aws_sdk_dynamodbstreams::config::Builder::from(sdk)
                    .endpoint_url(url)
                    .build(),
            ),
            None => aws_sdk_dynamodbstreams::Client::new(sdk),
        }
    }

    /// The functions' `AWS_ENDPOINT_URL_DYNAMODB`: the proxy, else the overriding endpoint.
    pub(crate) fn set_function_env(&self, env: &mut std::collections::BTreeMap<String, String>) {
        if let Some(url) = &self.direct {
            env.insert("AWS_ENDPOINT_URL_DYNAMODB".into(), url.clone());
            env.insert("AWS_ENDPOINT_URL_DYNAMODB_STREAMS".into(), url.clone());
        }
        if let Some(proxy) = &self.proxy {
            env.insert("AWS_ENDPOINT_URL_DYNAMODB".into(), proxy.url());
        }
    }
}

/// The operation a DynamoDB JSON request names: `X-Amz-Target: DynamoDB_20120810.GetItem`.
fn operation(headers: &HeaderMap) -> &str {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
}

async fn handle(
    State(state): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = operation(&headers).to_owned();
    let token = (op == "TransactWriteItems")
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
        .and_then(|v| v.get("ClientRequestToken")?.as_str().map(str::to_owned));
    if let Some(first) = token.as_ref().and_then(|t| {
        state
            .applied_tokens
            .lock()
            .ok()
            .and_then(|m| m.get(t).cloned())
    }) {
        // The retry of a transaction whose answer was lost: DynamoDB's idempotent answer.
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        return (StatusCode::OK, headers, first).into_response();
    }
    if state.enabled.load(Ordering::Relaxed) && !state.config.rates.is_empty() {
        let draw: f64 = state
            .rng
            .lock()
            .map(|mut r| r.random::<f64>())
            .unwrap_or(1.0);
        if let Some(fault) = state.config.pick(&op, draw) {
            state.counters.injected[fault.index()].fetch_add(1, Ordering::Relaxed);
            tracing::debug!(operation = %op, fault = fault.name(), "injected");
            if fault == Fault::LostResponse {
                let applied = forward_raw(&state, method, &uri, &headers, body.clone()).await;
                if let (Some(token), Some((status, _, answer))) = (token, applied) {
                    if status.is_success() {
                        if let Ok(mut m) = state.applied_tokens.lock() {
                            m.insert(token, answer);
                        }
                    }
                }
            }
            return error_response(fault, &body);
        }
    }
    forward(&state, method, &uri, &headers, body).await
}

/// Passes the request to DynamoDB Local and its answer back, unchanged.
async fn forward(
    state: &ProxyState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    match forward_raw(state, method, uri, headers, body).await {
        Some(answer) => answer.into_response(),
        None => dropped_connection(),
    }
}

/// DynamoDB Local's answer to the request; `None` when it cannot be reached.
async fn forward_raw(
    state: &ProxyState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<(StatusCode, HeaderMap, Bytes)> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = state
        .client
        .request(method, format!("{}{path}", state.upstream))
        .body(body);
    for (name, value) in headers {
        if !is_hop_header(name.as_str()) {
            request = request.header(name, value);
        }
    }
    let upstream = match request.send().await {
        Ok(r) => r,
        Err(err) => {
            // DynamoDB Local is down: the client must see what it would see without the
            // proxy, a failed connection (the SDK's dispatch failure), not an HTTP answer.
            state.counters.unreachable.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %err, "upstream unreachable");
            return None;
        }
    };
    state.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    let status = upstream.status();
    let mut out = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !is_hop_header(name.as_str()) {
            out.append(name, value.clone());
        }
    }
    upstream
        .bytes()
        .await
        .ok()
        .map(|bytes| (status, out, bytes))
}

/// A response whose body fails mid-stream, so hyper aborts the connection instead of
/// completing an HTTP answer: what a client of a dead server sees.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "DynamoDB Local is unreachable",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-length", "1")
        .body(axum::body::Body::from_stream(failing))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

fn is_hop_header(name: &str) -> bool {
    matches!(
        name,
        "host" | "content-length" | "connection" | "transfer-encoding" | "keep-alive"
    )
}

/// DynamoDB's answer for `fault` to the request `body`.
fn error_response(fault: Fault, body: &[u8]) -> Response {
    let (status, name, payload) = match fault {
        Fault::TransactionConflict => {
            let items = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| {
                    v.get("TransactItems")
                        .and_then(Value::as_array)
                        .map(Vec::len)
                })
                .unwrap_or(1)
                .max(1);
            // The conflicting item: a stable pick from the body, so each item of a
            // transaction gets its turn over a run.
            let conflicting = body.iter().map(|b| usize::from(*b)).sum::<usize>() % items;
            let reasons: Vec<Value> = (0..items)
                .map(|i| {
                    if i == conflicting {
                        json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"})
                    } else {
                        json!({"Code": "None"})
                    }
                })
                .collect();
            let codes: Vec<&str> = (0..items)
                .map(|i| {
                    if i == conflicting {
                        "TransactionConflict"
                    } else {
                        "None"
                    }
                })
                .collect();
            (
                StatusCode::BAD_REQUEST,
                "TransactionCanceledException",
                json!({
                    "Message": format!(
                        "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                        codes.join(", ")
                    ),
                    "CancellationReasons": reasons,
                }),
            )
        }
        Fault::Throttling => (
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            json!({"message": "Throughput exceeds the current capacity for one or more global secondary indexes. DynamoDB is automatically scaling your index so please try again shortly."}),
        ),
        Fault::ProvisionedThroughputExceeded => (
            StatusCode::BAD_REQUEST,
            "ProvisionedThroughputExceededException",
            json!({"message": "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."}),
        ),
        Fault::InternalServerError | Fault::LostResponse => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            json!({"message": "Internal server error"}),
        ),
    };
    let mut payload = payload;
    payload["__type"] = Value::String(format!("com.amazonaws.dynamodb.v20120810#{name}"));
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(id) = HeaderValue::from_str(&ulid::Ulid::new().to_string()) {
        headers.insert("x-amzn-requestid", id);
    }
    (status, headers, payload.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_and_refuses_nonsense() {
        let c = FaultConfig::parse(
            "TransactionConflict=0.05, Throttling=0.02,InternalServerError=0.01",
            7,
        )
        .unwrap();
        assert_eq!(
            c.rates,
            vec![
                (Fault::TransactionConflict, 0.05),
                (Fault::Throttling, 0.02),
                (Fault::InternalServerError, 0.01)
            ]
        );
        assert_eq!(c.seed, 7);
        assert!(FaultConfig::parse("ThrottlingException=0.5", 0).is_ok());
        assert!(FaultConfig::parse("Nope=0.1", 0).is_err());
        assert!(FaultConfig::parse("Throttling=2", 0).is_err());
        assert!(FaultConfig::parse("Throttling", 0).is_err());
        assert!(FaultConfig::parse("Throttling=0.6,InternalServerError=0.6", 0).is_err());
    }

    #[test]
    fn transaction_conflicts_only_answer_transactions() {
        let c = FaultConfig::parse("TransactionConflict=1", 0).unwrap();
        assert_eq!(
            c.pick("TransactWriteItems", 0.5),
            Some(Fault::TransactionConflict)
        );
        assert_eq!(c.pick("UpdateItem", 0.0), None);
        let c = FaultConfig::parse("TransactionConflict=0.5,Throttling=0.5", 0).unwrap();
        assert_eq!(c.pick("UpdateItem", 0.4), Some(Fault::Throttling));
        assert_eq!(c.pick("UpdateItem", 0.6), None);
        assert_eq!(c.pick("TransactWriteItems", 0.6), Some(Fault::Throttling));
    }
}
