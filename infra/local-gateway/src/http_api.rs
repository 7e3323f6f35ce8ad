//! The HTTP API (API Gateway v2, payload format 2.0): route matching, the event, the
//! response mapping, CORS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::gateway::Shared;
use crate::model::{Cors, HttpRoute};
use crate::runtime::{Admission, Outcome};

/// Request bodies above this are refused with 413, as API Gateway does (HTTP API payload
/// quota, 10 MB). Lambda's own 6 MB quota on the event ([`crate::runtime::MAX_REQUEST_PAYLOAD`])
/// usually bites first.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// The stage's throttles as token buckets, one per route key
/// ([`crate::model::StageThrottling`]).
///
/// API Gateway throttles with the token bucket algorithm: a route's bucket holds
/// `ThrottlingBurstLimit` tokens and refills at `ThrottlingRateLimit` per second; a request
/// finding it empty is answered `429 {"message":"Too Many Requests"}` without reaching the
/// function (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html>,
/// <https://repost.aws/knowledge-center/api-gateway-429-limit>). The template's
/// `DefaultRouteSettings` (parameters `ApiBurstLimit`, `ApiRateLimit`) and the login route's
/// `RouteSettings` are therefore enforced locally too.
#[derive(Default)]
pub struct StageThrottle {
    buckets: std::sync::Mutex<BTreeMap<String, (f64, std::time::Instant)>>,
}

impl StageThrottle {
    /// Takes a token for `route_key` under `limit`; false when the bucket is empty.
    pub fn admit(&self, route_key: &str, limit: Option<crate::model::RouteThrottle>) -> bool {
        let Some(limit) = limit else { return true };
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let burst = limit.burst as f64;
        let (tokens, last) = buckets.entry(route_key.to_owned()).or_insert((burst, now));
        let refilled = *tokens + now.duration_since(*last).as_secs_f64() * limit.rate;
        *tokens = if refilled.is_finite() {
            refilled.min(burst)
        } else {
            burst
        };
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A matched route with its path parameters.
pub struct Matched<'a> {
    pub route: &'a HttpRoute,
    pub params: BTreeMap<String, String>,
}

/// Finds the route API Gateway would pick: most specific path first (literal segments over
/// `{param}` over `{proxy+}`), a method over `ANY`, then `$default`.
pub fn match_route<'a>(routes: &'a [HttpRoute], method: &str, path: &str) -> Option<Matched<'a>> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut best: Option<((bool, usize, usize, bool), Matched<'a>)> = None;
    for route in routes {
        if route.path == "$default" {
            continue;
        }
        if route.method != "ANY" && route.method != method {
            continue;
        }
        let rsegs: Vec<&str> = route.path.trim_start_matches('/').split('/').collect();
        let mut params = BTreeMap::new();
        let mut literal = 0;
        let mut greedy = false;
        let mut ok = true;
        for (i, rs) in rsegs.iter().enumerate() {
            if let Some(name) = rs.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
                if i != rsegs.len() - 1 || i >= segs.len() {
                    ok = false;
                    break;
                }
                let rest = segs[i..].join("/");
                if rest.is_empty() {
                    ok = false;
                    break;
                }
                params.insert(name.to_owned(), rest);
                greedy = true;
                break;
            }
            let Some(s) = segs.get(i) else {
                ok = false;
                break;
            };
            if let Some(name) = rs.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if s.is_empty() {
                    ok = false;
                    break;
                }
                params.insert(name.to_owned(), percent_decode(s));
            } else if rs == s {
                literal += 1;
            } else {
                ok = false;
                break;
            }
        }
        if !ok || (!greedy && rsegs.len() != segs.len()) {
            continue;
        }
        let score = (!greedy, literal, rsegs.len(), route.method != "ANY");
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, Matched { route, params }));
        }
    }
    best.map(|(_, m)| m).or_else(|| {
        routes
            .iter()
            .find(|r| r.path == "$default")
            .map(|route| Matched {
                route,
                params: BTreeMap::new(),
            })
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// API Gateway's own answer to a request no route matches.
pub fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not Found")
}

fn message(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": msg }).to_string(),
    )
        .into_response()
}

fn is_text(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let ct = ct.to_ascii_lowercase();
            ct.starts_with("text/")
                || ct.contains("json")
                || ct.contains("xml")
                || ct.contains("javascript")
                || ct.contains("x-www-form-urlencoded")
                || ct.contains("yaml")
        }
    }
}

fn origin_allowed(cors: &Cors, origin: &str) -> Option<String> {
    if cors.allow_origins.iter().any(|o| o == "*") {
        return Some(if cors.allow_credentials {
            origin.to_owned()
        } else {
            "*".to_owned()
        });
    }
    cors.allow_origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
        .then(|| origin.to_owned())
}

fn set(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(n, v);
    }
}

