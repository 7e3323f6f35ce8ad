//! The HTTP glue every API function shares, on top of `lambda_http`.
//!
//! A function's `lib.rs` exposes `async fn handle(app: &App, req: Request) -> HttpResult` and
//! dispatches on [`route_key`] (`"GET /accounts/{id}"`, exactly as API Gateway names the route
//! that matched). Everything around that — parsing, error mapping, the per-request log line —
//! lives here, once.

use std::future::Future;
use std::str::FromStr;
use std::time::Instant;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

use crate::error::{ApiError, FieldError};

/// What a handler returns.
pub type HttpResult = Result<Response<Body>, ApiError>;

/// The largest JSON body a handler reads. API Gateway accepts 10 MB; nothing in this API
/// needs more than a bulk job of 100,000 ids (about 3 MB), so larger bodies are refused
/// before parsing.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";

/// The route API Gateway matched, e.g. `GET /accounts/{id}`. Falls back to the method and
/// raw path for events without a route key (direct invocations in tests).
pub fn route_key(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .route_key
            .clone()
            .unwrap_or_else(|| format!("{} {}", req.method(), req.uri().path())),
        _ => format!("{} {}", req.method(), req.uri().path()),
    }
}

/// API Gateway's id of this request (the one in its access logs), else Lambda's.
pub fn request_id(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        _ => None,
    }
    .unwrap_or_else(|| req.lambda_context().request_id)
}

/// The caller's source IP as API Gateway saw it (for rate limits and audit).
pub fn source_ip(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
        _ => None,
    }
}

/// A path parameter parsed into `T`; a malformed value is a 400 naming the parameter.
pub fn path_param<T>(req: &Request, name: &str) -> Result<T, ApiError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let params = req.path_parameters();
    let raw = params
        .first(name)
        .ok_or_else(|| ApiError::invalid_field(name, "path parameter is missing"))?;
    raw.parse()
        .map_err(|err: T::Err| ApiError::invalid_field(name, err.to_string()))
}

/// The query string deserialised into `T` (declare it `deny_unknown_fields` to refuse
/// parameters the route does not know). Errors name the parameter.
pub fn query<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let raw = req.uri().query().unwrap_or("");
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let field = err.path().to_string();
        ApiError::invalid_field(
            if field == "." { "query".into() } else { field },
            err.inner().to_string(),
        )
    })
}

/// The JSON body deserialised into `T`.
///
/// - an absent body or one over [`MAX_BODY_BYTES`] is refused before parsing (400 / 413);
/// - a `Content-Type` other than JSON is a 415;
/// - a syntax error is a 400 with the parser's line and column;
/// - a type error (missing field, wrong type, unknown field under `deny_unknown_fields`)
///   is a 400 naming the field's path.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    parse_json(json_bytes(req)?)
}

/// The bytes of a JSON body, after the checks every body gets before it is parsed: a
/// `Content-Type` other than JSON is a 415, more than [`MAX_BODY_BYTES`] a 413. For handlers
/// that look at the raw JSON before deserialising it (`PATCH /accounts/{id}` names the
/// read-only fields it refuses).
pub fn json_bytes(req: &Request) -> Result<&[u8], ApiError> {
    if let Some(content_type) = req.headers().get(CONTENT_TYPE) {
        let content_type = content_type.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence != JSON && !essence.ends_with("+json") {
            return Err(ApiError::unsupported_media_type(format!(
                "Content-Type must be {JSON}, not {essence}"
            )));
        }
    }
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large(format!(
            "the body is {} bytes; the limit is {MAX_BODY_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// [`json_body`]'s parsing, for callers that have the bytes (SQS messages, tests).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; send JSON",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|err| json_error(&err.path().to_string(), err.inner()))?;
    deserializer.end().map_err(|err| json_error(".", &err))?;
    Ok(value)
}

/// A data error names the field it is about; a syntax error gives the parser's position.
fn json_error(path: &str, err: &serde_json::Error) -> ApiError {
    match err.classify() {
        serde_json::error::Category::Data => {
            let field = if path == "." { "body" } else { path };
            ApiError::invalid_field(field, strip_position(&err.to_string()))
        }
        _ => ApiError::bad_request(format!(
            "the body is not valid JSON: {} at line {} column {}",
            strip_position(&err.to_string()),
            err.line(),
            err.column()
        )),
    }
}

/// serde_json appends " at line L column C" to its messages; the field list says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// A request header as a string, if present and valid UTF-8.
pub fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison, RFC 9110 13.1.2).
pub fn none_match(req: &Request, etag: &str) -> bool {
    let Some(value) = header(req, IF_NONE_MATCH.as_str()) else {
        return false;
    };
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    value
        .split(',')
        .any(|tag| tag.trim() == "*" || bare(tag) == bare(etag))
}

