//! The WebSocket API (`$connect`, `$disconnect`, routes chosen by the route selection
//! expression, `$default`) and the `@connections` management API on the same port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::gateway::Shared;
use crate::runtime::Outcome;

struct Connection {
    sender: mpsc::UnboundedSender<Message>,
    connected_at: time::OffsetDateTime,
    last_active: time::OffsetDateTime,
    source_ip: String,
    user_agent: String,
}

/// Open connections by id.
#[derive(Default)]
pub struct WsState {
    connections: Mutex<HashMap<String, Connection>>,
}

impl WsState {
    /// Closes every connection (shutdown).
    pub fn close_all(&self) {
        if let Ok(mut map) = self.connections.lock() {
            for (_, c) in map.drain() {
                let _ = c.sender.send(Message::Close(None));
            }
        }
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.connections.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The router of the WebSocket port.
///
/// The `@connections` management API (`POST` to send, `GET` for the connection's info,
/// `DELETE` to close it, as the API Gateway Management API's `PostToConnection`,
/// `GetConnection` and `DeleteConnection`) is guarded by [`management_guard`].
pub fn router(shared: Arc<Shared>) -> Router {
    let manage = post(post_to_connection)
        .get(get_connection)
        .delete(delete_connection)
        .route_layer(axum::middleware::from_fn(management_guard));
    Router::new()
        .route("/@connections/{id}", manage.clone())
        .route("/{stage}/@connections/{id}", manage)
        .fallback(upgrade)
        .with_state(shared)
}

/// A 403 answer of the management API in API Gateway's shape (`x-amzn-ErrorType` names the
/// error, the body carries the message).
fn forbidden(error_type: &str, message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", error_type),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

/// Why a management request is refused, if it is: it must come from this machine and carry
/// a SigV4 `Authorization` header of the right shape.
///
/// On AWS the `@connections` API is an IAM-authorised part of the WebSocket API (action
/// `execute-api:ManageConnections`) and "you must sign requests with Signature Version 4
/// (SigV4)" (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-control-access-iam.html>);
/// an unsigned request gets `403 {"message":"Missing Authentication Token"}`
/// (<https://repost.aws/knowledge-center/api-gateway-authentication-token-errors>) and a
/// header without `Credential`, `SignedHeaders` or `Signature` an `IncompleteSignatureException`.
/// So a caller that forgot to sign (a hand-rolled HTTP client instead of the SDK) fails here
/// as it would on AWS.
///
/// **Only the presence and shape are checked locally**, not the signature itself: the
/// functions run with the dummy credentials `local`/`local`, there is no IAM to hold a policy,
/// and the port is bound to `127.0.0.1` (see `Gateway::start`). Requests from any other
/// address are refused as well, so the management API stays local even if the bind address
/// changes.
pub fn check_management_request(
    peer: &SocketAddr,
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    if !peer.ip().is_loopback() {
        return Err(Box::new(forbidden("ForbiddenException", "Forbidden")));
    }
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(Box::new(forbidden(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )));
    };
    if let Err(reason) = sigv4_shape(auth) {
        return Err(Box::new(forbidden("IncompleteSignatureException", &reason)));
    }
    if !headers.contains_key("x-amz-date") && !headers.contains_key("date") {
        return Err(Box::new(forbidden(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )));
    }
    Ok(())
}

/// Checks that `auth` looks like `AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/
/// execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=<64 hex digits>`.
fn sigv4_shape(auth: &str) -> Result<(), String> {
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err("Authorization header requires the 'AWS4-HMAC-SHA256' algorithm.".into());
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim) {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let scope_ok = credential.is_some_and(|c| {
        let parts: Vec<&str> = c.split('/').collect();
        parts.len() == 5
            && !parts[0].is_empty()
            && parts[1].len() == 8
            && parts[1].bytes().all(|b| b.is_ascii_digit())
            && !parts[2].is_empty()
            && parts[3] == "execute-api"
            && parts[4] == "aws4_request"
    });
    if !scope_ok {
        return Err("Authorization header requires 'Credential' parameter of the form <key>/<yyyymmdd>/<region>/execute-api/aws4_request.".into());
    }
    if signed_headers.is_none_or(|h| !h.split(';').any(|h| h == "host")) {
        return Err(
            "Authorization header requires 'SignedHeaders' parameter (including host).".into(),
        );
    }
    if signature.is_none_or(|s| s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err("Authorization header requires 'Signature' parameter.".into());
    }
    Ok(())
}

/// Middleware of the `@connections` routes: [`check_management_request`].
async fn management_guard(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match check_management_request(&peer, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => *refused,
    }
}

fn gone() -> Response {
    (
        StatusCode::GONE,
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", "GoneException"),
        ],
        json!({"message": null, "__type": "GoneException"}).to_string(),
    )
        .into_response()
}

fn id_of(path: &HashMap<String, String>) -> String {
    path.get("id").cloned().unwrap_or_default()
}

async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let id = id_of(&path);
    let Ok(mut map) = shared.ws.connections.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Some(conn) = map.get_mut(&id) else {
        return gone();
    };
    let msg = match String::from_utf8(body.to_vec()) {
        Ok(text) => Message::Text(text.into()),
        Err(e) => Message::Binary(Bytes::from(e.into_bytes())),
    };
    if conn.sender.send(msg).is_err() {
        map.remove(&id);
        return gone();
    }
    conn.last_active = time::OffsetDateTime::now_utc();
    shared.metrics.websocket_message(stage(&shared));
    StatusCode::OK.into_response()
}

