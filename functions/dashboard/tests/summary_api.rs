//! `GET /dashboard/summary` against DynamoDB Local (run under `infra/stack.sh`): the
//! aggregates are seeded the way the notifier writes them, by applying stream changes whose
//! images are real model items (`Account::to_item`, `Payment::to_item`, `Activity::to_item`),
//! then each role's answer is checked.

use dashboard::{dispatch, handle, App};
use http::StatusCode;
use serde_json::{json, Value};
use shared::accounts::{Account, AccountStatus, DpdBucket};
use shared::activities::{Activity, ActivityType};
use shared::auth::users::NewUser;
use shared::auth::{Caller, Role};
use shared::dashboard::{Change, Tracked};
use shared::domain::{Id, MinorUnits, Timestamp};
use shared::payments::{Payment, PaymentMethod, PaymentStatus, AGENT_ATTRIBUTE};
use shared::rate_limit::RateLimits;
use shared::testing::{body_json, TestRequest};
use time::macros::{date, datetime};

const TODAY: time::Date = date!(2026 - 11 - 25);

struct Answer {
    status: StatusCode,
    body: Value,
    headers: http::HeaderMap,
}

impl Answer {
    fn etag(&self) -> String {
        self.headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no ETag: {:?}", self.headers))
            .to_owned()
    }
}

fn get() -> TestRequest {
    TestRequest::new("GET /dashboard/summary", "/dashboard/summary")
}

async fn call(app: &App, caller: &Caller, req: TestRequest) -> Answer {
    let response = shared::http::serve(req.build(), |req| dispatch(app, caller, req, TODAY)).await;
    Answer {
        status: response.status(),
        body: body_json(&response),
        headers: response.headers().clone(),
    }
}

fn caller(role: Role) -> Caller {
    Caller {
        user_id: Id::generate(),
        role,
    }
}

fn at(t: time::OffsetDateTime) -> Timestamp {
    Timestamp::from(t)
}

fn account(
    agent: Option<Id>,
    status: AccountStatus,
    currency: &str,
    balance: i64,
    bucket: DpdBucket,
) -> Account {
    Account {
        currency: currency.parse().unwrap(),
        status,
        assigned_agent_id: agent,
        due_date: date!(2026 - 11 - 10),
        days_past_due: 15,
        dpd_bucket: bucket,
        ..shared::testing::account(balance, at(datetime!(2026-11-01 09:00 UTC)))
    }
}

fn payment(
    on: &Account,
    amount: i64,
    method: PaymentMethod,
    status: PaymentStatus,
    received: time::OffsetDateTime,
) -> Payment {
    Payment {
        id: Id::generate(),
        account_id: on.id,
        amount: MinorUnits(amount),
        currency: on.currency,
        method,
        status,
        reference: None,
        received_at: at(received),
        created_by: Id::generate(),
        version: 1,
        created_at: at(received),
        updated_at: at(received),
    }
}

fn activity(on: &Account, actor: Id, kind: ActivityType, promise: Option<time::Date>) -> Activity {
    Activity {
        id: Id::generate(),
        account_id: on.id,
        activity_type: kind,
        note: "note".into(),
        promise_amount: promise.map(|_| MinorUnits(1_000)),
        promise_date: promise,
        outcome: None,
        actor_id: actor,
        created_at: at(datetime!(2026-11-25 14:00 UTC)),
    }
}

fn insert(table: Tracked, item: shared::dashboard::Item) -> Change {
    Change {
        event_id: Id::generate().to_string(),
        table,
        old: None,
        new: Some(item),
    }
}

/// The payment item as the ledger writes it: with the account's agent at recording time.
fn payment_item(payment: &Payment, agent: Option<Id>) -> shared::dashboard::Item {
    let mut item = payment.to_item().unwrap();
    if let Some(agent) = agent {
        item.insert(
            AGENT_ATTRIBUTE.into(),
            aws_sdk_dynamodb::types::AttributeValue::S(agent.to_string()),
        );
    }
    item
}

struct Seeded {
    app: App,
    agent_a: Id,
    agent_b: Id,
}

