//! Activities end to end through the local gateway (run under `infra/stack.sh` after
//! `cargo build --workspace --bins`): logging, promises, a Regulation F refusal, the
//! timeline with payment activities, and the batch with good, unknown and forbidden ids.
//! Real time is used here, so calls go to an account whose debtor time zone (a fixed
//! `Etc/GMT±N` zone) makes it midday now; the time-of-day rules at fixed times are tested
//! with an injected clock in `functions/activities/tests`.

use e2e::{account_body, Stack, StackOptions};
use reqwest::StatusCode;
use serde_json::json;

async fn account(s: &Stack, balance: i64, timezone: &str, agent: Option<&str>) -> String {
    let mut body = account_body("E2E", balance);
    body["debtor_timezone"] = json!(timezone);
    body["assigned_agent_id"] = json!(agent);
    s.create_account(body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A fixed-offset zone where it is about 12:00 now (`Etc/GMT-5` is UTC+5).
fn midday_zone() -> String {
    let hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
        % 24) as i64;
    let offset = 12 - hour; // local = utc + offset, in -11..=12
    match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

#[tokio::test]
async fn activities_through_the_gateway() {
    let s = Stack::start(StackOptions::unthrottled()).await;
    let admin = s.admin().to_owned();
    let zone = midday_zone();
    let (agent_id, agent) = s.user_with_role("agent").await;
    let mine = account(&s, 5_000, &zone, Some(&agent_id)).await;
    let other = account(&s, 5_000, &zone, None).await;

    // Seven calls, then the eighth in 7 days is refused with the rule.
    for i in 0..7 {
        let (status, body) = s
            .send(
                "POST",
                &format!("/accounts/{mine}/activities"),
                Some(&agent),
                Some(json!({"type": "call", "outcome": "no_answer", "note": format!("try {i}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{zone}: {body}");
    }
    let (status, problem) = s
        .send(
            "POST",
            &format!("/accounts/{mine}/activities"),
            Some(&agent),
            Some(json!({"type": "call", "outcome": "no_answer"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        problem["type"],
        "https://collectpro.dev/problems/call-frequency-limit"
    );

    // A promise in the past is a 400; a good one moves the account.
    let (status, _) = s
        .send("POST", &format!("/accounts/{mine}/activities"), Some(&agent), Some(json!({"type": "promise_to_pay", "promise_amount": 1000, "promise_date": "2020-01-01"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let now = shared::domain::Timestamp::now().unix_seconds();
    let next_week = shared::domain::Timestamp::from_unix_seconds(now + 7 * 86_400).unwrap();
    let date = next_week.to_string()[..10].to_owned();
    let (status, promise) = s
        .send(
            "POST",
            &format!("/accounts/{mine}/activities"),
            Some(&agent),
            Some(json!({"type": "promise_to_pay", "promise_amount": 1000, "promise_date": date})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{promise}");
    let (_, account) = s
        .send("GET", &format!("/accounts/{mine}"), Some(&admin), None)
        .await;
    assert_eq!(account["status"], "promise_to_pay");

    // A payment's activity lands in the timeline, newest first.
    let response = s
        .request(
            "POST",
            &format!("/accounts/{mine}/payments"),
            Some(&agent),
            Some(json!({"amount": 250, "currency": "USD", "method": "card"})),
        )
        .header("idempotency-key", ulid::Ulid::new().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let (status, timeline) = s
        .send(
            "GET",
            &format!("/accounts/{mine}/activities?limit=5"),
            Some(&agent),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    let items = timeline["items"].as_array().unwrap();
    assert_eq!(items[0]["type"], "payment");
    let ids: Vec<&str> = items.iter().map(|a| a["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert!(timeline["next_cursor"].is_string());

    // Agents may not touch others' accounts.
    let (status, _) = s
        .send(
            "POST",
            &format!("/accounts/{other}/activities"),
            Some(&agent),
            Some(json!({"type": "note", "note": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Batch: good, unknown and forbidden ids, each reported.
    let unknown = ulid::Ulid::new().to_string();
    let (status, answer) = s
        .send(
            "POST",
            "/activities/batch",
            Some(&agent),
            Some(json!({"account_ids": [mine, unknown, other], "limit": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["account_id"], mine.as_str());
    assert_eq!(results[0]["activities"].as_array().unwrap().len(), 3);
    let reasons: Vec<(String, String)> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["account_id"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            (unknown, "not_found".to_owned()),
            (other.clone(), "forbidden".to_owned())
        ]
    );
    let (_, viewer) = s.user_with_role("viewer").await;
    let (status, answer) = s
        .send(
            "POST",
            "/activities/batch",
            Some(&viewer),
            Some(json!({"account_ids": [mine, other]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["results"].as_array().unwrap().len(), 2, "{answer}");
}
