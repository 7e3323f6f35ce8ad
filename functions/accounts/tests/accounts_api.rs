//! The accounts handlers against DynamoDB Local (run under `infra/stack.sh`): `dispatch`
//! is called with a `Caller` directly, so these tests are about the handler logic.

use std::collections::{BTreeSet, HashMap};

use accounts::{dispatch_at, App};
use http::StatusCode;
use serde_json::{json, Value};
use shared::auth::users::{NewUser, UserChanges, UserRepo};
use shared::auth::{Caller, Role};
use shared::config::Config;
use shared::domain::{Id, Timestamp};
use shared::rate_limit::RateLimits;
use shared::testing::{body_json, TestRequest};

struct Fixture {
    app: App,
    config: Config,
    dynamodb: aws_sdk_dynamodb::Client,
    users: UserRepo,
    admin: Caller,
}

async fn fixture() -> Fixture {
    let app = App::new(shared::testing::platform(RateLimits::off()).await);
    let config = app.platform.config.clone();
    let dynamodb = app.platform.clients.dynamodb.clone();
    let users = UserRepo::new(dynamodb.clone(), config.tables.users.clone());
    Fixture {
        app,
        config,
        dynamodb,
        users,
        admin: caller(Role::Admin),
    }
}

fn caller(role: Role) -> Caller {
    Caller {
        user_id: Id::generate(),
        role,
    }
}

struct Answer {
    status: StatusCode,
    body: Value,
    headers: http::HeaderMap,
}

impl Fixture {
    /// A user stored in the Users table (assignments check it), as a caller.
    async fn user(&self, role: Role) -> Caller {
        let user = self
            .users
            .create(NewUser {
                email: format!("{}@example.com", Id::generate()).to_lowercase(),
                name: format!("Test {role:?}"),
                role,
                password_hash: "not-a-hash: these users never sign in".into(),
            })
            .await
            .unwrap();
        Caller {
            user_id: user.id,
            role,
        }
    }

    async fn disable(&self, user: &Caller) {
        let current = self.users.get(user.user_id).await.unwrap().unwrap();
        let changes = UserChanges {
            disabled: Some(true),
            ..Default::default()
        };
        self.users.update(&current, &changes).await.unwrap();
    }

    /// The account's activities, oldest first.
    async fn activities(&self, id: &str) -> Vec<shared::activities::Activity> {
        let output = self
            .dynamodb
            .query()
            .table_name(self.config.tables.activities.as_str())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(id.to_owned()),
            )
            .send()
            .await
            .unwrap();
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| shared::activities::Activity::from_item(item).unwrap())
            .collect()
    }

    async fn call(&self, caller: &Caller, req: TestRequest) -> Answer {
        self.call_at(caller, req, Timestamp::now()).await
    }

    async fn call_at(&self, caller: &Caller, req: TestRequest, now: Timestamp) -> Answer {
        let response =
            shared::http::serve(req.build(), |req| dispatch_at(&self.app, caller, req, now)).await;
        Answer {
            status: response.status(),
            body: body_json(&response),
            headers: response.headers().clone(),
        }
    }

    async fn create(&self, body: Value) -> Value {
        let answer = self.call(&self.admin, post(body)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body
    }

    async fn list(&self, caller: &Caller, query: &str) -> Answer {
        self.call(
            caller,
            TestRequest::new("GET /accounts", "/accounts").query(query),
        )
        .await
    }

    /// Every page of a list, `limit` at a time.
    async fn all_pages(&self, caller: &Caller, query: &str, limit: usize) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut q = format!("{query}&limit={limit}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let answer = self.list(caller, q.trim_start_matches('&')).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            let page = answer.body["items"].as_array().unwrap().clone();
            assert!(page.len() <= limit);
            items.extend(page);
            match answer.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
        panic!("paging did not end");
    }
}

fn post(body: Value) -> TestRequest {
    TestRequest::new("POST /accounts", "/accounts").json(&body)
}

fn get(id: &str) -> TestRequest {
    TestRequest::new("GET /accounts/{id}", &format!("/accounts/{id}")).path_param("id", id)
}

fn patch(id: &str, body: Value) -> TestRequest {
    TestRequest::new("PATCH /accounts/{id}", &format!("/accounts/{id}"))
        .path_param("id", id)
        .json(&body)
}