/// Agent A: two USD accounts, a card payment today, one earlier this month, a call and a
/// promise today. Agent B: a EUR account with an ACH payment today. One unassigned account
/// and a pending payment (which counts nowhere).
async fn seeded() -> Seeded {
    let app = App::new(shared::testing::platform(RateLimits::off()).await);
    // Agent A and a manager are users; agent B is an id no user has (an import's).
    let user = |name: &str, role: Role| NewUser {
        email: format!("{}@example.com", Id::generate()),
        name: name.into(),
        role,
        password_hash: "not a hash: never signs in".into(),
    };
    let agent_a = app
        .users
        .create(user("Avery Agent", Role::Agent))
        .await
        .unwrap()
        .id;
    let manager = app
        .users
        .create(user("Morgan Manager", Role::Manager))
        .await
        .unwrap()
        .id;
    let agent_b = Id::generate();
    let a1 = account(
        Some(agent_a),
        AccountStatus::Active,
        "USD",
        10_000,
        DpdBucket::Current,
    );
    let a2 = account(
        Some(agent_a),
        AccountStatus::PromiseToPay,
        "USD",
        5_000,
        DpdBucket::D1To30,
    );
    let b1 = account(
        Some(agent_b),
        AccountStatus::Active,
        "EUR",
        7_000,
        DpdBucket::D1To30,
    );
    let loose = account(
        None,
        AccountStatus::Disputed,
        "USD",
        1_000,
        DpdBucket::D90Plus,
    );
    let today = datetime!(2026-11-25 10:30 UTC);
    let changes = vec![
        insert(Tracked::Accounts, a1.to_item().unwrap()),
        insert(Tracked::Accounts, a2.to_item().unwrap()),
        insert(Tracked::Accounts, b1.to_item().unwrap()),
        insert(Tracked::Accounts, loose.to_item().unwrap()),
        insert(
            Tracked::Payments,
            payment_item(
                &payment(
                    &a1,
                    2_500,
                    PaymentMethod::Card,
                    PaymentStatus::Completed,
                    today,
                ),
                Some(agent_a),
            ),
        ),
        insert(
            Tracked::Payments,
            payment_item(
                &payment(
                    &a2,
                    400,
                    PaymentMethod::Check,
                    PaymentStatus::Completed,
                    datetime!(2026-11-03 12:00 UTC),
                ),
                Some(agent_a),
            ),
        ),
        insert(
            Tracked::Payments,
            payment_item(
                &payment(
                    &b1,
                    1_000,
                    PaymentMethod::Ach,
                    PaymentStatus::Completed,
                    today,
                ),
                Some(agent_b),
            ),
        ),
        insert(
            Tracked::Payments,
            payment_item(
                &payment(
                    &loose,
                    99,
                    PaymentMethod::Cash,
                    PaymentStatus::Pending,
                    today,
                ),
                None,
            ),
        ),
        insert(
            Tracked::Activities,
            activity(&a1, agent_a, ActivityType::Call, None)
                .to_item()
                .unwrap(),
        ),
        insert(
            Tracked::Activities,
            activity(
                &a2,
                agent_a,
                ActivityType::PromiseToPay,
                Some(date!(2026 - 11 - 28)),
            )
            .to_item()
            .unwrap(),
        ),
    ];
    // The manager logs a note: its own scope has figures, but it is no agent.
    let mut changes = changes;
    changes.push(insert(
        Tracked::Activities,
        activity(&a1, manager, ActivityType::Note, None)
            .to_item()
            .unwrap(),
    ));
    let applied = app.store.apply(&changes).await.unwrap();
    assert_eq!(applied.duplicates, 0);
    Seeded {
        app,
        agent_a,
        agent_b,
    }
}

fn zeros_but(pairs: &[(&str, i64)], keys: &[&str]) -> Value {
    let mut map = serde_json::Map::new();
    for key in keys {
        map.insert((*key).to_owned(), json!(0));
    }
    for (key, n) in pairs {
        map.insert((*key).to_owned(), json!(n));
    }
    Value::Object(map)
}

const STATUSES: [&str; 6] = [
    "active",
    "promise_to_pay",
    "payment_plan",
    "disputed",
    "paid",
    "closed",
];
const BUCKETS: [&str; 5] = ["current", "1-30", "31-60", "61-90", "90+"];

