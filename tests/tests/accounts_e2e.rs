//! Accounts end to end: real tokens, the real `accounts` binary behind the local gateway
//! (several instances at once). Run under `infra/stack.sh` after `cargo build --workspace --bins`.

use e2e::{Stack, StackOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn account(reference: &str) -> Value {
    json!({
        "reference": reference,
        "debtor_name": "Zoë Brontë",
        "debtor_email": "zoe@example.com",
        "debtor_phone": "+442071838750",
        "debtor_timezone": "Europe/London",
        "currency": "GBP",
        "original_balance": 125_000,
        "due_date": "2026-01-15",
    })
}

#[tokio::test]
async fn accounts_through_the_gateway() {
    let stack = Stack::start(StackOptions::default()).await;
    let admin = stack.admin().to_owned();
    let reference = format!("E2E-{}", ulid::Ulid::new());

    // No token: 401; viewer: may read, not write.
    let (status, _) = stack.send("GET", "/accounts", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, viewer) = stack.user_with_role("viewer").await;
    let (status, _) = stack
        .send(
            "POST",
            "/accounts",
            Some(&viewer),
            Some(account("E2E-VIEWER")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, created) = stack
        .send("POST", "/accounts", Some(&admin), Some(account(&reference)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, _) = stack
        .send("POST", "/accounts", Some(&admin), Some(account(&reference)))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let response = stack
        .request("GET", &format!("/accounts/{id}"), Some(&viewer), None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    // "<version>-<days_past_due>": the aging is part of what the tag covers.
    assert!(etag.starts_with("\"1-"), "{etag}");

    // PATCH without If-Match: 428.
    let (status, _) = stack
        .send(
            "PATCH",
            &format!("/accounts/{id}"),
            Some(&admin),
            Some(json!({"tags": ["x"]})),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);

    // 8 concurrent PATCHes with the same If-Match, served by parallel instances: one wins.
    let patches = (0..8).map(|i| {
        stack
            .request(
                "PATCH",
                &format!("/accounts/{id}"),
                Some(&admin),
                Some(json!({"tags": [format!("race-{i}")]})),
            )
            .header("if-match", &etag)
            .send()
    });
    let answers = futures::future::join_all(patches).await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        7,
        "{statuses:?}"
    );

    // A forged cursor is a 400 problem naming it.
    let (status, problem) = stack
        .send("GET", "/accounts?cursor=abc.def", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["errors"][0]["field"], "cursor");
    let (status, page) = stack
        .send("GET", "/accounts?q=zoe%20bron&limit=5", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == id.as_str()));

    // An agent sees only its own accounts.
    let (agent_id, agent) = stack.user_with_role("agent").await;
    let (status, page) = stack.send("GET", "/accounts", Some(&agent), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"], json!([]));
    let (status, _) = stack
        .send("GET", &format!("/accounts/{id}"), Some(&agent), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = stack
        .request(
            "PATCH",
            &format!("/accounts/{id}"),
            Some(&admin),
            Some(json!({"assigned_agent_id": agent_id})),
        )
        .header("if-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, page) = stack.send("GET", "/accounts", Some(&agent), None).await;
    assert_eq!(page["items"][0]["id"], id.as_str());

    // Soft delete.
    let (status, _) = stack
        .send("DELETE", &format!("/accounts/{id}"), Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = stack
        .send("GET", &format!("/accounts/{id}"), Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    stack.gateway.shutdown().await;
}
