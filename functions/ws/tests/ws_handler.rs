//! The ws handler against DynamoDB Local (run under `infra/stack.sh`): events built like
//! API Gateway's (and the samples in `events/`) go to `ws::handle` directly.

use std::collections::HashMap;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use shared::accounts::Account;
use shared::auth::users::NewUser;
use shared::auth::{AccessClaims, KeySet, Role, UserRepo};
use shared::clients::Clients;
use shared::config::Config;
use shared::domain::Id;
use shared::platform::Platform;
use shared::rate_limit::RateLimits;
use ws::App;

struct Fixture {
    app: App,
    keys: KeySet,
    dynamodb: aws_sdk_dynamodb::Client,
    config: Config,
}

async fn fixture() -> Fixture {
    let provisioned = local_gateway::provision_for_test()
        .await
        .expect("provisioning test tables (run under infra/stack.sh)");
    let env = provisioned.env;
    let config = Config::from_lookup(&|name| env.get(name).cloned()).unwrap();
    let keys = KeySet::parse(&KeySet::generate_json()).unwrap();
    let sdk = shared::clients::sdk_config().await;
    let platform = Platform::new(
        config.clone(),
        Clients::new(&sdk),
        &keys,
        &shared::testing::auth_settings(),
        RateLimits::off(),
    );
    let dynamodb = platform.clients.dynamodb.clone();
    Fixture {
        app: App::new(platform),
        keys,
        dynamodb,
        config,
    }
}

impl Fixture {
    /// A stored user with `role` and an access token for it.
    async fn user(&self, role: Role) -> (Id, String) {
        let users = UserRepo::new(self.dynamodb.clone(), self.config.tables.users.clone());
        let user = users
            .create(NewUser {
                email: format!("{}@ws.test", Id::generate()).to_lowercase(),
                name: format!("ws {role}"),
                role,
                password_hash: "unused".into(),
            })
            .await
            .unwrap();
        let (token, _) = self
            .app
            .platform
            .authenticator
            .tokens()
            .issue(user.id, role, user.token_version)
            .unwrap();
        (user.id, token)
    }

    /// A token for `user` signed with the right key that expired an hour ago.
    fn expired_token(&self, user: Id, role: Role) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            sub: user.to_string(),
            role,
            ver: 0,
            exp: now - 3600,
            iat: now - 4500,
            jti: "expired".into(),
            iss: "collectpro".into(),
            aud: "collectpro-api".into(),
        };
        let (kid, secret) = self.keys.active();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    async fn account(&self, agent: Option<Id>) -> Id {
        let account = Account {
            assigned_agent_id: agent,
            ..shared::testing::account(10_000, shared::domain::Timestamp::now())
        };
        let id = account.id;
        self.app.accounts.create(&account).await.unwrap().unwrap();
        id
    }

    /// A bulk job created by `creator` (as `POST /bulk/accounts` stores it).
    async fn job_of(&self, creator: Id) -> Id {
        let id = Id::generate();
        let spec: shared::bulk::JobSpec =
            serde_json::from_value(json!({"changes": {"add_tags": ["ws-test"]}})).unwrap();
        self.app
            .jobs
            .create(id, creator, &spec, 1, 0, shared::domain::Timestamp::now())
            .await
            .unwrap();
        id
    }

    /// An import created by `creator` (as `POST /imports` stores it).
    async fn import_of(&self, creator: Id) -> Id {
        let import = shared::imports::Import {
            id: Id::generate(),
            state: shared::imports::ImportState::AwaitingUpload,
            size: 10,
            file_name: "placements.csv".to_owned(),
            column_mapping: Default::default(),
            mode: Default::default(),
            total_rows: None,
            counts: Default::default(),
            error: None,
            created_by: creator,
            created_at: shared::domain::Timestamp::now(),
            finished_at: None,
        };
        self.app.imports.create(&import).await.unwrap();
        import.id
    }

    async fn call(&self, event: Value) -> ApiGatewayProxyResponse {
        let event: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event).unwrap();
        ws::handle(&self.app, event).await
    }

    async fn connect_with(&self, conn: &str, token: Option<&str>) -> ApiGatewayProxyResponse {
        let mut event = connect_event(conn);
        match token {
            Some(t) => event["queryStringParameters"] = json!({"token": t}),
            None => {
                event
                    .as_object_mut()
                    .unwrap()
                    .remove("queryStringParameters");
            }
        }
        self.call(event).await
    }

    async fn send(&self, conn: &str, route: &str, body: Value) -> Value {
        let response = self
            .call(message_event(conn, route, &body.to_string()))
            .await;
        assert_eq!(response.status_code, 200);
        body_json(&response)
    }

    /// Every item of the Connections table whose pk or sk names `conn`.
    async fn items_of(&self, conn: &str) -> Vec<HashMap<String, AttributeValue>> {
        let out = self
            .dynamodb
            .scan()
            .table_name(self.config.tables.connections.as_str())
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        out.items
            .unwrap_or_default()
            .into_iter()
            .filter(|item| {
                let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                s("pk").is_some_and(|pk| pk == format!("CONN#{conn}"))
                    || s("sk").is_some_and(|sk| sk == conn)
            })
            .collect()
    }
}

