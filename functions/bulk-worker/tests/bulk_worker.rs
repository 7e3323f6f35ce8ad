//! The bulk API and worker against DynamoDB Local and moto (run under `infra/stack.sh`).
//!
//! Jobs are created through `bulk_api::dispatch`; the queue is pumped by receiving real
//! messages from moto and handing the worker a real `SqsEvent` built from them, deleting
//! what it did not report as failed (like the event source mapping). Duplicate deliveries,
//! a worker killed mid-batch, a poison message that reaches the DLQ, cancel, and a filter
//! job.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_sqs::types::Message;
use futures::StreamExt;
use http::StatusCode;
use serde_json::{json, Value};
use shared::accounts::{Account, AccountStatus};
use shared::auth::{AuthSettings, Caller, KeySet, Role};
use shared::clients::Clients;
use shared::config::Config;
use shared::domain::{Id, Timestamp};
use shared::rate_limit::RateLimits;
use shared::testing::{body_json, TestRequest};

struct Env {
    config: Config,
    clients: Clients,
    api: bulk_api::App,
    worker: bulk_worker::App,
    queue_arn: String,
    dlq_arn: String,
    admin: Caller,
}

async fn env() -> Env {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let provisioned = local_gateway::provision::provision_for_test()
        .await
        .unwrap();
    let vars = provisioned.env.clone();
    let lookup = move |name: &str| vars.get(name).cloned();
    let config = Config::from_lookup(&lookup).unwrap();
    let clients = Clients::from_env().await;
    let keys = KeySet::parse(&KeySet::generate_json()).unwrap();
    let auth = AuthSettings::from_lookup(&lookup).unwrap();
    let api = bulk_api::App::new(shared::platform::Platform::new(
        config.clone(),
        clients.clone(),
        &keys,
        &auth,
        RateLimits::off(),
    ));
    let worker = bulk_worker::App::new(&config, &clients);
    Env {
        queue_arn: provisioned.queues["BulkQueue"].arn.clone(),
        dlq_arn: provisioned.queues["BulkDeadLetterQueue"].arn.clone(),
        config,
        clients,
        api,
        worker,
        admin: Caller {
            user_id: Id::generate(),
            role: Role::Admin,
        },
    }
}

fn account(status: AccountStatus, balance: i64) -> Account {
    Account {
        status,
        due_date: time::macros::date!(2026 - 01 - 15),
        tags: vec!["seed".into()],
        ..shared::testing::account(balance, Timestamp::now())
    }
    .fresh()
}

async fn put_accounts(e: &Env, accounts: &[Account]) {
    let writes: Vec<_> = accounts
        .chunks(25)
        .map(|chunk| {
            let requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|a| {
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(a.to_item().unwrap()))
                                .build()
                                .unwrap(),
                        )
                        .build()
                })
                .collect();
            let client = e.clients.dynamodb.clone();
            let table = e.config.tables.accounts.as_str().to_owned();
            async move {
                let mut pending = HashMap::from([(table, requests)]);
                while !pending.is_empty() {
                    let out = client
                        .batch_write_item()
                        .set_request_items(Some(pending))
                        .send()
                        .await
                        .unwrap();
                    pending = out.unprocessed_items.unwrap_or_default();
                }
            }
        })
        .collect();
    // A few at a time: all at once queue in DynamoDB Local past the SDK's 12 s operation
    // timeout on a loaded machine.
    futures::stream::iter(writes)
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
}