fn delete(id: &str) -> TestRequest {
    TestRequest::new("DELETE /accounts/{id}", &format!("/accounts/{id}")).path_param("id", id)
}

fn account(n: usize) -> Value {
    let statuses = [
        "active",
        "promise_to_pay",
        "payment_plan",
        "disputed",
        "paid",
        "closed",
    ];
    let due =
        time::OffsetDateTime::now_utc().date() - time::Duration::days((n as i64 * 7) % 150 - 20);
    json!({
        "reference": format!("REF-{n:05}"),
        "debtor_name": format!("Débtor {n}"),
        "debtor_email": format!("debtor{n}@example.com"),
        "debtor_phone": format!("+1415555{n:04}"),
        "debtor_timezone": "America/New_York",
        "currency": "USD",
        // `paid` follows from a zero balance (shared::accounts::rules).
        "original_balance": if statuses[n % statuses.len()] == "paid" {
            0
        } else {
            1000 + (n as i64 * 7919) % 50_000
        },
        "status": statuses[n % statuses.len()],
        "due_date": shared::accounts::model::format_date(due),
        "tags": ["seed"],
    })
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

fn field_of(answer: &Answer) -> String {
    answer.body["errors"][0]["field"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn create_get_etag_and_validation() {
    let f = fixture().await;
    let created = f.create(account(1)).await;
    assert_eq!(created["version"], 1);
    assert_eq!(created["balance"], created["original_balance"]);
    assert_eq!(created["deleted_at"], Value::Null);
    let id = created["id"].as_str().unwrap();

    let answer = f.call(&f.admin, get(id)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let etag = answer.headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with("\"1-"), "version first: {etag}");
    assert_eq!(answer.headers["cache-control"], "private, no-cache");
    let answer = f
        .call(&f.admin, get(id).header("if-none-match", &etag))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    let answer = f.call(&f.admin, get(&Id::generate().to_string())).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = f.call(&f.admin, get("nope")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    // Duplicate reference (case-insensitive): 409.
    let mut dup = account(2);
    dup["reference"] = json!("ref-00001");
    let answer = f.call(&f.admin, post(dup)).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);

    for (field, value) in [
        ("currency", json!("XXY")),
        ("original_balance", json!(-1)),
        ("original_balance", json!(10.5)),
        ("debtor_email", json!("not-an-email")),
        ("debtor_phone", json!("415-555-0100")),
        ("debtor_timezone", json!("Mars/Olympus")),
        ("due_date", json!("2026-02-30")),
        ("balance", json!(5)),
    ] {
        let mut body = account(3);
        body[field] = value;
        let answer = f.call(&f.admin, post(body)).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{field}: {}",
            answer.body
        );
        let named = answer.body["errors"]
            .as_array()
            .map(|e| {
                e.iter().any(|e| {
                    e["field"] == field || e["message"].as_str().unwrap_or("").contains(field)
                })
            })
            .unwrap_or(false);
        assert!(named, "{field}: {}", answer.body);
    }
}

#[tokio::test]
async fn paging_visits_each_account_once_in_order_for_every_sort() {
    let f = fixture().await;
    let mut created = Vec::new();
    for n in 0..60 {
        created.push(f.create(account(n)).await);
    }
    let all: BTreeSet<String> = ids(&created).into_iter().collect();
    for sort in [
        "created_at",
        "-created_at",
        "updated_at",
        "-updated_at",
        "balance",
        "-balance",
        "due_date",
        "-due_date",
        "days_past_due",
        "-days_past_due",
    ] {
        let items = f.all_pages(&f.admin, &format!("sort={sort}"), 7).await;
        let got = ids(&items);
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), 60, "{sort}: each exactly once");
        assert_eq!(unique, all, "{sort}");
        let (key, desc) = match sort.strip_prefix('-') {
            Some(k) => (k, true),
            None => (sort, false),
        };
        let value = |item: &Value| -> String {
            match key {
                "balance" => format!("{:019}", item["balance"].as_i64().unwrap()),
                "days_past_due" => format!("{:06}", item["days_past_due"].as_i64().unwrap()),
                _ => item[key].as_str().unwrap().to_owned(),
            }
        };
        for pair in items.windows(2) {
            let (a, b) = (value(&pair[0]), value(&pair[1]));
            let ok = if desc { a >= b } else { a <= b };
            assert!(ok, "{sort}: {a} then {b}");
        }
    }

    // Accounts added and changed between pages: the original ones still come exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut round = 0;
    loop {
        let mut q = "limit=7&sort=created_at".to_owned();
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let answer = f.list(&f.admin, &q).await;
        assert_eq!(answer.status, StatusCode::OK);
        seen.extend(ids(answer.body["items"].as_array().unwrap()));
        let next = answer.body["next_cursor"].as_str().map(str::to_owned);
        round += 1;
        // Between pages: a new account, and an update of an existing one.
        f.create(account(1000 + round)).await;
        let target = created[(round * 7) % 60]["id"].as_str().unwrap().to_owned();
        let etag = f.call(&f.admin, get(&target)).await.headers["etag"].clone();
        let answer = f
            .call(
                &f.admin,
                patch(&target, json!({"tags": ["touched"]}))
                    .header("if-match", etag.to_str().unwrap()),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(round < 100);
    }
    let originals: Vec<&String> = seen.iter().filter(|id| all.contains(*id)).collect();
    let unique: BTreeSet<&String> = originals.iter().copied().collect();
    assert_eq!(originals.len(), 60, "each original exactly once");
    assert_eq!(unique.len(), 60);
}

#[tokio::test]
async fn filters_match_an_in_memory_evaluation() {
    let f = fixture().await;
    let agent = f.user(Role::Agent).await;
    let mut created = Vec::new();
    for n in 0..40 {
        let mut body = account(n);
        if n % 3 == 0 {
            body["assigned_agent_id"] = json!(agent.user_id.to_string());
        }
        if n == 5 {
            body["debtor_name"] = json!("José García-López");
            body["debtor_phone"] = json!("+447700900123");
            body["debtor_email"] = json!("Jose.Garcia@Example.org");
        }
        created.push(f.create(body).await);
    }
    let check = |query: String, expect: Box<dyn Fn(&Value) -> bool>| {
        let expected: BTreeSet<String> = created
            .iter()
            .filter(|a| expect(a))
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        (query, expected)
    };
    let agent_id = agent.user_id.to_string();
    let cases = vec![
        check(
            "status=disputed".into(),
            Box::new(|a| a["status"] == "disputed"),
        ),
        check(
            format!("agent_id={agent_id}"),
            Box::new(move |a| a["assigned_agent_id"] == json!(agent.user_id.to_string())),
        ),
        check(
            format!("agent_id={agent_id}&status=active&sort=-balance"),
            Box::new(move |a| {
                a["assigned_agent_id"] == json!(agent.user_id.to_string())
                    && a["status"] == "active"
            }),
        ),
        check(
            "min_balance=10000&max_balance=30000".into(),
            Box::new(|a| (10000..=30000).contains(&a["balance"].as_i64().unwrap())),
        ),
        check(
            "min_balance=10000&sort=balance".into(),
            Box::new(|a| a["balance"].as_i64().unwrap() >= 10000),
        ),
        check(
            "max_balance=20000&sort=due_date&status=active".into(),
            Box::new(|a| a["balance"].as_i64().unwrap() <= 20000 && a["status"] == "active"),
        ),
        check(
            "dpd_bucket=current".into(),
            Box::new(|a| a["dpd_bucket"] == "current"),
        ),
        check(
            "dpd_bucket=1-30&sort=-days_past_due".into(),
            Box::new(|a| a["dpd_bucket"] == "1-30"),
        ),
        check(
            "dpd_bucket=90%2B&sort=balance".into(),
            Box::new(|a| a["dpd_bucket"] == "90+"),
        ),
        check(
            "dpd_bucket=31-60&status=paid&sort=updated_at".into(),
            Box::new(|a| a["dpd_bucket"] == "31-60" && a["status"] == "paid"),
        ),
        check(
            "q=jose%20gar".into(),
            Box::new(|a| a["debtor_name"] == "José García-López"),
        ),
        check(
            "q=JOSE.GARCIA%40".into(),
            Box::new(|a| a["debtor_name"] == "José García-López"),
        ),
        check(
            "q=%2B44%20(7700)".into(),
            Box::new(|a| a["debtor_name"] == "José García-López"),
        ),
        check(
            "q=ref-0001".into(),
            Box::new(|a| a["reference"].as_str().unwrap().starts_with("REF-0001")),
        ),
        check(
            "q=debtor1&status=active".into(),
            Box::new(|a| {
                (a["debtor_name"]
                    .as_str()
                    .unwrap()
                    .replace('é', "e")
                    .to_lowercase()
                    .replace(' ', "")
                    .starts_with("debtor1")
                    || a["debtor_email"].as_str().unwrap().starts_with("debtor1"))
                    && a["status"] == "active"
            }),
        ),
    ];
    for (query, expected) in cases {
        let items = f.all_pages(&f.admin, &query, 4).await;
        let got: Vec<String> = ids(&items);
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), unique.len(), "{query}: duplicates");
        assert_eq!(unique, expected, "{query}");
    }
}

