//! Payment plans through the payments handlers against DynamoDB Local (run under
//! `infra/stack.sh`): creation with the account's status move, payments applied to the
//! installments in the ledger's transaction, refunds re-opening them, completion,
//! cancellation, concurrency, and the refusals.

mod support;

use futures::future::join_all;
use http::StatusCode;
use serde_json::{json, Value};
use shared::accounts::{Account, AccountStatus};
use shared::auth::Role;
use shared::domain::{Id, MinorUnits, Timestamp};
use shared::testing::TestRequest;
use support::*;

/// `YYYY-MM-DD` of today plus `days` (UTC).
fn in_days(days: i64) -> String {
    let date = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    shared::accounts::model::format_date(date)
}

fn create_req(account: Id, body: &Value) -> TestRequest {
    TestRequest::new(
        "POST /accounts/{id}/plans",
        &format!("/accounts/{account}/plans"),
    )
    .path_param("id", &account.to_string())
    .json(body)
}

fn cancel_req(account: Id, plan: &str) -> TestRequest {
    TestRequest::new(
        "POST /accounts/{id}/plans/{plan_id}/cancel",
        &format!("/accounts/{account}/plans/{plan}/cancel"),
    )
    .path_param("id", &account.to_string())
    .path_param("plan_id", plan)
}

fn monthly(count: u32) -> Value {
    json!({"frequency": "monthly", "first_due_date": in_days(10), "installment_count": count})
}

impl Fixture {
    async fn account_with(&self, balance: i64, status: AccountStatus) -> Account {
        let account = Account {
            status,
            ..shared::testing::account(balance, Timestamp::now())
        };
        self.repo.create(&account).await.unwrap().unwrap();
        account
    }

