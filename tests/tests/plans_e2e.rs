//! Payment plans end to end: the real binaries behind the local gateway with the stream
//! event sources (run under `infra/stack.sh` after `cargo build --workspace --bins`): a plan
//! made over HTTP, a payment applied to it, `plan.changed` on the account's topic, and the
//! dashboard's plan counts from the Plans stream.

use std::time::Duration;

use e2e::{account_body, wait_until, Stack, StackOptions};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_plan_through_the_gateway_is_pushed_and_counted() {
    let s = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let admin = s.admin().to_owned();
    let account = s.create_account(account_body("PLAN", 30_000)).await;
    let id = account["id"].as_str().unwrap().to_owned();

    let (_sink, mut stream) = s
        .subscribe(&admin, &[&format!("account:{id}")])
        .await
        .unwrap();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let collected = received.clone();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = stream.next().await {
            if let Message::Text(text) = frame {
                if let Ok(value) = serde_json::from_str::<Value>(text.as_str()) {
                    collected.lock().unwrap().push(value);
                }
            }
        }
    });
    wait_until(Duration::from_secs(10), "subscribed", || {
        let received = received.clone();
        async move {
            received
                .lock()
                .unwrap()
                .iter()
                .any(|m| m["type"] == "subscribed")
        }
    })
    .await;

    let first = (time::OffsetDateTime::now_utc().date() + time::Duration::days(3)).to_string();
    let (status, plan) = s
        .send(
            "POST",
            &format!("/accounts/{id}/plans"),
            Some(&admin),
            Some(json!({"frequency": "biweekly", "first_due_date": first, "installment_count": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plan}");
    assert_eq!(plan["installments"][1]["amount"], 10_000);
    let (status, account) = s
        .send("GET", &format!("/accounts/{id}"), Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["status"], "payment_plan");

    let response = s.pay_request(&id, 12_000).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let (status, plans) = s
        .send("GET", &format!("/accounts/{id}/plans"), Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{plans}");
    let statuses: Vec<&str> = plans["items"][0]["installments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["paid", "partly_paid", "due"]);

    // The creation and the payment, each a plan.changed on the account's topic.
    wait_until(
        Duration::from_secs(20),
        "plan.changed of the creation and the payment",
        || {
            let received = received.clone();
            async move {
                let received = received.lock().unwrap();
                let paid = |amount: i64| {
                    received
                        .iter()
                        .any(|m| m["type"] == "plan.changed" && m["data"]["paid_amount"] == amount)
                };
                paid(0) && paid(12_000)
            }
        },
    )
    .await;

    // Cancelled: the dashboard counts it from the Plans stream.
    let etag = format!("\"{}\"", plans["items"][0]["version"]);
    let response = s
        .request(
            "POST",
            &format!(
                "/accounts/{id}/plans/{}/cancel",
                plan["id"].as_str().unwrap()
            ),
            Some(&admin),
            None,
        )
        .header("if-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    wait_until(
        Duration::from_secs(20),
        "the cancelled plan counted",
        || {
            let s = &s;
            let admin = admin.clone();
            async move {
                let (_, summary) = s
                    .send("GET", "/dashboard/summary", Some(&admin), None)
                    .await;
                summary["today"]["plans"]["cancelled"] == 1 && summary["plans_active"] == 0
            }
        },
    )
    .await;
}
