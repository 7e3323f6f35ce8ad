//! Bulk updates end to end: the real `bulk-api` behind the local gateway, the gateway's SQS
//! event source (batch size, ReportBatchItemFailures, redrive) driving the real
//! `bulk-worker` binary, accounts created and read through `/accounts`.
//!
//! Run under `infra/stack.sh` after `cargo build --workspace --bins`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::{Stack, StackOptions};
use futures::stream::{self, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn account(reference: &str) -> Value {
    json!({
        "reference": reference,
        "debtor_name": "Bulk Debtor",
        "debtor_email": "bulk@example.com",
        "debtor_phone": "+14155550123",
        "debtor_timezone": "America/New_York",
        "currency": "USD",
        "original_balance": 50_000,
        "due_date": "2026-01-15",
        "tags": ["seed"],
    })
}

#[tokio::test]
async fn bulk_job_through_the_gateway_and_the_sqs_event_source() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let admin = stack.admin().to_owned();
    let run = ulid::Ulid::new().to_string();
    let created: Vec<String> = stream::iter(0..120)
        .map(|i| {
            let stack = &stack;
            let admin = &admin;
            let reference = format!("BULK-{run}-{i}");
            async move {
                let (status, body) = stack
                    .send("POST", "/accounts", Some(admin), Some(account(&reference)))
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
                body["id"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let missing: Vec<String> = (0..7).map(|_| ulid::Ulid::new().to_string()).collect();
    let ids: Vec<&String> = created.iter().chain(&missing).collect();

    // RBAC and bad input.
    let (_, viewer) = stack.user_with_role("viewer").await;
    let (_, agent) = stack.user_with_role("agent").await;
    let (_, manager) = stack.user_with_role("manager").await;
    let body = json!({"account_ids": ids, "changes": {"add_tags": ["e2e-bulk"]}});
    for token in [&viewer, &agent] {
        let (status, _) = stack
            .send("POST", "/bulk/accounts", Some(token), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, problem) = stack
        .send(
            "POST",
            "/bulk/accounts",
            Some(&admin),
            Some(json!({"account_ids": ["nope"], "changes": {"status": "paid"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "account_ids[0]");

    let started = Instant::now();
    let (status, accepted) = stack
        .send("POST", "/bulk/accounts", Some(&admin), Some(body))
        .await;
    println!(
        "FIGURE POST /bulk/accounts through the gateway (127 ids): {:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();

    // Poll progress until the worker (driven by the gateway's SQS event source) finishes.
    let mut progress = BTreeSet::new();
    let job = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job did not finish"
        );
        let (status, job) = stack
            .send("GET", &format!("/bulk/jobs/{job_id}"), Some(&admin), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{job}");
        progress.insert(job["processed"].as_u64().unwrap());
        if job["finished_at"].is_string() {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "FIGURE bulk job of 127 accounts end to end: {:?}, {} distinct progress values",
        started.elapsed(),
        progress.len()
    );
    assert_eq!(job["state"], "completed_with_errors", "{job}");
    assert_eq!(
        (
            job["total"].as_u64(),
            job["processed"].as_u64(),
            job["succeeded"].as_u64(),
            job["failed"].as_u64()
        ),
        (Some(127), Some(127), Some(120), Some(7)),
        "{job}"
    );

    let (_, failures) = stack
        .send(
            "GET",
            &format!("/bulk/jobs/{job_id}/failures?limit=100"),
            Some(&admin),
            None,
        )
        .await;
    let failed: BTreeSet<String> = failures["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["reason"], "not_found");
            f["account_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(failed, missing.iter().cloned().collect());

    for id in created.iter().take(30) {
        let (status, account) = stack
            .send("GET", &format!("/accounts/{id}"), Some(&admin), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(account["version"], 2, "{account}");
        assert_eq!(account["tags"], json!(["e2e-bulk", "seed"]));
    }

    // Lists: the admin sees the job; a manager sees only its own (none); cancel of a
    // finished job is a 409.
    let (_, list) = stack.send("GET", "/bulk/jobs", Some(&admin), None).await;
    assert_eq!(list["items"][0]["id"], job_id.as_str());
    let (_, list) = stack.send("GET", "/bulk/jobs", Some(&manager), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let (status, _) = stack
        .send("GET", &format!("/bulk/jobs/{job_id}"), Some(&manager), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = stack
        .send(
            "POST",
            &format!("/bulk/jobs/{job_id}/cancel"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}
