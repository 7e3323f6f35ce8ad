//! The notifier's handler against DynamoDB Local (run under `infra/stack.sh` after
//! `cargo build --workspace --bins`): stream events shaped like Lambda's go to
//! `notifier::handle` directly; where a test needs real WebSocket clients it starts the local
//! gateway (`e2e::Stack`, without event sources, so no other notifier runs) and posts to its
//! `@connections` endpoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use e2e::{Stack, StackOptions};
use futures::{SinkExt, StreamExt};
use notifier::App;
use serde_json::{json, Value};
use shared::accounts::Account;
use shared::auth::users::{NewUser, UserChanges, UserItem};
use shared::auth::{Caller, Role, UserRepo};
use shared::config::Config;
use shared::dashboard::{summary, AggregateStore, Item, View};
use shared::domain::{Id, Timestamp};
use shared::payments::{Payment, AGENT_ATTRIBUTE};
use shared::realtime::{ConnectionItem, ConnectionRepo, Topic};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

fn config_of(env: &std::collections::BTreeMap<String, String>) -> Config {
    Config::from_lookup(&|name| env.get(name).cloned()).unwrap()
}

/// Tables of their own, no gateway; posts go to `endpoint`.
async fn bare(endpoint: &str) -> (App, Config) {
    let provisioned = local_gateway::provision_for_test()
        .await
        .expect("provisioning test tables (run under infra/stack.sh)");
    let config = config_of(&provisioned.env);
    let sdk = shared::clients::sdk_config().await;
    (App::new(&config, &sdk, endpoint), config)
}

/// A gateway with the real functions; the notifier under test posts to its `@connections`.
async fn with_gateway() -> (Stack, App, Config) {
    let stack = Stack::start(StackOptions::default()).await;
    let config = config_of(stack.gateway.env());
    let sdk = shared::clients::sdk_config().await;
    let app = App::new(
        &config,
        &sdk,
        &format!("http://{}", stack.gateway.ws_addr()),
    );
    (stack, app, config)
}

fn account(id: Id, agent: Option<Id>) -> Account {
    Account {
        id,
        assigned_agent_id: agent,
        ..shared::testing::account(10_000, Timestamp::now())
    }
}

/// A completed payment's item as the ledger writes it (with the account's agent).
fn payment(account: Id, agent: Option<Id>, amount: i64) -> (Payment, Item) {
    let now = Timestamp::now();
    let payment: Payment = serde_json::from_value(json!({
        "id": Id::generate(), "account_id": account, "amount": amount, "currency": "USD",
        "method": "card", "status": "completed", "reference": null, "received_at": now,
        "created_by": Id::generate(), "version": 1, "created_at": now, "updated_at": now
    }))
    .unwrap();
    let mut item = payment.to_item().unwrap();
    if let Some(agent) = agent {
        item.insert(
            AGENT_ATTRIBUTE.to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::S(agent.to_string()),
        );
    }
    (payment, item)
}

