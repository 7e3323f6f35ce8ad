//! The WebSocket API through the local gateway, as `make run` serves it: `$connect` refuses
//! the upgrade without a valid access token, `subscribe` is answered on the socket, an
//! unknown action gets an error message and the socket stays open.

use std::time::Duration;

use e2e::{wait_until, Socket, Stack, StackOptions};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shared::auth::Role;
use shared::config::TableName;
use shared::realtime::{ConnectionRepo, Topic};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Sends `body` and waits for the one text answer.
async fn ask(socket: &mut Socket, body: Value) -> Value {
    socket
        .send(Message::Text(body.to_string().into()))
        .await
        .expect("the socket takes a message");
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("an answer within 20 s")
            .expect("the socket is open")
            .expect("a frame");
        match next {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn refused_status(result: Result<(Socket, impl std::fmt::Debug), WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

#[tokio::test]
async fn connect_subscribe_and_unknown_actions_through_the_gateway() {
    let stack = Stack::start(StackOptions::default()).await;
    let ws = format!("ws://{}", stack.gateway.ws_addr());

    // No token, a bad token: the upgrade is refused with 401.
    assert_eq!(refused_status(connect_async(format!("{ws}/")).await), 401);
    assert_eq!(
        refused_status(connect_async(format!("{ws}/?token=not.a.token")).await),
        401
    );

    // A viewer connects and subscribes.
    let (viewer_id, viewer) = stack.user_with_role("viewer").await;
    let (mut socket, response) = connect_async(format!("{ws}/?token={viewer}"))
        .await
        .expect("the upgrade is accepted with a valid token");
    assert_eq!(response.status().as_u16(), 101);

    // A browser puts the token in `Sec-WebSocket-Protocol` next to a protocol name; the
    // handshake echoes the protocol (a browser fails one that echoes nothing).
    let mut request = format!("{ws}/").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("bearer, {viewer}").parse().unwrap(),
    );
    let (_browser, response) = connect_async(request)
        .await
        .expect("the upgrade is accepted with the token as a protocol");
    assert_eq!(response.headers()["sec-websocket-protocol"], "bearer");

    let answer = ask(
        &mut socket,
        json!({"action": "subscribe", "topics": ["payments", "dashboard"]}),
    )
    .await;
    assert_eq!(
        answer,
        json!({"type": "subscribed", "data": {"topics": ["payments", "dashboard"]}})
    );

    // Forbidden and unknown topics are answered, not disconnected.
    let answer = ask(
        &mut socket,
        json!({"action": "subscribe", "topics": [format!("job:{}", ulid::Ulid::new())]}),
    )
    .await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["data"]["code"], "forbidden");
    let answer = ask(
        &mut socket,
        json!({"action": "subscribe", "topics": ["weather"]}),
    )
    .await;
    assert_eq!(answer["data"]["code"], "unknown_topic", "{answer}");

    // An unknown action goes to $default: an error naming it, and the socket stays open.
    let answer = ask(&mut socket, json!({"action": "dance", "topics": []})).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["data"]["code"], "unknown_action");
    assert!(answer["data"]["message"]
        .as_str()
        .unwrap()
        .contains("dance"));

    let answer = ask(
        &mut socket,
        json!({"action": "unsubscribe", "topics": ["dashboard"]}),
    )
    .await;
    assert_eq!(
        answer,
        json!({"type": "unsubscribed", "data": {"topics": ["dashboard"]}})
    );

    // What the notifier will Query: the subscription by topic, with the user and role.
    let env = stack.gateway.env().clone();
    let table = TableName::new(env.get("CONNECTIONS_TABLE").cloned().unwrap());
    let sdk = shared::clients::sdk_config().await;
    let repo = ConnectionRepo::new(shared::clients::Clients::new(&sdk).dynamodb, table);
    let subscription = repo
        .subscribers(&Topic::Payments)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.user_id.to_string() == viewer_id)
        .expect("the viewer's payments subscription");
    assert_eq!(subscription.role, Role::Viewer);
    let connection = subscription.connection_id;
    assert_eq!(
        repo.topics_of(&connection).await.unwrap(),
        vec![Topic::Payments]
    );
    assert!(repo.connection(&connection).await.unwrap().is_some());

    // Closing runs $disconnect: the connection and its subscriptions go.
    socket.close(None).await.expect("a clean close");
    let (repo, connection) = (&repo, &connection);
    wait_until(
        Duration::from_secs(10),
        "$disconnect did not clean up within 10 s",
        || async move {
            repo.connection(connection).await.unwrap().is_none()
                && repo.topics_of(connection).await.unwrap().is_empty()
                && repo
                    .subscribers(&Topic::Payments)
                    .await
                    .unwrap()
                    .iter()
                    .all(|s| s.connection_id != *connection)
        },
    )
    .await;
}
