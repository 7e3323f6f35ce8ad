//! What the gateway serves, read from the template once names are resolved: functions,
//! HTTP routes, CORS, the WebSocket API, event source mappings and schedules.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use crate::provision::{resolve_env, Provisioned};
use crate::template::{scalar, Template};

/// A function of the template.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`, else the logical id).
    pub binary: String,
    pub memory_mb: u32,
    pub timeout: Duration,
    /// The template's environment, resolved (globals merged).
    pub environment: BTreeMap<String, String>,
    pub arn: String,
    /// `ReservedConcurrentExecutions`: at most this many run at once, and a synchronous
    /// invocation beyond it is throttled at once, as on AWS.
    pub reserved_concurrency: Option<usize>,
}

/// An HTTP API route (`GET /accounts/{id}`).
#[derive(Debug, Clone)]
pub struct HttpRoute {
    /// `GET`, ... or `ANY`.
    pub method: String,
    /// `/accounts/{id}` or `$default`.
    pub path: String,
    pub function: String,
}

impl HttpRoute {
    /// The route key API Gateway puts in the event.
    pub fn route_key(&self) -> String {
        if self.path == "$default" {
            "$default".to_owned()
        } else {
            format!("{} {}", self.method, self.path)
        }
    }
}

/// The HTTP API's `CorsConfiguration`.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Option<u64>,
}

/// A stage throttle (`ThrottlingBurstLimit`, `ThrottlingRateLimit`): a token bucket of
/// `burst` tokens refilled at `rate` per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteThrottle {
    pub burst: u64,
    pub rate: f64,
}

/// The HTTP API stage's throttling: `DefaultRouteSettings` applies to each route on its
/// own, `RouteSettings` (by route key) replaces it for a route.
#[derive(Debug, Clone, Default)]
pub struct StageThrottling {
    pub default: Option<RouteThrottle>,
    pub routes: BTreeMap<String, RouteThrottle>,
}

impl StageThrottling {
    /// The throttle of a route key (`GET /accounts/{id}`), if any.
    pub fn for_route(&self, route_key: &str) -> Option<RouteThrottle> {
        self.routes.get(route_key).copied().or(self.default)
    }
}

/// The WebSocket API and its routes (route key to function).
#[derive(Debug, Clone, Default)]
pub struct WebSocketApi {
    pub route_selection: String,
    pub stage: String,
    pub routes: BTreeMap<String, String>,
}

/// An SQS event source mapping.
#[derive(Debug, Clone)]
pub struct SqsMapping {
    pub function: String,
    pub queue_logical_id: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: usize,
    pub batching_window: Duration,
    pub report_failures: bool,
}

/// A DynamoDB stream event source mapping.
#[derive(Debug, Clone)]
pub struct StreamMapping {
    pub function: String,
    pub function_arn: String,
    pub stream_arn: String,
    pub starting_position: String,
    pub batch_size: usize,
    /// `None`: retry until the record expires (AWS's default, -1).
    pub max_retries: Option<u32>,
    pub bisect: bool,
    pub report_failures: bool,
    /// `DestinationConfig.OnFailure`: the SQS queue (URL) that gets a record's metadata
    /// when its retries are exhausted.
    pub on_failure: Option<String>,
}

/// A schedule (`rate(...)` or `cron(...)`).
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    /// `FunctionLogicalId.EventName`.
    pub name: String,
    pub function: String,
    pub expression: String,
    pub input: Option<Value>,
    pub enabled: bool,
}

/// Everything the gateway serves.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub functions: BTreeMap<String, FunctionSpec>,
    pub http_routes: Vec<HttpRoute>,
    pub cors: Option<Cors>,
    pub throttling: StageThrottling,
    pub websocket: Option<WebSocketApi>,
    pub sqs: Vec<SqsMapping>,
    pub streams: Vec<StreamMapping>,
    pub schedules: Vec<ScheduleSpec>,
}

