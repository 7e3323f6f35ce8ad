//! What each route costs in DynamoDB: a tour of the API's routes through the whole local
//! stack, then, per route, the DynamoDB calls per request and the read and write units they
//! consumed (means), from the requests' own log lines (the call recorder's figures).
//!
//! `make capacity` (under `infra/stack.sh`, after `cargo build --workspace --bins`). DynamoDB
//! Local reports consumed capacity as DynamoDB computes it (item size, GSIs, transactions
//! doubled), which is what the load and cost figures build on. First it prints the log
//! bytes per API request, per function (every line each function wrote, workers and
//! platform lines included, as CloudWatch Logs would ingest them).

use std::collections::BTreeMap;

use e2e::{account_body, Stack, StackOptions};
use serde_json::{json, Value};

/// Each route of the tour is exercised this many times.
const ROUNDS: usize = 5;

/// Sends a request the tour built with headers of its own.
async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.expect("the stack answers")
}

/// Log bytes per API request of the tour, per function and in all (each line counted
/// without the local gateway's `[name] ` prefix, with its newline).
fn print_log_bytes(lines: &[String], requests: f64) {
    let mut bytes: BTreeMap<String, f64> = BTreeMap::new();
    for line in lines {
        let (name, rest) = line
            .strip_prefix('[')
            .and_then(|l| l.split_once("] "))
            .unwrap_or(("?", line));
        *bytes.entry(name.to_owned()).or_default() += (rest.len() + 1) as f64;
    }
    let total: f64 = bytes.values().sum();
    println!(
        "Log bytes per API request ({requests} requests): {:.0}",
        total / requests
    );
    for (name, b) in &bytes {
        println!("- {name}: {:.0}", b / requests);
    }
    println!();
}

#[tokio::main]
async fn main() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let (_, agent) = stack.user_with_role("agent").await;
    let admin = stack.admin().to_owned();
    for round in 0..ROUNDS {
        let (_, login) = stack.login(e2e::ADMIN_EMAIL, e2e::ADMIN_PASSWORD).await;
        let refresh = login["refresh_token"].as_str().unwrap_or_default();
        let body = json!({ "refresh_token": refresh });
        stack.send("POST", "/auth/refresh", None, Some(body)).await;
        stack.send("GET", "/auth/me", Some(&admin), None).await;
        let account = stack.create_account(account_body("CAP", 100_000)).await;
        let id = account["id"].as_str().unwrap_or_default().to_owned();
        let path = format!("/accounts/{id}");
        let read = send(stack.request("GET", &path, Some(&admin), None)).await;
        let etag = read
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("*")
            .to_owned();
        // A revalidation: the 304 a client holding the ETag gets.
        let revalidate = stack.request("GET", &path, Some(&admin), None);
        send(revalidate.header("if-none-match", &etag)).await;
        for list in ["/accounts?limit=25", "/accounts?status=active&limit=25"] {
            stack.send("GET", list, Some(&admin), None).await;
        }
        stack.send("GET", "/accounts", Some(&agent), None).await;
        let change = json!({ "debtor_name": format!("Dana Debtor {round}") });
        let patch = stack.request("PATCH", &path, Some(&admin), Some(change));
        send(patch.header("if-match", &etag)).await;

        let payment: Value = send(stack.pay_request(&id, 1_000))
            .await
            .json()
            .await
            .unwrap_or(Value::Null);
        let payments = format!("{path}/payments");
        stack.send("GET", &payments, Some(&admin), None).await;
        if let Some(pid) = payment["id"].as_str() {
            let refund = json!({ "status": "refunded" });
            let patch = stack.request(
                "PATCH",
                &format!("{payments}/{pid}"),
                Some(&admin),
                Some(refund),
            );
            send(patch.header("if-match", format!("\"{}\"", payment["version"]))).await;
        }
        let activities = format!("{path}/activities");
        let note = json!({ "type": "note", "note": "called back later" });
        stack
            .send("POST", &activities, Some(&admin), Some(note))
            .await;
        stack.send("GET", &activities, Some(&admin), None).await;
        stack
            .send("GET", "/dashboard/summary", Some(&admin), None)
            .await;
        let job = json!({ "account_ids": [id], "changes": { "add_tags": ["capacity"] } });
        stack
            .send("POST", "/bulk/accounts", Some(&admin), Some(job))
            .await;
        stack.send("GET", "/bulk/jobs", Some(&admin), None).await;
        stack.send("GET", "/health/ready", None, None).await;
    }

    #[derive(Default)]
    struct Route {
        statuses: BTreeMap<u64, u32>,
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
        *route
            .statuses
            .entry(line["status"].as_u64().unwrap_or(0))
            .or_default() += 1;
        route.calls += line["dynamodb_calls"].as_f64().unwrap_or(0.0);
        route.read_units += line["dynamodb_read_units"].as_f64().unwrap_or(0.0);
        route.write_units += line["dynamodb_write_units"].as_f64().unwrap_or(0.0);
    }
    print_log_bytes(
        &stack.log_lines(),
        routes.values().map(|r| r.requests).sum(),
    );
    println!(
        "| route | requests (status) | DynamoDB calls / request | RCU / request | WCU / request |"
    );
    println!("| --- | --- | ---: | ---: | ---: |");
    for (name, r) in &routes {
        println!(
            "| `{name}` | {} | {:.2} | {:.2} | {:.2} |",
            r.statuses
                .iter()
                .map(|(status, n)| format!("{n}× {status}"))
                .collect::<Vec<_>>()
                .join(", "),
            r.calls / r.requests,
            r.read_units / r.requests,
            r.write_units / r.requests
        );
    }
}