fn sample(name: &str) -> Value {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn connect_event(conn: &str) -> Value {
    let mut event = sample("websocket-connect.json");
    event["requestContext"]["connectionId"] = json!(conn);
    event
}

fn message_event(conn: &str, route: &str, body: &str) -> Value {
    let mut event = sample("websocket-subscribe.json");
    event["requestContext"]["connectionId"] = json!(conn);
    event["requestContext"]["routeKey"] = json!(route);
    event["body"] = json!(body);
    event
}

fn body_json(response: &ApiGatewayProxyResponse) -> Value {
    match &response.body {
        Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

fn conn_id() -> String {
    format!("c{}=", Id::generate())
}

#[tokio::test]
async fn connect_accepts_a_good_token_and_refuses_missing_bad_or_expired_ones() {
    let f = fixture().await;
    let (user, token) = f.user(Role::Agent).await;

    // The sample event, token placeholder replaced.
    let conn = conn_id();
    let mut event = connect_event(&conn);
    let text = event
        .to_string()
        .replace("REPLACE_WITH_ACCESS_TOKEN", &token);
    event = serde_json::from_str(&text).unwrap();
    let response = f.call(event).await;
    assert_eq!(response.status_code, 200, "{response:?}");
    let meta = f
        .app
        .connections
        .connection(&conn)
        .await
        .unwrap()
        .expect("the connection item is stored");
    assert_eq!((meta.user_id, meta.role), (user, Role::Agent));
    // The token's version, for the notifier's re-check of the user.
    assert_eq!(meta.token_version, Some(0));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(meta.expires_at > now && meta.expires_at <= now + 15 * 60 + 5);

    for bad in [None, Some("not-a-jwt"), Some("a.b.c")] {
        let conn = conn_id();
        let response = f.connect_with(&conn, bad).await;
        assert_eq!(response.status_code, 401, "{bad:?}");
        assert!(f.items_of(&conn).await.is_empty());
    }
    let expired = f.expired_token(user, Role::Agent);
    let response = f.connect_with(&conn_id(), Some(&expired)).await;
    assert_eq!(response.status_code, 401);
    // A self-registered user waiting for a role connects to nothing.
    let (_, pending) = f.user(Role::Pending).await;
    let conn = conn_id();
    let response = f.connect_with(&conn, Some(&pending)).await;
    assert_eq!(response.status_code, 403);
    assert!(f.items_of(&conn).await.is_empty());

    // A browser offers the token as a subprotocol: the chosen protocol is echoed back.
    let conn = conn_id();
    let mut event = connect_event(&conn);
    event
        .as_object_mut()
        .unwrap()
        .remove("queryStringParameters");
    event["headers"]["Sec-WebSocket-Protocol"] = json!(format!("bearer, {token}"));
    let response = f.call(event).await;
    assert_eq!(response.status_code, 200);
    assert_eq!(response.headers["sec-websocket-protocol"], "bearer");
    assert!(f.app.connections.connection(&conn).await.unwrap().is_some());
    let conn = conn_id();
    let mut event = connect_event(&conn);
    event
        .as_object_mut()
        .unwrap()
        .remove("queryStringParameters");
    event["headers"]["Sec-WebSocket-Protocol"] = json!(token);
    let response = f.call(event).await;
    assert_eq!(response.status_code, 200);
    assert_eq!(response.headers["sec-websocket-protocol"], token.as_str());
}

#[tokio::test]
async fn subscribe_checks_topics_and_roles_and_unsubscribe_and_disconnect_clean_up() {
    let f = fixture().await;
    let (agent, agent_token) = f.user(Role::Agent).await;
    let (other_agent, _) = f.user(Role::Agent).await;
    let (_, viewer_token) = f.user(Role::Viewer).await;
    let (manager, manager_token) = f.user(Role::Manager).await;
    let mine = f.account(Some(agent)).await;
    let theirs = f.account(Some(other_agent)).await;
    let job = f.job_of(manager).await;

    let conn = conn_id();
    assert_eq!(
        f.connect_with(&conn, Some(&agent_token)).await.status_code,
        200
    );

    // The sample subscribe event (its account does not exist: not_found, still an answer).
    let mut event = sample("websocket-subscribe.json");
    event["requestContext"]["connectionId"] = json!(conn);
    let answer = body_json(&f.call(event).await);
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["data"]["code"], "not_found");

    let answer = f
        .send(
            &conn,
            "subscribe",
            json!({"action": "subscribe",
            "topics": ["payments", format!("account:{mine}"), "payments", "dashboard"]}),
        )
        .await;
    assert_eq!(answer["type"], "subscribed", "{answer}");
    assert_eq!(
        answer["data"]["topics"],
        json!(["payments", format!("account:{mine}"), "dashboard"])
    );
    let subs = f
        .app
        .connections
        .subscribers(&shared::realtime::Topic::Payments)
        .await
        .unwrap();
    let sub = subs
        .iter()
        .find(|s| s.connection_id == conn)
        .expect("by topic");
    assert_eq!((sub.user_id, sub.role), (agent, Role::Agent));
    assert_eq!(sub.token_version, Some(0));
    assert_eq!(f.items_of(&conn).await.len(), 1 + 3 * 2);

    for (topics, code) in [
        (json!([format!("account:{theirs}")]), "forbidden"),
        (json!([format!("job:{job}")]), "forbidden"),
        (json!(["payments", "nope"]), "unknown_topic"),
        (json!(["account:123"]), "unknown_topic"),
        (json!([]), "invalid_message"),
        (json!("payments"), "invalid_message"),
    ] {
        let answer = f
            .send(
                &conn,
                "subscribe",
                json!({"action": "subscribe", "topics": topics}),
            )
            .await;
        assert_eq!(answer["type"], "error", "{topics}");
        assert_eq!(answer["data"]["code"], code, "{topics}: {answer}");
        assert!(answer["data"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Nothing half-written by the refused ones.
    assert_eq!(f.items_of(&conn).await.len(), 1 + 3 * 2);

    // Viewer: no jobs, any account. Manager: jobs.
    let viewer_conn = conn_id();
    assert_eq!(
        f.connect_with(&viewer_conn, Some(&viewer_token))
            .await
            .status_code,
        200
    );
    let answer = f
        .send(
            &viewer_conn,
            "subscribe",
            json!({"action": "subscribe", "topics": [format!("job:{job}")]}),
        )
        .await;
    assert_eq!(answer["data"]["code"], "forbidden", "{answer}");
    let answer = f
        .send(
            &viewer_conn,
            "subscribe",
            json!({"action": "subscribe", "topics": [format!("account:{theirs}")]}),
        )
        .await;
    assert_eq!(answer["type"], "subscribed", "{answer}");
    let manager_conn = conn_id();
    assert_eq!(
        f.connect_with(&manager_conn, Some(&manager_token))
            .await
            .status_code,
        200
    );
    let answer = f
        .send(
            &manager_conn,
            "subscribe",
            json!({"action": "subscribe", "topics": [format!("job:{job}")]}),
        )
        .await;
    assert_eq!(answer["type"], "subscribed", "{answer}");

    // Unknown action ($default).
    let answer = f.send(&conn, "$default", json!({"action": "dance"})).await;
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["data"]["code"], "unknown_action");
    assert!(answer["data"]["message"]
        .as_str()
        .unwrap()
        .contains("dance"));
    let answer = body_json(&f.call(message_event(&conn, "$default", "not json")).await);
    assert_eq!(answer["data"]["code"], "unknown_action");

    // Unsubscribe removes both items.
    let answer = f
        .send(
            &conn,
            "unsubscribe",
            json!({"action": "unsubscribe", "topics": ["dashboard"]}),
        )
        .await;
    assert_eq!(answer["type"], "unsubscribed", "{answer}");
    assert_eq!(answer["data"]["topics"], json!(["dashboard"]));
    assert_eq!(f.items_of(&conn).await.len(), 1 + 2 * 2);
    let dash = f
        .app
        .connections
        .subscribers(&shared::realtime::Topic::Dashboard)
        .await
        .unwrap();
    assert!(dash.iter().all(|s| s.connection_id != conn));

    // Disconnect removes everything.
    let mut event = message_event(&conn, "$disconnect", "");
    event.as_object_mut().unwrap().remove("body");
    event["requestContext"]["eventType"] = json!("DISCONNECT");
    let response = f.call(event).await;
    assert_eq!(response.status_code, 200);
    assert!(f.items_of(&conn).await.is_empty());
    // A message on a gone connection is answered, not crashed on.
    let answer = f
        .send(
            &conn,
            "subscribe",
            json!({"action": "subscribe", "topics": ["payments"]}),
        )
        .await;
    assert_eq!(answer["data"]["code"], "not_connected");
}

#[tokio::test]
async fn a_connection_whose_token_expired_gets_an_error_answer() {
    let f = fixture().await;
    let (user, token) = f.user(Role::Admin).await;
    let conn = conn_id();
    assert_eq!(f.connect_with(&conn, Some(&token)).await.status_code, 200);
    // The token runs out while the socket stays open (TTL has not removed the item).
    let mut item = f.app.connections.connection(&conn).await.unwrap().unwrap();
    assert_eq!(item.user_id, user);
    item.expires_at = time::OffsetDateTime::now_utc().unix_timestamp() - 1;
    f.app.connections.put_connection(&item).await.unwrap();
    let answer = f
        .send(
            &conn,
            "subscribe",
            json!({"action": "subscribe", "topics": ["payments"]}),
        )
        .await;
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["data"]["code"], "token_expired");
    assert_eq!(f.items_of(&conn).await.len(), 1);
}

/// `job:{id}` and `import:{id}` follow the rules of `GET /bulk/jobs/{id}` and `GET
/// /imports/{id}`: a manager follows only its own, and another manager's is `not_found` like
/// a missing one; admins follow any; other roles none.
#[tokio::test]
async fn a_manager_follows_only_its_own_jobs_and_imports() {
    let f = fixture().await;
    let (owner, owner_token) = f.user(Role::Manager).await;
    let (_, other_token) = f.user(Role::Manager).await;
    let (_, admin_token) = f.user(Role::Admin).await;
    let (_, agent_token) = f.user(Role::Agent).await;
    let (_, viewer_token) = f.user(Role::Viewer).await;
    let job = format!("job:{}", f.job_of(owner).await);
    let import = format!("import:{}", f.import_of(owner).await);
    let subscribe = |topic: String| json!({"action": "subscribe", "topics": [topic]});
    let mut cases = vec![
        (&other_token, format!("job:{}", Id::generate()), "not_found"),
        (
            &other_token,
            format!("import:{}", Id::generate()),
            "not_found",
        ),
    ];
    for topic in [&job, &import] {
        cases.extend([
            (&other_token, topic.clone(), "not_found"),
            (&agent_token, topic.clone(), "forbidden"),
            (&viewer_token, topic.clone(), "forbidden"),
            (&owner_token, topic.clone(), "subscribed"),
            (&admin_token, topic.clone(), "subscribed"),
        ]);
    }
    for (token, topic, expected) in cases {
        let conn = conn_id();
        assert_eq!(f.connect_with(&conn, Some(token)).await.status_code, 200);
        let answer = f.send(&conn, "subscribe", subscribe(topic.clone())).await;
        let got = match answer["type"].as_str() {
            Some("error") => answer["data"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            other => other.unwrap_or_default().to_owned(),
        };
        assert_eq!(got, expected, "{topic}: {answer}");
        let stored = f.items_of(&conn).await.len();
        assert_eq!(
            stored,
            if expected == "subscribed" { 3 } else { 1 },
            "{topic}"
        );
    }
}

/// A connection keeps nothing of `$connect`: once its user is disabled (or its role or token
/// version changes), `subscribe` is refused and nothing is written.
#[tokio::test]
async fn a_disabled_or_changed_user_subscribes_to_nothing() {
    let f = fixture().await;
    let users = UserRepo::new(f.dynamodb.clone(), f.config.tables.users.clone());
    for change in [
        shared::auth::users::UserChanges {
            disabled: Some(true),
            ..Default::default()
        },
        shared::auth::users::UserChanges {
            role: Some(Role::Viewer),
            ..Default::default()
        },
    ] {
        let (user, token) = f.user(Role::Manager).await;
        let conn = conn_id();
        assert_eq!(f.connect_with(&conn, Some(&token)).await.status_code, 200);
        let current = users.get(user).await.unwrap().unwrap();
        users.update(&current, &change).await.unwrap();
        let answer = f
            .send(
                &conn,
                "subscribe",
                json!({"action": "subscribe", "topics": ["payments"]}),
            )
            .await;
        assert_eq!(
            answer["data"]["code"], "unauthorized",
            "{change:?}: {answer}"
        );
        assert_eq!(f.items_of(&conn).await.len(), 1, "only the connection item");
    }
}