/// A stream record of `table` in Lambda's event shape.
fn record(table: &str, name: &str, sequence: u64, new: &Item) -> Value {
    let image = serde_json::to_value(serde_dynamo::Item::from(new.clone())).unwrap();
    json!({
        "eventID": Id::generate().to_string(),
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "ddblocal",
        "eventSourceARN": format!("arn:aws:dynamodb:ddblocal:000000000000:table/{table}/stream/2026-11-25T00:00:00.000"),
        "dynamodb": {
            "ApproximateCreationDateTime": 1795634241.0,
            "Keys": {"pk": image["pk"]},
            "NewImage": image,
            "SequenceNumber": format!("{sequence:021}"),
            "SizeBytes": 200,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

fn event(records: &[Value]) -> Event {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn failures(response: &DynamoDbEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect()
}

/// A client of the gateway's WebSocket API, subscribed to `topics`.
async fn subscriber(stack: &Stack, token: &str, topics: &[String]) -> Socket {
    let (mut socket, _) = connect_async(format!("ws://{}/?token={token}", stack.gateway.ws_addr()))
        .await
        .expect("the upgrade is accepted");
    socket
        .send(Message::Text(
            json!({"action": "subscribe", "topics": topics})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let answer = next(&mut socket, Duration::from_secs(20))
        .await
        .expect("an answer to subscribe");
    assert_eq!(answer["type"], "subscribed", "{answer}");
    socket
}

/// The next text message, or `None` if none comes within `wait`.
async fn next(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??;
        match frame.ok()? {
            Message::Text(text) => return serde_json::from_str(text.as_str()).ok(),
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => return None,
        }
    }
}

/// A user in the test's Users table (the notifier checks every subscriber's user).
async fn stored_user(app: &App, config: &Config, role: Role) -> UserItem {
    UserRepo::new(app.dynamodb.clone(), config.tables.users.clone())
        .create(NewUser {
            email: format!("{}@notifier.test", Id::generate()).to_lowercase(),
            name: format!("notifier {role}"),
            role,
            password_hash: "unused".into(),
        })
        .await
        .unwrap()
}

/// How a socket ended up after a while.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The server closed it (a close frame or the end of the stream).
    Closed,
    /// A message came instead.
    Message(Value),
    /// Still open, silent, at the end of the wait.
    Open,
}

async fn ending(socket: &mut Socket, wait: Duration) -> Ending {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Ending::Open,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return Ending::Closed,
            Ok(Some(Ok(Message::Text(text)))) => {
                return Ending::Message(serde_json::from_str(text.as_str()).unwrap_or(Value::Null))
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test]
async fn a_batch_delivered_three_times_moves_the_aggregates_once() {
    let (app, config) = bare("http://127.0.0.1:9").await;
    let agent = Id::generate();
    let acct = account(Id::generate(), Some(agent));
    let (_, first) = payment(acct.id, Some(agent), 2500);
    let (_, second) = payment(acct.id, Some(agent), 1500);
    let batch = event(&[
        record(
            config.tables.accounts.as_str(),
            "INSERT",
            1,
            &acct.to_item().unwrap(),
        ),
        record(config.tables.payments.as_str(), "INSERT", 2, &first),
        record(config.tables.payments.as_str(), "INSERT", 3, &second),
    ]);
    for _ in 0..3 {
        // Nobody subscribes: nothing is posted, so the unreachable endpoint is never called.
        let response = notifier::handle(&app, batch.clone()).await;
        assert_eq!(failures(&response), Vec::<String>::new());
    }
    let store = AggregateStore::new(app.dynamodb.clone(), config.tables.aggregates.clone());
    let today = time::OffsetDateTime::now_utc().date();
    for view in [View::All { per_agent: false }, View::Agent(agent)] {
        let figures = serde_json::to_value(summary(&store, view, today).await.unwrap()).unwrap();
        assert_eq!(figures["accounts"]["total"], 1, "{figures}");
        assert_eq!(figures["outstanding"]["USD"], 10000, "{figures}");
        assert_eq!(figures["today"]["collected"]["USD"], 4000, "{figures}");
        assert_eq!(
            figures["today"]["payments_by_method"]["card"]["count"], 2,
            "{figures}"
        );
    }
}

#[tokio::test]
async fn a_gone_connection_is_removed_with_its_subscriptions() {
    let (stack, app, config) = with_gateway().await;
    let mut live = subscriber(&stack, stack.admin(), &["payments".into()]).await;

    // A connection the gateway no longer has (its $disconnect never ran), on two topics, of
    // a user that still qualifies (so it is the post's 410 that removes it).
    let repo = ConnectionRepo::new(app.dynamodb.clone(), config.tables.connections.clone());
    let stale = format!("stale{}=", Id::generate());
    let (manager, _) = stack.user_with_role("manager").await;
    let caller = Caller {
        user_id: manager.parse().unwrap(),
        role: Role::Manager,
    };
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 900;
    let connection = ConnectionItem::new(&stale, &caller, 0, expires).with_token_version(0);
    repo.put_connection(&connection).await.unwrap();
    let acct = Id::generate();
    assert!(repo
        .subscribe(&connection, &[Topic::Payments, Topic::Account(acct)])
        .await
        .unwrap());

    let (paid, item) = payment(acct, None, 700);
    let batch = event(&[record(config.tables.payments.as_str(), "INSERT", 1, &item)]);
    let response = notifier::handle(&app, batch.clone()).await;
    assert_eq!(failures(&response), Vec::<String>::new());

    let message = next(&mut live, Duration::from_secs(10))
        .await
        .expect("the live subscriber gets the payment");
    assert_eq!(message["type"], "payment.recorded");
    assert_eq!(message["id"], batch.records[0].event_id.as_str());
    assert_eq!(message["data"]["id"], paid.id.to_string());
    assert!(repo.connection(&stale).await.unwrap().is_none());
    assert!(repo.topics_of(&stale).await.unwrap().is_empty());
    for topic in [Topic::Payments, Topic::Account(acct)] {
        assert!(repo
            .subscribers(&topic)
            .await
            .unwrap()
            .iter()
            .all(|s| s.connection_id != stale));
    }
}

#[tokio::test]
async fn an_agent_gets_its_own_accounts_events_only() {
    let (stack, app, config) = with_gateway().await;
    let (a_id, a_token) = stack.user_with_role("agent").await;
    let (_, b_token) = stack.user_with_role("agent").await;
    let a_id: Id = a_id.parse().unwrap();
    let mine = account(Id::generate(), Some(a_id));
    let accounts = shared::accounts::AccountRepo::new(
        app.dynamodb.clone(),
        config.tables.accounts.clone(),
        config.tables.activities.clone(),
    );
    accounts.create(&mine).await.unwrap().unwrap();

    // A follows `payments` and its account: one copy per message all the same.
    let mut a = subscriber(
        &stack,
        &a_token,
        &["payments".into(), format!("account:{}", mine.id)],
    )
    .await;
    let mut b = subscriber(&stack, &b_token, &["payments".into()]).await;
    let mut admin = subscriber(&stack, stack.admin(), &["payments".into()]).await;

    let (_, item) = payment(mine.id, Some(a_id), 900);
    let batch = event(&[record(config.tables.payments.as_str(), "INSERT", 1, &item)]);
    let response = notifier::handle(&app, batch.clone()).await;
    assert_eq!(failures(&response), Vec::<String>::new());
    let id = batch.records[0].event_id.as_str();
    for (who, socket) in [("agent A", &mut a), ("the admin", &mut admin)] {
        let message = next(socket, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{who} gets its account's payment"));
        assert_eq!(message["id"], id, "{who}: {message}");
    }
    assert_eq!(
        next(&mut a, Duration::from_millis(500)).await,
        None,
        "one copy"
    );
    assert_eq!(
        next(&mut b, Duration::from_millis(500)).await,
        None,
        "agent B must not see agent A's account"
    );
}

/// Answers every request with 503 and counts them: a throttled or failing management API.
async fn failing_endpoint() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), hits)
}

#[tokio::test]
async fn a_post_that_keeps_failing_reports_its_record() {
    let (endpoint, hits) = failing_endpoint().await;
    let (app, config) = bare(&endpoint).await;
    let repo = ConnectionRepo::new(app.dynamodb.clone(), config.tables.connections.clone());
    let viewer = stored_user(&app, &config, Role::Viewer).await;
    let connection = ConnectionItem::new(
        "c1=",
        &Caller {
            user_id: viewer.id,
            role: Role::Viewer,
        },
        0,
        time::OffsetDateTime::now_utc().unix_timestamp() + 900,
    )
    .with_token_version(viewer.token_version);
    repo.put_connection(&connection).await.unwrap();
    repo.subscribe(&connection, &[Topic::Payments])
        .await
        .unwrap();

    let acct = account(Id::generate(), None);
    let (_, first) = payment(acct.id, None, 100);
    let (_, second) = payment(acct.id, None, 200);
    let batch = event(&[
        record(
            config.tables.accounts.as_str(),
            "INSERT",
            10,
            &acct.to_item().unwrap(),
        ),
        record(config.tables.payments.as_str(), "INSERT", 11, &first),
        record(config.tables.payments.as_str(), "INSERT", 12, &second),
    ]);
    let response = notifier::handle(&app, batch.clone()).await;
    // The account record needed no post; the first payment's post failed: Lambda resumes there.
    assert_eq!(failures(&response), vec![format!("{:021}", 11)]);
    assert!(
        hits.load(Ordering::SeqCst) >= 3,
        "the SDK retried the post ({} attempts)",
        hits.load(Ordering::SeqCst)
    );
    // The connection is not gone: only a 410 removes it.
    assert!(repo.connection("c1=").await.unwrap().is_some());
}

/// A WebSocket connection keeps nothing of the state it had at `$connect`: a disabled user,
/// and an agent demoted to viewer (its token version moved), get no push and their
/// connections are removed and closed; a user that still qualifies gets the push. Before,
/// both kept receiving everything their old role allowed.
#[tokio::test]
async fn disabled_or_demoted_subscribers_get_nothing_and_are_closed() {
    let (stack, app, config) = with_gateway().await;
    let users = UserRepo::new(app.dynamodb.clone(), config.tables.users.clone());
    let (viewer, viewer_token) = stack.user_with_role("viewer").await;
    let (agent, agent_token) = stack.user_with_role("agent").await;
    let agent_id: Id = agent.parse().unwrap();
    let acct = account(Id::generate(), Some(agent_id));
    shared::accounts::AccountRepo::new(
        app.dynamodb.clone(),
        config.tables.accounts.clone(),
        config.tables.activities.clone(),
    )
    .create(&acct)
    .await
    .unwrap()
    .unwrap();
    let mut disabled = subscriber(&stack, &viewer_token, &["payments".into()]).await;
    let mut demoted = subscriber(
        &stack,
        &agent_token,
        &["payments".into(), format!("account:{}", acct.id)],
    )
    .await;
    let mut admin = subscriber(&stack, stack.admin(), &["payments".into()]).await;
    let connections = ConnectionRepo::new(app.dynamodb.clone(), config.tables.connections.clone());
    let before = connections.subscribers(&Topic::Payments).await.unwrap();
    let connection_of = |user: &str| {
        before
            .iter()
            .find(|s| s.user_id.to_string() == user)
            .map(|s| s.connection_id.clone())
            .unwrap()
    };
    let (disabled_conn, demoted_conn) = (connection_of(&viewer), connection_of(&agent));

    for (id, changes) in [
        (
            viewer.parse::<Id>().unwrap(),
            UserChanges {
                disabled: Some(true),
                ..Default::default()
            },
        ),
        (
            agent_id,
            UserChanges {
                role: Some(Role::Viewer),
                ..Default::default()
            },
        ),
    ] {
        let current = users.get(id).await.unwrap().unwrap();
        users.update(&current, &changes).await.unwrap();
    }

    let (_, item) = payment(acct.id, Some(agent_id), 300);
    let batch = event(&[record(config.tables.payments.as_str(), "INSERT", 1, &item)]);
    let response = notifier::handle(&app, batch.clone()).await;
    assert_eq!(failures(&response), Vec::<String>::new());
    let message = next(&mut admin, Duration::from_secs(10))
        .await
        .expect("a user that still qualifies gets the payment");
    assert_eq!(message["id"], batch.records[0].event_id.as_str());
    for (who, socket) in [
        ("the disabled viewer", &mut disabled),
        ("the demoted agent", &mut demoted),
    ] {
        assert_eq!(
            ending(socket, Duration::from_secs(10)).await,
            Ending::Closed,
            "{who}: no push, and the connection is closed"
        );
    }
    for conn in [&disabled_conn, &demoted_conn] {
        assert!(connections.connection(conn).await.unwrap().is_none());
        assert!(connections.topics_of(conn).await.unwrap().is_empty());
    }
    assert!(connections
        .subscribers(&Topic::Account(acct.id))
        .await
        .unwrap()
        .is_empty());
}