    async fn plans(&self, account: Id) -> Vec<Value> {
        let answer = self
            .call(
                &self.admin,
                TestRequest::new(
                    "GET /accounts/{id}/plans",
                    &format!("/accounts/{account}/plans"),
                )
                .path_param("id", &account.to_string()),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert!(answer.body["next_cursor"].is_null());
        answer.body["items"].as_array().unwrap().clone()
    }

    /// The account's plan `id` as listed.
    async fn plan(&self, account: Id, id: &Value) -> Value {
        self.plans(account)
            .await
            .into_iter()
            .find(|p| &p["id"] == id)
            .unwrap()
    }

    async fn usd(&self, account: Id, amount: i64) -> Answer {
        self.pay(
            &self.admin,
            account,
            &json!({"amount": amount, "currency": "USD", "method": "card"}),
            &key(),
        )
        .await
    }

    async fn status_changes(&self, account: Id) -> Vec<String> {
        let store = shared::activities::ActivityStore::new(
            self.dynamodb.clone(),
            self.config.tables.accounts.clone(),
            self.config.tables.activities.clone(),
        );
        let (items, _) = store.timeline(account, None, None, 100).await.unwrap();
        items
            .into_iter()
            .filter(|a| a.activity_type == shared::activities::ActivityType::StatusChange)
            .map(|a| a.note)
            .collect()
    }
}

/// `(status, paid_amount)` of each installment.
fn schedule(plan: &Value) -> Vec<(String, i64)> {
    plan["installments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["status"].as_str().unwrap().to_owned(),
                i["paid_amount"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn states(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(s, a)| ((*s).to_owned(), *a)).collect()
}

#[tokio::test]
async fn a_twelve_month_plan_paid_partly_overpaid_refunded_and_completed() {
    let f = fixture().await;
    let account = f.account(120_000, "USD", None).await;
    let created = f.call(&f.admin, create_req(account.id, &monthly(12))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.headers["etag"], "\"1\"");
    let plan = created.body.clone();
    assert_eq!(plan["status"], "active");
    assert_eq!(plan["total_amount"], 120_000);
    assert_eq!(plan["installments"].as_array().unwrap().len(), 12);
    assert_eq!(plan["installments"][0]["due_date"], in_days(10));
    assert_eq!(plan["installments"][11]["amount"], 10_000);
    assert_eq!(
        f.stored(account.id).await.status,
        AccountStatus::PaymentPlan
    );
    assert_eq!(f.status_changes(account.id).await.len(), 1);

    // On time, in full: the first installment is paid.
    assert_eq!(f.usd(account.id, 10_000).await.status, StatusCode::CREATED);
    // Partly: the second is partly paid.
    assert_eq!(f.usd(account.id, 4_000).await.status, StatusCode::CREATED);
    let now = f.plan(account.id, &plan["id"]).await;
    assert_eq!(
        schedule(&now)[..3],
        states(&[("paid", 10_000), ("partly_paid", 4_000), ("due", 0)])[..]
    );
    // Overpaid: the rest of the second, the third, part of the fourth.
    let over = f.usd(account.id, 21_000).await;
    assert_eq!(over.status, StatusCode::CREATED);
    let now = f.plan(account.id, &plan["id"]).await;
    assert_eq!(
        schedule(&now)[..5],
        states(&[
            ("paid", 10_000),
            ("paid", 10_000),
            ("paid", 10_000),
            ("partly_paid", 5_000),
            ("due", 0)
        ])[..]
    );
    assert_eq!(now["paid_amount"], 35_000);
    assert_eq!(now["version"], 4);
    // Refunded: what the overpayment paid re-opens, newest installments first.
    let refund = f
        .set_status(account.id, over.body["id"].as_str().unwrap(), "refunded")
        .await;
    assert_eq!(refund.status, StatusCode::OK, "{}", refund.body);
    let now = f.plan(account.id, &plan["id"]).await;
    assert_eq!(
        schedule(&now)[..4],
        states(&[
            ("paid", 10_000),
            ("partly_paid", 4_000),
            ("due", 0),
            ("due", 0)
        ])[..]
    );
    assert_eq!(f.stored(account.id).await.balance, MinorUnits(106_000));
    // A pending payment counts only once it completes.
    let pending = f
        .pay(
            &f.admin,
            account.id,
            &json!({"amount": 6_000, "currency": "USD", "method": "check", "status": "pending"}),
            &key(),
        )
        .await;
    assert_eq!(f.plan(account.id, &plan["id"]).await["paid_amount"], 14_000);
    let completed = f
        .set_status(
            account.id,
            pending.body["id"].as_str().unwrap(),
            "completed",
        )
        .await;
    assert_eq!(completed.status, StatusCode::OK, "{}", completed.body);
    assert_eq!(f.plan(account.id, &plan["id"]).await["paid_amount"], 20_000);

    // The rest pays the balance off: the plan is completed and the account paid.
    assert_eq!(f.usd(account.id, 100_000).await.status, StatusCode::CREATED);
    let done = f.plan(account.id, &plan["id"]).await;
    assert_eq!(done["status"], "completed");
    assert!(done["ended_at"].is_string());
    assert!(schedule(&done).iter().all(|(s, _)| s == "paid"));
    let stored = f.stored(account.id).await;
    assert_eq!(
        (stored.balance, stored.status),
        (MinorUnits(0), AccountStatus::Paid)
    );
    // A new plan can be made once the old one ended, but not on a paid account.
    let again = f.call(&f.admin, create_req(account.id, &monthly(2))).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.body["errors"][0]["field"], "status");
}

#[tokio::test]
async fn a_plan_below_the_balance_completes_and_returns_the_account_to_active() {
    let f = fixture().await;
    let account = f.account(50_000, "USD", None).await;
    let body = json!({"frequency": "weekly", "first_due_date": in_days(0),
        "installment_amount": 3_000, "total_amount": 10_000, "currency": "USD"});
    let created = f.call(&f.admin, create_req(account.id, &body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let amounts: Vec<i64> = created.body["installments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, vec![3_000, 3_000, 3_000, 1_000]);
    assert_eq!(created.body["installments"][1]["due_date"], in_days(7));
    assert_eq!(f.usd(account.id, 10_500).await.status, StatusCode::CREATED);
    let done = f.plan(account.id, &created.body["id"]).await;
    assert_eq!(done["status"], "completed");
    let stored = f.stored(account.id).await;
    assert_eq!(
        (stored.balance, stored.status),
        (MinorUnits(39_500), AccountStatus::Active)
    );
    let changes = f.status_changes(account.id).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    // The slot is free: a second plan may be made now.
    let next = f.call(&f.admin, create_req(account.id, &monthly(3))).await;
    assert_eq!(next.status, StatusCode::CREATED, "{}", next.body);
    let listed = f.plans(account.id).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], next.body["id"], "the active plan first");
}

#[tokio::test]
async fn concurrent_payments_against_one_plan_stay_exact() {
    let f = fixture().await;
    let account = f.account(100_000, "USD", None).await;
    let created = f.call(&f.admin, create_req(account.id, &monthly(12))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let answers = join_all((0..8).map(|_| f.usd(account.id, 700))).await;
    let recorded = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count() as i64;
    for answer in &answers {
        assert!(
            answer.status == StatusCode::CREATED || answer.status == StatusCode::CONFLICT,
            "{} {}",
            answer.status,
            answer.body
        );
    }
    assert!(recorded >= 1);
    let plan = f.plan(account.id, &created.body["id"]).await;
    assert_eq!(plan["paid_amount"], 700 * recorded);
    assert_eq!(plan["version"], 1 + recorded);
    assert_eq!(
        f.stored(account.id).await.balance,
        MinorUnits(100_000 - 700 * recorded)
    );
}

#[tokio::test]
async fn one_active_plan_cancel_and_if_match() {
    let f = fixture().await;
    let account = f.account(9_000, "USD", None).await;
    let first = f.call(&f.admin, create_req(account.id, &monthly(3))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let second = f.call(&f.admin, create_req(account.id, &monthly(3))).await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.body);
    assert_eq!(second.headers["content-type"], "application/problem+json");
    assert_eq!(f.plans(account.id).await.len(), 1);

    let id = first.body["id"].as_str().unwrap();
    let missing = f.call(&f.admin, cancel_req(account.id, id)).await;
    assert_eq!(missing.status, StatusCode::PRECONDITION_REQUIRED);
    let stale = f
        .call(
            &f.admin,
            cancel_req(account.id, id).header("if-match", "\"7\""),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let unknown = f
        .call(
            &f.admin,
            cancel_req(account.id, &Id::generate().to_string()).header("if-match", "*"),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let viewer = f
        .call(
            &caller(Role::Viewer),
            cancel_req(account.id, id).header("if-match", "\"1\""),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);

    let cancelled = f
        .call(
            &f.admin,
            cancel_req(account.id, id).header("if-match", "\"1\""),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.headers["etag"], "\"2\"");
    assert_eq!(f.stored(account.id).await.status, AccountStatus::Active);
    let changes = f.status_changes(account.id).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    let again = f
        .call(&f.admin, cancel_req(account.id, id).header("if-match", "*"))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    // A payment after the plan ended changes no plan.
    assert_eq!(f.usd(account.id, 1_000).await.status, StatusCode::CREATED);
    assert_eq!(f.plans(account.id).await[0]["paid_amount"], 0);
}

#[tokio::test]
async fn plans_on_closed_paid_disputed_or_deleted_accounts_are_refused() {
    let f = fixture().await;
    for status in [
        AccountStatus::Closed,
        AccountStatus::Paid,
        AccountStatus::Disputed,
    ] {
        let account = f.account_with(5_000, status).await;
        let answer = f.call(&f.admin, create_req(account.id, &monthly(2))).await;
        assert_eq!(
            answer.status,
            StatusCode::CONFLICT,
            "{status}: {}",
            answer.body
        );
        assert_eq!(answer.body["errors"][0]["field"], "status");
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        assert!(f.plans(account.id).await.is_empty());
        assert_eq!(f.stored(account.id).await.status, status);
    }
    let gone = Account {
        deleted_at: Some(Timestamp::now()),
        ..shared::testing::account(5_000, Timestamp::now())
    };
    f.repo.create(&gone).await.unwrap().unwrap();
    let answer = f.call(&f.admin, create_req(gone.id, &monthly(2))).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
}

#[tokio::test]
async fn bad_plans_name_their_field_and_write_nothing() {
    let f = fixture().await;
    let account = f.account(10_000, "USD", None).await;
    let cases = [
        (
            json!({"frequency": "daily", "first_due_date": in_days(1), "installment_count": 2}),
            "frequency",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": "2026-13-01", "installment_count": 2}),
            "first_due_date",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(-1), "installment_count": 2}),
            "first_due_date",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(400), "installment_count": 2}),
            "first_due_date",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(1)}),
            "installment_count",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(1), "installment_count": 2, "installment_amount": 10}),
            "installment_amount",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(1), "installment_count": 0}),
            "installment_count",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(1), "installment_count": 121}),
            "installment_count",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(1), "installment_amount": 0}),
            "installment_amount",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(1), "installment_amount": 1}),
            "installment_amount",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(1), "installment_count": 2, "total_amount": 20_000}),
            "total_amount",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(1), "installment_count": 2, "total_amount": 10.5}),
            "total_amount",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(1), "installment_count": 2, "currency": "EUR"}),
            "currency",
        ),
        (
            json!({"frequency": "monthly", "first_due_date": in_days(1), "installment_count": 2, "extra": 1}),
            "extra",
        ),
    ];
    for (body, field) in &cases {
        let answer = f.call(&f.admin, create_req(account.id, body)).await;
        assert!(
            answer.status == StatusCode::BAD_REQUEST
                || answer.status == StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {} {}",
            answer.status,
            answer.body
        );
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        let fields: Vec<&str> = answer.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(
            fields.iter().any(|f| f.contains(field)),
            "{body}: {fields:?}"
        );
    }
    assert!(f.plans(account.id).await.is_empty());
    let stored = f.stored(account.id).await;
    assert_eq!((stored.version, stored.status), (1, AccountStatus::Active));
}

