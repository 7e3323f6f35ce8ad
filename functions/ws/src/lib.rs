//! The WebSocket API: one function behind every route of `WebSocketApi`.
//!
//! - `$connect`: the access token comes from the query string (`?token=...`) or, for
//!   browsers (which cannot set headers on a WebSocket), from `Sec-WebSocket-Protocol`;
//!   the protocol chosen is echoed back. A missing, bad or expired token (or a disabled
//!   user) answers `401`, which refuses the upgrade; a user whose role may not subscribe (a
//!   self-registered `pending` user) gets `403`. On success the connection item (`CONN#<id>`
//!   / `META`: user, role, the token's version, `expires_at` = the token's `exp`) is stored;
//!   the notifier drops the connection when the user's current state no longer matches
//!   (`shared::realtime`).
//! - `subscribe` / `unsubscribe` (`{"action":"subscribe","topics":[...]}`): topics
//!   `payments`, `activities`, `dashboard`, `account:{id}`, `job:{id}`, `import:{id}`. An
//!   agent may follow only `account:{id}` of accounts assigned to it; `job:{id}` and
//!   `import:{id}` are for admins and, of its own jobs and imports only, a manager: the same
//!   rule as `GET /bulk/jobs/{id}` and `GET /imports/{id}` (`shared::bulk::JobStore::visible`,
//!   `shared::imports::ImportStore::visible`), and the same answer for one it may not see as
//!   for none (`not_found`). Each subscription is written twice (by topic, by connection)
//!   in one transaction, with the user, role and token version so the notifier can filter
//!   per agent and re-check the user.
//! - `$disconnect`: the connection and both items of each of its subscriptions go.
//! - `$default`: an error naming the unknown action.
//!
//! A message always gets one answer on the socket (the route response body):
//! `{"type":"subscribed"|"unsubscribed","data":{"topics":[...]}}` or
//! `{"type":"error","data":{"code":...,"message":...}}`; the connection stays open. A
//! connection whose token has expired gets `token_expired` (TTL is lazy: checked here); one
//! whose user was disabled or changed since `$connect` (token version, role) gets
//! `unauthorized` to a `subscribe`, checked with the authenticator's cache.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use shared::accounts::AccountRepo;
use shared::auth::{authorize, Action, Caller, Role};
use shared::bulk::JobStore;
use shared::dynamo::DataError;
use shared::imports::ImportStore;
use shared::platform::{InitError, Platform};
use shared::realtime::{
    role_may_follow, ConnectionItem, ConnectionRepo, Topic, MAX_TOPICS_PER_MESSAGE,
};
use shared::ApiError;

/// The shared platform and the repositories, built once per cold start.
pub struct App {
    pub platform: Platform,
    pub connections: ConnectionRepo,
    pub accounts: AccountRepo,
    /// For `job:{id}`: whether the caller may see the job.
    pub jobs: JobStore,
    /// For `import:{id}`: whether the caller may see the import.
    pub imports: ImportStore,
}

impl App {
    pub fn new(platform: Platform) -> Self {
        let tables = &platform.config.tables;
        let dynamodb = platform.clients.dynamodb.clone();
        Self {
            connections: ConnectionRepo::new(dynamodb.clone(), tables.connections.clone()),
            accounts: AccountRepo::new(
                dynamodb.clone(),
                tables.accounts.clone(),
                tables.activities.clone(),
            ),
            imports: ImportStore::new(
                dynamodb.clone(),
                tables.jobs.clone(),
                tables.accounts.clone(),
            ),
            jobs: JobStore::new(
                dynamodb,
                platform.clients.sqs.clone(),
                tables.jobs.clone(),
                platform.config.queues.bulk.clone(),
            ),
            platform,
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        Ok(Self::new(
            Platform::from_env(|tables| &tables.connections).await?,
        ))
    }
}

/// An error answer on the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsError {
    pub code: &'static str,
    pub message: String,
}

impl WsError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ApiError> for WsError {
    fn from(err: ApiError) -> Self {
        let code = match err.status.as_u16() {
            403 => "forbidden",
            404 => "not_found",
            503 => "unavailable",
            400 => "invalid_message",
            _ => "internal",
        };
        Self::new(code, err.detail)
    }
}

/// A store's failure, as an API route would answer it (503 when retryable, else a logged
/// 500), then put in socket terms.
impl From<DataError> for WsError {
    fn from(err: DataError) -> Self {
        ApiError::from(err).into()
    }
}

fn response(status: u16, body: Option<String>, headers: HeaderMap) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response.headers = headers;
    response.body = body.map(Body::Text);
    response
}

fn message(kind: &str, data: Value) -> ApiGatewayProxyResponse {
    response(
        200,
        Some(json!({"type": kind, "data": data}).to_string()),
        HeaderMap::new(),
    )
}

fn error_message(err: &WsError) -> ApiGatewayProxyResponse {
    message("error", json!({"code": err.code, "message": err.message}))
}

