//! The scheduled jobs against DynamoDB Local (run under `infra/stack.sh`): crafted
//! accounts, promises, payments, connections and idempotency keys around an injected
//! "today"; every job run twice to show the second run changes nothing.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use scheduler::aging::AgingReport;
use scheduler::cleanup::CleanupReport;
use scheduler::promises::PromiseReport;
use scheduler::{App, Report};
use serde_json::json;
use shared::accounts::{Account, AccountStatus, DpdBucket};
use shared::activities::{promise_keys, Activity, ActivityType};
use shared::auth::{Caller, Role};
use shared::clients::Clients;
use shared::config::Config;
use shared::domain::{Id, MinorUnits, Timestamp};
use shared::idempotency::Claim;
use shared::payments::{Payment, PaymentMethod, PaymentStatus};
use shared::realtime::{ConnectionItem, Topic};
use time::macros::{date, datetime};
use time::Duration;

type Item = HashMap<String, AttributeValue>;

struct Env {
    app: App,
    config: Config,
    /// For seeding and reading items as they are stored.
    dynamodb: aws_sdk_dynamodb::Client,
}

async fn env() -> Env {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let provisioned = local_gateway::provision::provision_for_test()
        .await
        .expect("provisioning test tables (run under infra/stack.sh)");
    let vars = provisioned.env.clone();
    let config = Config::from_lookup(&move |name: &str| vars.get(name).cloned()).unwrap();
    let clients = Clients::from_env().await;
    Env {
        app: App::new(&config, &clients),
        config,
        dynamodb: clients.dynamodb,
    }
}

impl Env {
    async fn run(&self, job: &str, now: Timestamp) -> Report {
        scheduler::handle(&self.app, &json!({ "job": job }), now)
            .await
            .unwrap()
    }

    async fn get(&self, table: &str, key: &[(&str, String)]) -> Option<Item> {
        let mut request = self
            .dynamodb
            .get_item()
            .table_name(table)
            .consistent_read(true);
        for (name, value) in key {
            request = request.key(*name, AttributeValue::S(value.clone()));
        }
        request.send().await.unwrap().item
    }

    async fn account_item(&self, id: Id) -> Item {
        self.get(
            self.config.tables.accounts.as_str(),
            &[("pk", format!("ACCOUNT#{id}"))],
        )
        .await
        .unwrap()
    }

    async fn activity_item(&self, activity: &Activity) -> Item {
        self.get(
            self.config.tables.activities.as_str(),
            &[
                ("pk", activity.account_id.to_string()),
                ("sk", activity.id.to_string()),
            ],
        )
        .await
        .unwrap()
    }

