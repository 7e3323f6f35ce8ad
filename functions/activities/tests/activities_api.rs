//! The activities handlers against DynamoDB Local (run under `infra/stack.sh`), with an
//! injected clock: the Regulation F rules are checked at fixed debtor-local times.

use std::time::Duration;

use activities::{dispatch, App};
use futures::future::join_all;
use http::StatusCode;
use serde_json::{json, Value};
use shared::accounts::{Account, AccountRepo, AccountStatus};
use shared::auth::{Caller, Role};
use shared::config::Config;
use shared::domain::{Id, Timestamp};
use shared::rate_limit::RateLimits;
use shared::testing::{body_json, TestRequest};

struct Fixture {
    app: App,
    config: Config,
    dynamodb: aws_sdk_dynamodb::Client,
    repo: AccountRepo,
    admin: Caller,
}

async fn fixture() -> Fixture {
    let platform = shared::testing::platform(RateLimits::off()).await;
    let config = platform.config.clone();
    let dynamodb = platform.clients.dynamodb.clone();
    let app = App::new(platform);
    let repo = AccountRepo::new(
        dynamodb.clone(),
        config.tables.accounts.clone(),
        config.tables.activities.clone(),
    );
    Fixture {
        app,
        config,
        dynamodb,
        repo,
        admin: caller(Role::Admin),
    }
}

fn caller(role: Role) -> Caller {
    Caller {
        user_id: Id::generate(),
        role,
    }
}

/// 12:00 in New York (EST, UTC−5) on 2026-11-25.
fn noon() -> Timestamp {
    "2026-11-25T17:00:00Z".parse().unwrap()
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn hours(ts: Timestamp, h: i64) -> Timestamp {
    ts.plus(time::Duration::hours(h))
}

struct Answer {
    status: StatusCode,
    body: Value,
}

impl Fixture {
    async fn account(&self, balance: i64, agent: Option<Id>) -> Account {
        let account = Account {
            assigned_agent_id: agent,
            ..shared::testing::account(balance, Timestamp::now())
        };
        self.repo.create(&account).await.unwrap().unwrap();
        account
    }

    async fn call(&self, caller: &Caller, req: TestRequest, now: Timestamp) -> Answer {
        let response =
            shared::http::serve(req.build(), |req| dispatch(&self.app, caller, req, now)).await;
        Answer {
            status: response.status(),
            body: body_json(&response),
        }
    }

    async fn log(&self, caller: &Caller, account: Id, body: Value, now: Timestamp) -> Answer {
        self.call(caller, log_request(account, &body), now).await
    }

    async fn timeline(&self, caller: &Caller, account: Id, query: &str) -> Answer {
        self.call(
            caller,
            TestRequest::new(
                "GET /accounts/{id}/activities",
                &format!("/accounts/{account}/activities"),
            )
            .path_param("id", &account.to_string())
            .query(query),
            Timestamp::now(),
        )
        .await
    }

    async fn all(&self, account: Id, query: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = query.to_owned();
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let answer = self
                .timeline(&self.admin, account, q.trim_start_matches('&'))
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            items.extend(answer.body["items"].as_array().unwrap().clone());
            match answer.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
    }

    async fn batch(&self, caller: &Caller, body: Value) -> Answer {
        self.call(
            caller,
            TestRequest::new("POST /activities/batch", "/activities/batch").json(&body),
            Timestamp::now(),
        )
        .await
    }
}

fn log_request(account: Id, body: &Value) -> TestRequest {
    TestRequest::new(
        "POST /accounts/{id}/activities",
        &format!("/accounts/{account}/activities"),
    )
    .path_param("id", &account.to_string())
    .json(body)
}

fn call_body(outcome: &str) -> Value {
    json!({"type": "call", "outcome": outcome, "note": "called"})
}

#[tokio::test]
async fn calls_outside_8_to_21_debtor_time_are_refused() {
    let f = fixture().await;
    let account = f.account(1_000, None).await;
    // 22:00 in New York.
    let late = f
        .log(
            &f.admin,
            account.id,
            call_body("no_answer"),
            at("2026-11-26T03:00:00Z"),
        )
        .await;
    assert_eq!(
        late.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        late.body
    );
    assert_eq!(
        late.body["type"],
        "https://collectpro.dev/problems/call-outside-hours"
    );
    assert!(late.body["detail"].as_str().unwrap().contains("22:00"));
    // 07:59 refused; 08:00 and 21:00 allowed.
    let early = f
        .log(
            &f.admin,
            account.id,
            call_body("no_answer"),
            at("2026-11-25T12:59:00Z"),
        )
        .await;
    assert_eq!(early.status, StatusCode::UNPROCESSABLE_ENTITY);
    for ok in ["2026-11-25T13:00:00Z", "2026-11-26T02:00:00Z"] {
        let answer = f
            .log(&f.admin, account.id, call_body("no_answer"), at(ok))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{ok}: {}", answer.body);
    }
    // Other types are not calls.
    let email = f
        .log(
            &f.admin,
            account.id,
            json!({"type": "email", "note": "sent"}),
            at("2026-11-26T03:00:00Z"),
        )
        .await;
    assert_eq!(email.status, StatusCode::CREATED);
}

#[tokio::test]
async fn the_eighth_call_in_seven_days_is_refused() {
    let f = fixture().await;
    let account = f.account(1_000, None).await;
    let start = noon();
    for day in 0..7 {
        let answer = f
            .log(
                &f.admin,
                account.id,
                call_body("left_message"),
                hours(start, 24 * day),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "call {day}: {}",
            answer.body
        );
    }
    // Day 6, 3 hours later: the 8th attempt within 7 days.
    let eighth = f
        .log(
            &f.admin,
            account.id,
            call_body("no_answer"),
            hours(start, 24 * 6 + 3),
        )
        .await;
    assert_eq!(
        eighth.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        eighth.body
    );
    assert_eq!(
        eighth.body["type"],
        "https://collectpro.dev/problems/call-frequency-limit"
    );
    // Once the first call is more than 7 days old, one more is allowed.
    let later = f
        .log(
            &f.admin,
            account.id,
            call_body("no_answer"),
            hours(start, 24 * 7 + 1),
        )
        .await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.body);
    let calls = f.all(account.id, "type=call").await;
    assert_eq!(calls.len(), 8);
}

