//! What each route costs in DynamoDB: a tour of the API's routes through the whole local
//! stack, then, per route, the DynamoDB calls per request and the read and write units they
//! consumed (means), from the requests' own log lines (the call recorder's figures).
//!
//! `make capacity` (under `infra/stack.sh`, after `cargo build --workspace --bins`). DynamoDB
//! Local reports consumed capacity as DynamoDB computes it (item size, GSIs, transactions
//! doubled), which is what the load and cost figures build on.

use std::collections::BTreeMap;

use e2e::{account_body, Stack, StackOptions};
use serde_json::{json, Value};

/// Each route of the tour is exercised this many times.
const ROUNDS: usize = 5;

#[tokio::main]
async fn main() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let (_, agent) = stack.user_with_role("agent").await;
    let admin = stack.admin().to_owned();
    for round in 0..ROUNDS {
        let (_, login) = stack.login(e2e::ADMIN_EMAIL, e2e::ADMIN_PASSWORD).await;
        let refresh = login["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        stack
            .send(
                "POST",
                "/auth/refresh",
                None,
                Some(json!({ "refresh_token": refresh })),
            )
            .await;
        stack.send("GET", "/auth/me", Some(&admin), None).await;
        let account = stack.create_account(account_body("CAP", 100_000)).await;
        let id = account["id"].as_str().unwrap_or_default().to_owned();
        stack
            .send("GET", &format!("/accounts/{id}"), Some(&admin), None)
            .await;
        stack
            .send("GET", "/accounts?limit=25", Some(&admin), None)
            .await;
        stack
            .send(
                "GET",
                "/accounts?status=active&limit=25",
                Some(&admin),
                None,
            )
            .await;
        stack
            .send(
                "PATCH",
                &format!("/accounts/{id}"),
                Some(&admin),
                Some(json!({ "debtor_name": format!("Dana Debtor {round}") })),
            )
            .await;
        let payment: Value = stack
            .pay_request(&id, 1_000)
            .send()
            .await
            .expect("the payment is answered")
            .json()
            .await
            .unwrap_or(Value::Null);
        stack
            .send(
                "GET",
                &format!("/accounts/{id}/payments"),
                Some(&admin),
                None,
            )
            .await;
        if let Some(pid) = payment["id"].as_str() {
            stack
                .send(
                    "PATCH",
                    &format!("/accounts/{id}/payments/{pid}"),
                    Some(&admin),
                    Some(json!({ "status": "refunded" })),
                )
                .await;
        }
        stack
            .send(
                "POST",
                &format!("/accounts/{id}/activities"),
                Some(&admin),
                Some(json!({ "type": "note", "note": "called back later" })),
            )
            .await;
        stack
            .send(
                "GET",
                &format!("/accounts/{id}/activities"),
                Some(&admin),
                None,
            )
            .await;
        stack
            .send("GET", "/dashboard/summary", Some(&admin), None)
            .await;
        stack.send("GET", "/accounts", Some(&agent), None).await;
        stack
            .send(
                "POST",
                "/bulk/accounts",
                Some(&admin),
                Some(json!({ "account_ids": [id], "changes": { "tags": ["capacity"] } })),
            )
            .await;
        stack.send("GET", "/bulk/jobs", Some(&admin), None).await;
        stack.send("GET", "/health/ready", None, None).await;
    }

    #[derive(Default)]
    struct Route {
        requests: f64,
        calls: f64,
        read_units: f64,
        write_units: f64,
    }
    let mut routes: BTreeMap<String, Route> = BTreeMap::new();
    for (_, line) in stack.log_records() {
        if line["message"] != "request" {
            continue;
        }
        let route = routes
            .entry(line["route"].as_str().unwrap_or("?").to_owned())
            .or_default();
        route.requests += 1.0;
        route.calls += line["dynamodb_calls"].as_f64().unwrap_or(0.0);
        route.read_units += line["dynamodb_read_units"].as_f64().unwrap_or(0.0);
        route.write_units += line["dynamodb_write_units"].as_f64().unwrap_or(0.0);
    }
    println!("| route | requests | DynamoDB calls / request | RCU / request | WCU / request |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, r) in &routes {
        println!(
            "| `{name}` | {} | {:.2} | {:.2} | {:.2} |",
            r.requests,
            r.calls / r.requests,
            r.read_units / r.requests,
            r.write_units / r.requests
        );
    }
}
