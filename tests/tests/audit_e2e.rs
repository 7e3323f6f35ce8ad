//! The audit trail end to end (issue 18), through the local gateway with its stream event
//! sources: a PATCH, a payment, a refund, a bulk change and a scheduler change each appear
//! once, with the right actor and diff; who may read what; bad filters; no secret in any
//! entry. (A redelivered batch is `functions/audit-writer/tests`'s.)

use std::time::Duration;

use e2e::{account_body, wait_until, Stack, StackOptions, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// How long the stream → writer path may take.
const BOUND: Duration = Duration::from_secs(30);

/// The account's trail as the admin reads it (every page).
async fn trail(stack: &Stack, subject: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/audit?entity={subject}&limit=100");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = stack.send("GET", &path, Some(stack.admin()), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// Waits until `subject`'s trail has an entry `matches` accepts; answers every such entry
/// after a short settle (so a duplicate would show).
async fn entries_where(
    stack: &Stack,
    subject: &str,
    what: &str,
    matches: impl Fn(&Value) -> bool + Copy,
) -> Vec<Value> {
    wait_until(BOUND, what, || async move {
        trail(stack, subject).await.iter().any(matches)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    trail(stack, subject)
        .await
        .into_iter()
        .filter(matches)
        .collect()
}

fn change<'a>(entry: &'a Value, field: &str) -> Option<&'a Value> {
    entry["changes"]
        .as_array()?
        .iter()
        .find(|c| c["field"] == field)
}

async fn etag(stack: &Stack, path: &str) -> String {
    let response = stack
        .request("GET", path, Some(stack.admin()), None)
        .send()
        .await
        .unwrap();
    response.headers()["etag"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_kind_of_change_is_audited_once_with_its_actor() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let admin = stack.admin().to_owned();
    let (manager_id, manager) = stack.user_with_role("manager").await;
    let (_, agent) = stack.user_with_role("agent").await;
    let (_, viewer) = stack.user_with_role("viewer").await;
    let (_, me) = stack.send("GET", "/auth/me", Some(&admin), None).await;
    let admin_id = me["id"].as_str().unwrap().to_owned();

    // 33 days past due (in the aging job's window of the 31-day boundary): bucket 31-60.
    let due = (time::OffsetDateTime::now_utc().date() - time::Duration::days(33)).to_string();
    let mut body = account_body("AUDIT", 10_000);
    body["due_date"] = json!(due);
    let account = stack.create_account(body).await;
    let id = account["id"].as_str().unwrap().to_owned();
    let subject = format!("account:{id}");

    // A manager's PATCH.
    let tag = etag(&stack, &format!("/accounts/{id}")).await;
    let response = stack
        .request(
            "PATCH",
            &format!("/accounts/{id}"),
            Some(&manager),
            Some(json!({"debtor_name": "Dana Audited"})),
        )
        .header("if-match", tag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let patches = entries_where(&stack, &subject, "the PATCH's entry", |e| {
        e["action"] == "update" && change(e, "debtor_name").is_some()
    })
    .await;
    assert_eq!(patches.len(), 1, "{patches:#?}");
    let patch = &patches[0];
    assert_eq!(patch["action"], "update");
    assert_eq!(patch["entity"], subject);
    assert_eq!(patch["actor_id"], manager_id);
    assert_eq!(patch["actor_role"], "manager");
    assert!(
        patch["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{patch}"
    );
    assert!(patch["source_ip"].as_str().is_some(), "{patch}");
    assert_eq!(change(patch, "debtor_name").unwrap()["old"], "Dana Debtor");
    assert_eq!(change(patch, "debtor_name").unwrap()["new"], "Dana Audited");
    // The creation is there too, by the admin.
    let created = entries_where(&stack, &subject, "the creation", |e| {
        e["action"] == "create"
    })
    .await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["actor_id"], admin_id);

    // A payment and its refund (by the admin).
    let response = stack.pay_request(&id, 2_500).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let payment_etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let payment: Value = response.json().await.unwrap();
    let pid = payment["id"].as_str().unwrap().to_owned();
    let entity = format!("payment:{pid}");
    let recorded = entries_where(&stack, &subject, "the payment's entry", |e| {
        e["entity"] == entity && e["action"] == "record"
    })
    .await;
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(recorded[0]["actor_id"], admin_id);
    assert_eq!(change(&recorded[0], "amount").unwrap()["new"], 2_500);
    let debits = entries_where(&stack, &subject, "the balance debit", |e| {
        change(e, "balance").is_some_and(|c| c["old"] == 10_000 && c["new"] == 7_500)
    })
    .await;
    assert_eq!(debits.len(), 1, "{debits:#?}");
    assert_eq!(debits[0]["actor_id"], admin_id);

    let response = stack
        .request(
            "PATCH",
            &format!("/accounts/{id}/payments/{pid}"),
            Some(&manager),
            Some(json!({"status": "refunded"})),
        )
        .header("if-match", payment_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let refunds = entries_where(&stack, &subject, "the refund's entry", |e| {
        e["entity"] == entity && e["action"] == "refund"
    })
    .await;
    assert_eq!(refunds.len(), 1, "{refunds:#?}");
    assert_eq!(refunds[0]["actor_id"], manager_id);
    assert_eq!(change(&refunds[0], "status").unwrap()["old"], "completed");
    assert_eq!(change(&refunds[0], "status").unwrap()["new"], "refunded");
    let credits = entries_where(&stack, &subject, "the balance credit", |e| {
        change(e, "balance").is_some_and(|c| c["old"] == 7_500 && c["new"] == 10_000)
    })
    .await;
    assert_eq!(credits.len(), 1);
    assert_eq!(credits[0]["actor_id"], manager_id);

    // A bulk change, made by the worker on the manager's behalf.
    let (status, accepted) = stack
        .send(
            "POST",
            "/bulk/accounts",
            Some(&manager),
            Some(json!({"account_ids": [id], "changes": {"add_tags": ["audited"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let job = accepted["job_id"].as_str().unwrap().to_owned();
    let bulk = entries_where(&stack, &subject, "the bulk change", |e| {
        e["action"] == "update" && change(e, "tags").is_some()
    })
    .await;
    assert_eq!(bulk.len(), 1, "{bulk:#?}");
    assert_eq!(bulk[0]["actor_id"], manager_id);
    assert_eq!(bulk[0]["actor_role"], "manager");
    assert_eq!(bulk[0]["via"], format!("bulk:{job}"));
    assert_eq!(change(&bulk[0], "tags").unwrap()["new"], json!(["audited"]));
    // The job's own record is audited: its creation by the manager.
    let job_trail = entries_where(&stack, &format!("job:{job}"), "the job's creation", |e| {
        e["action"] == "create"
    })
    .await;
    assert_eq!(job_trail[0]["actor_id"], manager_id);

    // A scheduler change: a stale stored bucket, refreshed by the aging job.
    let dynamodb = aws_sdk_dynamodb::Client::new(&shared::clients::sdk_config().await);
    dynamodb
        .update_item()
        .table_name(format!("{}AccountsTable", stack.prefix))
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("ACCOUNT#{id}")),
        )
        .update_expression("SET dpd_bucket = :stale")
        .expression_attribute_values(
            ":stale",
            aws_sdk_dynamodb::types::AttributeValue::S("current".into()),
        )
        .send()
        .await
        .unwrap();
    let outcome = stack
        .gateway
        .invoke("SchedulerFunction", json!({"job": "aging"}))
        .await;
    assert!(
        matches!(outcome, local_gateway::runtime::Outcome::Success(_)),
        "{outcome:?}"
    );
    let aged = entries_where(&stack, &subject, "the aging job's change", |e| {
        e["actor_id"] == "system:scheduler:aging"
    })
    .await;
    assert_eq!(aged.len(), 1, "{aged:#?}");
    assert_eq!(aged[0]["actor_role"], "system");
    assert_eq!(change(&aged[0], "dpd_bucket").unwrap()["old"], "current");
    assert_eq!(change(&aged[0], "dpd_bucket").unwrap()["new"], "31-60");
    // The test's own unstamped write is recorded too, attributed to nobody.
    let stale = entries_where(&stack, &subject, "the unstamped write", |e| {
        e["actor_id"] == "unattributed"
    })
    .await;
    assert_eq!(stale.len(), 1);

    // Who may read: managers their accounts' trails only; agents and viewers nothing.
    let path = format!("/audit?entity={subject}");
    let (status, _) = stack.send("GET", &path, Some(&manager), None).await;
    assert_eq!(status, StatusCode::OK);
    for token in [&agent, &viewer] {
        let (status, problem) = stack.send("GET", &path, Some(token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
        let (status, _) = stack
            .send(
                "GET",
                "/audit/export?from=2026-01-01T00:00:00Z",
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = stack
        .send(
            "GET",
            &format!("/audit?actor={manager_id}"),
            Some(&manager),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Bad filters: 400 problem+json naming the field; well-formed filters that together
    // select nothing: 422 naming the field to change.
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    for (query, field, expected) in [
        ("entity=nope", "entity", StatusCode::BAD_REQUEST),
        (
            "entity=payment:01JD3Q2W70000000000000000B",
            "entity",
            StatusCode::BAD_REQUEST,
        ),
        ("from=yesterday", "from", StatusCode::BAD_REQUEST),
        (
            "from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
            "to",
            unprocessable,
        ),
        ("actor=a%20b", "actor", StatusCode::BAD_REQUEST),
        ("", "from", unprocessable),
    ] {
        let response = stack
            .request(
                "GET",
                &format!("/audit?{query}&limit=5"),
                Some(&admin),
                None,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    let (status, problem) = stack
        .send("GET", &format!("{path}&limit=0"), Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["errors"][0]["field"], "limit");

    // The actor and time-range lists are Queries too, newest first, paged with cursors.
    let (status, mine) = stack
        .send(
            "GET",
            &format!("/audit?actor={manager_id}&limit=2"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["items"].as_array().unwrap().len(), 2);
    assert!(mine["next_cursor"].is_string());
    let since = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, recent) = stack
        .send(
            "GET",
            &format!("/audit?from={since}&limit=100"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{recent}");
    let times: Vec<&str> = recent["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    assert!(times.len() >= 8, "{times:?}");
    let parsed: Vec<shared::domain::Timestamp> = times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(
        parsed.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    // The export: the same entries as CSV.
    let response = stack
        .request(
            "GET",
            &format!("/audit/export?entity={subject}"),
            Some(&manager),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = response.text().await.unwrap();
    assert!(
        csv.starts_with("id,at,entity,subject,action,actor_id"),
        "{csv}"
    );
    assert!(csv.contains(&entity) && csv.contains("refund"), "{csv}");
    // `limit` caps the rows of one answer; `next-cursor` carries on.
    let response = stack
        .request(
            "GET",
            &format!("/audit/export?entity={subject}&limit=2"),
            Some(&manager),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("next-cursor"));
    assert_eq!(
        response.text().await.unwrap().lines().count(),
        3,
        "header + 2 rows"
    );

    // Users: changes are audited, secrets never.
    let email = e2e::unique_email();
    let (status, user) = stack
        .send("POST", "/users", Some(&admin), Some(json!({"email": email, "name": "Audit Subject", "role": "viewer", "password": PASSWORD})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let user_id = user["id"].as_str().unwrap().to_owned();
    let user_trail = entries_where(
        &stack,
        &format!("user:{user_id}"),
        "the user's creation",
        |e| e["action"] == "create",
    )
    .await;
    assert_eq!(user_trail.len(), 1);
    assert_eq!(
        change(&user_trail[0], "password_hash").unwrap()["new"],
        "[redacted]"
    );
    let scan = dynamodb
        .scan()
        .table_name(format!("{}AuditTable", stack.prefix))
        .send()
        .await
        .unwrap();
    let items = scan.items.unwrap_or_default();
    assert!(items.len() >= 10, "{}", items.len());
    let dump = format!("{items:?}");
    assert!(
        !dump.contains("$argon2") && !dump.contains(PASSWORD),
        "a secret in the Audit table"
    );
}