#[tokio::test]
async fn a_conversation_stops_calls_for_seven_days() {
    let f = fixture().await;
    let account = f.account(1_000, None).await;
    let talked = f
        .log(
            &f.admin,
            account.id,
            call_body("right_party_contact"),
            noon(),
        )
        .await;
    assert_eq!(talked.status, StatusCode::CREATED);
    let next = f
        .log(
            &f.admin,
            account.id,
            call_body("no_answer"),
            hours(noon(), 24),
        )
        .await;
    assert_eq!(next.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        next.body["type"],
        "https://collectpro.dev/problems/call-after-conversation"
    );
    let after = f
        .log(
            &f.admin,
            account.id,
            call_body("no_answer"),
            hours(noon(), 24 * 7 + 1),
        )
        .await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.body);
}

#[tokio::test]
async fn concurrent_calls_are_counted_exactly() {
    let f = fixture().await;
    let account = f.account(1_000, None).await;
    let answers = join_all((0..12).map(|i| {
        f.log(
            &f.admin,
            account.id,
            call_body("no_answer"),
            hours(noon(), 0).plus(time::Duration::seconds(i)),
        )
    }))
    .await;
    let accepted = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    for answer in &answers {
        assert!(
            matches!(
                answer.status,
                StatusCode::CREATED | StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT
            ),
            "{}: {}",
            answer.status,
            answer.body
        );
    }
    assert_eq!(accepted, 7);
    assert_eq!(f.all(account.id, "type=call").await.len(), 7);
}

#[tokio::test]
async fn promises_and_disputes_move_the_account() {
    let f = fixture().await;
    let account = f.account(5_000, None).await;
    let promise = |amount: i64, date: &str| json!({"type": "promise_to_pay", "promise_amount": amount, "promise_date": date, "note": "will pay"});
    // In the past (debtor time), beyond 90 days, malformed, missing: 400.
    for body in [
        promise(100, "2026-11-24"),
        promise(100, "2027-03-01"),
        promise(100, "26-11-30"),
        json!({"type": "promise_to_pay", "promise_amount": 100}),
        json!({"type": "promise_to_pay", "promise_amount": 0, "promise_date": "2026-12-01"}),
    ] {
        let answer = f.log(&f.admin, account.id, body.clone(), noon()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.body
        );
    }
    let too_much = f
        .log(&f.admin, account.id, promise(5_001, "2026-12-01"), noon())
        .await;
    assert_eq!(
        too_much.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        too_much.body
    );
    let stored = f.repo.get(account.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.version), (AccountStatus::Active, 1));

    // Today (debtor time) is fine.
    let ok = f
        .log(&f.admin, account.id, promise(2_000, "2026-11-25"), noon())
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(ok.body["promise_amount"], 2_000);
    assert_eq!(ok.body["promise_date"], "2026-11-25");
    let stored = f.repo.get(account.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.version),
        (AccountStatus::PromiseToPay, 2)
    );
    // The promise carries its sparse index keys.
    let item = f
        .dynamodb
        .get_item()
        .table_name(f.config.tables.activities.as_str())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(account.id.to_string()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(ok.body["id"].as_str().unwrap().to_owned()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(item["promise_pk"].as_s().unwrap().starts_with("PROMISE#"));
    assert!(item["promise_sk"]
        .as_s()
        .unwrap()
        .starts_with("2026-11-25#"));

    let dispute = f
        .log(
            &f.admin,
            account.id,
            json!({"type": "dispute", "note": "not mine"}),
            noon(),
        )
        .await;
    assert_eq!(dispute.status, StatusCode::CREATED);
    let stored = f.repo.get(account.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.version),
        (AccountStatus::Disputed, 3)
    );
    let changes = f.all(account.id, "type=status_change").await;
    assert_eq!(changes.len(), 2);
    assert!(changes[0]["note"].as_str().unwrap().contains("to disputed"));
}