/// The WebSocket API's stage, the dimension of its metrics.
fn stage(shared: &Shared) -> &str {
    shared
        .model
        .websocket
        .as_ref()
        .map(|w| w.stage.as_str())
        .unwrap_or("local")
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn get_connection(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<HashMap<String, String>>,
) -> Response {
    let id = id_of(&path);
    let Ok(map) = shared.ws.connections.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match map.get(&id) {
        Some(c) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({
                "connectedAt": rfc3339(c.connected_at),
                "lastActiveAt": rfc3339(c.last_active),
                "identity": {"sourceIp": c.source_ip, "userAgent": c.user_agent},
            })
            .to_string(),
        )
            .into_response(),
        None => gone(),
    }
}

async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<HashMap<String, String>>,
) -> Response {
    let id = id_of(&path);
    let removed = shared
        .ws
        .connections
        .lock()
        .ok()
        .and_then(|mut m| m.remove(&id));
    match removed {
        Some(c) => {
            let _ = c.sender.send(Message::Close(None));
            StatusCode::NO_CONTENT.into_response()
        }
        None => gone(),
    }
}

fn connection_id() -> String {
    use base64::Engine;
    let bytes: [u8; 10] = rand::random();
    let mut id = base64::engine::general_purpose::STANDARD.encode(bytes);
    id = id.replace(['+', '/'], "A");
    id
}

// One argument per field of the context API Gateway builds; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn request_context(
    shared: &Shared,
    route_key: &str,
    event_type: &str,
    connection_id: &str,
    host: &str,
    peer: &SocketAddr,
    user_agent: &str,
    connected_at: i64,
) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let stage = shared
        .model
        .websocket
        .as_ref()
        .map(|w| w.stage.clone())
        .unwrap_or_else(|| "local".into());
    json!({
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": ulid::Ulid::new().to_string(),
        "requestTime": now.format(&time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        )).unwrap_or_default(),
        "messageDirection": "IN",
        "stage": stage,
        "connectedAt": connected_at,
        "requestTimeEpoch": (now.unix_timestamp_nanos() / 1_000_000) as i64,
        "identity": {"sourceIp": peer.ip().to_string(), "userAgent": user_agent},
        "requestId": ulid::Ulid::new().to_string(),
        "domainName": host,
        "connectionId": connection_id,
        "apiId": "local",
    })
}