    async fn activities(&self, account: Id) -> Vec<Activity> {
        let out = self
            .dynamodb
            .query()
            .table_name(self.config.tables.activities.as_str())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(account.to_string()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        out.items()
            .iter()
            .map(|item| Activity::from_item(item.clone()).unwrap())
            .collect()
    }

    async fn create(&self, account: &Account) {
        self.app.accounts.create(account).await.unwrap().unwrap();
    }

    async fn promise(
        &self,
        account: &Account,
        amount: i64,
        due: time::Date,
        made: Timestamp,
    ) -> Activity {
        let activity = Activity {
            id: Id::generate(),
            account_id: account.id,
            activity_type: ActivityType::PromiseToPay,
            note: "will pay".into(),
            promise_amount: Some(MinorUnits(amount)),
            promise_date: Some(due),
            outcome: None,
            actor_id: Id::generate(),
            created_at: made,
        };
        let mut item = activity.to_item().unwrap();
        let (pk, sk) = promise_keys(&activity).unwrap();
        item.insert("promise_pk".into(), AttributeValue::S(pk));
        item.insert("promise_sk".into(), AttributeValue::S(sk));
        self.put(self.config.tables.activities.as_str(), item).await;
        activity
    }

    async fn payment(
        &self,
        account: &Account,
        amount: i64,
        status: PaymentStatus,
        received: Timestamp,
    ) {
        let payment = Payment {
            id: Id::generate(),
            account_id: account.id,
            amount: MinorUnits(amount),
            currency: "USD".parse().unwrap(),
            method: PaymentMethod::Card,
            status,
            reference: None,
            received_at: received,
            created_by: Id::generate(),
            version: 1,
            created_at: received,
            updated_at: received,
        };
        self.put(
            self.config.tables.payments.as_str(),
            payment.to_item().unwrap(),
        )
        .await;
    }

    async fn put(&self, table: &str, item: Item) {
        self.dynamodb
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
}

fn account(due: time::Date, bucket: DpdBucket, status: AccountStatus, balance: i64) -> Account {
    Account {
        original_balance: MinorUnits(10_000),
        balance: MinorUnits(balance),
        status,
        due_date: due,
        dpd_bucket: bucket,
        version: 3,
        ..shared::testing::account(balance, datetime!(2026-01-02 09:00 UTC).into())
    }
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

// ------------------------------------------------------------------ aging

#[tokio::test]
async fn aging_moves_exactly_the_accounts_at_a_boundary_and_is_idempotent() {
    let e = env().await;
    let today = date!(2026 - 06 - 15);
    let now: Timestamp = datetime!(2026-06-15 00:05 UTC).into();
    let days = |d: i64| today - Duration::days(d);
    use DpdBucket::*;
    // (due, stored bucket, bucket after the run, days past due stored after the run)
    let cases: Vec<(time::Date, DpdBucket, DpdBucket, Option<i64>)> = vec![
        (days(1), Current, D1To30, Some(1)),
        (days(7), Current, D1To30, Some(7)), // a missed run, caught up
        (days(8), Current, Current, None),   // beyond the catch-up window: not examined
        (days(31), D1To30, D31To60, Some(31)),
        (days(61), D31To60, D61To90, Some(61)),
        (days(91), D61To90, D90Plus, Some(91)),
        (days(97), D61To90, D90Plus, Some(97)),
        (days(40), D31To60, D31To60, None), // mid-bucket: not examined
        (days(1), D1To30, D1To30, None),    // already current: examined, unchanged
        (today, Current, Current, None),
        (today + Duration::days(10), Current, Current, None),
    ];
    let mut accounts = Vec::new();
    for (due, stored, _, _) in &cases {
        let account = account(*due, *stored, AccountStatus::Active, 5_000);
        e.create(&account).await;
        accounts.push(account);
    }
    // A deleted account leaves the indexes: never examined, never written.
    let mut deleted = account(days(31), D1To30, AccountStatus::Active, 5_000);
    deleted.deleted_at = Some(now);
    e.create(&deleted).await;

    let first = e.run("aging", now).await;
    assert_eq!(
        first,
        Report::Aging(AgingReport {
            examined: 7,
            updated: 6,
            unchanged: 1,
            skipped: 0
        })
    );
    for ((due, _, expected, stored_days), account) in cases.iter().zip(&accounts) {
        let item = e.account_item(account.id).await;
        assert_eq!(
            text(&item, "dpd_bucket").as_deref(),
            Some(expected.as_str()),
            "due {due}"
        );
        if let Some(stored_days) = stored_days {
            assert_eq!(
                number(&item, "days_past_due"),
                Some(*stored_days),
                "due {due}"
            );
        }
        // Not a user-visible change: version and updated_at stay.
        assert_eq!(number(&item, "version"), Some(3));
        assert_eq!(
            text(&item, "updated_at"),
            Some(account.updated_at.to_string())
        );
    }
    let item = e.account_item(deleted.id).await;
    assert_eq!(text(&item, "dpd_bucket").as_deref(), Some("1-30"));

    let second = e.run("aging", now).await;
    assert_eq!(
        second,
        Report::Aging(AgingReport {
            examined: 7,
            updated: 0,
            unchanged: 7,
            skipped: 0
        })
    );
}

// ------------------------------------------------------------------ promises

#[tokio::test]
async fn broken_promises_are_settled_and_their_accounts_return_to_active_once() {
    let e = env().await;
    let today = date!(2026 - 06 - 15);
    // 05:00 UTC: already the 15th in New York (01:00), still the 14th in Honolulu (19:00).
    let now: Timestamp = datetime!(2026-06-15 05:00 UTC).into();
    let day = |d: i64| today - Duration::days(d);
    let at = |d: i64| -> Timestamp { now.plus(Duration::days(-d)) };
    let ptp = |balance| {
        account(
            date!(2026 - 03 - 01),
            DpdBucket::D90Plus,
            AccountStatus::PromiseToPay,
            balance,
        )
    };

    // A: no payment at all → broken, back to active.
    let a = ptp(10_000);
    e.create(&a).await;
    let a1 = e.promise(&a, 1_000, day(1), at(10)).await;

    // B: covered by two payments, the second late on the promise date in New York
    // (03:00 UTC the next day) → kept, account untouched.
    let b = ptp(10_000);
    e.create(&b).await;
    let b1 = e.promise(&b, 1_000, day(2), at(10)).await;
    e.payment(&b, 600, PaymentStatus::Completed, at(5)).await;
    e.payment(
        &b,
        400,
        PaymentStatus::Completed,
        (datetime!(2026-06-14 03:00 UTC)).into(),
    )
    .await;

    // C: dated today → not due yet.
    let c = ptp(10_000);
    e.create(&c).await;
    let c1 = e.promise(&c, 1_000, today, at(3)).await;

    // D: broken, but another open promise dated later keeps it in promise_to_pay.
    let d = ptp(10_000);
    e.create(&d).await;
    let d1 = e.promise(&d, 1_000, day(1), at(10)).await;
    let d2 = e.promise(&d, 1_000, today + Duration::days(5), at(2)).await;

    // E: paid off → kept.
    let pay_off = account(
        date!(2026 - 03 - 01),
        DpdBucket::D90Plus,
        AccountStatus::Paid,
        0,
    );
    e.create(&pay_off).await;
    let e1 = e.promise(&pay_off, 1_000, day(1), at(10)).await;

    // F: only half covered: a pending payment, one received before the promise was made
    // and one after its date do not count → broken.
    let f = ptp(10_000);
    e.create(&f).await;
    let f1 = e.promise(&f, 1_000, day(3), at(10)).await;
    e.payment(&f, 500, PaymentStatus::Completed, at(4)).await;
    e.payment(&f, 1_000, PaymentStatus::Pending, at(4)).await;
    e.payment(&f, 1_000, PaymentStatus::Completed, at(12)).await;
    e.payment(&f, 1_000, PaymentStatus::Completed, at(1)).await;

    // G: dated yesterday (UTC) but still today in Honolulu → left for the next run.
    let mut g = ptp(10_000);
    g.debtor_timezone = "Pacific/Honolulu".into();
    e.create(&g).await;
    let g1 = e.promise(&g, 1_000, day(1), at(10)).await;

    let first = e.run("broken_promises", now).await;
    assert_eq!(
        first,
        Report::BrokenPromises(PromiseReport {
            examined: 6,
            kept: 2,
            broken: 3,
            reactivated: 2,
            deferred: 1,
            already_settled: 0
        })
    );

    let settled = |item: &Item, state: &str| {
        assert_eq!(text(item, "promise_state").as_deref(), Some(state));
        assert_eq!(
            text(item, "promise_settled_on").as_deref(),
            Some("2026-06-15")
        );
        assert!(!item.contains_key("promise_pk") && !item.contains_key("promise_sk"));
    };
    let open = |item: &Item| {
        assert!(item.contains_key("promise_pk") && item.contains_key("promise_sk"));
        assert!(!item.contains_key("promise_state") && !item.contains_key("promise_settled_on"));
    };
    settled(&e.activity_item(&a1).await, "broken");
    settled(&e.activity_item(&b1).await, "kept");
    open(&e.activity_item(&c1).await);
    settled(&e.activity_item(&d1).await, "broken");
    open(&e.activity_item(&d2).await);
    settled(&e.activity_item(&e1).await, "kept");
    settled(&e.activity_item(&f1).await, "broken");
    open(&e.activity_item(&g1).await);

    for (account, status, version) in [
        (&a, "active", 4),
        (&b, "promise_to_pay", 3),
        (&c, "promise_to_pay", 3),
        (&d, "promise_to_pay", 3),
        (&pay_off, "paid", 3),
        (&f, "active", 4),
        (&g, "promise_to_pay", 3),
    ] {
        let item = e.account_item(account.id).await;
        assert_eq!(
            text(&item, "status").as_deref(),
            Some(status),
            "{}",
            account.id
        );
        assert_eq!(number(&item, "version"), Some(version), "{}", account.id);
        let shard = shared::accounts::keys::shard_of(account.id);
        assert_eq!(
            text(&item, "status_pk"),
            Some(format!("ST#{status}#{shard}"))
        );
        let changes: Vec<Activity> = e
            .activities(account.id)
            .await
            .into_iter()
            .filter(|a| a.activity_type == ActivityType::StatusChange)
            .collect();
        if version == 4 {
            assert_eq!(changes.len(), 1, "{}", account.id);
            assert_eq!(
                changes[0].note,
                "status changed from promise_to_pay to active (broken promise)"
            );
            assert_eq!(changes[0].actor_id.to_string(), scheduler::SYSTEM_ACTOR);
            assert_eq!(text(&item, "updated_at"), Some(now.to_string()));
        } else {
            assert!(changes.is_empty(), "{}", account.id);
        }
    }

    let second = e.run("broken_promises", now).await;
    assert_eq!(
        second,
        Report::BrokenPromises(PromiseReport {
            examined: 1,
            deferred: 1,
            ..PromiseReport::default()
        })
    );
    for account in [&a, &f] {
        let item = e.account_item(account.id).await;
        assert_eq!(number(&item, "version"), Some(4));
        let changes = e
            .activities(account.id)
            .await
            .into_iter()
            .filter(|a| a.activity_type == ActivityType::StatusChange)
            .count();
        assert_eq!(changes, 1);
    }
}

// ------------------------------------------------------------------ cleanup

#[tokio::test]
async fn cleanup_removes_expired_connections_and_idempotency_keys_only() {
    let e = env().await;
    let now = Timestamp::now();
    let caller = Caller {
        user_id: Id::generate(),
        role: Role::Admin,
    };
    let connected = now.unix_seconds() * 1000 - 7_200_000;
    let stale = ConnectionItem::new("stale-conn", &caller, connected, now.unix_seconds() - 60);
    let live = ConnectionItem::new("live-conn", &caller, connected, now.unix_seconds() + 3_600);
    let topics = [Topic::Payments, Topic::Dashboard];
    for connection in [&stale, &live] {
        e.app.connections.put_connection(connection).await.unwrap();
        assert!(e
            .app
            .connections
            .subscribe(connection, &topics)
            .await
            .unwrap());
    }
    let store = &e.app.idempotency;
    let old = now.plus(Duration::hours(-25));
    for (record, at) in [("user#POST /x#old", old), ("user#POST /x#new", now)] {
        let claim = store.claim(record, "hash", "resource", at).await.unwrap();
        assert!(matches!(claim, Claim::Acquired { .. }));
    }

    let first = e.run("cleanup", now).await;
    assert_eq!(
        first,
        Report::Cleanup(CleanupReport {
            connections_removed: 1,
            idempotency_keys_deleted: 1,
            idempotency_keys_kept: 0
        })
    );
    assert!(e
        .app
        .connections
        .connection("stale-conn")
        .await
        .unwrap()
        .is_none());
    assert!(e
        .app
        .connections
        .topics_of("stale-conn")
        .await
        .unwrap()
        .is_empty());
    assert!(e
        .app
        .connections
        .connection("live-conn")
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        e.app
            .connections
            .topics_of("live-conn")
            .await
            .unwrap()
            .len(),
        2
    );
    // The by-topic side of the stale connection's subscriptions went too.
    for topic in &topics {
        let subscribers: Vec<String> = e
            .app
            .connections
            .subscribers(topic)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.connection_id)
            .collect();
        assert_eq!(subscribers, ["live-conn"]);
        let orphan = e
            .get(
                e.config.tables.connections.as_str(),
                &[
                    ("pk", format!("TOPIC#{topic}")),
                    ("sk", "stale-conn".into()),
                ],
            )
            .await;
        assert!(orphan.is_none());
    }
    let table = e.config.tables.idempotency.as_str();
    assert!(e
        .get(table, &[("pk", "user#POST /x#old".into())])
        .await
        .is_none());
    assert!(e
        .get(table, &[("pk", "user#POST /x#new".into())])
        .await
        .is_some());

    let second = e.run("cleanup", now).await;
    assert_eq!(second, Report::Cleanup(CleanupReport::default()));
}

// ------------------------------------------------------------------ events

#[tokio::test]
async fn an_unknown_or_missing_job_is_an_error() {
    let e = env().await;
    let now = Timestamp::now();
    for event in [
        json!({"job": "nope"}),
        json!({}),
        json!({"job": 7}),
        // The plain scheduled event (no Input) names no job.
        serde_json::from_str(include_str!("../../../events/eventbridge-schedule.json")).unwrap(),
    ] {
        let err = scheduler::handle(&e.app, &event, now).await.unwrap_err();
        assert!(
            matches!(err, scheduler::SchedulerError::UnknownJob(_)),
            "{event}: {err:?}"
        );
        assert!(err.to_string().contains("unknown job"), "{err}");
    }
}