#[tokio::test]
async fn admins_and_managers_see_everyone_and_each_agent() {
    let s = seeded().await;
    let admin = call(&s.app, &caller(Role::Admin), get()).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
    let b = &admin.body;
    assert_eq!(b["date"], "2026-11-25");
    assert_eq!(b["scope"], "all");
    assert_eq!(b["agent_id"], Value::Null);
    assert_eq!(b["accounts"]["total"], 4);
    assert_eq!(
        b["accounts"]["by_status"],
        zeros_but(
            &[("active", 2), ("promise_to_pay", 1), ("disputed", 1)],
            &STATUSES
        )
    );
    assert_eq!(
        b["accounts"]["by_dpd_bucket"],
        zeros_but(&[("current", 1), ("1-30", 2), ("90+", 1)], &BUCKETS)
    );
    assert_eq!(b["outstanding"], json!({"USD": 16_000, "EUR": 7_000}));
    assert_eq!(b["today"]["collected"], json!({"USD": 2_500, "EUR": 1_000}));
    assert_eq!(
        b["today"]["payments_by_method"]["card"],
        json!({"count": 1, "amount": {"USD": 2_500}})
    );
    assert_eq!(
        b["today"]["payments_by_method"]["cash"],
        json!({"count": 0, "amount": {}}),
        "a pending payment counts nowhere"
    );
    assert_eq!(b["today"]["activities"]["call"], 1);
    assert_eq!(b["today"]["activities"]["promise_to_pay"], 1);
    assert_eq!(
        b["today"]["promises"],
        json!({"due": 0, "kept": 0, "broken": 0})
    );
    assert_eq!(
        b["month"]["collected"],
        json!({"USD": 2_900, "EUR": 1_000}),
        "earlier this month counts in the month only"
    );
    assert_eq!(b["month"]["promises"]["due"], 1, "due on the 28th");
    assert_eq!(
        admin.headers["cache-control"], "private, no-cache",
        "{:?}",
        admin.headers
    );
    assert_eq!(admin.headers["content-type"], "application/json");

    let agents = b["agents"].as_array().unwrap();
    let mut expected_ids = [s.agent_a.to_string(), s.agent_b.to_string()];
    expected_ids.sort();
    let ids: Vec<&str> = agents
        .iter()
        .map(|a| a["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids, expected_ids,
        "sorted, only agents with figures: not the manager who logged a note"
    );
    let a = agents
        .iter()
        .find(|a| a["agent_id"] == s.agent_a.to_string())
        .unwrap();
    assert_eq!(a["name"], "Avery Agent");
    assert_eq!(a["accounts"]["total"], 2);
    assert_eq!(a["outstanding"], json!({"USD": 15_000}));
    assert_eq!(a["today"]["collected"], json!({"USD": 2_500}));
    assert_eq!(a["month"]["collected"], json!({"USD": 2_900}));
    let agent_b = agents
        .iter()
        .find(|a| a["agent_id"] == s.agent_b.to_string())
        .unwrap();
    assert_eq!(agent_b["name"], Value::Null, "no user has this id");
    assert_eq!(agent_b["today"]["collected"], json!({"EUR": 1_000}));
    assert_eq!(agent_b["today"]["activities"]["call"], 0);

    // A manager's dashboard is the same document, so the same ETag.
    let manager = call(&s.app, &caller(Role::Manager), get()).await;
    assert_eq!(manager.status, StatusCode::OK);
    assert_eq!(manager.body, admin.body);
    assert_eq!(manager.etag(), admin.etag());
}

#[tokio::test]
async fn viewers_see_everyone_without_the_per_agent_list() {
    let s = seeded().await;
    let admin = call(&s.app, &caller(Role::Admin), get()).await;
    let viewer = call(&s.app, &caller(Role::Viewer), get()).await;
    assert_eq!(viewer.status, StatusCode::OK, "{}", viewer.body);
    assert!(viewer.body.get("agents").is_none(), "{}", viewer.body);
    let mut without_agents = admin.body.clone();
    without_agents.as_object_mut().unwrap().remove("agents");
    assert_eq!(viewer.body, without_agents);
    assert_ne!(viewer.etag(), admin.etag());
}

#[tokio::test]
async fn an_agent_sees_only_its_own_figures() {
    let s = seeded().await;
    let me = Caller {
        user_id: s.agent_a,
        role: Role::Agent,
    };
    let answer = call(&s.app, &me, get()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let b = &answer.body;
    assert_eq!(b["scope"], "agent");
    assert_eq!(b["agent_id"], s.agent_a.to_string());
    assert!(b.get("agents").is_none());
    assert_eq!(b["accounts"]["total"], 2);
    assert_eq!(b["outstanding"], json!({"USD": 15_000}), "not B's EUR");
    assert_eq!(b["today"]["collected"], json!({"USD": 2_500}));
    assert_eq!(b["today"]["payments_by_method"]["ach"]["count"], 0);
    assert_eq!(b["today"]["activities"]["call"], 1);

    // An agent with nothing assigned gets a complete dashboard of zeros.
    let newcomer = call(&s.app, &caller(Role::Agent), get()).await;
    assert_eq!(newcomer.status, StatusCode::OK);
    assert_eq!(newcomer.body["accounts"]["total"], 0);
    assert_eq!(newcomer.body["outstanding"], json!({}));
    assert_eq!(newcomer.body["accounts"]["by_status"]["active"], 0);
    assert_eq!(newcomer.body["today"]["activities"]["call"], 0);
}

#[tokio::test]
async fn if_none_match_answers_304_until_a_figure_moves() {
    let s = seeded().await;
    let admin = caller(Role::Admin);
    let first = call(&s.app, &admin, get()).await;
    let etag = first.etag();
    assert!(!etag.starts_with("W/"), "strong: {etag}");

    let again = call(&s.app, &admin, get().header("If-None-Match", &etag)).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.body, Value::Null, "no body");
    assert_eq!(again.etag(), etag);
    assert_eq!(again.headers["cache-control"], "private, no-cache");
    // Weak comparison, lists of tags and `*`, as RFC 9110 says for If-None-Match.
    for header in [
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".to_owned(),
    ] {
        let answer = call(&s.app, &admin, get().header("If-None-Match", &header)).await;
        assert_eq!(answer.status, StatusCode::NOT_MODIFIED, "{header}");
    }
    let stale = call(&s.app, &admin, get().header("If-None-Match", "\"other\"")).await;
    assert_eq!(stale.status, StatusCode::OK);

    // A new completed payment moves today's figures: a new ETag, the old one is stale.
    let agent = Id::generate();
    let acct = account(
        Some(agent),
        AccountStatus::Active,
        "USD",
        900,
        DpdBucket::Current,
    );
    let paid = payment(
        &acct,
        300,
        PaymentMethod::Wire,
        PaymentStatus::Completed,
        datetime!(2026-11-25 16:00 UTC),
    );
    s.app
        .store
        .apply(&[insert(Tracked::Payments, payment_item(&paid, Some(agent)))])
        .await
        .unwrap();
    let moved = call(&s.app, &admin, get().header("If-None-Match", &etag)).await;
    assert_eq!(moved.status, StatusCode::OK);
    assert_ne!(moved.etag(), etag);
    assert_eq!(
        moved.body["today"]["payments_by_method"]["wire"]["count"],
        1
    );
}

#[tokio::test]
async fn a_query_parameter_is_a_400_naming_it() {
    let s = seeded().await;
    let answer = call(&s.app, &caller(Role::Admin), get().query("agent_id=x")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(
        answer.headers["content-type"], "application/problem+json",
        "{:?}",
        answer.headers
    );
    assert_eq!(
        answer.body["errors"][0]["field"], "agent_id",
        "names the parameter: {}",
        answer.body
    );
}

#[tokio::test]
async fn without_a_token_the_answer_is_401() {
    let s = seeded().await;
    for req in [get(), get().bearer("not-a-token")] {
        let response = shared::http::serve(req.build(), |req| handle(&s.app, req)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = body_json(&response);
        assert_eq!(body["status"], 401, "{body}");
    }
}
