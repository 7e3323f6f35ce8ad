//! Payments end to end: the real `payments`, `accounts`, `auth` and `users` binaries behind
//! the local gateway (run under `infra/stack.sh` after `cargo build --workspace --bins`).
//!
//! The race runs through the gateway, so the 50 requests are served by parallel function
//! instances (separate processes), each with its own DynamoDB client: only the conditional
//! transaction keeps the balance right.

use e2e::{account_body, Stack, StackOptions};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn stack() -> Stack {
    Stack::start(StackOptions::unthrottled()).await
}

/// Creates an account through the API (as the admin); answers it.
async fn account(s: &Stack, balance: i64, agent: Option<&str>) -> Value {
    let mut body = account_body("E2E", balance);
    body["assigned_agent_id"] = json!(agent);
    s.create_account(body).await
}

async fn pay(
    s: &Stack,
    token: &str,
    account: &str,
    body: Value,
    key: Option<&str>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut req = s.request(
        "POST",
        &format!("/accounts/{account}/payments"),
        Some(token),
        Some(body),
    );
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let response = req.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        response.json::<Value>().await.unwrap_or(Value::Null),
        headers,
    )
}

async fn get_account(s: &Stack, id: &str) -> Value {
    let (status, body) = s
        .send("GET", &format!("/accounts/{id}"), Some(s.admin()), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn key() -> String {
    format!("e2e-{}", ulid::Ulid::new())
}

#[tokio::test]
async fn payments_through_the_gateway() {
    let s = stack().await;
    let admin = s.admin().to_owned();
    let card = |amount: i64| json!({"amount": amount, "currency": "USD", "method": "card"});

    // 50 concurrent payments of 100 on a balance of 3,000: exactly 30 accepted.
    let acct = account(&s, 3_000, None).await;
    let id = acct["id"].as_str().unwrap().to_owned();
    let keys: Vec<String> = (0..50).map(|_| key()).collect();
    let answers = join_all(
        keys.iter()
            .map(|k| pay(&s, &admin, &id, card(100), Some(k))),
    )
    .await;
    let mut accepted = 0;
    for (status, body, _) in &answers {
        match *status {
            StatusCode::CREATED => accepted += 1,
            StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {}
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(accepted, 30);
    let pool = s
        .gateway
        .pool("PaymentsFunction")
        .expect("the payments function");
    assert!(
        pool.instances() > 1,
        "the race ran on {} instance(s)",
        pool.instances()
    );
    let stored = get_account(&s, &id).await;
    assert_eq!(stored["balance"], 0);
    assert_eq!(stored["status"], "paid");
    let (_, history) = s
        .send(
            "GET",
            &format!("/accounts/{id}/payments?limit=100&status=completed"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(history["items"].as_array().unwrap().len(), 30);

    // 20 concurrent retries with one key: one payment; the same key with another body: 422.
    let acct = account(&s, 10_000, None).await;
    let id = acct["id"].as_str().unwrap().to_owned();
    let k = key();
    let answers = join_all((0..20).map(|_| pay(&s, &admin, &id, card(700), Some(&k)))).await;
    let mut payment_ids = std::collections::BTreeSet::new();
    for (status, body, _) in &answers {
        match *status {
            StatusCode::CREATED => {
                payment_ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => {}
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(payment_ids.len(), 1);
    let (status, replay, headers) = pay(&s, &admin, &id, card(700), Some(&k)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        replay["id"].as_str().unwrap(),
        payment_ids.iter().next().unwrap()
    );
    assert_eq!(headers["idempotent-replayed"], "true");
    let (status, body, _) = pay(&s, &admin, &id, card(701), Some(&k)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(get_account(&s, &id).await["balance"], 9_300);

    // Bad amounts, currency, method, missing key: problems, nothing written.
    for body in [
        card(0),
        card(-5),
        json!({"amount": 10.5, "currency": "USD", "method": "card"}),
        card(1_000_000_000),
        json!({"amount": 100, "currency": "EUR", "method": "card"}),
        json!({"amount": 100, "currency": "USD", "method": "barter"}),
    ] {
        let (status, problem, headers) = pay(&s, &admin, &id, body.clone(), Some(&key())).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(problem["status"], status.as_u16());
    }
    let (status, _, _) = pay(&s, &admin, &id, card(100), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let after = get_account(&s, &id).await;
    assert_eq!(
        (after["balance"].as_i64(), after["version"].as_i64()),
        (Some(9_300), Some(2))
    );

    // Refund puts the balance back and reopens a paid account; refunded → completed is a 409.
    let acct = account(&s, 800, None).await;
    let id = acct["id"].as_str().unwrap().to_owned();
    let (status, payment, headers) = pay(&s, &admin, &id, card(800), Some(&key())).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(get_account(&s, &id).await["status"], "paid");
    let pid = payment["id"].as_str().unwrap();
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let response = s
        .request(
            "PATCH",
            &format!("/accounts/{id}/payments/{pid}"),
            Some(&admin),
            Some(json!({"status": "refunded"})),
        )
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let reopened = get_account(&s, &id).await;
    assert_eq!(
        (reopened["balance"].as_i64(), reopened["status"].as_str()),
        (Some(800), Some("active"))
    );
    let response = s
        .request(
            "PATCH",
            &format!("/accounts/{id}/payments/{pid}"),
            Some(&admin),
            Some(json!({"status": "completed"})),
        )
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(get_account(&s, &id).await["balance"], 800);

    // The timeline holds the payment activities, newest first.
    let (status, timeline) = s
        .send(
            "GET",
            &format!("/accounts/{id}/activities?type=payment"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    let notes: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["note"].as_str().unwrap())
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("completed → refunded"), "{notes:?}");
    assert!(notes[1].contains("recorded (completed)"), "{notes:?}");

    // Viewers read, never write; agents only their own accounts.
    let (_, viewer) = s.user_with_role("viewer").await;
    let (status, _, _) = pay(&s, &viewer, &id, card(1), Some(&key())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .send(
            "GET",
            &format!("/accounts/{id}/payments"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, agent) = s.user_with_role("agent").await;
    let (status, _, _) = pay(&s, &agent, &id, card(1), Some(&key())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