fn list(resolved: Option<Value>) -> Vec<String> {
    match resolved {
        Some(Value::Array(a)) => a.iter().map(scalar).collect(),
        Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_owned()).collect(),
        _ => Vec::new(),
    }
}

/// The logical id named by `!Ref X`, `!GetAtt X.Arn` or a plain string.
fn referenced_id(v: &Value) -> Option<String> {
    if let Some(r) = v.get("Ref") {
        return r.as_str().map(str::to_owned);
    }
    if let Some(a) = v.get("Fn::GetAtt") {
        return a.get(0).and_then(Value::as_str).map(str::to_owned);
    }
    None
}

impl Model {
    /// Builds the model from a template whose resources have been provisioned.
    pub fn build(template: &Template, provisioned: &Provisioned) -> Result<Self> {
        let r = &provisioned.resolver;
        let mut model = Model::default();
        for res in template.of_kind("AWS::Serverless::Function") {
            let id = res.logical_id.clone();
            let p = &res.properties;
            let binary = res
                .metadata
                .pointer("/BuildProperties/Binary")
                .map(scalar)
                .unwrap_or_else(|| id.clone());
            let num = |key: &str, default: u64| -> Result<u64> {
                match p.get(key) {
                    Some(v) => r
                        .resolve_string(v)?
                        .parse::<f64>()
                        .map(|f| f as u64)
                        .with_context(|| format!("{id}.{key}")),
                    None => Ok(default),
                }
            };
            let environment = resolve_env(r, p).with_context(|| format!("function {id}"))?;
            model.functions.insert(
                id.clone(),
                FunctionSpec {
                    logical_id: id.clone(),
                    binary,
                    memory_mb: num("MemorySize", 128)? as u32,
                    timeout: Duration::from_secs(num("Timeout", 3)?),
                    environment,
                    arn: r.resolve_string(&serde_json::json!({"Fn::GetAtt": [id, "Arn"]}))?,
                    reserved_concurrency: match p.get("ReservedConcurrentExecutions") {
                        Some(v) => Some(
                            r.resolve_string(v)?
                                .parse::<usize>()
                                .with_context(|| format!("{id}.ReservedConcurrentExecutions"))?,
                        ),
                        None => None,
                    },
                },
            );
            for (event_name, event) in p
                .get("Events")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let kind = event
                    .get("Type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let ep = event.get("Properties").cloned().unwrap_or(Value::Null);
                let int = |key: &str, default: u64| -> u64 {
                    ep.get(key)
                        .and_then(|v| r.resolve_string(v).ok())
                        .and_then(|s| s.parse::<i64>().ok())
                        .map(|n| n.max(0) as u64)
                        .unwrap_or(default)
                };
                let report_failures = list(ep.get("FunctionResponseTypes").cloned())
                    .iter()
                    .any(|t| t == "ReportBatchItemFailures");
                match kind {
                    "HttpApi" => {
                        let method = ep
                            .get("Method")
                            .map(scalar)
                            .unwrap_or_else(|| "ANY".into())
                            .to_uppercase();
                        let path = ep
                            .get("Path")
                            .map(scalar)
                            .unwrap_or_else(|| "$default".into());
                        let method = if method == "X-AMAZON-APIGATEWAY-ANY-METHOD" || method == "*"
                        {
                            "ANY".to_owned()
                        } else {
                            method
                        };
                        model.http_routes.push(HttpRoute {
                            method,
                            path,
                            function: id.clone(),
                        });
                    }
                    "SQS" => {
                        let queue = ep
                            .get("Queue")
                            .and_then(referenced_id)
                            .ok_or_else(|| anyhow!("{id}.{event_name}: Queue must name a queue"))?;
                        let info = provisioned
                            .queues
                            .get(&queue)
                            .ok_or_else(|| anyhow!("{id}.{event_name}: unknown queue {queue}"))?;
                        model.sqs.push(SqsMapping {
                            function: id.clone(),
                            queue_logical_id: queue,
                            queue_url: info.url.clone(),
                            queue_arn: info.arn.clone(),
                            batch_size: int("BatchSize", 10).clamp(1, 10_000) as usize,
                            batching_window: Duration::from_secs(int(
                                "MaximumBatchingWindowInSeconds",
                                0,
                            )),
                            report_failures,
                        });
                    }
                    "DynamoDB" => {
                        let stream_arn = ep
                            .get("Stream")
                            .map(|v| r.resolve_string(v))
                            .transpose()?
                            .ok_or_else(|| anyhow!("{id}.{event_name}: no Stream"))?;
                        let retries = ep
                            .get("MaximumRetryAttempts")
                            .and_then(|v| r.resolve_string(v).ok())
                            .and_then(|s| s.parse::<i64>().ok())
                            .and_then(|n| u32::try_from(n).ok());
                        model.streams.push(StreamMapping {
                            function: id.clone(),
                            function_arn: model.functions[&id].arn.clone(),
                            stream_arn,
                            starting_position: ep
                                .get("StartingPosition")
                                .map(scalar)
                                .unwrap_or_else(|| "LATEST".into()),
                            batch_size: int("BatchSize", 100).clamp(1, 10_000) as usize,
                            max_retries: retries,
                            bisect: ep
                                .get("BisectBatchOnFunctionError")
                                .and_then(|v| r.resolve_string(v).ok())
                                .is_some_and(|s| s == "true"),
                            report_failures,
                            on_failure: match ep.pointer("/DestinationConfig/OnFailure") {
                                Some(dest) => {
                                    let queue = dest
                                        .get("Destination")
                                        .and_then(referenced_id)
                                        .ok_or_else(|| {
                                            anyhow!("{id}.{event_name}: OnFailure must name a queue (!GetAtt Q.Arn)")
                                        })?;
                                    let info = provisioned.queues.get(&queue).ok_or_else(|| {
                                        anyhow!("{id}.{event_name}: OnFailure names an unknown queue {queue}")
                                    })?;
                                    Some(info.url.clone())
                                }
                                None => None,
                            },
                        });
                    }
                    "Schedule" | "ScheduleV2" => {
                        let expression = ep
                            .get("Schedule")
                            .or_else(|| ep.get("ScheduleExpression"))
                            .map(|v| r.resolve_string(v))
                            .transpose()?
                            .unwrap_or_default();
                        let enabled = match (ep.get("Enabled"), ep.get("State")) {
                            (Some(v), _) => r.resolve_string(v)? != "false",
                            (None, Some(s)) => r.resolve_string(s)? != "DISABLED",
                            _ => true,
                        };
                        let input = match ep.get("Input") {
                            Some(v) => {
                                let text = r.resolve_string(v)?;
                                Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
                            }
                            None => None,
                        };
                        model.schedules.push(ScheduleSpec {
                            name: format!("{id}.{event_name}"),
                            function: id.clone(),
                            expression,
                            input,
                            enabled,
                        });
                    }
                    _ => {}
                }
            }
        }
        if let Some(api) = template.of_kind("AWS::Serverless::HttpApi").next() {
            let throttle = |settings: &Value| -> Result<Option<RouteThrottle>> {
                let settings = r.resolve(settings)?;
                let burst = settings.get("ThrottlingBurstLimit").map(scalar);
                let rate = settings.get("ThrottlingRateLimit").map(scalar);
                if burst.is_none() && rate.is_none() {
                    return Ok(None);
                }
                Ok(Some(RouteThrottle {
                    burst: burst
                        .map(|b| b.parse::<f64>().map(|f| f.max(0.0) as u64))
                        .transpose()
                        .context("ThrottlingBurstLimit")?
                        .unwrap_or(u64::MAX),
                    rate: rate
                        .map(|b| b.parse::<f64>())
                        .transpose()
                        .context("ThrottlingRateLimit")?
                        .unwrap_or(f64::INFINITY),
                }))
            };
            if let Some(d) = api.properties.get("DefaultRouteSettings") {
                model.throttling.default = throttle(d)?;
            }
            for (key, settings) in api
                .properties
                .get("RouteSettings")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(t) = throttle(settings)? {
                    model.throttling.routes.insert(key.clone(), t);
                }
            }
            if let Some(c) = api.properties.get("CorsConfiguration") {
                let c = r.resolve(c)?;
                let max_age = c.get("MaxAge").map(scalar).and_then(|s| s.parse().ok());
                model.cors = Some(Cors {
                    allow_origins: list(c.get("AllowOrigins").cloned()),
                    allow_methods: list(c.get("AllowMethods").cloned()),
                    allow_headers: list(c.get("AllowHeaders").cloned()),
                    expose_headers: list(c.get("ExposeHeaders").cloned()),
                    allow_credentials: c.get("AllowCredentials").map(scalar).as_deref()
                        == Some("true"),
                    max_age,
                });
            }
        }
        for api in template.of_kind("AWS::ApiGatewayV2::Api") {
            let proto = api
                .properties
                .get("ProtocolType")
                .map(scalar)
                .unwrap_or_default();
            if proto != "WEBSOCKET" {
                continue;
            }
            let mut ws = WebSocketApi {
                route_selection: api
                    .properties
                    .get("RouteSelectionExpression")
                    .map(scalar)
                    .unwrap_or_else(|| "$request.body.action".into()),
                stage: "local".into(),
                routes: BTreeMap::new(),
            };
            for stage in template.of_kind("AWS::ApiGatewayV2::Stage") {
                if stage
                    .properties
                    .get("ApiId")
                    .and_then(referenced_id)
                    .as_deref()
                    == Some(&api.logical_id)
                {
                    if let Some(s) = stage.properties.get("StageName") {
                        ws.stage = r.resolve_string(s)?;
                    }
                }
            }
            for route in template.of_kind("AWS::ApiGatewayV2::Route") {
                let p = &route.properties;
                if p.get("ApiId").and_then(referenced_id).as_deref() != Some(&api.logical_id) {
                    continue;
                }
                let key = p.get("RouteKey").map(scalar).unwrap_or_default();
                let Some(integration) = p.get("Target").and_then(integration_id) else {
                    continue;
                };
                let Some(int) = template.resources.get(&integration) else {
                    continue;
                };
                if let Some(function) = int
                    .properties
                    .get("IntegrationUri")
                    .and_then(|u| function_in_uri(u, template))
                {
                    ws.routes.insert(key, function);
                }
            }
            model.websocket = Some(ws);
        }
        Ok(model)
    }
}

/// The integration logical id in `!Sub integrations/${X}` or `!Join ['/', [integrations, !Ref X]]`.
fn integration_id(target: &Value) -> Option<String> {
    let text = match target.get("Fn::Sub") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.first().map(scalar)?,
        _ => {
            if let Some(parts) = target.pointer("/Fn::Join/1").and_then(Value::as_array) {
                return parts.iter().find_map(referenced_id);
            }
            return None;
        }
    };
    let start = text.find("${")? + 2;
    let end = start + text[start..].find('}')?;
    Some(text[start..end].split('.').next()?.to_owned())
}

/// The function named in an integration URI (`${Fn.Arn}` in a `!Sub`, or a `!GetAtt`).
fn function_in_uri(uri: &Value, template: &Template) -> Option<String> {
    let is_fn = |id: &str| {
        template
            .resources
            .get(id)
            .is_some_and(|r| r.kind == "AWS::Serverless::Function")
    };
    let text = match uri.get("Fn::Sub") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.first().map(scalar)?,
        _ => return referenced_id(uri).filter(|id| is_fn(id)),
    };
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        let id = after[..end].split('.').next()?;
        if is_fn(id) {
            return Some(id.to_owned());
        }
        rest = &after[end + 1..];
    }
    None
}