/// Routes an event by the route key API Gateway matched.
pub async fn handle(app: &App, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let route = event.request_context.route_key.clone().unwrap_or_default();
    let connection_id = event
        .request_context
        .connection_id
        .clone()
        .unwrap_or_default();
    let answer = match route.as_str() {
        "$connect" => connect(app, &connection_id, &event).await,
        "$disconnect" => disconnect(app, &connection_id).await,
        "subscribe" | "unsubscribe" => {
            let result = on_message(app, &route, &connection_id, event.body.as_deref()).await;
            match result {
                Ok(answer) => answer,
                Err(err) => {
                    tracing::info!(route, connection = %connection_id, code = err.code, detail = %err.message, "message refused");
                    error_message(&err)
                }
            }
        }
        _ => error_message(&unknown_action(event.body.as_deref())),
    };
    tracing::info!(route, connection = %connection_id, status = answer.status_code, "ws");
    answer
}

fn unknown_action(body: Option<&str>) -> WsError {
    let action = body
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|v| v.get("action").cloned());
    match action {
        Some(Value::String(name)) => WsError::new(
            "unknown_action",
            format!("unknown action {name:?}: expected subscribe or unsubscribe"),
        ),
        Some(other) => WsError::new(
            "unknown_action",
            format!("unknown action {other}: expected subscribe or unsubscribe"),
        ),
        None => WsError::new(
            "unknown_action",
            "a message is JSON with an \"action\": subscribe or unsubscribe",
        ),
    }
}

// ------------------------------------------------------------------ $connect

/// The token and the protocol to echo back. The token is `?token=` when present, else the
/// entry of `Sec-WebSocket-Protocol` (a comma-separated list) that looks like a JWT. A
/// client that offers protocols must get one back or it fails the handshake: the echoed one
/// is the first offered entry that is not the token (e.g. `bearer`), else the token entry.
pub fn connect_token(event: &ApiGatewayWebsocketProxyRequest) -> Option<(String, Option<String>)> {
    let offered: Vec<&str> = event
        .headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let in_protocol = offered.iter().find(|e| e.split('.').count() == 3).copied();
    let token = event
        .query_string_parameters
        .first("token")
        .filter(|t| !t.is_empty())
        .or(in_protocol)?;
    let protocol = offered
        .iter()
        .find(|e| Some(**e) != in_protocol)
        .or(in_protocol.as_ref())
        .map(|p| (*p).to_owned());
    Some((token.to_owned(), protocol))
}

fn unauthorized() -> ApiGatewayProxyResponse {
    response(
        401,
        Some(json!({"message": "Unauthorized"}).to_string()),
        HeaderMap::new(),
    )
}

async fn connect(
    app: &App,
    connection_id: &str,
    event: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Some((token, protocol)) = connect_token(event) else {
        tracing::info!("connect without an access token");
        return unauthorized();
    };
    let (caller, claims) = match app.platform.authenticator.authenticate_token(&token).await {
        Ok(found) => found,
        Err(err) if err.status.as_u16() == 401 => return unauthorized(),
        Err(_) => return response(500, None, HeaderMap::new()),
    };
    if authorize(&caller, Action::Subscribe).is_err() {
        return response(403, None, HeaderMap::new());
    }
    let item = ConnectionItem::new(
        connection_id,
        &caller,
        event.request_context.connected_at,
        claims.exp,
    )
    .with_token_version(claims.ver);
    if let Err(err) = app.connections.put_connection(&item).await {
        tracing::error!(error = %err, "storing the connection");
        return response(500, None, HeaderMap::new());
    }
    let mut headers = HeaderMap::new();
    if let Some(value) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        headers.insert("sec-websocket-protocol", value);
    }
    response(200, None, headers)
}

// ------------------------------------------------------------------ $disconnect

async fn disconnect(app: &App, connection_id: &str) -> ApiGatewayProxyResponse {
    match app.connections.remove_connection(connection_id).await {
        Ok(()) => response(200, None, HeaderMap::new()),
        Err(err) => {
            tracing::error!(error = %err, "removing the connection");
            response(500, None, HeaderMap::new())
        }
    }
}

// ------------------------------------------------------------------ messages

/// The topics of a `subscribe` / `unsubscribe` message, parsed and de-duplicated in order.
pub fn parse_topics(body: Option<&str>) -> Result<Vec<Topic>, WsError> {
    let invalid = |msg: &str| WsError::new("invalid_message", msg);
    let value: Value = body
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| invalid("a message is a JSON object"))?;
    let list = value
        .get("topics")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("\"topics\" must be an array of topic names"))?;
    if list.is_empty() || list.len() > MAX_TOPICS_PER_MESSAGE {
        return Err(invalid(&format!(
            "\"topics\" must name 1 to {MAX_TOPICS_PER_MESSAGE} topics"
        )));
    }
    let mut topics: Vec<Topic> = Vec::with_capacity(list.len());
    for entry in list {
        let Some(text) = entry.as_str() else {
            return Err(invalid("\"topics\" must be an array of topic names"));
        };
        let topic: Topic = text
            .parse()
            .map_err(|err: shared::realtime::UnknownTopic| {
                WsError::new("unknown_topic", err.to_string())
            })?;
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    Ok(topics)
}