fn preflight(cors: &Cors, headers: &HeaderMap) -> Response {
    let origin = headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let req_method = headers
        .get("access-control-request-method")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_uppercase();
    let mut out = HeaderMap::new();
    let method_ok = cors.allow_methods.is_empty()
        || cors
            .allow_methods
            .iter()
            .any(|m| m == "*" || m.eq_ignore_ascii_case(&req_method));
    if let (Some(allowed), true) = (origin_allowed(cors, origin), method_ok) {
        set(&mut out, "access-control-allow-origin", &allowed);
        set(
            &mut out,
            "access-control-allow-methods",
            &cors.allow_methods.join(","),
        );
        if !cors.allow_headers.is_empty() {
            set(
                &mut out,
                "access-control-allow-headers",
                &cors.allow_headers.join(","),
            );
        }
        if cors.allow_credentials {
            set(&mut out, "access-control-allow-credentials", "true");
        }
        if let Some(age) = cors.max_age {
            set(&mut out, "access-control-max-age", &age.to_string());
        }
        set(&mut out, "vary", "origin");
    }
    (StatusCode::NO_CONTENT, out).into_response()
}

fn add_cors(cors: &Cors, origin: Option<&str>, headers: &mut HeaderMap) {
    let Some(origin) = origin else { return };
    if let Some(allowed) = origin_allowed(cors, origin) {
        set(headers, "access-control-allow-origin", &allowed);
        if !cors.expose_headers.is_empty() {
            set(
                headers,
                "access-control-expose-headers",
                &cors.expose_headers.join(","),
            );
        }
        if cors.allow_credentials {
            set(headers, "access-control-allow-credentials", "true");
        }
        set(headers, "vary", "origin");
    }
}

/// Serves one HTTP API request.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let origin = parts
        .headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let model = &shared.model;
    if let Some(cors) = &model.cors {
        if parts.method == Method::OPTIONS
            && origin.is_some()
            && parts.headers.contains_key("access-control-request-method")
        {
            return preflight(cors, &parts.headers);
        }
    }
    let mut response = handle_inner(&shared, peer, parts, body, &method, &path).await;
    if let Some(cors) = &model.cors {
        add_cors(cors, origin.as_deref(), response.headers_mut());
    }
    response
}

async fn handle_inner(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    parts: axum::http::request::Parts,
    body: Body,
    method: &str,
    path: &str,
) -> Response {
    // No route (nor `$default`) matches: API Gateway answers itself, without invoking
    // anything, `404 {"message":"Not Found"}` as `application/json` — for an unknown path
    // and for a method the path does not declare alike (HTTP APIs have no 405; a CORS
    // preflight is answered before routing, in `handle`). Routes are `METHOD /path`, `ANY
    // /path` or the `$default` catch-all
    // (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html>).
    let Some(matched) = match_route(&shared.model.http_routes, method, path) else {
        return not_found();
    };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        }
    };
    let route_key = matched.route.route_key();
    if !shared
        .throttle
        .admit(&route_key, shared.model.throttling.for_route(&route_key))
    {
        return message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    let event = build_event(&parts, peer, &matched, &body);
    let Some(pool) = shared.pools.get(&matched.route.function) else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let request_id = event["requestContext"]["requestId"]
        .as_str()
        .and_then(|id| HeaderValue::from_str(id).ok());
    let payload = Bytes::from(event.to_string());
    let mut response = match tokio::time::timeout(
        INTEGRATION_TIMEOUT,
        pool.invoke_with(payload, Admission::Bounded),
    )
    .await
    {
        Ok(outcome) => outcome_response(outcome),
        // The invocation itself goes on (Lambda does not stop it); only the client is answered.
        Err(_) => message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
    };
    // As API Gateway does (`apigw-requestid`): the id the function saw as
    // `requestContext.requestId`, so a client can find the request's log line.
    if let Some(id) = request_id {
        response.headers_mut().insert("apigw-requestid", id);
    }
    response
}

