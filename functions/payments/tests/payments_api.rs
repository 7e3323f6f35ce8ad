//! The payments handlers against DynamoDB Local (run under `infra/stack.sh`).

mod support;

use futures::future::join_all;
use http::StatusCode;
use serde_json::json;
use shared::accounts::AccountStatus;
use shared::auth::Role;
use shared::domain::MinorUnits;
use support::*;

#[tokio::test]
async fn bad_payments_are_problems_and_write_nothing() {
    let f = fixture().await;
    let account = f.account(5_000, "USD", None).await;
    let bodies = [
        json!({"amount": 0, "currency": "USD", "method": "card"}),
        json!({"amount": -5, "currency": "USD", "method": "card"}),
        json!({"amount": 10.5, "currency": "USD", "method": "card"}),
        json!({"amount": 1_000_000_000_i64, "currency": "USD", "method": "card"}),
        json!({"amount": 100, "currency": "EUR", "method": "card"}),
        json!({"amount": 100, "currency": "XXY", "method": "card"}),
        json!({"amount": 100, "currency": "USD", "method": "bitcoin"}),
        json!({"amount": 100, "currency": "USD", "method": "card", "status": "refunded"}),
        json!({"amount": 100, "currency": "USD", "method": "card", "received_at": "2999-01-01T00:00:00Z"}),
        json!({"amount": "100", "currency": "USD", "method": "card"}),
        json!({"amount": 100, "currency": "USD", "method": "card", "extra": 1}),
    ];
    for body in &bodies {
        let answer = f.pay(&f.admin, account.id, body, &key()).await;
        assert!(
            answer.status.is_client_error(),
            "{body}: {} {}",
            answer.status,
            answer.body
        );
        assert_eq!(
            answer.headers["content-type"], "application/problem+json",
            "{body}"
        );
        assert_eq!(answer.body["status"], answer.status.as_u16());
    }
    // Without an Idempotency-Key.
    let answer = f
        .call(
            &f.admin,
            record(
                account.id,
                &json!({"amount": 100, "currency": "USD", "method": "card"}),
                None,
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(answer.body["errors"][0]["field"], "Idempotency-Key");

    let stored = f.stored(account.id).await;
    assert_eq!(stored.balance, MinorUnits(5_000));
    assert_eq!(stored.version, 1);
    assert!(f.history(account.id, "").await.is_empty());
}

#[tokio::test]
async fn a_payment_debits_and_paying_off_sets_paid() {
    let f = fixture().await;
    let account = f.account(1_000, "USD", None).await;
    let answer = f
        .pay(
            &f.admin,
            account.id,
            &json!({"amount": 400, "currency": "USD", "method": "ach", "reference": "chk 1"}),
            &key(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["status"], "completed");
    assert_eq!(answer.body["amount"], 400);
    assert_eq!(answer.headers["etag"], "\"1\"");
    assert!(answer.headers.contains_key("location"));
    let stored = f.stored(account.id).await;
    assert_eq!(
        (stored.balance, stored.version, stored.status),
        (MinorUnits(600), 2, AccountStatus::Active)
    );

    let answer = f
        .pay(
            &f.admin,
            account.id,
            &json!({"amount": 600, "currency": "USD", "method": "cash"}),
            &key(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let stored = f.stored(account.id).await;
    assert_eq!(
        (stored.balance, stored.status),
        (MinorUnits(0), AccountStatus::Paid)
    );
    // The balance index key follows the balance.
    let item = f
        .dynamodb
        .get_item()
        .table_name(f.config.tables.accounts.as_str())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("ACCOUNT#{}", account.id)),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(item["balance_sk"]
        .as_s()
        .unwrap()
        .starts_with("0000000000000000000#"));
    assert!(item["status_pk"].as_s().unwrap().starts_with("ST#paid#"));

    let answer = f
        .pay(
            &f.admin,
            account.id,
            &json!({"amount": 1, "currency": "USD", "method": "cash"}),
            &key(),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_other_bodies_and_hold_under_concurrency() {
    let f = fixture().await;
    let account = f.account(10_000, "USD", None).await;
    let body = json!({"amount": 250, "currency": "USD", "method": "card"});
    let k = key();
    let first = f.pay(&f.admin, account.id, &body, &k).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = f.pay(&f.admin, account.id, &body, &k).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = f
        .pay(
            &f.admin,
            account.id,
            &json!({"amount": 251, "currency": "USD", "method": "card"}),
            &k,
        )
        .await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.body
    );
    // The same key of another caller is another key.
    let manager = caller(Role::Manager);
    let theirs = f.pay(&manager, account.id, &body, &k).await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.body["id"], first.body["id"]);
    assert_eq!(f.stored(account.id).await.balance, MinorUnits(9_500));

    // 20 concurrent requests with one key: one payment.
    let k = key();
    let answers = join_all((0..20).map(|_| f.pay(&f.admin, account.id, &body, &k))).await;
    let mut ids = std::collections::BTreeSet::new();
    for answer in &answers {
        match answer.status {
            StatusCode::CREATED => {
                ids.insert(answer.body["id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => assert_eq!(answer.headers["retry-after"], "1"),
            other => panic!("{other}: {}", answer.body),
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(f.stored(account.id).await.balance, MinorUnits(9_250));
    assert_eq!(f.history(account.id, "").await.len(), 3);

    // A failed request releases its key: after the error the same key works.
    let k = key();
    let too_much = json!({"amount": 1_000_000, "currency": "USD", "method": "card"});
    assert_eq!(
        f.pay(&f.admin, account.id, &too_much, &k).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        f.pay(&f.admin, account.id, &body, &k).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn fifty_concurrent_payments_never_overdraw() {
    let f = fixture().await;
    let account = f.account(3_000, "USD", None).await;
    let body = json!({"amount": 100, "currency": "USD", "method": "card"});
    let keys: Vec<String> = (0..50).map(|_| key()).collect();
    // Clients that follow `Retry-After`: a payment that lost to the others too often (409)
    // or met a slow DynamoDB (503) is sent again with the same key, so every one ends
    // recorded once or refused for the balance.
    let answers = join_all(
        keys.iter()
            .map(|k| f.pay_following_retry_after(&f.admin, account.id, &body, k, 20)),
    )
    .await;
    let accepted = answers
        .iter()
        .filter(|(a, _)| a.status == StatusCode::CREATED)
        .count();
    for (answer, _) in &answers {
        assert!(
            matches!(
                answer.status,
                StatusCode::CREATED | StatusCode::UNPROCESSABLE_ENTITY
            ),
            "{}: {}",
            answer.status,
            answer.body
        );
    }
    let resent: u32 = answers.iter().map(|(_, sent)| sent - 1).sum();
    println!(
        "FIGURE 50 concurrent payments: {resent} sent again after a 409 or 503 with Retry-After"
    );
    assert_eq!(accepted, 30);
    let stored = f.stored(account.id).await;
    assert_eq!(
        (stored.balance, stored.status),
        (MinorUnits(0), AccountStatus::Paid)
    );
    assert_eq!(stored.version, 31);
    assert_eq!(
        f.history(account.id, "status=completed&limit=7")
            .await
            .len(),
        30
    );
}

#[tokio::test]
async fn the_status_machine_moves_balances_and_refuses_the_rest() {
    let f = fixture().await;
    let account = f.account(500, "USD", None).await;
    let paid = f
        .pay(
            &f.admin,
            account.id,
            &json!({"amount": 500, "currency": "USD", "method": "wire"}),
            &key(),
        )
        .await;
    let pid = paid.body["id"].as_str().unwrap().to_owned();
    assert_eq!(f.stored(account.id).await.status, AccountStatus::Paid);

    // If-Match is required and must be current.
    let no_match = f
        .call(
            &f.admin,
            patch(account.id, &pid, &json!({"status": "refunded"})),
        )
        .await;
    assert_eq!(no_match.status, StatusCode::PRECONDITION_REQUIRED);
    let stale = f
        .call(
            &f.admin,
            patch(account.id, &pid, &json!({"status": "refunded"})).header("if-match", "\"7\""),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    // Agents and viewers may not.
    let agent = caller(Role::Agent);
    let denied = f
        .call(
            &agent,
            patch(account.id, &pid, &json!({"status": "refunded"})).header("if-match", "\"1\""),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    let refunded = f.set_status(account.id, &pid, "refunded").await;
    assert_eq!(refunded.status, StatusCode::OK, "{}", refunded.body);
    assert_eq!(refunded.body["status"], "refunded");
    assert_eq!(refunded.headers["etag"], "\"2\"");
    let stored = f.stored(account.id).await;
    assert_eq!(
        (stored.balance, stored.status),
        (MinorUnits(500), AccountStatus::Active)
    );

    // refunded → completed is not a transition.
    let again = f.set_status(account.id, &pid, "completed").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(f.stored(account.id).await.balance, MinorUnits(500));

    // pending → completed debits; pending → failed does not; completed → reversed credits.
    let pending = f
        .pay(
            &f.admin,
            account.id,
            &json!({"amount": 200, "currency": "USD", "method": "check", "status": "pending"}),
            &key(),
        )
        .await;
    assert_eq!(pending.body["status"], "pending");
    assert_eq!(f.stored(account.id).await.balance, MinorUnits(500));
    let pending_id = pending.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        f.set_status(account.id, &pending_id, "completed")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(f.stored(account.id).await.balance, MinorUnits(300));
    assert_eq!(
        f.set_status(account.id, &pending_id, "reversed")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(f.stored(account.id).await.balance, MinorUnits(500));
    assert_eq!(
        f.set_status(account.id, &pending_id, "refunded")
            .await
            .status,
        StatusCode::CONFLICT
    );
    let failing = f
        .pay(
            &f.admin,
            account.id,
            &json!({"amount": 50, "currency": "USD", "method": "check", "status": "pending"}),
            &key(),
        )
        .await;
    let failing_id = failing.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        f.set_status(account.id, &failing_id, "failed").await.status,
        StatusCode::OK
    );
    assert_eq!(f.stored(account.id).await.balance, MinorUnits(500));
    assert_eq!(
        f.set_status(account.id, &failing_id, "completed")
            .await
            .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn history_is_newest_first_paged_and_filtered() {
    let f = fixture().await;
    let account = f.account(100_000, "USD", None).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let status = if i % 3 == 0 { "pending" } else { "completed" };
        let answer = f
            .pay(
                &f.admin,
                account.id,
                &json!({"amount": 10 + i, "currency": "USD", "method": "card", "status": status}),
                &key(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
        ids.push(answer.body["id"].as_str().unwrap().to_owned());
    }
    let all = f.history(account.id, "limit=2").await;
    let got: Vec<_> = all
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(got, newest_first);
    assert_eq!(
        f.history(account.id, "status=pending&limit=1").await.len(),
        3
    );
    assert_eq!(f.history(account.id, "status=completed").await.len(), 4);
    for bad in [
        "limit=0",
        "limit=101",
        "status=lost",
        "cursor=abc",
        "sort=x",
    ] {
        let answer = f.call(&f.admin, list(account.id).query(bad)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn agents_work_their_own_accounts_and_viewers_only_read() {
    let f = fixture().await;
    let agent = caller(Role::Agent);
    let mine = f.account(1_000, "USD", Some(agent.user_id)).await;
    let theirs = f
        .account(1_000, "USD", Some(shared::domain::Id::generate()))
        .await;
    let body = json!({"amount": 100, "currency": "USD", "method": "card"});
    assert_eq!(
        f.pay(&agent, mine.id, &body, &key()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        f.pay(&agent, theirs.id, &body, &key()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.call(&agent, list(theirs.id)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(f.call(&agent, list(mine.id)).await.status, StatusCode::OK);
    let viewer = caller(Role::Viewer);
    assert_eq!(
        f.pay(&viewer, mine.id, &body, &key()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(f.call(&viewer, list(mine.id)).await.status, StatusCode::OK);
    let unknown = shared::domain::Id::generate();
    assert_eq!(
        f.pay(&f.admin, unknown, &body, &key()).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn crashed_claims_are_taken_over_and_expired_keys_are_new() {
    use shared::idempotency::{record_key, request_hash, Claim, StoredResponse};
    let f = fixture().await;
    let account = f.account(10_000, "USD", None).await;
    let body = json!({"amount": 100, "currency": "USD", "method": "card"});
    let path = format!("/accounts/{}/payments", account.id);
    let hash = request_hash("POST", &path, body.to_string().as_bytes());
    let route = "POST /accounts/{id}/payments";
    let past = shared::domain::Timestamp::now().plus(time::Duration::seconds(-20));

    // A claim whose request died before recording: after the lock lapses the retry takes it
    // over, with the payment id the first claim chose.
    let k = key();
    let chosen = shared::domain::Id::generate();
    let claim = f
        .app
        .idempotency
        .claim(
            &record_key(f.admin.user_id, route, &k),
            &hash,
            &chosen.to_string(),
            past,
        )
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Acquired { .. }));
    let answer = f.pay(&f.admin, account.id, &body, &k).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["id"], chosen.to_string());

    // A claim whose request died *after* committing: the retry answers that payment and
    // debits nothing more.
    let k = key();
    let first = f.pay(&f.admin, account.id, &body, &key()).await;
    let committed = first.body["id"].as_str().unwrap().to_owned();
    f.app
        .idempotency
        .claim(
            &record_key(f.admin.user_id, route, &k),
            &hash,
            &committed,
            past,
        )
        .await
        .unwrap();
    let balance = f.stored(account.id).await.balance;
    let answer = f.pay(&f.admin, account.id, &body, &k).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["id"], committed.as_str());
    assert_eq!(f.stored(account.id).await.balance, balance);

    // A claim still locked answers 409; a completed record past its 24 h is a new key.
    let k = key();
    let now = shared::domain::Timestamp::now();
    f.app
        .idempotency
        .claim(
            &record_key(f.admin.user_id, route, &k),
            &hash,
            "01JD3Q2W5Z8X9Y0A1B2C3D4E5F",
            now,
        )
        .await
        .unwrap();
    let answer = f.pay(&f.admin, account.id, &body, &k).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    let k = key();
    let day_ago = now.plus(time::Duration::hours(-25));
    let record = record_key(f.admin.user_id, route, &k);
    let Claim::Acquired { claim_id, .. } = f
        .app
        .idempotency
        .claim(&record, &hash, "01JD3Q2W5Z8X9Y0A1B2C3D4E5F", day_ago)
        .await
        .unwrap()
    else {
        panic!("claim")
    };
    let stale = StoredResponse {
        status: 201,
        body: "{\"id\":\"stale\"}".into(),
        headers: vec![],
    };
    f.app
        .idempotency
        .complete(&record, &claim_id, &stale)
        .await
        .unwrap();
    let answer = f.pay(&f.admin, account.id, &body, &k).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_ne!(answer.body["id"], "stale");
}

/// Hole 11 (issue 13): a payment that committed but whose request died before storing its
/// idempotent response is found by the retry (it carries the key's payment id) and
/// answered as the original `201`, not re-validated against the balance it changed. A
/// request of this version stores its response in the payment's own transaction, so the
/// state is left only by a request of an earlier version, in flight across a deployment:
/// the test writes it as such a request did, the payment without the completion.
#[tokio::test]
async fn a_committed_payment_whose_response_was_lost_replays_as_201() {
    use shared::idempotency::{record_key, request_hash, Claim};
    use shared::payments::{BalanceChange, Payment, PaymentMethod, PaymentStatus, PaymentWrite};
    let f = fixture().await;
    let account = f.account(5_000, "USD", None).await;
    // Pays the account off: a re-validation on retry would see balance 0 and answer 422.
    let body = json!({"amount": 5_000, "currency": "USD", "method": "ach"});
    let path = format!("/accounts/{}/payments", account.id);
    let hash = request_hash("POST", &path, body.to_string().as_bytes());
    let k = key();
    let record = record_key(f.admin.user_id, "POST /accounts/{id}/payments", &k);
    let now = shared::domain::Timestamp::now();

    // The first request: claims the key and commits the payment, then "crashes" before
    // completing the idempotency record.
    let Claim::Acquired { resource_id, .. } = f
        .app
        .idempotency
        .claim(
            &record,
            &hash,
            &shared::domain::Id::generate().to_string(),
            now,
        )
        .await
        .unwrap()
    else {
        panic!("the first request claims the key")
    };
    let payment = Payment {
        id: resource_id.parse().unwrap(),
        account_id: account.id,
        amount: MinorUnits(5_000),
        currency: "USD".parse().unwrap(),
        method: PaymentMethod::Ach,
        status: PaymentStatus::Completed,
        reference: None,
        received_at: now,
        created_by: f.admin.user_id,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let activity = payment.activity("recorded (completed)", f.admin.user_id, now);
    f.app
        .ledger
        .apply(
            &PaymentWrite::Record(payment.clone()),
            BalanceChange::Debit(payment.amount),
            f.stored(account.id).await,
            &activity,
            now,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.stored(account.id).await.balance, MinorUnits(0));

    // The client retries after the claim's lock lapsed.
    let later = now.plus(time::Duration::seconds(20));
    let answer = f
        .call_at(&f.admin, record_req(account.id, &body, &k), later)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["id"], resource_id.as_str());
    assert_eq!(answer.body["amount"], 5_000);
    let stored = f.stored(account.id).await;
    assert_eq!(stored.balance, MinorUnits(0), "debited once");
    assert_eq!(f.history(account.id, "limit=100").await.len(), 1);
    // And the response is now stored: a third try replays it.
    let again = f
        .call_at(
            &f.admin,
            record_req(account.id, &body, &k),
            later.plus(time::Duration::seconds(1)),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, answer.body, "the same body");
    assert_eq!(again.headers["idempotent-replayed"], "true");
}

/// The response is stored in the payment's own transaction: a request whose claim was
/// taken over while it ran (its lock lapsed and a retry of the same request claimed the
/// key) writes nothing and answers `409`; the retry records the payment once.
#[tokio::test]
async fn a_request_whose_claim_was_taken_over_writes_nothing() {
    use shared::auth::{authorize, Action};
    use shared::idempotency::{record_key, request_hash, Claim};
    let f = fixture().await;
    let account = f.account(5_000, "USD", None).await;
    let body = json!({"amount": 1_200, "currency": "USD", "method": "card"});
    let path = format!("/accounts/{}/payments", account.id);
    let hash = request_hash("POST", &path, body.to_string().as_bytes());
    let k = key();
    let record = record_key(f.admin.user_id, "POST /accounts/{id}/payments", &k);
    let now = shared::domain::Timestamp::now();
    let claim = |at| {
        let (record, hash) = (record.clone(), hash.clone());
        let app = &f.app;
        async move {
            match app
                .idempotency
                .claim(
                    &record,
                    &hash,
                    &shared::domain::Id::generate().to_string(),
                    at,
                )
                .await
                .unwrap()
            {
                Claim::Acquired {
                    claim_id,
                    resource_id,
                    ..
                } => (claim_id, resource_id),
                other => panic!("expected the key to be claimed, got {other:?}"),
            }
        }
    };
    let (first_claim, payment_id) = claim(now).await;
    // The first request stalls past its lock; a retry takes the key over.
    let later = now.plus(time::Duration::seconds(20));
    let (_, inherited) = claim(later).await;
    assert_eq!(inherited, payment_id, "the retry inherits the payment id");

    // The first request now writes, with the claim it no longer holds.
    let scope = authorize(&f.admin, Action::RecordPayment).unwrap();
    let new =
        payments::validate_record(serde_json::from_value(body.clone()).unwrap(), now).unwrap();
    let observed = payments::Observed {
        account: Some(f.stored(account.id).await),
        plan: None,
    };
    let claim_ref = payments::ClaimRef {
        record_id: &record,
        claim_id: &first_claim,
    };
    let refused = payments::record(
        &f.app,
        &f.admin,
        &scope,
        account.id,
        observed,
        new,
        payment_id.parse().unwrap(),
        claim_ref,
        now,
    )
    .await
    .err()
    .expect("a write under a lost claim is refused");
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.retry_after, Some(1));
    assert_eq!(
        f.stored(account.id).await.balance,
        MinorUnits(5_000),
        "nothing written"
    );
    assert!(f.history(account.id, "limit=100").await.is_empty());

    // The retry's own claim lapses too (it crashed); the client's next try records once.
    let answer = f
        .call_at(
            &f.admin,
            record_req(account.id, &body, &k),
            later.plus(time::Duration::seconds(20)),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["id"], payment_id.as_str());
    assert_eq!(f.stored(account.id).await.balance, MinorUnits(3_800));
    assert_eq!(f.history(account.id, "limit=100").await.len(), 1);
}

fn record_req(
    account: shared::domain::Id,
    body: &serde_json::Value,
    key: &str,
) -> shared::testing::TestRequest {
    support::record(account, body, Some(key))
}

/// Hole 8 (issue 13): a payment amount is at most 10^12 minor units.
#[tokio::test]
async fn payment_amounts_are_bounded() {
    let f = fixture().await;
    let account = f.account(5_000, "USD", None).await;
    for amount in [json!(1_000_000_000_001_i64), json!(i64::MAX)] {
        let answer = f
            .pay(
                &f.admin,
                account.id,
                &json!({"amount": amount, "currency": "USD", "method": "card"}),
                &key(),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{amount}: {}",
            answer.body
        );
        assert_eq!(answer.body["errors"][0]["field"], "amount");
    }
}

/// Issue 13, hole 8: the OpenAPI schema states the bound the validation enforces.
#[test]
fn the_schema_states_the_amount_bound() {
    use utoipa::OpenApi;
    let document = serde_json::to_value(payments::ApiDoc::openapi()).unwrap();
    let amount = resolved(
        &document,
        &document["components"]["schemas"]["RecordPaymentBody"]["properties"]["amount"],
    );
    assert_eq!(
        amount["maximum"].as_f64(),
        Some(shared::validation::MAX_AMOUNT as f64),
        "{amount}"
    );
    assert_eq!(amount["minimum"].as_f64(), Some(1.0));
}

/// A property's schema with `$ref`s followed and an `Option`'s `oneOf`/`anyOf` null branch
/// skipped, so the bound is found wherever the document puts it (inline or a shared
/// component such as an amount type).
fn resolved<'a>(
    document: &'a serde_json::Value,
    schema: &'a serde_json::Value,
) -> &'a serde_json::Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return resolved(document, &document["components"]["schemas"][name]);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[key].as_array() {
            if let Some(inner) = options.iter().find(|o| o["type"] != "null") {
                return resolved(document, inner);
            }
        }
    }
    schema
}