#[tokio::test]
async fn roles_viewers_are_refused_and_agents_act_on_their_accounts() {
    let f = fixture().await;
    let agent = caller(Role::Agent);
    let theirs = f.account(6_000, "USD", Some(agent.user_id)).await;
    let others = f.account(6_000, "USD", None).await;
    let viewer = caller(Role::Viewer);
    let answer = f.call(&viewer, create_req(theirs.id, &monthly(2))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = f.call(&agent, create_req(others.id, &monthly(2))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let answer = f.call(&agent, create_req(theirs.id, &monthly(2))).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    // Viewers read plans.
    let listed = f
        .call(
            &viewer,
            TestRequest::new(
                "GET /accounts/{id}/plans",
                &format!("/accounts/{}/plans", theirs.id),
            )
            .path_param("id", &theirs.id.to_string()),
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_creation() {
    let f = fixture().await;
    let account = f.account(6_000, "USD", None).await;
    let key = key();
    let first = f
        .call(
            &f.admin,
            create_req(account.id, &monthly(2)).header("idempotency-key", &key),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = f
        .call(
            &f.admin,
            create_req(account.id, &monthly(2)).header("idempotency-key", &key),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["id"], first.body["id"]);
    let other = f
        .call(
            &f.admin,
            create_req(account.id, &monthly(3)).header("idempotency-key", &key),
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(f.plans(account.id).await.len(), 1);
}