/// An HTTP API waits at most 30 s for its Lambda integration (the default and the maximum of
/// `TimeoutInMillis`), then answers `503 {"message":"Service Unavailable"}`
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html>).
/// Locally it also bounds an invocation that waits for an instance on a loaded machine, so a
/// client is never left without an answer.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the HTTP API answers for an invocation's outcome.
///
/// - A function error, a crash, a response over Lambda's 6 MB (`Function.ResponseSizeTooLarge`,
///   a function error) or a malformed response: `500 {"message":"Internal Server Error"}`,
///   the HTTP API's answer to a failed Lambda integration
///   (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-troubleshooting-lambda.html>).
/// - Lambda throttled the invocation (`TooManyRequestsException`: the function's reserved or
///   the account's concurrency is exhausted): also `500 Internal Server Error` — API Gateway
///   does not pass Lambda's 429 on ("If the backend service throttled because of a high
///   number of requests, then the API Gateway API might return an Internal server error",
///   <https://repost.aws/knowledge-center/api-gateway-internal-server-error>). Only the
///   stage's own throttle answers 429 (see [`StageThrottle`]).
/// - An event over Lambda's 6 MB request quota (`RequestTooLargeException`, 413):
///   `413 {"message":"Request Entity Too Large"}`, as for a body over API Gateway's quota.
/// - Timeout: `503 Service Unavailable`; init failure: `502 Bad Gateway`.
pub fn outcome_response(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Success(out) => map_response(&out),
        Outcome::Timeout => message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        Outcome::InitError(_) => message(StatusCode::BAD_GATEWAY, "Bad Gateway"),
        Outcome::RequestTooLarge(_) => {
            message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
        }
        Outcome::Throttled | Outcome::FunctionError(_) | Outcome::Crashed(_) => {
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// The payload format 2.0 event for a request.
pub fn build_event(
    parts: &axum::http::request::Parts,
    peer: SocketAddr,
    matched: &Matched<'_>,
    body: &[u8],
) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(
                v.split(';')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        let key = name.as_str().to_lowercase();
        match headers.get_mut(&key) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                headers.insert(key, Value::String(v));
            }
        }
    }
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let mut query = Map::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(&k.replace('+', " "));
        let v = percent_decode(&v.replace('+', " "));
        match query.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k, Value::String(v));
            }
        }
    }
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    let text = is_text(content_type) && std::str::from_utf8(body).is_ok();
    let now = time::OffsetDateTime::now_utc();
    let time_text = now
        .format(&time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        ))
        .unwrap_or_default();
    let host = parts
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let route_key = matched.route.route_key();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": crate::template::LOCAL_ACCOUNT,
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or("localhost"),
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": format!("{:?}", parts.version),
                "sourceIp": peer.ip().to_string(),
                "userAgent": parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": ulid::Ulid::new().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": time_text,
            "timeEpoch": (now.unix_timestamp_nanos() / 1_000_000) as i64,
        },
        "isBase64Encoded": !text && !body.is_empty(),
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !matched.params.is_empty() {
        event["pathParameters"] = json!(matched.params);
    }
    if !body.is_empty() {
        event["body"] = if text {
            Value::String(String::from_utf8_lossy(body).into_owned())
        } else {
            Value::String(base64::engine::general_purpose::STANDARD.encode(body))
        };
    }
    event
}

/// Maps a function's payload-2.0 response to HTTP, as API Gateway does: an object with a
/// `statusCode` is a structured response; anything else is a `200` JSON body.
pub fn map_response(out: &[u8]) -> Response {
    let value: Value = match serde_json::from_slice(out) {
        Ok(v) => v,
        Err(_) => return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    };
    let Some(obj) = value.as_object().filter(|o| o.contains_key("statusCode")) else {
        let body = match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return (StatusCode::OK, [("content-type", "application/json")], body).into_response();
    };
    let status = obj
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    if let Some(h) = obj.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            set(&mut headers, k, &crate::template::scalar(v));
        }
    }
    if let Some(h) = obj.get("multiValueHeaders").and_then(Value::as_object) {
        for (k, vs) in h {
            for v in vs.as_array().into_iter().flatten() {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(&crate::template::scalar(v)),
                ) {
                    headers.append(n, v);
                }
            }
        }
    }
    for c in obj
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Ok(v) = HeaderValue::from_str(&crate::template::scalar(c)) {
            headers.append("set-cookie", v);
        }
    }
    let body_text = obj
        .get("body")
        .map(crate::template::scalar)
        .unwrap_or_default();
    let b64 = obj
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = if b64 {
        match base64::engine::general_purpose::STANDARD.decode(body_text.as_bytes()) {
            Ok(b) => b,
            Err(_) => return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        }
    } else {
        body_text.into_bytes()
    };
    if !headers.contains_key("content-type") && !body.is_empty() {
        set(&mut headers, "content-type", "application/json");
    }
    (status, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: &str, p: &str) -> HttpRoute {
        HttpRoute {
            method: m.into(),
            path: p.into(),
            function: p.into(),
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let routes = vec![
            r("GET", "/accounts/{id}"),
            r("GET", "/accounts/summary"),
            r("ANY", "/{proxy+}"),
            r("GET", "/accounts/{id}/payments/{pid}"),
        ];
        let m = match_route(&routes, "GET", "/accounts/summary").unwrap();
        assert_eq!(m.route.path, "/accounts/summary");
        let m = match_route(&routes, "GET", "/accounts/abc").unwrap();
        assert_eq!(m.route.path, "/accounts/{id}");
        assert_eq!(m.params["id"], "abc");
        let m = match_route(&routes, "GET", "/accounts/a/payments/b").unwrap();
        assert_eq!(m.params["pid"], "b");
        let m = match_route(&routes, "POST", "/x/y/z").unwrap();
        assert_eq!(m.params["proxy"], "x/y/z");
        assert!(match_route(&routes[..2], "GET", "/nope").is_none());
        assert!(match_route(&routes[..2], "POST", "/accounts/abc").is_none());
    }
}