async fn raw_account(e: &Env, id: Id) -> HashMap<String, AttributeValue> {
    e.clients
        .dynamodb
        .get_item()
        .table_name(e.config.tables.accounts.as_str())
        .key("pk", AttributeValue::S(format!("ACCOUNT#{id}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap()
}

async fn call(e: &Env, caller: &Caller, req: TestRequest) -> (StatusCode, Value) {
    match bulk_api::dispatch(&e.api, caller, req.build()).await {
        Ok(response) => (response.status(), body_json(&response)),
        Err(err) => {
            let response = shared::http::problem_response(&err);
            (response.status(), body_json(&response))
        }
    }
}

async fn create(e: &Env, caller: &Caller, body: Value) -> (StatusCode, Value) {
    call(
        e,
        caller,
        TestRequest::new("POST /bulk/accounts", "/bulk/accounts").json(&body),
    )
    .await
}

/// Writes `accounts` and creates a job of `changes` over their ids (as the admin); its id.
async fn ids_job(e: &Env, accounts: &[Account], changes: Value) -> String {
    put_accounts(e, accounts).await;
    let ids: Vec<String> = accounts.iter().map(|a| a.id.to_string()).collect();
    let (status, body) = create(e, &e.admin, json!({"account_ids": ids, "changes": changes})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["job_id"].as_str().unwrap().to_owned()
}

async fn job(e: &Env, id: &str) -> Value {
    let (status, body) = call(
        e,
        &e.admin,
        TestRequest::new("GET /bulk/jobs/{id}", &format!("/bulk/jobs/{id}")).path_param("id", id),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The event the gateway's SQS event source would hand the worker for `messages` of the
/// queue `arn` (attributes such as `ApproximateReceiveCount` included).
fn event_of(messages: &[Message], arn: &str) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| local_gateway::sqs_source::record(m, arn, "us-east-1"))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

async fn receive(e: &Env, url: &str) -> Vec<Message> {
    e.clients
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages()
        .to_vec()
}

/// Hands one received batch to `worker` like the event source mapping: deletes what did
/// not fail, makes failures visible again.
async fn deliver(
    e: &Env,
    worker: &bulk_worker::App,
    url: &str,
    arn: &str,
    batch: &[Message],
) -> usize {
    let response = bulk_worker::handle(worker, event_of(batch, arn)).await;
    let failed: BTreeSet<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    for m in batch {
        let handle = m.receipt_handle().unwrap();
        if failed.contains(m.message_id().unwrap()) {
            e.clients
                .sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        } else {
            e.clients
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(handle)
                .send()
                .await
                .unwrap();
        }
    }
    failed.len()
}

/// Pumps the bulk queue until the job is final and the queue is drained.
async fn pump(e: &Env, job_id: &str) -> Value {
    let started = Instant::now();
    let mut idle = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "job did not finish"
        );
        let batch = receive(e, &e.config.queues.bulk).await;
        if batch.is_empty() {
            let j = job(e, job_id).await;
            if j["finished_at"].is_string() && j["processed"] == j["total"] {
                idle += 1;
                if idle >= 2 {
                    return j;
                }
            }
            continue;
        }
        idle = 0;
        deliver(e, &e.worker, &e.config.queues.bulk, &e.queue_arn, &batch).await;
    }
}

fn tags(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    item["tags"]
        .as_l()
        .unwrap()
        .iter()
        .map(|v| v.as_s().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn ids_job_is_exactly_once_under_duplicates_and_a_killed_worker() {
    let e = env().await;
    let accounts: Vec<Account> = (0..500)
        .map(|_| account(AccountStatus::Active, 10_000))
        .collect();
    put_accounts(&e, &accounts).await;
    let missing: Vec<Id> = (0..20).map(|_| Id::generate()).collect();
    let mut ids: Vec<String> = accounts.iter().map(|a| a.id.to_string()).collect();
    ids.extend(missing.iter().map(Id::to_string));
    let started = Instant::now();
    let (status, body) = create(
        &e,
        &e.admin,
        json!({"account_ids": ids, "changes": {"add_tags": ["Bulk-X"]}}),
    )
    .await;
    println!(
        "FIGURE POST /bulk/accounts (520 ids, lib): {:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_owned();
    let queued = job(&e, &job_id).await;
    assert_eq!(
        (queued["state"].as_str(), queued["total"].as_u64()),
        (Some("queued"), Some(520))
    );

    // Plans first (2 planner messages), then chunks. The first chunk batch: its first
    // message is sent again (a duplicate chunk) and a worker is killed mid-batch.
    let mut duplicated = false;
    let mut killed = false;
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(120));
        let batch = receive(&e, &e.config.queues.bulk).await;
        if batch.is_empty() {
            let j = job(&e, &job_id).await;
            if j["finished_at"].is_string() {
                break;
            }
            continue;
        }
        let is_chunk = batch[0].body().unwrap().contains("\"kind\":\"chunk\"");
        if is_chunk && !duplicated {
            duplicated = true;
            e.clients
                .sqs
                .send_message()
                .queue_url(&e.config.queues.bulk)
                .message_body(batch[0].body().unwrap())
                .send()
                .await
                .unwrap();
        }
        if is_chunk && !killed {
            killed = true;
            // The worker dies part-way through: its batch is neither deleted nor failed.
            let worker = &e.worker;
            let event = event_of(&batch, &e.queue_arn);
            let _ = tokio::time::timeout(
                Duration::from_millis(60),
                bulk_worker::handle(worker, event),
            )
            .await;
            for m in &batch {
                e.clients
                    .sqs
                    .change_message_visibility()
                    .queue_url(&e.config.queues.bulk)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            }
            continue;
        }
        deliver(&e, &e.worker, &e.config.queues.bulk, &e.queue_arn, &batch).await;
    }
    assert!(duplicated && killed);
    let done = job(&e, &job_id).await;
    assert_eq!(done["state"], "completed_with_errors", "{done}");
    assert_eq!(
        (
            done["total"].as_u64(),
            done["processed"].as_u64(),
            done["succeeded"].as_u64(),
            done["failed"].as_u64()
        ),
        (Some(520), Some(520), Some(500), Some(20)),
        "{done}"
    );
    // Every account: version bumped exactly once, the tag added once.
    for a in &accounts {
        let item = raw_account(&e, a.id).await;
        assert_eq!(item["version"].as_n().unwrap(), "2", "{}", a.id);
        let t = tags(&item);
        assert_eq!(t.iter().filter(|t| *t == "bulk-x").count(), 1, "{t:?}");
    }
    // The failures, paged with signed cursors: exactly the 20 missing ids.
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=7&cursor={c}"),
            None => "limit=7".to_owned(),
        };
        let (status, page) = call(
            &e,
            &e.admin,
            TestRequest::new(
                "GET /bulk/jobs/{id}/failures",
                &format!("/bulk/jobs/{job_id}/failures"),
            )
            .path_param("id", &job_id)
            .query(&query),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for f in page["items"].as_array().unwrap() {
            assert_eq!(f["reason"], "not_found");
            assert!(seen.insert(f["account_id"].as_str().unwrap().to_owned()));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: BTreeSet<String> = missing.iter().map(Id::to_string).collect();
    assert_eq!(seen, expected);
    // A tampered cursor is a 400.
    let (status, _) = call(
        &e,
        &e.admin,
        TestRequest::new(
            "GET /bulk/jobs/{id}/failures",
            &format!("/bulk/jobs/{job_id}/failures"),
        )
        .path_param("id", &job_id)
        .query("cursor=abc.def"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_poison_message_reaches_the_dlq_and_its_accounts_are_reported() {
    let e = env().await;
    let accounts: Vec<Account> = (0..30)
        .map(|_| account(AccountStatus::Active, 500))
        .collect();
    let job_id = ids_job(&e, &accounts, json!({"status": "disputed"})).await;
    // A worker whose Accounts table is gone: every chunk fails transiently.
    let mut broken_config = e.config.clone();
    broken_config.tables.accounts = shared::config::TableName::new("no-such-accounts-table");
    let broken = bulk_worker::App::new(&broken_config, &e.clients);
    let started = Instant::now();
    let mut failures = 0;
    let mut dead: Vec<Message> = Vec::new();
    while dead.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "never dead-lettered"
        );
        let batch = receive(&e, &e.config.queues.bulk).await;
        if !batch.is_empty() {
            failures += deliver(&e, &broken, &e.config.queues.bulk, &e.queue_arn, &batch).await;
        }
        dead = receive(&e, &e.config.queues.bulk_dlq).await;
    }
    assert!(
        failures >= 5,
        "retried by SQS before dead-lettering ({failures})"
    );
    // The DLQ mapping: the same handler, messages from the DLQ's ARN.
    deliver(&e, &e.worker, &e.config.queues.bulk_dlq, &e.dlq_arn, &dead).await;
    let done = job(&e, &job_id).await;
    assert_eq!(done["processed"], 30, "{done}");
    assert_eq!(done["failed"], 30, "{done}");
    assert_eq!(done["state"], "failed", "{done}");
    let (_, page) = call(
        &e,
        &e.admin,
        TestRequest::new(
            "GET /bulk/jobs/{id}/failures",
            &format!("/bulk/jobs/{job_id}/failures"),
        )
        .path_param("id", &job_id)
        .query("limit=100"),
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 30);
    assert!(
        items.iter().all(|f| f["reason"] == "dead_lettered"),
        "{page}"
    );
    for a in &accounts {
        assert_eq!(raw_account(&e, a.id).await["version"].as_n().unwrap(), "1");
    }
}

#[tokio::test]
async fn a_failed_message_returns_in_seconds_not_after_the_visibility_timeout() {
    let e = env().await;
    let accounts: Vec<Account> = (0..5)
        .map(|_| account(AccountStatus::Active, 500))
        .collect();
    let job_id = ids_job(&e, &accounts, json!({"add_tags": ["soon"]})).await;
    // The plan message, received as the event source mapping receives it (with its
    // ApproximateReceiveCount), fails in a worker whose tables are gone.
    let mut broken_config = e.config.clone();
    broken_config.tables.jobs = shared::config::TableName::new("no-such-jobs-table");
    let broken = bulk_worker::App::new(&broken_config, &e.clients);
    let first = receive(&e, &e.config.queues.bulk).await;
    assert_eq!(first.len(), 1, "the job's one plan message");
    let event = event_of(&first, &e.queue_arn);
    let failed_at = Instant::now();
    let response = bulk_worker::handle(&broken, event).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    // Nothing deletes it or resets its visibility here: only the worker's redelivery delay
    // (10 s after a first receive) stands between it and the next receive, where without
    // it the queue's 360 s visibility timeout would.
    let again = loop {
        let batch = receive(&e, &e.config.queues.bulk).await;
        if let Some(m) = batch.first() {
            break m.clone();
        }
        assert!(
            failed_at.elapsed() < Duration::from_secs(120),
            "the failed message did not come back within 120 s"
        );
    };
    let waited = failed_at.elapsed();
    assert_eq!(again.message_id(), first[0].message_id());
    assert!(
        waited >= Duration::from_secs(5),
        "it came back at once ({waited:?}): no delay at all"
    );
    println!("FIGURE a failed bulk message came back after {waited:.1?} (delay 10 s; queue visibility timeout 360 s)");
    // Delivered to a working worker, the job completes.
    deliver(&e, &e.worker, &e.config.queues.bulk, &e.queue_arn, &[again]).await;
    let done = pump(&e, &job_id).await;
    assert_eq!(done["succeeded"], 5, "{done}");
}

#[tokio::test]
async fn cancel_stops_the_remaining_accounts() {
    let e = env().await;
    let accounts: Vec<Account> = (0..200)
        .map(|_| account(AccountStatus::Active, 500))
        .collect();
    let job_id = ids_job(&e, &accounts, json!({"add_tags": ["late"]})).await;
    let (status, cancelled) = call(
        &e,
        &e.admin,
        TestRequest::new(
            "POST /bulk/jobs/{id}/cancel",
            &format!("/bulk/jobs/{job_id}/cancel"),
        )
        .path_param("id", &job_id),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cancelled["finished_at"].is_string());
    let done = pump(&e, &job_id).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    assert_eq!(
        (
            done["processed"].as_u64(),
            done["cancelled"].as_u64(),
            done["succeeded"].as_u64(),
            done["failed"].as_u64()
        ),
        (Some(200), Some(200), Some(0), Some(0)),
        "{done}"
    );
    for a in accounts.iter().take(20) {
        assert_eq!(raw_account(&e, a.id).await["version"].as_n().unwrap(), "1");
    }
    // A second cancel: the job already finished.
    let (status, _) = call(
        &e,
        &e.admin,
        TestRequest::new(
            "POST /bulk/jobs/{id}/cancel",
            &format!("/bulk/jobs/{job_id}/cancel"),
        )
        .path_param("id", &job_id),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_filter_job_changes_exactly_the_matching_accounts() {
    let e = env().await;
    let disputed: Vec<Account> = (0..45)
        .map(|i| account(AccountStatus::Disputed, 1_000 + i))
        .collect();
    let small: Vec<Account> = (0..5)
        .map(|_| account(AccountStatus::Disputed, 10))
        .collect();
    let others: Vec<Account> = (0..30)
        .map(|_| account(AccountStatus::Active, 5_000))
        .collect();
    let mut deleted = account(AccountStatus::Disputed, 5_000);
    deleted.deleted_at = Some(Timestamp::now());
    put_accounts(
        &e,
        &[
            disputed.clone(),
            small.clone(),
            others.clone(),
            vec![deleted.clone()],
        ]
        .concat(),
    )
    .await;
    let manager = Caller {
        user_id: Id::generate(),
        role: Role::Manager,
    };
    let (status, body) = create(
        &e,
        &manager,
        json!({"filter": {"status": "disputed", "min_balance": 100}, "changes": {"status": "payment_plan", "add_tags": ["plan-offered"], "remove_tags": ["seed"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_owned();
    let done = pump(&e, &job_id).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(
        (done["total"].as_u64(), done["succeeded"].as_u64()),
        (Some(45), Some(45)),
        "{done}"
    );
    assert_eq!(done["source"], "filter");
    for a in &disputed {
        let item = raw_account(&e, a.id).await;
        assert_eq!(item["status"].as_s().unwrap(), "payment_plan");
        assert_eq!(item["version"].as_n().unwrap(), "2");
        assert_eq!(tags(&item), vec!["plan-offered"]);
        // The status change logged its activity.
        let activities = e
            .clients
            .dynamodb
            .query()
            .table_name(e.config.tables.activities.as_str())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(a.id.to_string()))
            .send()
            .await
            .unwrap();
        assert_eq!(activities.items().len(), 1);
        assert_eq!(
            activities.items()[0]["type"].as_s().unwrap(),
            "status_change"
        );
    }
    for a in small.iter().chain(&others).chain([&deleted]) {
        assert_eq!(raw_account(&e, a.id).await["version"].as_n().unwrap(), "1");
    }
    // Lists: the manager sees its own job; another manager sees none; the admin sees it.
    let list = |caller: Caller| {
        let e = &e;
        async move {
            call(e, &caller, TestRequest::new("GET /bulk/jobs", "/bulk/jobs"))
                .await
                .1
        }
    };
    assert_eq!(
        list(manager.clone()).await["items"][0]["id"],
        job_id.as_str()
    );
    let other = Caller {
        user_id: Id::generate(),
        role: Role::Manager,
    };
    assert_eq!(
        list(other.clone()).await["items"].as_array().unwrap().len(),
        0
    );
    assert_eq!(
        list(e.admin.clone()).await["items"][0]["id"],
        job_id.as_str()
    );
    let (status, _) = call(
        &e,
        &other,
        TestRequest::new("GET /bulk/jobs/{id}", &format!("/bulk/jobs/{job_id}"))
            .path_param("id", &job_id),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_is_refused_and_creates_no_job() {
    let e = env().await;
    let users = shared::auth::users::UserRepo::new(
        e.clients.dynamodb.clone(),
        e.config.tables.users.clone(),
    );
    let user = |role: Role| shared::auth::users::NewUser {
        email: format!("{}@example.com", Id::generate()).to_lowercase(),
        name: "Bulk test".into(),
        role,
        password_hash: "not-a-hash".into(),
    };
    let viewer = users.create(user(Role::Viewer)).await.unwrap().id;
    let agent = users.create(user(Role::Agent)).await.unwrap();
    let disabled = agent.id;
    users
        .update(
            &agent,
            &shared::auth::users::UserChanges {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let id = Id::generate().to_string();
    let too_many: Vec<String> = (0..100_001).map(|_| id.clone()).collect();
    let cases = [
        json!({"account_ids": [], "changes": {"status": "paid"}}),
        json!({"account_ids": too_many, "changes": {"status": "paid"}}),
        json!({"account_ids": ["not-a-ulid", id], "changes": {"status": "paid"}}),
        json!({"account_ids": [id], "changes": {}}),
        json!({"account_ids": [id]}),
        json!({"account_ids": [id], "changes": {"status": "bogus"}}),
        json!({"account_ids": [id], "filter": {"status": "active"}, "changes": {"status": "paid"}}),
        json!({"account_ids": [id], "changes": {"assigned_agent_id": Id::generate().to_string()}}),
        json!({"account_ids": [id], "changes": {"add_tags": [""]}}),
        json!({"filter": {"min_balance": 10, "max_balance": 5}, "changes": {"status": "paid"}}),
        // Hole 8 (issue 13): balances are bounded to 10^12 minor units.
        json!({"filter": {"min_balance": 1_000_000_000_001_i64}, "changes": {"status": "closed"}}),
        // Hole 7 (issue 13): only an enabled agent, the same check as the accounts API.
        json!({"account_ids": [id], "changes": {"assigned_agent_id": viewer.to_string()}}),
        json!({"account_ids": [id], "changes": {"assigned_agent_id": disabled.to_string()}}),
    ];
    for body in cases {
        let (status, problem) = create(&e, &e.admin, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {problem}");
        assert!(
            problem["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{problem}"
        );
    }
    for role in [Role::Viewer, Role::Agent] {
        let caller = Caller {
            user_id: Id::generate(),
            role,
        };
        let (status, _) = create(
            &e,
            &caller,
            json!({"account_ids": [id], "changes": {"status": "paid"}}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(
            &e,
            &caller,
            TestRequest::new("GET /bulk/jobs", "/bulk/jobs"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (_, list) = call(
        &e,
        &e.admin,
        TestRequest::new("GET /bulk/jobs", "/bulk/jobs"),
    )
    .await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "no job was created"
    );
}

#[tokio::test]
async fn a_patch_between_two_deliveries_does_not_let_the_chunk_apply_twice() {
    let e = env().await;
    // Several chunks, so the job is still running when the first one comes again.
    let accounts: Vec<Account> = (0..100)
        .map(|_| account(AccountStatus::Active, 10_000))
        .collect();
    let job_id = ids_job(&e, &accounts, json!({"add_tags": ["Once"]})).await;
    let repo = shared::accounts::AccountRepo::new(
        e.clients.dynamodb.clone(),
        e.config.tables.accounts.clone(),
        e.config.tables.activities.clone(),
    );

    let mut patched: Option<Id> = None;
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(120));
        let batch = receive(&e, &e.config.queues.bulk).await;
        if batch.is_empty() {
            if job(&e, &job_id).await["finished_at"].is_string() {
                break;
            }
            continue;
        }
        let body: Value = serde_json::from_str(batch[0].body().unwrap()).unwrap();
        if patched.is_some() || body["kind"] != "chunk" {
            deliver(&e, &e.worker, &e.config.queues.bulk, &e.queue_arn, &batch).await;
            continue;
        }
        // The first chunk of the batch is applied once ...
        bulk_worker::handle(&e.worker, event_of(&batch[..1], &e.queue_arn)).await;
        // ... a PATCH then rewrites one of its accounts (the accounts function's path) ...
        let id: Id = body["ids"][0].as_str().unwrap().parse().unwrap();
        let current = repo.get(id).await.unwrap().unwrap();
        assert_eq!(current.version, 2);
        let mut next = current.clone();
        next.debtor_name = "Renamed Debtor".into();
        next.version = current.version + 1;
        next.updated_at = Timestamp::now();
        repo.replace(&current, &next, current.version, &[])
            .await
            .unwrap()
            .unwrap();
        patched = Some(id);
        // ... and SQS delivers it again (with the rest) while the job still runs.
        assert_eq!(job(&e, &job_id).await["state"], "running");
        deliver(&e, &e.worker, &e.config.queues.bulk, &e.queue_arn, &batch).await;
    }
    let item = raw_account(&e, patched.unwrap()).await;
    assert_eq!(
        item["version"].as_n().unwrap(),
        "3",
        "bulk once, PATCH once"
    );
    assert_eq!(
        tags(&item).iter().filter(|t| *t == "once").count(),
        1,
        "{:?}",
        tags(&item)
    );
    let finished = job(&e, &job_id).await;
    assert_eq!(finished["succeeded"], 100, "{finished}");
}

/// Issue 13, hole 5: `paid` follows from a zero balance, for bulk jobs as for PATCH: a job
/// setting `paid` changes only the accounts that owe nothing and reports the others as
/// `invalid_change`.
#[tokio::test]
async fn a_job_cannot_set_paid_on_an_account_that_still_owes() {
    let e = env().await;
    let owing = account(AccountStatus::Active, 500);
    let settled = account(AccountStatus::Closed, 0);
    put_accounts(&e, &[owing.clone(), settled.clone()]).await;
    let (status, body) = create(
        &e,
        &e.admin,
        json!({"account_ids": [owing.id.to_string(), settled.id.to_string()], "changes": {"status": "paid"}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_owned();
    let done = pump(&e, &job_id).await;
    assert_eq!(
        (done["succeeded"].as_u64(), done["failed"].as_u64()),
        (Some(1), Some(1)),
        "{done}"
    );
    let (_, page) = call(
        &e,
        &e.admin,
        TestRequest::new(
            "GET /bulk/jobs/{id}/failures",
            &format!("/bulk/jobs/{job_id}/failures"),
        )
        .path_param("id", &job_id),
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["account_id"], owing.id.to_string());
    assert_eq!(items[0]["reason"], "invalid_change");
    assert_eq!(
        raw_account(&e, owing.id).await["status"].as_s().unwrap(),
        "active"
    );
    assert_eq!(
        raw_account(&e, settled.id).await["status"].as_s().unwrap(),
        "paid"
    );
}

/// Issue 13, hole 5: a reassignment by a bulk job is audited like one by PATCH — a
/// `field_change` activity per account, in the same transaction as the change.
#[tokio::test]
async fn a_reassignment_job_logs_a_field_change_per_account() {
    let e = env().await;
    let users = shared::auth::users::UserRepo::new(
        e.clients.dynamodb.clone(),
        e.config.tables.users.clone(),
    );
    let agent = users
        .create(shared::auth::users::NewUser {
            email: format!("{}@example.com", Id::generate()).to_lowercase(),
            name: "Bulk agent".into(),
            role: Role::Agent,
            password_hash: "not-a-hash".into(),
        })
        .await
        .unwrap();
    let accounts: Vec<Account> = (0..3)
        .map(|_| account(AccountStatus::Active, 900))
        .collect();
    let job_id = ids_job(
        &e,
        &accounts,
        json!({"assigned_agent_id": agent.id.to_string()}),
    )
    .await;
    let done = pump(&e, &job_id).await;
    assert_eq!(done["succeeded"], 3, "{done}");
    for a in &accounts {
        let logged = e
            .clients
            .dynamodb
            .query()
            .table_name(e.config.tables.activities.as_str())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(a.id.to_string()))
            .send()
            .await
            .unwrap();
        let items = logged.items();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["type"].as_s().unwrap(), "field_change");
        let note = items[0]["note"].as_s().unwrap();
        assert!(
            note.contains("assigned_agent_id") && note.contains(&agent.id.to_string()),
            "{note}"
        );
        assert_eq!(
            items[0]["actor_id"].as_s().unwrap(),
            &e.admin.user_id.to_string()
        );
    }
}

/// The worker sends only what a job changes (an `UpdateItem`), but the account it leaves is
/// the item a Put of the whole new account would: a stale derived key (the `balance_sk` a
/// payment left for its refresh) is set right, and an attribute the account no longer has
/// is gone, in a write that also carries activities (the status change's) and one that
/// does not (a tag alone).
#[tokio::test]
async fn a_job_leaves_the_item_a_whole_put_would() {
    let e = env().await;
    let tagged = account(AccountStatus::Active, 700);
    let reactivated = account(AccountStatus::Disputed, 900);
    put_accounts(&e, &[tagged.clone(), reactivated.clone()]).await;
    for id in [tagged.id, reactivated.id] {
        e.clients
            .dynamodb
            .update_item()
            .table_name(e.config.tables.accounts.as_str())
            .key("pk", AttributeValue::S(format!("ACCOUNT#{id}")))
            .update_expression("SET balance_sk = :stale, leftover = :x")
            .expression_attribute_values(":stale", AttributeValue::S("stale".into()))
            .expression_attribute_values(":x", AttributeValue::S("gone after the job".into()))
            .send()
            .await
            .unwrap();
    }
    let ids: Vec<String> = [tagged.id, reactivated.id]
        .iter()
        .map(Id::to_string)
        .collect();
    let (status, body) = create(
        &e,
        &e.admin,
        json!({"account_ids": ids, "changes": {"add_tags": ["vip"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    pump(&e, body["job_id"].as_str().unwrap()).await;
    let (status, body) = create(
        &e,
        &e.admin,
        json!({"account_ids": [reactivated.id.to_string()], "changes": {"status": "active"}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    pump(&e, body["job_id"].as_str().unwrap()).await;

    for id in [tagged.id, reactivated.id] {
        let stored = raw_account(&e, id).await;
        let account = Account::from_item(stored.clone()).unwrap();
        let mut whole = account.to_item().unwrap();
        // The audit stamp is the job's, which the model does not carry.
        for name in shared::audit::actor::attribute::ALL {
            if let Some(value) = stored.get(name) {
                whole.insert(name.to_owned(), value.clone());
            }
        }
        assert_eq!(stored, whole, "account {id}");
        assert!(stored["changed_via"].as_s().unwrap().starts_with("bulk:"));
        assert!(!stored.contains_key("leftover"));
        assert_ne!(stored["balance_sk"].as_s().unwrap(), "stale");
        assert!(tags(&stored).contains(&"vip".to_owned()), "{stored:?}");
    }
    assert_eq!(
        raw_account(&e, reactivated.id).await["status"]
            .as_s()
            .unwrap(),
        "active"
    );
}