#[tokio::test]
async fn bad_list_parameters_and_cursors_are_400_naming_the_field() {
    let f = fixture().await;
    for n in 0..6 {
        f.create(account(n)).await;
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("sort=name", "sort"),
        ("status=open", "status"),
        ("dpd_bucket=7", "dpd_bucket"),
        ("min_balance=-1", "min_balance"),
        ("min_balance=5&max_balance=4", "max_balance"),
        ("agent_id=bob", "agent_id"),
        ("q=a", "q"),
        ("q=ab&sort=balance", "sort"),
        ("cursor=forged.cursor", "cursor"),
    ] {
        let answer = f.list(&f.admin, query).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        assert_eq!(field_of(&answer), field, "{query}: {}", answer.body);
    }
    let answer = f.list(&f.admin, "colour=red").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.body.to_string().contains("colour"),
        "{}",
        answer.body
    );

    // A cursor of another query, and an edited one.
    let answer = f.list(&f.admin, "limit=2&sort=balance").await;
    let cursor = answer.body["next_cursor"].as_str().unwrap().to_owned();
    let answer = f
        .list(&f.admin, &format!("limit=2&sort=-balance&cursor={cursor}"))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(field_of(&answer), "cursor");
    let answer = f
        .list(
            &f.admin,
            &format!("limit=2&sort=balance&status=active&cursor={cursor}"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let mut edited = cursor.clone().into_bytes();
    edited[3] = if edited[3] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(edited).unwrap();
    let answer = f
        .list(&f.admin, &format!("limit=2&sort=balance&cursor={edited}"))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    // The genuine cursor works, with another limit too.
    let answer = f
        .list(&f.admin, &format!("limit=3&sort=balance&cursor={cursor}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);

    // List pages carry a weak ETag and answer 304 to it.
    let answer = f.list(&f.admin, "limit=3").await;
    let etag = answer.headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with("W/\""));
    let again = f
        .call(
            &f.admin,
            TestRequest::new("GET /accounts", "/accounts")
                .query("limit=3")
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn patch_needs_if_match_logs_status_changes_and_refuses_payment_fields() {
    let f = fixture().await;
    let created = f.create(account(7)).await;
    let id = created["id"].as_str().unwrap();
    let answer = f
        .call(&f.admin, patch(id, json!({"status": "disputed"})))
        .await;
    assert_eq!(answer.status, StatusCode::PRECONDITION_REQUIRED);
    let answer = f
        .call(
            &f.admin,
            patch(id, json!({"status": "disputed"})).header("if-match", "\"9\""),
        )
        .await;
    assert_eq!(answer.status, StatusCode::PRECONDITION_FAILED);
    for field in ["balance", "original_balance", "version", "id", "created_at"] {
        let answer = f
            .call(
                &f.admin,
                patch(id, json!({ field: 1 })).header("if-match", "\"1\""),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(field_of(&answer), field);
    }
    let answer = f
        .call(
            &f.admin,
            patch(id, json!({"status": "nope"})).header("if-match", "\"1\""),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let answer = f
        .call(
            &f.admin,
            patch(id, json!({"status": "disputed", "tags": ["Legal", "legal"], "debtor_timezone": "Europe/Paris"}))
                .header("if-match", "\"1\""),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["version"], 2);
    assert_eq!(answer.body["tags"], json!(["legal"]));
    assert!(answer.headers["etag"].to_str().unwrap().starts_with("\"2-"));
    // The status change and the time zone change were logged in the same transaction.
    let activities = f.activities(id).await;
    assert_eq!(activities.len(), 2, "{activities:?}");
    let status = activities
        .iter()
        .find(|a| a.activity_type == shared::activities::ActivityType::StatusChange)
        .expect("a status_change activity");
    assert_eq!(status.actor_id, f.admin.user_id);
    let fields = activities
        .iter()
        .find(|a| a.activity_type == shared::activities::ActivityType::FieldChange)
        .expect("a field_change activity");
    assert!(
        fields.note.contains("debtor_timezone") && fields.note.contains("Europe/Paris"),
        "{}",
        fields.note
    );
    assert!(
        !fields.note.contains("tags"),
        "tags are not audited: {}",
        fields.note
    );
    // Lists by the new status find it; by the old one not.
    let items = f.all_pages(&f.admin, "status=disputed", 10).await;
    assert!(ids(&items).contains(&id.to_owned()));
    let items = f.all_pages(&f.admin, "status=active", 10).await;
    assert!(!ids(&items).contains(&id.to_owned()));
}

#[tokio::test]
async fn concurrent_patches_with_one_if_match_let_exactly_one_win() {
    let f = fixture().await;
    let created = f.create(account(8)).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let calls = (0..8).map(|i| {
        let req = patch(&id, json!({"tags": [format!("t{i}")]})).header("if-match", "\"1\"");
        f.call(&f.admin, req)
    });
    let answers = futures::future::join_all(calls).await;
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for answer in &answers {
        *counts.entry(answer.status.as_u16()).or_default() += 1;
    }
    assert_eq!(counts.get(&200), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&412), Some(&7), "{counts:?}");
}

#[tokio::test]
async fn soft_delete_hides_the_account_and_keeps_its_reference() {
    let f = fixture().await;
    let created = f.create(account(9)).await;
    let id = created["id"].as_str().unwrap();
    let answer = f
        .call(&f.admin, delete(id).header("if-match", "\"7\""))
        .await;
    assert_eq!(answer.status, StatusCode::PRECONDITION_FAILED);
    let answer = f.call(&f.admin, delete(id)).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        f.call(&f.admin, get(id)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.call(&f.admin, delete(id)).await.status,
        StatusCode::NOT_FOUND
    );
    let answer = f
        .call(
            &f.admin,
            patch(id, json!({"tags": []})).header("if-match", "\"2\""),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    for query in [
        "sort=-created_at",
        "sort=balance",
        "status=active",
        "q=debtor9",
        "q=ref-00009",
    ] {
        let items = f.all_pages(&f.admin, query, 50).await;
        assert!(!ids(&items).contains(&id.to_owned()), "{query}");
    }
    // The item (history) stays, marked deleted.
    let stored = f.app.repo.get(id.parse().unwrap()).await.unwrap().unwrap();
    assert!(stored.deleted_at.is_some());
    let answer = f.call(&f.admin, post(account(9))).await;
    assert_eq!(
        answer.status,
        StatusCode::CONFLICT,
        "references are never reused"
    );
}

#[tokio::test]
async fn agents_see_and_change_only_their_accounts_and_viewers_only_read() {
    let f = fixture().await;
    let agent = f.user(Role::Agent).await;
    let other = f.user(Role::Agent).await;
    let viewer = caller(Role::Viewer);
    let manager = caller(Role::Manager);
    let mut mine = Vec::new();
    for n in 0..10 {
        let mut body = account(n);
        if n % 2 == 0 {
            body["assigned_agent_id"] = json!(agent.user_id.to_string());
        } else if n % 3 == 0 {
            body["assigned_agent_id"] = json!(other.user_id.to_string());
        }
        let created = f.create(body).await;
        if n % 2 == 0 {
            mine.push(created["id"].as_str().unwrap().to_owned());
        }
    }
    let mine_set: BTreeSet<String> = mine.iter().cloned().collect();
    for query in [
        "",
        "sort=balance",
        "status=active",
        "q=debtor",
        "dpd_bucket=current",
    ] {
        let items = f.all_pages(&agent, query, 3).await;
        let got: BTreeSet<String> = ids(&items).into_iter().collect();
        assert!(got.is_subset(&mine_set), "{query}");
        if query.is_empty() || query == "q=debtor" {
            assert_eq!(got, mine_set, "{query}");
        }
    }
    let answer = f.list(&agent, &format!("agent_id={}", other.user_id)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let all = f.all_pages(&f.admin, "", 100).await;
    let theirs = ids(&all)
        .into_iter()
        .find(|id| !mine_set.contains(id))
        .unwrap();
    assert_eq!(
        f.call(&agent, get(&theirs)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(f.call(&agent, get(&mine[0])).await.status, StatusCode::OK);
    assert_eq!(f.call(&viewer, get(&theirs)).await.status, StatusCode::OK);

    let answer = f
        .call(
            &agent,
            patch(&theirs, json!({"status": "disputed"})).header("if-match", "\"1\""),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = f
        .call(
            &agent,
            patch(&mine[0], json!({"debtor_name": "X"})).header("if-match", "\"1\""),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = f
        .call(
            &agent,
            patch(&mine[0], json!({"assigned_agent_id": null})).header("if-match", "\"1\""),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = f
        .call(&agent, patch(&mine[0], json!({"status": "promise_to_pay", "tags": ["called"], "debtor_phone": "+14155550199"})).header("if-match", "\"1\""))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        f.call(&agent, post(account(50))).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.call(&agent, delete(&mine[1])).await.status,
        StatusCode::FORBIDDEN
    );

    assert_eq!(
        f.call(&viewer, post(account(51))).await.status,
        StatusCode::FORBIDDEN
    );
    let answer = f
        .call(
            &viewer,
            patch(&theirs, json!({"tags": []})).header("if-match", "\"1\""),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        f.call(&viewer, delete(&theirs)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(f.list(&viewer, "").await.status, StatusCode::OK);

    // Managers write; reassigning moves the account between agents' lists.
    let answer = f
        .call(
            &manager,
            patch(
                &mine[1],
                json!({"assigned_agent_id": other.user_id.to_string()}),
            )
            .header("if-match", "\"1\""),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let items = f.all_pages(&agent, "", 50).await;
    assert!(!ids(&items).contains(&mine[1]));
    let items = f.all_pages(&other, "", 50).await;
    assert!(ids(&items).contains(&mine[1]));
}

/// The ETag of the account as `caller` reads it now.
async fn etag_of(f: &Fixture, caller: &Caller, id: &str) -> String {
    let answer = f.call(caller, get(id)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.headers["etag"].to_str().unwrap().to_owned()
}

/// Hole 5 (issue 13): an agent changes only the fields its role may change, and never
/// the status outside active / promise_to_pay / disputed; nobody sets `paid` on an account
/// that still owes; every change of a compliance field is logged with the update.
#[tokio::test]
async fn each_role_changes_only_the_fields_it_may_and_compliance_changes_are_logged() {
    let f = fixture().await;
    let agent = f.user(Role::Agent).await;
    let manager = f.user(Role::Manager).await;
    let mut body = account(60);
    body["status"] = json!("active");
    body["assigned_agent_id"] = json!(agent.user_id.to_string());
    let created = f.create(body).await;
    let id = created["id"].as_str().unwrap();

    // The agent may not move the debtor's time zone (that would lift the calling hours).
    let etag = etag_of(&f, &agent, id).await;
    let answer = f
        .call(
            &agent,
            patch(id, json!({"debtor_timezone": "Pacific/Honolulu"})).header("if-match", &etag),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(field_of(&answer), "debtor_timezone", "{}", answer.body);
    // Nor set it paid or closed, nor a payment plan.
    for status in ["paid", "closed", "payment_plan"] {
        let answer = f
            .call(
                &agent,
                patch(id, json!({"status": status})).header("if-match", &etag),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{status}: {}",
            answer.body
        );
        assert_eq!(field_of(&answer), "status", "{status}");
    }
    // Nothing was written.
    assert_eq!(etag_of(&f, &agent, id).await, etag);
    assert!(f.activities(id).await.is_empty());

    // Contact fields and a dispute: allowed, and logged.
    let answer = f
        .call(
            &agent,
            patch(
                id,
                json!({"debtor_phone": "+14155550777", "status": "disputed", "tags": ["x"]}),
            )
            .header("if-match", &etag),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let activities = f.activities(id).await;
    let types: BTreeSet<&str> = activities
        .iter()
        .map(|a| a.activity_type.as_str())
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["status_change", "field_change"]),
        "{activities:?}"
    );
    let change = activities
        .iter()
        .find(|a| a.activity_type.as_str() == "field_change")
        .unwrap();
    assert!(change.note.contains("debtor_phone"), "{}", change.note);
    assert!(change.note.contains("+14155550777"), "{}", change.note);
    assert_eq!(change.actor_id, agent.user_id);

    // An agent never clears a dispute.
    let etag = etag_of(&f, &agent, id).await;
    for status in ["active", "promise_to_pay"] {
        let answer = f
            .call(
                &agent,
                patch(id, json!({"status": status})).header("if-match", &etag),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{status}: {}",
            answer.body
        );
        assert_eq!(field_of(&answer), "status");
    }

    // Nobody sets paid while a balance is owed (paid follows from a zero balance).
    for caller in [&manager, &f.admin] {
        let answer = f
            .call(
                caller,
                patch(id, json!({"status": "paid"})).header("if-match", &etag),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.body
        );
        assert_eq!(field_of(&answer), "status");
    }

    // A manager may clear the dispute and move the time zone: both logged.
    let before = f.activities(id).await.len();
    let answer = f
        .call(
            &manager,
            patch(
                id,
                json!({"status": "active", "debtor_timezone": "America/Chicago"}),
            )
            .header("if-match", &etag),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let activities = f.activities(id).await;
    assert_eq!(activities.len(), before + 2, "{activities:?}");
    assert!(activities
        .iter()
        .any(|a| a.activity_type.as_str() == "field_change"
            && a.note.contains("America/New_York")
            && a.note.contains("America/Chicago")
            && a.actor_id == manager.user_id));
    // A tags-only change logs nothing.
    let etag = etag_of(&f, &manager, id).await;
    let answer = f
        .call(
            &manager,
            patch(id, json!({"tags": ["y"]})).header("if-match", &etag),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(f.activities(id).await.len(), before + 2);
}

/// Hole 7 (issue 13): an account is assigned only to a user that exists, is enabled and
/// has role agent — on create and on update.
#[tokio::test]
async fn accounts_are_assigned_only_to_enabled_agents() {
    let f = fixture().await;
    let agent = f.user(Role::Agent).await;
    let viewer = f.user(Role::Viewer).await;
    let disabled = f.user(Role::Agent).await;
    f.disable(&disabled).await;
    let nobody = Id::generate();

    for (n, bad) in [viewer.user_id, disabled.user_id, nobody]
        .into_iter()
        .enumerate()
    {
        let mut body = account(70 + n);
        body["assigned_agent_id"] = json!(bad.to_string());
        let answer = f.call(&f.admin, post(body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert_eq!(field_of(&answer), "assigned_agent_id");
    }
    let mut body = account(75);
    body["assigned_agent_id"] = json!(agent.user_id.to_string());
    let created = f.create(body).await;
    let id = created["id"].as_str().unwrap();
    let etag = etag_of(&f, &f.admin, id).await;
    for bad in [viewer.user_id, disabled.user_id, nobody] {
        let answer = f
            .call(
                &f.admin,
                patch(id, json!({"assigned_agent_id": bad.to_string()})).header("if-match", &etag),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert_eq!(field_of(&answer), "assigned_agent_id");
    }
    // Unassigning needs no agent; the account was not touched by the refusals.
    assert_eq!(etag_of(&f, &f.admin, id).await, etag);
    let answer = f
        .call(
            &f.admin,
            patch(id, json!({"assigned_agent_id": null})).header("if-match", &etag),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["assigned_agent_id"], Value::Null);
}

/// Hole 8 (issue 13): `original_balance` is at most 10^12 minor units.
#[tokio::test]
async fn original_balances_are_bounded() {
    let f = fixture().await;
    for (n, value) in [json!(1_000_000_000_001_i64), json!(i64::MAX), json!(-1)]
        .into_iter()
        .enumerate()
    {
        let mut body = account(80 + n);
        body["original_balance"] = value.clone();
        let answer = f.call(&f.admin, post(body)).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{value}: {}",
            answer.body
        );
        assert_eq!(field_of(&answer), "original_balance", "{value}");
    }
    let mut body = account(85);
    body["original_balance"] = json!(1_000_000_000_000_i64);
    let created = f.create(body).await;
    assert_eq!(created["balance"], json!(1_000_000_000_000_i64));
}

/// Hole 9 (issue 13): PATCH goes through the same body checks as every other route
/// (Content-Type, size), and field errors are capped.
#[tokio::test]
async fn patch_bodies_are_checked_like_every_body_and_errors_are_capped() {
    let f = fixture().await;
    let created = f.create(account(90)).await;
    let id = created["id"].as_str().unwrap();
    let etag = etag_of(&f, &f.admin, id).await;
    let answer = f
        .call(
            &f.admin,
            patch(id, json!({"tags": ["a"]}))
                .header("content-type", "text/plain")
                .header("if-match", &etag),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        answer.body
    );
    let huge = format!(
        r#"{{"debtor_name":"{}"}}"#,
        "x".repeat(shared::http::MAX_BODY_BYTES)
    );
    let answer = f
        .call(
            &f.admin,
            patch(id, json!({}))
                .raw_body(&huge)
                .header("if-match", &etag),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.body
    );
    assert_eq!(etag_of(&f, &f.admin, id).await, etag, "nothing changed");

    // 10,000 bad tags: one capped list of errors with the count.
    let tags: Vec<String> = (0..10_000).map(|_| String::new()).collect();
    let mut body = account(91);
    body["tags"] = json!(tags);
    let answer = f.call(&f.admin, post(body)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let errors = answer.body["errors"].as_array().unwrap();
    assert!(errors.len() <= 50, "{} errors", errors.len());
    assert!(
        errors.iter().any(|e| e["field"] == "tags"),
        "{}",
        answer.body
    );
}

/// Hole 10 (issue 13): the ETag covers the aging the body shows, so a client never gets
/// a 304 for yesterday's `days_past_due`; If-Match takes the ETag GET returned.
#[tokio::test]
async fn a_new_day_changes_the_etag_and_if_match_takes_it() {
    let f = fixture().await;
    let mut body = account(95);
    let today = time::OffsetDateTime::now_utc().date();
    body["due_date"] = json!(shared::accounts::model::format_date(
        today - time::Duration::days(30)
    ));
    let created = f.create(body).await;
    let id = created["id"].as_str().unwrap();
    let now = Timestamp::now();
    let first = f.call_at(&f.admin, get(id), now).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["days_past_due"], 30);
    assert_eq!(first.body["dpd_bucket"], "1-30");
    let etag = first.headers["etag"].to_str().unwrap().to_owned();
    let same_day = f
        .call_at(&f.admin, get(id).header("if-none-match", &etag), now)
        .await;
    assert_eq!(same_day.status, StatusCode::NOT_MODIFIED);

    let tomorrow = now.plus(time::Duration::days(1));
    let next_day = f
        .call_at(&f.admin, get(id).header("if-none-match", &etag), tomorrow)
        .await;
    assert_eq!(
        next_day.status,
        StatusCode::OK,
        "stale aging must not be a 304"
    );
    assert_eq!(next_day.body["days_past_due"], 31);
    assert_eq!(next_day.body["dpd_bucket"], "31-60");
    let new_etag = next_day.headers["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);

    // PATCH takes the ETag GET returned (today's), and yesterday's too: the aging part is
    // derived from the calendar, not stored state, so only the version can conflict.
    let answer = f
        .call_at(
            &f.admin,
            patch(id, json!({"tags": ["a"]})).header("if-match", &new_etag),
            tomorrow,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer = f
        .call_at(
            &f.admin,
            patch(id, json!({"tags": ["b"]})).header("if-match", &etag),
            tomorrow,
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::PRECONDITION_FAILED,
        "version 1 is stale"
    );
    let current = answer_etag(&f, id, tomorrow).await;
    let answer = f
        .call_at(
            &f.admin,
            patch(id, json!({"tags": ["b"]})).header("if-match", &current),
            tomorrow,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

async fn answer_etag(f: &Fixture, id: &str, now: Timestamp) -> String {
    let answer = f.call_at(&f.admin, get(id), now).await;
    answer.headers["etag"].to_str().unwrap().to_owned()
}

/// Issue 13, holes 8 and 9: the OpenAPI schema states the bounds the validation enforces.
#[test]
fn the_schema_states_the_amount_bound_and_list_caps() {
    use utoipa::OpenApi;
    let document = serde_json::to_value(accounts::ApiDoc::openapi()).unwrap();
    let create = &document["components"]["schemas"]["CreateAccountBody"]["properties"];
    let balance = resolved(&document, &create["original_balance"]);
    assert_eq!(
        balance["maximum"].as_f64(),
        Some(shared::validation::MAX_AMOUNT as f64),
        "{create}"
    );
    assert_eq!(balance["minimum"].as_f64(), Some(0.0));
    assert_eq!(resolved(&document, &create["tags"])["maxItems"], 20);
    let update = &document["components"]["schemas"]["UpdateAccountBody"]["properties"];
    assert_eq!(
        resolved(&document, &update["tags"])["maxItems"],
        20,
        "{update}"
    );
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