/// Sets `ETag: <etag>` and `Cache-Control: private, no-cache` on a cacheable response.
pub fn with_cache_headers(mut response: Response<Body>, etag: &str) -> Response<Body> {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(ETAG, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    response
}

/// Whether a body-derived `ETag` promises byte-identical bodies (`Strong`) or only
/// equivalent ones (`Weak`, `W/"..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    Strong,
    Weak,
}

/// The `ETag` of a body: its SHA-256 in unpadded base64url, quoted (weak: `W/` prefixed).
pub fn body_etag(body: &[u8], validator: Validator) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(body));
    match validator {
        Validator::Strong => format!("\"{digest}\""),
        Validator::Weak => format!("W/\"{digest}\""),
    }
}

/// A `200` JSON answer whose `ETag` is derived from its body, or a bodyless `304` when the
/// request's `If-None-Match` names that tag; both with `Cache-Control: private, no-cache`.
/// For answers computed from many items (a list page, the dashboard), which have no
/// version of their own.
pub fn json_or_not_modified<T: Serialize>(
    req: &Request,
    value: &T,
    validator: Validator,
) -> HttpResult {
    let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
    let etag = body_etag(&body, validator);
    if none_match(req, &etag) {
        return Ok(with_cache_headers(empty(StatusCode::NOT_MODIFIED)?, &etag));
    }
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .map_err(ApiError::internal)?;
    Ok(with_cache_headers(response, &etag))
}

/// A JSON response with `status`.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResult {
    let body = serde_json::to_string(value).map_err(ApiError::internal)?;
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, JSON)
        .body(Body::from(body))
        .map_err(ApiError::internal)
}

/// A response with no body (204, 304).
pub fn empty(status: StatusCode) -> HttpResult {
    Response::builder()
        .status(status)
        .body(Body::Empty)
        .map_err(ApiError::internal)
}

/// The problem+json response for an error: the one place an [`ApiError`] becomes HTTP.
pub fn problem_response(error: &ApiError) -> Response<Body> {
    let body = serde_json::to_string(&error.problem()).unwrap_or_else(|_| {
        r#"{"type":"about:blank","title":"Internal server error","status":500}"#.to_owned()
    });
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = error.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = error.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The answer for a route key this function does not serve (API Gateway only sends the
/// routes the template gives it, so this is a template/code mismatch or a direct invoke).
pub fn unknown_route(route: &str) -> ApiError {
    ApiError::not_found(format!("no route {route}"))
}

/// Runs one request through `handler` inside a metrics scope: maps its error to
/// problem+json and writes the request's one line, which is both its log line (request id,
/// route, status, duration, the DynamoDB calls it made and the capacity they consumed) and
/// its EMF record (count, latency, 4xx, 5xx per route), followed by the records of what the
/// request recorded itself (DynamoDB calls per table and operation, business metrics).
pub async fn serve<F, Fut>(req: Request, handler: F) -> Response<Body>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = HttpResult>,
{
    use crate::metrics::names::{self, dimension};
    let started = Instant::now();
    let route = route_key(&req);
    let request_id = request_id(&req);
    let span = tracing::info_span!("request", request_id = %request_id, route = %route);
    // Boxed: a handler's future can be large (a payment's is over a megabyte in a debug
    // build), and every wrapper around it would otherwise copy it onto the stack again.
    // Every write of the request is stamped with its id and source IP, and with the caller
    // once authenticated (`shared::audit`).
    let actor = crate::audit::Actor::request(request_id.clone(), source_ip(&req));
    let (result, mut recorded) = crate::metrics::scope(
        vec![(dimension::ROUTE, route.clone())],
        Box::pin(crate::audit::acting(actor, handler(req).instrument(span))),
    )
    .await;
    let response = match result {
        Ok(response) => response,
        Err(error) => problem_response(&error),
    };
    let status = response.status();
    let duration_ms = crate::metrics::round_ms(started.elapsed().as_secs_f64() * 1000.0);
    let calls = recorded.dynamodb();
    let flag = |yes: bool| if yes { 1.0 } else { 0.0 };
    recorded.add(&names::API_REQUESTS, &[], 1.0);
    recorded.add(&names::API_LATENCY, &[], duration_ms);
    recorded.add(&names::API_4XX, &[], flag(status.is_client_error()));
    recorded.add(&names::API_5XX, &[], flag(status.is_server_error()));
    recorded.add(&names::REQUEST_DYNAMODB_CALLS, &[], f64::from(calls.calls));
    recorded.add(&names::REQUEST_READ_UNITS, &[], calls.read_units);
    recorded.add(&names::REQUEST_WRITE_UNITS, &[], calls.write_units);
    // No timestamp of its own: CloudWatch Logs stamps every event, and the EMF record
    // carries `_aws.Timestamp`.
    let line = serde_json::json!({
        "level": if status.is_server_error() { "ERROR" } else { "INFO" },
        "message": "request",
        "request_id": request_id,
        "route": route,
        "status": status.as_u16(),
        "duration_ms": duration_ms,
        "dynamodb_calls": calls.calls,
        "dynamodb_read_units": calls.read_units,
        "dynamodb_write_units": calls.write_units,
        "dynamodb_ms": crate::metrics::round_ms(calls.latency_ms),
    });
    if let serde_json::Value::Object(properties) = line {
        recorded.emit(Some((&names::API_REQUESTS, properties)));
    }
    response
}

/// Runs the Lambda loop for an API function: `app` (config and clients, built once in
/// `main`) is shared by every invocation; each request goes through [`serve`].
pub async fn run<A, F, Fut>(app: A, handler: F) -> Result<(), lambda_http::Error>
where
    A: Send + Sync + 'static,
    F: Fn(&'static A, Request) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = HttpResult> + Send,
{
    // The app lives as long as the process: leaking it once gives every invocation a plain
    // shared reference instead of an Arc clone per request.
    let app: &'static A = Box::leak(Box::new(app));
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(serve(req, |req| handler(app, req)).await)
    }))
    .await
}