#[tokio::test]
async fn bad_activities_are_refused() {
    let f = fixture().await;
    let account = f.account(1_000, None).await;
    for body in [
        json!({"type": "payment", "note": "x"}),
        json!({"type": "status_change"}),
        json!({"type": "fax"}),
        json!({"type": "note", "note": "x".repeat(2001)}),
        json!({"type": "email", "outcome": "no_answer"}),
        json!({"type": "call", "outcome": "hung_up"}),
        json!({"type": "note", "promise_amount": 5}),
        json!({"type": "note", "extra": true}),
    ] {
        let answer = f.log(&f.admin, account.id, body.clone(), noon()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.body
        );
    }
    let long_ok = f
        .log(
            &f.admin,
            account.id,
            json!({"type": "note", "note": "x".repeat(2000)}),
            noon(),
        )
        .await;
    assert_eq!(long_ok.status, StatusCode::CREATED);
    let unknown = f
        .log(&f.admin, Id::generate(), json!({"type": "note"}), noon())
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_timeline_is_newest_first_paged_and_filtered() {
    let f = fixture().await;
    let account = f.account(1_000, None).await;
    let mut ids = Vec::new();
    for (i, kind) in ["note", "email", "sms", "letter", "note", "email", "note"]
        .iter()
        .enumerate()
    {
        let answer = f
            .log(
                &f.admin,
                account.id,
                json!({"type": kind, "note": format!("#{i}")}),
                noon(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        ids.push(answer.body["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // A call writes the call-log item too; it never shows in the timeline.
    let call = f
        .log(&f.admin, account.id, call_body("no_answer"), noon())
        .await;
    ids.push(call.body["id"].as_str().unwrap().to_owned());
    let all = f.all(account.id, "limit=3").await;
    let got: Vec<String> = all
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    ids.reverse();
    assert_eq!(got, ids);
    assert_eq!(f.all(account.id, "type=note&limit=1").await.len(), 3);
    for bad in ["limit=0", "limit=101", "type=fax", "cursor=zzz", "x=1"] {
        assert_eq!(
            f.timeline(&f.admin, account.id, bad).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn agents_log_and_read_only_their_accounts_viewers_only_read() {
    let f = fixture().await;
    let agent = caller(Role::Agent);
    let mine = f.account(1_000, Some(agent.user_id)).await;
    let theirs = f.account(1_000, Some(Id::generate())).await;
    let note = json!({"type": "note", "note": "hello"});
    assert_eq!(
        f.log(&agent, mine.id, note.clone(), noon()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        f.log(&agent, theirs.id, note.clone(), noon()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.timeline(&agent, theirs.id, "").await.status,
        StatusCode::NOT_FOUND
    );
    let viewer = caller(Role::Viewer);
    assert_eq!(
        f.log(&viewer, mine.id, note, noon()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.timeline(&viewer, mine.id, "").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn batch_answers_each_id() {
    let f = fixture().await;
    let agent = caller(Role::Agent);
    let mut mine = Vec::new();
    for _ in 0..3 {
        let account = f.account(1_000, Some(agent.user_id)).await;
        for i in 0..4 {
            f.log(
                &f.admin,
                account.id,
                json!({"type": "note", "note": format!("n{i}")}),
                noon(),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        mine.push(account.id);
    }
    let foreign = f.account(1_000, Some(Id::generate())).await;
    let unknown = Id::generate();
    let ids: Vec<String> = [mine[0], unknown, mine[1], foreign.id, mine[2], mine[0]]
        .iter()
        .map(|id| id.to_string())
        .collect();
    let answer = f
        .batch(&agent, json!({"account_ids": ids, "limit": 2}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let results = answer.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (result, id) in results.iter().zip(&mine) {
        assert_eq!(result["account_id"], id.to_string());
        let activities = result["activities"].as_array().unwrap();
        assert_eq!(activities.len(), 2);
        assert_eq!(activities[0]["note"], "n3");
    }
    let errors = answer.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["account_id"], unknown.to_string());
    assert_eq!(errors[0]["reason"], "not_found");
    assert_eq!(errors[1]["account_id"], foreign.id.to_string());
    assert_eq!(errors[1]["reason"], "forbidden");
    // An admin sees the foreign one too.
    let answer = f.batch(&f.admin, json!({"account_ids": ids})).await;
    assert_eq!(answer.body["results"].as_array().unwrap().len(), 4);

    let many: Vec<String> = (0..101).map(|_| Id::generate().to_string()).collect();
    for body in [
        json!({"account_ids": many}),
        json!({"account_ids": []}),
        json!({"account_ids": ["nope"]}),
        json!({"account_ids": [mine[0].to_string()], "limit": 51}),
    ] {
        assert_eq!(
            f.batch(&f.admin, body.clone()).await.status,
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    let hundred: Vec<String> = (0..100).map(|_| Id::generate().to_string()).collect();
    let answer = f
        .batch(&f.admin, json!({"account_ids": hundred, "limit": 50}))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["errors"].as_array().unwrap().len(), 100);
}

/// Hole 9 (issue 13): 100,000 empty ids used to answer ~9 MB of field errors (over
/// Lambda's 6 MB response limit); the list size is checked first and the errors are capped.
#[tokio::test]
async fn a_huge_batch_is_one_small_problem() {
    let f = fixture().await;
    let empty: Vec<String> = vec![String::new(); 100_000];
    let answer = f.batch(&f.admin, json!({"account_ids": empty})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let size = serde_json::to_vec(&answer.body).unwrap().len();
    assert!(size < 16 * 1024, "the problem is {size} bytes");
    let errors = answer.body["errors"].as_array().unwrap();
    assert_eq!(errors[0]["field"], "account_ids", "{}", answer.body);
    // 100 malformed ids and a bad limit: the first 50 errors and the count of all 101.
    let bad: Vec<String> = (0..100).map(|i| format!("bad-{i}")).collect();
    let answer = f
        .batch(&f.admin, json!({"account_ids": bad, "limit": 0}))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let errors = answer.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 50, "{}", answer.body);
    assert_eq!(answer.body["error_count"], 101, "{}", answer.body);
}

/// Hole 8 (issue 13): a promise amount is at most 10^12 minor units.
#[tokio::test]
async fn promise_amounts_are_bounded() {
    let f = fixture().await;
    let account = f.account(1_000, None).await;
    let date = shared::accounts::model::format_date(
        noon().as_offset_date_time().date() + time::Duration::days(3),
    );
    for amount in [json!(1_000_000_000_001_i64), json!(i64::MAX)] {
        let answer = f
            .log(
                &f.admin,
                account.id,
                json!({"type": "promise_to_pay", "promise_amount": amount, "promise_date": date}),
                noon(),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{amount}: {}",
            answer.body
        );
        assert_eq!(answer.body["errors"][0]["field"], "promise_amount");
    }
}

/// Issue 13, hole 5: logging a promise is no way around the status rules — an agent's
/// promise cannot take its account out of a dispute (or out of closed); a manager's can.
#[tokio::test]
async fn an_agents_promise_does_not_clear_a_dispute() {
    let f = fixture().await;
    let agent = caller(Role::Agent);
    let manager = caller(Role::Manager);
    let date = shared::accounts::model::format_date(
        noon().as_offset_date_time().date() + time::Duration::days(3),
    );
    let promise = json!({"type": "promise_to_pay", "promise_amount": 100, "promise_date": date});
    for status in [AccountStatus::Disputed, AccountStatus::Closed] {
        let account = Account {
            status,
            assigned_agent_id: Some(agent.user_id),
            ..shared::testing::account(1_000, Timestamp::now())
        };
        f.repo.create(&account).await.unwrap().unwrap();
        let answer = f.log(&agent, account.id, promise.clone(), noon()).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{status}: {}",
            answer.body
        );
        assert_eq!(answer.body["errors"][0]["field"], "type");
        let stored = f.repo.get(account.id).await.unwrap().unwrap();
        assert_eq!(stored.status, status, "unchanged");
        assert_eq!(stored.version, 1);
        let answer = f.log(&manager, account.id, promise.clone(), noon()).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        let stored = f.repo.get(account.id).await.unwrap().unwrap();
        assert_eq!(stored.status, AccountStatus::PromiseToPay);
    }
}