/// Whether `caller` may follow `topic` (`forbidden` / `not_found` otherwise).
async fn check_topic(app: &App, caller: &Caller, topic: &Topic) -> Result<(), WsError> {
    role_may_follow(caller, topic)?;
    match topic {
        Topic::Payments | Topic::Activities | Topic::Dashboard => Ok(()),
        Topic::Job(id) => {
            let scope = authorize(caller, Action::ManageBulkJobs)?;
            app.jobs.visible(&scope, *id).await?;
            Ok(())
        }
        Topic::Import(id) => {
            let scope = authorize(caller, Action::ManageImports)?;
            app.imports.visible(&scope, *id).await?;
            Ok(())
        }
        Topic::Account(id) => {
            let account = app
                .accounts
                .get(*id)
                .await?
                .filter(|a| a.deleted_at.is_none());
            let Some(account) = account else {
                return Err(WsError::new("not_found", format!("no account {id}")));
            };
            if caller.role == Role::Agent && account.assigned_agent_id != Some(caller.user_id) {
                return Err(WsError::new(
                    "forbidden",
                    format!("{topic} is not assigned to you"),
                ));
            }
            Ok(())
        }
    }
}

async fn live_connection(app: &App, connection_id: &str) -> Result<ConnectionItem, WsError> {
    let connection = app
        .connections
        .connection(connection_id)
        .await?
        .ok_or_else(|| WsError::new("not_connected", "this connection is not registered"))?;
    if connection.is_expired() {
        return Err(WsError::new(
            "token_expired",
            "the access token of this connection has expired: reconnect with a fresh one",
        ));
    }
    Ok(connection)
}

async fn on_message(
    app: &App,
    route: &str,
    connection_id: &str,
    body: Option<&str>,
) -> Result<ApiGatewayProxyResponse, WsError> {
    let connection = live_connection(app, connection_id).await?;
    let topics = parse_topics(body)?;
    let names: Vec<String> = topics.iter().map(Topic::to_string).collect();
    if route == "unsubscribe" {
        app.connections.unsubscribe(connection_id, &topics).await?;
        return Ok(message("unsubscribed", json!({"topics": names})));
    }
    let caller = connection.caller();
    // The user as it is now, not as it was at $connect (the notifier drops such a
    // connection at its next push; until then it may not add topics either).
    let current = match connection.token_version {
        Some(version) => {
            app.platform
                .authenticator
                .states()
                .current(caller.user_id, version, caller.role)
                .await?
        }
        None => None,
    };
    if current.is_none() {
        return Err(WsError::new(
            "unauthorized",
            "this connection's user was disabled or changed since it connected: reconnect with a fresh token",
        ));
    }
    // Independent checks (an account GetItem each) run concurrently; the first refusal in
    // the message's order is the answer.
    futures::future::join_all(topics.iter().map(|topic| check_topic(app, &caller, topic)))
        .await
        .into_iter()
        .collect::<Result<Vec<()>, WsError>>()?;
    if !app.connections.subscribe(&connection, &topics).await? {
        return Err(WsError::new(
            "not_connected",
            "this connection was closed meanwhile",
        ));
    }
    Ok(message("subscribed", json!({"topics": names})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(query: Option<&str>, protocol: Option<&str>) -> ApiGatewayWebsocketProxyRequest {
        let mut value = json!({"headers": {}, "requestContext": {
            "routeKey": "$connect", "connectedAt": 1, "requestTimeEpoch": 1}});
        if let Some(q) = query {
            value["queryStringParameters"] = json!({"token": q});
        }
        if let Some(p) = protocol {
            value["headers"]["Sec-WebSocket-Protocol"] = json!(p);
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_token_comes_from_the_query_or_the_offered_protocols() {
        let jwt = "aaa.bbb.ccc";
        assert_eq!(connect_token(&event(None, None)), None);
        assert_eq!(connect_token(&event(Some(""), None)), None);
        assert_eq!(connect_token(&event(None, Some("bearer"))), None);
        assert_eq!(
            connect_token(&event(Some(jwt), None)),
            Some((jwt.into(), None))
        );
        assert_eq!(
            connect_token(&event(None, Some(&format!("bearer, {jwt}")))),
            Some((jwt.into(), Some("bearer".into())))
        );
        assert_eq!(
            connect_token(&event(None, Some(jwt))),
            Some((jwt.into(), Some(jwt.into())))
        );
        // A query token with offered protocols still echoes one of them.
        assert_eq!(
            connect_token(&event(Some(jwt), Some("collectpro.v1"))),
            Some((jwt.into(), Some("collectpro.v1".into())))
        );
    }
}