/// The page size of every list when `limit` is absent.
pub const DEFAULT_PAGE_LIMIT: usize = 25;
/// The largest `limit` a list accepts.
pub const MAX_PAGE_LIMIT: usize = 100;

/// A list's `limit` query parameter: an integer in `1..=max`, else [`DEFAULT_PAGE_LIMIT`]
/// (or `max` when that is smaller). A bad value is recorded in `v` under `limit`.
pub fn page_limit(v: &mut Validation, raw: Option<&str>, max: usize) -> usize {
    let default = DEFAULT_PAGE_LIMIT.min(max);
    match raw {
        None => default,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(limit) if (1..=max).contains(&limit) => limit,
            _ => {
                v.add("limit", format!("must be an integer from 1 to {max}"));
                default
            }
        },
    }
}

/// Field errors gathered while validating a request, turned into one 400 at the end.
#[derive(Debug, Default)]
pub struct Validation {
    errors: Vec<FieldError>,
}

impl Validation {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Records the error of `result` under `field` and gives back its value.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.add(field, err.to_string());
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_etags_are_sha256_digests_strong_or_weak() {
        let strong = body_etag(b"{}", Validator::Strong);
        assert!(strong.starts_with('"') && strong.ends_with('"'), "{strong}");
        assert_eq!(strong.len(), 2 + 43, "SHA-256 in unpadded base64url");
        assert_ne!(strong, body_etag(b"{ }", Validator::Strong));
        assert_eq!(body_etag(b"{}", Validator::Weak), format!("W/{strong}"));
        assert!(HeaderValue::from_str(&strong).is_ok());
    }
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Payload {
        #[allow(dead_code)]
        name: String,
        #[allow(dead_code)]
        amount: crate::domain::MinorUnits,
    }

    fn body_error(body: &str) -> ApiError {
        parse_json::<Payload>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn syntax_errors_carry_the_parser_position() {
        let err = body_error("{\"name\": \"x\",\n \"amount\": }");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.code, "bad-request");
        assert!(err.detail.contains("line 2 column"), "{}", err.detail);
    }

    #[test]
    fn type_errors_name_the_field() {
        let err = body_error(r#"{"name":"x","amount":10.5}"#);
        assert_eq!(err.code, "validation");
        assert_eq!(err.errors[0].field, "amount");

        let err = body_error(r#"{"name":"x","amount":1,"extra":true}"#);
        assert!(err.errors[0].message.contains("unknown field `extra`"));

        let err = body_error(r#"{"name":"x"}"#);
        assert!(err.errors[0].message.contains("missing field `amount`"));
    }

    #[test]
    fn empty_and_trailing_bodies_are_refused() {
        assert_eq!(body_error("  ").code, "bad-request");
        assert_eq!(
            body_error(r#"{"name":"x","amount":1} {}"#).code,
            "bad-request"
        );
    }

    #[test]
    fn problem_response_is_rfc9457() {
        let response = problem_response(&ApiError::too_many_requests(7));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[RETRY_AFTER], "7");
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["status"], 429);
        assert_eq!(body["type"], "https://collectpro.dev/problems/rate-limited");
        assert!(body.get("errors").is_none());
    }

    #[test]
    fn page_limits_are_bounded() {
        let mut v = Validation::new();
        assert_eq!(page_limit(&mut v, None, MAX_PAGE_LIMIT), 25);
        assert_eq!(page_limit(&mut v, Some("100"), MAX_PAGE_LIMIT), 100);
        assert_eq!(page_limit(&mut v, None, 10), 10);
        assert!(v.finish().is_ok());
        for bad in ["0", "101", "x", "-1", "2.5"] {
            let mut v = Validation::new();
            page_limit(&mut v, Some(bad), MAX_PAGE_LIMIT);
            let err = v.finish().unwrap_err();
            assert_eq!(err.errors[0].field, "limit", "{bad}");
        }
    }

    #[test]
    fn validation_lists_every_field() {
        let mut validation = Validation::new();
        validation.add("email", "must be an email address");
        validation.check::<u8, _>("limit", "x".parse::<u8>());
        let err = validation.finish().unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "limit"]);
    }
}