/// The HTTP status a route's outcome stands for (2xx accepts a `$connect`).
fn outcome_status(outcome: &Outcome) -> StatusCode {
    match outcome {
        Outcome::Success(b) => serde_json::from_slice::<Value>(b)
            .ok()
            .and_then(|v| v.get("statusCode").and_then(Value::as_u64))
            .and_then(|s| u16::try_from(s).ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK),
        Outcome::Timeout => StatusCode::GATEWAY_TIMEOUT,
        Outcome::InitError(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `Sec-WebSocket-Protocol` header of a `$connect` answer, if any.
fn answered_protocol(outcome: &Outcome) -> Option<String> {
    let Outcome::Success(body) = outcome else {
        return None;
    };
    let answer: Value = serde_json::from_slice(body).ok()?;
    answer
        .get("headers")?
        .as_object()?
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .and_then(|(_, value)| value.as_str())
        .map(str::to_owned)
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return (
                StatusCode::NOT_FOUND,
                [("content-type", "application/json")],
                json!({"message": "Not Found"}).to_string(),
            )
                .into_response()
        }
    };
    let Some(api) = shared.model.websocket.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    shared.metrics.websocket_connect(&api.stage);
    let id = connection_id();
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let connected_at = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let mut hmap = Map::new();
    let mut mv_headers = Map::new();
    for (k, v) in &headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        hmap.insert(k.as_str().to_owned(), Value::String(v.clone()));
        if let Some(a) = mv_headers
            .entry(k.as_str().to_owned())
            .or_insert_with(|| Value::Array(vec![]))
            .as_array_mut()
        {
            a.push(Value::String(v));
        }
    }
    let mut event = json!({
        "headers": hmap,
        "multiValueHeaders": mv_headers,
        "requestContext": request_context(&shared, "$connect", "CONNECT", &id, &host, &peer, &user_agent, connected_at),
        "isBase64Encoded": false,
    });
    if let Some(q) = uri.query() {
        let mut single = Map::new();
        let mut multi = Map::new();
        for (k, v) in url_pairs(q) {
            single.insert(k.clone(), Value::String(v.clone()));
            if let Some(a) = multi
                .entry(k)
                .or_insert_with(|| Value::Array(vec![]))
                .as_array_mut()
            {
                a.push(Value::String(v));
            }
        }
        event["queryStringParameters"] = Value::Object(single);
        event["multiValueQueryStringParameters"] = Value::Object(multi);
    }
    if let Some(function) = api.routes.get("$connect") {
        let outcome = shared
            .invoke(function, Bytes::from(event.to_string()))
            .await;
        let status = outcome_status(&outcome);
        // The subprotocol `$connect` answers with goes back in the handshake, as API Gateway
        // does: a browser that offered protocols fails a handshake that echoes none.
        if let Some(protocol) = answered_protocol(&outcome) {
            ws = ws.protocols([protocol]);
        }
        if !status.is_success() {
            return (
                status,
                format!(
                    "{{\"message\":\"{}\"}}",
                    status.canonical_reason().unwrap_or("Forbidden")
                ),
            )
                .into_response();
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let now = time::OffsetDateTime::now_utc();
    if let Ok(mut map) = shared.ws.connections.lock() {
        map.insert(
            id.clone(),
            Connection {
                sender: tx,
                connected_at: now,
                last_active: now,
                source_ip: peer.ip().to_string(),
                user_agent: user_agent.clone(),
            },
        );
    }
    let ctx = ConnCtx {
        shared,
        id,
        host,
        peer,
        user_agent,
        connected_at,
        selection: api.route_selection.clone(),
        routes: api.routes.clone(),
    };
    ws.on_upgrade(move |socket| run_connection(socket, rx, ctx))
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
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

struct ConnCtx {
    shared: Arc<Shared>,
    id: String,
    host: String,
    peer: SocketAddr,
    user_agent: String,
    connected_at: i64,
    selection: String,
    routes: std::collections::BTreeMap<String, String>,
}

/// The route key a message selects (`$request.body.action`), else `$default`.
fn select_route(
    selection: &str,
    body: &str,
    routes: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    let selected = selection.strip_prefix("$request.body.").and_then(|path| {
        let v: Value = serde_json::from_str(body).ok()?;
        let mut cur = &v;
        for part in path.split('.') {
            cur = cur.get(part)?;
        }
        Some(crate::template::scalar(cur))
    });
    match selected {
        Some(key) if routes.contains_key(&key) => Some(key),
        _ => routes
            .contains_key("$default")
            .then(|| "$default".to_owned()),
    }
}

async fn run_connection(socket: WebSocket, mut rx: mpsc::UnboundedReceiver<Message>, ctx: ConnCtx) {
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let close = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let reply = ctx
        .shared
        .ws
        .connections
        .lock()
        .ok()
        .and_then(|m| m.get(&ctx.id).map(|c| c.sender.clone()));
    while let Some(Ok(msg)) = stream.next().await {
        let (body, binary) = match msg {
            Message::Text(t) => (t.to_string(), false),
            Message::Binary(b) => {
                use base64::Engine;
                (base64::engine::general_purpose::STANDARD.encode(&b), true)
            }
            Message::Close(_) => break,
            _ => continue,
        };
        ctx.shared.metrics.websocket_message(stage(&ctx.shared));
        if let Ok(mut m) = ctx.shared.ws.connections.lock() {
            if let Some(c) = m.get_mut(&ctx.id) {
                c.last_active = time::OffsetDateTime::now_utc();
            }
        }
        let Some(route) = select_route(&ctx.selection, &body, &ctx.routes) else {
            if let Some(r) = &reply {
                let _ = r.send(Message::Text(
                    json!({"message": "Forbidden", "connectionId": ctx.id, "requestId": ulid::Ulid::new().to_string()})
                        .to_string()
                        .into(),
                ));
            }
            continue;
        };
        let Some(function) = ctx.routes.get(&route) else {
            continue;
        };
        let mut rc = request_context(
            &ctx.shared,
            &route,
            "MESSAGE",
            &ctx.id,
            &ctx.host,
            &ctx.peer,
            &ctx.user_agent,
            ctx.connected_at,
        );
        rc["messageId"] = Value::String(ulid::Ulid::new().to_string());
        let event = json!({"requestContext": rc, "body": body, "isBase64Encoded": binary});
        let outcome = ctx
            .shared
            .invoke(function, Bytes::from(event.to_string()))
            .await;
        let answer = match &outcome {
            Outcome::Success(b) => serde_json::from_slice::<Value>(b)
                .ok()
                .and_then(|v| v.get("body").map(crate::template::scalar)),
            _ => Some(
                json!({"message": "Internal server error", "connectionId": ctx.id, "requestId": ulid::Ulid::new().to_string()})
                    .to_string(),
            ),
        };
        if let (Some(text), Some(r)) = (answer, &reply) {
            if !text.is_empty() {
                let _ = r.send(Message::Text(text.into()));
            }
        }
    }
    let removed = ctx
        .shared
        .ws
        .connections
        .lock()
        .ok()
        .and_then(|mut m| m.remove(&ctx.id));
    drop(removed);
    drop(reply);
    writer.abort();
    if let Some(function) = ctx.routes.get("$disconnect") {
        let mut rc = request_context(
            &ctx.shared,
            "$disconnect",
            "DISCONNECT",
            &ctx.id,
            &ctx.host,
            &ctx.peer,
            &ctx.user_agent,
            ctx.connected_at,
        );
        rc["disconnectStatusCode"] = json!(1000);
        rc["disconnectReason"] = json!("");
        let event = json!({"requestContext": rc, "isBase64Encoded": false});
        let _ = ctx
            .shared
            .invoke(function, Bytes::from(event.to_string()))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &str = "AWS4-HMAC-SHA256 Credential=local/20261201/us-east-1/execute-api/aws4_request, SignedHeaders=content-length;host;x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert("authorization", a.parse().unwrap());
        }
        h.insert("x-amz-date", "20261201T052600Z".parse().unwrap());
        h
    }

    fn refusal(peer: &str, auth: Option<&str>) -> Option<(StatusCode, String)> {
        let peer: SocketAddr = peer.parse().unwrap();
        check_management_request(&peer, &headers(auth))
            .err()
            .map(|r| {
                let kind = r.headers()["x-amzn-errortype"].to_str().unwrap().to_owned();
                (r.status(), kind)
            })
    }

    #[test]
    fn a_signed_request_from_loopback_passes() {
        assert!(refusal("127.0.0.1:5000", Some(SIGNED)).is_none());
        assert!(refusal("[::1]:5000", Some(SIGNED)).is_none());
    }

    #[test]
    fn a_request_from_another_address_is_refused_even_when_signed() {
        assert_eq!(
            refusal("10.1.2.3:5000", Some(SIGNED)),
            Some((StatusCode::FORBIDDEN, "ForbiddenException".into()))
        );
    }

    #[test]
    fn unsigned_and_malformed_signatures_are_refused() {
        assert_eq!(
            refusal("127.0.0.1:5000", None),
            Some((
                StatusCode::FORBIDDEN,
                "MissingAuthenticationTokenException".into()
            ))
        );
        for bad in [
            "Bearer abc",
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=local/2026/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "AWS4-HMAC-SHA256 Credential=local/20261201/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "AWS4-HMAC-SHA256 Credential=local/20261201/us-east-1/execute-api/aws4_request, SignedHeaders=x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "AWS4-HMAC-SHA256 Credential=local/20261201/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=xyz",
        ] {
            assert_eq!(
                refusal("127.0.0.1:5000", Some(bad)),
                Some((StatusCode::FORBIDDEN, "IncompleteSignatureException".into())),
                "{bad}"
            );
        }
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut no_date = HeaderMap::new();
        no_date.insert("authorization", SIGNED.parse().unwrap());
        assert!(check_management_request(&peer, &no_date).is_err());
    }
}
