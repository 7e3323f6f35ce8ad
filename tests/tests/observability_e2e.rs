//! Observability end to end: what the real functions write on stdout, captured by the local
//! gateway as CloudWatch Logs would receive it. Each request's line is its log line and its
//! EMF record; every DynamoDB call it made shows up per table and operation, with the
//! capacity DynamoDB reports; business metrics carry their dimensions.

use e2e::{account_body, Stack, StackOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::metrics::names;

/// The request lines (`message: "request"`) of `route`.
fn request_lines(stack: &Stack, route: &str) -> Vec<Value> {
    stack
        .log_records()
        .into_iter()
        .map(|(_, record)| record)
        .filter(|r| r["message"] == "request" && r["route"] == route)
        .collect()
}

/// The EMF records that carry `metric`.
fn records_with(stack: &Stack, metric: &str) -> Vec<Value> {
    stack
        .log_records()
        .into_iter()
        .map(|(_, record)| record)
        .filter(|r| {
            r["_aws"]["CloudWatchMetrics"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|d| d["Metrics"].as_array().into_iter().flatten())
                .any(|m| m["Name"] == metric)
        })
        .collect()
}

#[tokio::test]
async fn each_request_writes_one_emf_line_with_its_dynamodb_calls() {
    let stack = Stack::start(StackOptions::unthrottled()).await;
    let account = stack.create_account(account_body("OBS", 10_000)).await;
    let id = account["id"].as_str().unwrap();
    let (status, _) = stack
        .send("GET", &format!("/accounts/{id}"), Some(stack.admin()), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = stack
        .send("GET", "/accounts/not-an-id", Some(stack.admin()), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let lines = request_lines(&stack, "GET /accounts/{id}");
    assert_eq!(lines.len(), 2, "one line per request: {lines:?}");
    let ok = lines.iter().find(|l| l["status"] == 200).expect("the 200");
    let directive = &ok["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], names::NAMESPACE);
    assert_eq!(
        directive["Dimensions"],
        json!([["Function", "Route"], ["Function"], []])
    );
    assert_eq!(ok["Function"], "accounts");
    assert_eq!(ok["ApiRequests"], 1.0);
    assert_eq!(ok["Api4xx"], 0.0);
    assert_eq!(ok["Api5xx"], 0.0);
    assert!(ok["ApiLatency"].as_f64().unwrap() > 0.0);
    assert!(ok["request_id"].is_string());
    // The account read, and the caller's user on a cache miss.
    let calls = ok["dynamodb_calls"].as_u64().unwrap();
    assert!(calls >= 1, "{ok}");
    assert_eq!(ok["RequestDynamoDbCalls"].as_f64().unwrap() as u64, calls);
    assert!(ok["dynamodb_read_units"].as_f64().unwrap() > 0.0, "{ok}");
    assert_eq!(ok["dynamodb_write_units"], 0.0);
    // The time in DynamoDB, which the benchmarks subtract to get ours: within the request's.
    let in_dynamodb = ok["dynamodb_ms"].as_f64().unwrap();
    assert!(
        in_dynamodb > 0.0 && in_dynamodb <= ok["duration_ms"].as_f64().unwrap(),
        "{ok}"
    );

    let bad = lines.iter().find(|l| l["status"] == 400).expect("the 400");
    assert_eq!(bad["Api4xx"], 1.0);
    // A bad id is refused before the account is read. The caller is authenticated first
    // (a stranger gets 401, not 400), and that may read their user: the gateway, like
    // Lambda, hands a request to a second instance (whose user cache is empty) when the
    // first has not yet asked for its next event. That one call then shares the line.
    match bad["dynamodb_calls"].as_u64().unwrap() {
        0 => assert_eq!(bad["dynamodb_ms"], 0.0, "{bad}"),
        1 => {
            let users_table = format!("{}UsersTable", stack.prefix);
            assert_eq!(bad["Table"], users_table.as_str(), "{bad}");
            assert_eq!(bad["Operation"], "GetItem", "{bad}");
        }
        calls => panic!("a bad id made {calls} DynamoDB calls: {bad}"),
    }

    // The account read as a DynamoDB record: its table, its operation, its capacity.
    let accounts_table = format!("{}AccountsTable", stack.prefix);
    let gets: Vec<Value> = records_with(&stack, "DynamoDbCalls")
        .into_iter()
        .filter(|r| r["Operation"] == "GetItem" && r["Table"] == accounts_table.as_str())
        .collect();
    assert!(!gets.is_empty(), "no GetItem on {accounts_table}");
    assert!(gets.iter().any(|r| r["DynamoDbReadUnits"].is_number()));
}

#[tokio::test]
async fn the_response_names_the_request_its_log_line_tells_of() {
    let stack = Stack::start(StackOptions::unthrottled()).await;
    let response = stack
        .http
        .get(format!("{}/health", stack.base))
        .send()
        .await
        .unwrap();
    // As API Gateway does: `apigw-requestid` is the id the function logged the request by.
    let request_id = response.headers()["apigw-requestid"]
        .to_str()
        .unwrap()
        .to_owned();
    let lines = request_lines(&stack, "GET /health");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["request_id"], request_id.as_str());
    let timings = local_gateway::request_log::request_timings(&stack.log_lines());
    assert_eq!(timings[&request_id].dynamodb_calls, 0);
}

#[tokio::test]
async fn conditional_failures_are_counted_apart_from_errors() {
    let stack = Stack::start(StackOptions::unthrottled()).await;
    let body = account_body("OBS", 5_000);
    stack.create_account(body.clone()).await;
    // The same reference again: the reference claim's condition refuses it.
    let refused = stack.try_create_account(body).await;
    assert!(refused.unwrap_err().contains("409"));
    let conditional = records_with(&stack, "DynamoDbConditionalFailures");
    assert!(
        !conditional.is_empty(),
        "the refused claim is a conditional failure"
    );
    assert!(records_with(&stack, "DynamoDbErrors").is_empty());
}

#[tokio::test]
async fn business_metrics_carry_their_dimensions() {
    let stack = Stack::start(StackOptions::unthrottled()).await;
    let account = stack.create_account(account_body("OBS", 10_000)).await;
    let id = account["id"].as_str().unwrap();
    let key = ulid::Ulid::new().to_string();
    for _ in 0..2 {
        let response = stack
            .request(
                "POST",
                &format!("/accounts/{id}/payments"),
                Some(stack.admin()),
                Some(json!({"amount": 1250, "currency": "USD", "method": "card"})),
            )
            .header("idempotency-key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let recorded = records_with(&stack, "PaymentsRecorded");
    assert_eq!(recorded.len(), 1, "the retry is a replay, not a payment");
    assert_eq!(recorded[0]["Currency"], "USD");
    let amounts = records_with(&stack, "PaymentAmount");
    assert_eq!(amounts.len(), 1);
    assert_eq!(amounts[0]["Currency"], "USD");
    assert_eq!(amounts[0]["PaymentAmount"], 1250.0);
    assert_eq!(records_with(&stack, "IdempotentReplays").len(), 1);

    let note = json!({"type": "note", "note": "left a message"});
    let path = format!("/accounts/{id}/activities");
    let (status, _) = stack
        .send("POST", &path, Some(stack.admin()), Some(note))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let logged = records_with(&stack, "ActivitiesLogged");
    assert!(
        logged.iter().any(|r| r["ActivityType"] == "note"),
        "{logged:?}"
    );

    // A wrong password, then the login rate limit's and lockout's counters stay at zero.
    let (status, _) = stack
        .login(e2e::ADMIN_EMAIL, "not the password at all")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(records_with(&stack, "LoginsLockedOut").is_empty());
}
